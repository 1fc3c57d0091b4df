//! A real `shipgate serve` on a loopback port, for the server tests: start,
//! wait for its "listening" log line (with a deadline), talk HTTP, signal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{cache_dir, repo};

/// How long anything in these tests may take before it counts as hung.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) struct Server {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<Value>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    /// The threads reading its output: done once it has exited and they
    /// have stored its last lines.
    readers: Vec<JoinHandle<()>>,
    client: reqwest::blocking::Client,
}

impl Server {
    /// `shipgate serve --gate GATE ARGS` on 127.0.0.1, port chosen by the OS.
    pub(crate) fn start(gate: &Path, args: &[&str]) -> Server {
        Server::start_with_env(gate, args, &[])
    }

    pub(crate) fn start_with_env(gate: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Server::command();
        command
            .args(["--listen", "127.0.0.1:0", "--gate"])
            .arg(gate)
            .args(args)
            .envs(env.iter().copied());
        Server::spawn(command)
    }

    /// `shipgate serve` from the repository, with the tests' module cache
    /// and no secrets from the environment: add arguments, then [`Server::spawn`].
    pub(crate) fn command() -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shipgate"));
        command.current_dir(repo()).arg("serve");
        // Every option has a variable: none from the developer's shell.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SHIPGATE_") {
                command.env_remove(name);
            }
        }
        command
            .env("SHIPGATE_CACHE_DIR", cache_dir())
            .env("SHIPGATE_CACHE_KEY_FILE", crate::support::cache_key_file());
        command
    }

    /// Starts `command` (a `shipgate serve`) and waits for it to listen.
    pub(crate) fn spawn(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting shipgate serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let sink = logs.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                let listening = (record["message"] == "listening")
                    .then(|| record["address"].as_str().map(str::to_string));
                // Stored first: once `spawn` returns, the line is there.
                sink.lock().unwrap().push(record);
                if let Some(address) = listening {
                    let _ = address_tx.send(address);
                }
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
            stdout,
            readers: vec![stdout_reader, stderr_reader],
            client: reqwest::blocking::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("an HTTP client"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// POSTs JSON and returns the status and the JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .expect("POST");
        read(response)
    }

    /// `POST /v1/evaluate` with an example snapshot (`abort-rollback`:
    /// the phase is the name's first word).
    pub(crate) fn evaluate(&self, snapshot: &str) -> (u16, Value) {
        let phase = snapshot.split('-').next().unwrap();
        let body = serde_json::json!({"phase": phase, "snapshot": snapshot_json(snapshot)});
        self.post("/v1/evaluate", &body)
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        read(self.client.get(self.url(path)).send().expect("GET"))
    }

    /// The exposition text of `/metrics`.
    pub(crate) fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .expect("GET /metrics");
        response.text().expect("metrics text")
    }

    /// The value of one sample line of `/metrics` (0 when absent).
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("a number"))
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits (with the deadline) for the process to exit and for its last
    /// output lines to be stored.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for shipgate") {
                break status;
            }
            assert!(started.elapsed() < DEADLINE, "shipgate serve did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        eventually("the server's last output lines", || {
            self.readers.iter().all(JoinHandle::is_finished)
        });
        status
    }

    /// The lines the server wrote to standard output so far.
    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The log records so far whose message starts with `prefix`.
    pub(crate) fn logged_with_prefix(&self, prefix: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .cloned()
            .collect()
    }

    /// The log records whose message is `message`, once there is at least
    /// one. The server writes its log in batches, and may log an event
    /// just after a request could already see it, so a test that caused
    /// the event waits for its line.
    pub(crate) fn await_logged(&self, message: &str) -> Vec<Value> {
        eventually(&format!("the log line {message:?}"), || {
            !self.logged(message).is_empty()
        });
        self.logged(message)
    }

    /// The log records so far whose message is `message`.
    pub(crate) fn logged(&self, message: &str) -> Vec<Value> {
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

/// Serves `app` on a loopback port from its own thread until the test
/// process ends (a stand-in for a system shipgate calls); its address.
pub(crate) fn serve_on_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    address
}

/// Sends `request` (a whole HTTP request asking `Connection: close`) to
/// `address` from 127.0.0.2, loopback too but another peer to the server,
/// and returns the answer's status line.
pub(crate) fn status_from_another_address(address: std::net::SocketAddr, request: &[u8]) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

/// Polls `condition` until it holds; panics after the deadline.
pub(crate) fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An example snapshot as JSON.
/// What a release pipeline knows and writes to a facts file: the ready
/// preflight snapshot without the fields the host fills in itself.
pub(crate) fn release_facts() -> Value {
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

pub(crate) fn snapshot_json(name: &str) -> Value {
    let text = std::fs::read_to_string(crate::support::snapshot(name)).expect("example snapshot");
    serde_json::from_str(&text).expect("example snapshots are JSON")
}
