//! Mermaid charts (rendered natively by GitHub and GitLab) of what
//! decisions measured and what gates plan: canary vs baseline against the
//! limit, the headroom of every check, a judged metric's two series, and a
//! rollout plan as a gantt.
//!
//! Everything a policy or a gate says is reduced to characters that cannot
//! end a label or a code block: a chart never carries markup of its own.

use std::fmt::Write as _;

use shipgate_policy::snapshot::RolloutPlan;
use shipgate_policy::{Bound, Finding, Unit};

/// A finding's numbers, in the unit people read them in (percent as 4.1,
/// not 0.041), with the side of its threshold that passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    pub(crate) observed: f64,
    pub(crate) threshold: f64,
    pub(crate) baseline: Option<f64>,
    pub(crate) unit: Unit,
    pub(crate) bound: Option<Bound>,
}

impl Measured {
    /// The numbers of a finding that carries them (contract 0.3.0).
    pub(crate) fn of(finding: &Finding) -> Option<Measured> {
        let unit = finding.unit?;
        let scale = |v: f64| scale(unit, v);
        Some(Measured {
            observed: scale(finding.observed_value?),
            threshold: scale(finding.threshold_value?),
            baseline: finding.baseline_value.map(scale),
            unit,
            bound: finding.bound,
        })
    }

    /// How much of its threshold the observation uses, in percent: over
    /// 100 fails. For an at-least threshold, how far below it the
    /// observation is. Nothing where the finding says no side.
    pub(crate) fn used_percent(&self) -> Option<f64> {
        let (part, whole) = match self.bound? {
            Bound::AtMost => (self.observed, self.threshold),
            Bound::AtLeast => (self.threshold, self.observed),
        };
        Some(match (part <= 0.0, whole <= 0.0) {
            (true, _) => 0.0,
            // Something over nothing: as far over as a chart shows.
            (false, true) => HEADROOM_CAP,
            (false, false) => part / whole * 100.0,
        })
    }
}

/// A value as people read it: fractions in percent.
pub(crate) fn scale(unit: Unit, value: f64) -> f64 {
    if unit == Unit::Percent {
        value * 100.0
    } else {
        value
    }
}

/// The label of a unit on an axis.
pub(crate) fn unit_label(unit: Unit) -> &'static str {
    match unit {
        Unit::Percent => "%",
        Unit::Millis => "ms",
        Unit::Ratio => "x baseline",
        Unit::Count => "count",
        Unit::Seconds => "seconds",
        Unit::PerRequest => "per request",
    }
}

/// Headroom bars are cut here, so one wild value does not flatten the rest.
const HEADROOM_CAP: f64 = 200.0;

/// The charts of a decision's findings, each under the name to show it by,
/// as Mermaid blocks: one "canary vs baseline" bar chart per check that
/// compared with a baseline, then one headroom chart of every check with
/// numbers. Empty when no finding carries numbers (a 0.2.0 policy).
pub(crate) fn finding_charts<'a>(
    findings: impl IntoIterator<Item = (String, &'a Finding)>,
) -> String {
    let measured: Vec<(String, &Finding, Measured)> = findings
        .into_iter()
        .filter_map(|(name, f)| Some((name, f, Measured::of(f)?)))
        .collect();
    let mut out = String::new();
    for (name, finding, m) in &measured {
        let Some(baseline) = m.baseline else { continue };
        let top = [m.observed, m.threshold, baseline]
            .into_iter()
            .fold(0.0, f64::max);
        let _ = write!(
            out,
            "```mermaid\nxychart-beta\n    title \"{}: canary vs baseline, limit {}\"\n    \
             x-axis [\"baseline\", \"canary\", \"limit\"]\n    y-axis \"{}\" 0 --> {}\n    \
             bar [{}, {}, {}]\n```\n\n",
            label(name),
            label(finding.threshold.as_deref().unwrap_or("")),
            unit_label(m.unit),
            number(nice_ceiling(top)),
            number(baseline),
            number(m.observed),
            number(m.threshold),
        );
    }
    let headroom: Vec<(&str, f64)> = measured
        .iter()
        .filter_map(|(name, _, m)| Some((name.as_str(), m.used_percent()?.min(HEADROOM_CAP))))
        .collect();
    if !headroom.is_empty() {
        let names: Vec<String> = headroom
            .iter()
            .map(|(check, _)| format!("\"{}\"", label(check)))
            .collect();
        let used: Vec<String> = headroom.iter().map(|(_, u)| number(*u)).collect();
        let limit: Vec<&str> = headroom.iter().map(|_| "100").collect();
        let top = headroom.iter().map(|(_, u)| *u).fold(100.0, f64::max);
        let _ = write!(
            out,
            "```mermaid\nxychart-beta horizontal\n    \
             title \"Headroom: observed as % of its limit (over 100 fails)\"\n    \
             x-axis [{}]\n    y-axis \"% of limit\" 0 --> {}\n    bar [{}]\n    line [{}]\n```\n\n",
            names.join(", "),
            number(nice_ceiling(top).min(HEADROOM_CAP)),
            used.join(", "),
            limit.join(", ")
        );
    }
    out
}

/// The most points a series chart draws: longer series are drawn as the
/// means of as many equal runs of steps.
const SERIES_POINTS: usize = 60;

/// A judged metric's two series as a Mermaid chart: the baseline as bars,
/// the canary as a line over them (Mermaid's charts have no legend, so the
/// title says which is which). Longer series are averaged over runs of
/// steps; a run without a value (a gap, or past the end of the shorter
/// cohort) repeats the one before it (a leading one, the first value), and
/// the title counts the gaps. Empty when neither has a value.
pub(crate) fn series_chart(
    name: &str,
    step_seconds: f64,
    baseline: &[Option<f64>],
    canary: &[Option<f64>],
) -> String {
    let steps = baseline.len().max(canary.len());
    let per_point = steps.div_ceil(SERIES_POINTS).max(1);
    let runs = |series: &[Option<f64>]| -> Vec<f64> {
        let mut last = series.iter().flatten().next().copied();
        (0..steps.div_ceil(per_point))
            .map(|run| {
                let values: Vec<f64> = series
                    .iter()
                    .skip(run * per_point)
                    .take(per_point)
                    .flatten()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                if !values.is_empty() {
                    last = Some(values.iter().sum::<f64>() / values.len() as f64);
                }
                last.unwrap_or(0.0)
            })
            .collect()
    };
    let gaps = baseline
        .iter()
        .chain(canary)
        .filter(|v| v.is_none())
        .count();
    if baseline.iter().chain(canary).all(Option::is_none) {
        return String::new();
    }
    let (base, can) = (runs(baseline), runs(canary));
    let top = base.iter().chain(&can).copied().fold(0.0, f64::max);
    let minutes = step_seconds * per_point as f64 / 60.0;
    let axis: Vec<String> = (0..base.len().max(can.len()))
        .map(|i| format!("\"{}\"", number(i as f64 * minutes)))
        .collect();
    let joined = |values: &[f64]| {
        values
            .iter()
            .map(|v| number(*v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let averaged = if per_point > 1 {
        format!(", means of {per_point} steps")
    } else {
        String::new()
    };
    let gap_note = if gaps > 0 {
        format!(", {gaps} {}", if gaps == 1 { "gap" } else { "gaps" })
    } else {
        String::new()
    };
    format!(
        "```mermaid\nxychart-beta\n    title \"{}: baseline (bars), canary (line){averaged}{gap_note}\"\n    \
         x-axis \"minutes\" [{}]\n    y-axis 0 --> {}\n    bar [{}]\n    line [{}]\n```\n\n",
        label(name),
        axis.join(", "),
        number(nice_ceiling(top)),
        joined(&base),
        joined(&can),
    )
}

/// A gate's rollout plan as a Mermaid gantt: each stage's traffic share
/// for its minimum time, from the start of the rollout.
pub(crate) fn plan_gantt(gate_name: &str, plan: &RolloutPlan) -> String {
    let minutes = plan.min_stage_minutes.unwrap_or(0.0).max(0.0).round() as u64;
    let mut out = format!(
        "```mermaid\ngantt\n    title Rollout plan of {}\n    dateFormat HH:mm\n    \
         axisFormat %H:%M\n    section Traffic to the new version\n",
        label(gate_name)
    );
    let last = plan.stages.len().saturating_sub(1);
    for (i, weight) in plan.stages.iter().enumerate() {
        let start = if i == 0 {
            "00:00".to_string()
        } else {
            format!("after s{}", i - 1)
        };
        // Not "5% ...": Mermaid drops a task whose name starts so.
        let name = format!("stage {} at {} percent", i + 1, number(*weight));
        if i == last && *weight >= 100.0 {
            let _ = writeln!(out, "    {name} :milestone, s{i}, {start}, 0m");
        } else {
            let _ = writeln!(out, "    {name} :s{i}, {start}, {minutes}m");
        }
    }
    out.push_str("```\n");
    out
}

/// Text safe inside a quoted Mermaid label and a Markdown code block:
/// quotes, brackets, angle brackets, backticks, colons, semicolons and
/// line breaks are replaced (`<=` and `>=` by `≤` and `≥`).
pub(crate) fn label(text: &str) -> String {
    let cleaned: String = text
        .replace("<=", "≤")
        .replace(">=", "≥")
        .chars()
        .map(|c| match c {
            '"' | '`' | '[' | ']' | '{' | '}' | '<' | '>' | ';' | '#' | ':' | '\n' | '\r' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    cleaned.chars().take(80).collect()
}

/// A number as Mermaid reads it: plain decimal, at most 4 decimals.
pub(crate) fn number(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_string();
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// A round axis end a little above `value`: 1, 2 or 5 times a power of ten.
pub(crate) fn nice_ceiling(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let target = value * 1.1;
    let power = 10f64.powf(target.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= target)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate_policy::{Decision, Findings};

    fn findings() -> Vec<Finding> {
        let mut f = Findings::new();
        f.at_most(
            "error-rate",
            "canary error rate",
            0.041,
            0.01,
            Unit::Percent,
            Decision::Rollback,
        )
        .baseline(0.0008);
        f.at_least(
            "min-requests",
            "canary traffic",
            1000.0,
            500.0,
            Unit::Count,
            Decision::Deny,
        );
        f.deny("smoke-tests", "no numbers here");
        f.verdict().findings
    }

    #[test]
    fn a_baseline_comparison_and_the_headroom_of_every_measured_check() {
        let findings = findings();
        let charts = finding_charts(findings.iter().map(|f| (f.check.clone(), f)));
        assert_eq!(
            charts,
            "```mermaid\nxychart-beta\n    title \"error-rate: canary vs baseline, limit ≤ 1.0%\"\n    \
             x-axis [\"baseline\", \"canary\", \"limit\"]\n    y-axis \"%\" 0 --> 5\n    \
             bar [0.08, 4.1, 1]\n```\n\n\
             ```mermaid\nxychart-beta horizontal\n    \
             title \"Headroom: observed as % of its limit (over 100 fails)\"\n    \
             x-axis [\"error-rate\", \"min-requests\"]\n    y-axis \"% of limit\" 0 --> 200\n    \
             bar [200, 50]\n    line [100, 100]\n```\n\n"
        );
        let old = Finding::new("error-rate", Decision::Deny, "no numbers: contract 0.2.0");
        assert_eq!(finding_charts([("old".to_string(), &old)]), "");
    }

    #[test]
    fn the_plan_is_a_gantt_of_its_stages() {
        let plan = RolloutPlan {
            stages: vec![5.0, 10.0, 100.0],
            min_stage_minutes: Some(15.0),
            ..RolloutPlan::default()
        };
        assert_eq!(
            plan_gantt("checkout", &plan),
            "```mermaid\ngantt\n    title Rollout plan of checkout\n    dateFormat HH:mm\n    \
             axisFormat %H:%M\n    section Traffic to the new version\n    \
             stage 1 at 5 percent :s0, 00:00, 15m\n    stage 2 at 10 percent :s1, after s0, 15m\n    \
             stage 3 at 100 percent :milestone, s2, after s1, 0m\n```\n"
        );
    }

    #[test]
    fn a_series_chart_averages_long_series_and_bridges_gaps() {
        let baseline: Vec<Option<f64>> = (0..120).map(|i| Some(f64::from(i % 2))).collect();
        let mut canary = vec![Some(3.0); 120];
        canary[2] = None;
        canary[3] = None;
        let chart = series_chart("p99 \"latency\"", 60.0, &baseline, &canary);
        assert!(
            chart.contains(
                "title \"p99 latency: baseline (bars), canary (line), means of 2 steps, 2 gaps\""
            ),
            "{chart}"
        );
        assert!(
            chart.contains("x-axis \"minutes\" [\"0\", \"2\", \"4\""),
            "{chart}"
        );
        // 0 and 1 alternate: every mean of two is 0.5; the gap run keeps 3.
        assert!(
            chart.contains(&format!("bar [{}]", vec!["0.5"; 60].join(", "))),
            "{chart}"
        );
        assert!(
            chart.contains(&format!("line [{}]", vec!["3"; 60].join(", "))),
            "{chart}"
        );
        assert_eq!(series_chart("x", 60.0, &[None], &[None]), "");
    }

    #[test]
    fn labels_cannot_break_out_of_a_chart() {
        assert_eq!(
            label("a\"]\n```\n<script>;x"),
            "a script x",
            "quotes, brackets, fences and line breaks go"
        );
        assert_eq!(number(f64::NAN), "0");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(nice_ceiling(4.1), 5.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
