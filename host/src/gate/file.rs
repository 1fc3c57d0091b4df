//! The gate file as written (TOML): its tables and keys, with the JSON
//! Schema `shipgate schema gate` prints. The rollout plan and thresholds are
//! the SDK's own types, the very ones policies receive.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shipgate_policy::snapshot::RolloutPlan;
use shipgate_policy::{Decision, Phase};

use crate::modules::reference::ModuleRef;
use crate::runtime::Limits;
use crate::sources::SourcesConfig;

/// A gate file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GateFile {
    /// Names the gate in every decision.
    pub(crate) name: String,
    /// The staged plan and abort thresholds, declared before the rollout.
    #[serde(default)]
    pub(crate) rollout: RolloutPlan,
    /// Per-evaluation limits for every policy of the gate.
    #[serde(default)]
    pub(crate) limits: LimitsSection,
    /// The policies, each bound to one or more phases.
    #[serde(default, rename = "policy")]
    pub(crate) policies: Vec<PolicyEntry>,
    /// Where server mode finds evidence for requests that send no snapshot.
    #[serde(default)]
    pub(crate) sources: SourcesConfig,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Wall-clock budget of one policy evaluation, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub(crate) timeout_ms: u64,
    /// Memory a policy may use, in MiB.
    #[serde(default = "default_memory_mib")]
    pub(crate) memory_mib: u64,
    /// The largest policy module read, in MiB (checked before reading).
    #[serde(default = "default_max_module_mib")]
    pub(crate) max_module_mib: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
            max_module_mib: default_max_module_mib(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    Limits::default().timeout_ms
}

fn default_memory_mib() -> u64 {
    Limits::default().memory_mib
}

/// The largest module read when a gate sets no `max_module_mib`: real
/// policies are a few hundred KiB.
pub(crate) const DEFAULT_MAX_MODULE_MIB: u64 = 16;

fn default_max_module_mib() -> u64 {
    DEFAULT_MAX_MODULE_MIB
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

/// One `[[policy]]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyEntry {
    /// Names the policy in decisions; unique within the gate.
    pub(crate) name: String,
    /// `builtin:NAME`, a path to a .wasm component relative to the gate
    /// file's directory, `oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST`, or
    /// an `https://` URL (with `sha256`).
    #[schemars(with = "String")]
    pub(crate) module: ModuleRef,
    /// Pin: the module's hex sha256. A module whose digest differs is refused.
    pub(crate) sha256: Option<String>,
    /// The phases this policy evaluates.
    #[schemars(schema_with = "phases_schema")]
    pub(crate) phases: Vec<Phase>,
    /// The decision when the policy faults. Default: deny, in the abort phase
    /// rollback.
    #[schemars(with = "Option<OnError>")]
    pub(crate) on_error: Option<Decision>,
    #[serde(default)]
    pub(crate) mode: Mode,
    /// Passed to the policy as JSON.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub(crate) config: Option<toml::Table>,
    /// Require a cosign signature by this key (modules from registries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verify: Option<Verify>,
}

/// `phases`: the names of [`Phase::ALL`], so an editor completes them and
/// flags a misspelt one as shipgate does.
fn phases_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Phase::ALL.iter().map(|phase| phase.as_str()).collect();
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "string", "enum": names },
    })
}

/// The schema of `on_error`: the decisions a gate may name there. `allow`
/// is refused (a broken policy must not pass), so the schema leaves it out.
struct OnError;

impl JsonSchema for OnError {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OnError".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names = [Decision::Deny, Decision::Rollback].map(Decision::as_str);
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// `verify = { key = "cosign.pub" }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Verify {
    /// An ECDSA P-256 public key in PEM (`cosign.pub`), relative to the gate
    /// file's directory or absolute.
    pub(crate) key: String,
}

impl PolicyEntry {
    /// The decision this policy yields when it faults.
    pub(crate) fn on_error_for(&self, phase: Phase) -> Decision {
        self.on_error.unwrap_or(match phase {
            Phase::Abort => Decision::Rollback,
            _ => Decision::Deny,
        })
    }

    /// The policy's config as JSON text (`{}` when none).
    pub(crate) fn config_json(&self) -> String {
        match &self.config {
            Some(table) => serde_json::to_string(table).expect("TOML tables are JSON"),
            None => "{}".to_string(),
        }
    }
}
