//! # shipgate-policy: write deployment policies for shipgate
//!
//! A policy is a Rust type that implements [`Policy`], plus one line that
//! exports it as a WebAssembly component:
//!
//! ```
//! use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Unit, Verdict};
//!
//! #[derive(Default, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config { max_error_rate: Option<f64> }
//!
//! pub struct ErrorBudget;
//!
//! impl Policy for ErrorBudget {
//!     type Config = Config;
//!     fn info() -> PolicyInfo {
//!         PolicyInfo::new("error-budget", "0.1.0", "canary error rate under a fixed budget", &[Phase::Abort])
//!     }
//!     fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
//!         let mut findings = Findings::new();
//!         let rate = snapshot.metrics.as_ref().and_then(|m| m.canary.as_ref()).and_then(|c| c.error_rate());
//!         match rate {
//!             Some(rate) => {
//!                 let max = config.max_error_rate.unwrap_or(0.02);
//!                 findings.at_most("error-budget", "canary error rate", rate, max, Unit::Percent, Decision::Rollback);
//!             }
//!             None => { findings.missing("error-budget", "metrics.canary"); }
//!         }
//!         Ok(findings.verdict())
//!     }
//! }
//!
//! shipgate_policy::export_policy!(ErrorBudget);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`); unit-test it natively with [`testing::evaluate`].

pub mod checks;
mod findings;
mod format;
pub mod judge;
pub mod snapshot;
pub mod testing;
mod time;
mod verdict;
pub mod wire;

pub use findings::Findings;
pub use format::{Unit, duration, percentile, ratio};
/// The calendar library the SDK's time functions use, for what they do not
/// cover (spans, civil dates, rounding). Its clock functions read the
/// sandbox's clock, which stands still at the snapshot's `now`.
pub use jiff;
pub use snapshot::Snapshot;
pub use time::{LocalWindow, Timestamp, time_zone, weekday};
pub use verdict::{Bound, Decision, Finding, Phase, PolicyInfo, Verdict};

use serde::de::DeserializeOwned;

/// A deployment policy.
pub trait Policy {
    /// The policy's `config` table from the gate file. Use
    /// `#[serde(deny_unknown_fields)]` so a typo in a gate file is an error
    /// when the gate is loaded.
    type Config: DeserializeOwned;

    /// Name, version, description and the phases this policy evaluates.
    fn info() -> PolicyInfo;

    /// Decides one phase. Only called for phases listed in [`Policy::info`].
    /// An `Err` is a policy fault: the host fails closed.
    fn evaluate(
        phase: Phase,
        snapshot: &Snapshot,
        config: &Self::Config,
    ) -> Result<Verdict, String>;
}

impl PolicyInfo {
    pub fn new(name: &str, version: &str, description: &str, phases: &[Phase]) -> Self {
        PolicyInfo {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            phases: phases.to_vec(),
        }
    }
}

/// Parses a policy's config JSON (`{}` when the gate gives none).
pub fn parse_config<P: Policy>(config: &str) -> Result<P::Config, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(config).map_err(|e| format!("config: {e}"))
}

/// What the exported `evaluate` does: decode the snapshot the host encoded
/// ([`wire`]), parse the config, refuse a phase the policy does not declare,
/// run the policy.
pub fn run_evaluate<P: Policy>(
    phase: Phase,
    snapshot: &[u8],
    config: &str,
) -> Result<Verdict, String> {
    evaluate_with::<P>(phase, config, || wire::decode(snapshot))
}

/// Evaluates a policy natively on snapshot JSON (with its `gate`): the same
/// checks as [`run_evaluate`], for tools and benchmarks that run a policy
/// as a plain library.
pub fn evaluate_json<P: Policy>(
    phase: Phase,
    snapshot: &str,
    config: &str,
) -> Result<Verdict, String> {
    evaluate_with::<P>(phase, config, || Snapshot::from_json(snapshot))
}

fn evaluate_with<P: Policy>(
    phase: Phase,
    config: &str,
    snapshot: impl FnOnce() -> Result<Snapshot, String>,
) -> Result<Verdict, String> {
    if !P::info().phases.contains(&phase) {
        return Err(format!(
            "policy '{}' does not evaluate the {} phase",
            P::info().name,
            phase.as_str()
        ));
    }
    let config = parse_config::<P>(config)?;
    P::evaluate(phase, &snapshot()?, &config)
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod component;

/// Exports a [`Policy`] as the `shipgate:policy/policy` world. Write it once,
/// at the root of the policy crate. It expands to nothing in native builds,
/// so the same crate is unit-tested with plain `cargo test`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct ShipgateExport;
            impl $crate::component::Guest for ShipgateExport {
                fn describe() -> $crate::component::PolicyInfo {
                    $crate::component::describe::<$policy>()
                }
                fn validate_config(config: String) -> Result<(), String> {
                    $crate::parse_config::<$policy>(&config).map(|_| ())
                }
                fn evaluate(
                    phase: $crate::component::Phase,
                    snapshot: Vec<u8>,
                    config: String,
                ) -> Result<$crate::component::Verdict, String> {
                    $crate::component::evaluate::<$policy>(phase, &snapshot, &config)
                }
            }
            $crate::component::bindings::__export_policy_world!(ShipgateExport with_types_in $crate::component::bindings);
        };
    };
}
