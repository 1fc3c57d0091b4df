//! A real `shipgate serve` on a loopback port, for the server tests: start,
//! wait for its "listening" log line (with a deadline), talk HTTP, signal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{cache_dir, repo};

/// How long anything in these tests may take before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Server {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<Value>>>,
    client: reqwest::blocking::Client,
}

impl Server {
    /// `shipgate serve --gate GATE ARGS` on 127.0.0.1, port chosen by the OS.
    pub fn start(gate: &Path, args: &[&str]) -> Server {
        Server::start_with_env(gate, args, &[])
    }

    pub fn start_with_env(gate: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shipgate"));
        command
            .current_dir(repo())
            .args(["serve", "--listen", "127.0.0.1:0", "--gate"])
            .arg(gate)
            .args(args)
            .env("SHIPGATE_CACHE_DIR", cache_dir())
            .env_remove("SHIPGATE_TOKEN")
            .env_remove("SHIPGATE_EVALUATION_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting shipgate serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                if record["message"] == "listening" {
                    let _ = address_tx.send(record["address"].as_str().map(str::to_string));
                }
                sink.lock().unwrap().push(record);
            }
            let _ = address_tx.send(None);
        });
        let address = address_rx.recv_timeout(DEADLINE).ok().flatten();
        let Some(address) = address else {
            let _ = child.kill();
            panic!(
                "shipgate serve did not start listening; its log:\n{:#?}",
                logs.lock().unwrap()
            );
        };
        Server {
            child,
            base: format!("http://{address}"),
            logs,
            client: reqwest::blocking::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// POSTs JSON and returns the status and the JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .expect("POST");
        read(response)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        read(self.client.get(self.url(path)).send().expect("GET"))
    }

    /// The exposition text of `/metrics`.
    pub fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .expect("GET /metrics");
        response.text().expect("metrics text")
    }

    /// The value of one sample line of `/metrics` (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits (with the deadline) for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for shipgate") {
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "shipgate serve did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log records so far whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["message"] == message)
            .cloned()
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().expect("a response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status}: the body is not JSON ({e}): {text}"));
    (status, body)
}

/// Polls `condition` until it holds; panics after the deadline.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An example snapshot as JSON.
/// What a release pipeline knows and writes to a facts file: the ready
/// preflight snapshot without the fields the host fills in itself.
pub fn release_facts() -> Value {
    let mut facts = snapshot_json("preflight-ready");
    for host_owned in [
        "schema_version",
        "now",
        "rollout",
        "metrics",
        "alerts",
        "smoke_tests",
    ] {
        facts.as_object_mut().unwrap().remove(host_owned);
    }
    facts
}

pub fn snapshot_json(name: &str) -> Value {
    let text = std::fs::read_to_string(crate::support::snapshot(name)).expect("example snapshot");
    serde_json::from_str(&text).expect("example snapshots are JSON")
}
