//! Snapshot schema (v1 and v2): validation of what a CD system sends, with the JSON
//! path of every problem.
//!
//! The typed form is the SDK's [`shipgate_policy::Snapshot`], so host and
//! policies read one definition. The host is stricter than a policy: it
//! checks types, timestamps and counts, and refuses a snapshot that carries
//! `gate` (only the host may add the declared thresholds).
//!
//! The text is parsed once, straight into the typed form; policies get that
//! typed form in the contract's binary encoding ([`shipgate_policy::wire`]),
//! never JSON to parse again.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use shipgate_policy::snapshot::{Metrics, SCHEMA_VERSION, SCHEMA_VERSIONS};
use shipgate_policy::wire::{self, EncodedGate};
use shipgate_policy::{Snapshot, Timestamp};

/// A snapshot that passed validation: the JSON text the caller sent (for
/// records and digests) and its typed form (for policies).
#[derive(Debug, Clone)]
pub struct ValidSnapshot {
    /// The snapshot as sent (a JSON object), without the host's `gate`; for
    /// a snapshot the host built ([`from_typed`]), its serialization, made
    /// when first asked for.
    text: std::sync::OnceLock<String>,
    typed: Snapshot,
    /// sha256 of the bytes as received; for a snapshot the host built,
    /// of what it was built from ([`from_typed`]).
    pub sha256: String,
    /// The snapshot's `now`: the only clock policies see.
    pub now: Timestamp,
}

impl ValidSnapshot {
    /// The snapshot as a JSON value (tests; not on the hot path).
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> Value {
        serde_json::from_str(self.text()).expect("validated JSON")
    }

    /// The typed form policies receive.
    pub(crate) fn typed(&self) -> &Snapshot {
        &self.typed
    }

    /// The snapshot's JSON text, exactly as received (or, built by the
    /// host, as serialized).
    pub(crate) fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let mut value = serde_json::to_value(&self.typed).expect("a snapshot serializes");
            // The host's `gate` is never in a snapshot's text, not even as
            // null: `parse` refuses a snapshot that carries the key.
            if let Some(object) = value.as_object_mut() {
                object.remove("gate");
            }
            value.to_string()
        })
    }

    /// The snapshot with the gate's `gate` object added, as policies
    /// receive it: in the contract's encoding, built once per decision and
    /// shared by every policy of the phase.
    pub fn encode_with_gate(&self, gate: &EncodedGate) -> Vec<u8> {
        wire::encode_with_gate(&self.typed, gate)
    }

    /// The snapshot cut into `parts` snapshots by metric: each series goes
    /// to the part `series_part` names for its key, each count to the part
    /// `count_part` names (to none for `None`); everything else is in every
    /// part. The series move, they are not copied. Each part keeps the
    /// whole's digest and `now`: a part is judged on its own (a large canary
    /// in several instances at once), never recorded on its own.
    pub(crate) fn split_metrics(
        mut self,
        parts: usize,
        series_part: impl Fn(&str) -> Option<usize>,
        count_part: impl Fn(&str) -> Option<usize>,
    ) -> Vec<ValidSnapshot> {
        let metrics = self.typed.metrics.as_mut();
        let (series, counts) = metrics.map_or((None, None), |m| (m.series.take(), m.counts.take()));
        let mut split: Vec<ValidSnapshot> = (0..parts)
            .map(|_| {
                let mut part = ValidSnapshot {
                    text: std::sync::OnceLock::new(),
                    typed: self.typed.clone(),
                    sha256: self.sha256.clone(),
                    now: self.now,
                };
                if let Some(metrics) = part.typed.metrics.as_mut() {
                    metrics.series = series.as_ref().map(|_| Default::default());
                    metrics.counts = counts.as_ref().map(|_| Default::default());
                }
                part
            })
            .collect();
        distribute(series, &mut split, series_part, |m| m.series.as_mut());
        distribute(counts, &mut split, count_part, |m| m.counts.as_mut());
        split
    }

    /// [`Self::encode_with_gate`] in encoding version 2, for policies
    /// built for contract 0.3.0.
    pub(crate) fn encode_v2_with_gate(&self, gate: &EncodedGate) -> Vec<u8> {
        wire::encode_v2_with_gate(&self.typed, gate)
    }

    /// [`Self::encode_with_gate`] in encoding version 1, for policies
    /// built for contract 0.2.0.
    pub(crate) fn encode_v1_with_gate(&self, gate: &EncodedGate) -> Vec<u8> {
        wire::encode_v1_with_gate(&self.typed, gate)
    }
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

/// Moves each entry into the map `select` picks in the part `part_of`
/// names for its key; an entry of no part is dropped.
fn distribute<T>(
    entries: Option<BTreeMap<String, T>>,
    split: &mut [ValidSnapshot],
    part_of: impl Fn(&str) -> Option<usize>,
    select: impl Fn(&mut Metrics) -> Option<&mut BTreeMap<String, T>>,
) {
    for (key, value) in entries.into_iter().flatten() {
        let part = part_of(&key).and_then(|part| split.get_mut(part));
        if let Some(map) = part.and_then(|p| select(p.typed.metrics.as_mut()?)) {
            map.insert(key, value);
        }
    }
}

/// Parses and validates a snapshot.
pub fn parse(bytes: &[u8]) -> Result<ValidSnapshot, SnapshotError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| SnapshotError::at("", format!("not valid UTF-8 text: {e}")))?;
    parse_text(text.to_string(), hex::encode(Sha256::digest(bytes)))
}

/// Validates a snapshot's text under the digest it was received with (a
/// decision log record written before records kept the exact bytes).
pub(crate) fn with_digest(text: &str, sha256: String) -> Result<ValidSnapshot, SnapshotError> {
    parse_text(text.to_string(), sha256)
}

fn parse_text(text: String, sha256: String) -> Result<ValidSnapshot, SnapshotError> {
    if !text.trim_start().starts_with('{') {
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(not_json)?;
        return Err(SnapshotError::at("", "expected a JSON object"));
    }
    // The common case, valid input, takes the plain parser; only a refused
    // snapshot is parsed again, slower, to find the path of the problem.
    let mut typed: Snapshot = match serde_json::from_str(&text) {
        Ok(typed) => typed,
        Err(error) => match without_v2_fields_of_v1(&text) {
            // A v1 snapshot's keys named like v2's facts are unknown keys
            // to v1, whatever they hold.
            Some(typed) => typed,
            None => return Err(locate_error(&text, error)),
        },
    };
    if typed.gate.is_some() {
        return Err(SnapshotError::at(
            "gate",
            "a snapshot may not carry `gate`: the host adds the gate's declared plan and thresholds",
        ));
    }
    if !SCHEMA_VERSIONS.contains(&typed.schema_version) {
        return Err(SnapshotError::at(
            "schema_version",
            format!(
                "unsupported schema version {}; this shipgate reads versions 1 and \
                 {SCHEMA_VERSION}",
                typed.schema_version
            ),
        ));
    }
    typed.drop_fields_of_later_schemas();
    validated(typed, std::sync::OnceLock::from(text), sha256)
}

/// Validates a snapshot the host built from another format (a Kayenta
/// request's series), under the digest of what it was built from; its text
/// is written only if a record asks for it.
pub(crate) fn from_typed(typed: Snapshot, sha256: String) -> Result<ValidSnapshot, SnapshotError> {
    validated(typed, std::sync::OnceLock::new(), sha256)
}

/// The checks a typed snapshot must pass beyond its types.
fn validated(
    typed: Snapshot,
    text: std::sync::OnceLock<String>,
    sha256: String,
) -> Result<ValidSnapshot, SnapshotError> {
    let now = check_timestamps(&typed)?;
    check_counts(&typed)?;
    check_series(&typed)?;
    Ok(ValidSnapshot {
        text,
        typed,
        sha256,
        now,
    })
}

/// A v1 snapshot that the typed parser refused only because of keys v1 does
/// not define: parsed again without them. `None` for anything else.
fn without_v2_fields_of_v1(text: &str) -> Option<Snapshot> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    let object = value.as_object_mut()?;
    if object.get("schema_version")?.as_u64()? != 1 {
        return None;
    }
    for field in Snapshot::V2_FIELDS {
        object.remove(field);
    }
    serde_json::from_value(value).ok()
}

/// Why the text is not a valid snapshot, with the JSON path of the
/// problem when the path-tracking parser finds one.
fn locate_error(text: &str, plain: serde_json::Error) -> SnapshotError {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let (path, error) = match serde_path_to_error::deserialize::<_, Snapshot>(&mut deserializer) {
        Err(error) => (error.path().to_string(), error.into_inner()),
        Ok(_) => (String::new(), deserializer.end().err().unwrap_or(plain)),
    };
    if error.is_syntax() || error.is_eof() {
        not_json(error)
    } else {
        SnapshotError::at(
            if path == "." { String::new() } else { path },
            error.to_string(),
        )
    }
}

fn not_json(error: serde_json::Error) -> SnapshotError {
    SnapshotError::at("", format!("not valid JSON: {error}"))
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
    if let Some(rollback) = &s.rollback {
        timestamp("rollback.started_at", rollback.started_at.as_deref())?;
        timestamp("rollback.completed_at", rollback.completed_at.as_deref())?;
    }
    for (i, journey) in s.user_journeys.iter().flatten().enumerate() {
        let at = format!("user_journeys[{i}].verified_at");
        timestamp(&at, journey.verified_at.as_deref())?;
    }
    Ok(now)
}

fn check_counts(s: &Snapshot) -> Result<(), SnapshotError> {
    if let Some(plan) = &s.rollback_plan {
        non_negative("rollback_plan.estimated_seconds", plan.estimated_seconds)?;
        non_negative(
            "rollback_plan.tested_duration_seconds",
            plan.tested_duration_seconds,
        )?;
    }
    if let Some(metrics) = &s.metrics {
        non_negative("metrics.window_seconds", metrics.window_seconds)?;
    }
    let metrics = s.metrics.as_ref();
    let cohorts = [
        (
            "metrics.baseline",
            metrics.and_then(|m| m.baseline.as_ref()),
        ),
        ("metrics.canary", metrics.and_then(|m| m.canary.as_ref())),
        (
            "rollback.metrics",
            s.rollback.as_ref().and_then(|r| r.metrics.as_ref()),
        ),
    ];
    for (name, cohort) in cohorts {
        let Some(c) = cohort else { continue };
        let at = |field: &str| format!("{name}.{field}");
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

/// The most points one cohort's series may hold: a week at one-minute
/// steps. Judging cost grows with it, and a rollout stage is far shorter.
pub(crate) const MAX_SERIES_POINTS: usize = 7 * 24 * 60;

/// Time series: a positive step, an RFC 3339 start, each cohort within
/// [`MAX_SERIES_POINTS`]; counts: events out of
/// exposures, neither negative, events no more than exposures.
fn check_series(s: &Snapshot) -> Result<(), SnapshotError> {
    let Some(metrics) = &s.metrics else {
        return Ok(());
    };
    for (name, series) in metrics.series.iter().flatten() {
        let at = |field: &str| format!("metrics.series.{name}.{field}");
        if !(series.step_seconds > 0.0 && series.step_seconds.is_finite()) {
            return Err(SnapshotError::at(
                at("step_seconds"),
                format!(
                    "{} is not a step; expected seconds > 0",
                    series.step_seconds
                ),
            ));
        }
        timestamp(&at("start"), Some(&series.start))?;
        // Both start on one grid; a cohort may end earlier (a Kayenta pair
        // of unequal length): steps are paired while both have them.
        for (cohort, points) in [("baseline", &series.baseline), ("canary", &series.canary)] {
            if points.len() > MAX_SERIES_POINTS {
                return Err(SnapshotError::at(
                    at(cohort),
                    format!(
                        "{} points, more than the limit of {MAX_SERIES_POINTS} per series: use \
                         a longer step",
                        points.len()
                    ),
                ));
            }
        }
    }
    for (name, counts) in metrics.counts.iter().flatten() {
        for (cohort, c) in [("baseline", counts.baseline), ("canary", counts.canary)] {
            let at = |field: &str| format!("metrics.counts.{name}.{cohort}.{field}");
            non_negative(&at("events"), Some(c.events))?;
            non_negative(&at("exposures"), Some(c.exposures))?;
            if c.events > c.exposures {
                return Err(SnapshotError::at(
                    at("events"),
                    format!(
                        "{} events out of {} exposures: events cannot exceed exposures",
                        c.events, c.exposures
                    ),
                ));
            }
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

/// The JSON Schema of the snapshot (`shipgate schema snapshot`).
pub(crate) fn schema() -> Value {
    let schema = schemars::schema_for!(Snapshot);
    serde_json::to_value(schema).expect("a schema is JSON")
}

/// Whether a dotted path (`metrics.canary.errors`) names a field the
/// snapshot reads: a value written anywhere else would be ignored. Maps
/// (business counters) take any key; an array or a scalar ends a path.
pub(crate) fn knows_path(path: &str) -> bool {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let root = SCHEMA.get_or_init(schema);
    let mut at = root;
    for key in path.split('.') {
        match child(root, at, key) {
            Some(next) => at = next,
            None => return false,
        }
    }
    // `gate` is the host's; a caller's value there is refused, not read.
    !path.is_empty() && path.split('.').next() != Some("gate")
}

/// The schema of `key` inside the object schema `at` (through `$ref`s and
/// the `anyOf` of an optional field).
fn child<'s>(root: &'s Value, at: &'s Value, key: &str) -> Option<&'s Value> {
    let at = resolve(root, at);
    if let Some(options) = at.get("anyOf").or_else(|| at.get("oneOf")) {
        return options
            .as_array()?
            .iter()
            .find_map(|option| child(root, option, key));
    }
    if let Some(field) = at.get("properties").and_then(|p| p.get(key)) {
        return Some(field);
    }
    at.get("additionalProperties").filter(|any| any.is_object())
}

fn resolve<'s>(root: &'s Value, mut at: &'s Value) -> &'s Value {
    while let Some(reference) = at.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(target) => at = target,
            None => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Value {
        serde_json::from_str(include_str!("../../examples/snapshots/abort-rollback.json")).unwrap()
    }

    fn error_of(json: Value) -> String {
        with_digest(&json.to_string(), String::new())
            .unwrap_err()
            .to_string()
    }

    /// A snapshot the host built writes a text that reads back as itself,
    /// so a record of it replays: series with gaps included (version 2).
    #[test]
    fn a_host_built_snapshots_text_reads_back() {
        let judged = include_str!("../../examples/judge/healthy.json");
        assert!(judged.contains("null"), "the example has gaps");
        let typed = with_digest(judged, "x".into()).unwrap().typed;
        let built = from_typed(typed, "y".into()).unwrap();
        let again = parse(built.text().as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_value(again.typed()).unwrap(),
            serde_json::to_value(built.typed()).unwrap()
        );
        let gate = EncodedGate::new(&Default::default());
        assert_eq!(again.encode_with_gate(&gate), built.encode_with_gate(&gate));
        assert_eq!(again.now, built.now);
    }

    #[test]
    fn accepts_the_examples() {
        let parsed = with_digest(&example().to_string(), "x".into()).unwrap();
        assert_eq!(
            parsed.now,
            Timestamp::parse("2026-11-26T14:00:00Z").unwrap()
        );
    }

    #[test]
    fn wrong_types_name_the_json_path_and_position() {
        let mut s = example();
        s["metrics"]["canary"]["errors"] = "many".into();
        let err = error_of(s);
        assert!(
            err.starts_with("metrics.canary.errors: invalid type: string \"many\", expected f64 at line 1 column "),
            "{err}"
        );
        let mut s = example();
        s["alerts"][0]["expected"] = 3.into();
        let err = error_of(s);
        assert!(
            err.starts_with(
                "alerts[0].expected: invalid type: integer `3`, expected a boolean at line 1"
            ),
            "{err}"
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
        s["schema_version"] = 3.into();
        assert!(error_of(s).starts_with("schema_version: unsupported schema version 3"));
        let mut s = example();
        s["schema_version"] = 2.into();
        s["rollback"] = serde_json::json!({"started_at": "yesterday"});
        assert!(error_of(s).starts_with("rollback.started_at: "));
        let mut s = example();
        s["schema_version"] = 2.into();
        s["rollback"] = serde_json::json!({"metrics": {"requests": 10, "errors": 11}});
        assert!(error_of(s.clone()).starts_with("rollback.metrics.errors: 11 errors out of 10"));
        // Schema v1 has no `rollback`: a v1 producer's key of that name is
        // ignored, as every unknown key of v1 was.
        s["schema_version"] = 1.into();
        let v1 = parse(s.to_string().as_bytes()).unwrap();
        assert!(v1.typed().rollback.is_none());
        s["integration_tests"] = serde_json::json!({"passed": 3});
        s["user_journeys"] = serde_json::json!([{"status": "no name"}]);
        let v1 = parse(s.to_string().as_bytes()).unwrap();
        assert!(v1.typed().integration_tests.is_none());
        s["schema_version"] = 2.into();
        assert!(error_of(s).starts_with("integration_tests: "));
        assert_eq!(error_of(Value::Array(vec![])), "expected a JSON object");
    }

    #[test]
    fn even_a_null_gate_is_refused() {
        let mut s = example();
        s["gate"] = Value::Null;
        assert!(error_of(s).starts_with("gate: a snapshot may not carry `gate`"));
    }

    #[test]
    fn policies_receive_the_typed_snapshot_with_the_gate() {
        let snapshot = parse(include_bytes!(
            "../../examples/snapshots/abort-rollback.json"
        ))
        .unwrap();
        let gate: shipgate_policy::snapshot::Gate = serde_json::from_value(
            serde_json::json!({"name": "g", "rollout": {"stages": [5, 100]}}),
        )
        .unwrap();
        let decoded = wire::decode(&snapshot.encode_with_gate(&EncodedGate::new(&gate))).unwrap();
        assert_eq!(decoded.gate.unwrap().name.as_deref(), Some("g"));
        let canary = decoded.metrics.unwrap().canary.unwrap();
        let sent = &example()["metrics"]["canary"];
        assert_eq!(canary.requests, sent["requests"].as_f64());
        assert_eq!(canary.errors, sent["errors"].as_f64());
        assert_eq!(decoded.now, example()["now"].as_str().unwrap());
    }

    #[test]
    fn trailing_text_is_refused() {
        let err =
            parse(b"{\"schema_version\": 1, \"now\": \"2026-11-26T14:00:00Z\"} {}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not valid JSON: trailing characters"),
            "{err}"
        );
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
