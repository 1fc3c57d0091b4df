//! Helpers for unit-testing a policy natively, with plain `cargo test`.
//!
//! ```
//! # use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Verdict};
//! # struct AllowAll;
//! # impl Policy for AllowAll {
//! #     type Config = serde_json::Value;
//! #     fn info() -> PolicyInfo { PolicyInfo::new("allow-all", "0.1.0", "", &[Phase::Abort]) }
//! #     fn evaluate(_: Phase, _: &Snapshot, _: &serde_json::Value) -> Result<Verdict, String> {
//! #         let mut f = Findings::new(); f.allow("ok", "fine"); Ok(f.verdict())
//! #     }
//! # }
//! use shipgate_policy::testing;
//! let snapshot = serde_json::json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z"});
//! let verdict = testing::evaluate::<AllowAll>(Phase::Abort, &snapshot, &serde_json::json!({})).unwrap();
//! assert_eq!(verdict.decision, Decision::Allow);
//! ```

use serde_json::Value;

use serde::Deserialize;

use crate::{Decision, Finding, Phase, Policy, Snapshot, Verdict};

/// Evaluates a policy exactly as the exported component would: the snapshot
/// goes through the binary encoding the host sends ([`crate::wire`]) and the
/// config through JSON text, so config typos and phase checks behave as they
/// will in the host.
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
/// use serde_json::json;
/// use shipgate_policy::testing;
///
/// let snapshot = json!({
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"canary": {"requests": 13000, "errors": 533}}
/// });
/// let verdict = testing::evaluate::<ErrorBudget>(Phase::Abort, &snapshot, &json!({})).unwrap();
/// assert_eq!(verdict.decision, Decision::Rollback);
/// // A typo in the config fails here as it fails when the host loads the gate.
/// let typo = testing::evaluate::<ErrorBudget>(Phase::Abort, &snapshot, &json!({"max_eror_rate": 0.05}));
/// assert!(typo.unwrap_err().starts_with("config: unknown field `max_eror_rate`"));
/// ```
pub fn evaluate<P: Policy>(
    phase: Phase,
    snapshot: &Value,
    config: &Value,
) -> Result<Verdict, String> {
    let mut snapshot = Snapshot::deserialize(snapshot).map_err(|e| format!("snapshot: {e}"))?;
    snapshot.drop_fields_of_later_schemas();
    crate::run_evaluate::<P>(phase, &crate::wire::encode(&snapshot), &config.to_string())
}

/// Evaluates and returns the finding with id `check`; panics, listing the
/// findings there are, when the policy reported none (or faulted).
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
/// use serde_json::json;
/// use shipgate_policy::testing;
///
/// let snapshot = json!({
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"canary": {"requests": 13000, "errors": 130}}
/// });
/// let budget = testing::finding::<ErrorBudget>(Phase::Abort, &snapshot, &json!({}), "error-budget");
/// assert_eq!(budget.decision, Decision::Allow);
/// assert_eq!(budget.message, "canary error rate 1.0% is within 2.0%");
/// ```
pub fn finding<P: Policy>(phase: Phase, snapshot: &Value, config: &Value, check: &str) -> Finding {
    let verdict =
        evaluate::<P>(phase, snapshot, config).unwrap_or_else(|e| panic!("policy fault: {e}"));
    verdict
        .finding(check)
        .unwrap_or_else(|| panic!("no finding '{check}' in {:#?}", verdict.findings))
        .clone()
}

/// Asserts a finding's decision, observed value and threshold.
///
/// ```
/// use shipgate_policy::testing::assert_finding;
/// use shipgate_policy::{Decision, Findings, Unit};
///
/// let mut findings = Findings::new();
/// let p99 = findings.at_most("latency-p99", "canary p99 latency", 1240.0, 800.0, Unit::Millis, Decision::Rollback);
/// assert_finding(p99, Decision::Rollback, "1240 ms", "<= 800 ms");
/// ```
#[track_caller]
pub fn assert_finding(finding: &Finding, decision: Decision, observed: &str, threshold: &str) {
    assert_eq!(finding.decision, decision, "{finding:?}");
    assert_eq!(finding.observed.as_deref(), Some(observed), "{finding:?}");
    assert_eq!(finding.threshold.as_deref(), Some(threshold), "{finding:?}");
}

/// Sets `value` at a dotted `path` in a JSON object ("metrics.canary.errors"),
/// creating objects on the way. Handy to derive a failing case from a good
/// snapshot in one line.
///
/// ```
/// use serde_json::json;
/// use shipgate_policy::testing::set;
///
/// let mut snapshot = json!({"schema_version": 2, "now": "2026-11-26T14:00:00Z"});
/// set(&mut snapshot, "metrics.canary.errors", json!(533));
/// assert_eq!(snapshot["metrics"]["canary"]["errors"], 533);
/// ```
pub fn set(json: &mut Value, path: &str, value: Value) {
    let mut node = json;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let map = node.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        node = map.entry(part.to_string()).or_insert(Value::Null);
    }
}

/// Removes the field at a dotted `path`, if present.
///
/// ```
/// use serde_json::json;
/// use shipgate_policy::testing::remove;
///
/// let mut snapshot = json!({"ci": {"commit": "9f8d111", "status": "passed"}});
/// remove(&mut snapshot, "ci.status");
/// assert_eq!(snapshot, json!({"ci": {"commit": "9f8d111"}}));
/// // A path that is not there changes nothing.
/// remove(&mut snapshot, "deployment.commit");
/// assert_eq!(snapshot, json!({"ci": {"commit": "9f8d111"}}));
/// ```
pub fn remove(json: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (
            json.pointer_mut(&format!("/{}", parent.replace('.', "/"))),
            last,
        ),
        None => (Some(json), path),
    };
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

/// The `gate` object the host adds for its built-in default gate: stages
/// 5/10/25/50/100, 15 minutes a stage, and the default abort thresholds.
/// Absolute latency limits are service-specific, so the default declares
/// none; tests that need them set `gate.rollout.abort.max_latency_ms`.
///
/// ```
/// use serde_json::json;
/// use shipgate_policy::testing::{default_gate, set};
///
/// let mut gate = default_gate();
/// assert_eq!(gate["rollout"]["abort"]["max_error_rate"], 0.01);
/// set(&mut gate, "rollout.abort.max_latency_ms.p99", json!(800));
/// assert_eq!(gate["rollout"]["abort"]["max_latency_ms"], json!({"p99": 800}));
/// ```
pub fn default_gate() -> Value {
    serde_json::json!({
        "name": "default",
        "sha256": "0000000000000000000000000000000000000000000000000000000000000000",
        "rollout": {
            "stages": [5, 10, 25, 50, 100],
            "min_stage_minutes": 15,
            "abort": {
                "max_error_rate": 0.01,
                "max_error_rate_ratio": 1.5,
                "max_latency_ratio": 1.3,
                "max_business_drop": 0.1,
                "min_requests": 500
            }
        }
    })
}

/// Parses an example snapshot and adds [`default_gate`], as the host would.
///
/// ```
/// use serde::Deserialize;
/// use shipgate_policy::Snapshot;
/// use shipgate_policy::testing::with_default_gate;
///
/// let json = with_default_gate(r#"{"schema_version": 2, "now": "2026-11-26T14:00:00Z"}"#);
/// let snapshot = Snapshot::deserialize(&json).unwrap();
/// assert_eq!(snapshot.plan().stages, [5.0, 10.0, 25.0, 50.0, 100.0]);
/// assert_eq!(snapshot.plan().min_stage_minutes, Some(15.0));
/// ```
pub fn with_default_gate(snapshot_json: &str) -> Value {
    let mut snapshot: Value =
        serde_json::from_str(snapshot_json).expect("example snapshot is JSON");
    set(&mut snapshot, "gate", default_gate());
    snapshot
}
