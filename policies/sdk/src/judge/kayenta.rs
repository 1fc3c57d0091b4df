//! Kayenta's `NetflixACAJudge-v1.0`, step for step (`NetflixACAJudge.scala`,
//! `MannWhitneyClassifier.scala`): gaps, outliers, the rank-sum interval at
//! 98 %, the bound of a quarter of the estimate, the effect-size gate and
//! the critical gate. Where Kayenta is random (noise added to constant
//! cohorts) or silent (an unreachable level, a solver that stopped),
//! shipgate is deterministic and says so in the metric's note.

use super::MetricPair;
use super::config::{Analysis, Direction, EffectMeasure, MetricRule, NanStrategy, OutlierStrategy};
use super::result::{Figures, Label, MetricResult};
use super::stats::describe::{self, Summary, mean_ratio, sorted};
use super::stats::{Estimate, rank_sum};

/// The judge's name, as Kayenta's canary configs write it.
pub const NAME: &str = "NetflixACAJudge-v1.0";

/// The classifier's two constants. The judge fixes them
/// (`NetflixACAJudge.scala`); Kayenta's classifier tests vary them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The interval's confidence level.
    pub confidence: f64,
    /// The bound is this fraction of |estimate|.
    pub tolerance: f64,
}

/// What `NetflixACAJudge-v1.0` runs with.
pub const JUDGE: Settings = Settings {
    confidence: 0.98,
    tolerance: 0.25,
};

/// Judges one metric as Kayenta's judge would.
///
/// ```
/// use shipgate_policy::judge::{Label, MetricPair, MetricRule, kayenta};
///
/// let rule: MetricRule = serde_json::from_str(r#"{"name": "latency_p99_ms", "direction": "increase"}"#).unwrap();
/// // Thirty steps of p99 latency: the canary runs about 20% slower.
/// let steps = |level: f64| -> Vec<f64> { (0..30).map(|i| level * (1.0 + f64::from(i % 5) / 100.0)).collect() };
/// let pair = MetricPair { name: "latency_p99_ms".into(), canary: steps(372.0), baseline: steps(310.0) };
/// let result = kayenta::classify(&rule, &pair);
/// assert_eq!(result.label, Label::High);
/// assert_eq!(result.reason.as_deref(), Some("latency_p99_ms was classified as High"));
/// assert!(result.figures.ci_lower.unwrap() > 0.0);
/// ```
pub fn classify(rule: &MetricRule, pair: &MetricPair) -> MetricResult {
    classify_with(rule, pair, JUDGE)
}

/// Judges one metric as Kayenta's `MannWhitneyClassifier` with these
/// settings would.
///
/// ```
/// use shipgate_policy::judge::{Label, MetricPair, MetricRule, kayenta};
///
/// let rule: MetricRule = serde_json::from_str(r#"{"name": "latency_p99_ms"}"#).unwrap();
/// // Four steps each: too few for the judge's 98% confidence.
/// let pair = MetricPair {
///     name: "latency_p99_ms".into(),
///     canary: vec![410.0, 430.0, 395.0, 445.0],
///     baseline: vec![310.0, 305.0, 320.0, 298.0],
/// };
/// let judge = kayenta::classify_with(&rule, &pair, kayenta::JUDGE);
/// assert!(judge.note.unwrap().contains("cannot reach 98 % confidence"));
/// let looser = kayenta::Settings { confidence: 0.9, ..kayenta::JUDGE };
/// let result = kayenta::classify_with(&rule, &pair, looser);
/// assert_eq!((result.label, result.note), (Label::High, None));
/// ```
pub fn classify_with(rule: &MetricRule, pair: &MetricPair, settings: Settings) -> MetricResult {
    let analysis = &rule.analysis;
    let (canary, canary_sorted) = prepare(&pair.canary, analysis);
    let (baseline, baseline_sorted) = prepare(&pair.baseline, analysis);
    let mut result = MetricResult {
        name: pair.name.clone(),
        groups: rule.groups.clone(),
        label: Label::Pass,
        reason: None,
        critical: false,
        muted: analysis.muted,
        canary: Summary::of(&canary),
        baseline: Summary::of(&baseline),
        ratio: 1.0,
        figures: Figures::default(),
        note: None,
    };
    if canary.is_empty() || baseline.is_empty() {
        if analysis.nan_strategy == NanStrategy::Replace {
            return result;
        }
        result.reason = Some(format!("Missing data for {}", rule.name));
        if analysis.must_have_data && !analysis.critical {
            result.label = Label::NodataFailMetric;
        } else {
            result.label = Label::Nodata;
            result.critical = analysis.critical;
        }
        return result;
    }
    if canary_sorted == baseline_sorted {
        result.reason = Some("The Canary and Baseline data are identical".into());
        return result;
    }
    let first = canary[0];
    if canary.iter().chain(&baseline).all(|&v| v == first) {
        return result;
    }
    if let Some(infinite) = canary.iter().chain(&baseline).find(|v| v.is_infinite()) {
        // Kayenta runs its solver on an infinite range; shipgate refuses.
        result.label = Label::Error;
        result.reason = Some("Metric Classification Failed".into());
        result.note = Some(format!(
            "a value is {infinite}: an infinite rate is not a measurement"
        ));
        return result;
    }
    result.ratio = mean_ratio(&canary, &baseline);
    let effect = match analysis.effect_size.measure {
        EffectMeasure::MeanRatio => result.ratio,
        EffectMeasure::Cles => cles(&canary, &baseline),
    };
    // The rank-sum test does not depend on the order: it gets the sorted
    // cohorts and need not sort them again.
    let test = match shift_interval(&canary_sorted, &baseline_sorted, settings.confidence) {
        Ok(test) => test,
        Err(error) => {
            result.label = Label::Error;
            result.reason = Some("Metric Classification Failed".into());
            result.note = Some(error);
            return result;
        }
    };
    let bound = settings.tolerance * test.estimate.abs();
    result.figures = Figures {
        ci_lower: Some(test.lower),
        ci_upper: Some(test.upper),
        estimate: Some(test.estimate),
        bound: Some(bound),
        effect_size: Some(effect),
        p_value: test.p_value,
        level: Some(settings.confidence),
    };
    result.note = test.note;
    let effect_size = &analysis.effect_size;
    let direction = analysis.direction;
    let high = direction != Direction::Decrease
        && test.lower > bound
        && (effect.is_nan() || effect >= effect_size.allowed_increase());
    let low = direction != Direction::Increase
        && test.upper < -bound
        && (effect.is_nan() || effect <= effect_size.allowed_decrease());
    let label = if high {
        Label::High
    } else if low {
        Label::Low
    } else {
        return result;
    };
    result.label = label;
    let critical = analysis.critical
        && match label {
            Label::High => effect.is_nan() || effect >= effect_size.critical_increase(),
            _ => effect.is_nan() || effect <= effect_size.critical_decrease(),
        };
    result.critical = critical;
    result.reason = Some(if critical {
        format!(
            "The metric {} was classified as {} (Critical)",
            rule.name,
            label.as_str()
        )
    } else {
        format!("{} was classified as {}", rule.name, label.as_str())
    });
    result
}

/// Gaps as the metric asks, then outliers removed if it asks: the values in
/// their order (means are summed in it), and sorted.
fn prepare(values: &[f64], analysis: &Analysis) -> (Vec<f64>, Vec<f64>) {
    let values: Vec<f64> = match analysis.nan_strategy {
        NanStrategy::Remove => values.iter().copied().filter(|v| !v.is_nan()).collect(),
        NanStrategy::Replace => values
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v })
            .collect(),
    };
    let ascending = sorted(&values);
    if analysis.outliers.strategy == OutlierStrategy::Keep {
        return (values, ascending);
    }
    let (lower, upper) = fences(&ascending, analysis.outliers.outlier_factor);
    let kept = |v: &f64| !(*v > upper || *v < lower);
    (
        values.into_iter().filter(kept).collect(),
        ascending.into_iter().filter(kept).collect(),
    )
}

/// Kayenta's IQR fences with reduced sensitivity: never inside the 1st and
/// 99th percentiles.
fn fences(sorted: &[f64], factor: f64) -> (f64, f64) {
    let q1 = describe::percentile_r7(sorted, 25.0);
    let q3 = describe::percentile_r7(sorted, 75.0);
    let iqr = q3 - q1;
    let p01 = describe::percentile_r7(sorted, 1.0);
    let p99 = describe::percentile_r7(sorted, 99.0);
    (p01.min(q1 - factor * iqr), p99.max(q3 + factor * iqr))
}

/// The common-language effect size: P(canary > baseline) + ½ P(tie).
///
/// ```
/// use shipgate_policy::judge::kayenta::cles;
///
/// // Of the nine pairs of a canary and a baseline latency, the canary is
/// // slower in seven and ties in one.
/// assert_eq!(cles(&[120.0, 130.0, 125.0], &[100.0, 110.0, 125.0]), 7.5 / 9.0);
/// ```
pub fn cles(canary: &[f64], baseline: &[f64]) -> f64 {
    let m = canary.len() as f64;
    let n = baseline.len() as f64;
    let mut all: Vec<(f64, bool)> = canary
        .iter()
        .map(|&v| (v, true))
        .chain(baseline.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut r1 = 0.0;
    let mut start = 0;
    while start < all.len() {
        let end = start
            + all[start..]
                .iter()
                .take_while(|v| v.0 == all[start].0)
                .count();
        let average = (start + 1 + end) as f64 / 2.0;
        r1 += average * all[start..end].iter().filter(|v| v.1).count() as f64;
        start = end;
    }
    (2.0 * r1 - m * (m + 1.0)) / (2.0 * n * m)
}

struct ShiftTest {
    lower: f64,
    upper: f64,
    estimate: f64,
    p_value: Option<f64>,
    note: Option<String>,
}

/// The rank-sum interval and Kayenta's estimate; for two constant cohorts
/// (where Kayenta adds random noise) the exact point shift.
fn shift_interval(canary: &[f64], baseline: &[f64], level: f64) -> Result<ShiftTest, String> {
    let constant = |values: &[f64]| values.iter().all(|&v| v == values[0]);
    if constant(canary) && constant(baseline) {
        let shift = canary[0] - baseline[0];
        // Kayenta's noise (σ = value × 1e-5) hides a shift this small.
        let noise = 1e-4 * canary[0].abs().max(baseline[0].abs());
        let (shift, note) = if shift.abs() <= noise {
            (
                0.0,
                format!(
                    "each cohort is constant and they differ by {shift}, within the noise Kayenta \
                     adds here (1e-5 of the value): no shift"
                ),
            )
        } else {
            (
                shift,
                format!(
                    "each cohort is constant: the shift is exactly {shift} (Kayenta adds random \
                     noise here)"
                ),
            )
        };
        return Ok(ShiftTest {
            lower: shift,
            upper: shift,
            estimate: shift,
            p_value: None,
            note: Some(note),
        });
    }
    let test = rank_sum(canary, baseline, level, Estimate::Kayenta).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    if !test.level_reached {
        notes.push(format!(
            "{} and {} points cannot reach {} % confidence: the interval is the range of differences",
            canary.len(),
            baseline.len(),
            level * 100.0
        ));
    }
    if !test.converged {
        notes.push("the root finder stopped before its tolerance".to_string());
    }
    Ok(ShiftTest {
        lower: test.lower,
        upper: test.upper,
        estimate: test.estimate,
        p_value: Some(test.p_value),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(analysis: serde_json::Value) -> MetricRule {
        let mut fields = analysis;
        fields["name"] = "m".into();
        serde_json::from_value(fields).unwrap()
    }

    fn pair(canary: &[f64], baseline: &[f64]) -> MetricPair {
        MetricPair {
            name: "m".into(),
            canary: canary.to_vec(),
            baseline: baseline.to_vec(),
        }
    }

    #[test]
    fn kayentas_own_vector_is_high_with_its_interval() {
        // MannWhitneySuite: [10,20,30,40] vs [1,2,3,4] → CI [6, 39] at 95 %
        // there; at 98 % the interval is the range of differences.
        let result = classify(
            &rule(serde_json::json!({})),
            &pair(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0]),
        );
        assert_eq!(result.label, Label::High);
        assert_eq!(result.reason.as_deref(), Some("m was classified as High"));
        assert_eq!(result.figures.ci_lower, Some(6.0));
        assert!(
            result
                .note
                .unwrap()
                .contains("cannot reach 98 % confidence")
        );
    }

    #[test]
    fn missing_data_follows_strategy_must_have_data_and_critical() {
        let empty = pair(&[f64::NAN], &[1.0]);
        assert_eq!(
            classify(&rule(serde_json::json!({})), &empty).label,
            Label::Nodata
        );
        let required = rule(serde_json::json!({"must_have_data": true}));
        assert_eq!(classify(&required, &empty).label, Label::NodataFailMetric);
        let critical = classify(
            &rule(serde_json::json!({"critical": true, "must_have_data": true})),
            &empty,
        );
        assert_eq!((critical.label, critical.critical), (Label::Nodata, true));
        let replaced = rule(serde_json::json!({"nan_strategy": "replace"}));
        assert_eq!(classify(&replaced, &pair(&[], &[1.0])).label, Label::Pass);
    }

    #[test]
    fn constant_cohorts_get_the_exact_shift_instead_of_noise() {
        let result = classify(&rule(serde_json::json!({})), &pair(&[5.0; 10], &[3.0; 10]));
        assert_eq!(result.label, Label::High);
        assert_eq!(result.figures.estimate, Some(2.0));
        assert!(result.note.unwrap().contains("constant"));
    }

    #[test]
    fn identical_data_passes_and_a_critical_high_is_critical() {
        let same = classify(
            &rule(serde_json::json!({})),
            &pair(&[1.0, 2.0], &[2.0, 1.0]),
        );
        assert_eq!(
            same.reason.as_deref(),
            Some("The Canary and Baseline data are identical")
        );
        let canary: Vec<f64> = (0..30).map(|i| 20.0 + f64::from(i % 7)).collect();
        let baseline: Vec<f64> = (0..30).map(|i| 10.0 + f64::from(i % 5)).collect();
        let result = classify(
            &rule(serde_json::json!({"critical": true})),
            &pair(&canary, &baseline),
        );
        assert_eq!((result.label, result.critical), (Label::High, true));
        let decrease_only = classify(
            &rule(serde_json::json!({"direction": "decrease"})),
            &pair(&canary, &baseline),
        );
        assert_eq!(decrease_only.label, Label::Pass);
    }

    #[test]
    fn outlier_removal_uses_fences_outside_the_1st_and_99th_percentiles() {
        let analysis: Analysis = serde_json::from_value(
            serde_json::json!({"outliers": {"strategy": "remove", "outlierFactor": 1.5}}),
        )
        .unwrap();
        let mut values: Vec<f64> = (1..=20).map(f64::from).collect();
        values.push(1000.0);
        let (kept, kept_sorted) = prepare(&values, &analysis);
        assert_eq!(kept.len(), 20);
        assert_eq!(kept_sorted, kept);
        assert_eq!(cles(&[2.0], &[1.0, 2.0]), 0.75);
    }
}
