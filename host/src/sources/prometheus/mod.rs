//! The Prometheus source: the gate's query templates, filled from a
//! request's target and asked as instant queries at one time. A query that
//! fails, returns no series or returns NaN is missing evidence, reported by
//! name; it never reads as a healthy zero.

mod counts;
mod http;
mod series;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::{CohortQueries, Query, RolloutQueries, Templates};
pub(crate) use counts::CountQuery;
use http::{BasicAuth, Connection, Credentials, InstantQuery, TlsConfig};
pub(crate) use series::SeriesQuery;
use shipgate_policy::Phase;

use super::{Asked, Collecting, Evidence, Field, Missing, Source, Target};

/// `[sources.prometheus]` in a gate file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    pub(crate) url: String,
    /// Budget of each query, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub(crate) timeout_ms: u64,
    /// The analysis window: `{window}` in templates and
    /// `metrics.window_seconds` in the snapshot.
    #[serde(default = "default_window_seconds")]
    pub(crate) window_seconds: u64,
    /// Templates run once per cohort: `{hash}` is the stable hash for the
    /// baseline and the canary hash for the canary.
    #[serde(default)]
    pub(crate) queries: CohortQueries,
    /// Business counters by name, run per cohort like `queries`.
    #[serde(default)]
    pub(crate) business: BTreeMap<String, String>,
    /// Queries about the rollout itself, run once.
    #[serde(default)]
    pub(crate) rollout: RolloutQueries,
    /// Time series for `builtin:judge`, by name: `metrics.series.NAME`.
    #[serde(default)]
    pub(crate) series: BTreeMap<String, SeriesQuery>,
    /// Events out of exposures for `builtin:judge`'s count test, by name:
    /// `metrics.counts.NAME`.
    #[serde(default)]
    pub(crate) counts: BTreeMap<String, CountQuery>,
    /// A file holding a bearer token (`Authorization: Bearer`), read at each
    /// collection, so a rotated token is picked up.
    pub(crate) bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication, the password read from a file.
    pub(crate) basic_auth: Option<BasicAuth>,
    /// CA certificates to trust for an https:// url.
    pub(crate) tls_config: Option<TlsConfig>,
    /// Follow HTTP redirects. Default false: a query goes where the gate
    /// says.
    #[serde(default)]
    pub(crate) follow_redirects: bool,
    /// Use HTTP_PROXY and HTTPS_PROXY from the environment. Default false.
    #[serde(default)]
    pub(crate) proxy_from_environment: bool,
    /// The HTTP client, built at the first collection that could build it
    /// (a CA file mounted late is read again at the next one).
    #[serde(skip)]
    #[schemars(skip)]
    client: OnceLock<reqwest::Client>,
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_window_seconds() -> u64 {
    900
}

impl PrometheusSource {
    fn connection(&self) -> Connection<'_> {
        Connection {
            bearer_token_file: self.bearer_token_file.as_ref(),
            basic_auth: self.basic_auth.as_ref(),
            ca_file: self.tls_config.as_ref().map(|t| &t.ca_file),
            follow_redirects: self.follow_redirects,
            proxy_from_environment: self.proxy_from_environment,
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client = self.connection().client()?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    fn templates(&self) -> Templates<'_> {
        Templates {
            cohort: &self.queries,
            business: &self.business,
            rollout: &self.rollout,
        }
    }

    /// Everything the templates ask about `target` at `time` (Unix
    /// seconds): first the rollout (its weight decides whether the canary has
    /// anything to measure), then every cohort query, concurrently.
    async fn query_all(&self, target: &Target, time: f64) -> Evidence {
        let window = format!("{}s", self.window_seconds);
        let templates = self.templates();
        let mut evidence = Evidence {
            source: self.name(),
            ..Evidence::default()
        };
        let reached = self
            .client()
            .and_then(|client| Ok((client, self.connection().credentials()?)));
        let (client, credentials) = match reached {
            Ok(reached) => reached,
            Err(why) => {
                evidence.missing.push(Missing {
                    what: "metrics".into(),
                    query: format!("Prometheus at {}", self.url),
                    why,
                });
                return evidence;
            }
        };
        let asked = Asking {
            client: &client,
            credentials: &credentials,
            time,
        };
        let (queries, missing) = templates.plan_rollout(target, &window);
        evidence.missing.extend(missing);
        let baseline_offset = target.baseline_offset_seconds.unwrap_or(0.0);
        // The weight first: at 0 % there is no stage yet, so its start is
        // not asked for (a query over a day of the weight's history).
        let (weight_queries, stage_queries): (Vec<Query>, Vec<Query>) = queries
            .into_iter()
            .partition(|query| query.field == Field::RolloutWeight);
        self.run(&asked, weight_queries, 0.0, &mut evidence).await;
        let weight = target
            .weight
            .or_else(|| evidence.value(&Field::RolloutWeight)?.as_f64());
        let canary_has_traffic = weight != Some(0.0);
        if canary_has_traffic {
            self.run(&asked, stage_queries, 0.0, &mut evidence).await;
        } else {
            evidence
                .missing
                .retain(|m| m.what != Field::StageStartedAt.path());
        }
        let (queries, missing) = templates.plan_cohorts(target, &window, canary_has_traffic);
        evidence.missing.extend(missing);
        let stage_started = target
            .stage_started_at
            .clone()
            .or_else(|| {
                Some(
                    evidence
                        .value(&Field::StageStartedAt)?
                        .as_str()?
                        .to_string(),
                )
            })
            .and_then(|text| text.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond() as f64 / 1000.0);
        let series_asked = series::Asking {
            client: &client,
            base: &self.url,
            credentials: &credentials,
            now: time,
            stage_started,
            window_seconds: self.window_seconds,
            baseline_offset,
            budget: Duration::from_millis(self.timeout_ms),
        };
        // A canary without traffic has no series or counts to judge yet.
        let wanted = self.series.iter().filter(|_| canary_has_traffic);
        let series = futures_util::future::join_all(
            wanted.map(|(name, query)| series::collect(name, query, target, &series_asked)),
        );
        let wanted = self.counts.iter().filter(|_| canary_has_traffic);
        let counts = futures_util::future::join_all(
            wanted.map(|(name, query)| counts::collect(name, query, target, &series_asked)),
        );
        let (_, series, counts) = futures_util::future::join3(
            self.run(&asked, queries, baseline_offset, &mut evidence),
            series,
            counts,
        )
        .await;
        for result in series.into_iter().chain(counts) {
            match result {
                Ok(value) => evidence.values.push(value),
                Err(missing) => evidence.missing.push(missing),
            }
        }
        evidence
            .values
            .push((Field::WindowSeconds, self.window_seconds.into()));
        evidence
    }

    /// Runs `queries` concurrently (baseline queries `baseline_offset`
    /// seconds earlier), adding each value, or why it is missing, to
    /// `evidence` in the queries' order.
    async fn run(
        &self,
        asked: &Asking<'_>,
        queries: Vec<Query>,
        baseline_offset: f64,
        evidence: &mut Evidence,
    ) {
        let budget = Duration::from_millis(self.timeout_ms);
        let results = futures_util::future::join_all(queries.iter().map(|query| {
            let offset = if query.baseline { baseline_offset } else { 0.0 };
            async move {
                InstantQuery {
                    client: asked.client,
                    base: &self.url,
                    credentials: asked.credentials,
                    query: &query.text,
                    time: asked.time - offset,
                }
                .value(budget)
                .await
            }
        }))
        .await;
        for (Query { field, text, .. }, result) in queries.into_iter().zip(results) {
            match result.and_then(|value| snapshot_value(&field, value)) {
                Ok(value) => evidence.values.push((field, value)),
                Err(why) => evidence.missing.push(Missing {
                    what: field.path(),
                    query: text,
                    why,
                }),
            }
        }
    }
}

/// What every query of one collection shares.
struct Asking<'a> {
    client: &'a reqwest::Client,
    credentials: &'a Credentials,
    /// Unix seconds.
    time: f64,
}

impl Source for PrometheusSource {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn validate(&self) -> Result<(), String> {
        let at = "sources.prometheus";
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 9 {
            return Err(format!(
                "{at}.url: '{}' is not an http:// or https:// URL",
                self.url
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(format!(
                "{at}.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        if self.window_seconds == 0 {
            return Err(format!("{at}.window_seconds: must be at least 1"));
        }
        self.connection().validate(at)?;
        for (name, query) in &self.series {
            query.validate(&format!("{at}.series.{name}"), name)?;
        }
        for (name, query) in &self.counts {
            query.validate(&format!("{at}.counts.{name}"), name)?;
        }
        self.templates().validate(at)
    }

    /// Before a rollout (preflight) there is no canary to measure: nothing
    /// is asked, so nothing is missing. Every other phase gets the metrics.
    fn collect<'a>(&'a self, asked: Asked<'a>) -> Collecting<'a> {
        if asked.phase == Phase::Preflight {
            return Box::pin(std::future::ready(Evidence {
                source: self.name(),
                ..Evidence::default()
            }));
        }
        let time = asked.at.as_millisecond() as f64 / 1000.0;
        Box::pin(self.query_all(asked.target, time))
    }
}

/// A query's value as the snapshot holds it: Prometheus gives times in Unix
/// seconds, snapshots in RFC 3339.
fn snapshot_value(field: &Field, value: f64) -> Result<Value, String> {
    match field {
        Field::StageStartedAt => jiff::Timestamp::from_second(value as i64)
            .map(|t| Value::from(t.to_string()))
            .map_err(|_| format!("{value} is not a time in Unix seconds")),
        _ => Ok(Value::from(value)),
    }
}
