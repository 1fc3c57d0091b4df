//! A rollout as its decision log tells it: every decision about one
//! deployment in the order of the snapshots' `now`, with the stage it was
//! made at and what it measured: the model `shipgate report` draws as an HTML
//! page or an incident report (`report::rollout_page`, `report::incident`).
//!
//! Times are the snapshots' `now` (when the CD system asked), never the
//! host's clock: a report of the same log is the same report.

use std::path::Path;

use std::collections::BTreeMap;

use shipgate_policy::snapshot::{Cohort, Deployment, RollbackRun, SeriesPair};
use shipgate_policy::{Decision, Finding, Timestamp, Unit};

use crate::decision::{Evaluation, PolicyOutcome};
use crate::decision_log::{self, Entry};
use crate::error::Error;
use crate::gate::Mode;

/// The decisions about one deployment, in time order.
#[derive(Debug)]
pub(crate) struct Rollout {
    /// The log it was read from, as given.
    pub(crate) log: String,
    pub(crate) deployment: Deployment,
    /// Every decision, ordered by the snapshot's `now` (then by line).
    pub(crate) points: Vec<Point>,
    /// The line of a last record cut short by a crash, skipped.
    pub(crate) torn: Option<usize>,
}

/// One decision and the snapshot it was made over.
#[derive(Debug)]
pub(crate) struct Point {
    pub(crate) at: Timestamp,
    pub(crate) line: usize,
    pub(crate) evaluation: Evaluation,
    /// `rollout.stage_index`, counted from 0.
    pub(crate) stage_index: Option<u32>,
    /// `rollout.weight`: the new version's share of traffic, in percent.
    pub(crate) weight: Option<f64>,
    pub(crate) stage_started_at: Option<Timestamp>,
    pub(crate) window_seconds: Option<f64>,
    pub(crate) canary: Option<Cohort>,
    pub(crate) baseline: Option<Cohort>,
    pub(crate) rollback: Option<RollbackRun>,
    pub(crate) deployed_at: Option<Timestamp>,
    /// The time series judged at this decision (`metrics.series`).
    pub(crate) series: BTreeMap<String, SeriesPair>,
}

impl Point {
    fn from_entry(entry: Entry) -> Result<Point, Error> {
        let snapshot = entry.snapshot.typed();
        let at = snapshot.now().ok_or_else(|| {
            // The snapshot was validated: `now` parses.
            Error::InvalidInput(format!("{}: snapshot: now: not a timestamp", entry.at))
        })?;
        let rollout = snapshot.rollout.as_ref();
        let metrics = snapshot.metrics.as_ref();
        let parse = |text: Option<&String>| text.and_then(|t| Timestamp::parse(t));
        Ok(Point {
            at,
            line: entry.line,
            stage_index: rollout.and_then(|r| r.stage_index),
            weight: rollout.and_then(|r| r.weight),
            stage_started_at: parse(rollout.and_then(|r| r.stage_started_at.as_ref())),
            window_seconds: metrics.and_then(|m| m.window_seconds),
            canary: metrics.and_then(|m| m.canary.clone()),
            baseline: metrics.and_then(|m| m.baseline.clone()),
            rollback: snapshot.rollback.clone(),
            deployed_at: snapshot.deployed_at(),
            series: metrics.and_then(|m| m.series.clone()).unwrap_or_default(),
            evaluation: entry.evaluation,
        })
    }

    /// The enforcing policies' outcomes (shadow ones never decide).
    pub(crate) fn enforcing(&self) -> impl Iterator<Item = &PolicyOutcome> {
        self.evaluation
            .policies
            .iter()
            .filter(|p| p.mode == Mode::Enforce)
    }

    /// The first enforcing finding with this check id.
    pub(crate) fn finding(&self, check: &str) -> Option<&Finding> {
        self.enforcing()
            .flat_map(|p| &p.findings)
            .find(|f| f.check == check)
    }

    /// What made this decision what it is: every enforcing finding that is
    /// not allow, with its policy, and each fault.
    pub(crate) fn failing(&self) -> Vec<(&PolicyOutcome, Option<&Finding>)> {
        let mut out = Vec::new();
        for policy in self.enforcing() {
            if policy.failed_closed() {
                out.push((policy, None));
                continue;
            }
            for finding in &policy.findings {
                if finding.decision != Decision::Allow {
                    out.push((policy, Some(finding)));
                }
            }
        }
        out
    }

    /// The canary's error rate (a fraction) and the limit it was held to:
    /// from the `error-rate` finding's numbers, else from the snapshot.
    pub(crate) fn error_rate(&self) -> Option<Series> {
        let finding = self
            .finding("error-rate")
            .filter(|f| f.unit == Some(Unit::Percent));
        let observed = finding
            .and_then(|f| f.observed_value)
            .or_else(|| self.canary.as_ref()?.error_rate())?;
        Some(Series {
            observed,
            baseline: finding
                .and_then(|f| f.baseline_value)
                .or_else(|| self.baseline.as_ref()?.error_rate()),
            limit: finding.and_then(|f| f.threshold_value),
        })
    }

    /// A latency quantile's canary/baseline ratio and its limit: from the
    /// `latency-ratio-Q` finding's numbers, else from the snapshot.
    pub(crate) fn latency_ratio(&self, quantile: &str) -> Option<Series> {
        let finding = self
            .finding(&format!("latency-ratio-{quantile}"))
            .filter(|f| f.unit == Some(Unit::Ratio));
        let from_snapshot = || {
            let value = |cohort: &Option<Cohort>| -> Option<f64> {
                let latency = cohort.as_ref()?.latency_ms.as_ref()?;
                latency
                    .quantiles()
                    .into_iter()
                    .find(|(q, _)| *q == quantile)?
                    .1
            };
            let (canary, baseline) = (value(&self.canary)?, value(&self.baseline)?);
            (baseline > 0.0).then(|| canary / baseline)
        };
        let observed = finding
            .and_then(|f| f.observed_value)
            .or_else(from_snapshot)?;
        Some(Series {
            observed,
            baseline: None,
            limit: finding.and_then(|f| f.threshold_value),
        })
    }
}

/// One measured quantity at one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Series {
    pub(crate) observed: f64,
    pub(crate) baseline: Option<f64>,
    pub(crate) limit: Option<f64>,
}

/// Reads the decisions about one deployment from `log`: the one named, or
/// the only one the log holds.
pub(crate) fn read(log: &Path, deployment: Option<&str>) -> Result<Rollout, Error> {
    const NONE: &str = "(none)";
    let label = log.display().to_string();
    // Every deployment's id, and the records of the one wanted (or, with
    // none named, of all, until a second deployment shows up).
    let mut ids: Vec<String> = Vec::new();
    let mut kept: Vec<(String, Deployment, Point)> = Vec::new();
    let torn = decision_log::read(log, |entry| {
        let about = entry
            .snapshot
            .typed()
            .deployment
            .clone()
            .unwrap_or_default();
        let id = about.id.clone().unwrap_or_else(|| NONE.to_string());
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
        let wanted = match deployment {
            Some(wanted) => id == wanted,
            None => ids.len() == 1,
        };
        if wanted {
            kept.push((id, about, Point::from_entry(entry)?));
        }
        Ok(())
    })?;
    ids.sort();
    match (deployment, ids.as_slice()) {
        (_, []) => {
            let why = match torn {
                Some(line) => format!("no whole decision in the log (line {line} is cut short)"),
                None => "no decisions in the log".to_string(),
            };
            return Err(Error::InvalidInput(format!("{label}: {why}")));
        }
        (Some(wanted), _) if kept.is_empty() => {
            return Err(Error::InvalidInput(format!(
                "{label}: no decision about deployment '{wanted}' (the log has: {})",
                list(&ids)
            )));
        }
        (None, several) if several.len() > 1 => {
            return Err(Error::Usage(format!(
                "{label} holds decisions about {} deployments ({}): choose one with \
                 --deployment ID",
                several.len(),
                list(several)
            )));
        }
        _ => {}
    }
    let mut deployment = Deployment::default();
    let mut points = Vec::with_capacity(kept.len());
    for (_, about, point) in kept {
        // The first record that names a field says what was deployed.
        merge(&mut deployment, about);
        points.push(point);
    }
    points.sort_by(|a, b| {
        a.at.unix_seconds()
            .total_cmp(&b.at.unix_seconds())
            .then(a.line.cmp(&b.line))
    });
    // Only the last judging decision's series are drawn.
    if let Some(last) = points.iter().rposition(|p| !p.series.is_empty()) {
        points[..last].iter_mut().for_each(|p| p.series.clear());
    }
    Ok(Rollout {
        log: label,
        deployment,
        points,
        torn,
    })
}

/// Fills what `into` does not know yet from `from`.
fn merge(into: &mut Deployment, from: Deployment) {
    let fields = [
        (&mut into.id, from.id),
        (&mut into.service, from.service),
        (&mut into.environment, from.environment),
        (&mut into.commit, from.commit),
        (&mut into.previous_commit, from.previous_commit),
        (&mut into.triggered_by, from.triggered_by),
        (&mut into.deployed_at, from.deployed_at),
    ];
    for (field, value) in fields {
        if field.is_none() {
            *field = value;
        }
    }
}

fn list(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(", and {} more", ids.len() - SHOWN));
    }
    text
}

impl Rollout {
    /// Each stage the new version ran at, from the decisions' snapshots.
    pub(crate) fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = Vec::new();
        for point in &self.points {
            // At 0 % nothing runs at a stage: before the first, or after a
            // rollback.
            let (Some(index), Some(weight)) = (point.stage_index, point.weight) else {
                continue;
            };
            if weight <= 0.0 {
                continue;
            }
            match stages.last_mut() {
                Some(stage) if stage.index == index && stage.weight == weight => {
                    stage.last_seen = point.at;
                }
                _ => stages.push(Stage {
                    index,
                    weight,
                    entered: point.stage_started_at.unwrap_or(point.at),
                    last_seen: point.at,
                }),
            }
        }
        stages
    }
}

/// One rollout stage as the decisions saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stage {
    pub(crate) index: u32,
    pub(crate) weight: f64,
    /// `rollout.stage_started_at`, else the first decision at the stage.
    pub(crate) entered: Timestamp,
    /// The last decision at the stage.
    pub(crate) last_seen: Timestamp,
}

/// A UTC time of day, `14:28:00`.
pub(crate) fn clock(at: Timestamp) -> String {
    at.as_jiff().strftime("%H:%M:%S").to_string()
}
