//! The Prometheus source against a real Prometheus server (Debian package
//! `prometheus`, installed by `.ci/run`), backfilled with known series
//! around the present, so the server's own clock queries inside them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::adapters::{argo_metric, argo_outcome, flagger_payload, path_of, start_spinnaker};
use crate::server::{DEADLINE, Server, eventually};

/// Request rates (per second) of the backfilled series.
const STABLE_OK: f64 = 100.0;
const STABLE_ERRORS: f64 = 0.1;
const CANARY_OK: f64 = 10.0;
/// 0.5 errors a second against 10 requests: a 4.8% error rate.
const BAD_CANARY_ERRORS: f64 = 0.5;
const GOOD_CANARY_ERRORS: f64 = 0.005;
/// Orders per request, the same for every cohort.
const ORDERS_PER_REQUEST: f64 = 0.05;
const WINDOW_SECONDS: f64 = 600.0;

/// A real Prometheus on a loopback port, serving series backfilled before
/// it starts; killed when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is not installed: the Prometheus tests need a real Prometheus \
         (./test.sh installs it: apt-get install prometheus)"
    );
    name.to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Counter samples every 15 s from 25 minutes ago to 5 minutes ahead, so
/// an instant query at any moment of the test has a full window.
fn counter(out: &mut String, name: &str, labels: &str, per_second: f64, now: u64) {
    let start = now - 1500;
    for t in (start..=now + 300).step_by(15) {
        let value = per_second * (t - start) as f64;
        out.push_str(&format!("{name}{{{labels}}} {value} {t}\n"));
    }
}

/// OpenMetrics text for one service with a stable version and two
/// canaries, a good and a bad one.
fn series(now: u64) -> String {
    let mut text = String::new();
    let cohorts = [
        ("stable1", STABLE_OK, STABLE_ERRORS),
        ("canary-good", CANARY_OK, GOOD_CANARY_ERRORS),
        ("canary-bad", CANARY_OK, BAD_CANARY_ERRORS),
    ];
    let at = |hash: &str| {
        format!("service=\"checkout\",namespace=\"shop\",pod_template_hash=\"{hash}\"")
    };
    for (hash, ok, errors) in cohorts {
        counter(
            &mut text,
            "http_requests_total",
            &format!("{},code=\"200\"", at(hash)),
            ok,
            now,
        );
        counter(
            &mut text,
            "http_requests_total",
            &format!("{},code=\"500\"", at(hash)),
            errors,
            now,
        );
    }
    // 90% of requests within 100 ms, 99% within 200 ms: p95 is 155.6 ms.
    for (hash, ok, errors) in cohorts {
        let total = ok + errors;
        for (le, share) in [("0.1", 0.90), ("0.2", 0.99), ("+Inf", 1.0)] {
            let labels = format!("{},le=\"{le}\"", at(hash));
            counter(
                &mut text,
                "http_request_duration_seconds_bucket",
                &labels,
                total * share,
                now,
            );
        }
    }
    for (hash, ok, errors) in cohorts {
        counter(
            &mut text,
            "orders_total",
            &at(hash),
            (ok + errors) * ORDERS_PER_REQUEST,
            now,
        );
    }
    text.push_str("# EOF\n");
    text
}

fn start_prometheus() -> Prometheus {
    Prometheus::start(&series(unix_now()), 0)
}

impl Prometheus {
    /// Backfills `series` (OpenMetrics text, timestamps in seconds, each
    /// series in ascending time, ending with `# EOF`) into a fresh TSDB and
    /// starts Prometheus on it, on `port` (0: any free one).
    pub fn start(series: &str, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("series.om");
        std::fs::write(&data, series).unwrap();
        let tsdb = dir.path().join("tsdb");
        let backfill = Command::new(tool("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&data)
            .arg(&tsdb)
            .output()
            .expect("running promtool");
        assert!(
            backfill.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&backfill.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let mut child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting prometheus");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("msg=\"Listening on\"")
                    && let Some(address) = line.split("address=").nth(1)
                {
                    let _ = tx.send(address.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let address = rx
            .recv_timeout(DEADLINE)
            .expect("Prometheus's 'Listening on' log line");
        let url = format!("http://{address}");
        eventually("Prometheus to be ready", || {
            reqwest::blocking::get(format!("{url}/-/ready")).is_ok_and(|r| r.status() == 200)
        });
        Prometheus {
            child,
            url,
            _dir: dir,
        }
    }
}

/// A gate whose canary evidence comes from `url`, the way
/// `integrations/gate.toml` writes its queries.
fn gate_with_source(dir: &Path, url: &str) -> PathBuf {
    let gate = r#"name = "checkout-production"
[rollout]
stages = [5, 10, 25, 50, 100]
min_stage_minutes = 15
[rollout.abort]
max_error_rate = 0.01
max_error_rate_ratio = 1.5
max_latency_ms = { p95 = 400 }
max_business_drop = 0.10
min_requests = 500

[[policy]]
name = "canary"
module = "builtin:canary"
phases = ["promotion", "abort"]

[sources.prometheus]
url = "PROMETHEUS_URL"
timeout_ms = 2000
window_seconds = 600
[sources.prometheus.queries]
requests = 'sum(increase(http_requests_total{service="{service}",namespace="{namespace}",pod_template_hash="{hash}"}[{window}]))'
errors = 'sum(increase(http_requests_total{service="{service}",namespace="{namespace}",pod_template_hash="{hash}",code=~"5.."}[{window}]))'
latency_p95_ms = '1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{service="{service}",namespace="{namespace}",pod_template_hash="{hash}"}[{window}])))'
[sources.prometheus.business]
orders = 'sum(increase(orders_total{service="{service}",namespace="{namespace}",pod_template_hash="{hash}"}[{window}]))'
"#
    .replace("PROMETHEUS_URL", url);
    let path = dir.join("gate.toml");
    std::fs::write(&path, gate).unwrap();
    path
}

/// A server whose gate takes its evidence from `url`, with a decision log.
struct Sourced {
    dir: tempfile::TempDir,
    gate: PathBuf,
    log: PathBuf,
    server: Server,
}

fn serve_with_source(url: &str) -> Sourced {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate_with_source(dir.path(), url);
    let log = dir.path().join("decisions.jsonl");
    let server = Server::start(&gate, &["--decision-log", log.to_str().unwrap()]);
    Sourced {
        dir,
        gate,
        log,
        server,
    }
}

/// The arguments the shipped abort template takes, for the checkout
/// service's stable version and `canary`.
fn argo_args(canary: &str) -> [(&str, &str); 5] {
    [
        ("service", "checkout"),
        ("namespace", "shop"),
        ("environment", "production"),
        ("stable_hash", "stable1"),
        ("canary_hash", canary),
    ]
}

/// The body Argo sends: the shipped template's `jsonBody` with its
/// `{{args.NAME}}` filled in.
fn argo_body(metric: &serde_yaml::Value, args: &[(&str, &str)]) -> Value {
    let template: Value = serde_json::to_value(&metric["provider"]["web"]["jsonBody"]).unwrap();
    let mut text = template.to_string();
    for (name, value) in args {
        text = text.replace(&format!("{{{{args.{name}}}}}"), value);
    }
    assert!(
        !text.contains("{{args."),
        "an argument is left unfilled: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

fn close(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {actual}"));
    let tolerance = expected.abs() * 0.03;
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within 3% of {expected}"
    );
}

/// The last snapshot the server recorded in its decision log.
fn last_snapshot(log: &Path) -> Value {
    last_record(log)["snapshot"].clone()
}

/// The last decision record in the server's decision log.
fn last_record(log: &Path) -> Value {
    let text = std::fs::read_to_string(log).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn argo_abort_analysis_reads_canary_evidence_from_prometheus() {
    let prometheus = start_prometheus();
    let Sourced {
        dir: _dir,
        log,
        server,
        ..
    } = serve_with_source(&prometheus.url);
    let metric = argo_metric("shipgate-abort");

    let (status, answer) = server.post(
        "/v1/argo/abort",
        &argo_body(&metric, &argo_args("canary-bad")),
    );
    assert_eq!(status, 200);
    assert_eq!(argo_outcome(&metric, &answer), "Failed", "{answer}");
    let error_rate = &answer["policies"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "error-rate")
        .unwrap()["decision"];
    assert_eq!(error_rate, "rollback");

    let snapshot = last_snapshot(&log);
    let metrics = &snapshot["metrics"];
    assert_eq!(metrics["window_seconds"], 600);
    close(
        &metrics["canary"]["requests"],
        (CANARY_OK + BAD_CANARY_ERRORS) * WINDOW_SECONDS,
        "canary requests",
    );
    close(
        &metrics["canary"]["errors"],
        BAD_CANARY_ERRORS * WINDOW_SECONDS,
        "canary errors",
    );
    close(
        &metrics["baseline"]["requests"],
        (STABLE_OK + STABLE_ERRORS) * WINDOW_SECONDS,
        "baseline requests",
    );
    close(
        &metrics["baseline"]["latency_ms"]["p95"],
        155.56,
        "baseline p95",
    );
    close(
        &metrics["canary"]["business"]["orders"],
        (CANARY_OK + BAD_CANARY_ERRORS) * ORDERS_PER_REQUEST * WINDOW_SECONDS,
        "canary orders",
    );
    assert_eq!(snapshot["deployment"]["id"], "shop/checkout@canary-bad");

    let (status, answer) = server.post(
        "/v1/argo/abort",
        &argo_body(&metric, &argo_args("canary-good")),
    );
    assert_eq!(status, 200);
    assert_eq!(argo_outcome(&metric, &answer), "Successful", "{answer}");
}

#[test]
fn a_query_without_series_is_missing_evidence_that_names_the_query() {
    let prometheus = start_prometheus();
    let Sourced {
        dir: _dir,
        gate,
        log,
        server,
    } = serve_with_source(&prometheus.url);
    let body = json!({"phase": "abort", "service": "checkout", "namespace": "shop",
                      "stable_hash": "stable1", "canary_hash": "never-deployed"});
    let (status, answer) = server.post("/v1/evaluate", &body);
    assert_eq!(status, 200);
    assert_eq!(answer["decision"], "deny", "{answer}");
    let problem = answer["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|problem| problem["what"] == "metrics.canary.requests")
        .expect("the canary's requests, named as missing");
    assert_eq!(problem["source"], "prometheus", "{problem}");
    assert_eq!(problem["why"], "no series", "{problem}");
    assert!(
        problem["query"]
            .as_str()
            .unwrap()
            .contains("pod_template_hash=\"never-deployed\""),
        "{problem}"
    );
    // Missing evidence is not a policy; the policy, for its part, says what
    // it could not check.
    assert_eq!(answer["policies"][0]["name"], "canary", "{answer}");
    assert_ne!(answer["policies"][0]["decision"], "allow");
    // The recorded decision replays: the missing evidence is part of its input.
    crate::support::shipgate()
        .args(["replay", "--gate"])
        .arg(&gate)
        .arg(&log)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "replayed 1 decision(s): 1 identical, 0 differ",
        ));
}

#[test]
fn an_unreachable_prometheus_denies_and_says_so() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Sourced {
        dir: _dir, server, ..
    } = serve_with_source(&format!("http://127.0.0.1:{port}"));
    let body = json!({"phase": "abort", "service": "checkout", "namespace": "shop",
                      "stable_hash": "stable1", "canary_hash": "canary-good"});
    let (status, answer) = server.post("/v1/evaluate", &body);
    assert_eq!(status, 200);
    assert_eq!(answer["decision"], "deny");
    let unreachable = format!("Prometheus at http://127.0.0.1:{port} is unreachable");
    assert!(
        answer["summary"].as_str().unwrap().contains(&unreachable),
        "{answer}"
    );
    let missing = "shipgate_missing_evidence_total{phase=\"abort\"}";
    assert_eq!(server.metric(missing), 1.0);
}

/// After a blue-green switch the previous version serves nothing: its
/// baseline is its window before the switch, `baseline_offset_seconds` ago.
/// The series here start 25 minutes ago, so a baseline 30 minutes back has
/// none, while the canary, measured now, has its own.
#[test]
fn a_baseline_offset_measures_the_baseline_in_the_past() {
    let prometheus = start_prometheus();
    let Sourced {
        dir: _dir,
        log,
        server,
        ..
    } = serve_with_source(&prometheus.url);
    let target = |offset: &str| {
        json!({"phase": "abort", "service": "checkout", "namespace": "shop",
               "stable_hash": "stable1", "canary_hash": "canary-good",
               "baseline_offset_seconds": offset})
    };
    let (status, answer) = server.post("/v1/evaluate", &target("1800"));
    assert_eq!(status, 200);
    let missing: Vec<&str> = answer["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["what"].as_str().unwrap())
        .collect();
    assert!(missing.contains(&"metrics.baseline.requests"), "{answer}");
    assert!(
        missing
            .iter()
            .all(|what| what.starts_with("metrics.baseline.")),
        "{missing:?}"
    );
    // Five minutes back the series are there, and so is every value.
    let (_, answer) = server.post("/v1/evaluate", &target("300"));
    assert_eq!(answer["decision"], "allow", "{answer}");
    let snapshot = last_snapshot(&log);
    close(
        &snapshot["metrics"]["baseline"]["requests"],
        (STABLE_OK + STABLE_ERRORS) * WINDOW_SECONDS,
        "baseline requests",
    );
}

/// Two counters scraped at different instants can give more errors than
/// requests, and exactly for the worst canaries. That is no reason to
/// answer 502 (Spinnaker would retry to its timeout, Argo error, Flagger's
/// rollback hook never fire): the field is missing evidence that names it,
/// and the decision is made.
#[test]
fn evidence_a_snapshot_refuses_is_missing_evidence_not_a_bad_gateway() {
    let prometheus = start_prometheus();
    let Sourced {
        dir: _dir,
        gate,
        server,
        ..
    } = serve_with_source(&prometheus.url);
    // The errors query as a skewed scrape would give it: far above requests.
    let text = std::fs::read_to_string(&gate).unwrap();
    let skewed = text.replacen(
        "code=~\"5..\"}[{window}]))'",
        "code=~\"5..\"}[{window}])) * 100'",
        1,
    );
    assert_ne!(skewed, text);
    std::fs::write(&gate, skewed).unwrap();
    server.signal("HUP");
    server.await_logged("gate reloaded");
    let body = json!({"phase": "abort", "service": "checkout", "namespace": "shop",
                      "stable_hash": "stable1", "canary_hash": "canary-bad"});
    let (status, answer) = server.post("/v1/evaluate", &body);
    assert_eq!(status, 200, "{answer}");
    let problem = answer["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|problem| problem["what"] == "metrics.canary.errors")
        .expect("the refused field, named");
    assert_eq!(problem["source"], "prometheus", "{problem}");
    assert!(
        problem["why"]
            .as_str()
            .unwrap()
            .contains("errors cannot exceed requests"),
        "{problem}"
    );
    assert_eq!(answer["decision"], "deny");
}

/// A gate whose `builtin:judge` (`judge`) judges one critical metric
/// (`metric`, a regression being an increase) from a Prometheus at `url`
/// over a 600 s window, with the source's `section` for that metric.
fn judge_gate(dir: &Path, url: &str, (judge, metric): (&str, &str), section: &str) -> PathBuf {
    let gate = dir.join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            r#"name = "checkout-judge"
[[policy]]
name = "judge"
module = "builtin:judge"
phases = ["promotion", "abort"]
[policy.config]
judge = "{judge}"
[[policy.config.metrics]]
name = "{metric}"
direction = "increase"
critical = true

[sources.prometheus]
url = "{url}"
window_seconds = 600
{section}
"#
        ),
    )
    .unwrap();
    gate
}

/// `builtin:judge` fed by range queries: the gate alone turns Argo's
/// ordinary abort analysis into Kayenta's judgement over one-minute series.
#[test]
fn the_judge_reads_time_series_from_prometheus_through_argo() {
    let prometheus = start_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let selector = r#"service="{service}",namespace="{namespace}",pod_template_hash="{hash}""#;
    let gate = judge_gate(
        dir.path(),
        &prometheus.url,
        ("NetflixACAJudge-v1.0", "error_rate"),
        &format!(
            r#"[sources.prometheus.series.error_rate]
query = '(sum(rate(http_requests_total{{{selector},code=~"5.."}}[{{step}}])) or vector(0)) / sum(rate(http_requests_total{{{selector}}}[{{step}}]))'
step_seconds = 60
since = "window""#
        ),
    );
    let log = dir.path().join("decisions.jsonl");
    let server = Server::start(&gate, &["--decision-log", log.to_str().unwrap()]);
    let metric = argo_metric("shipgate-abort");

    let (status, answer) = server.post(
        "/v1/argo/abort",
        &argo_body(&metric, &argo_args("canary-bad")),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(argo_outcome(&metric, &answer), "Failed", "{answer}");
    let finding = &answer["policies"][0]["findings"][0];
    assert_eq!(finding["check"], "error_rate", "{answer}");
    assert_eq!(finding["observed"], "High", "{answer}");
    let series = &last_snapshot(&log)["metrics"]["series"]["error_rate"];
    assert_eq!(series["step_seconds"], 60.0, "{series}");
    let points = |cohort: &str| series[cohort].as_array().unwrap().clone();
    assert_eq!(
        points("canary").len(),
        10,
        "ten one-minute steps in 600 s: {series}"
    );
    assert_eq!(points("baseline").len(), 10);
    for value in points("canary") {
        close(
            &value,
            BAD_CANARY_ERRORS / (CANARY_OK + BAD_CANARY_ERRORS),
            "canary error rate",
        );
    }
    for value in points("baseline") {
        close(
            &value,
            STABLE_ERRORS / (STABLE_OK + STABLE_ERRORS),
            "baseline error rate",
        );
    }

    let (_, answer) = server.post(
        "/v1/argo/abort",
        &argo_body(&metric, &argo_args("canary-good")),
    );
    assert_eq!(argo_outcome(&metric, &answer), "Successful", "{answer}");

    // A canary Prometheus has never seen: missing evidence, named, and a hold.
    let (_, answer) = server.post(
        "/v1/argo/abort",
        &argo_body(&metric, &argo_args("never-deployed")),
    );
    let problem = &answer["evidence"][0];
    assert_eq!(problem["what"], "metrics.series.error_rate", "{answer}");
    assert_eq!(problem["why"], "no series", "{answer}");
    assert!(
        problem["query"]
            .as_str()
            .unwrap()
            .contains("never-deployed"),
        "{answer}"
    );
    assert_eq!(answer["decision"], "deny", "{answer}");
}

/// The sequential judge's count test fed by instant queries over the
/// stage, reached through Spinnaker's webhook stage and Flagger's rollback
/// hook with nothing but the gate: errors out of requests per cohort.
#[test]
fn the_sequential_judge_counts_errors_from_prometheus_through_spinnaker_and_flagger() {
    let prometheus = start_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let selector = r#"service="{service}",pod_template_hash="{hash}""#;
    let gate = judge_gate(
        dir.path(),
        &prometheus.url,
        ("shipgate-sequential-v1", "errors"),
        &format!(
            r#"[sources.prometheus.counts.errors]
events = 'sum(increase(http_requests_total{{{selector},code=~"5.."}}[{{range}}])) or vector(0)'
exposures = 'sum(increase(http_requests_total{{{selector}}}[{{range}}]))'
since = "window""#
        ),
    );
    let log = dir.path().join("decisions.jsonl");
    let server = Server::start(&gate, &["--decision-log", log.to_str().unwrap()]);
    let target = |canary: &str| {
        json!({"service": "checkout", "stable_hash": "stable1", "canary_hash": canary,
               "weight": "10"})
    };

    let location = start_spinnaker(&server, "abort", &target("canary-bad"));
    let (status, body) = server.get(path_of(&location));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("TERMINAL")),
        "{body}"
    );
    let counts = &last_snapshot(&log)["metrics"]["counts"]["errors"];
    // 600 s of 0.5 errors and 10 successes a second against 0.1 and 100:
    // whole counts, as Prometheus's increase() extrapolates them.
    close(
        &counts["canary"]["events"],
        0.5 * WINDOW_SECONDS,
        "canary errors",
    );
    close(
        &counts["canary"]["exposures"],
        10.5 * WINDOW_SECONDS,
        "canary requests",
    );
    close(
        &counts["baseline"]["events"],
        0.1 * WINDOW_SECONDS,
        "baseline errors",
    );
    for cohort in ["canary", "baseline"] {
        for count in ["events", "exposures"] {
            let value = counts[cohort][count].as_f64().unwrap();
            assert_eq!(value, value.round(), "{counts}");
        }
    }
    let finding = &last_record(&log)["policies"][0]["findings"][0];
    assert_eq!(finding["check"], "errors", "{finding}");
    assert_eq!(finding["decision"], "rollback", "{finding}");

    // Flagger's rollback hook: 200 rolls back now, 403 lets the canary go on.
    let (status, body) = server.post(
        "/v1/flagger/rollback",
        &flagger_payload(target("canary-bad")),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(
        "/v1/flagger/rollback",
        &flagger_payload(target("canary-good")),
    );
    assert_eq!(status, 403, "{body}");
}
