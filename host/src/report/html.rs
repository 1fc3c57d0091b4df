//! `shipgate report LOG --html FILE`: one self-contained HTML page of a
//! rollout: the stage timeline with every decision on it, the error rate
//! and latency ratios against their limits over time, and every hold or
//! rollback with the checks that failed.
//!
//! The page has no script, no external resource and a Content Security
//! Policy that forbids both: it opens the same from a CI artifact, an
//! e-mail or an air-gapped laptop, and nothing a policy wrote can run in it.

use std::fmt::Write as _;

use shipgate_policy::{Decision, Unit};

use super::number;
use super::svg::{Frame, escape, px, time_ticks};
use crate::history::{Point, Rollout, Series, clock};

const WIDTH: f64 = 960.0;
const CHART_HEIGHT: f64 = 220.0;

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1000px;color:#1f2328;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#59636e}.meta code{color:#1f2328}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d1d9e0;vertical-align:top}
.verdict{font-weight:600;text-transform:uppercase}.verdict.allow{color:#1a7f37}.verdict.deny{color:#9a6700}.verdict.rollback{color:#cf222e}
ul.failing{margin:4px 0 0;padding-left:18px}ul.failing li{margin:0}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#59636e}
rect.plot{fill:#f6f8fa}line.grid{stroke:#d1d9e0;stroke-width:1}
path{fill:none;stroke-width:2}path.weight{stroke:#0969da}path.canary{stroke:#cf222e}path.baseline{stroke:#59636e;stroke-dasharray:4 3}
path.limit{stroke:#9a6700;stroke-dasharray:6 4;stroke-width:1.5}path.p50{stroke:#8250df}path.p95{stroke:#bf3989}path.p99{stroke:#cf222e}
.marker.allow{fill:#1a7f37}.marker.deny{fill:#d4a72c}.marker.rollback{fill:#cf222e}.marker{stroke:#fff;stroke-width:1.5}
.legend{display:flex;gap:16px;color:#59636e;font-size:12px;margin:4px 0 0 64px;flex-wrap:wrap}
.swatch{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}
.swatch.weight{background:#0969da}.swatch.canary,.swatch.p99{background:#cf222e}.swatch.baseline{background:#59636e}
.swatch.limit{background:#9a6700}.swatch.p50{background:#8250df}.swatch.p95{background:#bf3989}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px;vertical-align:middle}
.dot.allow{background:#1a7f37}.dot.deny{background:#d4a72c}.dot.rollback{background:#cf222e}
.none{color:#59636e;font-style:italic}";

/// The page.
pub(crate) fn page(rollout: &Rollout) -> String {
    let d = &rollout.deployment;
    let service = d.service.as_deref().unwrap_or("a service");
    let environment = d.environment.as_deref().unwrap_or("?");
    let title = format!("{service} in {environment}: rollout report");
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n<meta name=\"viewport\" content=\"width=device-width\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    out.push_str(&summary(rollout));
    out.push_str("<h2>Stages and decisions</h2>\n");
    out.push_str(&timeline(rollout));
    out.push_str(
        "<div class=\"legend\"><span><i class=\"swatch weight\"></i>traffic to the new \
         version</span><span><i class=\"dot allow\"></i>allow</span><span><i class=\"dot \
         deny\"></i>deny (hold)</span><span><i class=\"dot rollback\"></i>rollback</span></div>\n",
    );
    out.push_str("<h2>Error rate</h2>\n");
    out.push_str(&metric_chart(
        rollout,
        "error-rate",
        "canary error rate against the baseline and the limit",
        Unit::Percent,
        &[("canary", Point::error_rate as Measure)],
    ));
    out.push_str(
        "<div class=\"legend\"><span><i class=\"swatch canary\"></i>canary</span><span><i \
         class=\"swatch baseline\"></i>baseline</span><span><i class=\"swatch \
         limit\"></i>limit</span></div>\n",
    );
    out.push_str("<h2>Latency against the baseline</h2>\n");
    out.push_str(&metric_chart(
        rollout,
        "latency-ratio",
        "canary latency as a multiple of the baseline's, per quantile, and the limit",
        Unit::Ratio,
        &[
            ("p50", |p: &Point| p.latency_ratio("p50")),
            ("p95", |p: &Point| p.latency_ratio("p95")),
            ("p99", |p: &Point| p.latency_ratio("p99")),
        ],
    ));
    out.push_str(
        "<div class=\"legend\"><span><i class=\"swatch p50\"></i>p50</span><span><i \
         class=\"swatch p95\"></i>p95</span><span><i class=\"swatch p99\"></i>p99</span><span><i \
         class=\"swatch limit\"></i>limit</span></div>\n",
    );
    out.push_str(&judged_series(rollout));
    out.push_str("<h2>Every decision</h2>\n");
    out.push_str(&decisions(rollout));
    let _ = write!(
        out,
        "<p class=\"meta\">From the decision log <code>{}</code>. Times are the snapshots' \
         <code>now</code>, in UTC.</p>\n</body>\n</html>\n",
        escape(&rollout.log)
    );
    out
}

fn summary(rollout: &Rollout) -> String {
    let d = &rollout.deployment;
    let last = rollout.points.last().expect("a rollout has a decision");
    let commit = match (&d.commit, &d.previous_commit) {
        (Some(c), Some(p)) => format!(
            "<code>{}</code> (replacing <code>{}</code>)",
            escape(c),
            escape(p)
        ),
        (Some(c), None) => format!("<code>{}</code>", escape(c)),
        _ => "not recorded".into(),
    };
    let stages: Vec<String> = rollout
        .stages()
        .iter()
        .map(|s| format!("{}%", number(s.weight)))
        .collect();
    format!(
        "<p class=\"meta\" id=\"summary\">Deployment <code>{}</code> of commit {commit}, gate \
         <code>{}</code>: {} decisions from {} to {}; stages {}. Last decision: <span \
         class=\"verdict {}\">{}</span> ({}).</p>\n",
        escape(d.id.as_deref().unwrap_or("(no id)")),
        escape(&last.evaluation.gate),
        rollout.points.len(),
        clock(rollout.points[0].at),
        clock(last.at),
        if stages.is_empty() {
            "none recorded".to_string()
        } else {
            escape(&stages.join(" → "))
        },
        last.evaluation.decision,
        last.evaluation.decision,
        escape(last.evaluation.phase.as_str()),
    )
}

fn span(rollout: &Rollout) -> (f64, f64) {
    let first = rollout.points.first().map_or(0.0, |p| p.at.unix_seconds());
    let last = rollout.points.last().map_or(0.0, |p| p.at.unix_seconds());
    (first, last)
}

fn ticks(rollout: &Rollout) -> Vec<(f64, String)> {
    time_ticks(span(rollout), 6, |t| {
        jiff::Timestamp::from_second(t.round() as i64)
            .map(|at| clock(at.into()))
            .unwrap_or_default()
    })
}

/// The traffic share over time as a step line, and every decision on it.
fn timeline(rollout: &Rollout) -> String {
    let frame = Frame::new(WIDTH, CHART_HEIGHT, span(rollout), 100.0);
    let value_ticks: Vec<(f64, String)> = [0.0, 25.0, 50.0, 75.0, 100.0]
        .into_iter()
        .map(|v| (v, format!("{v}%")))
        .collect();
    let mut out = frame.open(
        "timeline",
        "traffic to the new version over time, with every decision",
        &ticks(rollout),
        &value_ticks,
    );
    // A stage's share starts when the stage did, not at its first decision.
    let mut weights: Vec<(f64, f64)> = rollout
        .points
        .iter()
        .filter_map(|p| {
            let weight = p.weight?;
            let since = match p.stage_started_at {
                Some(started) if weight > 0.0 => started.unix_seconds().max(span(rollout).0),
                _ => p.at.unix_seconds(),
            };
            Some((since, weight))
        })
        .collect();
    weights.sort_by(|a, b| a.0.total_cmp(&b.0));
    weights.dedup_by(|later, earlier| later.1 == earlier.1);
    out.push_str(&frame.steps("weight", &weights, span(rollout).1));
    for point in &rollout.points {
        let (x, y) = (
            frame.x(point.at.unix_seconds()),
            frame.y(point.weight.unwrap_or(0.0)),
        );
        out.push_str(&marker(point, x, y));
    }
    out.push_str(frame.close());
    out
}

/// A decision's mark: a circle (allow), a square (deny) or a triangle
/// (rollback), with its time, phase and summary as its tooltip.
fn marker(point: &Point, x: f64, y: f64) -> String {
    let e = &point.evaluation;
    let class = e.decision.as_str();
    let shape = match e.decision {
        Decision::Allow => format!("<circle cx=\"{}\" cy=\"{}\" r=\"5.5\"", px(x), px(y)),
        Decision::Deny => format!(
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\"",
            px(x - 5.0),
            px(y - 5.0)
        ),
        Decision::Rollback => format!(
            "<path d=\"M{},{} L{},{} L{},{} Z\"",
            px(x),
            px(y - 7.0),
            px(x + 7.0),
            px(y + 6.0),
            px(x - 7.0),
            px(y + 6.0)
        ),
    };
    format!(
        "{shape} class=\"marker {class}\" data-decision=\"{}\"><title>{} {}: {} ({})</title>{}\n",
        escape(&e.decision_id),
        clock(point.at),
        e.phase,
        e.decision,
        escape(&e.summary),
        match e.decision {
            Decision::Allow => "</circle>",
            Decision::Deny => "</rect>",
            Decision::Rollback => "</path>",
        }
    )
}

/// How a chart reads one quantity from a decision.
type Measure = fn(&Point) -> Option<Series>;

/// A chart of measured series over time: each series' canary values, the
/// baseline of the first one, and the limit as a step line.
fn metric_chart(
    rollout: &Rollout,
    id: &str,
    title: &str,
    unit: Unit,
    series: &[(&str, Measure)],
) -> String {
    let scale = |v: f64| super::scale(unit, v);
    let measured: Vec<(&str, Vec<(f64, Series)>)> = series
        .iter()
        .map(|(name, of)| {
            let values = rollout
                .points
                .iter()
                .filter_map(|p| Some((p.at.unix_seconds(), of(p)?)))
                .collect();
            (*name, values)
        })
        .collect();
    if measured.iter().all(|(_, values)| values.is_empty()) {
        return format!("<p class=\"none\" id=\"{id}\">No decision measured this.</p>\n");
    }
    let top = measured
        .iter()
        .flat_map(|(_, values)| values)
        .flat_map(|(_, s)| [Some(s.observed), s.baseline, s.limit])
        .flatten()
        .map(scale)
        .fold(0.0, f64::max);
    let y_max = super::nice_ceiling(top);
    let frame = Frame::new(WIDTH, CHART_HEIGHT, span(rollout), y_max);
    let value_ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| {
            let v = y_max * f64::from(i) / 4.0;
            let text = match unit {
                Unit::Percent => format!("{}%", number(v)),
                Unit::Ratio => format!("{}x", number(v)),
                _ => number(v),
            };
            (v, text)
        })
        .collect();
    let mut out = frame.open(id, title, &ticks(rollout), &value_ticks);
    let end = span(rollout).1;
    let limits: Vec<(f64, f64)> = measured
        .iter()
        .flat_map(|(_, values)| values)
        .filter_map(|(t, s)| Some((*t, scale(s.limit?))))
        .collect();
    out.push_str(&frame.steps("limit", &dedup_times(limits), end));
    if let Some((_, first)) = measured.first() {
        let baseline: Vec<(f64, f64)> = first
            .iter()
            .filter_map(|(t, s)| Some((*t, scale(s.baseline?))))
            .collect();
        out.push_str(&frame.line("baseline", &baseline));
    }
    for (name, values) in &measured {
        let points: Vec<(f64, f64)> = values
            .iter()
            .map(|(t, s)| (*t, scale(s.observed)))
            .collect();
        out.push_str(&frame.line(name, &points));
    }
    out.push_str(frame.close());
    out
}

/// The series the last judging decision judged: per metric, the canary's
/// and the baseline's values over time (a gap breaks the line), under the
/// judge's sentence for it (label, interval, bound). Nothing when no
/// decision carried series.
fn judged_series(rollout: &Rollout) -> String {
    let Some(point) = rollout.points.iter().rev().find(|p| !p.series.is_empty()) else {
        return String::new();
    };
    let mut out = format!(
        "<h2>Judged series</h2>\n<p class=\"meta\">As judged at {} UTC.</p>\n",
        escape(&clock(point.at))
    );
    for (index, (name, pair)) in point.series.iter().enumerate() {
        let Some(start) = shipgate_policy::Timestamp::parse(&pair.start) else {
            continue;
        };
        let start = start.unix_seconds();
        let steps = pair.baseline.len().max(pair.canary.len()).max(1);
        let end = start + (steps - 1) as f64 * pair.step_seconds;
        let top = pair
            .baseline
            .iter()
            .chain(&pair.canary)
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let y_max = super::nice_ceiling(top);
        let frame = Frame::new(WIDTH, CHART_HEIGHT, (start, end), y_max);
        let value_ticks: Vec<(f64, String)> = (0..=4)
            .map(|i| {
                let v = y_max * f64::from(i) / 4.0;
                (v, number(v))
            })
            .collect();
        let time_ticks = time_ticks((start, end), 6, |t| {
            jiff::Timestamp::from_second(t.round() as i64)
                .map(|at| clock(at.into()))
                .unwrap_or_default()
        });
        let sentence = point
            .finding(shipgate_policy::judge::metric_of(name))
            .map_or_else(|| name.clone(), |f| f.message.clone());
        let _ = writeln!(out, "<h3>{}</h3>", escape(name));
        let _ = writeln!(out, "<p>{}</p>", escape(&sentence));
        let id = format!("series-{index}");
        out.push_str(&frame.open(&id, &sentence, &time_ticks, &value_ticks));
        for (class, values) in [("baseline", &pair.baseline), ("canary", &pair.canary)] {
            for run in runs(start, pair.step_seconds, values) {
                out.push_str(&frame.line(class, &run));
            }
        }
        out.push_str(frame.close());
        out.push_str(
            "<div class=\"legend\"><span><i class=\"swatch canary\"></i>canary</span><span><i \
             class=\"swatch baseline\"></i>baseline</span></div>\n",
        );
    }
    out
}

/// The points of a series on its grid, split where a step has no value.
fn runs(start: f64, step: f64, values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for (i, value) in values.iter().enumerate() {
        match value.filter(|v| v.is_finite()) {
            Some(v) => runs
                .last_mut()
                .expect("one run at least")
                .push((start + i as f64 * step, v)),
            None if runs.last().is_some_and(|run| !run.is_empty()) => runs.push(Vec::new()),
            None => {}
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

/// One limit per time: several series name the same limit at a decision.
fn dedup_times(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.dedup_by(|b, a| a.0 == b.0);
    points
}

/// Every decision, and under each hold or rollback the checks that failed.
fn decisions(rollout: &Rollout) -> String {
    let mut out = String::from(
        "<table id=\"decisions\">\n<tr><th>time</th><th>phase</th><th>stage</th>\
         <th>decision</th><th>why</th></tr>\n",
    );
    for point in &rollout.points {
        let e = &point.evaluation;
        let mut why = escape(&e.summary);
        if e.decision != Decision::Allow {
            why.push_str("<ul class=\"failing\">");
            for problem in &e.evidence {
                let _ = write!(
                    why,
                    "<li><b>missing evidence</b> {} ({}): {}</li>",
                    escape(&problem.what),
                    escape(&problem.source),
                    escape(&problem.why),
                );
            }
            for (policy, finding) in point.failing() {
                let _ = match finding {
                    Some(f) => write!(
                        why,
                        "<li><b>{}/{}</b> {}: observed {}, threshold {}</li>",
                        escape(&policy.name),
                        escape(&f.check),
                        escape(f.decision.as_str()),
                        escape(f.observed.as_deref().unwrap_or("-")),
                        escape(f.threshold.as_deref().unwrap_or("-")),
                    ),
                    None => write!(
                        why,
                        "<li><b>{}</b> failed closed: {}</li>",
                        escape(&policy.name),
                        escape(policy.error.as_deref().unwrap_or(""))
                    ),
                };
            }
            why.push_str("</ul>");
        }
        let _ = writeln!(
            out,
            "<tr class=\"decision {}\" data-decision=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"verdict {}\">{}</td><td>{why}</td></tr>",
            e.decision,
            escape(&e.decision_id),
            clock(point.at),
            e.phase,
            escape(&super::stage_label(point).unwrap_or_else(|| "-".into())),
            e.decision,
            e.decision,
        );
    }
    out.push_str("</table>\n");
    out
}
