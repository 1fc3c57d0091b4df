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
/// One metric's two series, in step order; NaN marks a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPair {
    pub name: String,
    pub canary: Vec<f64>,
    pub baseline: Vec<f64>,
}

/// The prefix of the log line in which the stock judge policy prints its
/// whole judgement as JSON, when its config asks (`shipgate judge` reads it).
pub const JUDGEMENT_LOG_PREFIX: &str = "shipgate-judgement ";
pub use result::{Classification, Judgement, Label, MetricResult};

/// Judges every metric that has a rule with Kayenta's judge and scores the
/// canary. A pair without a rule is an error in Kayenta; here it is skipped
/// by the caller, which knows where the pairs came from.
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
