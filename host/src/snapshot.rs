//! Snapshot schema v1: validation of what a CD system sends, with the JSON
//! path of every problem.
//!
//! The typed form is the SDK's [`shipgate_policy::Snapshot`], so host and
//! policies read one definition. The host is stricter than a policy: it
//! checks types, timestamps and counts, and refuses a snapshot that carries
//! `gate` (only the host may add the declared thresholds).

use serde_json::Value;
use sha2::{Digest, Sha256};
use shipgate_policy::{Snapshot, Timestamp};

/// The snapshot schema version this host understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A snapshot that passed validation, kept as the JSON the caller sent.
#[derive(Debug, Clone)]
pub struct ValidSnapshot {
    /// The snapshot as sent, without the host's `gate` object.
    pub json: Value,
    /// sha256 of the bytes as received.
    pub sha256: String,
    /// The snapshot's `now`: the only clock policies see.
    pub now: Timestamp,
}

/// Why a snapshot was refused. `path` is the JSON path of the problem
/// (empty for the document itself).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct SnapshotError {
    pub path: String,
    pub message: String,
}

impl SnapshotError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        SnapshotError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses and validates a snapshot.
pub fn parse(bytes: &[u8]) -> Result<ValidSnapshot, SnapshotError> {
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|e| SnapshotError::at("", format!("not valid JSON: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    validate(json, sha256)
}

/// Validates an already parsed snapshot (a server's request body).
pub fn validate(json: Value, sha256: String) -> Result<ValidSnapshot, SnapshotError> {
    let Some(object) = json.as_object() else {
        return Err(SnapshotError::at("", "expected a JSON object"));
    };
    if object.contains_key("gate") {
        return Err(SnapshotError::at(
            "gate",
            "a snapshot may not carry `gate`: the host adds the gate's declared plan and thresholds",
        ));
    }
    match object.get("schema_version") {
        Some(Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION.into()) => {}
        Some(other) => {
            return Err(SnapshotError::at(
                "schema_version",
                format!(
                    "unsupported schema version {other}; this shipgate reads version {SCHEMA_VERSION}"
                ),
            ));
        }
        None => {
            return Err(SnapshotError::at(
                "schema_version",
                "missing field (expected 1)",
            ));
        }
    }
    let typed: Snapshot = serde_path_to_error::deserialize(&json).map_err(|e| {
        let path = e.path().to_string();
        SnapshotError::at(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    let now = check_timestamps(&typed)?;
    check_counts(&typed)?;
    Ok(ValidSnapshot { json, sha256, now })
}

fn timestamp(path: &str, text: Option<&str>) -> Result<Option<Timestamp>, SnapshotError> {
    match text {
        None => Ok(None),
        Some(text) => Timestamp::parse(text).map(Some).ok_or_else(|| {
            SnapshotError::at(
                path,
                format!("'{text}' is not an RFC 3339 timestamp (like 2026-11-26T14:00:00Z)"),
            )
        }),
    }
}

fn check_timestamps(s: &Snapshot) -> Result<Timestamp, SnapshotError> {
    let now = timestamp("now", Some(&s.now))?.expect("given Some");
    if let Some(d) = &s.deployment {
        timestamp("deployment.deployed_at", d.deployed_at.as_deref())?;
    }
    if let Some(plan) = &s.rollback_plan {
        timestamp(
            "rollback_plan.last_tested_at",
            plan.last_tested_at.as_deref(),
        )?;
    }
    if let Some(rollout) = &s.rollout {
        timestamp(
            "rollout.stage_started_at",
            rollout.stage_started_at.as_deref(),
        )?;
    }
    for (i, alert) in s.alerts.iter().flatten().enumerate() {
        timestamp(&format!("alerts[{i}].since"), alert.since.as_deref())?;
    }
    Ok(now)
}

fn check_counts(s: &Snapshot) -> Result<(), SnapshotError> {
    let Some(metrics) = &s.metrics else {
        return Ok(());
    };
    non_negative("metrics.window_seconds", metrics.window_seconds)?;
    for (name, cohort) in [("baseline", &metrics.baseline), ("canary", &metrics.canary)] {
        let Some(c) = cohort else { continue };
        let at = |field: &str| format!("metrics.{name}.{field}");
        non_negative(&at("requests"), c.requests)?;
        non_negative(&at("errors"), c.errors)?;
        if let (Some(errors), Some(requests)) = (c.errors, c.requests)
            && errors > requests
        {
            return Err(SnapshotError::at(
                at("errors"),
                format!(
                    "{errors} errors out of {requests} requests: errors cannot exceed requests"
                ),
            ));
        }
        if let Some(latency) = &c.latency_ms {
            for (q, value) in latency.quantiles() {
                non_negative(&at(&format!("latency_ms.{q}")), value)?;
            }
        }
        for (event, &count) in c.business.iter().flatten() {
            non_negative(&at(&format!("business.{event}")), Some(count))?;
        }
    }
    Ok(())
}

fn non_negative(path: &str, value: Option<f64>) -> Result<(), SnapshotError> {
    match value {
        Some(v) if v < 0.0 || !v.is_finite() => Err(SnapshotError::at(
            path,
            format!("{v} is negative; expected a count or duration >= 0"),
        )),
        _ => Ok(()),
    }
}

/// The JSON Schema of snapshot v1 (`shipgate schema snapshot`).
pub fn schema() -> Value {
    let schema = schemars::schema_for!(Snapshot);
    serde_json::to_value(schema).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Value {
        serde_json::from_str(include_str!("../../examples/snapshots/abort-rollback.json")).unwrap()
    }

    fn error_of(json: Value) -> String {
        validate(json, String::new()).unwrap_err().to_string()
    }

    #[test]
    fn accepts_the_examples() {
        let parsed = validate(example(), "x".into()).unwrap();
        assert_eq!(
            parsed.now,
            Timestamp::parse("2026-11-26T14:00:00Z").unwrap()
        );
    }

    #[test]
    fn wrong_types_name_the_json_path() {
        let mut s = example();
        s["metrics"]["canary"]["errors"] = "many".into();
        assert_eq!(
            error_of(s),
            "metrics.canary.errors: invalid type: string \"many\", expected f64"
        );
        let mut s = example();
        s["alerts"][0]["expected"] = 3.into();
        assert_eq!(
            error_of(s),
            "alerts[0].expected: invalid type: integer `3`, expected a boolean"
        );
    }

    #[test]
    fn refuses_a_snapshot_carrying_gate() {
        let mut s = example();
        s["gate"] = serde_json::json!({"rollout": {"abort": {"max_error_rate": 1.0}}});
        assert!(error_of(s).starts_with("gate: a snapshot may not carry `gate`"));
    }

    #[test]
    fn refuses_bad_timestamps_counts_and_versions() {
        let mut s = example();
        s["rollout"]["stage_started_at"] = "13:44".into();
        assert_eq!(
            error_of(s),
            "rollout.stage_started_at: '13:44' is not an RFC 3339 timestamp (like 2026-11-26T14:00:00Z)"
        );
        let mut s = example();
        s["metrics"]["canary"]["errors"] = 20000.into();
        assert!(
            error_of(s).starts_with("metrics.canary.errors: 20000 errors out of 13000 requests")
        );
        let mut s = example();
        s["metrics"]["baseline"]["latency_ms"]["p99"] = (-1).into();
        assert!(error_of(s).starts_with("metrics.baseline.latency_ms.p99: -1 is negative"));
        let mut s = example();
        s["schema_version"] = 2.into();
        assert!(error_of(s).starts_with("schema_version: unsupported schema version 2"));
        assert_eq!(error_of(Value::Array(vec![])), "expected a JSON object");
    }

    #[test]
    fn malformed_json_is_refused_with_its_position() {
        let err = parse(b"{\"schema_version\": 1,\n \"now\": }").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not valid JSON: expected value at line 2 column 9"
        );
    }

    #[test]
    fn schema_describes_the_fields_but_not_gate() {
        let schema = schema().to_string();
        assert!(schema.contains("stage_started_at"));
        assert!(!schema.contains("\"gate\""));
    }
}
