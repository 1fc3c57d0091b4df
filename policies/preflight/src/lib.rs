//! Stock policy `builtin:preflight`: the checklist a change must pass before
//! it ships.
//!
//! Checks (stable ids): `ci-commit`, `ci-status`, `migrations`,
//! `feature-flags`, `rollback-plan`, `rollback-tested`, `deploy-window`,
//! `on-call`, `stakeholders`, `triggered-by`, `changes-in-flight`,
//! `rollout-plan`, `abort-thresholds`. Every failure denies.

use serde::Deserialize;
use shipgate_policy::snapshot::RolloutPlan;
use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Unit, Verdict};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The longest a tested rollback may take, in seconds.
    pub max_rollback_seconds: f64,
    /// The `deployment.triggered_by` values that count as a pipeline.
    pub allowed_triggers: Vec<String>,
    /// The largest first (canary) stage the plan may declare, in percent.
    pub max_first_stage: f64,
    /// The least observation per stage the plan may declare, in minutes.
    pub min_stage_minutes: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_rollback_seconds: 300.0,
            allowed_triggers: vec!["ci".to_string(), "cd".to_string()],
            max_first_stage: 5.0,
            min_stage_minutes: 15.0,
        }
    }
}

pub struct Preflight;

impl Policy for Preflight {
    type Config = Config;

    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "preflight",
            env!("CARGO_PKG_VERSION"),
            "Preflight checklist: CI green on the exact commit, compatible migrations, new flags off, \
             a tested rollback plan, an approved window with on-call, stakeholders told, a pipeline \
             deploy with nothing else in flight, and a declared staged plan with abort thresholds.",
            &[Phase::Preflight],
        )
    }

    fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
        let mut findings = Findings::new();
        ci(&mut findings, snapshot);
        migrations(&mut findings, snapshot);
        feature_flags(&mut findings, snapshot);
        rollback(&mut findings, snapshot, config);
        window(&mut findings, snapshot);
        stakeholders(&mut findings, snapshot);
        deployment(&mut findings, snapshot, config);
        let plan = snapshot.plan();
        rollout_plan(&mut findings, &plan, config);
        abort_thresholds(&mut findings, &plan);
        Ok(findings.verdict())
    }
}

fn ci(findings: &mut Findings, snapshot: &Snapshot) {
    let ci = snapshot.ci.as_ref();
    let deployed = snapshot
        .deployment
        .as_ref()
        .and_then(|d| d.commit.as_deref());
    match (ci.and_then(|c| c.commit.as_deref()), deployed) {
        (Some(tested), Some(deployed)) => {
            findings
                .require(
                    "ci-commit",
                    tested == deployed,
                    format!("CI ran on the deployed commit {deployed}"),
                    format!("CI ran on {tested}, but {deployed} is being deployed"),
                    Decision::Deny,
                )
                .observed(tested)
                .threshold(format!("= {deployed}"));
        }
        (None, _) => {
            findings.missing("ci-commit", "ci.commit");
        }
        (_, None) => {
            findings.missing("ci-commit", "deployment.commit");
        }
    }
    let Some(status) = ci.and_then(|c| c.status.as_deref()) else {
        findings.missing("ci-status", "ci.status");
        return;
    };
    let failing: Vec<&str> = ci
        .and_then(|c| c.checks.as_ref())
        .into_iter()
        .flatten()
        .filter(|check| check.status != "passed")
        .map(|check| check.name.as_str())
        .collect();
    let finding = if status != "passed" {
        findings.deny("ci-status", format!("CI status is '{status}'"))
    } else if !failing.is_empty() {
        findings.deny(
            "ci-status",
            format!("CI checks not passed: {}", failing.join(", ")),
        )
    } else {
        findings.allow("ci-status", "CI passed")
    };
    finding.observed(status).threshold("passed");
}

fn migrations(findings: &mut Findings, snapshot: &Snapshot) {
    let Some(migrations) = snapshot.migrations.as_ref() else {
        findings.missing(
            "migrations",
            "migrations (send [] when the release has none)",
        );
        return;
    };
    let mut problems = Vec::new();
    for m in migrations {
        if m.drops_columns == Some(true) {
            problems.push(format!("{} drops columns", m.id));
        }
        if m.adds_non_nullable_columns == Some(true) {
            problems.push(format!("{} adds non-nullable columns", m.id));
        }
        match m.backward_compatible {
            Some(true) => {}
            Some(false) => problems.push(format!("{} is not backward compatible", m.id)),
            None => problems.push(format!(
                "{} does not say whether it is backward compatible",
                m.id
            )),
        }
    }
    let count = format!("{} migration(s)", migrations.len());
    findings
        .require(
            "migrations",
            problems.is_empty(),
            format!("all {count} are backward compatible"),
            problems.join("; "),
            Decision::Deny,
        )
        .observed(if problems.is_empty() {
            count
        } else {
            format!("{} problem(s)", problems.len())
        })
        .threshold("backward compatible, no dropped or non-nullable columns");
}

fn feature_flags(findings: &mut Findings, snapshot: &Snapshot) {
    let Some(flags) = snapshot.feature_flags.as_ref() else {
        findings.missing(
            "feature-flags",
            "feature_flags (send [] when the release adds none)",
        );
        return;
    };
    let on: Vec<&str> = flags
        .iter()
        .filter(|f| f.new_in_release != Some(false) && f.default_enabled != Some(false))
        .map(|f| f.key.as_str())
        .collect();
    let new = flags
        .iter()
        .filter(|f| f.new_in_release != Some(false))
        .count();
    findings
        .require(
            "feature-flags",
            on.is_empty(),
            format!("all {new} new flag(s) are off by default"),
            format!("new flag(s) not off by default: {}", on.join(", ")),
            Decision::Deny,
        )
        .observed(format!("{} of {new} new flag(s) on", on.len()))
        .threshold("new flags off by default");
}

fn rollback(findings: &mut Findings, snapshot: &Snapshot, config: &Config) {
    let Some(plan) = snapshot.rollback_plan.as_ref() else {
        findings.missing("rollback-plan", "rollback_plan");
        findings.missing("rollback-tested", "rollback_plan");
        return;
    };
    let steps = plan.steps.as_ref().map_or(0, Vec::len);
    let documented = plan.documented == Some(true);
    findings
        .require(
            "rollback-plan",
            documented && steps > 0,
            format!("rollback plan documented with {steps} step(s)"),
            if documented {
                "rollback plan has no steps".to_string()
            } else {
                "rollback plan is not documented".to_string()
            },
            Decision::Deny,
        )
        .observed(format!("documented: {documented}, {steps} step(s)"))
        .threshold("documented, >= 1 step");
    match (plan.tested_duration_seconds, plan.last_tested_at.as_deref()) {
        (Some(seconds), Some(_)) => {
            findings.at_most(
                "rollback-tested",
                "tested rollback time",
                seconds,
                config.max_rollback_seconds,
                Unit::Seconds,
                Decision::Deny,
            );
        }
        _ => {
            findings.missing(
                "rollback-tested",
                "rollback_plan.last_tested_at and rollback_plan.tested_duration_seconds",
            );
        }
    }
}

fn window(findings: &mut Findings, snapshot: &Snapshot) {
    let Some(window) = snapshot.window.as_ref() else {
        findings.missing("deploy-window", "window");
        findings.missing("on-call", "window.on_call");
        return;
    };
    let (approved, low) = (
        window.approved == Some(true),
        window.low_traffic == Some(true),
    );
    let mut missing = Vec::new();
    if !approved {
        missing.push("approved");
    }
    if !low {
        missing.push("low traffic");
    }
    findings
        .require(
            "deploy-window",
            missing.is_empty(),
            "deployment window approved, low traffic",
            format!("deployment window not {}", missing.join(" nor ")),
            Decision::Deny,
        )
        .observed(format!("approved: {approved}, low traffic: {low}"))
        .threshold("approved, low traffic");
    let on_call = window.on_call.as_deref().unwrap_or_default();
    findings
        .require(
            "on-call",
            !on_call.is_empty(),
            format!("on-call present: {}", on_call.join(", ")),
            "nobody on call for the deployment window",
            Decision::Deny,
        )
        .observed(format!("{} on call", on_call.len()))
        .threshold(">= 1 on call");
}

fn stakeholders(findings: &mut Findings, snapshot: &Snapshot) {
    let Some(notified) = snapshot.stakeholders_notified else {
        findings.missing("stakeholders", "stakeholders_notified");
        return;
    };
    findings
        .require(
            "stakeholders",
            notified,
            "stakeholders notified",
            "stakeholders not notified",
            Decision::Deny,
        )
        .observed(notified.to_string())
        .threshold("true");
}

fn deployment(findings: &mut Findings, snapshot: &Snapshot, config: &Config) {
    let deployment = snapshot.deployment.as_ref();
    match deployment.and_then(|d| d.triggered_by.as_deref()) {
        Some(by) => {
            findings
                .require(
                    "triggered-by",
                    config.allowed_triggers.iter().any(|t| t == by),
                    format!("deployment triggered by the pipeline ({by})"),
                    format!("deployment triggered by '{by}', not by CI/CD"),
                    Decision::Deny,
                )
                .observed(by)
                .threshold(format!("one of {}", config.allowed_triggers.join(", ")));
        }
        None => {
            findings.missing("triggered-by", "deployment.triggered_by");
        }
    }
    match deployment.and_then(|d| d.changes_in_flight.as_ref()) {
        Some(changes) => {
            findings
                .require(
                    "changes-in-flight",
                    changes.is_empty(),
                    "no other change in flight",
                    format!("{} other change(s) in flight", changes.len()),
                    Decision::Deny,
                )
                .observed(changes.len().to_string())
                .threshold("0");
        }
        None => {
            findings.missing("changes-in-flight", "deployment.changes_in_flight");
        }
    }
}

fn rollout_plan(findings: &mut Findings, plan: &RolloutPlan, config: &Config) {
    let stages = &plan.stages;
    let mut problems = Vec::new();
    match stages.first() {
        None => problems.push("no stages declared".to_string()),
        Some(&first) if first > config.max_first_stage || first <= 0.0 => problems.push(format!(
            "first stage {first}% is not a canary of at most {}%",
            config.max_first_stage
        )),
        Some(_) => {}
    }
    if stages.windows(2).any(|w| w[1] <= w[0]) {
        problems.push("stages do not strictly increase".to_string());
    }
    if stages.last().is_some_and(|&last| last != 100.0) {
        problems.push("last stage is not 100%".to_string());
    }
    match plan.min_stage_minutes {
        Some(m) if m >= config.min_stage_minutes => {}
        Some(m) => problems.push(format!(
            "{m} minutes a stage is under {}",
            config.min_stage_minutes
        )),
        None => problems.push("no min_stage_minutes declared".to_string()),
    }
    let shown: Vec<String> = stages.iter().map(|s| format!("{s}")).collect();
    findings
        .require(
            "rollout-plan",
            problems.is_empty(),
            format!("staged plan {}%", shown.join(" → ")),
            problems.join("; "),
            Decision::Deny,
        )
        .observed(format!(
            "stages [{}], {} min a stage",
            shown.join(", "),
            plan.min_stage_minutes
                .map_or("no".to_string(), |m| m.to_string())
        ))
        .threshold(format!(
            "first <= {}%, increasing, ending at 100%, >= {} min a stage",
            config.max_first_stage, config.min_stage_minutes
        ));
}

fn abort_thresholds(findings: &mut Findings, plan: &RolloutPlan) {
    let abort = &plan.abort;
    let mut undeclared = Vec::new();
    if abort.max_error_rate.is_none() && abort.max_error_rate_ratio.is_none() {
        undeclared.push("error rate");
    }
    let latency_limits = abort
        .max_latency_ms
        .as_ref()
        .is_some_and(|l| l.quantiles().iter().any(|(_, limit)| limit.is_some()));
    if !latency_limits && abort.max_latency_ratio.is_none() {
        undeclared.push("latency");
    }
    if abort.max_business_drop.is_none() {
        undeclared.push("business metrics");
    }
    findings
        .require(
            "abort-thresholds",
            undeclared.is_empty(),
            "abort thresholds declared for error rate, latency and business metrics",
            format!("no abort threshold declared for {}", undeclared.join(", ")),
            Decision::Deny,
        )
        .observed(if undeclared.is_empty() {
            "declared".to_string()
        } else {
            format!("missing: {}", undeclared.join(", "))
        })
        .threshold("error rate, latency and business thresholds");
}

shipgate_policy::export_policy!(Preflight);

#[cfg(test)]
mod tests;
