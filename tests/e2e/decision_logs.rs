//! Decision logs off the pod: `--decision-log -` (standard output, for the
//! cluster's log pipeline) and `--decision-log-url` (gzipped batches to a
//! collector), against a real collector on a loopback port — one that
//! takes everything, one that is down, one that is stuck — and `replay`
//! over what each wrote.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::server::{Server, eventually};
use crate::support::shipgate;

/// What the collector received, and whether it answers yet.
#[derive(Default)]
struct Collector {
    /// Each request's body, as sent (gzip).
    bodies: Mutex<Vec<Vec<u8>>>,
    /// Requests whose headers were not gzipped JSON lines.
    bad_requests: Mutex<Vec<String>>,
    /// While set, requests wait (a collector that has stopped answering).
    stuck: tokio::sync::watch::Sender<bool>,
}

impl Collector {
    fn records(&self) -> Vec<Value> {
        let bodies = self.bodies.lock().unwrap();
        let mut records = Vec::new();
        for body in bodies.iter() {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .expect("a gzipped batch");
            records.extend(
                text.lines()
                    .map(|line| serde_json::from_str::<Value>(line).unwrap()),
            );
        }
        records
    }
}

async fn collect(
    State(collector): State<Arc<Collector>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut stuck = collector.stuck.subscribe();
    let _ = stuck.wait_for(|stuck| !stuck).await;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("content-encoding") != "gzip" || header("content-type") != "application/x-ndjson" {
        collector
            .bad_requests
            .lock()
            .unwrap()
            .push(format!("{headers:?}"));
        return StatusCode::BAD_REQUEST;
    }
    collector.bodies.lock().unwrap().push(body.to_vec());
    StatusCode::NO_CONTENT
}

/// A collector on a loopback port; its URL.
fn collector(state: Arc<Collector>) -> String {
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(collect))
        .with_state(state);
    format!("http://{}/ingest", crate::server::serve_on_loopback(app))
}

fn decide(server: &Server, snapshot: &str) -> Value {
    let (status, answer) = server.evaluate(snapshot);
    assert_eq!(status, 200, "{answer}");
    answer
}

fn gate() -> std::path::PathBuf {
    crate::support::example("gate.toml")
}

/// `shipgate replay LOG` and its report.
fn replay(log: &std::path::Path) -> String {
    let output = shipgate()
        .arg("replay")
        .arg(log)
        .arg("--gate")
        .arg(gate())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[test]
fn decisions_go_to_standard_output_as_json_lines_that_replay() {
    let server = Server::start(&gate(), &["--decision-log", "-"]);
    let answers = [
        decide(&server, "abort-rollback"),
        decide(&server, "promotion-hold"),
    ];
    eventually("two records on stdout", || server.stdout_lines().len() == 2);
    let lines = server.stdout_lines();
    for (line, answer) in lines.iter().zip(&answers) {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["decision_id"], answer["decision_id"]);
        assert_eq!(record["decision"], answer["decision"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pod-stdout.jsonl");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    assert!(replay(&log).contains("replayed 2 decision(s): 2 identical, 0 differ"));
}

#[test]
fn a_collector_gets_gzipped_batches_that_replay_and_findings_are_counted() {
    let state = Arc::new(Collector::default());
    let url = collector(state.clone());
    let server = Server::start(&gate(), &["--decision-log-url", &url]);
    let ids: Vec<Value> = ["abort-rollback", "abort-allow", "promotion-hold"]
        .iter()
        .map(|s| decide(&server, s)["decision_id"].clone())
        .collect();
    eventually("three records at the collector", || {
        state.records().len() == 3
    });
    let received: Vec<Value> = state
        .records()
        .iter()
        .map(|r| r["decision_id"].clone())
        .collect();
    assert_eq!(received, ids);
    assert!(state.bad_requests.lock().unwrap().is_empty());
    eventually("three records counted as shipped", || {
        server.metric("shipgate_decision_log_shipped_total") == 3.0
    });
    assert_eq!(
        server.metric(
            r#"shipgate_findings_total{policy="canary",check="error-rate",decision="rollback"}"#
        ),
        1.0,
        "{}",
        server.metrics()
    );

    // What the collector stored, as it came (one gzip member per batch).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("collected.jsonl.gz");
    std::fs::write(&log, state.bodies.lock().unwrap().concat()).unwrap();
    assert!(replay(&log).contains("replayed 3 decision(s): 3 identical, 0 differ"));
}

#[test]
fn a_collector_that_is_down_costs_no_decision_and_its_records_are_counted() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let server = Server::start(&gate(), &["--decision-log-url", &url]);
    decide(&server, "abort-rollback");
    decide(&server, "abort-allow");
    let dropped = r#"shipgate_decision_log_dropped_total{reason="undeliverable"}"#;
    eventually("the batch given up after its retries", || {
        server.metric(dropped) == 2.0
    });
    assert_eq!(server.metric("shipgate_decision_log_shipped_total"), 0.0);
    // The line is written (in a batch) before the counter moves: wait for it.
    let logged = || -> u64 {
        server
            .logged_with_prefix("decision log batch dropped: ")
            .iter()
            .map(|e| e["records"].as_u64().unwrap())
            .sum()
    };
    eventually("the dropped records' log lines", || logged() == 2);
}

#[test]
fn a_stuck_collector_costs_no_decision_and_a_full_queue_drops_what_does_not_fit() {
    let state = Arc::new(Collector::default());
    state.stuck.send_replace(true);
    let url = collector(state.clone());
    // Room for three records (of about 3.7 kB each); requests of up to
    // 12 kB, so that any record fits.
    let server = Server::start(
        &gate(),
        &[
            "--decision-log-url",
            &url,
            "--decision-log-queue-bytes",
            "12000",
            "--max-body-bytes",
            "12000",
        ],
    );
    for _ in 0..20 {
        decide(&server, "abort-rollback");
    }
    let full = r#"shipgate_decision_log_dropped_total{reason="queue_full"}"#;
    let dropped = server.metric(full);
    assert!(
        (14.0..20.0).contains(&dropped),
        "{dropped} dropped:\n{}",
        server.metrics()
    );
    state.stuck.send_replace(false);
    eventually("the queued records shipped", || {
        server.metric("shipgate_decision_log_shipped_total") + server.metric(full) == 20.0
    });
    assert_eq!(state.records().len() as f64, 20.0 - dropped);
}

#[test]
fn sigterm_ships_the_last_records_before_exit() {
    let state = Arc::new(Collector::default());
    let url = collector(state.clone());
    let mut server = Server::start(
        &gate(),
        &["--decision-log-url", &url, "--shutdown-delay", "0s"],
    );
    let id = decide(&server, "abort-rollback")["decision_id"].clone();
    server.signal("TERM");
    assert!(server.wait().success());
    let records = state.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision_id"], id);
}

#[test]
fn a_decision_log_url_that_is_not_http_is_refused() {
    let output = Server::command()
        .args(["--listen", "127.0.0.1:0", "--gate"])
        .arg(gate())
        .args(["--decision-log-url", "collector:9000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--decision-log-url: not an http:// or https:// URL with a host")
    );
}

/// Records hold every snapshot: plain http is for loopback, or for a
/// network the operator says they trust.
#[test]
fn a_plain_http_collector_beyond_loopback_needs_to_be_asked_for() {
    let serve = |extra: &[&str]| {
        let mut command = Server::command();
        command
            .args(["--listen", "127.0.0.1:0", "--gate"])
            .arg(gate())
            .args(["--decision-log-url", "http://collector.example:9000/ingest"])
            .args(extra);
        command
    };
    let output = serve(&[]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "--decision-log-url: plain http:// to collector.example would carry every snapshot"
        ),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Asked for, it starts (and, with no decision made, never calls out).
    let server = Server::spawn(serve(&["--insecure-decision-log-url"]));
    assert_eq!(server.get("/readyz").0, 200);
}

#[test]
fn a_stuck_collector_does_not_hold_up_the_exit_and_what_it_never_took_is_logged() {
    let state = Arc::new(Collector::default());
    state.stuck.send_replace(true);
    let url = collector(state.clone());
    let mut server = Server::start(
        &gate(),
        &["--decision-log-url", &url, "--shutdown-delay", "0s"],
    );
    decide(&server, "abort-rollback");
    server.signal("TERM");
    // The final flush has 5 s; the exit comes within the tests' deadline.
    assert!(server.wait().success());
    // Its POST is cut at the final flush's deadline, or the shipper is
    // stopped: either way the record is logged as lost, once.
    let lost = || {
        let dropped = server.logged_with_prefix("decision log batch dropped: ");
        let abandoned = server.logged("decision log records not shipped before exit");
        dropped
            .iter()
            .chain(&abandoned)
            .map(|e| e["records"].as_u64().unwrap())
            .sum::<u64>()
    };
    eventually("the loss logged", || lost() == 1);
    assert!(state.records().is_empty());
}
