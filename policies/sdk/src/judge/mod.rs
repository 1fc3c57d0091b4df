//! Statistical canary judgement over time series: Kayenta's
//! `NetflixACAJudge-v1.0` reproduced ([`kayenta`]), and a sequential judge
//! built to be asked at every interval (its false-rollback rate stays at
//! alpha for independent steps however often it is asked)
//! ([`sequential`]). Pure Rust, deterministic, the same in the guest as
//! natively.
//!
//! ```
//! use shipgate_policy::judge::{self, MetricPair, MetricRule, Thresholds};
//!
//! let rules: Vec<MetricRule> = serde_json::from_str(
//!     r#"[{"name": "latency", "groups": ["latency"], "direction": "increase"}]"#,
//! ).unwrap();
//! let pairs = [MetricPair {
//!     name: "latency".into(),
//!     canary: (0..60).map(|i| 120.0 + f64::from(i % 7)).collect(),
//!     baseline: (0..60).map(|i| 100.0 + f64::from(i % 5)).collect(),
//! }];
//! let judgement = judge::judge_kayenta(&rules, &pairs, &Default::default(), Thresholds::default());
//! assert_eq!(judgement.metrics[0].label.as_str(), "High");
//! assert_eq!(judgement.classification.as_str(), "Fail");
//! ```

pub mod config;
pub mod kayenta;
pub mod result;
pub mod score;
pub mod sequential;
pub mod stats;

use std::collections::BTreeMap;

pub use config::{Analysis, CanaryConfig, Direction, MetricRule, Thresholds};
pub use result::{Classification, Judgement, Label, MetricResult};

/// One metric's two series, in step order; NaN marks a gap.
///
/// ```
/// use shipgate_policy::judge::MetricPair;
/// use shipgate_policy::Snapshot;
///
/// // A snapshot's series mark a gap with `null`; a pair marks it with NaN.
/// let snapshot = Snapshot::from_json(r#"{
///     "schema_version": 2,
///     "now": "2026-11-26T14:00:00Z",
///     "metrics": {"series": {"latency_p99_ms": {
///         "step_seconds": 60, "start": "2026-11-26T13:57:00Z",
///         "baseline": [310, 305, 298], "canary": [1240, null, 1190]
///     }}}
/// }"#).unwrap();
/// let series = snapshot.metrics.as_ref().and_then(|m| m.series.as_ref()).unwrap();
/// let gaps_as_nan = |values: &[Option<f64>]| values.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
/// let pairs: Vec<MetricPair> = series
///     .iter()
///     .map(|(name, pair)| MetricPair {
///         name: name.clone(),
///         canary: gaps_as_nan(&pair.canary),
///         baseline: gaps_as_nan(&pair.baseline),
///     })
///     .collect();
/// assert_eq!(pairs[0].name, "latency_p99_ms");
/// assert!(pairs[0].canary[1].is_nan());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPair {
    /// The metric's name: the rule that judges it has the same.
    pub name: String,
    /// The canary's value at each step.
    pub canary: Vec<f64>,
    /// The baseline's value at each step.
    pub baseline: Vec<f64>,
}

/// The prefix of the log line in which the stock judge policy prints its
/// whole judgement as JSON, when its config asks (`shipgate judge` reads it).
pub const JUDGEMENT_LOG_PREFIX: &str = "shipgate-judgement ";

/// The most a judgement's JSON may take: a policy prints at most 64 KiB
/// (the host's limit), and its line must fit with room to spare.
pub const MAX_JUDGEMENT_BYTES: usize = 60 * 1024;

/// The judgement as the JSON the stock judge prints, or why it is too
/// large to print ([`MAX_JUDGEMENT_BYTES`]).
///
/// ```
/// use shipgate_policy::judge::{self, MetricPair, MetricRule, Thresholds};
///
/// let rules: Vec<MetricRule> =
///     serde_json::from_str(r#"[{"name": "latency", "direction": "increase"}]"#).unwrap();
/// let pairs = [MetricPair { name: "latency".into(), canary: vec![1.0; 10], baseline: vec![1.0; 10] }];
/// let judgement = judge::judge_kayenta(&rules, &pairs, &Default::default(), Thresholds::default());
/// assert!(judge::printable(&judgement).unwrap().starts_with(r#"{"judge":"NetflixACAJudge-v1.0""#));
/// ```
pub fn printable(judgement: &Judgement) -> Result<String, String> {
    let json = serde_json::to_string(judgement).map_err(|e| e.to_string())?;
    if json.len() > MAX_JUDGEMENT_BYTES {
        return Err(format!(
            "the judgement of {} metrics is {} KiB, more than the {} KiB a policy may \
             print: judge fewer metrics at once",
            judgement.metrics.len(),
            json.len() >> 10,
            MAX_JUDGEMENT_BYTES >> 10
        ));
    }
    Ok(json)
}

/// The metric a series key names: the key without the tags a key may carry
/// after the name (`latency{pod="a"}`), as Kayenta judges each tag set of
/// a metric on its own.
///
/// ```
/// use shipgate_policy::judge::metric_of;
///
/// assert_eq!(metric_of(r#"latency{pod="a"}"#), "latency");
/// assert_eq!(metric_of("error_rate"), "error_rate");
/// ```
pub fn metric_of(series_key: &str) -> &str {
    series_key
        .split_once('{')
        .map_or(series_key, |(name, _)| name)
}

/// One judgement of a canary from the judgements of parts of its metrics,
/// each part judged on its own (the host judges a large request in several
/// instances at once): the metrics in the parts' order, scored again as
/// their judge scores them. Parts that split the metrics of one config in
/// its order give exactly the judgement of the whole.
///
/// ```
/// use shipgate_policy::judge::{self, MetricPair, MetricRule, Thresholds};
///
/// let rules: Vec<MetricRule> = serde_json::from_str(r#"[
///     {"name": "errors", "direction": "increase"},
///     {"name": "latency", "direction": "increase"}
/// ]"#).unwrap();
/// let steps = |level: f64| -> Vec<f64> { (0..30).map(|i| level + f64::from(i % 5)).collect() };
/// let pairs = [
///     MetricPair { name: "errors".into(), canary: steps(10.0), baseline: steps(10.0) },
///     MetricPair { name: "latency".into(), canary: steps(400.0), baseline: steps(300.0) },
/// ];
/// let weights = Default::default();
/// let whole = judge::judge_kayenta(&rules, &pairs, &weights, Thresholds::default());
/// let parts = vec![
///     judge::judge_kayenta(&rules, &pairs[..1], &weights, Thresholds::default()),
///     judge::judge_kayenta(&rules, &pairs[1..], &weights, Thresholds::default()),
/// ];
/// assert_eq!(parts[0].score, 100.0);
/// assert_eq!(judge::join(parts, &weights, Thresholds::default()), Ok(whole));
/// ```
pub fn join(
    parts: Vec<Judgement>,
    group_weights: &BTreeMap<String, f64>,
    thresholds: Thresholds,
) -> Result<Judgement, String> {
    let judge = match parts.first() {
        Some(first) => first.judge.clone(),
        None => return Err("no judgement to join".into()),
    };
    if let Some(other) = parts.iter().find(|part| part.judge != judge) {
        return Err(format!(
            "judgements of two judges cannot be joined: {judge} and {}",
            other.judge
        ));
    }
    let metrics = parts.into_iter().flat_map(|part| part.metrics).collect();
    match judge.as_str() {
        kayenta::NAME => Ok(score::score(
            kayenta::NAME,
            metrics,
            group_weights,
            thresholds,
        )),
        sequential::NAME => Ok(sequential::score(metrics, thresholds)),
        other => Err(format!("no judge is named {other}")),
    }
}

/// Judges every metric that has a rule with Kayenta's judge and scores the
/// canary. A pair without a rule is an error in Kayenta; here it is skipped
/// by the caller, which knows where the pairs came from.
///
/// ```
/// use std::collections::BTreeMap;
///
/// use shipgate_policy::judge::{self, Classification, MetricPair, MetricRule, Thresholds};
///
/// let rules: Vec<MetricRule> = serde_json::from_value(serde_json::json!([
///     {"name": "error_rate", "groups": ["errors"], "direction": "increase"},
///     {"name": "latency_p99_ms", "groups": ["latency"], "direction": "increase"},
/// ]))
/// .unwrap();
/// // Both cohorts alike on errors; the canary's p99 latency 40% higher.
/// let steps = |level: f64| -> Vec<f64> { (0..30).map(|i| level * (1.0 + f64::from(i % 5) / 100.0)).collect() };
/// let pairs = [
///     MetricPair { name: "error_rate".into(), canary: steps(0.004), baseline: steps(0.004) },
///     MetricPair { name: "latency_p99_ms".into(), canary: steps(434.0), baseline: steps(310.0) },
/// ];
/// // Errors weigh 70 of the 100 points, latency the other 30.
/// let weights = BTreeMap::from([("errors".to_string(), 70.0), ("latency".to_string(), 30.0)]);
/// let judgement = judge::judge_kayenta(&rules, &pairs, &weights, Thresholds::default());
/// assert_eq!(judgement.score, 70.0);
/// assert_eq!(judgement.classification, Classification::Marginal);
/// ```
pub fn judge_kayenta(
    rules: &[MetricRule],
    pairs: &[MetricPair],
    group_weights: &BTreeMap<String, f64>,
    thresholds: Thresholds,
) -> Judgement {
    let results = pairs
        .iter()
        .filter_map(|pair| {
            let rule = rules.iter().find(|rule| rule.name == pair.name)?;
            Some(kayenta::classify(rule, pair))
        })
        .collect();
    score::score(kayenta::NAME, results, group_weights, thresholds)
}
