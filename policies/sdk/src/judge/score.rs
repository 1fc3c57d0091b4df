//! Kayenta's scoring (`WeightedSumScorer.scala`, `ScoringHelper.scala`,
//! `ThresholdScoreClassifier.scala`): groups score the share of their scored
//! metrics that passed, weighted into one 0–100 score; a critical failure or
//! half the metrics without data fails the canary outright.

use std::collections::BTreeMap;

use super::config::Thresholds;
use super::result::{Classification, GroupScore, Judgement, Label, MetricResult};

/// At least this share (in %) of Nodata metrics fails the canary.
const NODATA_THRESHOLD: f64 = 50.0;

/// Scores judged metrics into the canary's judgement.
///
/// ```
/// use std::collections::BTreeMap;
///
/// use serde_json::json;
/// use shipgate_policy::judge::{Classification, MetricPair, MetricRule, Thresholds, kayenta, score};
///
/// let rule = |json: serde_json::Value| -> MetricRule { serde_json::from_value(json).unwrap() };
/// let steps = |level: f64| -> Vec<f64> { (0..30).map(|i| level * (1.0 + f64::from(i % 5) / 100.0)).collect() };
/// let errors = MetricPair { name: "error_rate".into(), canary: steps(0.041), baseline: steps(0.0008) };
/// let latency = MetricPair { name: "latency_p99_ms".into(), canary: steps(310.0), baseline: steps(310.0) };
/// let results = vec![
///     kayenta::classify(&rule(json!({"name": "error_rate", "direction": "increase", "critical": true})), &errors),
///     kayenta::classify(&rule(json!({"name": "latency_p99_ms", "direction": "increase"})), &latency),
/// ];
/// // Half the groups pass, but a critical metric failed: the canary fails.
/// let judgement = score::score(kayenta::NAME, results, &BTreeMap::new(), Thresholds::default());
/// assert_eq!((judgement.score, judgement.classification), (0.0, Classification::Fail));
/// assert_eq!(
///     judgement.reason.as_deref(),
///     Some("Canary Failed: The metric error_rate was classified as High (Critical)")
/// );
/// ```
pub fn score(
    judge: &str,
    metrics: Vec<MetricResult>,
    group_weights: &BTreeMap<String, f64>,
    thresholds: Thresholds,
) -> Judgement {
    let scored: Vec<&MetricResult> = metrics.iter().filter(|m| !m.muted).collect();
    let groups = group_scores(&scored);
    let critical = scored.iter().find(|m| m.critical && m.label != Label::Pass);
    let nodata = scored.iter().filter(|m| m.label == Label::Nodata).count();
    let (score, reason) = if let Some(failure) = critical {
        let why = failure.reason.as_deref().unwrap_or("null");
        (0.0, Some(format!("Canary Failed: {why}")))
    } else if nodata as f64 / scored.len() as f64 * 100.0 >= NODATA_THRESHOLD {
        (
            0.0,
            Some(format!(
                "Canary Failed: {NODATA_THRESHOLD}% or more metrics returned NODATA"
            )),
        )
    } else {
        (weighted_sum(&groups, group_weights), None)
    };
    let classification = if score >= thresholds.pass {
        Classification::Pass
    } else if score >= thresholds.marginal {
        Classification::Marginal
    } else {
        Classification::Fail
    };
    Judgement {
        judge: judge.to_string(),
        score,
        classification,
        reason,
        groups,
        metrics,
    }
}

/// Each group's score, groups in the order their first metric appears.
fn group_scores(metrics: &[&MetricResult]) -> Vec<GroupScore> {
    let mut order: Vec<&str> = Vec::new();
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for metric in metrics {
        for group in &metric.groups {
            if !counts.contains_key(group.as_str()) {
                order.push(group);
            }
            let (passed, scored) = counts.entry(group).or_default();
            match metric.label {
                Label::Pass => {
                    *passed += 1;
                    *scored += 1;
                }
                label if label.is_failure() => *scored += 1,
                _ => {}
            }
        }
    }
    order
        .into_iter()
        .map(|name| {
            let (passed, scored) = counts[name];
            GroupScore {
                name: name.to_string(),
                score: if scored == 0 {
                    0.0
                } else {
                    passed as f64 / scored as f64 * 100.0
                },
                no_data: scored == 0,
            }
        })
        .collect()
}

/// Σ effective score × weight / 100; a group without a configured weight
/// shares what the configured ones leave of 100; a group without data
/// counts as 100. Rounded half up to two decimals.
fn weighted_sum(groups: &[GroupScore], weights: &BTreeMap<String, f64>) -> f64 {
    let configured: f64 = weights.values().sum();
    let unweighted = groups
        .iter()
        .filter(|g| !weights.contains_key(&g.name))
        .count();
    let shared = if unweighted > 0 {
        (100.0 - configured) / unweighted as f64
    } else {
        0.0
    };
    let mut sum = 0.0;
    for group in groups {
        let effective = if group.no_data { 100.0 } else { group.score };
        let weight = weights.get(&group.name).copied().unwrap_or(shared);
        sum += effective * (weight / 100.0);
    }
    round_half_up(sum, 2)
}

/// Rounds the decimal the number prints as (Java's `BigDecimal` of
/// `Double.toString`, as Commons Math's `Precision.round`), half up: on
/// digits, so 1.005 is 1.01 as in Kayenta, not 1.00 as binary rounding.
///
/// ```
/// use shipgate_policy::judge::score::round_half_up;
///
/// // Two of three metrics of a group passed.
/// assert_eq!(round_half_up(200.0 / 3.0, 2), 66.67);
/// assert_eq!(round_half_up(1.005, 2), 1.01);
/// ```
pub fn round_half_up(value: f64, places: usize) -> f64 {
    if !value.is_finite() {
        return value;
    }
    // Rust prints the shortest decimal that reads back as `value`, without
    // an exponent.
    let printed = format!("{}", value.abs());
    let (whole, fraction) = printed.split_once('.').unwrap_or((&printed, ""));
    if fraction.len() <= places {
        return value;
    }
    let mut digits: Vec<u8> = whole.bytes().chain(fraction[..places].bytes()).collect();
    if fraction.as_bytes()[places] >= b'5' {
        // Add one in the last kept place, carrying.
        let mut at = digits.len();
        loop {
            if at == 0 {
                digits.insert(0, b'1');
                break;
            }
            at -= 1;
            if digits[at] == b'9' {
                digits[at] = b'0';
            } else {
                digits[at] += 1;
                break;
            }
        }
    }
    let point = digits.len() - places;
    let text = format!(
        "{}.{}",
        String::from_utf8_lossy(&digits[..point]),
        String::from_utf8_lossy(&digits[point..])
    );
    let rounded: f64 = text.parse().unwrap_or(value.abs());
    if value < 0.0 { -rounded } else { rounded }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::result::Figures;
    use crate::judge::stats::describe::Summary;

    fn metric(name: &str, groups: &[&str], label: Label) -> MetricResult {
        MetricResult {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            label,
            reason: Some(format!("{name} was classified as {}", label.as_str())),
            critical: false,
            muted: false,
            canary: Summary::of(&[]),
            baseline: Summary::of(&[]),
            ratio: 1.0,
            figures: Figures::default(),
            note: None,
        }
    }

    #[test]
    fn groups_share_unconfigured_weight_and_a_group_without_data_counts_full() {
        let metrics = vec![
            metric("a", &["errors"], Label::Pass),
            metric("b", &["errors"], Label::High),
            metric("c", &["latency"], Label::Pass),
            metric("d", &["other"], Label::Error),
        ];
        let weights = BTreeMap::from([("errors".to_string(), 50.0)]);
        let judgement = score("j", metrics, &weights, Thresholds::default());
        // errors 50 × .5 + latency 100 × .25 + other (no data) 100 × .25.
        assert_eq!(judgement.score, 75.0);
        assert_eq!(judgement.classification, Classification::Pass);
        assert!(judgement.groups[2].no_data);
    }

    #[test]
    fn a_critical_failure_or_half_nodata_fails_and_muted_metrics_do_not_count() {
        let mut critical = metric("a", &["g"], Label::High);
        critical.critical = true;
        let judgement = score(
            "j",
            vec![critical, metric("b", &["g"], Label::Pass)],
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(judgement.score, 0.0);
        assert_eq!(
            judgement.reason.as_deref(),
            Some("Canary Failed: a was classified as High")
        );
        let nodata = score(
            "j",
            vec![
                metric("a", &["g"], Label::Nodata),
                metric("b", &["g"], Label::Pass),
            ],
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(
            nodata.reason.as_deref(),
            Some("Canary Failed: 50% or more metrics returned NODATA")
        );
        let mut muted = metric("m", &["g"], Label::High);
        muted.muted = true;
        let judgement = score(
            "j",
            vec![muted, metric("b", &["g"], Label::Pass)],
            &BTreeMap::new(),
            Thresholds::default(),
        );
        assert_eq!(judgement.score, 100.0);
        assert_eq!(judgement.metrics.len(), 2);
    }

    #[test]
    fn rounding_is_half_up_on_the_printed_decimal() {
        assert_eq!(round_half_up(66.66666666666667, 2), 66.67);
        assert_eq!(round_half_up(0.125, 2), 0.13);
        assert_eq!(round_half_up(1.005, 2), 1.01);
        assert_eq!(round_half_up(33.333, 2), 33.33);
        assert_eq!(round_half_up(50.0, 2), 50.0);
    }
}
