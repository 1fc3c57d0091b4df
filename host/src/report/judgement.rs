//! A canary judgement (`shipgate judge`) for people: one line per metric,
//! failing ones first, then the score; or a Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use shipgate_policy::snapshot::SeriesPair;

use super::{Style, cell};

/// The metrics of a judgement, failing ones (not Pass) first, each group in
/// the judge's order.
fn ordered(judgement: &Value) -> Vec<&Value> {
    let mut metrics: Vec<&Value> = judgement["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    metrics.sort_by_key(|m| m["label"] == "Pass");
    metrics
}

/// The headline: judge, score and classification, with the reason.
fn headline(judgement: &Value) -> String {
    let mut line = format!(
        "{} {} {}",
        judgement["classification"]
            .as_str()
            .unwrap_or("?")
            .to_uppercase(),
        judgement["judge"].as_str().unwrap_or("?"),
        judgement["score"]
    );
    if let Some(reason) = judgement["reason"].as_str() {
        let _ = write!(line, ": {}", super::text::one_line(reason));
    }
    line
}

pub(crate) fn text(judgement: &Value, sentences: &[(String, String)], style: Style) -> String {
    let mut out = headline(judgement);
    out.push('\n');
    for metric in ordered(judgement) {
        let name = metric["name"].as_str().unwrap_or_default();
        let passed = metric["label"] == "Pass";
        let mark = match (passed, style.ascii) {
            (true, false) => "✓",
            (false, false) => "✗",
            (true, true) => "ok",
            (false, true) => "x",
        };
        let sentence = sentences
            .iter()
            .find(|(key, _)| key == name)
            .map_or(name, |(_, sentence)| sentence.as_str());
        let _ = writeln!(out, "  {mark} {}", super::text::one_line(sentence));
    }
    out
}

/// A table of the numbers, the sentences, then each metric's two series
/// from `series` (the snapshot's `metrics.series`) as a chart.
pub(crate) fn markdown(
    judgement: &Value,
    sentences: &[(String, String)],
    series: &BTreeMap<String, SeriesPair>,
) -> String {
    let mut out = format!("### {}\n\n", cell(&headline(judgement)));
    out.push_str("| metric | label | canary − baseline | interval | p | bound |\n|---|---|---:|---|---:|---:|\n");
    for metric in ordered(judgement) {
        let f = &metric["figures"];
        let number = |v: &Value| v.as_f64().map_or("–".to_string(), |v| format!("{v:.4}"));
        let interval = match (f["ci_lower"].as_f64(), f["ci_upper"].as_f64()) {
            (Some(l), Some(u)) => format!("{l:.4} … {u:.4}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            cell(metric["name"].as_str().unwrap_or_default()),
            cell(metric["label"].as_str().unwrap_or_default()),
            number(&f["estimate"]),
            interval,
            number(&f["p_value"]),
            number(&f["bound"]),
        );
    }
    let notes: Vec<&(String, String)> = sentences.iter().collect();
    if !notes.is_empty() {
        out.push('\n');
        for (_, sentence) in notes {
            let _ = writeln!(out, "- {}", cell(sentence));
        }
    }
    let mut charts = String::new();
    for metric in ordered(judgement) {
        let name = metric["name"].as_str().unwrap_or_default();
        let Some(pair) = series.get(name) else {
            continue;
        };
        charts.push_str(&super::mermaid::series_chart(
            name,
            pair.step_seconds,
            &pair.baseline,
            &pair.canary,
        ));
    }
    if !charts.is_empty() {
        out.push('\n');
        out.push_str(&charts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgement() -> Value {
        serde_json::json!({
            "judge": "NetflixACAJudge-v1.0", "score": 50.0, "classification": "Marginal", "reason": null,
            "metrics": [
                {"name": "ok", "label": "Pass", "figures": {}},
                {"name": "p99", "label": "High", "figures": {"estimate": 12.3, "ci_lower": 8.1, "ci_upper": 16.0, "p_value": 0.0004, "bound": 3.1}}
            ]
        })
    }

    #[test]
    fn failing_metrics_come_first_with_their_sentence() {
        let sentences = vec![(
            "p99".to_string(),
            "p99 High: canary − baseline +12.3\n(forged line)".to_string(),
        )];
        let text = text(&judgement(), &sentences, Style::default());
        assert_eq!(
            text,
            "MARGINAL NetflixACAJudge-v1.0 50.0\n  ✗ p99 High: canary − baseline +12.3 (forged line)\n  ✓ ok\n"
        );
    }

    #[test]
    fn markdown_is_a_table_of_the_numbers_and_a_chart_per_series() {
        let series = serde_json::json!({
            "p99": {"step_seconds": 60, "start": "2026-12-06T10:00:00Z",
                    "baseline": [100.0, 101.0], "canary": [112.0, null]}
        });
        let series = serde_json::from_value(series).unwrap();
        let markdown = markdown(&judgement(), &[], &series);
        assert!(
            markdown.contains("| p99 | High | 12.3000 | 8.1000 … 16.0000 | 0.0004 | 3.1000 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("title \"p99: baseline (bars), canary (line), 1 gap\""),
            "{markdown}"
        );
        assert!(
            markdown.contains("bar [100, 101]\n    line [112, 112]"),
            "{markdown}"
        );
        // A metric without a series (`ok`) has no chart.
        assert_eq!(markdown.matches("```mermaid").count(), 1, "{markdown}");
    }
}
