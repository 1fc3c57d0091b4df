//! Commands about gates and modules before a rollout: `check`, `inspect`,
//! `policies` and `schema`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use shipgate_policy::Phase;

use super::{load_gate, print, runtime};
use crate::error::{Error, exit};
use crate::evaluate::PreparedGate;
use crate::inspect;
use crate::report::{self, Style};
use crate::snapshot;

#[derive(Debug, clap::Args)]
pub(super) struct CheckArgs {
    /// The gate file (default: the built-in gate).
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
    /// Output format: text, or Markdown with the rollout plan as a
    /// Mermaid gantt, for review in a pull request.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Markdown,
}

impl CheckArgs {
    /// Prepares every phase of a gate; any policy that would fail closed is
    /// an error, named with its fault.
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let gate = load_gate(self.gate.as_deref())?;
        let label = gate.origin.label();
        let prepared = PreparedGate::prepare(Arc::new(runtime()?), gate, &Phase::ALL)?;
        let policies = prepared.policies();
        let gate = prepared.gate();
        match self.format {
            CheckFormat::Text => print(&report::check(&policies, Style::from_env(false))),
            CheckFormat::Markdown => print(&report::check_markdown(gate, &policies)),
        }
        for (policy, _) in &policies {
            // A signature that does not verify is the policy's fault, listed above.
            if let Some(Ok(key)) = crate::modules::signer(&gate.module_base, &gate.remote, policy) {
                print(&format!("policy '{}': signed by key {key}\n", policy.name));
            }
        }
        let faults: Vec<String> = policies
            .iter()
            .filter_map(|(policy, module)| {
                let fault = module.as_ref().err()?;
                Some(format!("policy '{}': {fault}", policy.name))
            })
            .collect();
        match faults.len() {
            0 => Ok(exit::ALLOW),
            _ => Err(Error::InvalidInput(format!(
                "{label}: {}",
                faults.join("; ")
            ))),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct InspectArgs {
    /// A .wasm policy component, `builtin:NAME`, or
    /// `oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST`.
    module: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also verify the module's cosign signature with this public key (PEM)
    /// and show the signer; a module that is not signed by it is an error.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

impl InspectArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let reference = crate::modules::ModuleRef::parse(&self.module).map_err(Error::Usage)?;
        let mut inspection = inspect::inspect(&runtime()?, &reference)?;
        if let Some(key) = &self.key {
            let signer = crate::modules::verify_reference(
                &crate::gate::ModuleBase::WorkingDir,
                &crate::registry::Remote::from_env(),
                &reference,
                &key.display().to_string(),
            )
            .map_err(|why| Error::InvalidInput(format!("{}: signature: {why}", self.module)))?;
            inspection.signed_by = Some(signer);
        }
        print(&if self.json {
            report::json(&inspection)
        } else {
            report::inspection(&inspection)
        });
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct SchemaArgs {
    #[arg(value_enum)]
    what: SchemaKind,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaKind {
    /// The deployment snapshot.
    Snapshot,
    /// The gate file.
    Gate,
}

impl SchemaArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let schema = match self.what {
            SchemaKind::Snapshot => snapshot::schema(),
            SchemaKind::Gate => crate::gate::schema(),
        };
        print(&report::json(&schema));
        Ok(exit::ALLOW)
    }
}

/// `shipgate policies`: the stock policies and their phases.
pub(super) fn policies() -> Result<i32, Error> {
    let runtime = runtime()?;
    let stock = crate::builtins::BUILTINS
        .iter()
        .map(|builtin| {
            inspect::inspect(&runtime, &crate::modules::ModuleRef::builtin(builtin.name))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    print(&report::policies(&stock));
    Ok(exit::ALLOW)
}
