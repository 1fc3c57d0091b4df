//! Ready-made checks over the snapshot's metrics, shared by the stock canary
//! and verify policies and available to any policy author.

use crate::findings::Findings;
use crate::format::{Unit, fixed, ratio};
use crate::snapshot::{AbortThresholds, Cohort, Metrics};
use crate::time::Timestamp;
use crate::verdict::Decision;

/// Compares the canary cohort with the declared abort thresholds and the
/// baseline: minimum traffic, error rate (absolute and vs baseline), latency
/// p50/p95/p99 (absolute and vs baseline) and business events per request.
///
/// A breach rolls back. With fewer canary requests than `min_requests` a
/// breach only denies (inconclusive): a handful of requests is not evidence
/// enough to roll back on, nor to go ahead on.
///
/// ```
/// use shipgate_policy::checks::canary_health;
/// use shipgate_policy::snapshot::{AbortThresholds, Cohort, Metrics};
/// use shipgate_policy::{Decision, Findings};
///
/// let cohort = |requests: f64, errors: f64| Cohort {
///     requests: Some(requests),
///     errors: Some(errors),
///     ..Default::default()
/// };
/// let metrics = Metrics {
///     baseline: Some(cohort(120_000.0, 96.0)),
///     canary: Some(cohort(13_000.0, 533.0)),
///     ..Default::default()
/// };
/// let limits = AbortThresholds {
///     max_error_rate: Some(0.01),
///     min_requests: Some(500.0),
///     ..Default::default()
/// };
/// let mut findings = Findings::new();
/// canary_health(&mut findings, Some(&metrics), &limits);
/// let verdict = findings.verdict();
/// assert_eq!(verdict.decision, Decision::Rollback);
/// let error_rate = verdict.finding("error-rate").unwrap();
/// assert_eq!(error_rate.message, "canary error rate 4.1% exceeds 1.0%");
/// assert_eq!(error_rate.baseline_value, Some(0.0008));
/// ```
pub fn canary_health(findings: &mut Findings, metrics: Option<&Metrics>, limits: &AbortThresholds) {
    let Some(canary) = metrics.and_then(|m| m.canary.as_ref()) else {
        findings.missing("canary-metrics", "metrics.canary");
        return;
    };
    let baseline = metrics.and_then(|m| m.baseline.as_ref());
    let breach = min_requests(findings, canary, limits);
    error_rate(findings, canary, baseline, limits, breach);
    latency(findings, canary, baseline, limits, breach);
    business(findings, canary, baseline, limits, breach);
}

/// A threshold the gate should declare but does not: without it the check
/// cannot pass, so it denies.
fn undeclared(findings: &mut Findings, check: &str, what: &str) {
    findings
        .deny(check, format!("the gate declares no {what}"))
        .observed("undeclared")
        .threshold("declared in the gate");
}

/// Records `min-requests` and returns what a breach of the other checks means.
fn min_requests(findings: &mut Findings, canary: &Cohort, limits: &AbortThresholds) -> Decision {
    let Some(requests) = canary.requests else {
        findings.missing("min-requests", "metrics.canary.requests");
        return Decision::Deny;
    };
    let Some(minimum) = limits.min_requests else {
        return Decision::Rollback;
    };
    findings.at_least(
        "min-requests",
        "canary traffic",
        requests,
        minimum,
        Unit::Count,
        Decision::Deny,
    );
    if requests >= minimum {
        Decision::Rollback
    } else {
        Decision::Deny
    }
}

fn error_rate(
    findings: &mut Findings,
    canary: &Cohort,
    baseline: Option<&Cohort>,
    limits: &AbortThresholds,
    breach: Decision,
) {
    let Some(rate) = canary.error_rate() else {
        findings.missing(
            "error-rate",
            "metrics.canary.errors or a non-zero metrics.canary.requests",
        );
        return;
    };
    if limits.max_error_rate.is_none() && limits.max_error_rate_ratio.is_none() {
        undeclared(
            findings,
            "error-rate",
            "error-rate threshold (rollout.abort.max_error_rate)",
        );
        return;
    }
    let base_rate = baseline.and_then(Cohort::error_rate);
    if let Some(max) = limits.max_error_rate {
        let finding = findings.at_most(
            "error-rate",
            "canary error rate",
            rate,
            max,
            Unit::Percent,
            breach,
        );
        if let Some(base_rate) = base_rate {
            finding.baseline(base_rate);
        }
    }
    let Some(max_ratio) = limits.max_error_rate_ratio else {
        return;
    };
    let Some(base_rate) = base_rate else {
        findings.missing(
            "error-rate-ratio",
            "metrics.baseline.errors and metrics.baseline.requests",
        );
        return;
    };
    match ratio(rate, base_rate) {
        Some(r) => {
            findings
                .at_most(
                    "error-rate-ratio",
                    "canary error rate vs baseline",
                    r,
                    max_ratio,
                    Unit::Ratio,
                    breach,
                )
                .observed(format!(
                    "{} ({} vs {})",
                    Unit::Ratio.format(r),
                    Unit::Percent.format(rate),
                    Unit::Percent.format(base_rate)
                ));
        }
        // No baseline errors and no absolute limit: nothing to judge by.
        None if limits.max_error_rate.is_none() => {
            findings
                .deny(
                    "error-rate-ratio",
                    "baseline had no errors, so the ratio means nothing, and no absolute \
                     max_error_rate is declared to judge the canary by",
                )
                .observed(format!("{} vs 0%", Unit::Percent.format(rate)))
                .threshold(format!("<= {}", Unit::Ratio.format(max_ratio)));
        }
        // No baseline errors: a ratio means nothing, the absolute limit rules.
        None => {
            findings
                .allow(
                    "error-rate-ratio",
                    "baseline had no errors; the absolute error-rate limit applies",
                )
                .observed(format!("{} vs 0%", Unit::Percent.format(rate)))
                .threshold(format!("<= {}", Unit::Ratio.format(max_ratio)));
        }
    }
}

fn latency(
    findings: &mut Findings,
    canary: &Cohort,
    baseline: Option<&Cohort>,
    limits: &AbortThresholds,
    breach: Decision,
) {
    let declared = limits.max_latency_ms.clone().unwrap_or_default();
    let any_limit = declared
        .quantiles()
        .iter()
        .any(|(_, limit)| limit.is_some());
    if !any_limit && limits.max_latency_ratio.is_none() {
        undeclared(
            findings,
            "latency",
            "latency threshold (rollout.abort.max_latency_ms or max_latency_ratio)",
        );
        return;
    }
    let canary_latency = canary.latency_ms.clone().unwrap_or_default();
    let baseline_latency = baseline
        .and_then(|b| b.latency_ms.clone())
        .unwrap_or_default();
    let quantiles = canary_latency
        .quantiles()
        .into_iter()
        .zip(declared.quantiles())
        .zip(baseline_latency.quantiles());
    for (((q, observed), (_, max)), (_, base)) in quantiles {
        let wants_ratio = limits.max_latency_ratio.is_some();
        if max.is_none() && !wants_ratio {
            continue;
        }
        let Some(observed) = observed else {
            findings.missing(
                &format!("latency-{q}"),
                &format!("metrics.canary.latency_ms.{q}"),
            );
            continue;
        };
        if let Some(max) = max {
            let what = format!("canary {q} latency");
            let finding = findings.at_most(
                &format!("latency-{q}"),
                &what,
                observed,
                max,
                Unit::Millis,
                breach,
            );
            if let Some(base) = base {
                finding.baseline(base);
            }
        }
        let Some(max_ratio) = limits.max_latency_ratio else {
            continue;
        };
        let check = format!("latency-ratio-{q}");
        match base.and_then(|b| ratio(observed, b)) {
            Some(r) => {
                let what = format!("canary {q} latency vs baseline");
                findings
                    .at_most(&check, &what, r, max_ratio, Unit::Ratio, breach)
                    .observed(format!(
                        "{} ({} vs {})",
                        Unit::Ratio.format(r),
                        Unit::Millis.format(observed),
                        Unit::Millis.format(base.unwrap_or_default())
                    ));
            }
            None => {
                findings.missing(
                    &check,
                    &format!("a non-zero metrics.baseline.latency_ms.{q}"),
                );
            }
        }
    }
}

fn business(
    findings: &mut Findings,
    canary: &Cohort,
    baseline: Option<&Cohort>,
    limits: &AbortThresholds,
    breach: Decision,
) {
    let Some(max_drop) = limits.max_business_drop else {
        undeclared(
            findings,
            "business",
            "business-metric threshold (rollout.abort.max_business_drop)",
        );
        return;
    };
    let Some(base_events) = baseline.and_then(|b| b.business.as_ref()) else {
        findings.missing("business", "metrics.baseline.business");
        return;
    };
    for (name, &base_count) in base_events {
        let check = format!("business-{name}");
        let base_rate = baseline.and_then(|b| ratio(base_count, b.requests?));
        let canary_rate = canary
            .business
            .as_ref()
            .and_then(|events| events.get(name))
            .and_then(|&count| ratio(count, canary.requests?));
        let (Some(base_rate), Some(canary_rate)) = (base_rate, canary_rate) else {
            findings.missing(
                &check,
                &format!("metrics.canary.business.{name} (or requests)"),
            );
            continue;
        };
        let drop = match ratio(canary_rate, base_rate) {
            Some(r) => (1.0 - r).max(0.0),
            None => 0.0,
        };
        findings
            .at_most(
                &check,
                &format!("drop in {name} per request vs baseline"),
                drop,
                max_drop,
                Unit::Percent,
                breach,
            )
            .observed(format!(
                "-{} ({} vs {} per request)",
                Unit::Percent.format(drop),
                fixed(canary_rate, 4),
                fixed(base_rate, 4)
            ));
    }
}

/// A check that waits: at least `min_seconds` must have passed between a
/// timestamp in the snapshot and its `now`. [`time_elapsed`] runs it.
///
/// ```
/// use shipgate_policy::checks::{Waiting, time_elapsed};
/// use shipgate_policy::{Decision, Findings, Snapshot};
///
/// // Verify: the deployment must have run half an hour before it counts.
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:25:00Z",
///     "deployment": {"deployed_at": "2026-11-26T13:40:00Z"}
/// }"#).unwrap();
/// let soak = Waiting {
///     check: "soak-time",
///     since_field: "deployment.deployed_at",
///     since: snapshot.deployment.as_ref().and_then(|d| d.deployed_at.as_deref()),
///     min_seconds: 30.0 * 60.0,
///     waiting: "not verified yet",
///     measured: "since the deployment",
/// };
/// let mut findings = Findings::new();
/// time_elapsed(&mut findings, snapshot.now(), soak);
/// let verdict = findings.verdict();
/// assert_eq!(verdict.decision, Decision::Allow);
/// assert_eq!(verdict.summary, "time since the deployment 45m 0s reaches 30m 0s");
/// ```
pub struct Waiting<'a> {
    /// The check id, e.g. "stage-duration".
    pub check: &'a str,
    /// The snapshot field the time is measured from, e.g. "rollout.stage_started_at".
    pub since_field: &'a str,
    /// Its value, when the snapshot has it.
    pub since: Option<&'a str>,
    /// How long must have passed, in seconds.
    pub min_seconds: f64,
    /// What a deny means here, e.g. "hold" or "not verified yet".
    pub waiting: &'a str,
    /// What was measured, e.g. "observed in this stage".
    pub measured: &'a str,
}

/// Allows once enough time has passed; otherwise denies, saying how long is
/// left: "hold: 6m 0s of 15m 0s observed in this stage, 9m 0s left".
/// A missing or unreadable timestamp denies as missing evidence.
///
/// ```
/// use shipgate_policy::checks::{Waiting, time_elapsed};
/// use shipgate_policy::{Decision, Findings, Timestamp};
///
/// let mut findings = Findings::new();
/// time_elapsed(
///     &mut findings,
///     Timestamp::parse("2026-11-26T14:00:00Z"),
///     Waiting {
///         check: "stage-duration",
///         since_field: "rollout.stage_started_at",
///         since: Some("2026-11-26T13:54:00Z"),
///         min_seconds: 15.0 * 60.0,
///         waiting: "hold",
///         measured: "observed in this stage",
///     },
/// );
/// let verdict = findings.verdict();
/// assert_eq!(verdict.decision, Decision::Deny);
/// assert_eq!(verdict.summary, "hold: 6m 0s of 15m 0s observed in this stage, 9m 0s left");
/// ```
pub fn time_elapsed(findings: &mut Findings, now: Option<Timestamp>, spec: Waiting<'_>) {
    let since = spec.since.and_then(Timestamp::parse);
    let (Some(now), Some(since)) = (now, since) else {
        findings.missing(spec.check, spec.since_field);
        return;
    };
    let observed = now.seconds_since(since);
    let finding = findings.at_least(
        spec.check,
        &format!("time {}", spec.measured),
        observed,
        spec.min_seconds,
        Unit::Seconds,
        Decision::Deny,
    );
    if observed < spec.min_seconds {
        finding.message = format!(
            "{}: {} of {} {}, {} left",
            spec.waiting,
            Unit::Seconds.format(observed),
            Unit::Seconds.format(spec.min_seconds),
            spec.measured,
            Unit::Seconds.format(spec.min_seconds - observed)
        );
    }
}
