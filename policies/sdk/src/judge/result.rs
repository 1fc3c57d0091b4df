//! What a judge says about each metric and about the canary as a whole.

use serde::Serialize;

use super::stats::describe::Summary;

/// A metric's classification, Kayenta's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Label {
    Pass,
    High,
    Low,
    /// No data for a metric that must have it: counts as a failure.
    NodataFailMetric,
    Nodata,
    /// The test could not be run (e.g. every value tied).
    Error,
    /// Sequential judge: not yet decided either way; keep observing.
    Inconclusive,
}

impl Label {
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
    pub fn is_failure(self) -> bool {
        matches!(self, Label::High | Label::Low | Label::NodataFailMetric)
    }
}

/// The numbers behind a tested metric, each `None` where the test did not
/// get that far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    /// The interval for `canary − baseline`.
    pub ci_lower: Option<f64>,
    pub ci_upper: Option<f64>,
    pub estimate: Option<f64>,
    /// The interval must clear this (Kayenta: 0.25 × |estimate|).
    pub bound: Option<f64>,
    /// The configured effect size (mean ratio or CLES); NaN when undefined.
    pub effect_size: Option<f64>,
    pub p_value: Option<f64>,
    /// The confidence level of the interval (0.98 for Kayenta).
    pub level: Option<f64>,
}

/// One metric's judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    pub name: String,
    pub groups: Vec<String>,
    pub label: Label,
    /// Kayenta's `classificationReason` (none for most passes).
    pub reason: Option<String>,
    /// A critical metric's failure fails the canary.
    pub critical: bool,
    pub muted: bool,
    pub canary: Summary,
    pub baseline: Summary,
    /// mean(canary) / mean(baseline), Kayenta's `ratio`; NaN when a mean
    /// is 0.
    pub ratio: f64,
    pub figures: Figures,
    /// Where shipgate decides deterministically or says more than Kayenta
    /// (constant cohorts, an unreachable level, a solver that stopped).
    pub note: Option<String>,
}

/// The canary's classification from its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Classification {
    Pass,
    Marginal,
    Fail,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::Marginal => "Marginal",
            Classification::Fail => "Fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupScore {
    pub name: String,
    /// 100 × passing / scored metrics; 0 for a group with none scored.
    pub score: f64,
    /// No metric of the group was scored (it counts as 100 in the sum).
    pub no_data: bool,
}

/// A judge's answer for a whole canary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub judge: String,
    /// 0 … 100, rounded half up to two decimals.
    pub score: f64,
    pub classification: Classification,
    pub reason: Option<String>,
    pub groups: Vec<GroupScore>,
    pub metrics: Vec<MetricResult>,
}
