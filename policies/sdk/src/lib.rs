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

#![deny(missing_docs)]

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
///
/// A policy declares the phases it decides ([`Policy::info`]) and decides
/// them from the snapshot and its config ([`Policy::evaluate`]); the host
/// calls it once per decision. Unit-test it natively with [`testing`]:
///
/// ```
/// use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Verdict, testing};
///
/// /// CI must have passed before a deployment starts.
/// pub struct CiGreen;
///
/// /// No settings: a gate that gives any is refused when it loads.
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// pub struct NoConfig {}
///
/// impl Policy for CiGreen {
///     type Config = NoConfig;
///
///     fn info() -> PolicyInfo {
///         PolicyInfo::new("ci-green", "0.1.0", "CI passed", &[Phase::Preflight])
///     }
///
///     fn evaluate(_: Phase, snapshot: &Snapshot, _: &NoConfig) -> Result<Verdict, String> {
///         let mut findings = Findings::new();
///         match snapshot.ci.as_ref().and_then(|ci| ci.status.as_deref()) {
///             Some(status) => {
///                 let failed = format!("CI status is '{status}'");
///                 findings.require("ci-status", status == "passed", "CI passed", failed, Decision::Deny);
///             }
///             None => {
///                 findings.missing("ci-status", "ci.status");
///             }
///         }
///         Ok(findings.verdict())
///     }
/// }
///
/// let snapshot = serde_json::json!({
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "ci": {"commit": "9f8d111", "status": "failed"}
/// });
/// let verdict = testing::evaluate::<CiGreen>(Phase::Preflight, &snapshot, &serde_json::json!({})).unwrap();
/// assert_eq!(verdict.decision, Decision::Deny);
/// assert_eq!(verdict.summary, "CI status is 'failed'");
/// ```
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
    /// What [`Policy::info`] returns: name, version, one sentence on what
    /// the policy checks, and the phases it evaluates.
    ///
    /// ```
    /// use shipgate_policy::{Phase, PolicyInfo};
    ///
    /// let info = PolicyInfo::new(
    ///     "change-freeze",
    ///     "1.2.0",
    ///     "no deployments during a declared change freeze",
    ///     &[Phase::Preflight, Phase::Promotion],
    /// );
    /// assert_eq!(info.name, "change-freeze");
    /// assert_eq!(info.phases, [Phase::Preflight, Phase::Promotion]);
    /// ```
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
///
/// The host has every policy check its config when it loads a gate, with
/// this function, so a typo in a gate file is an error before any rollout:
///
/// ```
/// # use shipgate_policy::{Phase, Policy, PolicyInfo, Snapshot, Verdict};
/// use shipgate_policy::parse_config;
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// pub struct Config {
///     max_error_rate: Option<f64>,
/// }
/// # pub struct ErrorBudget;
/// # impl Policy for ErrorBudget {
/// #     type Config = Config;
/// #     fn info() -> PolicyInfo { PolicyInfo::new("error-budget", "0.1.0", "", &[Phase::Abort]) }
/// #     fn evaluate(_: Phase, _: &Snapshot, _: &Config) -> Result<Verdict, String> { Err("unused".into()) }
/// # }
///
/// let config = parse_config::<ErrorBudget>(r#"{"max_error_rate": 0.02}"#).unwrap();
/// assert_eq!(config.max_error_rate, Some(0.02));
/// // A gate without a `config` table passes none.
/// assert_eq!(parse_config::<ErrorBudget>("").unwrap().max_error_rate, None);
/// let typo = parse_config::<ErrorBudget>(r#"{"max_eror_rate": 0.02}"#).unwrap_err();
/// assert!(typo.starts_with("config: unknown field `max_eror_rate`"), "{typo}");
/// ```
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
///
/// ```
/// # use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Unit, Verdict};
/// # #[derive(Default, serde::Deserialize)]
/// # #[serde(deny_unknown_fields)]
/// # pub struct Config { max_error_rate: Option<f64> }
/// # pub struct ErrorBudget;
/// # impl Policy for ErrorBudget {
/// #     type Config = Config;
/// #     fn info() -> PolicyInfo {
/// #         PolicyInfo::new("error-budget", "0.1.0", "canary error rate under a fixed budget", &[Phase::Abort])
/// #     }
/// #     fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
/// #         let mut findings = Findings::new();
/// #         let rate = snapshot.metrics.as_ref().and_then(|m| m.canary.as_ref()).and_then(|c| c.error_rate());
/// #         match rate {
/// #             Some(rate) => {
/// #                 let max = config.max_error_rate.unwrap_or(0.02);
/// #                 findings.at_most("error-budget", "canary error rate", rate, max, Unit::Percent, Decision::Rollback);
/// #             }
/// #             None => { findings.missing("error-budget", "metrics.canary"); }
/// #         }
/// #         Ok(findings.verdict())
/// #     }
/// # }
/// use shipgate_policy::{run_evaluate, wire};
///
/// // 533 errors in 13 000 canary requests: 4.1%, over the 2% budget.
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"canary": {"requests": 13000, "errors": 533}}
/// }"#).unwrap();
/// let encoded = wire::encode(&snapshot);
/// let verdict = run_evaluate::<ErrorBudget>(Phase::Abort, &encoded, "{}").unwrap();
/// assert_eq!(verdict.decision, Decision::Rollback);
///
/// let refused = run_evaluate::<ErrorBudget>(Phase::Preflight, &encoded, "{}").unwrap_err();
/// assert_eq!(refused, "policy 'error-budget' does not evaluate the preflight phase");
/// ```
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
///
/// ```
/// # use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Unit, Verdict};
/// # #[derive(Default, serde::Deserialize)]
/// # #[serde(deny_unknown_fields)]
/// # pub struct Config { max_error_rate: Option<f64> }
/// # pub struct ErrorBudget;
/// # impl Policy for ErrorBudget {
/// #     type Config = Config;
/// #     fn info() -> PolicyInfo {
/// #         PolicyInfo::new("error-budget", "0.1.0", "canary error rate under a fixed budget", &[Phase::Abort])
/// #     }
/// #     fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
/// #         let mut findings = Findings::new();
/// #         let rate = snapshot.metrics.as_ref().and_then(|m| m.canary.as_ref()).and_then(|c| c.error_rate());
/// #         match rate {
/// #             Some(rate) => {
/// #                 let max = config.max_error_rate.unwrap_or(0.02);
/// #                 findings.at_most("error-budget", "canary error rate", rate, max, Unit::Percent, Decision::Rollback);
/// #             }
/// #             None => { findings.missing("error-budget", "metrics.canary"); }
/// #         }
/// #         Ok(findings.verdict())
/// #     }
/// # }
/// use shipgate_policy::evaluate_json;
///
/// let snapshot = r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"canary": {"requests": 13000, "errors": 533}}
/// }"#;
/// // A budget of 5% allows the canary's 4.1%.
/// let verdict = evaluate_json::<ErrorBudget>(Phase::Abort, snapshot, r#"{"max_error_rate": 0.05}"#).unwrap();
/// assert_eq!(verdict.decision, Decision::Allow);
/// assert_eq!(verdict.summary, "canary error rate 4.1% is within 5.0%");
/// ```
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
///
/// ```
/// use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Verdict, testing};
///
/// /// No promotions while the gate declares a change freeze.
/// pub struct ChangeFreeze;
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// pub struct Config {
///     #[serde(default)]
///     frozen: bool,
/// }
///
/// impl Policy for ChangeFreeze {
///     type Config = Config;
///     fn info() -> PolicyInfo {
///         PolicyInfo::new("change-freeze", "0.1.0", "no promotions during a change freeze", &[Phase::Promotion])
///     }
///     fn evaluate(_: Phase, _: &Snapshot, config: &Config) -> Result<Verdict, String> {
///         let mut findings = Findings::new();
///         findings.require("change-freeze", !config.frozen, "no change freeze", "a change freeze is in effect", Decision::Deny);
///         Ok(findings.verdict())
///     }
/// }
///
/// shipgate_policy::export_policy!(ChangeFreeze);
///
/// // Natively the export is nothing, and the policy is a plain type.
/// let snapshot = serde_json::json!({"schema_version": 2, "now": "2026-12-23T10:00:00Z"});
/// let frozen = serde_json::json!({"frozen": true});
/// let verdict = testing::evaluate::<ChangeFreeze>(Phase::Promotion, &snapshot, &frozen).unwrap();
/// assert_eq!(verdict.decision, Decision::Deny);
/// ```
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
