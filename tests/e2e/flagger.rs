//! A whole Flagger canary, as Flagger's scheduler runs it
//! (fluxcd/flagger `pkg/controller/scheduler.go`, `advanceCanary`), against
//! the shipped `integrations/flagger/canary.yaml` and `flagger/gate.toml`,
//! with the metrics in a real Prometheus.
//!
//! Each analysis iteration of a progressing canary calls, in order: the
//! `rollback` hook (2xx: roll back now); at weight 0 the `pre-rollout`
//! hooks, else the `rollout` hooks (non-2xx: a failed check); then, while a
//! next step weight exists, `confirm-traffic-increase` (non-2xx: hold), and
//! the increase, or at the last step weight `confirm-promotion` (non-2xx:
//! hold). Flagger records `flagger_canary_weight{workload,namespace}` before
//! the hooks run. Only 200-202 pass (`callWebhook`: `StatusCode > 202` is an
//! error).
//!
//! Time is simulated: before each iteration the test writes the canary's
//! whole history (weights and traffic) so that it ends at the real present,
//! and restarts Prometheus on it. Iterations between two shown here would
//! answer as the earlier one (a stage younger than 15 minutes holds), so the
//! walk shows one young and one old iteration per stage.

use serde_json::{Value, json};

use crate::prometheus::{Prometheus, unix_now};
use crate::server::Server;
use crate::support::{repo, yaml_documents};

/// Requests a second to the service, split between primary and canary by
/// the canary's weight.
const TOTAL_RATE: f64 = 100.0;
const GOOD_ERROR_SHARE: f64 = 0.001;
const BAD_ERROR_SHARE: f64 = 0.05;
const PRIMARY_POD: &str = "podinfo-primary-7d9f8b6c5-x2k4p";
const CANARY_POD: &str = "podinfo-6b8c9d7f4-q8r2m";

/// The canary as Flagger holds it, and what it has been through.
struct Canary {
    /// Simulated minutes since the analysis started.
    clock: u64,
    weight: u32,
    /// (minute, weight) of every change, the first at minute 0.
    weights: Vec<(u64, u32)>,
    /// From this minute on, the canary fails 5 % of its requests.
    goes_bad_at: Option<u64>,
    failed_checks: u32,
    step_weights: Vec<u32>,
    threshold: u32,
    hooks: Vec<Value>,
}

/// What an iteration ended in.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Hooks passed as far as they went; the weight may have changed.
    Progressing,
    /// `confirm-traffic-increase` or `confirm-promotion` held.
    Held,
    /// `confirm-promotion` passed: Flagger promotes the canary.
    Promoted,
    /// The `rollback` hook answered 2xx, or failed checks hit the threshold.
    RolledBack,
}

impl Canary {
    fn from_shipped() -> Canary {
        let canary = yaml_documents("integrations/flagger/canary.yaml")
            .into_iter()
            .find(|d| d["kind"] == "Canary")
            .expect("a Canary");
        let analysis = &canary["spec"]["analysis"];
        let step_weights = analysis["stepWeights"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap() as u32)
            .collect();
        Canary {
            clock: 0,
            weight: 0,
            weights: vec![(0, 0)],
            goes_bad_at: None,
            failed_checks: 0,
            step_weights,
            threshold: analysis["threshold"].as_u64().unwrap() as u32,
            hooks: serde_json::to_value(&analysis["webhooks"])
                .unwrap()
                .as_array()
                .unwrap()
                .clone(),
        }
    }

    fn max_weight(&self) -> u32 {
        *self.step_weights.last().unwrap()
    }

    /// `nextStepWeight` for step weights: the first step from 0, the
    /// difference to the next step, the rest to 100 at the last.
    fn next_step_weight(&self) -> u32 {
        if self.weight == 0 {
            return self.step_weights[0];
        }
        let next = self.step_weights.iter().find(|w| **w > self.weight);
        next.map_or(100 - self.weight, |w| w - self.weight)
    }

    fn weight_at(&self, minute: u64) -> u32 {
        self.weights
            .iter()
            .rev()
            .find(|(at, _)| *at <= minute)
            .map_or(0, |(_, w)| *w)
    }

    /// The canary's history as OpenMetrics, ending at the real present.
    fn series(&self) -> String {
        let now = unix_now();
        let start_minute = self.clock as i64 - 60;
        let mut samples: Vec<(String, Vec<(u64, f64)>)> = Vec::new();
        let mut add =
            |name: String, t: u64, value: f64| match samples.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push((t, value)),
                None => samples.push((name, vec![(t, value)])),
            };
        // Cumulative counters per pod, integrated every 15 s.
        let mut totals = [[0.0f64; 2]; 2];
        let mut at = start_minute * 60;
        while at <= (self.clock as i64 + 5) * 60 {
            let minute = (at.max(0) / 60) as u64;
            let weight = if at < 0 { 0 } else { self.weight_at(minute) } as f64;
            let real = (now as i64 + at - self.clock as i64 * 60) as u64;
            let bad = self.goes_bad_at.is_some_and(|m| at >= 0 && minute >= m);
            let pods = [
                (
                    PRIMARY_POD,
                    TOTAL_RATE * (100.0 - weight) / 100.0,
                    GOOD_ERROR_SHARE,
                ),
                (
                    CANARY_POD,
                    TOTAL_RATE * weight / 100.0,
                    if bad {
                        BAD_ERROR_SHARE
                    } else {
                        GOOD_ERROR_SHARE
                    },
                ),
            ];
            for (i, (pod, rate, error_share)) in pods.into_iter().enumerate() {
                totals[i][0] += rate * (1.0 - error_share) * 15.0;
                totals[i][1] += rate * error_share * 15.0;
                let labels = format!("namespace=\"test\",pod=\"{pod}\"");
                add(
                    format!("http_requests_total{{{labels},code=\"200\"}}"),
                    real,
                    totals[i][0],
                );
                add(
                    format!("http_requests_total{{{labels},code=\"500\"}}"),
                    real,
                    totals[i][1],
                );
                let all = totals[i][0] + totals[i][1];
                for (le, share) in [("0.05", 0.5), ("0.1", 0.9), ("0.2", 0.99), ("+Inf", 1.0)] {
                    add(
                        format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
                        real,
                        all * share,
                    );
                }
                add(format!("orders_total{{{labels}}}"), real, all * 0.05);
            }
            for (workload, value) in [("podinfo", weight), ("podinfo-primary", 100.0 - weight)] {
                add(
                    format!("flagger_canary_weight{{namespace=\"test\",workload=\"{workload}\"}}"),
                    real,
                    value,
                );
            }
            at += 15;
        }
        let mut text = String::new();
        for (name, points) in samples {
            for (t, value) in points {
                text.push_str(&format!("{name} {value} {t}\n"));
            }
        }
        text.push_str("# EOF\n");
        text
    }

    /// Calls every webhook of `kind` as `CallWebhook` does; all must pass.
    fn call(&self, server: &Server, kind: &str, phase: &str) -> bool {
        let mut passed = true;
        for hook in self.hooks.iter().filter(|h| h["type"] == kind) {
            let path = hook["url"]
                .as_str()
                .unwrap()
                .split_once(".svc")
                .expect("the shipped URL names the Service")
                .1;
            let mut payload = json!({
                "name": "podinfo",
                "namespace": "test",
                "phase": phase,
                "checksum": "5f9c7b7d4",
            });
            if !hook["metadata"].is_null() {
                payload["metadata"] = hook["metadata"].clone();
            }
            let (status, body) = server.post(path, &payload);
            assert!(
                [200, 202, 403].contains(&status),
                "{kind} answered {status}: {body}"
            );
            passed &= (200..=202).contains(&status);
        }
        passed
    }

    /// One iteration of `advanceCanary` for a progressing canary.
    fn iterate(&mut self, server: &Server) -> Outcome {
        if self.call(server, "rollback", "Progressing") || self.failed_checks >= self.threshold {
            return Outcome::RolledBack;
        }
        let checks = if self.weight == 0 {
            "pre-rollout"
        } else {
            "rollout"
        };
        if !self.call(server, checks, "Progressing") {
            self.failed_checks += 1;
            return Outcome::Progressing;
        }
        if !self.call(server, "confirm-traffic-increase", "Progressing") {
            return Outcome::Held;
        }
        if self.weight < self.max_weight() {
            self.weight += self.next_step_weight();
            self.weights.push((self.clock, self.weight));
            return Outcome::Progressing;
        }
        if !self.call(server, "confirm-promotion", "Progressing") {
            return Outcome::Held;
        }
        Outcome::Promoted
    }
}

/// The shipped Flagger gate, reading from `prometheus_url`.
fn flagger_gate(dir: &std::path::Path, prometheus_url: &str) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("integrations/flagger/gate.toml")).unwrap();
    let gate = shipped.replace("http://prometheus.monitoring.svc:9090", prometheus_url);
    assert_ne!(gate, shipped, "the shipped gate names its Prometheus");
    let path = dir.join("gate.toml");
    std::fs::write(&path, gate).unwrap();
    path
}

/// A free loopback port for Prometheus to come back on after each restart.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs iterations at the given minutes, restarting Prometheus on the
/// canary's history before each, and returns each outcome with the weight
/// after it.
fn walk(canary: &mut Canary, minutes: &[u64]) -> Vec<(u64, Outcome, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gate = flagger_gate(dir.path(), &format!("http://127.0.0.1:{port}"));
    let server = Server::start(&gate, &[]);
    let mut outcomes = Vec::new();
    for &minute in minutes {
        canary.clock = minute;
        let prometheus = Prometheus::start(&canary.series(), port);
        let outcome = canary.iterate(&server);
        drop(prometheus);
        let done = matches!(outcome, Outcome::Promoted | Outcome::RolledBack);
        outcomes.push((minute, outcome, canary.weight));
        if done {
            break;
        }
    }
    outcomes
}

#[test]
fn a_healthy_canary_walks_every_stage_to_promotion() {
    let mut canary = Canary::from_shipped();
    assert_eq!(canary.step_weights, [5, 10, 25, 50]);
    // Per stage, an iteration 2 minutes in (too young: hold) and one 18
    // minutes in (15 minutes observed, as the stage start Flagger's metric
    // gives can be 2 minutes late).
    let outcomes = walk(&mut canary, &[0, 2, 18, 20, 36, 38, 54, 56, 72]);
    use Outcome::*;
    assert_eq!(
        outcomes,
        [
            (0, Progressing, 5), // 0 % → 5 %: nothing to judge yet
            (2, Held, 5),
            (18, Progressing, 10),
            (20, Held, 10),
            (36, Progressing, 25),
            (38, Held, 25),
            (54, Progressing, 50),
            (56, Held, 50),
            (72, Promoted, 50), // confirm-traffic-increase, then confirm-promotion
        ]
    );
    assert_eq!(canary.failed_checks, 0);
}

#[test]
fn a_canary_that_goes_bad_is_rolled_back_by_the_rollback_hook() {
    let mut canary = Canary::from_shipped();
    canary.goes_bad_at = Some(37); // a minute into the 25 % stage
    let outcomes = walk(&mut canary, &[0, 18, 36, 38]);
    use Outcome::*;
    assert_eq!(
        outcomes,
        [
            (0, Progressing, 5),
            (18, Progressing, 10),
            (36, Progressing, 25),
            (38, RolledBack, 25),
        ]
    );
}

/// The opt-in preflight hooks (integrations/README.md, "Preflight through
/// Flagger"): with a facts source, `confirm-rollout` and `pre-rollout` judge
/// the whole checklist from the facts file the release pipeline wrote.
#[test]
fn preflight_hooks_read_the_release_facts_the_pipeline_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let facts_dir = dir.path().join("facts/test");
    std::fs::create_dir_all(&facts_dir).unwrap();
    let mut facts = crate::server::release_facts();
    let facts_file = facts_dir.join("podinfo.json");
    std::fs::write(&facts_file, facts.to_string()).unwrap();
    // Prometheus is not asked before a rollout: an unreachable one is fine.
    let gate = flagger_gate(dir.path(), &format!("http://127.0.0.1:{}", free_port()));
    let mut text = std::fs::read_to_string(&gate).unwrap();
    text.push_str(&format!(
        "\n[sources.facts]\npath = \"{}/facts/{{namespace}}/{{service}}.json\"\n",
        dir.path().display()
    ));
    std::fs::write(&gate, text).unwrap();
    let server = Server::start(&gate, &[]);
    let payload = json!({"name": "podinfo", "namespace": "test", "phase": "Initialized",
                         "checksum": "5f9c7b7d4", "metadata": {"target": "podinfo"}});
    for hook in ["confirm-rollout", "pre-rollout"] {
        let (status, body) = server.post(&format!("/v1/flagger/{hook}"), &payload);
        assert_eq!(status, 200, "{hook}: {body}");
        assert_eq!(body["decision"], "allow");
    }
    facts.as_object_mut().unwrap().remove("ci");
    std::fs::write(&facts_file, facts.to_string()).unwrap();
    let (status, body) = server.post("/v1/flagger/confirm-rollout", &payload);
    assert_eq!(status, 403, "{body}");
    assert!(body["summary"].as_str().unwrap().contains("ci"), "{body}");
    std::fs::remove_file(&facts_file).unwrap();
    let (status, body) = server.post("/v1/flagger/confirm-rollout", &payload);
    assert_eq!(status, 403);
    let evidence = &body["evidence"][0];
    assert_eq!(evidence["source"], "facts", "{body}");
    assert_eq!(evidence["why"], "no such file", "{body}");
}

/// The queries a stand-in Prometheus was asked, answering every one with
/// `flagger_canary_weight` at 0 and any other value at 1.
#[derive(Default)]
struct AskedQueries(std::sync::Mutex<Vec<String>>);

async fn answer_query(
    axum::extract::State(asked): axum::extract::State<std::sync::Arc<AskedQueries>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> axum::Json<Value> {
    let url =
        reqwest::Url::parse(&format!("http://prometheus/?{}", raw.unwrap_or_default())).unwrap();
    let query = url
        .query_pairs()
        .find(|(key, _)| key == "query")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let value = if query.starts_with("max(flagger_canary_weight") {
        "0"
    } else {
        "1"
    };
    asked.0.lock().unwrap().push(query);
    axum::Json(json!({"status": "success", "data": {"resultType": "vector",
        "result": [{"metric": {}, "value": [unix_now(), value]}]}}))
}

/// Before the canary gets traffic Flagger still calls the rollback hook at
/// every iteration: the weight is asked, and at 0 % the stage's start (a
/// query over a day of the weight's history) is not.
#[test]
fn at_weight_zero_the_stage_start_is_not_asked() {
    let asked = std::sync::Arc::new(AskedQueries::default());
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(answer_query))
        .with_state(asked.clone());
    let address = crate::server::serve_on_loopback(app);
    let dir = tempfile::tempdir().unwrap();
    let gate = flagger_gate(dir.path(), &format!("http://{address}"));
    let server = Server::start(&gate, &[]);
    let (status, body) = server.post(
        "/v1/flagger/rollback",
        &json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
                "checksum": "5f9c7b7d4"}),
    );
    assert_eq!(status, 403, "no rollback before any traffic: {body}");
    let asked = asked.0.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|q| q.starts_with("max(flagger_canary_weight")),
        "the weight is asked: {asked:?}"
    );
    assert!(
        !asked
            .iter()
            .any(|q| q.contains("changes(flagger_canary_weight")),
        "the stage start is not: {asked:?}"
    );
}
