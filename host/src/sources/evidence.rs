//! What a source found for a target, where each value goes in the
//! snapshot, and what it could not find.

use serde_json::Value;

/// What one source found: a value per snapshot field, and why the others
/// are missing.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// The source that gathered it (`prometheus`), named in the record.
    pub(crate) source: &'static str,
    /// Where each value goes, and the value.
    pub(crate) values: Vec<(Field, Value)>,
    pub(crate) missing: Vec<Missing>,
}

impl Evidence {
    /// The value found for `field`, if any.
    pub(crate) fn value(&self, field: &Field) -> Option<&Value> {
        self.values.iter().find(|(f, _)| f == field).map(|(_, v)| v)
    }
}

/// A field a source could not fill: never a healthy zero, always a reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Missing {
    /// What it would have filled: a snapshot path (`metrics.canary.errors`)
    /// or a whole part of it (`metrics`, `facts`).
    pub(crate) what: String,
    /// The query that was (or would have been) asked; empty when the
    /// value came but was not valid.
    pub(crate) query: String,
    pub(crate) why: String,
}

/// Where a source's value goes in the snapshot. Sources name places, not
/// paths: a place the snapshot does not have cannot be written, and a test
/// checks every place against the snapshot's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    /// `metrics.{cohort}.{measure}`.
    Metric(Cohort, Measure),
    /// `metrics.window_seconds`: the window the metrics cover.
    WindowSeconds,
    /// `rollout.weight`: the canary's traffic share in percent.
    RolloutWeight,
    /// `rollout.stage_started_at` (RFC 3339).
    StageStartedAt,
    /// A release fact at a dotted path a facts file gave (`ci.status`): the
    /// snapshot builder refuses a path the snapshot does not have.
    Fact(String),
    /// `metrics.series.{name}`: both cohorts' time series of one metric.
    Series(String),
    /// `metrics.counts.{name}`: both cohorts' events out of exposures.
    Counts(String),
}

/// One version of a canary rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cohort {
    /// The stable version, measured beside the canary.
    Baseline,
    Canary,
}

impl Cohort {
    /// Both, baseline first: the order queries are planned in.
    pub(crate) const ALL: [Cohort; 2] = [Cohort::Baseline, Cohort::Canary];

    /// As snapshots and templates (`{cohort}`) name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cohort::Baseline => "baseline",
            Cohort::Canary => "canary",
        }
    }
}

/// What is measured of a cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Measure {
    Requests,
    Errors,
    /// A latency quantile in milliseconds: `p50`, `p95` or `p99`.
    Latency(Quantile),
    /// A business counter by name.
    Business(String),
}

/// The latency quantiles a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quantile {
    P50,
    P95,
    P99,
}

impl Quantile {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        }
    }
}

impl Measure {
    /// Its path inside a cohort (`latency_ms.p99`).
    pub(crate) fn path(&self) -> String {
        match self {
            Measure::Requests => "requests".into(),
            Measure::Errors => "errors".into(),
            Measure::Latency(quantile) => format!("latency_ms.{}", quantile.as_str()),
            Measure::Business(name) => format!("business.{name}"),
        }
    }
}

impl Field {
    /// Its dotted path in the snapshot document.
    pub(crate) fn path(&self) -> String {
        match self {
            Field::Metric(cohort, measure) => {
                format!("metrics.{}.{}", cohort.as_str(), measure.path())
            }
            Field::WindowSeconds => "metrics.window_seconds".into(),
            Field::RolloutWeight => "rollout.weight".into(),
            Field::StageStartedAt => "rollout.stage_started_at".into(),
            Field::Fact(path) => path.clone(),
            Field::Series(name) => format!("metrics.series.{name}"),
            Field::Counts(name) => format!("metrics.counts.{name}"),
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}
