//! How each metric is judged, named as Kayenta names it, so a canary config
//! moves over unchanged: from Kayenta's JSON (`analysisConfigurations.canary`,
//! camelCase) or from a gate file (the same keys in snake_case, flat beside
//! the metric's name). Unlike Kayenta, an unknown key or value is an error:
//! Kayenta silently falls back to a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Which change of a metric is a regression.
///
/// ```
/// use shipgate_policy::judge::{Direction, MetricRule};
///
/// // Latency going up is a regression; going down is welcome.
/// let rule: MetricRule = serde_json::from_str(r#"{"name": "latency_p99_ms", "direction": "increase"}"#).unwrap();
/// assert_eq!(rule.analysis.direction, Direction::Increase);
/// // Without a direction, a change either way is one.
/// assert_eq!(Direction::default(), Direction::Either);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Only a rise is a regression (latency, errors).
    Increase,
    /// Only a fall is a regression (throughput, orders).
    Decrease,
    /// A change either way is a regression.
    #[default]
    Either,
}

/// What a gap (NaN) in a series becomes: dropped, or a real 0.
///
/// ```
/// use shipgate_policy::judge::config::NanStrategy;
///
/// // Kayenta's configs write its default as "none".
/// assert_eq!(serde_json::from_str::<NanStrategy>(r#""none""#).unwrap(), NanStrategy::Remove);
/// // An error counter with no sample in a step had no errors in it.
/// assert_eq!(serde_json::from_str::<NanStrategy>(r#""replace""#).unwrap(), NanStrategy::Replace);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NanStrategy {
    /// Kayenta's default (written `"none"` in its configs too).
    #[default]
    #[serde(alias = "none")]
    Remove,
    /// A gap is a 0 (a counter that had nothing to count).
    Replace,
}

/// Whether outliers are judged or left out. See [`Outliers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutlierStrategy {
    /// Every value is judged (Kayenta's default, written `"none"` too).
    #[default]
    #[serde(alias = "none")]
    Keep,
    /// Values beyond the fences are left out before judging.
    Remove,
}

/// Outlier removal: values more than `outlier_factor` interquartile ranges
/// beyond the quartiles (and beyond the 1st and 99th percentiles) are left
/// out when the strategy is [`OutlierStrategy::Remove`].
///
/// ```
/// use shipgate_policy::judge::config::{OutlierStrategy, Outliers};
///
/// // Kayenta's camelCase and a gate file's snake_case read alike.
/// let kayenta: Outliers = serde_json::from_str(r#"{"strategy": "remove", "outlierFactor": 1.5}"#).unwrap();
/// let gate: Outliers = serde_json::from_str(r#"{"strategy": "remove", "outlier_factor": 1.5}"#).unwrap();
/// assert_eq!(kayenta, gate);
/// assert_eq!(kayenta.strategy, OutlierStrategy::Remove);
/// assert_eq!(Outliers::default().outlier_factor, 3.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outliers {
    /// Keep or remove outliers.
    #[serde(default)]
    pub strategy: OutlierStrategy,
    /// The IQR multiple beyond which a point is an outlier.
    #[serde(default = "default_outlier_factor", alias = "outlier_factor")]
    pub outlier_factor: f64,
}

impl Default for Outliers {
    fn default() -> Self {
        Outliers {
            strategy: OutlierStrategy::Keep,
            outlier_factor: default_outlier_factor(),
        }
    }
}

fn default_outlier_factor() -> f64 {
    3.0
}

/// The effect size that must also be exceeded before a shift counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectMeasure {
    /// mean(canary) / mean(baseline); neutral 1.
    #[default]
    #[serde(rename = "meanRatio", alias = "mean_ratio")]
    MeanRatio,
    /// P(canary > baseline) + ½ P(tie); neutral 0.5.
    #[serde(rename = "cles")]
    Cles,
}

impl EffectMeasure {
    /// The neutral value, Kayenta's default for every allowance.
    ///
    /// ```
    /// use shipgate_policy::judge::config::EffectMeasure;
    ///
    /// assert_eq!(EffectMeasure::MeanRatio.neutral(), 1.0);
    /// assert_eq!(EffectMeasure::Cles.neutral(), 0.5);
    /// ```
    pub fn neutral(self) -> f64 {
        match self {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        }
    }
}

/// How large a significant change must also be to count: a shift is a
/// regression only when its effect size reaches the allowance, and a
/// critical metric fails the canary only when it reaches the critical one.
/// An allowance left out is the measure's neutral value.
///
/// ```
/// use shipgate_policy::judge::config::EffectSize;
///
/// // Up to 10% slower is tolerated; 50% slower fails a critical metric.
/// let effect: EffectSize = serde_json::from_str(r#"{"allowedIncrease": 1.1, "criticalIncrease": 1.5}"#).unwrap();
/// assert_eq!(effect.allowed_increase(), 1.1);
/// assert_eq!(effect.critical_increase(), 1.5);
/// assert_eq!(effect.allowed_decrease(), 1.0);
/// assert_eq!(effect.critical_decrease(), 1.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EffectSize {
    /// The measure the allowances are in.
    #[serde(default)]
    pub measure: EffectMeasure,
    /// A rise is High only at or above this effect size.
    #[serde(default, alias = "allowed_increase")]
    pub allowed_increase: Option<f64>,
    /// A fall is Low only at or below this effect size.
    #[serde(default, alias = "allowed_decrease")]
    pub allowed_decrease: Option<f64>,
    /// A critical metric's High fails the canary only at or above this
    /// effect size.
    #[serde(default, alias = "critical_increase")]
    pub critical_increase: Option<f64>,
    /// A critical metric's Low fails the canary only at or below this
    /// effect size.
    #[serde(default, alias = "critical_decrease")]
    pub critical_decrease: Option<f64>,
}

impl EffectSize {
    /// `allowed_increase`, or the neutral value when not set.
    pub fn allowed_increase(&self) -> f64 {
        self.allowed_increase.unwrap_or(self.measure.neutral())
    }
    /// `allowed_decrease`, or the neutral value when not set.
    pub fn allowed_decrease(&self) -> f64 {
        self.allowed_decrease.unwrap_or(self.measure.neutral())
    }
    /// `critical_increase`, or the neutral value when not set.
    pub fn critical_increase(&self) -> f64 {
        self.critical_increase.unwrap_or(self.measure.neutral())
    }
    /// `critical_decrease`, or the neutral value when not set.
    pub fn critical_decrease(&self) -> f64 {
        self.critical_decrease.unwrap_or(self.measure.neutral())
    }
}

/// One metric's judgement settings: Kayenta's `analysisConfigurations.canary`.
///
/// ```
/// use shipgate_policy::judge::config::{Analysis, NanStrategy};
/// use shipgate_policy::judge::Direction;
///
/// let analysis: Analysis = serde_json::from_str(
///     r#"{"direction": "increase", "nanStrategy": "replace", "critical": true}"#,
/// )
/// .unwrap();
/// assert_eq!(analysis.direction, Direction::Increase);
/// assert_eq!(analysis.nan_strategy, NanStrategy::Replace);
/// assert!(analysis.critical && !analysis.muted);
/// // Unlike Kayenta, a misspelt key is an error, not a default.
/// assert!(serde_json::from_str::<Analysis>(r#"{"direciton": "increase"}"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Which change is a regression.
    #[serde(default)]
    pub direction: Direction,
    /// What a gap in a series becomes.
    #[serde(default, alias = "nan_strategy")]
    pub nan_strategy: NanStrategy,
    /// Whether outliers are left out.
    #[serde(default)]
    pub outliers: Outliers,
    /// A regression of this metric fails the whole canary.
    #[serde(default)]
    pub critical: bool,
    /// No data for this metric counts as a failure of its group.
    #[serde(default, alias = "must_have_data")]
    pub must_have_data: bool,
    /// Judged and shown, never scored.
    #[serde(default)]
    pub muted: bool,
    /// How large a change must be to count.
    #[serde(default, alias = "effect_size")]
    pub effect_size: EffectSize,
}

/// A metric to judge: its name (the series it reads), its groups (by
/// default a group of its own) and how.
///
/// ```
/// use shipgate_policy::judge::{Direction, MetricRule};
///
/// // As a gate file writes it: the analysis keys flat beside the name.
/// let rule: MetricRule = serde_json::from_str(r#"{
///     "name": "latency_p99_ms",
///     "direction": "increase",
///     "effect_size": {"allowed_increase": 1.1}
/// }"#).unwrap();
/// assert_eq!(rule.groups, ["latency_p99_ms"]);
/// assert_eq!(rule.analysis.direction, Direction::Increase);
/// assert_eq!(rule.analysis.effect_size.allowed_increase(), 1.1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRule {
    /// The metric's name: the [`MetricPair`](super::MetricPair) it judges.
    pub name: String,
    /// The groups it is scored in.
    pub groups: Vec<String>,
    /// How it is judged.
    pub analysis: Analysis,
}

/// A gate file writes the analysis keys flat beside `name` and `groups`.
impl<'de> Deserialize<'de> for MetricRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let name = match fields.remove("name") {
            Some(serde_json::Value::String(name)) if !name.is_empty() => name,
            Some(_) => return Err(D::Error::custom("`name` must be a non-empty string")),
            None => return Err(D::Error::missing_field("name")),
        };
        // Kayenta scores groups only: a gate's metric without `groups` is
        // a group of its own, so it is not silently left out of the score.
        let groups = match fields.remove("groups") {
            None => vec![name.clone()],
            Some(groups) => Vec::<String>::deserialize(groups)
                .map_err(|e| D::Error::custom(format!("metric `{name}`: groups: {e}")))?,
        };
        let analysis = Analysis::deserialize(serde_json::Value::Object(fields))
            .map_err(|e| D::Error::custom(format!("metric `{name}`: {e}")))?;
        Ok(MetricRule {
            name,
            groups,
            analysis,
        })
    }
}

/// Kayenta's score thresholds: at least `pass` passes, at least `marginal`
/// is marginal, below fails.
///
/// ```
/// use shipgate_policy::judge::Thresholds;
///
/// assert_eq!(Thresholds::default(), Thresholds { pass: 75.0, marginal: 50.0 });
/// let strict: Thresholds = serde_json::from_str(r#"{"pass": 95, "marginal": 75}"#).unwrap();
/// assert_eq!(strict.pass, 95.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The least score that passes.
    pub pass: f64,
    /// The least score that is marginal.
    pub marginal: f64,
}

impl Default for Thresholds {
    /// Spinnaker's canary stage defaults.
    fn default() -> Self {
        Thresholds {
            pass: 75.0,
            marginal: 50.0,
        }
    }
}

/// A canary config as Kayenta stores it: the parts a judge reads. Other
/// fields (applications, templates, queries) are the fetcher's and ignored.
///
/// ```
/// use shipgate_policy::judge::CanaryConfig;
///
/// let config: CanaryConfig = serde_json::from_str(r#"{
///     "name": "checkout-canary",
///     "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
///     "metrics": [
///         {"name": "error_rate", "groups": ["errors"], "query": {"type": "prometheus"}},
///         {"name": "latency_p99_ms", "groups": ["latency"]}
///     ],
///     "classifier": {"groupWeights": {"errors": 70, "latency": 30}}
/// }"#).unwrap();
/// assert_eq!(config.judge.unwrap().name, "NetflixACAJudge-v1.0");
/// assert_eq!(config.metrics.len(), 2);
/// assert_eq!(config.classifier.group_weights["errors"], 70.0);
/// assert!(config.classifier.score_thresholds.is_none());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfig {
    /// The config's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The judge it names.
    #[serde(default)]
    pub judge: Option<JudgeRef>,
    /// The metrics to judge.
    pub metrics: Vec<CanaryMetric>,
    /// How the judged metrics are scored.
    #[serde(default)]
    pub classifier: Classifier,
}

/// The judge a canary config names, with its options.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeRef {
    /// The judge's name, e.g. "NetflixACAJudge-v1.0".
    pub name: String,
    /// The judge's options, as the config writes them.
    #[serde(default)]
    pub judge_configurations: serde_json::Map<String, serde_json::Value>,
}

/// One metric of a canary config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    /// The metric's name.
    pub name: String,
    /// The groups it is scored in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How it is judged.
    #[serde(default)]
    pub analysis_configurations: AnalysisConfigurations,
}

/// A metric's `analysisConfigurations`: only `canary` is a judge's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnalysisConfigurations {
    /// The judgement settings.
    #[serde(default)]
    pub canary: Analysis,
}

/// How a canary config scores its metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classifier {
    /// Each group's share of the score, in points of 100; groups not listed
    /// share what is left.
    #[serde(default)]
    pub group_weights: BTreeMap<String, f64>,
    /// The score thresholds, when the config sets them.
    #[serde(default)]
    pub score_thresholds: Option<Thresholds>,
}

impl CanaryConfig {
    /// The metric rules, in the config's order.
    ///
    /// ```
    /// use shipgate_policy::judge::{CanaryConfig, Direction};
    ///
    /// let config: CanaryConfig = serde_json::from_str(r#"{"metrics": [{
    ///     "name": "latency_p99_ms",
    ///     "groups": ["latency"],
    ///     "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}
    /// }]}"#).unwrap();
    /// let rules = config.rules();
    /// assert_eq!(rules[0].name, "latency_p99_ms");
    /// assert_eq!(rules[0].analysis.direction, Direction::Increase);
    /// assert!(rules[0].analysis.critical);
    /// ```
    pub fn rules(&self) -> Vec<MetricRule> {
        self.metrics
            .iter()
            .map(|metric| MetricRule {
                name: metric.name.clone(),
                groups: metric.groups.clone(),
                analysis: metric.analysis_configurations.canary.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_metric_is_flat_and_snake_case_and_typos_are_named() {
        let rule: MetricRule = serde_json::from_value(serde_json::json!({
            "name": "p99", "groups": ["latency"], "direction": "increase",
            "nan_strategy": "replace", "effect_size": {"allowed_increase": 1.1}
        }))
        .unwrap();
        assert_eq!(rule.analysis.direction, Direction::Increase);
        assert_eq!(rule.analysis.effect_size.allowed_increase(), 1.1);
        assert_eq!(rule.analysis.effect_size.critical_increase(), 1.0);
        let error = serde_json::from_value::<MetricRule>(serde_json::json!({
            "name": "p99", "nan_stratgy": "replace"
        }))
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("metric `p99`: unknown field `nan_stratgy`"),
            "{error}"
        );
        let error = serde_json::from_value::<MetricRule>(serde_json::json!({
            "name": "p99", "critical": "true"
        }))
        .unwrap_err();
        assert!(error.to_string().contains("expected a boolean"), "{error}");
    }

    #[test]
    fn cles_allowances_default_to_one_half() {
        let effect: EffectSize = serde_json::from_str(r#"{"measure": "cles"}"#).unwrap();
        assert_eq!(effect.allowed_decrease(), 0.5);
    }
}
