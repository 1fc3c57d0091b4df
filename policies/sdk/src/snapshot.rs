//! Snapshot schema v2 as a policy reads it (v1 is v2 without `rollback`,
//! `user_journeys` and `integration_tests`; the host accepts both).
//!
//! Every section is optional: a policy decides what evidence it needs and
//! reports what is missing (see [`crate::Findings::missing`]). Unknown fields
//! in the caller's JSON are ignored. The host has already validated types and
//! refused malformed input, and hands policies this typed form in the
//! contract's binary encoding ([`crate::wire`]), whose layout follows the
//! field order here: adding, removing or reordering a field is a new
//! encoding version and a new contract version, and compiled policies must
//! be rebuilt (a test in `wire` fails until the version is bumped).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The snapshot schema version this SDK (and the host built with it) reads.
pub const SCHEMA_VERSION: u32 = 2;

/// The schema versions the host accepts: v1 snapshots are v2 snapshots
/// without the facts v2 added, and read the same.
pub const SCHEMA_VERSIONS: [u32; 2] = [1, SCHEMA_VERSION];

/// The evidence for one decision: facts about the deployment and its
/// metrics at one moment, `now`. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Snapshot {
    /// The schema version the snapshot is written in: 1 or 2.
    pub schema_version: u32,
    /// The time of the snapshot, RFC 3339. The only clock a policy has.
    pub now: String,
    /// What is deployed, where, and by whom.
    pub deployment: Option<Deployment>,
    /// The CI run of the deployed commit.
    pub ci: Option<Ci>,
    /// The release's database migrations; `[]` when it has none.
    pub migrations: Option<Vec<Migration>>,
    /// The feature flags the release adds or reads; `[]` when none.
    pub feature_flags: Option<Vec<FeatureFlag>>,
    /// How the release is rolled back, and whether that was rehearsed.
    pub rollback_plan: Option<RollbackPlan>,
    /// The deployment window: approval, traffic, who is on call.
    pub window: Option<Window>,
    /// Whether the people the deployment affects were told of it.
    pub stakeholders_notified: Option<bool>,
    /// Where the staged rollout stands.
    pub rollout: Option<Rollout>,
    /// The canary's and the baseline's metrics.
    pub metrics: Option<Metrics>,
    /// The service's alerts, firing or resolved.
    pub alerts: Option<Vec<Alert>>,
    /// Smoke tests run against the deployed version.
    pub smoke_tests: Option<Vec<SmokeTest>>,
    /// After a rollback: when it ran and how the restored version behaves
    /// (v2).
    pub rollback: Option<RollbackRun>,
    /// Key user journeys checked by a person after the rollout, each with
    /// its sign-off (v2).
    pub user_journeys: Option<Vec<UserJourney>>,
    /// Post-deploy integration tests; `[]` when the service has none (v2).
    pub integration_tests: Option<Vec<TestResult>>,
    /// Added by the host from the gate file: the plan and thresholds
    /// declared before the rollout. A caller cannot supply it. It must stay
    /// the last field: [`crate::wire::encode_with_gate`] relies on it.
    #[cfg_attr(feature = "schema", schemars(skip))]
    #[serde(default, deserialize_with = "present")]
    pub gate: Option<Gate>,
}

/// A `gate` key that is present in JSON, even as `null`, reads as `Some`, so
/// the host can refuse a caller that tries to supply one. The binary
/// encoding ([`crate::wire`]) keeps the option as it is.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Gate>, D::Error> {
    if !deserializer.is_human_readable() {
        return Option::<Gate>::deserialize(deserializer);
    }
    Ok(Some(
        Option::<Gate>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

impl Snapshot {
    /// Parses a snapshot from JSON (unit tests, native use; policies in the
    /// host receive it already parsed, see [`crate::wire`]).
    ///
    /// ```
    /// use shipgate_policy::Snapshot;
    ///
    /// let snapshot = Snapshot::from_json(r#"{
    ///     "schema_version": 2,
    ///     "now": "2026-11-26T14:00:00Z",
    ///     "deployment": {"service": "checkout", "environment": "production", "commit": "9f8d111"},
    ///     "rollout": {"stage_index": 2, "weight": 25}
    /// }"#).unwrap();
    /// let deployment = snapshot.deployment.as_ref().unwrap();
    /// assert_eq!(deployment.service.as_deref(), Some("checkout"));
    /// assert_eq!(snapshot.rollout.as_ref().and_then(|r| r.weight), Some(25.0));
    /// // Sections the snapshot leaves out are `None`: the evidence is missing.
    /// assert!(snapshot.metrics.is_none());
    ///
    /// let error = Snapshot::from_json(r#"{"schema_version": 2}"#).unwrap_err();
    /// assert!(error.starts_with("snapshot: missing field `now`"), "{error}");
    /// ```
    pub fn from_json(json: &str) -> Result<Snapshot, String> {
        serde_json::from_str(json).map_err(|e| format!("snapshot: {e}"))
    }

    /// Drops what the snapshot's schema version does not define: a v1
    /// snapshot's keys named like v2's facts were unknown keys in v1, and
    /// stay ignored. The host applies it to every snapshot it receives.
    ///
    /// ```
    /// use shipgate_policy::Snapshot;
    ///
    /// let mut v1 = Snapshot::from_json(r#"{
    ///     "schema_version": 1,
    ///     "now": "2026-11-26T14:00:00Z",
    ///     "integration_tests": [{"name": "payments", "status": "failed"}]
    /// }"#).unwrap();
    /// v1.drop_fields_of_later_schemas();
    /// assert!(v1.integration_tests.is_none());
    /// ```
    pub fn drop_fields_of_later_schemas(&mut self) {
        if self.schema_version < 2 {
            self.rollback = None;
            self.user_journeys = None;
            self.integration_tests = None;
        }
    }

    /// The names of the fields [`Self::drop_fields_of_later_schemas`] drops.
    pub const V2_FIELDS: [&'static str; 3] = ["rollback", "user_journeys", "integration_tests"];

    /// `deployment.deployed_at`, when present and a timestamp.
    ///
    /// ```
    /// use shipgate_policy::Snapshot;
    ///
    /// let snapshot = Snapshot::from_json(r#"{
    ///     "schema_version": 2,
    ///     "now": "2026-11-26T14:00:00Z",
    ///     "deployment": {"deployed_at": "2026-11-26T13:40:00Z"}
    /// }"#).unwrap();
    /// let deployed_at = snapshot.deployed_at().unwrap();
    /// assert_eq!(snapshot.now().unwrap().seconds_since(deployed_at), 20.0 * 60.0);
    /// ```
    pub fn deployed_at(&self) -> Option<Timestamp> {
        Timestamp::parse(self.deployment.as_ref()?.deployed_at.as_deref()?)
    }

    /// `now` as a timestamp. The host has validated it.
    ///
    /// ```
    /// use shipgate_policy::Snapshot;
    ///
    /// let snapshot = Snapshot::from_json(r#"{"schema_version": 2, "now": "2026-11-26T14:00:00Z"}"#).unwrap();
    /// assert_eq!(snapshot.now().unwrap().to_string(), "2026-11-26T14:00:00Z");
    /// ```
    pub fn now(&self) -> Option<Timestamp> {
        Timestamp::parse(&self.now)
    }

    /// The gate's rollout plan, or the empty plan when the host sent none.
    ///
    /// ```
    /// use shipgate_policy::snapshot::{Gate, RolloutPlan};
    /// use shipgate_policy::Snapshot;
    ///
    /// let mut snapshot = Snapshot::default();
    /// assert!(snapshot.plan().stages.is_empty());
    /// snapshot.gate = Some(Gate {
    ///     rollout: Some(RolloutPlan { stages: vec![5.0, 25.0, 100.0], ..Default::default() }),
    ///     ..Default::default()
    /// });
    /// assert_eq!(snapshot.plan().stages, [5.0, 25.0, 100.0]);
    /// ```
    pub fn plan(&self) -> RolloutPlan {
        self.gate
            .as_ref()
            .and_then(|g| g.rollout.clone())
            .unwrap_or_default()
    }
}

/// What is deployed, where, and by whom.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Deployment {
    /// The deployment's id in the CD system, e.g. "d-4812".
    pub id: Option<String>,
    /// The service deployed, e.g. "checkout".
    pub service: Option<String>,
    /// Where it is deployed, e.g. "production".
    pub environment: Option<String>,
    /// The commit being deployed.
    pub commit: Option<String>,
    /// The commit running before it, which a rollback restores.
    pub previous_commit: Option<String>,
    /// Who started the deployment: "ci" (or "cd") for a pipeline; anything
    /// else, such as "manual" or a user name, is a hand-started deploy.
    pub triggered_by: Option<String>,
    /// When the deployment started, RFC 3339.
    pub deployed_at: Option<String>,
    /// Other deployments or changes to the same service in progress.
    #[serde(default, with = "crate::wire::opaque_json")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<serde_json::Value>>"))]
    pub changes_in_flight: Option<Vec<serde_json::Value>>,
}

/// The CI run of the deployed commit.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Ci {
    /// The commit CI ran on, which should be the one deployed.
    pub commit: Option<String>,
    /// The run's status: `passed`, or anything else for not passed.
    pub status: Option<String>,
    /// The run's checks, one by one.
    pub checks: Option<Vec<CiCheck>>,
}

/// One check (job) of a CI run.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CiCheck {
    /// The check's name, e.g. "unit".
    pub name: String,
    /// `passed`, or anything else for not passed.
    pub status: String,
}

/// One database migration of the release.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Migration {
    /// The migration's id, e.g. "20261120_add_col".
    pub id: String,
    /// Whether the previous version still runs on the migrated schema, so
    /// the release can be rolled back.
    pub backward_compatible: Option<bool>,
    /// Whether it adds columns that may not be null, which the previous
    /// version does not write.
    pub adds_non_nullable_columns: Option<bool>,
    /// Whether it drops columns, which the previous version may read.
    pub drops_columns: Option<bool>,
}

/// A feature flag of the release.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeatureFlag {
    /// The flag's key, e.g. "new-checkout".
    pub key: String,
    /// Whether this release introduces it.
    pub new_in_release: Option<bool>,
    /// Whether it is on by default; a new flag should start off.
    pub default_enabled: Option<bool>,
}

/// How the release is rolled back, and whether that was rehearsed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RollbackPlan {
    /// Whether the plan is written down.
    pub documented: Option<bool>,
    /// Its steps, e.g. "kubectl argo rollouts undo checkout".
    pub steps: Option<Vec<String>>,
    /// How long a rollback is expected to take, in seconds.
    pub estimated_seconds: Option<f64>,
    /// When a rollback was last rehearsed, RFC 3339.
    pub last_tested_at: Option<String>,
    /// How long that rehearsal took, in seconds.
    pub tested_duration_seconds: Option<f64>,
}

/// The deployment window.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Window {
    /// Whether the deployment falls in a low-traffic period.
    pub low_traffic: Option<bool>,
    /// Whether the window was approved.
    pub approved: Option<bool>,
    /// Who is on call during it, e.g. "pager:payments".
    pub on_call: Option<Vec<String>>,
}

/// Where a staged rollout stands.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rollout {
    /// The current stage: an index into the gate's `rollout.stages`, from 0.
    pub stage_index: Option<u32>,
    /// The canary's share of traffic now, in percent.
    pub weight: Option<f64>,
    /// When the current stage began, RFC 3339.
    pub stage_started_at: Option<String>,
}

/// The canary's and the baseline's metrics.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Metrics {
    /// How long a window the cohorts' figures cover, in seconds.
    pub window_seconds: Option<f64>,
    /// The stable version's traffic over the window.
    pub baseline: Option<Cohort>,
    /// The new version's traffic over the window.
    pub canary: Option<Cohort>,
    /// Time series per metric, both cohorts on one step grid, for judging
    /// distributions over time ([`crate::judge`]; contract 0.4.0). A key
    /// may carry tags after the metric's name (`latency{pod="a"}`).
    pub series: Option<BTreeMap<String, SeriesPair>>,
    /// Events out of exposures per cohort, counted since the rollout began
    /// (errors out of requests; contract 0.4.0).
    pub counts: Option<BTreeMap<String, CountPair>>,
}

/// One metric's two series, aligned: `baseline[i]` and `canary[i]` are the
/// step that starts at `start + i × step_seconds`; `null` is a gap (no
/// sample, or a value that was not a number).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SeriesPair {
    /// The grid's step, in seconds (> 0).
    pub step_seconds: f64,
    /// The first step's time, RFC 3339.
    pub start: String,
    /// The baseline's value at each step.
    pub baseline: Vec<Option<f64>>,
    /// The canary's value at each step.
    pub canary: Vec<Option<f64>>,
}

/// One count metric for both cohorts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CountPair {
    /// The baseline's events and exposures.
    pub baseline: EventCounts,
    /// The canary's events and exposures.
    pub canary: EventCounts,
}

/// How many events (errors) happened out of how many exposures (requests).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EventCounts {
    /// How many events (errors) happened.
    pub events: f64,
    /// Out of how many exposures (requests).
    pub exposures: f64,
}

/// The traffic of one version over the metrics window.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Cohort {
    /// Requests served over the window.
    pub requests: Option<f64>,
    /// Of those, how many failed.
    pub errors: Option<f64>,
    /// Latency quantiles over the window, in milliseconds.
    pub latency_ms: Option<Latency>,
    /// Business events (orders, sign-ups, …) counted over the window.
    pub business: Option<BTreeMap<String, f64>>,
}

impl Cohort {
    /// errors / requests, when both are known and requests > 0.
    ///
    /// ```
    /// use shipgate_policy::snapshot::Cohort;
    ///
    /// let canary = Cohort { requests: Some(13000.0), errors: Some(533.0), ..Default::default() };
    /// assert_eq!(canary.error_rate(), Some(0.041));
    /// // No traffic yet: no rate.
    /// let idle = Cohort { requests: Some(0.0), errors: Some(0.0), ..Default::default() };
    /// assert_eq!(idle.error_rate(), None);
    /// ```
    pub fn error_rate(&self) -> Option<f64> {
        crate::format::ratio(self.errors?, self.requests?)
    }
}

/// A cohort's latency quantiles, in milliseconds.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Latency {
    /// The median.
    pub p50: Option<f64>,
    /// The 95th percentile.
    pub p95: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
}

impl Latency {
    /// The three quantiles by name, in order.
    ///
    /// ```
    /// use shipgate_policy::snapshot::Latency;
    ///
    /// let canary = Latency { p50: Some(44.0), p95: Some(180.0), p99: None };
    /// let known: Vec<&str> = canary.quantiles().iter().filter(|(_, v)| v.is_some()).map(|(q, _)| *q).collect();
    /// assert_eq!(known, ["p50", "p95"]);
    /// ```
    pub fn quantiles(&self) -> [(&'static str, Option<f64>); 3] {
        [("p50", self.p50), ("p95", self.p95), ("p99", self.p99)]
    }
}

/// An alert on the service.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Alert {
    /// The alert's name, e.g. "HighErrorRate".
    pub name: String,
    /// Its severity, e.g. "warning" or "critical".
    pub severity: Option<String>,
    /// `firing` or `resolved`.
    pub state: Option<String>,
    /// Since when it is in that state, RFC 3339.
    pub since: Option<String>,
    /// Whether it was expected during the deployment (a planned failover),
    /// so it does not count against it.
    pub expected: Option<bool>,
}

/// A test run against the deployed version.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SmokeTest {
    /// The test's name, e.g. "checkout".
    pub name: String,
    /// `passed`, `failed`, or anything else for not finished.
    pub status: String,
}

/// A post-deploy integration test's result: `passed`, `failed`, or
/// anything else for not finished.
pub type TestResult = SmokeTest;

/// A rollback that ran: when it started and completed, and the restored
/// version's metrics since it completed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RollbackRun {
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339; absent while the rollback is still running.
    pub completed_at: Option<String>,
    /// The commit running again.
    pub restored_commit: Option<String>,
    /// The restored version since the rollback completed.
    pub metrics: Option<Cohort>,
}

impl RollbackRun {
    /// `started_at`, when present and a timestamp.
    ///
    /// ```
    /// use shipgate_policy::snapshot::RollbackRun;
    ///
    /// let run = RollbackRun { started_at: Some("2026-11-26T14:02:00Z".into()), ..Default::default() };
    /// assert_eq!(run.started().unwrap().to_string(), "2026-11-26T14:02:00Z");
    /// ```
    pub fn started(&self) -> Option<Timestamp> {
        Timestamp::parse(self.started_at.as_deref()?)
    }

    /// `completed_at`, when present and a timestamp.
    ///
    /// ```
    /// use shipgate_policy::snapshot::RollbackRun;
    ///
    /// let run = RollbackRun {
    ///     started_at: Some("2026-11-26T14:02:00Z".into()),
    ///     completed_at: Some("2026-11-26T14:05:10Z".into()),
    ///     ..Default::default()
    /// };
    /// let took = run.completed().unwrap().seconds_since(run.started().unwrap());
    /// assert_eq!(took, 190.0);
    /// // Still running: not completed.
    /// assert!(RollbackRun::default().completed().is_none());
    /// ```
    pub fn completed(&self) -> Option<Timestamp> {
        Timestamp::parse(self.completed_at.as_deref()?)
    }
}

/// One key user journey, checked by a person after the rollout.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserJourney {
    /// The journey, e.g. "checkout".
    pub name: String,
    /// `passed` or `failed`.
    pub status: Option<String>,
    /// Who signed it off.
    pub verified_by: Option<String>,
    /// When, RFC 3339.
    pub verified_at: Option<String>,
}

/// What the host adds from the gate file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Gate {
    /// The gate's name, from its gate file.
    pub name: Option<String>,
    /// The SHA-256 digest of the gate file, in hex.
    pub sha256: Option<String>,
    /// The gate's `[rollout]` table.
    pub rollout: Option<RolloutPlan>,
}

/// The staged plan and abort thresholds, declared before the rollout: the
/// `[rollout]` table of a gate file, which the host hands every policy as
/// `gate.rollout`. Unknown keys are refused, so a misspelt threshold is an
/// error where it is written instead of a limit silently not applied.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    /// Traffic weights in percent, e.g. `[5, 10, 25, 50, 100]`.
    #[serde(default)]
    pub stages: Vec<f64>,
    /// The least observation per stage before promotion, in minutes.
    pub min_stage_minutes: Option<f64>,
    /// Limits whose breach aborts the rollout.
    #[serde(default)]
    pub abort: AbortThresholds,
}

/// `[rollout.abort]`: the limits a canary must stay within.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AbortThresholds {
    /// Canary errors / requests, e.g. 0.01 for 1%.
    pub max_error_rate: Option<f64>,
    /// Canary error rate / baseline error rate.
    pub max_error_rate_ratio: Option<f64>,
    /// Absolute latency limits per quantile, in milliseconds.
    pub max_latency_ms: Option<LatencyLimits>,
    /// Canary latency / baseline latency, per quantile.
    pub max_latency_ratio: Option<f64>,
    /// Largest drop in business events per request vs baseline, e.g. 0.10.
    pub max_business_drop: Option<f64>,
    /// Fewer canary requests than this is not evidence enough.
    pub min_requests: Option<f64>,
}

/// One declared abort threshold, for code that treats them all alike:
/// validating a gate, printing it for review.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// Its key under `[rollout.abort]` (`max_latency_ms.p99`).
    pub key: String,
    /// The declared value, in `unit`.
    pub value: f64,
    /// How people read it.
    pub unit: crate::Unit,
    /// What values make sense.
    pub range: ThresholdRange,
}

/// The values a threshold may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdRange {
    /// A fraction in [0, 1] (1 % is 0.01).
    Fraction,
    /// A finite number ≥ 0.
    NonNegative,
}

impl AbortThresholds {
    /// Every threshold the gate declares, by its key, in the file's order.
    ///
    /// ```
    /// use shipgate_policy::snapshot::AbortThresholds;
    /// let abort = AbortThresholds { max_error_rate: Some(0.01), ..Default::default() };
    /// let keys: Vec<String> = abort.declared().into_iter().map(|t| t.key).collect();
    /// assert_eq!(keys, ["max_error_rate"]);
    /// ```
    pub fn declared(&self) -> Vec<Threshold> {
        use crate::Unit;
        // Every field by name, without `..`: a new threshold does not
        // compile until it is described here.
        let AbortThresholds {
            max_error_rate,
            max_error_rate_ratio,
            max_latency_ms,
            max_latency_ratio,
            max_business_drop,
            min_requests,
        } = self;
        let mut all = vec![
            (
                "max_error_rate".to_string(),
                *max_error_rate,
                Unit::Percent,
                ThresholdRange::Fraction,
            ),
            (
                "max_error_rate_ratio".into(),
                *max_error_rate_ratio,
                Unit::Ratio,
                ThresholdRange::NonNegative,
            ),
        ];
        if let Some(latency) = max_latency_ms {
            all.extend(latency.quantiles().into_iter().map(|(q, value)| {
                (
                    format!("max_latency_ms.{q}"),
                    value,
                    Unit::Millis,
                    ThresholdRange::NonNegative,
                )
            }));
        }
        all.extend([
            (
                "max_latency_ratio".into(),
                *max_latency_ratio,
                Unit::Ratio,
                ThresholdRange::NonNegative,
            ),
            (
                "max_business_drop".into(),
                *max_business_drop,
                Unit::Percent,
                ThresholdRange::Fraction,
            ),
            (
                "min_requests".into(),
                *min_requests,
                Unit::Count,
                ThresholdRange::NonNegative,
            ),
        ]);
        all.into_iter()
            .filter_map(|(key, value, unit, range)| {
                Some(Threshold {
                    key,
                    value: value?,
                    unit,
                    range,
                })
            })
            .collect()
    }
}

/// Latency limits per quantile, in milliseconds. Unlike a cohort's
/// [`Latency`] (where a caller may send more quantiles than shipgate reads),
/// a limit with an unknown name is refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LatencyLimits {
    /// The limit on the median.
    pub p50: Option<f64>,
    /// The limit on the 95th percentile.
    pub p95: Option<f64>,
    /// The limit on the 99th percentile.
    pub p99: Option<f64>,
}

impl LatencyLimits {
    /// The three limits by quantile name, in order.
    ///
    /// ```
    /// use shipgate_policy::snapshot::LatencyLimits;
    ///
    /// let limits = LatencyLimits { p99: Some(800.0), ..Default::default() };
    /// assert_eq!(limits.quantiles(), [("p50", None), ("p95", None), ("p99", Some(800.0))]);
    /// ```
    pub fn quantiles(&self) -> [(&'static str, Option<f64>); 3] {
        [("p50", self.p50), ("p95", self.p95), ("p99", self.p99)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_threshold_is_refused_not_dropped() {
        let plan: Result<RolloutPlan, _> =
            serde_json::from_str(r#"{"abort": {"max_eror_rate": 0.01}}"#);
        let error = plan.unwrap_err().to_string();
        assert!(error.contains("unknown field `max_eror_rate`"), "{error}");
        let latency: Result<RolloutPlan, _> =
            serde_json::from_str(r#"{"abort": {"max_latency_ms": {"p999": 10}}}"#);
        assert!(latency.is_err());
    }

    #[test]
    fn a_cohort_may_carry_quantiles_shipgate_does_not_read() {
        let cohort: Cohort =
            serde_json::from_str(r#"{"latency_ms": {"p50": 1, "p999": 9}}"#).unwrap();
        assert_eq!(cohort.latency_ms.unwrap().p50, Some(1.0));
    }
}
