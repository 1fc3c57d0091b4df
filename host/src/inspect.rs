//! `shipgate inspect` and `shipgate policies`: what a module says about
//! itself, and what it asks the host for.

use std::fmt::Write as _;

use serde::Serialize;
use shipgate_policy::Phase;

use crate::error::Error;
use crate::evaluate::read_module;
use crate::gate::ModuleBase;
use crate::runtime::{Limits, Runtime};

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub module: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub phases: Vec<Phase>,
    pub sha256: String,
    pub size: usize,
    /// The interfaces the component imports (all WASI; linked with an empty
    /// context, so they grant nothing).
    pub imports: Vec<String>,
}

/// Loads a module (a path or `builtin:NAME`) and asks it to describe itself.
pub fn inspect(runtime: &Runtime, module: &str) -> Result<Inspection, Error> {
    let read = read_module(&ModuleBase::WorkingDir, module).map_err(|why| {
        if why.contains("not found") {
            Error::MissingInput(why)
        } else {
            Error::InvalidInput(why)
        }
    })?;
    let loaded = runtime
        .load_digested(&read.bytes, &read.sha256)
        .map_err(|why| Error::InvalidInput(format!("{module}: {why}")))?;
    let info = runtime
        .describe(&loaded, Limits::default())
        .result
        .map_err(|fault| Error::InvalidInput(format!("{module}: describe failed: {fault}")))?;
    Ok(Inspection {
        module: module.to_string(),
        name: info.name,
        version: info.version,
        description: info.description,
        phases: info.phases,
        sha256: loaded.sha256.clone(),
        size: loaded.size,
        imports: loaded.imports(runtime),
    })
}

impl Inspection {
    pub fn text(&self) -> String {
        let phases: Vec<&str> = self.phases.iter().map(|p| p.as_str()).collect();
        let mut out = String::new();
        let _ = writeln!(out, "{} {} ({})", self.name, self.version, self.module);
        let _ = writeln!(out, "  {}", self.description);
        let _ = writeln!(out, "  phases:  {}", phases.join(", "));
        let _ = writeln!(out, "  sha256:  {}", self.sha256);
        let _ = writeln!(out, "  size:    {} bytes", self.size);
        let _ = writeln!(
            out,
            "  imports: {}",
            if self.imports.is_empty() {
                "none".to_string()
            } else {
                self.imports.len().to_string()
            }
        );
        for import in &self.imports {
            let _ = writeln!(out, "    {import}");
        }
        out
    }
}
