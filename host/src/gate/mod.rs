//! The gate: what a team declares before a rollout (plan, thresholds,
//! policies per phase with their pins and modes, limits, evidence sources),
//! read from a TOML file and validated.
//!
//! [`file`] holds the file's types, [`validate`] what they must mean, and
//! `toml_error` turns parse errors into `file:line:column: what`.

mod file;
mod kayenta_config;
pub(crate) mod toml_error;
mod validate;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use shipgate_policy::Phase;

use crate::error::Error;
use crate::modules::reference::{ModuleKind, ModuleRef};
use crate::registry::Remote;
use crate::runtime::Limits;

pub use file::Mode;
pub(crate) use file::{DEFAULT_MAX_MODULE_MIB, GateFile, PolicyEntry};
pub(crate) use kayenta_config::{judge_config, without_nulls};

/// The gate used when no `--gate` is given.
pub const DEFAULT_GATE: &str = include_str!("../default-gate.toml");

/// Where a gate came from, for messages and for resolving module paths.
#[derive(Debug, Clone)]
pub enum Origin {
    BuiltIn,
    File(PathBuf),
}

impl Origin {
    pub fn label(&self) -> String {
        match self {
            Origin::BuiltIn => "built-in default gate".to_string(),
            Origin::File(path) => path.display().to_string(),
        }
    }

    /// The directory module paths are resolved in.
    fn base_dir(&self) -> Option<PathBuf> {
        match self {
            Origin::BuiltIn => None,
            Origin::File(path) => Some(
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
            ),
        }
    }
}

/// A parsed, validated gate.
#[derive(Debug, Clone)]
pub struct Gate {
    pub(crate) file: GateFile,
    pub(crate) origin: Origin,
    /// sha256 of the gate file's bytes (followed, when its policies' configs
    /// read files, by each file's path and bytes).
    pub sha256: String,
    /// Where module paths are resolved: the gate file's directory (confined
    /// to it), or the working directory for modules named on the command line.
    pub(crate) module_base: ModuleBase,
    /// Where modules from registries are fetched from and kept.
    pub(crate) remote: Remote,
    /// Files the policies' configs were read from (`kayenta_config`).
    config_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleBase {
    /// Paths are relative to this directory and may not leave it.
    Confined(PathBuf),
    /// Paths are the user's own, as given on the command line.
    WorkingDir,
}

impl Gate {
    /// The built-in default gate.
    pub fn default_gate() -> Gate {
        Gate::parse(DEFAULT_GATE, Origin::BuiltIn).expect("the built-in gate is valid")
    }

    /// Reads and validates a gate file.
    pub fn read(path: &Path) -> Result<Gate, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::reading(path, e))?;
        Gate::parse(&text, Origin::File(path.to_path_buf()))
    }

    /// Parses and validates gate text. Errors are `origin:line:column: what`.
    pub fn parse(text: &str, origin: Origin) -> Result<Gate, Error> {
        let file: GateFile = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => {
                    let (line, column) = toml_error::line_column(text, span.start);
                    format!("{}:{line}:{column}", origin.label())
                }
                None => origin.label(),
            };
            Error::InvalidInput(format!("{at}: {}", toml_error::explain(e.message())))
        })?;
        let mut file = file;
        validate::validate(&file)
            .map_err(|why| Error::InvalidInput(format!("{}: {why}", origin.label())))?;
        let base = origin.base_dir().unwrap_or_else(|| PathBuf::from("."));
        // The digest covers what decides: the gate's bytes, then each
        // config file's path and bytes.
        let mut digest = Sha256::new();
        digest.update(text.as_bytes());
        let mut config_files = Vec::new();
        for policy in &mut file.policies {
            let read = kayenta_config::inline(policy, &base)
                .map_err(|why| Error::InvalidInput(format!("{}: {why}", origin.label())))?;
            if let Some((path, bytes)) = read {
                digest.update(b"\0");
                digest.update(path.to_string_lossy().as_bytes());
                digest.update(b"\0");
                digest.update(&bytes);
                config_files.push(path);
            }
        }
        let module_base = match origin.base_dir() {
            Some(dir) => ModuleBase::Confined(dir),
            None => ModuleBase::WorkingDir,
        };
        Ok(Gate {
            file,
            origin,
            sha256: hex::encode(digest.finalize()),
            module_base,
            remote: Remote::from_env(),
            config_files,
        })
    }

    /// Replaces the gate's policies for `phase` with modules named on the
    /// command line (resolved from the working directory), keeping its plan,
    /// thresholds and limits.
    pub(crate) fn with_modules(mut self, modules: &[String], phase: Phase) -> Result<Gate, Error> {
        let mut policies: Vec<PolicyEntry> = Vec::with_capacity(modules.len());
        for text in modules {
            let module =
                ModuleRef::parse(text).map_err(|why| Error::Usage(format!("--policy: {why}")))?;
            if let ModuleKind::File(path) = module.kind()
                && !path.exists()
            {
                return Err(Error::MissingInput(format!("{text}: no such module file")));
            }
            // Two modules must never share a name: names key the loaded modules.
            let taken = |name: &str| policies.iter().any(|p: &PolicyEntry| p.name == name);
            let mut name = module_display_name(&module);
            if taken(&name) {
                name = text.clone();
            }
            let mut n = 2;
            while taken(&name) {
                name = format!("{text}#{n}");
                n += 1;
            }
            policies.push(PolicyEntry {
                name,
                module,
                sha256: None,
                phases: vec![phase],
                on_error: None,
                mode: Mode::Enforce,
                config: None,
                verify: None,
            });
        }
        self.file.policies = policies;
        self.module_base = ModuleBase::WorkingDir;
        validate::validate(&self.file).map_err(|why| Error::Usage(format!("--policy: {why}")))?;
        Ok(self)
    }

    /// The policies whose module is a registry reference without a digest:
    /// what it names can change under the gate.
    pub(crate) fn unpinned_references(&self) -> impl Iterator<Item = &PolicyEntry> {
        self.file
            .policies
            .iter()
            .filter(|p| p.module.is_unpinned_reference())
    }

    /// What serving demands of a gate: every registry reference pinned to
    /// a digest; with `require_pins`, every module not built in pinned (a
    /// digest or `sha256`); with `require_signatures`, every one from a
    /// registry (only those are signed; each is verified when it loads, by
    /// its `verify` key or the server's trusted ones).
    pub(crate) fn check_servable(
        &self,
        require_pins: bool,
        require_signatures: bool,
    ) -> Result<(), Error> {
        let refuse = |policy: &PolicyEntry, why: String| {
            Err(Error::InvalidInput(format!(
                "{}: policy '{}': module '{}' {why}",
                self.origin.label(),
                policy.name,
                policy.module
            )))
        };
        if let Some(policy) = self.unpinned_references().next() {
            return refuse(
                policy,
                "names no digest: serve runs pinned modules only (oci://…@sha256:…)".into(),
            );
        }
        let files = self.file.policies.iter().filter(|p| !p.module.is_builtin());
        for policy in files {
            let remote = matches!(policy.module.kind(), ModuleKind::Oci(_));
            if require_pins && !remote && policy.sha256.is_none() {
                return refuse(policy, "has no sha256 pin (--require-pins)".into());
            }
            if require_signatures && !remote {
                return refuse(
                    policy,
                    "cannot be signed: --require-signatures serves modules from registries only"
                        .into(),
                );
            }
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            timeout_ms: self.file.limits.timeout_ms,
            memory_mib: self.file.limits.memory_mib,
        }
    }

    /// The largest module a policy of this gate may have, in bytes.
    pub(crate) fn max_module_bytes(&self) -> u64 {
        self.file.limits.max_module_mib << 20
    }

    /// The policies bound to `phase`, in gate order.
    pub(crate) fn policies_for(&self, phase: Phase) -> impl Iterator<Item = &PolicyEntry> {
        self.file
            .policies
            .iter()
            .filter(move |p| p.phases.contains(&phase))
    }

    /// The files a reload watches: module paths (not built-in or remote
    /// ones), `verify` keys and configs read from files.
    pub(crate) fn module_files(&self) -> Vec<PathBuf> {
        let ModuleBase::Confined(dir) = &self.module_base else {
            return self.config_files.clone();
        };
        let modules = self
            .file
            .policies
            .iter()
            .filter_map(|p| match p.module.kind() {
                ModuleKind::File(path) => Some(path),
                _ => None,
            });
        let keys = self.file.policies.iter().filter_map(|p| p.verify.as_ref());
        modules
            .map(|path| dir.join(path))
            .chain(keys.map(|verify| dir.join(&verify.key)))
            .chain(self.config_files.iter().cloned())
            .collect()
    }

    /// The `gate` object policies receive with every snapshot: the gate's
    /// name, digest and declared plan, in the SDK's own types.
    pub fn snapshot_gate(&self) -> shipgate_policy::snapshot::Gate {
        shipgate_policy::snapshot::Gate {
            name: Some(self.file.name.clone()),
            sha256: Some(self.sha256.clone()),
            rollout: Some(self.file.rollout.clone()),
        }
    }
}

/// `builtin:canary` → `canary`, `path/to/team_rules.wasm` → `team_rules`.
fn module_display_name(module: &ModuleRef) -> String {
    match module.kind() {
        ModuleKind::Builtin(name) => name.clone(),
        _ => Path::new(module.as_str())
            .file_stem()
            .map_or_else(|| module.to_string(), |s| s.to_string_lossy().into_owned()),
    }
}

/// The JSON Schema of the gate file (`shipgate schema gate`).
pub(crate) fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(GateFile)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate_policy::Decision;

    fn parse(text: &str) -> Result<Gate, String> {
        Gate::parse(text, Origin::File("gate.toml".into())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_gate_declares_the_seed_plan() {
        let gate = Gate::default_gate();
        assert_eq!(gate.file.rollout.stages, [5.0, 10.0, 25.0, 50.0, 100.0]);
        assert_eq!(gate.file.rollout.min_stage_minutes, Some(15.0));
        let names: Vec<&str> = gate
            .policies_for(Phase::Abort)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["canary"]);
    }

    #[test]
    fn the_example_gate_is_valid() {
        let gate = parse(include_str!("../../../examples/gate.toml")).unwrap();
        assert_eq!(gate.file.name, "checkout-production");
    }

    #[test]
    fn unknown_keys_are_reported_with_line_column_and_a_suggestion() {
        let text =
            "name = \"g\"\n\n[rollout.abort]\nmax_error_rate = 0.01\n  max_eror_rate = 0.02\n";
        assert_eq!(
            parse(text).unwrap_err(),
            "gate.toml:5:3: unknown key 'max_eror_rate' (did you mean 'max_error_rate'?)"
        );
        let text = "name = \"g\"\nfrobnicate = true\n";
        let err = parse(text).unwrap_err();
        assert!(err.starts_with("gate.toml:2:1: unknown key 'frobnicate' (expected one of: name, rollout, limits, policy, sources)"), "{err}");
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let err = parse("name = \"g\"\n[limits]\ntimeout_ms = \"fast\"\n").unwrap_err();
        assert!(
            err.starts_with("gate.toml:3:14: invalid type: string \"fast\""),
            "{err}"
        );
        let err = parse("name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"builtin:canary\"\nphases = [\"canary\"]\n")
            .unwrap_err();
        assert!(
            err.starts_with("gate.toml:5:11: unknown variant `canary`"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            (
                "name = \"g\"\n[rollout]\nstages = [5, 120]\n",
                "gate.toml: rollout.stages[1]: 120 is not a percentage in (0, 100]",
            ),
            (
                "name = \"g\"\n[rollout.abort]\nmax_error_rate = 1.5\n",
                "gate.toml: rollout.abort.max_error_rate: 1.5 is not a fraction in [0, 1] (1% is 0.01)",
            ),
            (
                "name = \"g\"\n[limits]\nmemory_mib = 0\n",
                "gate.toml: limits.memory_mib: 0 is outside 1..=1024",
            ),
            (
                "name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"m.wasm\"\nsha256 = \"abc\"\nphases = [\"abort\"]\n",
                "gate.toml: policy[0] ('p'): sha256: 'abc' is not a hex sha256 (64 hex digits)",
            ),
            (
                "name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"a\"\nphases = [\"abort\"]\n[[policy]]\nname = \"p\"\nmodule = \"b\"\nphases = [\"verify\"]\n",
                "gate.toml: policy[1] ('p'): another policy has the same name",
            ),
            (
                "name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"m\"\nphases = [\"abort\"]\non_error = \"allow\"\n",
                "gate.toml: policy[0] ('p'): on_error = \"allow\" would let a broken policy pass; \
                 use mode = \"shadow\" for a policy that must not block",
            ),
            (
                "name = \"g\"\n[rollout.abort]\nmax_latency_ms = { p99 = -5 }\n",
                "gate.toml: rollout.abort.max_latency_ms.p99: -5 must be a number of milliseconds >= 0",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err(), expected);
        }
    }

    #[test]
    fn a_threshold_policies_would_not_read_is_an_error_where_it_is_written() {
        let err = parse("name = \"g\"\n[rollout.abort]\nmax_latency_ms = { p50 = 1, p999 = 2 }\n")
            .unwrap_err();
        assert!(
            err.starts_with("gate.toml:3:29: unknown key 'p999' (did you mean 'p99'?)"),
            "{err}"
        );
    }

    #[test]
    fn policies_receive_the_declared_plan_as_written() {
        let gate = parse(include_str!("../../../examples/gate.toml")).unwrap();
        let seen = gate.snapshot_gate();
        assert_eq!(seen.name.as_deref(), Some("checkout-production"));
        assert_eq!(seen.sha256.as_deref(), Some(gate.sha256.as_str()));
        let plan = seen.rollout.unwrap();
        assert_eq!(plan, gate.file.rollout);
        assert_eq!(plan.abort.max_latency_ms.unwrap().p99, Some(800.0));
    }

    #[test]
    fn the_files_to_watch_are_the_module_paths_in_the_gates_directory() {
        let text = "name = \"g\"\n[[policy]]\nname = \"a\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n\
                    [[policy]]\nname = \"b\"\nmodule = \"team/rules.wasm\"\nphases = [\"abort\"]\n";
        let gate = Gate::parse(text, Origin::File("/etc/shipgate/gate.toml".into())).unwrap();
        assert_eq!(
            gate.module_files(),
            [PathBuf::from("/etc/shipgate/team/rules.wasm")]
        );
    }

    #[test]
    fn the_digest_covers_the_canary_config_a_gate_reads_and_reloads_watch_it() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate.toml");
        std::fs::write(
            &gate,
            "name = \"g\"\n[[policy]]\nname = \"judge\"\nmodule = \"builtin:judge\"\n\
             phases = [\"abort\"]\n[policy.config]\nkayenta_config = \"canary.json\"\n",
        )
        .unwrap();
        let config = dir.path().join("canary.json");
        std::fs::write(&config, r#"{"metrics": []}"#).unwrap();
        let first = Gate::read(&gate).unwrap();
        assert_eq!(first.module_files(), vec![config.clone()]);
        std::fs::write(&config, r#"{"metrics": [], "name": "edited"}"#).unwrap();
        assert_ne!(Gate::read(&gate).unwrap().sha256, first.sha256);
    }

    #[test]
    fn on_error_defaults_fail_closed_per_phase() {
        let gate = parse("name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"m\"\nphases = [\"abort\", \"promotion\"]\n").unwrap();
        let policy = &gate.file.policies[0];
        assert_eq!(policy.on_error_for(Phase::Abort), Decision::Rollback);
        assert_eq!(policy.on_error_for(Phase::Promotion), Decision::Deny);
        assert_eq!(policy.config_json(), "{}");
    }
}
