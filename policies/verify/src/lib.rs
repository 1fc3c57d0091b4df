//! Stock policy `builtin:verify`: post-deploy verification, of a rollout or
//! of a rollback.
//!
//! After a rollout, `metrics.canary` is the new version at full traffic and
//! `metrics.baseline` the previous version (or the period before the
//! deploy). Checks (stable ids): `smoke-tests`, `integration-tests`,
//! `user-journeys`, `alerts`, `observation-time`, `metrics-window`, and the
//! canary health checks (`min-requests`, `error-rate`, `error-rate-ratio`,
//! `latency-*`, `business-*`). A failed smoke or integration test, a failed
//! user journey, an unexpected critical alert or a metrics breach rolls back.
//!
//! After a rollback (the snapshot has `rollback`), it verifies the rollback
//! instead: `rollback-record` (the record is this deployment's: started
//! after `deployed_at`, restored a commit other than the deployed one, and
//! `previous_commit` when it is given), `rollback-duration`
//! (completed within 5 minutes by default, before `now`),
//! `service-restored-requests` (at least the declared `min_requests`),
//! `service-restored` and `service-restored-latency-*` (the restored
//! version within the declared `max_error_rate` and `max_latency_ms`), and
//! `alerts`. Every failure, a critical alert included, denies: there is
//! nothing left to roll back to, and a person must look.

use serde::Deserialize;
use shipgate_policy::checks::{self, Waiting};
use shipgate_policy::snapshot::{AbortThresholds, Cohort, RollbackRun};
use shipgate_policy::{
    Bound, Decision, Finding, Findings, Phase, Policy, PolicyInfo, Snapshot, Timestamp, Unit,
    Verdict,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How long the deployment must have run, and the metrics must cover,
    /// before it can be verified, in minutes.
    pub min_observation_minutes: f64,
    /// The longest a rollback may take, start to completion, in minutes
    /// (the discipline: a rollback plan that runs in under 5 minutes).
    pub max_rollback_minutes: f64,
    /// Whether key user journeys must be signed off by a person.
    pub require_user_journeys: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_observation_minutes: 15.0,
            max_rollback_minutes: 5.0,
            require_user_journeys: true,
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
            "Post-deploy verification: smoke and integration tests passed, key user journeys \
             signed off, no unexpected alert firing, error rate and latency within the declared \
             thresholds, observed for at least 15 minutes; after a rollback, that it completed \
             within 5 minutes and restored the service.",
            &[Phase::Verify],
        )
    }

    fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
        let mut findings = Findings::new();
        if let Some(rollback) = &snapshot.rollback {
            // Nothing here can roll back again: a failure denies.
            rollback_of_this_deployment(&mut findings, snapshot, rollback);
            let max_seconds = config.max_rollback_minutes * 60.0;
            rollback_duration(&mut findings, snapshot, rollback, max_seconds);
            service_restored(&mut findings, rollback, &snapshot.plan().abort);
            alerts(&mut findings, snapshot, Decision::Deny);
            return Ok(findings.verdict());
        }
        test_results(&mut findings, SMOKE, snapshot);
        test_results(&mut findings, INTEGRATION, snapshot);
        if config.require_user_journeys {
            user_journeys(&mut findings, snapshot);
        }
        alerts(&mut findings, snapshot, Decision::Rollback);
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

/// A kind of test result in the snapshot.
struct Tests {
    check: &'static str,
    /// What people call them: "smoke tests".
    name: &'static str,
    /// Where they are in the snapshot, for a missing-evidence finding.
    field: &'static str,
    /// Whether an empty list passes: a service may have no integration
    /// tests, but every deploy has smoke tests.
    none_is_fine: bool,
    /// Whether the key came with snapshot schema 2 (a version 1 snapshot
    /// cannot carry it).
    schema_2: bool,
}

/// A fact snapshot schema 2 added is ignored in a version 1 snapshot: the
/// sender must move to version 2, whatever it sent under the key.
fn schema_2_fact(snapshot: &Snapshot, field: &str) -> String {
    if snapshot.schema_version < 2 {
        let key = field.split(' ').next().unwrap_or(field);
        format!(
            "{key}, which needs schema_version 2 (this snapshot is version 1, where the key is \
             ignored)"
        )
    } else {
        field.to_string()
    }
}

const SMOKE: Tests = Tests {
    check: "smoke-tests",
    name: "smoke tests",
    field: "smoke_tests (at least one result)",
    none_is_fine: false,
    schema_2: false,
};

const INTEGRATION: Tests = Tests {
    check: "integration-tests",
    name: "integration tests",
    field: "integration_tests (send [] when the service has none)",
    none_is_fine: true,
    schema_2: true,
};

/// A failed test rolls back, an unfinished one holds, all passed allows.
fn test_results(findings: &mut Findings, kind: Tests, snapshot: &Snapshot) {
    let tests = if kind.schema_2 {
        snapshot.integration_tests.as_deref()
    } else {
        snapshot.smoke_tests.as_deref()
    };
    let tests = match tests {
        Some([]) if kind.none_is_fine => {
            findings
                .allow(kind.check, format!("the service has no {}", kind.name))
                .observed("none")
                .threshold("all passed");
            return;
        }
        Some(tests) if !tests.is_empty() => tests,
        _ => {
            let field = if kind.schema_2 {
                schema_2_fact(snapshot, kind.field)
            } else {
                kind.field.to_string()
            };
            findings.missing(kind.check, &field);
            return;
        }
    };
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
            kind.check,
            format!("{} failed: {}", kind.name, failed.join(", ")),
        )
    } else if !unfinished.is_empty() {
        findings.deny(
            kind.check,
            format!("{} not finished: {}", kind.name, unfinished.join(", ")),
        )
    } else {
        findings.allow(kind.check, format!("all {passed} {} passed", kind.name))
    };
    all_of(finding, passed, tests.len(), "passed");
}

/// The evidence of a check that wants all of `total`: "1 of 2 passed" vs
/// "all passed", as numbers too.
fn all_of(finding: &mut Finding, done: usize, total: usize, what: &str) {
    finding
        .observed(format!("{done} of {total} {what}"))
        .threshold(format!("all {what}"))
        .measured(done as f64, total as f64, Unit::Count, Bound::AtLeast);
}

/// Every key user journey passed and was signed off (who and when); a
/// failed journey rolls back, one not signed off holds.
fn user_journeys(findings: &mut Findings, snapshot: &Snapshot) {
    let journeys = snapshot.user_journeys.as_deref().unwrap_or_default();
    if journeys.is_empty() {
        let field = schema_2_fact(
            snapshot,
            "user_journeys (each key journey with status, verified_by and verified_at)",
        );
        findings.missing("user-journeys", &field);
        return;
    }
    let failed: Vec<&str> = journeys
        .iter()
        .filter(|j| j.status.as_deref() == Some("failed"))
        .map(|j| j.name.as_str())
        .collect();
    // A sign-off counts between the deploy and now: one from an earlier
    // release, or from the future, is not this deployment's.
    let deployed = snapshot.deployed_at();
    let now = snapshot.now();
    let signed_now = |at: Option<&str>| {
        let (Some(at), Some(deployed), Some(now)) = (at.and_then(Timestamp::parse), deployed, now)
        else {
            return false;
        };
        at.seconds_since(deployed) >= 0.0 && now.seconds_since(at) >= 0.0
    };
    let unsigned: Vec<&str> = journeys
        .iter()
        .filter(|j| {
            j.status.as_deref() != Some("passed")
                || j.verified_by.as_deref().is_none_or(str::is_empty)
                || !signed_now(j.verified_at.as_deref())
        })
        .map(|j| j.name.as_str())
        .collect();
    let signed = journeys.len() - unsigned.len();
    let finding = if !failed.is_empty() {
        findings.rollback(
            "user-journeys",
            format!("user journeys failed: {}", failed.join(", ")),
        )
    } else if !unsigned.is_empty() {
        findings.deny(
            "user-journeys",
            format!(
                "user journeys not signed off for this deployment (passed, by whom, when, \
                 between deployment.deployed_at and now): {}",
                unsigned.join(", ")
            ),
        )
    } else {
        let by: Vec<&str> = journeys
            .iter()
            .filter_map(|j| j.verified_by.as_deref())
            .collect();
        findings.allow(
            "user-journeys",
            format!(
                "all {signed} key user journeys signed off (by {})",
                by.join(", ")
            ),
        )
    };
    all_of(finding, signed, journeys.len(), "signed off");
}

/// The rollback record is this deployment's: it started after the deploy,
/// and it restored a commit other than the deployed one, the one the deploy
/// replaced when the snapshot names it. A record left over from an earlier
/// rollback must not verify a new rollout.
fn rollback_of_this_deployment(
    findings: &mut Findings,
    snapshot: &Snapshot,
    rollback: &RollbackRun,
) {
    const CHECK: &str = "rollback-record";
    let deployment = snapshot.deployment.as_ref();
    let (Some(deployed), Some(started)) = (snapshot.deployed_at(), rollback.started()) else {
        findings.missing(CHECK, "deployment.deployed_at and rollback.started_at");
        return;
    };
    let Some(restored) = rollback.restored_commit.as_deref() else {
        findings.missing(CHECK, "rollback.restored_commit");
        return;
    };
    let deployed_commit = deployment.and_then(|d| d.commit.as_deref());
    let previous = deployment.and_then(|d| d.previous_commit.as_deref());
    let finding = if started.seconds_since(deployed) < 0.0 {
        findings.deny(
            CHECK,
            "rollback.started_at is before deployment.deployed_at: the rollback record is not \
             this deployment's",
        )
    } else if deployed_commit.is_some_and(|commit| same_commit(commit, restored)) {
        findings.deny(
            CHECK,
            format!("the rollback restored {restored}, the commit it was to roll back"),
        )
    } else if let Some(previous) = previous
        && !same_commit(previous, restored)
    {
        findings.deny(
            CHECK,
            format!(
                "the rollback restored {restored}, not the commit this deployment replaced \
                 ({previous})"
            ),
        )
    } else {
        findings.allow(
            CHECK,
            format!("the rollback of this deployment restored {restored}"),
        )
    };
    finding
        .observed(format!("started {started}"))
        .threshold(format!("after {deployed}"));
}

/// Two names of one commit: equal, or one a prefix (of at least 7 hex
/// digits) of the other, as a short and a full SHA.
fn same_commit(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.len() >= 7 && long.starts_with(short))
}

/// The rollback completed within the promise (5 minutes by default), and
/// before `now`.
fn rollback_duration(
    findings: &mut Findings,
    snapshot: &Snapshot,
    rollback: &RollbackRun,
    max_seconds: f64,
) {
    const CHECK: &str = "rollback-duration";
    let Some(started) = rollback.started() else {
        findings.missing(CHECK, "rollback.started_at");
        return;
    };
    let Some(completed) = rollback.completed() else {
        findings.missing(
            CHECK,
            "rollback.completed_at (is the rollback still running?)",
        );
        return;
    };
    let took = completed.seconds_since(started);
    let wrong = if took < 0.0 {
        Some("rollback.completed_at is before rollback.started_at")
    } else if snapshot
        .now()
        .is_none_or(|now| now.seconds_since(completed) < 0.0)
    {
        Some("rollback.completed_at is after now")
    } else {
        None
    };
    if let Some(wrong) = wrong {
        findings
            .deny(CHECK, format!("{wrong}: the record is wrong"))
            .observed(format!("completed {completed}"));
        return;
    }
    findings.at_most(
        CHECK,
        "rollback took",
        took,
        max_seconds,
        Unit::Seconds,
        Decision::Deny,
    );
}

/// The restored version is back within the declared abort thresholds:
/// error rate, and each declared latency quantile.
fn service_restored(findings: &mut Findings, rollback: &RollbackRun, limits: &AbortThresholds) {
    const CHECK: &str = "service-restored";
    let Some(restored) = rollback.metrics.as_ref() else {
        findings.missing(
            CHECK,
            "rollback.metrics (the restored version since the rollback)",
        );
        return;
    };
    // A handful of requests is no evidence that the service is back.
    match (restored.requests, limits.min_requests) {
        (Some(requests), Some(minimum)) => {
            findings.at_least(
                "service-restored-requests",
                "restored traffic",
                requests,
                minimum,
                Unit::Count,
                Decision::Deny,
            );
        }
        (None, _) => {
            findings.missing("service-restored-requests", "rollback.metrics.requests");
        }
        (Some(_), None) => {
            findings
                .deny(
                    "service-restored-requests",
                    "the gate declares no min_requests (rollout.abort.min_requests) to judge the \
                     restored version's traffic by",
                )
                .observed("undeclared")
                .threshold("declared in the gate");
        }
    }
    match (Cohort::error_rate(restored), limits.max_error_rate) {
        (Some(rate), Some(max)) => {
            findings.at_most(
                CHECK,
                "restored error rate",
                rate,
                max,
                Unit::Percent,
                Decision::Deny,
            );
        }
        (None, _) => {
            findings.missing(CHECK, "rollback.metrics.errors and requests");
        }
        (Some(_), None) => {
            findings
                .deny(
                    CHECK,
                    "the gate declares no error-rate threshold (rollout.abort.max_error_rate) to \
                     judge the restored version by",
                )
                .observed("undeclared")
                .threshold("declared in the gate");
        }
    }
    let declared = limits.max_latency_ms.clone().unwrap_or_default();
    let observed = restored.latency_ms.clone().unwrap_or_default();
    for ((q, max), (_, value)) in declared.quantiles().into_iter().zip(observed.quantiles()) {
        let Some(max) = max else { continue };
        let check = format!("{CHECK}-latency-{q}");
        match value {
            Some(value) => {
                let what = format!("restored {q} latency");
                findings.at_most(&check, &what, value, max, Unit::Millis, Decision::Deny);
            }
            None => {
                findings.missing(&check, &format!("rollback.metrics.latency_ms.{q}"));
            }
        }
    }
}

/// No unexpected alert firing: a warning denies, a critical one says
/// `on_critical`.
fn alerts(findings: &mut Findings, snapshot: &Snapshot, on_critical: Decision) {
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
        (false, true) => on_critical,
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
