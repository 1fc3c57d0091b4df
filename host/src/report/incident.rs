//! `shipgate report LOG --incident DECISION_ID`: the incident report the
//! discipline asks for after a rollback, drafted from the evidence in the
//! decision log: what was deployed, the timeline, the impact, the failing
//! checks, how the rollback went, and the sections only a person can
//! write, marked as such.

use std::fmt::Write as _;

use shipgate_policy::{Decision, Phase, Unit};

use super::{cell as md, code, number};
use crate::error::Error;
use crate::history::{Point, Rollout, clock};

/// What a person must write, where the draft cannot.
const TO_FILL_IN: &str = "**To fill in.**";

/// The incident report of the rollback decision `decision_id`, or of the
/// last rollback when it is `last`.
pub(crate) fn report(rollout: &Rollout, decision_id: &str) -> Result<String, Error> {
    let found = if decision_id == "last" {
        let last = rollout
            .points
            .iter()
            .rposition(|p| p.evaluation.decision == Decision::Rollback);
        if last.is_none() {
            return Err(Error::InvalidInput(format!(
                "{}: no rollback decision about deployment '{}': there is no incident to report",
                rollout.log,
                rollout.deployment.id.as_deref().unwrap_or("(none)")
            )));
        }
        last
    } else {
        rollout
            .points
            .iter()
            .position(|p| p.evaluation.decision_id == decision_id)
    };
    let Some(at) = found else {
        return Err(Error::InvalidInput(format!(
            "{}: no decision '{decision_id}' about deployment '{}'",
            rollout.log,
            rollout.deployment.id.as_deref().unwrap_or("(none)")
        )));
    };
    let rollback = &rollout.points[at];
    if rollback.evaluation.decision != Decision::Rollback {
        return Err(Error::InvalidInput(format!(
            "{}:{}: decision '{decision_id}' is {}, not rollback: an incident report is \
             drafted from the decision that rolled back",
            rollout.log, rollback.line, rollback.evaluation.decision
        )));
    }
    let mut out = String::new();
    heading(&mut out, rollout, rollback);
    timeline(&mut out, rollout, at);
    impact(&mut out, rollout, rollback);
    failing_checks(&mut out, rollback);
    verification(&mut out, rollout, at);
    for (section, hint) in [
        (
            "Root cause",
            "What in the change caused the breach, and why the checks before the rollout did \
             not catch it.",
        ),
        (
            "What went well",
            "What worked: the gate, the thresholds, the rollback, the people.",
        ),
        (
            "What went wrong",
            "What made the impact larger or the response slower.",
        ),
    ] {
        let _ = writeln!(out, "## {section}\n\n{TO_FILL_IN} {hint}\n");
    }
    let _ = writeln!(
        out,
        "## Action items\n\n{TO_FILL_IN} One row per action, each with an owner and a date.\n\n\
         | action | owner | due |\n|---|---|---|\n| | | |\n"
    );
    Ok(out)
}

fn heading(out: &mut String, rollout: &Rollout, rollback: &Point) {
    let d = &rollout.deployment;
    let service = d.service.as_deref().unwrap_or("(service not recorded)");
    let environment = d
        .environment
        .as_deref()
        .unwrap_or("(environment not recorded)");
    let _ = writeln!(
        out,
        "# Incident report: {} rollback in {} (draft)\n\n\
         > Drafted by shipgate from the decision log {}. Facts come from the log; sections \
         marked {TO_FILL_IN} need a person. Times are the snapshots' `now`, in UTC.\n",
        md(service),
        md(environment),
        code(&rollout.log)
    );
    let _ = writeln!(out, "## What was deployed\n\n| | |\n|---|---|");
    let rows = [
        ("Service", d.service.as_deref()),
        ("Environment", d.environment.as_deref()),
        ("Deployment", d.id.as_deref()),
        ("Commit", d.commit.as_deref()),
        ("Replacing commit", d.previous_commit.as_deref()),
        ("Triggered by", d.triggered_by.as_deref()),
        ("Gate", Some(rollback.evaluation.gate.as_str())),
        (
            "Rollback decision",
            Some(rollback.evaluation.decision_id.as_str()),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(
            out,
            "| {name} | {} |",
            value.map_or("not recorded".into(), code)
        );
    }
    out.push('\n');
}

fn timeline(out: &mut String, rollout: &Rollout, rollback_at: usize) {
    let mut events: Vec<(f64, String, String)> = Vec::new();
    let mut event = |at: shipgate_policy::Timestamp, what: String| {
        events.push((at.unix_seconds(), clock(at), what));
    };
    let rollback = &rollout.points[rollback_at];
    if let Some(deployed) = rollout.points.iter().find_map(|p| p.deployed_at) {
        event(
            deployed,
            "new version deployed (`deployment.deployed_at`)".into(),
        );
    }
    let breach = breach_detected(rollout, rollback_at);
    for (i, point) in rollout.points.iter().enumerate() {
        let e = &point.evaluation;
        let what = if i == rollback_at {
            format!(
                "**rollback decided**: {} ({})",
                md(&e.summary),
                code(&e.decision_id)
            )
        } else if Some(i) == breach {
            format!(
                "**breach detected**, {} {}: {}",
                e.phase,
                e.decision,
                md(&e.summary)
            )
        } else if i > rollback_at && e.phase == Phase::Verify {
            format!("rollback verification: {}: {}", e.decision, md(&e.summary))
        } else {
            format!("{} decision: {}: {}", e.phase, e.decision, md(&e.summary))
        };
        event(point.at, what);
    }
    // After the decisions: a stage is entered once the decision at the
    // same time widened to it.
    for stage in rollout.stages() {
        event(
            stage.entered,
            format!(
                "stage {} entered: {}% of traffic",
                u64::from(stage.index) + 1,
                number(stage.weight)
            ),
        );
    }
    if let Some(run) = rollout.points[rollback_at..]
        .iter()
        .find_map(|p| p.rollback.as_ref())
    {
        if let Some(started) = run.started() {
            event(started, "rollback started (`rollback.started_at`)".into());
        }
        if let Some(completed) = run.completed() {
            event(
                completed,
                "rollback completed (`rollback.completed_at`)".into(),
            );
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let _ = writeln!(out, "## Timeline\n\n| time (UTC) | event |\n|---|---|");
    for (_, time, what) in events {
        let _ = writeln!(out, "| {time} | {what} |");
    }
    let _ = match breach {
        Some(breach) => writeln!(
            out,
            "\nThe breach was first detected at {} and the rollback decided at {}.\n",
            clock(rollout.points[breach].at),
            clock(rollback.at)
        ),
        None => writeln!(
            out,
            "\nThe breach was detected and the rollback decided by the same decision, at {}.\n",
            clock(rollback.at)
        ),
    };
}

/// The first decision of the rollback's stage, before it, in which a
/// measured check said rollback: when the evidence first showed the breach.
/// Holds (too little time or traffic at the stage) are no breach.
fn breach_detected(rollout: &Rollout, rollback_at: usize) -> Option<usize> {
    let rollback = &rollout.points[rollback_at];
    let first = rollout.points[..=rollback_at].iter().position(|p| {
        p.stage_index == rollback.stage_index
            && p.failing().iter().any(|(_, f)| {
                f.is_some_and(|f| f.decision == Decision::Rollback && f.observed_value.is_some())
            })
    })?;
    (first != rollback_at).then_some(first)
}

fn impact(out: &mut String, rollout: &Rollout, rollback: &Point) {
    let _ = writeln!(out, "## Impact\n");
    if let Some(stage) = super::stage_label(rollback) {
        let _ = writeln!(out, "- Exposure at the rollback: {stage} of traffic.");
    }
    if let Some(canary) = &rollback.canary
        && let (Some(requests), Some(errors)) = (canary.requests, canary.errors)
    {
        let window = rollback.window_seconds.map_or(String::new(), |w| {
            format!(" in the last {}", Unit::Seconds.format(w))
        });
        let _ = writeln!(
            out,
            "- Requests affected: {} canary requests{window}, {} of them errors.",
            Unit::Count.format(requests),
            Unit::Count.format(errors)
        );
    }
    let mut rows = Vec::new();
    if let Some(rate) = rollback.error_rate() {
        rows.push((
            "error rate".to_string(),
            Unit::Percent.format(rate.observed),
            rate.baseline.map(|b| Unit::Percent.format(b)),
            rate.limit
                .map(|l| format!("<= {}", Unit::Percent.format(l))),
        ));
    }
    let latency = |cohort: &Option<shipgate_policy::snapshot::Cohort>| {
        cohort
            .as_ref()
            .and_then(|c| c.latency_ms.clone())
            .unwrap_or_default()
    };
    let (canary, baseline) = (latency(&rollback.canary), latency(&rollback.baseline));
    for ((q, observed), (_, base)) in canary.quantiles().into_iter().zip(baseline.quantiles()) {
        let Some(observed) = observed else { continue };
        let limit = rollback
            .finding(&format!("latency-{q}"))
            .filter(|f| f.unit == Some(Unit::Millis))
            .and_then(|f| f.threshold_value)
            .map(|l| format!("<= {}", Unit::Millis.format(l)));
        rows.push((
            format!("latency {q}"),
            Unit::Millis.format(observed),
            base.map(|b| Unit::Millis.format(b)),
            limit,
        ));
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\n| at the rollback | canary | baseline | limit |\n|---|---|---|---|"
        );
        for (name, canary, baseline, limit) in rows {
            let _ = writeln!(
                out,
                "| {name} | {canary} | {} | {} |",
                baseline.as_deref().unwrap_or("-"),
                limit.as_deref().unwrap_or("-")
            );
        }
    }
    let stages = rollout.stages();
    if !stages.is_empty() {
        let _ = writeln!(
            out,
            "\n| stage | traffic | entered | last decision | time at the stage |\n|---|---|---|---|---|"
        );
        for stage in stages {
            let _ = writeln!(
                out,
                "| {} | {}% | {} | {} | {} |",
                u64::from(stage.index) + 1,
                number(stage.weight),
                clock(stage.entered),
                clock(stage.last_seen),
                Unit::Seconds.format(stage.last_seen.seconds_since(stage.entered))
            );
        }
    }
    out.push('\n');
}

fn failing_checks(out: &mut String, rollback: &Point) {
    let _ = writeln!(
        out,
        "## Failing checks at the rollback\n\n| policy | check | decision | observed | threshold | message |\n|---|---|---|---|---|---|"
    );
    for problem in &rollback.evaluation.evidence {
        let _ = writeln!(
            out,
            "| source:{} | {} | deny | {} | - | missing evidence |",
            md(&problem.source),
            code(&problem.what),
            md(&problem.why)
        );
    }
    for (policy, finding) in rollback.failing() {
        let _ = match finding {
            Some(f) => writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md(&policy.name),
                code(&f.check),
                f.decision,
                md(f.observed.as_deref().unwrap_or("-")),
                md(f.threshold.as_deref().unwrap_or("-")),
                md(&f.message)
            ),
            None => writeln!(
                out,
                "| {} | (fault) | {} | - | - | {} |",
                md(&policy.name),
                policy.decision,
                md(policy.error.as_deref().unwrap_or(""))
            ),
        };
    }
    out.push('\n');
}

/// How the rollback itself went: the verify decision after it, if any.
fn verification(out: &mut String, rollout: &Rollout, rollback_at: usize) {
    let _ = writeln!(out, "## The rollback\n");
    let verified = rollout.points[rollback_at + 1..]
        .iter()
        .find(|p| p.evaluation.phase == Phase::Verify && p.rollback.is_some());
    let Some(point) = verified else {
        let _ = writeln!(
            out,
            "No verify decision after the rollback is in the log. {TO_FILL_IN} How long the \
             rollback took and whether the service was restored; or run `shipgate eval --phase \
             verify` with the rollback's facts (`rollback` in the snapshot).\n"
        );
        return;
    };
    let e = &point.evaluation;
    let _ = writeln!(
        out,
        "Verified at {}: **{}**: {} ({})\n\n| check | decision | observed | threshold |\n|---|---|---|---|",
        clock(point.at),
        e.decision,
        md(&e.summary),
        code(&e.decision_id)
    );
    for finding in point.enforcing().flat_map(|p| &p.findings) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            code(&finding.check),
            finding.decision,
            md(finding.observed.as_deref().unwrap_or("-")),
            md(finding.threshold.as_deref().unwrap_or("-"))
        );
    }
    out.push('\n');
}
