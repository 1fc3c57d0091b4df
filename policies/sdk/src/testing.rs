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
pub fn finding<P: Policy>(phase: Phase, snapshot: &Value, config: &Value, check: &str) -> Finding {
    let verdict =
        evaluate::<P>(phase, snapshot, config).unwrap_or_else(|e| panic!("policy fault: {e}"));
    verdict
        .finding(check)
        .unwrap_or_else(|| panic!("no finding '{check}' in {:#?}", verdict.findings))
        .clone()
}

/// Asserts a finding's decision, observed value and threshold.
#[track_caller]
pub fn assert_finding(finding: &Finding, decision: Decision, observed: &str, threshold: &str) {
    assert_eq!(finding.decision, decision, "{finding:?}");
    assert_eq!(finding.observed.as_deref(), Some(observed), "{finding:?}");
    assert_eq!(finding.threshold.as_deref(), Some(threshold), "{finding:?}");
}

/// Sets `value` at a dotted `path` in a JSON object ("metrics.canary.errors"),
/// creating objects on the way. Handy to derive a failing case from a good
/// snapshot in one line.
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
pub fn with_default_gate(snapshot_json: &str) -> Value {
    let mut snapshot: Value =
        serde_json::from_str(snapshot_json).expect("example snapshot is JSON");
    set(&mut snapshot, "gate", default_gate());
    snapshot
}
