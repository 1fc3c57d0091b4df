//! `shipgate inspect` and `shipgate policies`: what a module says about
//! itself, and what it asks the host for.

use serde::Serialize;
use shipgate_policy::Phase;

use crate::error::Error;
use crate::gate::ModuleBase;
use crate::modules::{LoadError, ModuleRef, compile, read_module};
use crate::registry::Remote;
use crate::runtime::{Limits, Runtime};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Inspection {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) phases: Vec<Phase>,
    pub(crate) sha256: String,
    pub(crate) size: usize,
    /// The interfaces the component imports (the contract's types, and WASI
    /// linked with an empty context, so it grants nothing).
    pub(crate) imports: Vec<String>,
    /// What it exports (the contract's functions).
    pub(crate) exports: Vec<String>,
    /// The fingerprint of the key whose signature verified (`--key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signed_by: Option<String>,
}

/// Loads a module (a path, `builtin:NAME`, a registry reference) and asks it
/// to describe itself.
pub(crate) fn inspect(runtime: &Runtime, reference: &ModuleRef) -> Result<Inspection, Error> {
    let module = reference.as_str();
    let max = crate::modules::DEFAULT_MAX_MODULE_BYTES;
    let read = read_module(
        &ModuleBase::WorkingDir,
        &Remote::from_env(),
        reference,
        None,
        max,
    )
    .map_err(|error| match error {
        LoadError::NotFound { .. } => Error::MissingInput(error.to_string()),
        LoadError::Remote { error, .. } => Error::from(crate::registry::RegistryError::new(
            error.kind,
            format!("{module}: {error}"),
        )),
        _ => Error::InvalidInput(error.to_string()),
    })?;
    let loaded = compile(runtime, module, &read).map_err(|error| match error {
        LoadError::Component { error, .. } => Error::InvalidInput(format!("{module}: {error}")),
        other => Error::InvalidInput(other.to_string()),
    })?;
    let info = runtime
        .describe(&loaded, Limits::default())
        .result
        .map_err(|fault| Error::InvalidInput(format!("{module}: describe failed: {fault}")))?;
    let (imports, exports) = loaded.imports_and_exports(runtime);
    Ok(Inspection {
        module: module.to_string(),
        name: info.name,
        version: info.version,
        description: info.description,
        phases: info.phases,
        sha256: loaded.sha256.clone(),
        size: loaded.size,
        imports,
        exports,
        signed_by: None,
    })
}
