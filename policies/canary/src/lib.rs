//! Stock policy `builtin:canary`: promotion and abort analysis of a staged
//! rollout, against the plan and abort thresholds declared in the gate.
//!
//! Checks (stable ids): `canary-metrics`, `min-requests`, `error-rate`,
//! `error-rate-ratio`, `latency-p50|p95|p99`, `latency-ratio-p50|p95|p99`,
//! `business-<name>`; promotion adds `stage-plan` and `stage-duration`, and
//! `first-stage` when the canary has no traffic yet.

use serde::Deserialize;
use shipgate_policy::checks::{self, Waiting};
use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Verdict};

/// The minimum observation per stage when the gate declares none.
const DEFAULT_MIN_STAGE_MINUTES: f64 = 15.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Canary;

impl Policy for Canary {
    type Config = Config;

    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "canary",
            env!("CARGO_PKG_VERSION"),
            "Canary analysis: error rate, latency and business metrics against the declared abort \
             thresholds and the baseline; promotion also needs the stage's minimum observation time.",
            &[Phase::Promotion, Phase::Abort],
        )
    }

    fn evaluate(phase: Phase, snapshot: &Snapshot, _: &Config) -> Result<Verdict, String> {
        let plan = snapshot.plan();
        let mut findings = Findings::new();
        if phase == Phase::Promotion && no_traffic_yet(snapshot) {
            first_stage(&mut findings, &plan.stages);
            return Ok(findings.verdict());
        }
        checks::canary_health(&mut findings, snapshot.metrics.as_ref(), &plan.abort);
        if phase == Phase::Promotion {
            stage_plan(&mut findings, snapshot, &plan.stages);
            stage_duration(&mut findings, snapshot, plan.min_stage_minutes);
        }
        Ok(findings.verdict())
    }
}

/// Whether the canary gets no traffic yet: the rollout asks to start.
fn no_traffic_yet(snapshot: &Snapshot) -> bool {
    snapshot.rollout.as_ref().and_then(|r| r.weight) == Some(0.0)
}

/// At 0 % there is no canary traffic to judge: widening to the first stage
/// starts the rollout (which preflight gated), and the abort analysis
/// guards that stage from its first request. Flagger asks this before every
/// increase, the first one included.
fn first_stage(findings: &mut Findings, stages: &[f64]) {
    let first = stages
        .first()
        .map_or("the first stage".to_string(), |w| format!("{w}%"));
    findings
        .allow(
            "first-stage",
            format!("no canary traffic yet: the rollout may start at {first}"),
        )
        .observed("0%")
        .threshold(format!("first stage {first}"));
}

/// The canary weight must be the declared weight of the current stage: a
/// rollout that skipped or invented a stage is not the one that was approved.
fn stage_plan(findings: &mut Findings, snapshot: &Snapshot, stages: &[f64]) {
    let rollout = snapshot.rollout.as_ref();
    let (Some(index), Some(weight)) = (
        rollout.and_then(|r| r.stage_index),
        rollout.and_then(|r| r.weight),
    ) else {
        findings.missing("stage-plan", "rollout.stage_index and rollout.weight");
        return;
    };
    let Some(&declared) = stages.get(index as usize) else {
        findings
            .deny(
                "stage-plan",
                format!(
                    "stage {index} is not in the declared plan of {} stages",
                    stages.len()
                ),
            )
            .observed(format!("stage {index}"))
            .threshold(format!("stages {stages:?}"));
        return;
    };
    findings
        .require(
            "stage-plan",
            weight == declared,
            format!("stage {index} runs at its declared weight {declared}%"),
            format!("stage {index} runs at {weight}% but the plan declares {declared}%"),
            Decision::Deny,
        )
        .observed(format!("{weight}%"))
        .threshold(format!("{declared}%"));
}

/// Promotion waits until the stage has been observed long enough; a deny
/// here is a hold that says how long is left.
fn stage_duration(findings: &mut Findings, snapshot: &Snapshot, min_minutes: Option<f64>) {
    let since = snapshot
        .rollout
        .as_ref()
        .and_then(|r| r.stage_started_at.as_deref());
    let spec = Waiting {
        check: "stage-duration",
        since_field: "rollout.stage_started_at",
        since,
        min_seconds: min_minutes.unwrap_or(DEFAULT_MIN_STAGE_MINUTES) * 60.0,
        waiting: "hold",
        measured: "observed in this stage",
    };
    checks::time_elapsed(findings, snapshot.now(), spec);
}

shipgate_policy::export_policy!(Canary);

#[cfg(test)]
mod tests;
