use serde_json::{Value, json};
use shipgate_policy::testing::{self, assert_finding, remove, set};
use shipgate_policy::{Decision, Finding, Phase};

use crate::Canary;

fn example(name: &str) -> Value {
    let text = match name {
        "promotion-allow" => include_str!("../../../examples/snapshots/promotion-allow.json"),
        "promotion-hold" => include_str!("../../../examples/snapshots/promotion-hold.json"),
        "promotion-rollback" => include_str!("../../../examples/snapshots/promotion-rollback.json"),
        "abort-allow" => include_str!("../../../examples/snapshots/abort-allow.json"),
        "abort-rollback" => include_str!("../../../examples/snapshots/abort-rollback.json"),
        other => panic!("no example {other}"),
    };
    testing::with_default_gate(text)
}

fn finding(phase: Phase, snapshot: &Value, check: &str) -> Finding {
    testing::finding::<Canary>(phase, snapshot, &json!({}), check)
}

#[test]
fn examples_decide_as_named() {
    for (name, phase, decision) in [
        ("promotion-allow", Phase::Promotion, Decision::Allow),
        ("promotion-hold", Phase::Promotion, Decision::Deny),
        ("promotion-rollback", Phase::Promotion, Decision::Rollback),
        ("abort-allow", Phase::Abort, Decision::Allow),
        ("abort-rollback", Phase::Abort, Decision::Rollback),
    ] {
        let verdict = testing::evaluate::<Canary>(phase, &example(name), &json!({})).unwrap();
        assert_eq!(verdict.decision, decision, "{name}: {verdict:#?}");
    }
}

#[test]
fn min_requests() {
    let good = example("abort-allow");
    assert_finding(
        &finding(Phase::Abort, &good, "min-requests"),
        Decision::Allow,
        "13000",
        ">= 500",
    );
    let mut thin = good.clone();
    set(&mut thin, "metrics.canary.requests", json!(120));
    set(&mut thin, "metrics.canary.errors", json!(0));
    assert_finding(
        &finding(Phase::Abort, &thin, "min-requests"),
        Decision::Deny,
        "120",
        ">= 500",
    );
}

#[test]
fn few_requests_turn_a_breach_into_a_hold() {
    let mut thin = example("abort-allow");
    set(&mut thin, "metrics.canary.requests", json!(100));
    set(&mut thin, "metrics.canary.errors", json!(20));
    let f = finding(Phase::Abort, &thin, "error-rate");
    assert_finding(&f, Decision::Deny, "20.0%", "<= 1.0%");
}

#[test]
fn error_rate() {
    let good = example("abort-allow");
    assert_finding(
        &finding(Phase::Abort, &good, "error-rate"),
        Decision::Allow,
        "0.08%",
        "<= 1.0%",
    );
    let bad = example("abort-rollback");
    let f = finding(Phase::Abort, &bad, "error-rate");
    assert_finding(&f, Decision::Rollback, "4.1%", "<= 1.0%");
    assert_eq!(f.message, "canary error rate 4.1% exceeds 1.0%");
}

#[test]
fn error_rate_ratio() {
    let good = example("abort-allow");
    assert_finding(
        &finding(Phase::Abort, &good, "error-rate-ratio"),
        Decision::Allow,
        "1.06x (0.08% vs 0.08%)",
        "<= 1.5x",
    );
    let mut bad = good.clone();
    // 0.2% against 0.08%: inside the absolute limit, 2.5x the baseline.
    set(&mut bad, "metrics.canary.errors", json!(26));
    assert_finding(
        &finding(Phase::Abort, &bad, "error-rate-ratio"),
        Decision::Rollback,
        "2.5x (0.2% vs 0.08%)",
        "<= 1.5x",
    );
}

#[test]
fn error_rate_ratio_without_baseline_errors_defers_to_the_absolute_limit() {
    let mut s = example("abort-allow");
    set(&mut s, "metrics.baseline.errors", json!(0));
    let f = finding(Phase::Abort, &s, "error-rate-ratio");
    assert_finding(&f, Decision::Allow, "0.08% vs 0%", "<= 1.5x");
}

#[test]
fn latency_absolute_limits() {
    let mut good = example("abort-allow");
    set(
        &mut good,
        "gate.rollout.abort.max_latency_ms",
        json!({"p50": 150, "p95": 400, "p99": 800}),
    );
    assert_finding(
        &finding(Phase::Abort, &good, "latency-p99"),
        Decision::Allow,
        "330 ms",
        "<= 800 ms",
    );
    let mut bad = good.clone();
    set(&mut bad, "metrics.canary.latency_ms.p95", json!(450));
    assert_finding(
        &finding(Phase::Abort, &bad, "latency-p95"),
        Decision::Rollback,
        "450 ms",
        "<= 400 ms",
    );
    assert_finding(
        &finding(Phase::Abort, &bad, "latency-p50"),
        Decision::Allow,
        "43 ms",
        "<= 150 ms",
    );
}

#[test]
fn latency_ratios() {
    let good = example("abort-allow");
    assert_finding(
        &finding(Phase::Abort, &good, "latency-ratio-p95"),
        Decision::Allow,
        "1.05x (126 ms vs 120 ms)",
        "<= 1.3x",
    );
    let bad = example("abort-rollback");
    assert_finding(
        &finding(Phase::Abort, &bad, "latency-ratio-p99"),
        Decision::Rollback,
        "4.0x (1240 ms vs 310 ms)",
        "<= 1.3x",
    );
}

#[test]
fn business_metrics() {
    let good = example("abort-allow");
    let f = finding(Phase::Abort, &good, "business-orders");
    assert_finding(
        &f,
        Decision::Allow,
        "-0.31% (0.0415 vs 0.0417 per request)",
        "<= 10.0%",
    );
    let mut bad = good.clone();
    set(&mut bad, "metrics.canary.business.orders", json!(400));
    let f = finding(Phase::Abort, &bad, "business-orders");
    assert_finding(
        &f,
        Decision::Rollback,
        "-26.15% (0.0308 vs 0.0417 per request)",
        "<= 10.0%",
    );
}

#[test]
fn missing_business_metric_in_the_canary_denies() {
    let mut s = example("abort-allow");
    remove(&mut s, "metrics.canary.business");
    let f = finding(Phase::Abort, &s, "business-orders");
    assert_eq!(f.decision, Decision::Deny);
    assert!(
        f.message.contains("metrics.canary.business.orders"),
        "{}",
        f.message
    );
}

#[test]
fn missing_metrics_never_pass() {
    let mut s = example("abort-allow");
    remove(&mut s, "metrics");
    let verdict = testing::evaluate::<Canary>(Phase::Abort, &s, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny);
    let f = verdict.finding("canary-metrics").unwrap();
    assert_eq!(f.observed.as_deref(), Some("missing"));
}

#[test]
fn stage_duration_holds_and_says_how_long_is_left() {
    let good = example("promotion-allow");
    assert_finding(
        &finding(Phase::Promotion, &good, "stage-duration"),
        Decision::Allow,
        "16m 0s",
        ">= 15m 0s",
    );
    let hold = finding(
        Phase::Promotion,
        &example("promotion-hold"),
        "stage-duration",
    );
    assert_finding(&hold, Decision::Deny, "6m 0s", ">= 15m 0s");
    assert_eq!(
        hold.message,
        "hold: 6m 0s of 15m 0s observed in this stage, 9m 0s left"
    );
}

#[test]
fn stage_duration_is_not_checked_in_abort() {
    let verdict =
        testing::evaluate::<Canary>(Phase::Abort, &example("promotion-hold"), &json!({})).unwrap();
    assert!(verdict.finding("stage-duration").is_none());
    assert_eq!(verdict.decision, Decision::Allow);
}

#[test]
fn stage_plan() {
    let good = example("promotion-allow");
    assert_finding(
        &finding(Phase::Promotion, &good, "stage-plan"),
        Decision::Allow,
        "10%",
        "10%",
    );
    let mut skipped = good.clone();
    set(&mut skipped, "rollout.weight", json!(50));
    assert_finding(
        &finding(Phase::Promotion, &skipped, "stage-plan"),
        Decision::Deny,
        "50%",
        "10%",
    );
}

#[test]
fn unknown_config_keys_and_other_phases_are_faults() {
    let s = example("abort-allow");
    let err =
        testing::evaluate::<Canary>(Phase::Abort, &s, &json!({"max_eror_rate": 1})).unwrap_err();
    assert!(err.contains("unknown field `max_eror_rate`"), "{err}");
    let err = testing::evaluate::<Canary>(Phase::Preflight, &s, &json!({})).unwrap_err();
    assert_eq!(err, "policy 'canary' does not evaluate the preflight phase");
}

#[test]
fn a_zero_error_baseline_without_an_absolute_limit_cannot_pass() {
    let mut s = example("abort-rollback");
    set(&mut s, "metrics.baseline.errors", json!(0));
    remove(&mut s, "gate.rollout.abort.max_error_rate");
    let f = finding(Phase::Abort, &s, "error-rate-ratio");
    assert_finding(&f, Decision::Deny, "4.1% vs 0%", "<= 1.5x");
}

#[test]
fn undeclared_thresholds_and_missing_business_metrics_deny() {
    let mut s = example("abort-allow");
    set(&mut s, "gate.rollout.abort", json!({"min_requests": 500}));
    let verdict = testing::evaluate::<Canary>(Phase::Abort, &s, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny);
    for check in ["error-rate", "latency", "business"] {
        let f = verdict.finding(check).unwrap();
        assert_finding(f, Decision::Deny, "undeclared", "declared in the gate");
    }
    let mut s = example("abort-allow");
    remove(&mut s, "metrics.baseline.business");
    let f = finding(Phase::Abort, &s, "business");
    assert_eq!(
        (f.decision, f.observed.as_deref()),
        (Decision::Deny, Some("missing"))
    );
}

/// Flagger asks to confirm every traffic increase, the first (0 % to the
/// first stage) included: with no canary traffic there is nothing to hold.
#[test]
fn promotion_from_no_traffic_starts_the_first_stage() {
    let mut start = example("promotion-allow");
    set(&mut start, "rollout.weight", json!(0));
    remove(&mut start, "rollout.stage_index");
    set(&mut start, "metrics.canary.requests", json!(0));
    set(&mut start, "metrics.canary.errors", json!(0));
    let verdict = testing::evaluate::<Canary>(Phase::Promotion, &start, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Allow, "{verdict:#?}");
    assert_eq!(verdict.findings.len(), 1);
    assert_finding(
        &verdict.findings[0],
        Decision::Allow,
        "0%",
        "first stage 5%",
    );
    // The abort analysis still judges the same snapshot: too few requests.
    let abort = testing::evaluate::<Canary>(Phase::Abort, &start, &json!({})).unwrap();
    assert_eq!(abort.decision, Decision::Deny);
}
