use serde_json::{Value, json};
use shipgate_policy::testing::{self, remove, set};
use shipgate_policy::{Decision, Finding, Phase};

use crate::Preflight;

fn ready() -> Value {
    testing::with_default_gate(include_str!(
        "../../../examples/snapshots/preflight-ready.json"
    ))
}

fn finding_with(snapshot: &Value, config: &Value, check: &str) -> Finding {
    testing::finding::<Preflight>(Phase::Preflight, snapshot, config, check)
}

fn finding(snapshot: &Value, check: &str) -> Finding {
    finding_with(snapshot, &json!({}), check)
}

/// Asserts the check passes on the ready snapshot, then fails as described
/// once `break_it` has changed it.
fn passes_then_fails(
    check: &str,
    pass: (&str, &str),
    break_it: impl FnOnce(&mut Value),
    fail_observed: &str,
) -> Finding {
    let good = finding(&ready(), check);
    assert_eq!(good.decision, Decision::Allow, "{good:?}");
    assert_eq!(
        (good.observed.as_deref(), good.threshold.as_deref()),
        (Some(pass.0), Some(pass.1))
    );
    let mut snapshot = ready();
    break_it(&mut snapshot);
    let bad = finding(&snapshot, check);
    assert_eq!(bad.decision, Decision::Deny, "{bad:?}");
    assert_eq!(bad.observed.as_deref(), Some(fail_observed), "{bad:?}");
    assert_eq!(bad.threshold, good.threshold);
    bad
}

#[test]
fn examples_decide_as_named() {
    let verdict = testing::evaluate::<Preflight>(Phase::Preflight, &ready(), &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Allow, "{verdict:#?}");
    assert_eq!(verdict.summary, "all 13 checks passed");
    let blocked = testing::with_default_gate(include_str!(
        "../../../examples/snapshots/preflight-blocked.json"
    ));
    let verdict = testing::evaluate::<Preflight>(Phase::Preflight, &blocked, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny);
    let failing: Vec<&str> = verdict
        .findings
        .iter()
        .filter(|f| f.decision != Decision::Allow)
        .map(|f| f.check.as_str())
        .collect();
    assert_eq!(
        failing,
        [
            "ci-commit",
            "migrations",
            "feature-flags",
            "rollback-tested",
            "triggered-by"
        ]
    );
}

#[test]
fn ci_commit_must_be_the_deployed_commit() {
    let bad = passes_then_fails(
        "ci-commit",
        ("9f8d111", "= 9f8d111"),
        |s| set(s, "ci.commit", json!("4c2e0aa")),
        "4c2e0aa",
    );
    assert_eq!(
        bad.message,
        "CI ran on 4c2e0aa, but 9f8d111 is being deployed"
    );
}

#[test]
fn ci_status_and_every_check_must_pass() {
    passes_then_fails(
        "ci-status",
        ("passed", "passed"),
        |s| set(s, "ci.status", json!("failed")),
        "failed",
    );
    let bad = passes_then_fails(
        "ci-status",
        ("passed", "passed"),
        |s| {
            set(
                s,
                "ci.checks",
                json!([{"name": "unit", "status": "passed"}, {"name": "e2e", "status": "running"}]),
            )
        },
        "passed",
    );
    assert_eq!(bad.message, "CI checks not passed: e2e");
}

#[test]
fn migrations_must_be_backward_compatible() {
    let bad = passes_then_fails(
        "migrations",
        (
            "1 migration(s)",
            "backward compatible, no dropped or non-nullable columns",
        ),
        |s| {
            set(
                s,
                "migrations",
                json!([{"id": "m1", "backward_compatible": true, "adds_non_nullable_columns": true, "drops_columns": false}]),
            )
        },
        "1 problem(s)",
    );
    assert_eq!(bad.message, "m1 adds non-nullable columns");
    let bad = passes_then_fails(
        "migrations",
        (
            "1 migration(s)",
            "backward compatible, no dropped or non-nullable columns",
        ),
        |s| {
            set(
                s,
                "migrations",
                json!([{"id": "m2", "backward_compatible": false, "drops_columns": true}]),
            )
        },
        "2 problem(s)",
    );
    assert_eq!(
        bad.message,
        "m2 drops columns; m2 is not backward compatible"
    );
}

#[test]
fn no_migrations_is_fine_but_an_absent_list_is_missing_evidence() {
    let mut s = ready();
    set(&mut s, "migrations", json!([]));
    assert_eq!(finding(&s, "migrations").decision, Decision::Allow);
    remove(&mut s, "migrations");
    let f = finding(&s, "migrations");
    assert_eq!(
        (f.decision, f.observed.as_deref()),
        (Decision::Deny, Some("missing"))
    );
}

#[test]
fn new_feature_flags_must_be_off_by_default() {
    let bad = passes_then_fails(
        "feature-flags",
        ("0 of 1 new flag(s) on", "new flags off by default"),
        |s| {
            set(
                s,
                "feature_flags",
                json!([{"key": "one-click-pay", "new_in_release": true, "default_enabled": true}]),
            )
        },
        "1 of 1 new flag(s) on",
    );
    assert_eq!(bad.message, "new flag(s) not off by default: one-click-pay");
}

#[test]
fn rollback_plan_must_be_documented_with_steps() {
    let bad = passes_then_fails(
        "rollback-plan",
        ("documented: true, 1 step(s)", "documented, >= 1 step"),
        |s| set(s, "rollback_plan.steps", json!([])),
        "documented: true, 0 step(s)",
    );
    assert_eq!(bad.message, "rollback plan has no steps");
}

#[test]
fn rollback_must_be_tested_under_five_minutes() {
    let bad = passes_then_fails(
        "rollback-tested",
        ("2m 50s", "<= 5m 0s"),
        |s| set(s, "rollback_plan.tested_duration_seconds", json!(301)),
        "5m 1s",
    );
    assert_eq!(bad.message, "tested rollback time 5m 1s exceeds 5m 0s");
}

#[test]
fn rollback_limit_is_configurable() {
    let f = finding_with(
        &ready(),
        &json!({"max_rollback_seconds": 120}),
        "rollback-tested",
    );
    assert_eq!(
        (f.decision, f.threshold.as_deref()),
        (Decision::Deny, Some("<= 2m 0s"))
    );
}

#[test]
fn an_untested_rollback_is_missing_evidence() {
    let mut s = ready();
    remove(&mut s, "rollback_plan.last_tested_at");
    let f = finding(&s, "rollback-tested");
    assert_eq!(
        (f.decision, f.observed.as_deref()),
        (Decision::Deny, Some("missing"))
    );
}

#[test]
fn deploy_window_must_be_approved_and_quiet() {
    let bad = passes_then_fails(
        "deploy-window",
        ("approved: true, low traffic: true", "approved, low traffic"),
        |s| set(s, "window.low_traffic", json!(false)),
        "approved: true, low traffic: false",
    );
    assert_eq!(bad.message, "deployment window not low traffic");
}

#[test]
fn someone_must_be_on_call() {
    passes_then_fails(
        "on-call",
        ("1 on call", ">= 1 on call"),
        |s| set(s, "window.on_call", json!([])),
        "0 on call",
    );
}

#[test]
fn stakeholders_must_be_notified() {
    passes_then_fails(
        "stakeholders",
        ("true", "true"),
        |s| set(s, "stakeholders_notified", json!(false)),
        "false",
    );
}

#[test]
fn deployments_come_from_the_pipeline() {
    let bad = passes_then_fails(
        "triggered-by",
        ("ci", "one of ci, cd"),
        |s| set(s, "deployment.triggered_by", json!("alice@laptop")),
        "alice@laptop",
    );
    assert_eq!(
        bad.message,
        "deployment triggered by 'alice@laptop', not by CI/CD"
    );
}

#[test]
fn no_other_change_in_flight() {
    passes_then_fails(
        "changes-in-flight",
        ("0", "0"),
        |s| {
            set(
                s,
                "deployment.changes_in_flight",
                json!([{"id": "d-4811", "service": "checkout"}]),
            )
        },
        "1",
    );
}

#[test]
fn rollout_plan_is_a_small_canary_then_increasing_stages() {
    let threshold = "first <= 5%, increasing, ending at 100%, >= 15 min a stage";
    let good = finding(&ready(), "rollout-plan");
    assert_eq!(
        good.observed.as_deref(),
        Some("stages [5, 10, 25, 50, 100], 15 min a stage")
    );
    assert_eq!(good.threshold.as_deref(), Some(threshold));
    let bad = passes_then_fails(
        "rollout-plan",
        ("stages [5, 10, 25, 50, 100], 15 min a stage", threshold),
        |s| {
            set(s, "gate.rollout.stages", json!([20, 10, 90]));
            set(s, "gate.rollout.min_stage_minutes", json!(5));
        },
        "stages [20, 10, 90], 5 min a stage",
    );
    assert_eq!(
        bad.message,
        "first stage 20% is not a canary of at most 5%; stages do not strictly increase; \
         last stage is not 100%; 5 minutes a stage is under 15"
    );
}

#[test]
fn abort_thresholds_must_be_declared() {
    let bad = passes_then_fails(
        "abort-thresholds",
        ("declared", "error rate, latency and business thresholds"),
        |s| set(s, "gate.rollout.abort", json!({"max_error_rate": 0.01})),
        "missing: latency, business metrics",
    );
    assert_eq!(
        bad.message,
        "no abort threshold declared for latency, business metrics"
    );
}

#[test]
fn an_empty_snapshot_denies_every_check_as_missing_evidence() {
    let empty = json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z"});
    let verdict = testing::evaluate::<Preflight>(Phase::Preflight, &empty, &json!({})).unwrap();
    assert_eq!(verdict.decision, Decision::Deny);
    assert!(
        verdict
            .findings
            .iter()
            .all(|f| f.decision == Decision::Deny),
        "{verdict:#?}"
    );
}
