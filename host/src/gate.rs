//! The gate file: the declared rollout plan and abort thresholds, the
//! policies per phase with their pins and modes, and the limits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shipgate_policy::{Decision, Phase};

use crate::error::Error;
use crate::runtime::{Limits, MAX_MEMORY_MIB};
use crate::sources::prometheus::PrometheusSource;

/// The gate used when no `--gate` is given.
pub const DEFAULT_GATE: &str = include_str!("default-gate.toml");

/// A gate file as written (TOML).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    /// Names the gate in every decision.
    pub name: String,
    /// The staged plan and abort thresholds, declared before the rollout.
    #[serde(default)]
    pub rollout: RolloutSection,
    /// Per-evaluation limits for every policy of the gate.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The policies, each bound to one or more phases.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyEntry>,
    /// Where server mode finds evidence for requests that send no snapshot.
    #[serde(default)]
    pub sources: SourcesSection,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// Metrics from a Prometheus server, by PromQL templates.
    pub prometheus: Option<PrometheusSource>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    /// Traffic weights in percent, e.g. [5, 10, 25, 50, 100].
    #[serde(default)]
    pub stages: Vec<f64>,
    /// The least observation per stage before promotion.
    pub min_stage_minutes: Option<f64>,
    #[serde(default)]
    pub abort: AbortSection,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortSection {
    /// Canary errors / requests, e.g. 0.01 for 1%.
    pub max_error_rate: Option<f64>,
    /// Canary error rate / baseline error rate.
    pub max_error_rate_ratio: Option<f64>,
    /// Absolute latency limits per quantile, in milliseconds.
    pub max_latency_ms: Option<LatencyLimits>,
    /// Canary latency / baseline latency, per quantile.
    pub max_latency_ratio: Option<f64>,
    /// Largest drop in business events per request vs baseline, e.g. 0.10.
    pub max_business_drop: Option<f64>,
    /// Fewer canary requests than this is not evidence enough.
    pub min_requests: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyLimits {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Wall-clock budget of one policy evaluation, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Memory a policy may use, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    Limits::default().timeout_ms
}

fn default_memory_mib() -> u64 {
    Limits::default().memory_mib
}

/// How a policy's decision counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The decision counts.
    #[default]
    Enforce,
    /// Evaluated and recorded, never changes the decision.
    Shadow,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Names the policy in decisions; unique within the gate.
    pub name: String,
    /// `builtin:NAME`, or a path to a .wasm component relative to the gate
    /// file's directory.
    pub module: String,
    /// Pin: the module's hex sha256. A module whose digest differs is refused.
    pub sha256: Option<String>,
    /// The phases this policy evaluates.
    #[schemars(with = "Vec<String>")]
    pub phases: Vec<Phase>,
    /// The decision when the policy faults. Default: deny, in the abort phase
    /// rollback.
    #[schemars(with = "Option<String>")]
    pub on_error: Option<Decision>,
    #[serde(default)]
    pub mode: Mode,
    /// Passed to the policy as JSON.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub config: Option<toml::Table>,
}

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
    pub fn base_dir(&self) -> Option<PathBuf> {
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
    pub file: GateFile,
    pub origin: Origin,
    /// sha256 of the gate file's bytes.
    pub sha256: String,
    /// Where module paths are resolved: the gate file's directory (confined
    /// to it), or the working directory for modules named on the command line.
    pub module_base: ModuleBase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleBase {
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
                    let (line, column) = line_column(text, span.start);
                    format!("{}:{line}:{column}", origin.label())
                }
                None => origin.label(),
            };
            Error::InvalidInput(format!("{at}: {}", explain_toml_error(e.message())))
        })?;
        validate(&file).map_err(|why| Error::InvalidInput(format!("{}: {why}", origin.label())))?;
        let module_base = match origin.base_dir() {
            Some(dir) => ModuleBase::Confined(dir),
            None => ModuleBase::WorkingDir,
        };
        Ok(Gate {
            file,
            origin,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            module_base,
        })
    }

    /// Replaces the gate's policies for `phase` with modules named on the
    /// command line (resolved from the working directory), keeping its plan,
    /// thresholds and limits.
    pub fn with_modules(mut self, modules: &[String], phase: Phase) -> Result<Gate, Error> {
        let mut policies: Vec<PolicyEntry> = Vec::with_capacity(modules.len());
        for module in modules {
            // Two modules must never share a name: names key the loaded modules.
            let taken = |name: &str| policies.iter().any(|p: &PolicyEntry| p.name == name);
            let mut name = module_display_name(module);
            if taken(&name) {
                name = module.clone();
            }
            let mut n = 2;
            while taken(&name) {
                name = format!("{module}#{n}");
                n += 1;
            }
            policies.push(PolicyEntry {
                name,
                module: module.clone(),
                sha256: None,
                phases: vec![phase],
                on_error: None,
                mode: Mode::Enforce,
                config: None,
            });
        }
        self.file.policies = policies;
        self.module_base = ModuleBase::WorkingDir;
        validate(&self.file).map_err(|why| Error::Usage(format!("--policy: {why}")))?;
        Ok(self)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            timeout_ms: self.file.limits.timeout_ms,
            memory_mib: self.file.limits.memory_mib,
        }
    }

    /// The policies bound to `phase`, in gate order.
    pub fn policies_for(&self, phase: Phase) -> impl Iterator<Item = &PolicyEntry> {
        self.file
            .policies
            .iter()
            .filter(move |p| p.phases.contains(&phase))
    }

    /// The `gate` object policies receive with every snapshot, typed as the
    /// SDK reads it. Built from [`Gate::snapshot_object`], so the JSON that
    /// other engines and records see and what policies decode cannot drift
    /// apart; it fails only if the host's plan types and the SDK's diverge.
    pub fn snapshot_gate(&self) -> Result<shipgate_policy::snapshot::Gate, String> {
        serde_json::from_value(self.snapshot_object())
            .map_err(|e| format!("the gate's plan does not fit the snapshot's `gate`: {e}"))
    }

    /// The `gate` object the host adds to every snapshot, as JSON.
    pub fn snapshot_object(&self) -> Value {
        json!({
            "name": self.file.name,
            "sha256": self.sha256,
            "rollout": self.file.rollout,
        })
    }
}

impl PolicyEntry {
    /// The decision this policy yields when it faults.
    pub fn on_error_for(&self, phase: Phase) -> Decision {
        self.on_error.unwrap_or(match phase {
            Phase::Abort => Decision::Rollback,
            _ => Decision::Deny,
        })
    }

    /// The policy's config as JSON text (`{}` when none).
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).expect("TOML tables are JSON"),
            None => "{}".to_string(),
        }
    }
}

/// `builtin:canary` → `canary`, `path/to/team_rules.wasm` → `team_rules`.
fn module_display_name(module: &str) -> String {
    let name = module
        .strip_prefix(crate::builtins::PREFIX)
        .unwrap_or(module);
    Path::new(name)
        .file_stem()
        .map_or_else(|| name.to_string(), |s| s.to_string_lossy().into_owned())
}

fn validate(file: &GateFile) -> Result<(), String> {
    if file.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    for (i, stage) in file.rollout.stages.iter().enumerate() {
        if !(*stage > 0.0 && *stage <= 100.0) {
            return Err(format!(
                "rollout.stages[{i}]: {stage} is not a percentage in (0, 100]"
            ));
        }
    }
    let abort = &file.rollout.abort;
    let fractions = [
        ("max_error_rate", abort.max_error_rate),
        ("max_business_drop", abort.max_business_drop),
    ];
    for (key, value) in fractions {
        if let Some(v) = value
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!(
                "rollout.abort.{key}: {v} is not a fraction in [0, 1] (1% is 0.01)"
            ));
        }
    }
    let positives = [
        ("rollout.min_stage_minutes", file.rollout.min_stage_minutes),
        (
            "rollout.abort.max_error_rate_ratio",
            abort.max_error_rate_ratio,
        ),
        ("rollout.abort.max_latency_ratio", abort.max_latency_ratio),
        ("rollout.abort.min_requests", abort.min_requests),
    ];
    for (key, value) in positives {
        if let Some(v) = value
            && !(v >= 0.0 && v.is_finite())
        {
            return Err(format!("{key}: {v} must be a number >= 0"));
        }
    }
    if let Some(latency) = &abort.max_latency_ms {
        for (q, value) in [
            ("p50", latency.p50),
            ("p95", latency.p95),
            ("p99", latency.p99),
        ] {
            if let Some(v) = value
                && !(v >= 0.0 && v.is_finite())
            {
                return Err(format!(
                    "rollout.abort.max_latency_ms.{q}: {v} must be a number of milliseconds >= 0"
                ));
            }
        }
    }
    let limits = &file.limits;
    if !(1..=60_000).contains(&limits.timeout_ms) {
        return Err(format!(
            "limits.timeout_ms: {} is outside 1..=60000",
            limits.timeout_ms
        ));
    }
    if !(1..=MAX_MEMORY_MIB).contains(&limits.memory_mib) {
        return Err(format!(
            "limits.memory_mib: {} is outside 1..={MAX_MEMORY_MIB}",
            limits.memory_mib
        ));
    }
    if let Some(prometheus) = &file.sources.prometheus {
        prometheus.validate()?;
    }
    let mut names = HashSet::new();
    for (i, policy) in file.policies.iter().enumerate() {
        let at = format!("policy[{i}] ('{}')", policy.name);
        if policy.name.trim().is_empty() {
            return Err(format!("policy[{i}].name: must not be empty"));
        }
        if !names.insert(policy.name.as_str()) {
            return Err(format!("{at}: another policy has the same name"));
        }
        if policy.phases.is_empty() {
            return Err(format!("{at}: phases: list at least one phase"));
        }
        if policy.on_error == Some(Decision::Allow) {
            return Err(format!(
                "{at}: on_error = \"allow\" would let a broken policy pass; \
                 use mode = \"shadow\" for a policy that must not block"
            ));
        }
        if let Some(pin) = &policy.sha256
            && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "{at}: sha256: '{pin}' is not a hex sha256 (64 hex digits)"
            ));
        }
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" becomes
/// "unknown key 'x' (did you mean 'a'?)" when one candidate is close.
fn explain_toml_error(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let closest = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(unknown, c), *c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, name)) => format!("unknown key '{unknown}' (did you mean '{name}'?)"),
        None => format!(
            "unknown key '{unknown}' (expected one of: {})",
            candidates.join(", ")
        ),
    }
}

/// The JSON Schema of the gate file (`shipgate schema gate`).
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(GateFile)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let gate = parse(include_str!("../../examples/gate.toml")).unwrap();
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
    fn on_error_defaults_fail_closed_per_phase() {
        let gate = parse("name = \"g\"\n[[policy]]\nname = \"p\"\nmodule = \"m\"\nphases = [\"abort\", \"promotion\"]\n").unwrap();
        let policy = &gate.file.policies[0];
        assert_eq!(policy.on_error_for(Phase::Abort), Decision::Rollback);
        assert_eq!(policy.on_error_for(Phase::Promotion), Decision::Deny);
        assert_eq!(policy.config_json(), "{}");
    }
}
