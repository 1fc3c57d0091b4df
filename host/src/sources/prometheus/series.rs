//! Time series for the judge (`[sources.prometheus.series.NAME]`): one
//! range query per cohort on one step grid, from the stage's start (or the
//! window) to now, placed in `metrics.series.NAME`. A rate over `{step}` at
//! that step gives each point its own data; a gap (no sample, NaN, ±Inf) is
//! `null`, never a zero; a query giving several series, or none, or values
//! at fewer than half of the steps, is missing evidence that names it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{Credentials, RangeQuery};
use crate::sources::Target;
use crate::sources::evidence::{Cohort, Field, Missing};
use crate::sources::template::{PLACEHOLDERS, check_known, fill_cohort};

/// The most steps one series may hold (the snapshot's own limit).
const MAX_STEPS: u64 = 7 * 24 * 60;

/// One metric's series query.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    /// PromQL run for each cohort; `{hash}` as in `queries`, `{step}` the
    /// step as a duration (`60s`), e.g.
    /// `sum(rate(http_requests_total{pod_template_hash="{hash}",code=~"5.."}[{step}]))`.
    pub(crate) query: String,
    /// The grid's step in seconds (default 60).
    #[serde(default = "default_step")]
    pub(crate) step_seconds: u64,
    /// Where the series starts: `stage` (the current stage's start, the
    /// default) or `window` (the source's `window_seconds` before now).
    #[serde(default)]
    pub(crate) since: Since,
    /// Seconds after the start that are skipped (caches warming up).
    #[serde(default)]
    pub(crate) warm_up_seconds: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Since {
    #[default]
    Stage,
    Window,
}

fn default_step() -> u64 {
    60
}

impl SeriesQuery {
    /// Errors name the key under `at` (`sources.prometheus.series.NAME`).
    pub(crate) fn validate(&self, at: &str, name: &str) -> Result<(), String> {
        check_name(at, name)?;
        if self.query.trim().is_empty() {
            return Err(format!("{at}.query: the query is empty"));
        }
        let mut known = PLACEHOLDERS.to_vec();
        known.retain(|p| *p != "window");
        known.push("step");
        check_known(&self.query, &known).map_err(|why| format!("{at}.query: {why}"))?;
        if !(1..=86_400).contains(&self.step_seconds) {
            return Err(format!(
                "{at}.step_seconds: {} is outside 1..=86400",
                self.step_seconds
            ));
        }
        Ok(())
    }
}

/// A metric's name as a snapshot key: letters, digits and `_`.
pub(super) fn check_name(at: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "{at}: '{name}' is not a metric name (letters, digits and _)"
        ));
    }
    Ok(())
}

/// Where the queries of one collection go and what they share.
pub(super) struct Asking<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) base: &'a str,
    pub(super) credentials: &'a Credentials,
    /// Unix seconds.
    pub(super) now: f64,
    /// The current stage's start (Unix seconds), if known.
    pub(super) stage_started: Option<f64>,
    pub(super) window_seconds: u64,
    /// The baseline is measured this many seconds earlier.
    pub(super) baseline_offset: f64,
    pub(super) budget: Duration,
}

impl Asking<'_> {
    /// How far back `cohort` is measured: the baseline `baseline_offset`
    /// seconds earlier, the canary now.
    pub(super) fn offset(&self, cohort: Cohort) -> f64 {
        match cohort {
            Cohort::Baseline => self.baseline_offset,
            Cohort::Canary => 0.0,
        }
    }
}

/// The grid of one series: its first step and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    start: f64,
    step: f64,
    steps: u64,
}

impl Grid {
    fn plan(query: &SeriesQuery, asking: &Asking<'_>) -> Result<Grid, String> {
        let since = match query.since {
            Since::Stage => asking
                .stage_started
                .ok_or("the stage's start is unknown (rollout.stage_started_at)")?,
            Since::Window => asking.now - asking.window_seconds as f64,
        };
        let step = query.step_seconds as f64;
        let first = since + query.warm_up_seconds as f64;
        let span = asking.now - first;
        if span < step {
            return Err(format!(
                "the series has no complete step yet: {} s since the start{}, a step is {step} s",
                span.max(0.0).floor(),
                if query.warm_up_seconds > 0 {
                    " and its warm-up"
                } else {
                    ""
                }
            ));
        }
        // The last step ends now; at most MAX_STEPS of them, the latest.
        let steps = ((span / step).floor() as u64).min(MAX_STEPS);
        Ok(Grid {
            start: asking.now - (steps - 1) as f64 * step,
            step,
            steps,
        })
    }

    /// The samples on the grid: each at its step, `null` where none is.
    fn place(&self, samples: &[(f64, Option<f64>)], offset: f64) -> Vec<Value> {
        let mut points = vec![Value::Null; self.steps as usize];
        for &(time, value) in samples {
            let index = ((time + offset - self.start) / self.step).round();
            if index >= 0.0 && (index as usize) < points.len() {
                points[index as usize] = value.map_or(Value::Null, Value::from);
            }
        }
        points
    }
}

/// Collects one series (both cohorts) for `target`: the value for
/// `metrics.series.NAME`, or why it is missing.
pub(super) async fn collect(
    name: &str,
    query: &SeriesQuery,
    target: &Target,
    asking: &Asking<'_>,
) -> Result<(Field, Value), Missing> {
    let field = Field::Series(name.to_string());
    let missing = |query: String, why: String| Missing {
        what: field.path(),
        query,
        why,
    };
    let grid = Grid::plan(query, asking).map_err(|why| missing(query.query.clone(), why))?;
    let step = format!("{}s", query.step_seconds);
    let mut texts = Vec::new();
    for cohort in Cohort::ALL {
        let text = fill_cohort(&query.query, target, cohort, &[("step", &step)])
            .map_err(|why| missing(query.query.clone(), why))?;
        texts.push((cohort, text));
    }
    let asked = futures_util::future::join_all(texts.iter().map(|(cohort, text)| {
        let offset = asking.offset(*cohort);
        let range = RangeQuery {
            client: asking.client,
            base: asking.base,
            credentials: asking.credentials,
            query: text,
            start: grid.start - offset,
            end: grid.start + (grid.steps - 1) as f64 * grid.step - offset,
            step: grid.step,
        };
        async move { range.samples(asking.budget).await }
    }))
    .await;
    let mut cohorts = Vec::new();
    for ((cohort, text), result) in texts.into_iter().zip(asked) {
        let samples = result.map_err(|why| missing(text.clone(), why))?;
        let offset = asking.offset(cohort);
        let points = grid.place(&samples, offset);
        covered(&points, cohort).map_err(|why| missing(text, why))?;
        cohorts.push(points);
    }
    let start = jiff::Timestamp::from_second(grid.start as i64)
        .map(|t| t.to_string())
        .map_err(|_| missing(query.query.clone(), format!("{} is not a time", grid.start)))?;
    let canary = cohorts.pop().unwrap_or_default();
    let baseline = cohorts.pop().unwrap_or_default();
    Ok((
        field,
        json!({"step_seconds": grid.step, "start": start, "baseline": baseline, "canary": canary}),
    ))
}

/// A cohort that stopped answering (no traffic, crashed) leaves gaps; what
/// is left of it must not pass for the whole: at least half of the steps
/// need a value.
fn covered(points: &[Value], cohort: Cohort) -> Result<(), String> {
    let valued = points.iter().filter(|v| !v.is_null()).count();
    if valued * 2 < points.len() {
        return Err(format!(
            "only {valued} of {} steps of the {} have a value",
            points.len(),
            cohort.as_str()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(now: f64, stage_started: Option<f64>) -> Asking<'static> {
        static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        Asking {
            client: CLIENT.get_or_init(reqwest::Client::new),
            base: "http://127.0.0.1:9",
            credentials: &Credentials::None,
            now,
            stage_started,
            window_seconds: 600,
            baseline_offset: 0.0,
            budget: Duration::from_secs(1),
        }
    }

    fn query(since: Since, warm_up_seconds: u64) -> SeriesQuery {
        SeriesQuery {
            query: "up".into(),
            step_seconds: 60,
            since,
            warm_up_seconds,
        }
    }

    #[test]
    fn the_grid_ends_now_and_starts_after_the_warm_up() {
        let grid = Grid::plan(
            &query(Since::Stage, 120),
            &asking(10_000.0, Some(10_000.0 - 900.0)),
        )
        .unwrap();
        // 780 s after the warm-up: 13 whole steps, the last ending now.
        assert_eq!(grid.steps, 13);
        assert_eq!(grid.start, 10_000.0 - 12.0 * 60.0);
        let window = Grid::plan(&query(Since::Window, 0), &asking(10_000.0, None)).unwrap();
        assert_eq!(window.steps, 10);
        let unknown = Grid::plan(&query(Since::Stage, 0), &asking(10_000.0, None)).unwrap_err();
        assert!(unknown.contains("stage's start is unknown"), "{unknown}");
        let young =
            Grid::plan(&query(Since::Stage, 60), &asking(10_000.0, Some(9_950.0))).unwrap_err();
        assert!(young.contains("no complete step yet"), "{young}");
    }

    #[test]
    fn samples_land_on_their_step_and_gaps_stay_null() {
        let grid = Grid {
            start: 1000.0,
            step: 60.0,
            steps: 4,
        };
        let placed = grid.place(
            &[
                (1000.0, Some(1.5)),
                (1120.0, None),
                (1180.0, Some(3.0)),
                (5000.0, Some(9.0)),
            ],
            0.0,
        );
        assert_eq!(
            placed,
            vec![json!(1.5), Value::Null, Value::Null, json!(3.0)]
        );
        // A baseline asked an hour earlier lands on the same grid.
        let earlier = grid.place(&[(1000.0 - 3600.0, Some(2.0))], 3600.0);
        assert_eq!(earlier[0], json!(2.0));
    }

    #[test]
    fn a_cohort_with_values_at_fewer_than_half_of_the_steps_is_missing() {
        let half = [json!(1.0), Value::Null, json!(2.0), Value::Null];
        assert!(covered(&half, Cohort::Canary).is_ok());
        let stopped = [json!(1.0), Value::Null, Value::Null, Value::Null];
        assert_eq!(
            covered(&stopped, Cohort::Canary),
            Err("only 1 of 4 steps of the canary have a value".into())
        );
    }

    #[test]
    fn names_placeholders_and_steps_are_checked() {
        let at = "sources.prometheus.series.x";
        assert!(query(Since::Stage, 0).validate(at, "error_rate").is_ok());
        assert!(
            query(Since::Stage, 0)
                .validate(at, "a.b")
                .unwrap_err()
                .contains("not a metric name")
        );
        let mut windowed = query(Since::Stage, 0);
        windowed.query = "rate(x[{window}])".into();
        assert!(
            windowed
                .validate(at, "x")
                .unwrap_err()
                .contains("unknown placeholder {window}")
        );
        let mut zero = query(Since::Stage, 0);
        zero.step_seconds = 0;
        assert!(zero.validate(at, "x").unwrap_err().contains("step_seconds"));
    }
}
