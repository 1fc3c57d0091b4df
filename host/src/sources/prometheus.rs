//! The Prometheus source: PromQL templates from the gate file, filled from a
//! request's target, queried at one instant, and turned into the metrics of
//! a snapshot. A query that fails, returns no series or returns NaN is
//! missing evidence, reported by name; it never reads as a healthy zero.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Target;

/// `[sources.prometheus]` in a gate file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Budget of each query, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The analysis window: `{window}` in templates and
    /// `metrics.window_seconds` in the snapshot.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u64,
    /// Templates run once per cohort: `{hash}` is the stable hash for the
    /// baseline and the canary hash for the canary.
    #[serde(default)]
    pub queries: CohortQueries,
    /// Business counters by name, run per cohort like `queries`.
    #[serde(default)]
    pub business: BTreeMap<String, String>,
    /// Queries about the rollout itself, run once.
    #[serde(default)]
    pub rollout: RolloutQueries,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortQueries {
    pub requests: Option<String>,
    pub errors: Option<String>,
    pub latency_p50_ms: Option<String>,
    pub latency_p95_ms: Option<String>,
    pub latency_p99_ms: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutQueries {
    /// The canary's traffic weight in percent.
    pub weight: Option<String>,
    /// When the current stage started, in Unix seconds.
    pub stage_started_at: Option<String>,
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_window_seconds() -> u64 {
    900
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "service",
    "namespace",
    "environment",
    "hash",
    "cohort",
    "window",
];

/// One query to run: where its value goes in the snapshot and its PromQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// A snapshot path relative to the document, e.g. `metrics.canary.errors`.
    pub field: String,
    pub promql: String,
}

/// What the source found: a value per field, and why the others are missing.
#[derive(Debug, Default)]
pub struct Evidence {
    pub values: Vec<(String, f64)>,
    pub missing: Vec<Missing>,
}

/// A field the source could not fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub field: String,
    pub promql: String,
    pub why: String,
}

impl PrometheusSource {
    /// Checks the section of a gate file; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
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
        for (key, template) in self.templates() {
            check_placeholders(template).map_err(|why| format!("{at}.{key}: {why}"))?;
        }
        Ok(())
    }

    /// Every template with its key in the gate file.
    fn templates(&self) -> Vec<(String, &str)> {
        let mut all: Vec<(String, &str)> = self
            .cohort_templates()
            .into_iter()
            .map(|(field, t)| (format!("queries.{}", field.replace('.', "_")), t))
            .collect();
        all.extend(
            self.business
                .iter()
                .map(|(name, t)| (format!("business.{name}"), t.as_str())),
        );
        all.extend(
            self.rollout_templates()
                .into_iter()
                .map(|(field, t)| (format!("rollout.{field}"), t)),
        );
        all
    }

    /// Cohort templates keyed by their path inside a cohort.
    fn cohort_templates(&self) -> Vec<(String, &str)> {
        let q = &self.queries;
        let mut all = Vec::new();
        for (field, template) in [
            ("requests", &q.requests),
            ("errors", &q.errors),
            ("latency_ms.p50", &q.latency_p50_ms),
            ("latency_ms.p95", &q.latency_p95_ms),
            ("latency_ms.p99", &q.latency_p99_ms),
        ] {
            if let Some(t) = template {
                all.push((field.to_string(), t.as_str()));
            }
        }
        for (name, template) in &self.business {
            all.push((format!("business.{name}"), template.as_str()));
        }
        all
    }

    fn rollout_templates(&self) -> Vec<(&'static str, &str)> {
        let r = &self.rollout;
        [
            ("weight", &r.weight),
            ("stage_started_at", &r.stage_started_at),
        ]
        .into_iter()
        .filter_map(|(field, t)| t.as_deref().map(|t| (field, t)))
        .collect()
    }

    /// The queries for `target`, with every placeholder filled. A cohort
    /// whose hash the target does not give is left out: its templates
    /// would match the wrong pods.
    pub fn queries(&self, target: &Target) -> (Vec<Query>, Vec<Missing>) {
        let mut queries = Vec::new();
        let mut missing = Vec::new();
        let window = format!("{}s", self.window_seconds);
        let mut plan = |field: String, template: &str, values: &Values| match fill(template, values)
        {
            Ok(promql) => queries.push(Query { field, promql }),
            Err(why) => missing.push(Missing {
                field,
                promql: template.to_string(),
                why,
            }),
        };
        for (cohort, hash) in [
            ("baseline", target.stable_hash.as_deref()),
            ("canary", target.canary_hash.as_deref()),
        ] {
            let values = Values {
                target,
                hash,
                cohort,
                window: &window,
            };
            for (field, template) in self.cohort_templates() {
                plan(format!("metrics.{cohort}.{field}"), template, &values);
            }
        }
        let values = Values {
            target,
            hash: None,
            cohort: "canary",
            window: &window,
        };
        for (field, template) in self.rollout_templates() {
            // What the request says needs no query.
            let given = match field {
                "weight" => target.weight.is_some(),
                _ => target.stage_started_at.is_some(),
            };
            if !given {
                plan(format!("rollout.{field}"), template, &values);
            }
        }
        (queries, missing)
    }

    /// Runs every query for `target` at `time` (Unix seconds), concurrently.
    pub async fn collect(&self, client: &reqwest::Client, target: &Target, time: f64) -> Evidence {
        let (queries, missing) = self.queries(target);
        let mut evidence = Evidence {
            values: Vec::new(),
            missing,
        };
        let endpoint = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        let timeout = Duration::from_millis(self.timeout_ms);
        let mut running = tokio::task::JoinSet::new();
        for (index, query) in queries.iter().enumerate() {
            let request = client
                .get(&endpoint)
                .query(&[
                    ("query", query.promql.as_str()),
                    ("time", &format!("{time:.3}")),
                ])
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
        for (query, result) in queries.into_iter().zip(results) {
            match result.unwrap_or_else(|| Err("the query task failed".to_string())) {
                Ok(value) => evidence.values.push((query.field, value)),
                Err(why) => evidence.missing.push(Missing {
                    field: query.field,
                    promql: query.promql,
                    why,
                }),
            }
        }
        evidence
    }
}

/// What placeholders are filled with for one query.
struct Values<'a> {
    target: &'a Target,
    hash: Option<&'a str>,
    cohort: &'a str,
    window: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Result<String, String> {
        let value = match name {
            "service" => self.target.service.as_deref(),
            "namespace" => self.target.namespace.as_deref(),
            "environment" => self.target.environment.as_deref(),
            "hash" => self.hash,
            "cohort" => Some(self.cohort),
            "window" => Some(self.window),
            _ => None,
        };
        let field = match name {
            "hash" if self.cohort == "baseline" => "stable_hash",
            "hash" => "canary_hash",
            other => other,
        };
        value
            .map(str::to_string)
            .ok_or_else(|| format!("the request gives no {field} for {{{name}}}"))
    }
}

/// Names of `{placeholder}`s in a template. PromQL's own braces hold label
/// matchers (`{job="x"}`), never a bare identifier, so they do not clash.
fn placeholders(template: &str) -> impl Iterator<Item = (usize, &str)> {
    template.match_indices('{').filter_map(move |(start, _)| {
        let rest = &template[start + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        let is_identifier =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        is_identifier.then_some((start, name))
    })
}

fn check_placeholders(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the query is empty".into());
    }
    match placeholders(template).find(|(_, name)| !PLACEHOLDERS.contains(name)) {
        Some((_, name)) => Err(format!(
            "unknown placeholder {{{name}}} (known: {})",
            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
        )),
        None => Ok(()),
    }
}

fn fill(template: &str, values: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut copied = 0;
    for (start, name) in placeholders(template) {
        out.push_str(&template[copied..start]);
        out.push_str(&values.get(name)?);
        copied = start + name.len() + 2;
    }
    out.push_str(&template[copied..]);
    Ok(out)
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

    fn source(requests: &str) -> PrometheusSource {
        PrometheusSource {
            url: "http://127.0.0.1:9090".into(),
            timeout_ms: 1000,
            window_seconds: 600,
            queries: CohortQueries {
                requests: Some(requests.into()),
                ..Default::default()
            },
            business: BTreeMap::new(),
            rollout: RolloutQueries::default(),
        }
    }

    fn target() -> Target {
        Target {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            stable_hash: Some("aaa".into()),
            canary_hash: Some("bbb".into()),
            ..Default::default()
        }
    }

    #[test]
    fn placeholders_are_filled_per_cohort_and_label_matchers_are_left_alone() {
        let s = source(
            r#"sum(increase(http_requests_total{app="{service}",ns="{namespace}",hash="{hash}"}[{window}]))"#,
        );
        let (queries, missing) = s.queries(&target());
        assert!(missing.is_empty());
        assert_eq!(
            queries,
            [
                Query {
                    field: "metrics.baseline.requests".into(),
                    promql: r#"sum(increase(http_requests_total{app="checkout",ns="shop",hash="aaa"}[600s]))"#.into(),
                },
                Query {
                    field: "metrics.canary.requests".into(),
                    promql: r#"sum(increase(http_requests_total{app="checkout",ns="shop",hash="bbb"}[600s]))"#.into(),
                },
            ]
        );
    }

    #[test]
    fn a_placeholder_the_request_does_not_fill_is_missing_evidence() {
        let s = source(r#"sum(up{hash="{hash}"})"#);
        let mut t = target();
        t.canary_hash = None;
        let (queries, missing) = s.queries(&t);
        assert_eq!(queries.len(), 1);
        assert_eq!(missing[0].field, "metrics.canary.requests");
        assert_eq!(
            missing[0].why,
            "the request gives no canary_hash for {hash}"
        );
    }

    #[test]
    fn unknown_placeholders_are_refused_by_name() {
        let s = source(r#"sum(up{app="{servce}"})"#);
        let error = s.validate().unwrap_err();
        assert!(
            error.starts_with("sources.prometheus.queries.requests: unknown placeholder {servce}"),
            "{error}"
        );
    }

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
