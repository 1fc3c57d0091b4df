//! Running the server: shutdown with decisions in flight, reload while
//! requests arrive, and the limits that keep it bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::server::{Server, eventually, snapshot_json};
use crate::support::{example, fixture};

/// A gate whose one abort policy spins until its `timeout_ms`: a decision
/// that stays in flight long enough to signal the server meanwhile.
fn slow_gate(timeout_ms: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).unwrap();
    let gate = format!(
        "name = \"slow\"\n[limits]\ntimeout_ms = {timeout_ms}\n\
         [[policy]]\nname = \"spin\"\nmodule = \"hostile.wasm\"\nphases = [\"abort\"]\n\
         config = {{ behaviour = \"infinite-loop\" }}\n"
    );
    std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
    dir
}

fn abort_request() -> Value {
    json!({"phase": "abort", "snapshot": snapshot_json("abort-allow")})
}

/// Sends one request from another thread once the server is up.
fn in_background(server: &Server, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let url = server.url("/v1/evaluate");
    std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(url)
            .json(&body)
            .send()
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().expect("a JSON answer"))
    })
}

const IN_FLIGHT: &str = "shipgate_requests_in_flight";

#[test]
fn sigterm_lets_the_decisions_in_flight_finish() {
    let dir = slow_gate(1500);
    let mut server = Server::start(&dir.path().join("gate.toml"), &["--shutdown-delay", "0s"]);
    let request = in_background(&server, abort_request());
    eventually("a decision in flight", || server.metric(IN_FLIGHT) == 1.0);
    server.signal("TERM");
    let (status, answer) = request.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    // The spinning policy timed out and failed closed, as it should.
    assert_eq!(answer["decision"], "rollback");
    assert!(
        answer["policies"][0]["error"]
            .as_str()
            .unwrap()
            .contains("time limit of 1500 ms")
    );
    assert!(server.wait().success());
}

/// Kubernetes keeps routing to a terminating pod for a few seconds: a
/// connection refused then would fail a Spinnaker stage at once (Orca
/// retries a POST only on an unknown host) and count against an analysis.
#[test]
fn after_sigterm_the_server_keeps_answering_until_the_shutdown_delay_ends() {
    let mut server = Server::start(&example("gate.toml"), &["--shutdown-delay", "3s"]);
    server.signal("TERM");
    eventually("readiness to fail", || server.get("/readyz").0 == 503);
    let (status, answer) = server.post("/v1/evaluate", &abort_request());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow");
    assert!(server.wait().success());
    assert_eq!(
        server
            .logged("closing the port: finishing requests in flight")
            .len(),
        1
    );
}

/// A second SIGTERM (or an operator's Ctrl-C) does not wait out the delay.
#[test]
fn a_second_sigterm_ends_the_shutdown_delay() {
    let mut server = Server::start(&example("gate.toml"), &["--shutdown-delay", "1h"]);
    server.signal("TERM");
    eventually("readiness to fail", || server.get("/readyz").0 == 503);
    server.signal("TERM");
    assert!(server.wait().success());
}

/// A mounted ConfigMap changes the way the kubelet writes it: a new
/// directory, then the `..data` symbolic link swapped to it (the file
/// itself is a link through `..data`). No signal is sent: the image has no
/// shell for `kill -HUP 1`.
#[test]
fn a_configmap_update_reloads_the_gate_without_a_signal() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(example("gate.toml")).unwrap();
    let mut version = 0;
    let mut publish = |name: &str| {
        version += 1;
        let data = format!("..2026_11_30_{version:02}");
        std::fs::create_dir(dir.path().join(&data)).unwrap();
        let text = original.replace(
            "name = \"checkout-production\"",
            &format!("name = \"{name}\""),
        );
        std::fs::write(dir.path().join(&data).join("gate.toml"), text).unwrap();
        symlink(&data, dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    };
    publish("first");
    symlink("..data/gate.toml", dir.path().join("gate.toml")).unwrap();
    let server = Server::start(
        &dir.path().join("gate.toml"),
        &["--watch-interval", "100ms"],
    );
    let serving = || {
        server.get("/readyz").1["gate"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(serving(), "first");
    publish("second");
    eventually("the updated ConfigMap to serve", || serving() == "second");
    let reloaded = server.await_logged("gate reloaded");
    assert_eq!(reloaded.last().unwrap()["cause"], "files changed");
}

#[test]
fn sighup_reloads_the_gate_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate.toml");
    let original = std::fs::read_to_string(example("gate.toml")).unwrap();
    let named = |name: &str| {
        original.replace(
            "name = \"checkout-production\"",
            &format!("name = \"{name}\""),
        )
    };
    // Replaced whole, as a ConfigMap update does.
    let replace_gate = |text: &str| {
        let next = dir.path().join("gate.toml.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &gate).unwrap();
    };
    replace_gate(&named("before"));
    // Only the signal reloads here (file watching has its own test).
    let server = Server::start(&gate, &["--watch-interval", "0s"]);

    let stop = Arc::new(AtomicBool::new(false));
    let client_stop = stop.clone();
    let url = server.url("/v1/evaluate");
    let traffic = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let mut answers = Vec::new();
        while !client_stop.load(Ordering::Relaxed) {
            let response = client
                .post(&url)
                .json(&abort_request())
                .send()
                .expect("POST");
            let status = response.status().as_u16();
            let body: Value = response.json().expect("JSON");
            answers.push((status, body["gate"].as_str().unwrap_or("").to_string()));
        }
        answers
    });
    let serving = || {
        server.get("/readyz").1["gate"]
            .as_str()
            .unwrap()
            .to_string()
    };

    replace_gate(&named("after"));
    server.signal("HUP");
    eventually("the new gate to serve", || serving() == "after");

    replace_gate("name = \"broken\"\n[rollout]\nstages = [5, 10]\nmin_stage_minute = 15\n");
    server.signal("HUP");
    eventually("the failed reload to be counted", || {
        server.metric("shipgate_gate_reloads_total{result=\"error\"}") == 1.0
    });
    assert_eq!(
        serving(),
        "after",
        "a bad gate file must leave the old one serving"
    );
    let failure = server.await_logged("gate reload failed; the previous gate keeps serving");
    let why = failure[0]["error"].as_str().unwrap();
    assert!(
        why.contains("gate.toml:4:1") && why.contains("min_stage_minutes"),
        "{why}"
    );

    stop.store(true, Ordering::Relaxed);
    let answers = traffic.join().unwrap();
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(_, gate)| gate == "before" || gate == "after")
    );
    assert_eq!(answers.last().unwrap().1, "after");
}

#[test]
fn a_full_server_sheds_load_with_503_and_retry_after() {
    let dir = slow_gate(1500);
    let server = Server::start(
        &dir.path().join("gate.toml"),
        &["--max-evaluating", "1", "--max-pending", "1"],
    );
    let first = in_background(&server, abort_request());
    eventually("a decision in flight", || server.metric(IN_FLIGHT) == 1.0);
    let response = server
        .client()
        .post(server.url("/v1/evaluate"))
        .json(&abort_request())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests")
    );
    assert_eq!(first.join().unwrap().0, 200);
}

#[test]
/// (Requests bounded in time: `hardening.rs`, where the evidence takes the
/// time, since a gate whose policies alone could outlast a request does not
/// load.)
fn requests_are_bounded_in_size() {
    let server = Server::start(&example("gate.toml"), &["--max-body-bytes", "600"]);
    let big = abort_request();
    assert!(big.to_string().len() > 600);
    let (status, body) = server.post("/v1/evaluate", &big);
    assert_eq!(status, 413);
    assert!(body["error"].as_str().unwrap().contains("--max-body-bytes"));
}

/// `shipgate serve ARGS` that must refuse to start: its exit code and stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = crate::support::shipgate()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .timeout(crate::server::DEADLINE)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_never_serves() {
    let dir = crate::support::gate_dir("name = \"x\"\nstages = [5]\n");
    let gate = dir.path().join("gate.toml");
    let gate = gate.to_str().unwrap();
    let (code, stderr) = refused(&["--gate", gate], &[]);
    assert_eq!(code, Some(65));
    assert!(
        stderr.contains("gate.toml:2:1") && stderr.contains("unknown key 'stages'"),
        "{stderr}"
    );
    // The error comes alone: no warnings about a server that never started.
    assert!(!stderr.contains("no evaluation key"), "{stderr}");

    let good = example("gate.toml");
    let good = good.to_str().unwrap();
    let (code, stderr) = refused(&["--gate", good], &[("SHIPGATE_EVALUATION_KEY", "short")]);
    assert_eq!(code, Some(65));
    assert!(
        stderr.contains("the evaluation key has 5 bytes"),
        "{stderr}"
    );
    let (code, stderr) = refused(&["--gate", good, "--token-file", "/nonexistent/token"], &[]);
    assert_eq!(code, Some(66));
    assert!(stderr.contains("/nonexistent/token"), "{stderr}");
    let (code, _) = refused(&["--gate", good, "--request-timeout", "soon"], &[]);
    assert_eq!(code, Some(64));
    // The shipped Secret's placeholders, applied as they are.
    let (code, stderr) = refused(
        &["--gate", good],
        &[("SHIPGATE_TOKEN", "REPLACE-WITH-A-RANDOM-TOKEN")],
    );
    assert_eq!(code, Some(65));
    assert!(
        stderr.contains("$SHIPGATE_TOKEN: the secret is still the manifest's placeholder"),
        "{stderr}"
    );
}
