use serde_json::{Value, json};
use shipgate_policy::testing::{self, assert_finding, remove, set};
use shipgate_policy::{Decision, Finding, Phase};

use crate::Verify;

fn example(name: &str) -> Value {
    let text = match name {
        "verify-allow" => include_str!("../../../examples/snapshots/verify-allow.json"),
        "verify-deny" => include_str!("../../../examples/snapshots/verify-deny.json"),
        "verify-rollback" => include_str!("../../../examples/snapshots/verify-rollback.json"),
        "verify-rollback-restored" => {
            include_str!("../../../examples/snapshots/verify-rollback-restored.json")
        }
        other => panic!("no example {other}"),
    };
    testing::with_default_gate(text)
}

fn finding(snapshot: &Value, check: &str) -> Finding {
    testing::finding::<Verify>(Phase::Verify, snapshot, &json!({}), check)
}

#[test]
fn examples_decide_as_named() {
    for (name, decision) in [
        ("verify-allow", Decision::Allow),
        ("verify-deny", Decision::Deny),
        ("verify-rollback", Decision::Rollback),
        ("verify-rollback-restored", Decision::Allow),
    ] {
        let verdict =
            testing::evaluate::<Verify>(Phase::Verify, &example(name), &json!({})).unwrap();
        assert_eq!(verdict.decision, decision, "{name}: {verdict:#?}");
    }
}

#[test]
fn smoke_tests() {
    assert_finding(
        &finding(&example("verify-allow"), "smoke-tests"),
        Decision::Allow,
        "2 of 2 passed",
        "all passed",
    );
    let failed = finding(&example("verify-rollback"), "smoke-tests");
    assert_finding(&failed, Decision::Rollback, "1 of 2 passed", "all passed");
    assert_eq!(failed.message, "smoke tests failed: checkout");
    let pending = finding(&example("verify-deny"), "smoke-tests");
    assert_finding(&pending, Decision::Deny, "2 of 3 passed", "all passed");
    let mut none = example("verify-allow");
    set(&mut none, "smoke_tests", json!([]));
    assert_eq!(
        finding(&none, "smoke-tests").observed.as_deref(),
        Some("missing")
    );
}

/// A version 1 snapshot cannot carry the facts schema 2 added (its keys
/// are ignored): the message says to move to version 2, not to send `[]`.
#[test]
fn facts_of_schema_2_ask_for_version_2_in_a_version_1_snapshot() {
    let mut v1 = example("verify-allow");
    set(&mut v1, "schema_version", json!(1));
    for (check, key) in [
        ("integration-tests", "integration_tests"),
        ("user-journeys", "user_journeys"),
    ] {
        let missing = finding(&v1, check);
        assert_eq!(
            missing.message,
            format!(
                "no evidence: {key}, which needs schema_version 2 (this snapshot is version 1, \
                 where the key is ignored) is missing from the snapshot"
            )
        );
    }
    let mut v2 = example("verify-allow");
    remove(&mut v2, "integration_tests");
    assert!(
        finding(&v2, "integration-tests")
            .message
            .contains("send [] when the service has none")
    );
}

#[test]
fn unexpected_alerts() {
    let quiet = finding(&example("verify-allow"), "alerts");
    assert_finding(
        &quiet,
        Decision::Allow,
        "0 unexpected firing",
        "0 unexpected firing",
    );
    let critical = finding(&example("verify-rollback"), "alerts");
    assert_finding(
        &critical,
        Decision::Rollback,
        "1 unexpected firing",
        "0 unexpected firing",
    );
    assert_eq!(
        critical.message,
        "unexpected alert(s) firing: HighErrorRate (critical)"
    );

    let mut warning = example("verify-allow");
    set(
        &mut warning,
        "alerts",
        json!([{"name": "SlowQueries", "severity": "warning", "state": "firing", "expected": false},
               {"name": "Deploying", "severity": "info", "state": "firing", "expected": true}]),
    );
    assert_finding(
        &finding(&warning, "alerts"),
        Decision::Deny,
        "1 unexpected firing",
        "0 unexpected firing",
    );
    remove(&mut warning, "alerts");
    assert_eq!(finding(&warning, "alerts").decision, Decision::Deny);
}

#[test]
fn observation_time() {
    assert_finding(
        &finding(&example("verify-allow"), "observation-time"),
        Decision::Allow,
        "20m 0s",
        ">= 15m 0s",
    );
    let early = finding(&example("verify-deny"), "observation-time");
    assert_finding(&early, Decision::Deny, "8m 0s", ">= 15m 0s");
    assert_eq!(
        early.message,
        "not verified yet: 8m 0s of 15m 0s since deploy, 7m 0s left"
    );
}

#[test]
fn metrics_window() {
    assert_finding(
        &finding(&example("verify-allow"), "metrics-window"),
        Decision::Allow,
        "15m 0s",
        ">= 15m 0s",
    );
    let mut short = example("verify-allow");
    set(&mut short, "metrics.window_seconds", json!(300));
    assert_finding(
        &finding(&short, "metrics-window"),
        Decision::Deny,
        "5m 0s",
        ">= 15m 0s",
    );
}

#[test]
fn error_rate_after_deploy() {
    assert_finding(
        &finding(&example("verify-allow"), "error-rate"),
        Decision::Allow,
        "0.08%",
        "<= 1.0%",
    );
    let mut bad = example("verify-allow");
    set(&mut bad, "metrics.canary.errors", json!(390));
    assert_finding(
        &finding(&bad, "error-rate"),
        Decision::Rollback,
        "3.0%",
        "<= 1.0%",
    );
}

#[test]
fn integration_tests() {
    let passed = finding(&example("verify-allow"), "integration-tests");
    assert_finding(&passed, Decision::Allow, "2 of 2 passed", "all passed");
    assert_eq!(
        (passed.observed_value, passed.threshold_value),
        (Some(2.0), Some(2.0))
    );
    let mut none = example("verify-allow");
    set(&mut none, "integration_tests", json!([]));
    assert_finding(
        &finding(&none, "integration-tests"),
        Decision::Allow,
        "none",
        "all passed",
    );
    remove(&mut none, "integration_tests");
    assert_eq!(
        finding(&none, "integration-tests").observed.as_deref(),
        Some("missing")
    );
    let mut failed = example("verify-allow");
    set(
        &mut failed,
        "integration_tests",
        json!([{"name": "payments-e2e", "status": "failed"}, {"name": "search", "status": "running"}]),
    );
    let failed = finding(&failed, "integration-tests");
    assert_finding(&failed, Decision::Rollback, "0 of 2 passed", "all passed");
    assert_eq!(failed.message, "integration tests failed: payments-e2e");
}

#[test]
fn user_journeys() {
    let signed = finding(&example("verify-allow"), "user-journeys");
    assert_finding(
        &signed,
        Decision::Allow,
        "2 of 2 signed off",
        "all signed off",
    );
    assert_eq!(
        signed.message,
        "all 2 key user journeys signed off (by ana@example.com, ana@example.com)"
    );
    let mut unsigned = example("verify-allow");
    remove(&mut unsigned, "user_journeys.1.verified_by");
    let unsigned = finding(&unsigned, "user-journeys");
    assert_finding(
        &unsigned,
        Decision::Deny,
        "1 of 2 signed off",
        "all signed off",
    );
    assert_eq!(
        unsigned.message,
        "user journeys not signed off for this deployment (passed, by whom, when, between \
         deployment.deployed_at and now): checkout"
    );
    let mut failed = example("verify-allow");
    *failed.pointer_mut("/user_journeys/0/status").unwrap() = json!("failed");
    assert_eq!(
        finding(&failed, "user-journeys").decision,
        Decision::Rollback
    );
    let mut none = example("verify-allow");
    remove(&mut none, "user_journeys");
    assert_eq!(finding(&none, "user-journeys").decision, Decision::Deny);
    let not_required = testing::evaluate::<Verify>(
        Phase::Verify,
        &none,
        &json!({"require_user_journeys": false}),
    )
    .unwrap();
    assert_eq!(not_required.decision, Decision::Allow);
    assert!(not_required.finding("user-journeys").is_none());
}

#[test]
fn a_rollback_is_verified_by_its_duration_and_the_restored_service() {
    let restored = example("verify-rollback-restored");
    let took = finding(&restored, "rollback-duration");
    assert_finding(&took, Decision::Allow, "2m 40s", "<= 5m 0s");
    assert_eq!(took.observed_value, Some(160.0));
    assert_finding(
        &finding(&restored, "service-restored"),
        Decision::Allow,
        "0.07%",
        "<= 1.0%",
    );
    let verdict = testing::evaluate::<Verify>(Phase::Verify, &restored, &json!({})).unwrap();
    assert!(
        verdict.finding("smoke-tests").is_none(),
        "the rollout's checks do not apply to a rollback: {verdict:#?}"
    );

    let mut slow = restored.clone();
    set(
        &mut slow,
        "rollback.completed_at",
        json!("2026-11-26T14:38:00Z"),
    );
    assert_finding(
        &finding(&slow, "rollback-duration"),
        Decision::Deny,
        "7m 0s",
        "<= 5m 0s",
    );
    let relaxed = testing::finding::<Verify>(
        Phase::Verify,
        &slow,
        &json!({"max_rollback_minutes": 10}),
        "rollback-duration",
    );
    assert_eq!(relaxed.decision, Decision::Allow, "{relaxed:?}");

    let mut running = restored.clone();
    remove(&mut running, "rollback.completed_at");
    assert_eq!(
        finding(&running, "rollback-duration").message,
        "no evidence: rollback.completed_at (is the rollback still running?) is missing from \
         the snapshot"
    );

    let mut still_bad = restored.clone();
    set(&mut still_bad, "rollback.metrics.errors", json!(2600));
    assert_finding(
        &finding(&still_bad, "service-restored"),
        Decision::Deny,
        "5.0%",
        "<= 1.0%",
    );
    set(
        &mut still_bad,
        "gate.rollout.abort.max_latency_ms",
        json!({"p99": 300}),
    );
    assert_finding(
        &finding(&still_bad, "service-restored-latency-p99"),
        Decision::Deny,
        "305 ms",
        "<= 300 ms",
    );
    remove(&mut still_bad, "rollback.metrics");
    assert_eq!(
        finding(&still_bad, "service-restored").decision,
        Decision::Deny
    );
}

#[test]
fn findings_carry_their_numbers_for_reports() {
    let error_rate = finding(&example("verify-allow"), "error-rate");
    assert_eq!(error_rate.unit, Some(shipgate_policy::Unit::Percent));
    assert_eq!(error_rate.threshold_value, Some(0.01));
    let observed = error_rate.observed_value.unwrap();
    let baseline = error_rate.baseline_value.unwrap();
    assert!((observed - 11.0 / 13000.0).abs() < 1e-12, "{observed}");
    assert!((baseline - 96.0 / 120000.0).abs() < 1e-12, "{baseline}");
}

#[test]
fn a_sign_off_counts_only_between_the_deploy_and_now() {
    for stale in ["2026-11-26T13:00:00Z", "2026-11-26T15:00:00Z"] {
        let mut old = example("verify-allow");
        *old.pointer_mut("/user_journeys/0/verified_at").unwrap() = json!(stale);
        assert_eq!(
            finding(&old, "user-journeys").decision,
            Decision::Deny,
            "signed off at {stale}"
        );
    }
}

#[test]
fn a_rollback_record_must_be_this_deployments() {
    let restored = example("verify-rollback-restored");
    assert_eq!(
        finding(&restored, "rollback-record").decision,
        Decision::Allow
    );
    // Left over from an earlier rollout: it started before this deploy.
    let mut stale = restored.clone();
    set(
        &mut stale,
        "rollback.started_at",
        json!("2026-11-25T10:00:00Z"),
    );
    set(
        &mut stale,
        "rollback.completed_at",
        json!("2026-11-25T10:02:00Z"),
    );
    let verdict = testing::evaluate::<Verify>(Phase::Verify, &stale, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny, "{verdict:#?}");
    assert_eq!(
        verdict.finding("rollback-record").unwrap().message,
        "rollback.started_at is before deployment.deployed_at: the rollback record is not this \
         deployment's"
    );
    let mut other = restored.clone();
    set(&mut other, "rollback.restored_commit", json!("0000000"));
    assert_eq!(finding(&other, "rollback-record").decision, Decision::Deny);
    // Completed a minute after `now` (14:40), and quick enough otherwise.
    let mut future = restored.clone();
    set(
        &mut future,
        "rollback.completed_at",
        json!("2026-11-26T14:41:00Z"),
    );
    let future = testing::finding::<Verify>(
        Phase::Verify,
        &future,
        &json!({"max_rollback_minutes": 60}),
        "rollback-duration",
    );
    assert_eq!(future.decision, Decision::Deny);
    assert_eq!(
        future.message,
        "rollback.completed_at is after now: the record is wrong"
    );
    // A rollback that restored the very commit it was to roll back.
    let mut same = restored.clone();
    set(&mut same, "rollback.restored_commit", json!("9f8d111"));
    assert_eq!(finding(&same, "rollback-record").decision, Decision::Deny);
    // A short SHA names the same commit as a full one.
    let mut full = restored.clone();
    set(
        &mut full,
        "rollback.restored_commit",
        json!("15bd6ad0c1f2e3d4a5b6c7d8e9f00112233445566"),
    );
    assert_eq!(finding(&full, "rollback-record").decision, Decision::Allow);
    let mut unnamed = restored.clone();
    remove(&mut unnamed, "rollback.restored_commit");
    assert_eq!(
        finding(&unnamed, "rollback-record").decision,
        Decision::Deny
    );
}

#[test]
fn after_a_rollback_nothing_rolls_back_again() {
    let mut firing = example("verify-rollback-restored");
    set(
        &mut firing,
        "alerts",
        json!([{"name": "CheckoutErrorRate", "severity": "critical", "state": "firing"}]),
    );
    let verdict = testing::evaluate::<Verify>(Phase::Verify, &firing, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny, "{verdict:#?}");
    assert_eq!(verdict.finding("alerts").unwrap().decision, Decision::Deny);
}

#[test]
fn a_restored_service_needs_traffic_to_show_it_and_a_declared_minimum() {
    let mut undeclared = example("verify-rollback-restored");
    remove(&mut undeclared, "gate.rollout.abort.min_requests");
    assert_eq!(
        finding(&undeclared, "service-restored-requests").decision,
        Decision::Deny
    );
    let mut quiet = example("verify-rollback-restored");
    set(&mut quiet, "rollback.metrics.requests", json!(40));
    set(&mut quiet, "rollback.metrics.errors", json!(0));
    assert_finding(
        &finding(&quiet, "service-restored-requests"),
        Decision::Deny,
        "40",
        ">= 500",
    );
}
