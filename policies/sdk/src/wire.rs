//! The snapshot as it crosses the contract (`shipgate:policy@0.4.0`).
//!
//! The host parses and validates the caller's JSON once; every policy then
//! receives the typed result in a compact binary form instead of JSON text,
//! so no policy parses JSON again. The encoding is one version byte
//! ([`VERSION`]) followed by the [postcard] serialization of [`Snapshot`]:
//! fields in declaration order, integers as varints, `f64` as 8 bytes
//! little-endian, strings and sequences length-prefixed, options as a
//! 0/1 tag. Free-form JSON (`deployment.changes_in_flight`) travels as JSON
//! text inside it.
//!
//! Because the layout follows the field order, any change to the snapshot
//! types is a change of [`VERSION`] and of the contract version; a policy
//! refuses an encoding it was not built for, and the host fails closed.
//!
//! The host also writes the layouts of the contracts it still runs:
//! [`VERSION_2`] for contract 0.3.0 (the snapshot without the time series
//! and counts version 3 added, [`encode_v2_with_gate`]) and [`VERSION_1`]
//! for contract 0.2.0 (without the fields version 2 added either,
//! [`encode_v1_with_gate`]).
//!
//! [postcard]: https://docs.rs/postcard

use serde::Serialize;

use crate::snapshot::{
    Alert, Ci, Cohort, Deployment, FeatureFlag, Gate, Metrics, Migration, RollbackPlan,
    RollbackRun, Rollout, SmokeTest, Snapshot, TestResult, UserJourney, Window,
};

/// The encoding's version, the first byte of every encoded snapshot.
pub const VERSION: u8 = 3;

/// The encoding of contract 0.3.0: no `metrics.series` or `metrics.counts`.
pub const VERSION_2: u8 = 2;

/// The encoding of contract 0.2.0: no `rollback`, `user_journeys` or
/// `integration_tests`.
pub const VERSION_1: u8 = 1;

/// Why encoding cannot fail: postcard fails only on types it cannot
/// describe (none in a snapshot) or when its output is full (a `Vec` grows).
const ENCODES: &str = "a snapshot encodes into a Vec";

/// Encodes a snapshot (with its `gate`, if any).
///
/// ```
/// use shipgate_policy::{Snapshot, wire};
///
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "deployment": {"service": "checkout", "commit": "9f8d111"}
/// }"#).unwrap();
/// let encoded = wire::encode(&snapshot);
/// assert_eq!(encoded[0], wire::VERSION);
/// let decoded = wire::decode(&encoded).unwrap();
/// assert_eq!(decoded.deployment.unwrap().commit.as_deref(), Some("9f8d111"));
/// ```
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    // Room for a typical snapshot and its gate: one allocation.
    let mut out = Vec::with_capacity(1024);
    out.push(VERSION);
    postcard::to_extend(snapshot, out).expect(ENCODES)
}

/// A `gate` object encoded once, to be attached to many snapshots.
#[derive(Debug, Clone)]
pub struct EncodedGate(Vec<u8>);

impl EncodedGate {
    /// Encodes `gate`, for [`encode_with_gate`] and the older layouts.
    ///
    /// ```
    /// use shipgate_policy::snapshot::Gate;
    /// use shipgate_policy::wire::{self, EncodedGate};
    /// use shipgate_policy::Snapshot;
    ///
    /// let gate = EncodedGate::new(&Gate { name: Some("checkout-production".into()), ..Default::default() });
    /// let snapshot = Snapshot { schema_version: 2, now: "2026-11-26T14:00:00Z".into(), ..Default::default() };
    /// let decoded = wire::decode(&wire::encode_with_gate(&snapshot, &gate)).unwrap();
    /// assert_eq!(decoded.gate.unwrap().name.as_deref(), Some("checkout-production"));
    /// ```
    pub fn new(gate: &Gate) -> Self {
        EncodedGate(postcard::to_allocvec(gate).expect(ENCODES))
    }
}

/// Encodes `snapshot` with `gate` as its `gate` field. `gate` is the
/// snapshot's last field, so its encoding is the tail: a snapshot without
/// one (what the host holds) is encoded as it is, and its `None` tag replaced
/// by `Some` and the gate's bytes, without copying the snapshot; one that has
/// a gate is copied without it first.
///
/// ```
/// use shipgate_policy::snapshot::{Gate, RolloutPlan};
/// use shipgate_policy::wire::{self, EncodedGate};
/// use shipgate_policy::Snapshot;
///
/// let gate = EncodedGate::new(&Gate {
///     name: Some("checkout-production".into()),
///     rollout: Some(RolloutPlan { stages: vec![5.0, 10.0, 25.0, 50.0, 100.0], ..Default::default() }),
///     ..Default::default()
/// });
/// // One gate, the snapshots of successive decisions.
/// for now in ["2026-11-26T14:00:00Z", "2026-11-26T14:05:00Z"] {
///     let snapshot = Snapshot { schema_version: 2, now: now.into(), ..Default::default() };
///     let decoded = wire::decode(&wire::encode_with_gate(&snapshot, &gate)).unwrap();
///     assert_eq!(decoded.now, now);
///     assert_eq!(decoded.plan().stages, [5.0, 10.0, 25.0, 50.0, 100.0]);
/// }
/// ```
pub fn encode_with_gate(snapshot: &Snapshot, gate: &EncodedGate) -> Vec<u8> {
    if snapshot.gate.is_some() {
        let without = Snapshot {
            gate: None,
            ..snapshot.clone()
        };
        return encode_with_gate(&without, gate);
    }
    splice_gate(encode(snapshot), gate)
}

/// What [`encode_with_gate`] writes, in the layout of [`VERSION_2`], for
/// policies built for contract 0.3.0: the time series and counts version 3
/// added are left out, everything else is byte for byte what that
/// contract's SDK reads.
///
/// ```
/// use shipgate_policy::snapshot::Gate;
/// use shipgate_policy::wire::{self, EncodedGate};
/// use shipgate_policy::Snapshot;
///
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"counts": {"errors": {
///         "baseline": {"events": 96, "exposures": 120000},
///         "canary": {"events": 533, "exposures": 13000}
///     }}}
/// }"#).unwrap();
/// let gate = EncodedGate::new(&Gate::default());
/// let v2 = wire::encode_v2_with_gate(&snapshot, &gate);
/// assert_eq!(v2[0], wire::VERSION_2);
/// // Without the counts, which version 2 cannot carry.
/// assert!(v2.len() < wire::encode_with_gate(&snapshot, &gate).len());
/// ```
pub fn encode_v2_with_gate(snapshot: &Snapshot, gate: &EncodedGate) -> Vec<u8> {
    let v2 = SnapshotV2 {
        schema_version: snapshot.schema_version,
        now: &snapshot.now,
        deployment: &snapshot.deployment,
        ci: &snapshot.ci,
        migrations: &snapshot.migrations,
        feature_flags: &snapshot.feature_flags,
        rollback_plan: &snapshot.rollback_plan,
        window: &snapshot.window,
        stakeholders_notified: snapshot.stakeholders_notified,
        rollout: &snapshot.rollout,
        metrics: snapshot.metrics.as_ref().map(MetricsV2::of),
        alerts: &snapshot.alerts,
        smoke_tests: &snapshot.smoke_tests,
        rollback: &snapshot.rollback,
        user_journeys: &snapshot.user_journeys,
        integration_tests: &snapshot.integration_tests,
        gate: None,
    };
    let mut out = Vec::with_capacity(1024);
    out.push(VERSION_2);
    splice_gate(postcard::to_extend(&v2, out).expect(ENCODES), gate)
}

/// What [`encode_with_gate`] writes, in the layout of [`VERSION_1`], for
/// policies built for contract 0.2.0: the fields version 2 added are left
/// out, everything else is byte for byte what that contract's SDK reads.
///
/// ```
/// use shipgate_policy::snapshot::Gate;
/// use shipgate_policy::wire::{self, EncodedGate};
/// use shipgate_policy::Snapshot;
///
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "integration_tests": [{"name": "payments", "status": "passed"}]
/// }"#).unwrap();
/// let gate = EncodedGate::new(&Gate::default());
/// let v1 = wire::encode_v1_with_gate(&snapshot, &gate);
/// assert_eq!(v1[0], wire::VERSION_1);
/// // Without the integration tests, which schema version 1 does not have.
/// assert!(v1.len() < wire::encode_v2_with_gate(&snapshot, &gate).len());
/// ```
pub fn encode_v1_with_gate(snapshot: &Snapshot, gate: &EncodedGate) -> Vec<u8> {
    let v1 = SnapshotV1 {
        // What is left once version 2's fields are gone is a v1 snapshot.
        schema_version: 1,
        now: &snapshot.now,
        deployment: &snapshot.deployment,
        ci: &snapshot.ci,
        migrations: &snapshot.migrations,
        feature_flags: &snapshot.feature_flags,
        rollback_plan: &snapshot.rollback_plan,
        window: &snapshot.window,
        stakeholders_notified: snapshot.stakeholders_notified,
        rollout: &snapshot.rollout,
        metrics: snapshot.metrics.as_ref().map(MetricsV2::of),
        alerts: &snapshot.alerts,
        smoke_tests: &snapshot.smoke_tests,
        gate: None,
    };
    let mut out = Vec::with_capacity(1024);
    out.push(VERSION_1);
    splice_gate(postcard::to_extend(&v1, out).expect(ENCODES), gate)
}

/// Replaces the trailing `None` of an encoded snapshot's `gate` with `gate`.
fn splice_gate(mut out: Vec<u8>, gate: &EncodedGate) -> Vec<u8> {
    let none_tag = out.pop();
    assert_eq!(
        none_tag,
        Some(0),
        "`gate` must stay the last field of Snapshot: its encoding is spliced on"
    );
    out.push(1);
    out.extend_from_slice(&gate.0);
    out
}

/// [`Snapshot`] as [`VERSION_2`] lays it out: `metrics` without the fields
/// version 3 added; everything else is the same.
#[derive(Serialize)]
struct SnapshotV2<'a> {
    schema_version: u32,
    now: &'a str,
    deployment: &'a Option<Deployment>,
    ci: &'a Option<Ci>,
    migrations: &'a Option<Vec<Migration>>,
    feature_flags: &'a Option<Vec<FeatureFlag>>,
    rollback_plan: &'a Option<RollbackPlan>,
    window: &'a Option<Window>,
    stakeholders_notified: Option<bool>,
    rollout: &'a Option<Rollout>,
    metrics: Option<MetricsV2<'a>>,
    alerts: &'a Option<Vec<Alert>>,
    smoke_tests: &'a Option<Vec<SmokeTest>>,
    rollback: &'a Option<RollbackRun>,
    user_journeys: &'a Option<Vec<UserJourney>>,
    integration_tests: &'a Option<Vec<TestResult>>,
    gate: Option<&'a Gate>,
}

/// [`Metrics`] as versions 1 and 2 lay it out.
#[derive(Serialize)]
struct MetricsV2<'a> {
    window_seconds: Option<f64>,
    baseline: &'a Option<Cohort>,
    canary: &'a Option<Cohort>,
}

impl<'a> MetricsV2<'a> {
    fn of(metrics: &'a Metrics) -> MetricsV2<'a> {
        MetricsV2 {
            window_seconds: metrics.window_seconds,
            baseline: &metrics.baseline,
            canary: &metrics.canary,
        }
    }
}

/// [`Snapshot`] as [`VERSION_1`] lays it out: version 2 without the
/// top-level fields version 2 added.
#[derive(Serialize)]
struct SnapshotV1<'a> {
    schema_version: u32,
    now: &'a str,
    deployment: &'a Option<Deployment>,
    ci: &'a Option<Ci>,
    migrations: &'a Option<Vec<Migration>>,
    feature_flags: &'a Option<Vec<FeatureFlag>>,
    rollback_plan: &'a Option<RollbackPlan>,
    window: &'a Option<Window>,
    stakeholders_notified: Option<bool>,
    rollout: &'a Option<Rollout>,
    metrics: Option<MetricsV2<'a>>,
    alerts: &'a Option<Vec<Alert>>,
    smoke_tests: &'a Option<Vec<SmokeTest>>,
    gate: Option<&'a Gate>,
}

/// Decodes what [`encode`] wrote. The error says what is wrong, for the
/// host to report as the policy's fault.
///
/// ```
/// use shipgate_policy::{Snapshot, wire};
///
/// let snapshot = Snapshot { schema_version: 2, now: "2026-11-26T14:00:00Z".into(), ..Default::default() };
/// assert_eq!(wire::decode(&wire::encode(&snapshot)).unwrap().now, "2026-11-26T14:00:00Z");
/// // A host that sends another encoding version: the policy must be rebuilt.
/// let error = wire::decode(&[wire::VERSION_2, 0]).unwrap_err();
/// assert!(error.contains("rebuild it with the shipgate-policy SDK that matches the host"), "{error}");
/// ```
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            let (snapshot, rest) = postcard::take_from_bytes::<Snapshot>(body)
                .map_err(|e| format!("snapshot encoding: {e}"))?;
            if rest.is_empty() {
                Ok(snapshot)
            } else {
                Err(format!(
                    "snapshot encoding: unexpected bytes after the snapshot ({})",
                    rest.len()
                ))
            }
        }
        Some((version, _)) => Err(format!(
            "snapshot encoding version {version}; this policy was built for version {VERSION}: \
             rebuild it with the shipgate-policy SDK that matches the host"
        )),
        None => Err("snapshot encoding: empty".to_string()),
    }
}

/// Serde adapter for free-form JSON fields: a JSON value in human-readable
/// formats (the snapshot the caller sends), JSON text in the binary
/// encoding, which cannot describe an arbitrary value.
pub(crate) mod opaque_json {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub(crate) fn serialize<S: Serializer>(
        values: &Option<Vec<Value>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return values.serialize(serializer);
        }
        let texts: Option<Vec<String>> = values
            .as_ref()
            .map(|values| values.iter().map(Value::to_string).collect());
        texts.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<Value>>, D::Error> {
        if deserializer.is_human_readable() {
            return Option::<Vec<Value>>::deserialize(deserializer);
        }
        let texts = Option::<Vec<String>>::deserialize(deserializer)?;
        texts
            .map(|texts| {
                texts
                    .iter()
                    .map(|text| serde_json::from_str(text).map_err(D::Error::custom))
                    .collect()
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A snapshot with every field set, so a field whose encoding does not
    /// round-trip shows up.
    fn full() -> Snapshot {
        let mut value = json!({
            "schema_version": 1,
            "now": "2026-11-26T14:00:00Z",
            "deployment": {"id": "d-1", "service": "checkout", "environment": "production",
                "commit": "abc", "previous_commit": "abb", "triggered_by": "ci",
                "deployed_at": "2026-11-26T13:00:00Z",
                "changes_in_flight": [{"id": "other", "n": [1, 2.5, null]}, "text"]},
            "ci": {"commit": "abc", "status": "passed", "checks": [{"name": "unit", "status": "passed"}]},
            "migrations": [{"id": "m1", "backward_compatible": true, "adds_non_nullable_columns": false, "drops_columns": false}],
            "feature_flags": [{"key": "f", "new_in_release": true, "default_enabled": false}],
            "rollback_plan": {"documented": true, "steps": ["a", "b"], "estimated_seconds": 120.5,
                "last_tested_at": "2026-11-20T10:00:00Z", "tested_duration_seconds": 200.0},
            "window": {"low_traffic": true, "approved": true, "on_call": ["ana"]},
            "stakeholders_notified": true,
            "rollout": {"stage_index": 2, "weight": 25.0, "stage_started_at": "2026-11-26T13:40:00Z"},
            "metrics": {"window_seconds": 300.0,
                "baseline": {"requests": 1000.0, "errors": 1.0, "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0}, "business": {"orders": 50.0}},
                "canary": {"requests": 100.0, "errors": 0.0, "latency_ms": {"p50": 11.0, "p99": 33.3}, "business": {"orders": 4.0}},
                "series": {"latency_p99_ms": {"step_seconds": 60.0, "start": "2026-11-26T13:40:00Z",
                    "baseline": [30.0, null, 31.5], "canary": [33.0, 34.5, null]}},
                "counts": {"errors": {"baseline": {"events": 3.0, "exposures": 9000.0},
                    "canary": {"events": 1.0, "exposures": 1000.0}}}},
            "alerts": [{"name": "a", "severity": "page", "state": "firing", "since": "2026-11-26T13:50:00Z", "expected": false}],
            "smoke_tests": [{"name": "login", "status": "passed"}],
            "rollback": {"started_at": "2026-11-26T14:10:00Z", "completed_at": "2026-11-26T14:12:30Z",
                "restored_commit": "abb",
                "metrics": {"requests": 900.0, "errors": 1.0, "latency_ms": {"p50": 10.0, "p95": 21.0, "p99": 31.0}}},
            "user_journeys": [{"name": "checkout", "status": "passed", "verified_by": "ana", "verified_at": "2026-11-26T13:55:00Z"}],
            "integration_tests": [{"name": "payments-e2e", "status": "passed"}]
        });
        value["gate"] = crate::testing::default_gate();
        value["gate"]["rollout"]["abort"]["max_latency_ms"] =
            json!({"p50": 100.0, "p95": 200.0, "p99": 400.0});
        serde_json::from_value(value).unwrap()
    }

    /// Debug output covers every field, nested: equal output, equal snapshots.
    fn same(a: &Snapshot, b: &Snapshot) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn a_full_snapshot_round_trips() {
        let snapshot = full();
        same(&decode(&encode(&snapshot)).unwrap(), &snapshot);
    }

    #[test]
    fn the_gate_is_attached_to_an_encoded_snapshot() {
        let snapshot = full();
        let gate = EncodedGate::new(snapshot.gate.as_ref().unwrap());
        let without = Snapshot {
            gate: None,
            ..snapshot.clone()
        };
        same(
            &decode(&encode_with_gate(&without, &gate)).unwrap(),
            &snapshot,
        );
        // A snapshot that already has one gets the given gate instead.
        let other = Snapshot {
            gate: Some(Gate::default()),
            ..snapshot.clone()
        };
        same(
            &decode(&encode_with_gate(&other, &gate)).unwrap(),
            &snapshot,
        );
    }

    /// The layout is part of the contract: a policy built against one
    /// layout misreads another. If this fails, the encoding changed (a field
    /// added, removed, reordered or retyped in `snapshot.rs`, or a new
    /// postcard): bump [`VERSION`] and the contract version in
    /// `wit/policy.wit`, then update the fingerprint.
    #[test]
    fn the_layout_is_unchanged_or_versioned() {
        assert_eq!(
            (VERSION, layout(&encode(&full()))),
            (3, (951, 17172535856086196608)),
            "the snapshot encoding changed: bump wire::VERSION and the contract"
        );
    }

    /// Version 2 is what policies built for contract 0.3.0 read: the length
    /// and fingerprint that version's own test pinned for the same snapshot
    /// (the series and counts version 3 added are left out).
    #[test]
    fn version_2_is_the_layout_of_contract_0_3_0() {
        let mut snapshot = full();
        let gate = EncodedGate::new(&snapshot.gate.take().unwrap());
        let v2 = encode_v2_with_gate(&snapshot, &gate);
        assert_eq!(v2[0], VERSION_2);
        assert_eq!(layout(&v2), (824, 4628219779735804303));
    }

    /// Version 1 is what policies built for contract 0.2.0 read: these are
    /// the length and fingerprint that version's own test pinned for the
    /// same snapshot (the fields version 2 added are left out).
    #[test]
    fn version_1_is_the_layout_of_contract_0_2_0() {
        let mut snapshot = full();
        let gate = EncodedGate::new(&snapshot.gate.take().unwrap());
        // A v2 snapshot still reads as v1 to a 0.2.0 policy.
        snapshot.schema_version = 2;
        let v1 = encode_v1_with_gate(&snapshot, &gate);
        assert_eq!(v1[1], 1, "schema_version 1");
        assert_eq!(layout(&v1), (658, 3496190992048682817));
    }

    /// Length and FNV-1a fingerprint of an encoding (no hashing dependency).
    fn layout(encoded: &[u8]) -> (usize, u64) {
        let fingerprint = encoded
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        (encoded.len(), fingerprint)
    }

    #[test]
    fn a_minimal_snapshot_round_trips_without_a_gate() {
        let snapshot: Snapshot =
            serde_json::from_value(json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z"}))
                .unwrap();
        let decoded = decode(&encode(&snapshot)).unwrap();
        same(&decoded, &snapshot);
        assert!(decoded.gate.is_none());
    }

    #[test]
    fn bad_encodings_are_errors_that_say_what_is_wrong() {
        let encoded = encode(&full());
        assert_eq!(decode(&[]).unwrap_err(), "snapshot encoding: empty");
        let mut other_version = encoded.clone();
        other_version[0] = 9;
        assert!(
            decode(&other_version)
                .unwrap_err()
                .starts_with("snapshot encoding version 9; this policy was built for version 3")
        );
        let truncated = &encoded[..encoded.len() / 2];
        assert!(
            decode(truncated)
                .unwrap_err()
                .starts_with("snapshot encoding: ")
        );
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).unwrap_err(),
            "snapshot encoding: unexpected bytes after the snapshot (1)"
        );
    }
}
