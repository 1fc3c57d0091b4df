//! The Prometheus source: the gate's query templates, filled from a
//! request's target and asked as instant queries at one time. A query that
//! fails, returns no series or returns NaN is missing evidence, reported by
//! name; it never reads as a healthy zero.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::{CohortQueries, Query, RolloutQueries, Templates};
use shipgate_policy::Phase;

use super::{Asked, Collecting, Evidence, Missing, Source, Target};

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
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_window_seconds() -> u64 {
    900
}

impl PrometheusSource {
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
    async fn query_all(&self, client: &reqwest::Client, target: &Target, time: f64) -> Evidence {
        let window = format!("{}s", self.window_seconds);
        let templates = self.templates();
        let mut evidence = Evidence {
            source: self.name(),
            ..Evidence::default()
        };
        let (queries, missing) = templates.plan_rollout(target, &window);
        evidence.missing.extend(missing);
        let baseline_offset = target.baseline_offset_seconds.unwrap_or(0.0);
        self.run(client, queries, (time, 0.0), &mut evidence).await;
        let weight = target.weight.or_else(|| {
            let (_, value) = evidence
                .values
                .iter()
                .find(|(f, _)| f == "rollout.weight")?;
            value.as_f64()
        });
        let canary_has_traffic = weight != Some(0.0);
        if !canary_has_traffic {
            // At 0 % there is no stage yet, so no stage start to find.
            evidence
                .missing
                .retain(|m| m.field != "rollout.stage_started_at");
        }
        let (queries, missing) = templates.plan_cohorts(target, &window, canary_has_traffic);
        evidence.missing.extend(missing);
        self.run(client, queries, (time, baseline_offset), &mut evidence)
            .await;
        evidence
            .values
            .push(("metrics.window_seconds".into(), self.window_seconds.into()));
        evidence
    }

    /// Runs `queries` at `time` (baseline queries `baseline_offset` seconds
    /// earlier) concurrently, adding each value, or why it is missing, to
    /// `evidence` in the queries' order.
    async fn run(
        &self,
        client: &reqwest::Client,
        queries: Vec<Query>,
        (time, baseline_offset): (f64, f64),
        evidence: &mut Evidence,
    ) {
        let endpoint = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        let timeout = Duration::from_millis(self.timeout_ms);
        let mut running = tokio::task::JoinSet::new();
        for (index, query) in queries.iter().enumerate() {
            let offset = if query.baseline { baseline_offset } else { 0.0 };
            let at = format!("{:.3}", time - offset);
            let request = client
                .get(&endpoint)
                .query(&[("query", query.text.as_str()), ("time", &at)])
                .timeout(timeout);
            let base = self.url.clone();
            running.spawn(async move { (index, instant_value(request, &base).await) });
        }
        let mut results: Vec<Option<Result<f64, String>>> = vec![None; queries.len()];
        while let Some(joined) = running.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }
        for (Query { field, text, .. }, result) in queries.into_iter().zip(results) {
            match result
                .unwrap_or_else(|| Err("the query task failed".to_string()))
                .and_then(|value| snapshot_value(&field, value))
            {
                Ok(value) => evidence.values.push((field, value)),
                Err(why) => evidence.missing.push(Missing {
                    field,
                    query: text,
                    why,
                }),
            }
        }
    }
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
        self.templates().validate(at)
    }

    /// Before a rollout (preflight) there is no canary to measure: nothing
    /// is asked, so nothing is missing. Every other phase gets the metrics.
    fn collect<'a>(&'a self, client: &'a reqwest::Client, asked: Asked<'a>) -> Collecting<'a> {
        if asked.phase == Phase::Preflight {
            return Box::pin(std::future::ready(Evidence {
                source: self.name(),
                ..Evidence::default()
            }));
        }
        let time = asked.at.as_millisecond() as f64 / 1000.0;
        Box::pin(self.query_all(client, asked.target, time))
    }
}

/// A query's value as the snapshot holds it: Prometheus gives times in Unix
/// seconds, snapshots in RFC 3339.
fn snapshot_value(field: &str, value: f64) -> Result<Value, String> {
    match field {
        "rollout.stage_started_at" => jiff::Timestamp::from_second(value as i64)
            .map(|t| Value::from(t.to_string()))
            .map_err(|_| format!("{value} is not a time in Unix seconds")),
        _ => Ok(Value::from(value)),
    }
}

/// Runs one instant query and reads its single value.
async fn instant_value(request: reqwest::RequestBuilder, base: &str) -> Result<f64, String> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("Prometheus at {base} did not answer in time")
        } else {
            // Not the request's URL: the finding shows the query already.
            let why = error_chain(&e.without_url());
            format!("Prometheus at {base} is unreachable: {why}")
        }
    })?;
    let status = response.status();
    let body = read_bounded(response, base).await?;
    let answer: Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "Prometheus answered HTTP {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if answer["status"] != "success" {
        let error = answer["error"].as_str().unwrap_or("no error message");
        return Err(format!(
            "Prometheus refused the query (HTTP {status}): {error}"
        ));
    }
    single_value(&answer["data"])
}

/// The most of one answer read: a query that must aggregate to one series
/// needs a few hundred bytes, and a runaway one must not exhaust memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

async fn read_bounded(mut response: reqwest::Response, base: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer of Prometheus at {base}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "Prometheus at {base} answered more than {} KiB; the query must aggregate to one series",
                MAX_ANSWER_BYTES >> 10
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The one value of an instant query's `data`: a scalar, or a vector of
/// exactly one series.
fn single_value(data: &Value) -> Result<f64, String> {
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([series]) => &series["value"],
            Some([]) => return Err("no series".into()),
            Some(many) => {
                return Err(format!(
                    "{} series; the query must aggregate to one (e.g. with sum)",
                    many.len()
                ));
            }
            None => return Err("a malformed vector".into()),
        },
        other => {
            return Err(format!(
                "a {} result; an instant query must give a scalar or one series",
                other.unwrap_or("malformed")
            ));
        }
    };
    let value = sample[1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or("a sample without a number")?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{value} (no data in the window)"))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn an_oversized_answer_is_refused_not_buffered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let size = 4 * MAX_ANSWER_BYTES;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&vec![b' '; size]).await;
        });
        let request = reqwest::Client::new().get(format!("{base}/api/v1/query"));
        let error = instant_value(request, &base).await.unwrap_err();
        assert!(
            error.ends_with("answered more than 1024 KiB; the query must aggregate to one series"),
            "{error}"
        );
    }

    #[test]
    fn only_one_finite_value_counts_as_evidence() {
        let vector = |result: Value| json!({"resultType": "vector", "result": result});
        let one = vector(json!([{"metric": {}, "value": [1.0, "42.5"]}]));
        assert_eq!(single_value(&one), Ok(42.5));
        assert_eq!(single_value(&vector(json!([]))), Err("no series".into()));
        let two = vector(json!([{"value": [1, "1"]}, {"value": [1, "2"]}]));
        assert!(single_value(&two).unwrap_err().starts_with("2 series"));
        let nan = vector(json!([{"value": [1, "NaN"]}]));
        assert_eq!(
            single_value(&nan),
            Err("NaN (no data in the window)".into())
        );
        let scalar = json!({"resultType": "scalar", "result": [1, "3"]});
        assert_eq!(single_value(&scalar), Ok(3.0));
    }
}
