//! Stock policy `builtin:verify`: post-deploy verification.
//!
//! In this phase `metrics.canary` is the new version at full traffic and
//! `metrics.baseline` the previous version (or the period before the deploy).
//!
//! Checks (stable ids): `smoke-tests`, `alerts`, `observation-time`,
//! `metrics-window`, and the canary health checks (`min-requests`,
//! `error-rate`, `error-rate-ratio`, `latency-*`, `business-*`). A failed
//! smoke test, an unexpected critical alert or a metrics breach rolls back.

use serde::Deserialize;
use shipgate_policy::checks::{self, Waiting};
use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Unit, Verdict};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long the deployment must have run, and the metrics must cover,
    /// before it can be verified, in minutes.
    pub min_observation_minutes: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_observation_minutes: 15.0,
        }
    }
}

pub struct Verify;

impl Policy for Verify {
    type Config = Config;

    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "verify",
            env!("CARGO_PKG_VERSION"),
            "Post-deploy verification: smoke tests passed, no unexpected alert firing, error rate \
             and latency within the declared thresholds, observed for at least 15 minutes.",
            &[Phase::Verify],
        )
    }

    fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
        let mut findings = Findings::new();
        smoke_tests(&mut findings, snapshot);
        alerts(&mut findings, snapshot);
        let min_seconds = config.min_observation_minutes * 60.0;
        observation_time(&mut findings, snapshot, min_seconds);
        metrics_window(&mut findings, snapshot, min_seconds);
        checks::canary_health(
            &mut findings,
            snapshot.metrics.as_ref(),
            &snapshot.plan().abort,
        );
        Ok(findings.verdict())
    }
}

fn smoke_tests(findings: &mut Findings, snapshot: &Snapshot) {
    let tests = snapshot.smoke_tests.as_deref().unwrap_or_default();
    if tests.is_empty() {
        findings.missing("smoke-tests", "smoke_tests (at least one result)");
        return;
    }
    let named = |status: fn(&str) -> bool| -> Vec<&str> {
        tests
            .iter()
            .filter(|t| status(&t.status))
            .map(|t| t.name.as_str())
            .collect()
    };
    let failed = named(|s| s == "failed");
    let unfinished = named(|s| s != "failed" && s != "passed");
    let passed = tests.len() - failed.len() - unfinished.len();
    let finding = if !failed.is_empty() {
        findings.rollback(
            "smoke-tests",
            format!("smoke tests failed: {}", failed.join(", ")),
        )
    } else if !unfinished.is_empty() {
        findings.deny(
            "smoke-tests",
            format!("smoke tests not finished: {}", unfinished.join(", ")),
        )
    } else {
        findings.allow("smoke-tests", format!("all {passed} smoke tests passed"))
    };
    finding
        .observed(format!("{passed} of {} passed", tests.len()))
        .threshold("all passed");
}

fn alerts(findings: &mut Findings, snapshot: &Snapshot) {
    let Some(alerts) = snapshot.alerts.as_ref() else {
        findings.missing("alerts", "alerts (send [] when none are firing)");
        return;
    };
    let unexpected: Vec<_> = alerts
        .iter()
        .filter(|a| a.state.as_deref() == Some("firing") && a.expected != Some(true))
        .collect();
    let critical = unexpected
        .iter()
        .any(|a| a.severity.as_deref() == Some("critical"));
    let names: Vec<String> = unexpected
        .iter()
        .map(|a| {
            format!(
                "{} ({})",
                a.name,
                a.severity.as_deref().unwrap_or("no severity")
            )
        })
        .collect();
    let decision = match (unexpected.is_empty(), critical) {
        (true, _) => Decision::Allow,
        (false, true) => Decision::Rollback,
        (false, false) => Decision::Deny,
    };
    let message = if unexpected.is_empty() {
        "no unexpected alert firing".to_string()
    } else {
        format!("unexpected alert(s) firing: {}", names.join(", "))
    };
    findings
        .add("alerts", decision, message)
        .observed(format!("{} unexpected firing", unexpected.len()))
        .threshold("0 unexpected firing");
}

fn observation_time(findings: &mut Findings, snapshot: &Snapshot, min_seconds: f64) {
    let since = snapshot
        .deployment
        .as_ref()
        .and_then(|d| d.deployed_at.as_deref());
    let spec = Waiting {
        check: "observation-time",
        since_field: "deployment.deployed_at",
        since,
        min_seconds,
        waiting: "not verified yet",
        measured: "since deploy",
    };
    checks::time_elapsed(findings, snapshot.now(), spec);
}

fn metrics_window(findings: &mut Findings, snapshot: &Snapshot, min_seconds: f64) {
    let Some(window) = snapshot.metrics.as_ref().and_then(|m| m.window_seconds) else {
        findings.missing("metrics-window", "metrics.window_seconds");
        return;
    };
    findings.at_least(
        "metrics-window",
        "metrics window",
        window,
        min_seconds,
        Unit::Seconds,
        Decision::Deny,
    );
}

shipgate_policy::export_policy!(Verify);

#[cfg(test)]
mod tests;
