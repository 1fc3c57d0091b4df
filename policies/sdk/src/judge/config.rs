//! How each metric is judged, named as Kayenta names it, so a canary config
//! moves over unchanged: from Kayenta's JSON (`analysisConfigurations.canary`,
//! camelCase) or from a gate file (the same keys in snake_case, flat beside
//! the metric's name). Unlike Kayenta, an unknown key or value is an error:
//! Kayenta silently falls back to a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Which change of a metric is a regression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Increase,
    Decrease,
    #[default]
    Either,
}

/// What a gap (NaN) in a series becomes: dropped, or a real 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NanStrategy {
    /// Kayenta's default (written `"none"` in its configs too).
    #[default]
    #[serde(alias = "none")]
    Remove,
    Replace,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutlierStrategy {
    #[default]
    #[serde(alias = "none")]
    Keep,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outliers {
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
    pub fn neutral(self) -> f64 {
        match self {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EffectSize {
    #[serde(default)]
    pub measure: EffectMeasure,
    #[serde(default, alias = "allowed_increase")]
    pub allowed_increase: Option<f64>,
    #[serde(default, alias = "allowed_decrease")]
    pub allowed_decrease: Option<f64>,
    #[serde(default, alias = "critical_increase")]
    pub critical_increase: Option<f64>,
    #[serde(default, alias = "critical_decrease")]
    pub critical_decrease: Option<f64>,
}

impl EffectSize {
    pub fn allowed_increase(&self) -> f64 {
        self.allowed_increase.unwrap_or(self.measure.neutral())
    }
    pub fn allowed_decrease(&self) -> f64 {
        self.allowed_decrease.unwrap_or(self.measure.neutral())
    }
    pub fn critical_increase(&self) -> f64 {
        self.critical_increase.unwrap_or(self.measure.neutral())
    }
    pub fn critical_decrease(&self) -> f64 {
        self.critical_decrease.unwrap_or(self.measure.neutral())
    }
}

/// One metric's judgement settings: Kayenta's `analysisConfigurations.canary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    #[serde(default)]
    pub direction: Direction,
    #[serde(default, alias = "nan_strategy")]
    pub nan_strategy: NanStrategy,
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
    #[serde(default, alias = "effect_size")]
    pub effect_size: EffectSize,
}

/// A metric to judge: its name (the series it reads), its groups (by
/// default a group of its own) and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRule {
    pub name: String,
    pub groups: Vec<String>,
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub pass: f64,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub judge: Option<JudgeRef>,
    pub metrics: Vec<CanaryMetric>,
    #[serde(default)]
    pub classifier: Classifier,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeRef {
    pub name: String,
    #[serde(default)]
    pub judge_configurations: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub analysis_configurations: AnalysisConfigurations,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnalysisConfigurations {
    #[serde(default)]
    pub canary: Analysis,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classifier {
    #[serde(default)]
    pub group_weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub score_thresholds: Option<Thresholds>,
}

impl CanaryConfig {
    /// The metric rules, in the config's order.
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
