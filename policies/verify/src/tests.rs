use serde_json::{Value, json};
use shipgate_policy::testing::{self, assert_finding, remove, set};
use shipgate_policy::{Decision, Finding, Phase};

use crate::Verify;

fn example(name: &str) -> Value {
    let text = match name {
        "verify-allow" => include_str!("../../../examples/snapshots/verify-allow.json"),
        "verify-deny" => include_str!("../../../examples/snapshots/verify-deny.json"),
        "verify-rollback" => include_str!("../../../examples/snapshots/verify-rollback.json"),
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
