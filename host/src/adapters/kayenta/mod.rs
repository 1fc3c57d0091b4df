//! Kayenta's remote judge protocol: a `RemoteJudgeRequest` (Kayenta's own
//! JSON: `{canaryConfig, metricSetPairList, scoreThresholds}`) becomes the
//! stock judge policy's config and a snapshot holding the series; the
//! judgement the policy prints becomes Kayenta's `CanaryJudgeResult`.
//! Pure mappings: `shipgate judge` and the server's `/v1/kayenta/judge`
//! run the policy between them.
//!
//! Kayenta's `RemoteJudge-v1.0` posts to its configured
//! `kayenta.remote-judge.endpoint.baseUrl` followed by `/judge` (Retrofit 1
//! joins the two), with no credentials of its own; so the base URL to
//! configure is `http://HOST:PORT/v1/kayenta`.

mod reading;
mod values;

use std::collections::BTreeMap;

use reading::{RawCohorts, Unread};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shipgate_policy::Snapshot;
use shipgate_policy::snapshot::{Metrics, SeriesPair};
use values::{COHORTS, Point, Values};

use super::{Adapter, Authentication, Custom, Endpoint, Method, Route};
use crate::gate::judge_config;
use crate::snapshot::MAX_SERIES_POINTS;

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "kayenta",
    authentication: Authentication::Bearer,
    routes: &[Route {
        method: Method::Post,
        path: "/v1/kayenta/judge",
        endpoint: Endpoint::Custom(Custom::KayentaJudge),
    }],
    opt_in: true,
};

/// A request, mapped.
#[derive(Debug)]
pub(crate) struct JudgeRequest {
    /// The judge policy's config (`builtin:judge`).
    pub(crate) config: Value,
    /// A snapshot with one series per metric set pair, built typed (a
    /// day of points for each of dozens of metrics is megabytes of JSON:
    /// it is not written out and parsed again).
    pub(crate) snapshot: Snapshot,
    /// sha256 of the request's `now` and body, which the snapshot is a
    /// function of: its digest.
    pub(crate) sha256: String,
    /// Each pair's series key, id and tags, in the request's order.
    pub(crate) pairs: Vec<PairInfo>,
}

#[derive(Debug, Clone)]
pub(crate) struct PairInfo {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) tags: BTreeMap<String, String>,
}

/// A request as parsed; `V` is how a pair's `values` is read: as raw
/// arrays, read as the parse meets them ([`RawCohorts`]), or into points at
/// once (to name a refused request's first bad value, [`refusal`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest<V> {
    canary_config: Value,
    score_thresholds: Thresholds,
    metric_set_pair_list: Vec<RawPair<V>>,
}

#[derive(Deserialize)]
struct Thresholds {
    pass: f64,
    marginal: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPair<V> {
    name: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    values: V,
    #[serde(default)]
    scopes: BTreeMap<String, Scope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scope {
    #[serde(default)]
    start_time_iso: Option<String>,
    #[serde(default)]
    step_millis: Option<f64>,
}

/// Maps a request; the error names the field (`metricSetPairList[2].values.experiment[7]`).
/// `body` is shared with a helper thread, so it should be cheap to clone
/// (`Bytes`, `Arc<[u8]>`).
pub(crate) fn parse<B>(body: B, now: &str) -> Result<JudgeRequest, String>
where
    B: AsRef<[u8]> + Clone + Send + Sync + 'static,
{
    let digest = {
        let (body, now) = (body.clone(), now.to_string());
        move || {
            hex::encode(
                Sha256::new()
                    .chain_update(now)
                    .chain_update(body)
                    .finalize(),
            )
        }
    };
    let body = &body;
    // The structure, each cohort's values read as it is met, the body
    // hashed meanwhile.
    let structure = || {
        let mut deserializer = serde_json::Deserializer::from_slice(body.as_ref());
        let raw = serde_path_to_error::deserialize::<_, RawRequest<RawCohorts>>(&mut deserializer)
            .map_err(path_error)?;
        deserializer.end().map_err(|e| e.to_string())?;
        Ok(raw)
    };
    let (read, sha256) = reading::read_while_parsing(body, structure, digest);
    let (raw, read) = match read {
        Ok(read) => read,
        Err(unread) => {
            let found = match unread {
                Unread::Parse(found) => found,
                Unread::Value(n, error) => {
                    format!("cohort array number {} of the request: {error}", n + 1)
                }
            };
            return Err(refusal(body.as_ref(), found));
        }
    };
    // Back to their pairs: the cohorts were met pair by pair.
    let mut read = read.into_iter();
    let read_by_pair: Vec<[Option<Values>; 2]> = raw
        .metric_set_pair_list
        .iter()
        .map(|pair| pair.values.0.map(|raw| raw.and_then(|_| read.next())))
        .collect();
    let config = policy_config(&raw.canary_config, &raw.score_thresholds)?;
    let configured: Vec<&str> = config["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["name"].as_str())
        .collect();
    let mut series = BTreeMap::new();
    let mut pairs = Vec::new();
    let listed = raw.metric_set_pair_list.iter().zip(read_by_pair);
    for (i, (pair, mut read)) in listed.enumerate() {
        let at = format!("metricSetPairList[{i}]");
        let key = series_key(pair);
        if series.contains_key(&key) {
            return Err(format!(
                "{at}: a second pair for `{key}` with the same tags"
            ));
        }
        let mut cohort_values = |c: usize| -> Result<Values, String> {
            let cohort = COHORTS[c];
            let points = read[c].take().ok_or_else(|| {
                format!("{at}.values: no `{cohort}` series (Kayenta sends control and experiment)")
            })?;
            if points.len() > MAX_SERIES_POINTS {
                return Err(format!(
                    "{at}.values.{cohort}: {} points, more than the limit of \
                     {MAX_SERIES_POINTS} per series",
                    points.len()
                ));
            }
            Ok(points)
        };
        if !configured.contains(&pair.name.as_str()) {
            return Err(format!(
                "{at}.name: `{}` is not a metric of canaryConfig.metrics",
                pair.name
            ));
        }
        // As Kayenta sent them: a cohort may be shorter (Kayenta pads a
        // missing one with NaN itself), and padding here would turn into
        // zeros under nan_strategy "replace".
        let (baseline, canary) = (cohort_values(0)?, cohort_values(1)?);
        let scope = pair
            .scopes
            .get("control")
            .or_else(|| pair.scopes.get("experiment"));
        let step = scope
            .and_then(|s| s.step_millis)
            .filter(|s| *s > 0.0)
            .map_or(60.0, |ms| ms / 1000.0);
        let start = scope
            .and_then(|s| s.start_time_iso.clone())
            .unwrap_or_else(|| now.to_string());
        series.insert(
            key.clone(),
            SeriesPair {
                step_seconds: step,
                start,
                baseline,
                canary,
            },
        );
        pairs.push(PairInfo {
            key,
            id: pair.id.clone(),
            tags: pair.tags.clone(),
        });
    }
    let snapshot = Snapshot {
        schema_version: 2,
        now: now.to_string(),
        metrics: Some(Metrics {
            series: Some(series),
            ..Metrics::default()
        }),
        ..Snapshot::default()
    };
    Ok(JudgeRequest {
        config,
        snapshot,
        sha256,
        pairs,
    })
}

/// The message for a request that does not read: the request read again,
/// every value at once and its path tracked (slower: only for a request
/// that is refused), so the first problem in the document is named, a
/// value's index too, with its line and column, whichever step found it.
/// `found` is what that step said: the words if the typed parse took the
/// request, which the two parses' same grammar should never let happen.
fn refusal(body: &[u8], found: String) -> String {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let typed = serde_path_to_error::deserialize::<_, RawRequest<BTreeMap<String, Vec<Point>>>>(
        &mut deserializer,
    );
    match typed {
        Err(error) => path_error(error),
        Ok(_) => deserializer.end().err().map_or(found, |e| e.to_string()),
    }
}

/// `path: message`, or the message for the document itself.
fn path_error(error: serde_path_to_error::Error<serde_json::Error>) -> String {
    match error.path().to_string().as_str() {
        "." => error.inner().to_string(),
        path => format!("{path}: {}", error.inner()),
    }
}

/// `name`, or `name{tag="value",…}` when the pair has tags: Kayenta judges
/// each tag set of a metric on its own.
fn series_key<V>(pair: &RawPair<V>) -> String {
    if pair.tags.is_empty() {
        return pair.name.clone();
    }
    let tags: Vec<String> = pair
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{}{{{}}}", pair.name, tags.join(","))
}

/// The judge policy's config from a canary config, the request's
/// thresholds deciding (Kayenta's execution request sets them).
fn policy_config(canary_config: &Value, thresholds: &Thresholds) -> Result<Value, String> {
    let mut config = judge_config(canary_config, "canaryConfig.")?;
    config.insert(
        "thresholds".into(),
        json!({"pass": thresholds.pass, "marginal": thresholds.marginal}),
    );
    Ok(Value::Object(config))
}

/// Kayenta's `CanaryJudgeResult` from the policy's judgement: each metric's
/// result with the pair's id and tags, `resultMetadata` keeping Kayenta's
/// `ratio` beside the interval, estimate, bound, effect size, p-value and
/// sample sizes.
pub(crate) fn result(request: &JudgeRequest, judgement: &Value) -> Value {
    let metrics = judgement["metrics"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> = metrics
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default();
            let pair = request.pairs.iter().find(|p| p.key == name);
            let figures = &m["figures"];
            let stats = |cohort: &str| json!({"stats": m[cohort].clone()});
            json!({
                "name": shipgate_policy::judge::metric_of(name),
                "tags": pair.map(|p| json!(p.tags)).unwrap_or_else(|| json!({})),
                "id": pair.map_or("", |p| p.id.as_str()),
                "classification": m["label"],
                "classificationReason": m["reason"],
                "groups": m["groups"],
                "experimentMetadata": stats("canary"),
                "controlMetadata": stats("baseline"),
                "resultMetadata": {
                    "ratio": m["ratio"],
                    "ciLower": figures["ci_lower"],
                    "ciUpper": figures["ci_upper"],
                    "estimate": figures["estimate"],
                    "bound": figures["bound"],
                    "effectSize": figures["effect_size"],
                    "pValue": figures["p_value"],
                    "nCanary": m["canary"]["count"],
                    "nBaseline": m["baseline"]["count"],
                    "note": m["note"],
                },
                "critical": m["critical"],
                "muted": m["muted"],
            })
        })
        .collect();
    let groups: Vec<Value> = judgement["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| json!({"name": g["name"], "score": g["score"], "classification": "", "classificationReason": ""}))
        .collect();
    json!({
        "judgeName": judgement["judge"],
        "results": results,
        "groupScores": groups,
        "score": {
            "score": judgement["score"],
            "classification": judgement["classification"],
            "classificationReason": judgement["reason"].as_str().unwrap_or(""),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the previous parser (every value read with the structure)
    /// said for each broken request: reading the values while the structure
    /// is parsed, on two threads, must not change a word; bytes after the
    /// request are refused now.
    #[test]
    fn a_broken_request_is_refused_as_one_typed_parse_refuses_it() {
        let cases = [
            // a bad value before a bad name further on
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":[1,"x"],"experiment":[1,2]}},{"name":5,"values":{}}]}"#,
                r#"metricSetPairList[0].values.control[1]: "x" is not a number at line 1 column 146"#,
            ),
            // a key besides control and experiment
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":[1,2],"experiment":[1,2],"extra":[true]}}]}"#,
                r#"metricSetPairList[0].values.extra[0]: invalid type: boolean `true`, expected a number, null or "NaN" at line 1 column 178"#,
            ),
            // the first copy of a repeated key
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":["y"],"control":[1,2],"experiment":[1,2]}}]}"#,
                r#"metricSetPairList[0].values.control[0]: "y" is not a number at line 1 column 144"#,
            ),
            // a map for an array
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":{},"experiment":[1,2]}}]}"#,
                r#"metricSetPairList[0].values.control: invalid type: map, expected a sequence at line 1 column 140"#,
            ),
            // a broken literal inside an array
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":[1,tru],"experiment":[1,2]}}]}"#,
                r#"metricSetPairList[0].values.control[1]: expected ident at line 1 column 147"#,
            ),
            // bytes after the request
            (
                r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[]} x"#,
                "trailing characters at line 1 column 112",
            ),
            // a trailing comma, after a multi-byte character
            (
                r#"{"canaryConfig":{"metrics":[{"name":"é"}]},"scoreThresholds":{"pass":75,"marginal":50},"metricSetPairList":[{"name":"a","values":{"control":[1,2,],"experiment":[1,2]}}]}"#,
                r#"metricSetPairList[0].values.control: trailing comma at line 1 column 147"#,
            ),
        ];
        for (request, expected) in cases {
            let error = parse(request.as_bytes().to_vec(), NOW).unwrap_err();
            assert_eq!(error, expected, "{request}");
        }
    }

    const NOW: &str = "2026-12-07T00:00:00Z";

    #[test]
    fn the_last_copy_of_a_cohort_is_judged_and_other_keys_only_checked() {
        let request = r#"{"canaryConfig":{"metrics":[{"name":"a"}]},"scoreThresholds":{"pass":75,"marginal":50},
            "metricSetPairList":[{"name":"a","values":{"control":[9],"extra":[1,null],"control":[1,2],"experiment":[3,"NaN"]}}]}"#;
        let parsed = parse(request.as_bytes().to_vec(), NOW).unwrap();
        let series = &parsed.snapshot.metrics.unwrap().series.unwrap()["a"];
        assert_eq!(series.baseline, [Some(1.0), Some(2.0)]);
        assert_eq!(series.canary, [Some(3.0), None]);
    }

    #[test]
    fn a_bad_value_read_by_either_thread_is_named_by_its_place_in_the_body() {
        // 40 pairs of 1 000 values a cohort, one value a line, each pair's
        // and cohort's own: read by two threads, the bad value in the last
        // pair's canary.
        let value = |pair: usize, canary: bool, v: usize| -> f64 {
            (v % 7 + 10 * pair + if canary { 1000 } else { 0 }) as f64 + 0.25
        };
        let cohort = |pair: usize, canary: bool, bad: bool| -> String {
            let values: Vec<String> = (0..1000)
                .map(|v| match bad && v == 700 {
                    true => "\"x\"".to_string(),
                    false => format!("{}", value(pair, canary, v)),
                })
                .collect();
            format!("[\n{}\n]", values.join(",\n"))
        };
        let pairs: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "{{\"name\":\"m\",\"tags\":{{\"i\":\"{i}\"}},\"values\":{{\"control\":{},\"experiment\":{}}}}}",
                    cohort(i, false, false),
                    cohort(i, true, i == 39)
                )
            })
            .collect();
        let request = format!(
            "{{\"canaryConfig\":{{\"metrics\":[{{\"name\":\"m\"}}]}},\"scoreThresholds\":{{\"pass\":75,\"marginal\":50}},\n\"metricSetPairList\":[{}]}}",
            pairs.join(",\n")
        );
        assert!(request.len() > 256 * 1024, "the request must be split");
        let line = 1 + request
            .lines()
            .position(|l| l.starts_with("\"x\""))
            .unwrap();
        assert_eq!(
            parse(request.clone().into_bytes(), NOW).unwrap_err(),
            format!(
                "metricSetPairList[39].values.experiment[700]: \"x\" is not a number \
                 at line {line} column 3"
            )
        );
        // Without the bad value, every value is read.
        let good = request.replace("\"x\"", "1.5");
        let parsed = parse(good.into_bytes(), NOW).unwrap();
        let series = parsed.snapshot.metrics.unwrap().series.unwrap();
        assert_eq!(series.len(), 40);
        for i in 0..40 {
            let pair = &series[&format!("m{{i=\"{i}\"}}")];
            let expected = |canary| {
                (0..1000)
                    .map(|v| Some(value(i, canary, v)))
                    .collect::<Vec<_>>()
            };
            assert_eq!(pair.baseline, expected(false), "pair {i}");
            let mut canary = expected(true);
            if i == 39 {
                canary[700] = Some(1.5);
            }
            assert_eq!(pair.canary, canary, "pair {i}");
        }
    }
}
