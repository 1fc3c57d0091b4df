//! Stock policy `builtin:judge`: statistical canary judgement over the
//! snapshot's time series (`metrics.series`) and event counts
//! (`metrics.counts`), with Kayenta's `NetflixACAJudge-v1.0` or the
//! sequential `shipgate-sequential-v1`, configured with Kayenta's names.
//!
//! The canary's score decides: at least `thresholds.pass` allows, at least
//! `thresholds.marginal` denies (hold the stage and keep observing), below
//! it, or a critical metric's failure, rolls back; a canary that fails
//! only for want of data (Kayenta's 50 % no-data rule, a critical metric
//! without data) denies, since no data is no evidence of a regression. Each metric is one
//! finding (check id: the metric's name) with its interval, estimate,
//! bound and p-value in the message. With `log_judgement = true` the whole
//! judgement is also printed as one JSON line (`shipgate-judgement {...}`)
//! into the decision's log: what `shipgate judge` answers Kayenta with.

use std::collections::BTreeMap;

use serde::Deserialize;
use shipgate_policy::judge::sequential::{self, Counts, Options};
use shipgate_policy::judge::{
    self, Classification, JUDGEMENT_LOG_PREFIX, Judgement, Label, MetricPair, MetricResult,
    MetricRule, Thresholds,
};
use shipgate_policy::snapshot::{CountPair, SeriesPair};
use shipgate_policy::{Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Verdict};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum JudgeName {
    #[default]
    #[serde(rename = "NetflixACAJudge-v1.0")]
    Kayenta,
    #[serde(rename = "shipgate-sequential-v1")]
    Sequential,
}

/// The policy's config, checked as it is read, so `shipgate check` and
/// `validate-config` refuse what could not judge.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    pub judge: JudgeName,
    pub thresholds: Thresholds,
    pub group_weights: BTreeMap<String, f64>,
    pub metrics: Vec<MetricRule>,
    pub sequential: Options,
    pub log_judgement: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    judge: JudgeName,
    #[serde(default)]
    thresholds: Thresholds,
    #[serde(default)]
    group_weights: BTreeMap<String, f64>,
    metrics: Vec<MetricRule>,
    /// The sequential judge's options (`alpha`, `margin`, `min_pairs`).
    #[serde(default)]
    sequential: Options,
    /// Print the whole judgement as one JSON line into the decision's log
    /// (`shipgate judge` sets it to answer Kayenta).
    #[serde(default)]
    log_judgement: bool,
}

pub struct Judge;

impl Policy for Judge {
    type Config = Config;

    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "judge",
            env!("CARGO_PKG_VERSION"),
            "Statistical canary judgement over time series: Kayenta's NetflixACAJudge-v1.0 \
             reproduced, or the sequential shipgate-sequential-v1, built to be asked at every interval.",
            &[Phase::Promotion, Phase::Abort],
        )
    }

    fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
        let judgement = judge_snapshot(snapshot, config);
        if config.log_judgement {
            println!("{JUDGEMENT_LOG_PREFIX}{}", judge::printable(&judgement)?);
        }
        Ok(verdict(&judgement, config.thresholds))
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Config, String> {
        let config = Config {
            judge: raw.judge,
            thresholds: raw.thresholds,
            group_weights: raw.group_weights,
            metrics: raw.metrics,
            sequential: raw.sequential,
            log_judgement: raw.log_judgement,
        };
        validate(&config)?;
        Ok(config)
    }
}

fn validate(config: &Config) -> Result<(), String> {
    let Thresholds { pass, marginal } = config.thresholds;
    let ordered = (0.0..=100.0).contains(&marginal) && marginal < pass && pass <= 100.0;
    if !ordered {
        return Err(format!(
            "thresholds: need 0 <= marginal < pass <= 100, got pass {pass}, marginal {marginal}"
        ));
    }
    if config.metrics.is_empty() {
        return Err("metrics: name at least one metric to judge".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in &config.metrics {
        if !seen.insert(rule.name.as_str()) {
            return Err(format!("metrics: `{}` is named twice", rule.name));
        }
        let factor = rule.analysis.outliers.outlier_factor;
        if !(factor > 0.0 && factor.is_finite()) {
            return Err(format!(
                "metric `{}`: outliers.outlier_factor must be a number > 0, got {factor}",
                rule.name
            ));
        }
        let effect = &rule.analysis.effect_size;
        for (key, value) in [
            ("allowed_increase", effect.allowed_increase),
            ("allowed_decrease", effect.allowed_decrease),
            ("critical_increase", effect.critical_increase),
            ("critical_decrease", effect.critical_decrease),
        ] {
            if let Some(value) = value
                && !(value >= 0.0 && value.is_finite())
            {
                return Err(format!(
                    "metric `{}`: effect_size.{key} must be a number >= 0, got {value}",
                    rule.name
                ));
            }
        }
    }
    for (group, weight) in &config.group_weights {
        if !(weight.is_finite() && *weight >= 0.0) {
            return Err(format!(
                "group_weights.{group}: {weight} is not a weight >= 0"
            ));
        }
    }
    config
        .sequential
        .validate()
        .map_err(|e| format!("sequential: {e}"))
}

/// Judges every configured metric from the snapshot's series and counts.
/// A series key may carry tags after the name ([`judge::metric_of`]).
pub fn judge_snapshot(snapshot: &Snapshot, config: &Config) -> Judgement {
    let metrics = snapshot.metrics.as_ref();
    let series = metrics.and_then(|m| m.series.as_ref());
    let counts = metrics.and_then(|m| m.counts.as_ref());
    let mut results = Vec::new();
    for rule in &config.metrics {
        let keys: Vec<(&String, &SeriesPair)> = series
            .into_iter()
            .flatten()
            .filter(|(key, _)| judge::metric_of(key) == rule.name)
            .collect();
        let count = counts.and_then(|c| c.get(&rule.name));
        match (config.judge, count) {
            (JudgeName::Sequential, Some(count)) => {
                results.push(counted(rule, count, &config.sequential));
            }
            _ if keys.is_empty() => results.push(classify(config, rule, &pair(&rule.name, None))),
            _ => {
                for (key, series) in keys {
                    results.push(classify(config, rule, &pair(key, Some(series))));
                }
            }
        }
    }
    match config.judge {
        JudgeName::Kayenta => judge::score::score(
            judge::kayenta::NAME,
            results,
            &config.group_weights,
            config.thresholds,
        ),
        JudgeName::Sequential => sequential::score(results, config.thresholds),
    }
}

fn pair(key: &str, series: Option<&SeriesPair>) -> MetricPair {
    let values = |points: &[Option<f64>]| points.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    MetricPair {
        name: key.to_string(),
        canary: series.map_or_else(Vec::new, |s| values(&s.canary)),
        baseline: series.map_or_else(Vec::new, |s| values(&s.baseline)),
    }
}

fn classify(config: &Config, rule: &MetricRule, pair: &MetricPair) -> MetricResult {
    match config.judge {
        JudgeName::Kayenta => judge::kayenta::classify(rule, pair),
        JudgeName::Sequential => sequential::classify_series(rule, pair, &config.sequential),
    }
}

fn counted(rule: &MetricRule, count: &CountPair, options: &Options) -> MetricResult {
    let cohort = |c: &shipgate_policy::snapshot::EventCounts| Counts {
        events: c.events,
        exposures: c.exposures,
    };
    sequential::classify_counts(
        rule,
        &rule.name,
        cohort(&count.canary),
        cohort(&count.baseline),
        options,
    )
}

/// The canary's decision from its score, and one finding per metric.
pub fn verdict(judgement: &Judgement, thresholds: Thresholds) -> Verdict {
    let regressed = judgement
        .metrics
        .iter()
        .any(|m| !m.muted && matches!(m.label, Label::High | Label::Low));
    let decision = match judgement.classification {
        Classification::Pass => Decision::Allow,
        Classification::Marginal => Decision::Deny,
        // Missing data fails a Kayenta canary, but it is no evidence of a
        // regression: hold, as every shipgate policy does without evidence.
        Classification::Fail if !regressed => Decision::Deny,
        Classification::Fail => Decision::Rollback,
    };
    let mut findings = Findings::new();
    for metric in &judgement.metrics {
        let failing = metric.label != Label::Pass && !metric.muted;
        // Kayenta's score may pass without this metric, or pass it on no
        // data ("replace" on an empty series); a gate does not: evidence
        // that is missing never passes.
        let no_data = matches!(
            metric.label,
            Label::Nodata | Label::NodataFailMetric | Label::Error
        ) || (metric.canary.count == 0 || metric.baseline.count == 0)
            && metric.figures.p_value.is_none()
            && metric.figures.ci_upper.is_none();
        let at = match metric.label {
            _ if no_data && !metric.muted => decision.max(Decision::Deny),
            _ if failing => decision,
            _ => Decision::Allow,
        };
        let finding = findings.add(&metric.name, at, sentence(metric));
        finding.observed = Some(metric.label.as_str().to_string());
        finding.observed_value = metric.figures.estimate.filter(|v| v.is_finite());
        finding.threshold_value = metric.figures.bound.filter(|v| v.is_finite());
        finding.baseline_value = Some(metric.baseline.mean).filter(|_| metric.baseline.count > 0);
    }
    let score = findings.add(
        "score",
        decision,
        format!(
            "{} score {} ({}; pass {}, marginal {}){}",
            judgement.judge,
            judgement.score,
            judgement.classification.as_str(),
            thresholds.pass,
            thresholds.marginal,
            judgement
                .reason
                .as_ref()
                .map_or(String::new(), |r| format!(": {r}"))
        ),
    );
    score.observed = Some(judgement.score.to_string());
    score.threshold = Some(format!(">= {}", thresholds.pass));
    findings.verdict()
}

/// What a person reads about one metric: its label, the shift with its
/// interval, the samples, the p-value and the bound it had to clear.
pub fn sentence(metric: &MetricResult) -> String {
    let f = &metric.figures;
    let mut text = format!("{} {}", metric.name, metric.label.as_str());
    if let (Some(estimate), Some(lower), Some(upper)) = (f.estimate, f.ci_lower, f.ci_upper) {
        text.push_str(&format!(
            ": canary − baseline {} ({} % CI {} … {}, n {}/{}",
            signed(estimate),
            number(f.level.unwrap_or(0.0) * 100.0),
            number(lower),
            number(upper),
            metric.canary.count,
            metric.baseline.count
        ));
        if let Some(p) = f.p_value {
            text.push_str(&format!(", p {}", significant(p)));
        }
        text.push(')');
        if let Some(bound) = f.bound {
            let relation = match metric.label {
                Label::High => "above the bound",
                Label::Low => "below minus the bound",
                _ => "against the bound",
            };
            text.push_str(&format!(", {relation} {}", number(bound)));
        }
    } else if let Some(reason) = &metric.reason {
        text.push_str(&format!(": {reason}"));
    }
    if metric.critical {
        text.push_str(" (critical)");
    }
    if let Some(note) = &metric.note {
        text.push_str(&format!("; {note}"));
    }
    text
}

fn signed(value: f64) -> String {
    if value > 0.0 {
        format!("+{}", number(value))
    } else {
        number(value)
    }
}

/// Four significant digits, no exponent for everyday magnitudes.
fn number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return value.to_string();
    }
    let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn significant(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        number(p)
    }
}

shipgate_policy::export_policy!(Judge);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> Result<Config, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn configs_that_could_not_judge_are_refused_naming_the_key() {
        let metrics = serde_json::json!([{"name": "p99"}]);
        let equal = config(
            serde_json::json!({"metrics": metrics, "thresholds": {"pass": 50, "marginal": 50}}),
        );
        assert!(
            equal
                .unwrap_err()
                .contains("need 0 <= marginal < pass <= 100")
        );
        let twice = config(serde_json::json!({"metrics": [{"name": "a"}, {"name": "a"}]}));
        assert!(twice.unwrap_err().contains("`a` is named twice"));
        let negative = config(
            serde_json::json!({"metrics": [{"name": "a", "effect_size": {"allowed_increase": -1.0}}]}),
        );
        assert!(
            negative
                .unwrap_err()
                .contains("effect_size.allowed_increase must be a number >= 0")
        );
        let typo = config(serde_json::json!({"metrics": metrics, "judge": "dredd-v1.0"}));
        assert!(typo.unwrap_err().contains("unknown variant `dredd-v1.0`"));
        assert!(
            config(serde_json::json!({"metrics": []}))
                .unwrap_err()
                .contains("at least one metric")
        );
    }

    #[test]
    fn a_metric_without_data_denies_even_when_the_score_passes() {
        let config = config(serde_json::json!({"metrics": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}
        ]}))
        .unwrap();
        let steady: Vec<f64> = (0..30).map(|i| 10.0 + f64::from(i % 5)).collect();
        let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "now": "2026-12-06T10:30:00Z",
            "metrics": {"series": {
                "a": {"step_seconds": 60, "start": "2026-12-06T10:00:00Z", "baseline": steady, "canary": steady},
                "b": {"step_seconds": 60, "start": "2026-12-06T10:00:00Z", "baseline": steady, "canary": steady}
            }}
        }))
        .unwrap();
        let judgement = judge_snapshot(&snapshot, &config);
        // Kayenta: one Nodata of three is not half, and its group counts 100.
        assert_eq!(judgement.classification, Classification::Pass);
        let verdict = verdict(&judgement, config.thresholds);
        assert_eq!(verdict.decision, Decision::Deny);
        let c = verdict.findings.iter().find(|f| f.check == "c").unwrap();
        assert_eq!(
            (c.decision, c.observed.as_deref()),
            (Decision::Deny, Some("Nodata"))
        );
    }
}
