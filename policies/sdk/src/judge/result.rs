//! What a judge says about each metric and about the canary as a whole.

use serde::{Deserialize, Serialize};

use super::stats::describe::{Summary, number_or_nan};

/// A metric's classification, Kayenta's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Label {
    /// No regression.
    Pass,
    /// The canary is significantly higher than the baseline.
    High,
    /// The canary is significantly lower than the baseline.
    Low,
    /// No data for a metric that must have it: counts as a failure.
    NodataFailMetric,
    /// No data: the metric is not scored.
    Nodata,
    /// The test could not be run (e.g. every value tied).
    Error,
    /// Sequential judge: not yet decided either way; keep observing.
    Inconclusive,
}

impl Label {
    /// The label as Kayenta writes it.
    ///
    /// ```
    /// use shipgate_policy::judge::Label;
    ///
    /// assert_eq!(Label::NodataFailMetric.as_str(), "NodataFailMetric");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Pass => "Pass",
            Label::High => "High",
            Label::Low => "Low",
            Label::NodataFailMetric => "NodataFailMetric",
            Label::Nodata => "Nodata",
            Label::Error => "Error",
            Label::Inconclusive => "Inconclusive",
        }
    }

    /// Counts against the canary's score.
    ///
    /// ```
    /// use shipgate_policy::judge::Label;
    ///
    /// assert!(Label::High.is_failure());
    /// // Not decided yet is not a failure: the sequential judge keeps observing.
    /// assert!(!Label::Inconclusive.is_failure());
    /// ```
    pub fn is_failure(self) -> bool {
        matches!(self, Label::High | Label::Low | Label::NodataFailMetric)
    }
}

/// The numbers behind a tested metric, each `None` where the test did not
/// get that far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The interval for `canary − baseline`: its lower end.
    pub ci_lower: Option<f64>,
    /// Its upper end.
    pub ci_upper: Option<f64>,
    /// The point estimate of `canary − baseline`.
    pub estimate: Option<f64>,
    /// The interval must clear this (Kayenta: 0.25 × |estimate|).
    pub bound: Option<f64>,
    /// The configured effect size (mean ratio or CLES); NaN when undefined.
    pub effect_size: Option<f64>,
    /// The p-value of "no difference".
    pub p_value: Option<f64>,
    /// The confidence level of the interval (0.98 for Kayenta).
    pub level: Option<f64>,
}

/// One metric's judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// The groups it is scored in.
    pub groups: Vec<String>,
    /// Its classification.
    pub label: Label,
    /// Kayenta's `classificationReason` (none for most passes).
    pub reason: Option<String>,
    /// A critical metric's failure fails the canary.
    pub critical: bool,
    /// Judged and shown, never scored.
    pub muted: bool,
    /// The canary's values, summarized.
    pub canary: Summary,
    /// The baseline's values, summarized.
    pub baseline: Summary,
    /// mean(canary) / mean(baseline), Kayenta's `ratio`; NaN when a mean
    /// is 0.
    #[serde(deserialize_with = "number_or_nan")]
    pub ratio: f64,
    /// The numbers behind the label.
    pub figures: Figures,
    /// Where shipgate decides deterministically or says more than Kayenta
    /// (constant cohorts, an unreachable level, a solver that stopped).
    pub note: Option<String>,
}

/// The canary's classification from its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    /// At least the pass threshold: promote.
    Pass,
    /// Between the thresholds: keep observing, or a person decides.
    Marginal,
    /// Below the marginal threshold, or a critical failure: roll back.
    Fail,
}

impl Classification {
    /// The classification as Kayenta writes it.
    ///
    /// ```
    /// use shipgate_policy::judge::Classification;
    ///
    /// assert_eq!(Classification::Marginal.as_str(), "Marginal");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::Marginal => "Marginal",
            Classification::Fail => "Fail",
        }
    }
}

/// One group's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// The group's name.
    pub name: String,
    /// 100 × passing / scored metrics; 0 for a group with none scored.
    #[serde(deserialize_with = "number_or_nan")]
    pub score: f64,
    /// No metric of the group was scored (it counts as 100 in the sum).
    pub no_data: bool,
}

/// A judge's answer for a whole canary.
///
/// It reads back from its JSON (to join judgements made apart,
/// [`crate::judge::join`]) into what writes the same JSON, not always the
/// same value: JSON has no NaN or infinity, so a plain number that was one
/// reads back as NaN, and an optional figure that was one reads back as
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The judge's name, e.g. "NetflixACAJudge-v1.0".
    pub judge: String,
    /// 0 … 100, rounded half up to two decimals.
    #[serde(deserialize_with = "number_or_nan")]
    pub score: f64,
    /// The classification of the score.
    pub classification: Classification,
    /// Why the canary failed outright, or (sequential judge) why it is not
    /// decided yet.
    pub reason: Option<String>,
    /// Each group's score, in the order their first metric appears.
    pub groups: Vec<GroupScore>,
    /// Each metric's judgement, in the order judged.
    pub metrics: Vec<MetricResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{self, MetricPair, MetricRule, Thresholds};

    #[test]
    fn a_judgement_read_back_writes_the_same_json() {
        let rules: Vec<MetricRule> = serde_json::from_str(
            r#"[{"name": "zeros", "direction": "increase"},
                {"name": "empty", "direction": "increase"},
                {"name": "huge", "direction": "either", "effect_size": {"measure": "cles"}}]"#,
        )
        .unwrap();
        let pairs = [
            // mean(baseline) = 0: the ratio is NaN, written as null.
            MetricPair {
                name: "zeros".into(),
                canary: vec![0.0, 1.0, 2.0],
                baseline: vec![0.0; 3],
            },
            MetricPair {
                name: "empty".into(),
                canary: Vec::new(),
                baseline: Vec::new(),
            },
            // Values at f64's edge: a NaN deviation, an infinite estimate.
            MetricPair {
                name: "huge".into(),
                canary: vec![1e308, -1e308, 1e308],
                baseline: vec![1.0, 2.0, 3.0],
            },
        ];
        let judgement =
            judge::judge_kayenta(&rules, &pairs, &Default::default(), Thresholds::default());
        assert!(judgement.metrics[0].ratio.is_nan());
        assert!(judgement.metrics[2].canary.std.is_nan());
        assert_eq!(judgement.metrics[2].figures.estimate, Some(f64::INFINITY));
        let json = judge::printable(&judgement).unwrap();
        let read: Judgement = serde_json::from_str(&json).unwrap();
        assert_eq!(judge::printable(&read).unwrap(), json);
        assert_eq!(read.metrics[1].label, Label::Nodata);
    }
}
