//! No false rollback and no lost decision: the host's own limits are never
//! a verdict, a request out of time stops its work and records nothing, and
//! shadow policies never delay the answer.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Server, snapshot_json};
use crate::support::{fixture, gate_dir};

/// A Prometheus that answers every query with `100`, after `delay`.
fn slow_prometheus(delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = [0u8; 8192];
                let _ = stream.read(&mut request);
                std::thread::sleep(delay);
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[0,"100"]}]}}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            });
        }
    });
    url
}

/// A gate in a directory of its own with the hostile fixture next to it.
fn gate_with_hostile(text: &str) -> tempfile::TempDir {
    let dir = gate_dir(text);
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).unwrap();
    dir
}

const SPIN: &str = "module = \"hostile.wasm\"\nconfig = { behaviour = \"infinite-loop\" }\n";

/// The evidence takes most of the request's time, so the policy that spins
/// after it is still running when the time runs out: the caller gets 503,
/// the work is stopped then (not at the policy's own limit), and no
/// decision is recorded that nobody was told.
#[test]
fn a_request_out_of_time_stops_its_work_and_records_nothing() {
    let prometheus = slow_prometheus(Duration::from_millis(1200));
    let dir = gate_with_hostile(&format!(
        "name = \"slow\"\n[limits]\ntimeout_ms = 1500\n\
         [[policy]]\nname = \"spin\"\nphases = [\"abort\"]\n{SPIN}\n\
         [sources.prometheus]\nurl = \"{prometheus}\"\ntimeout_ms = 5000\n\
         [sources.prometheus.queries]\nrequests = 'sum(up)'\n"
    ));
    let log = dir.path().join("decisions.jsonl");
    let server = Server::start(
        &dir.path().join("gate.toml"),
        &[
            "--request-timeout",
            "2s",
            "--decision-log",
            log.to_str().unwrap(),
        ],
    );
    let target =
        json!({"phase": "abort", "service": "checkout", "stable_hash": "a", "canary_hash": "b"});
    let response = server
        .client()
        .post(server.url("/v1/evaluate"))
        .json(&target)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("ran out of time"),
        "{body}"
    );
    let stopped = &server
        .await_logged("evaluation stopped: its request ran out of time; nothing recorded")[0];
    let ran_ms = stopped["ran_ms"].as_u64().unwrap();
    assert!(
        ran_ms < 1500,
        "stopped at the policy's own limit, not at the request's: {ran_ms} ms"
    );
    // The stopped evaluation returns before the code that logs a decision,
    // so no line can still be on its way.
    assert!(server.logged("decision").is_empty());
    let recorded = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(recorded.is_empty(), "{recorded}");
}

/// A shadow policy that spins runs beside the enforcing one and is stopped
/// when the decision is made: the answer does not wait for its 60 seconds.
#[test]
fn a_spinning_shadow_policy_never_delays_the_answer() {
    let dir = gate_with_hostile(&format!(
        "name = \"shadowed\"\n[rollout]\nstages = [5, 10, 25, 50, 100]\nmin_stage_minutes = 15\n\
         [rollout.abort]\nmax_error_rate = 0.01\nmax_error_rate_ratio = 1.5\nmax_latency_ratio = 1.3\n\
         max_business_drop = 0.10\nmin_requests = 500\n\
         [limits]\ntimeout_ms = 60000\n\
         [[policy]]\nname = \"canary\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n\
         [[policy]]\nname = \"trial\"\nmode = \"shadow\"\nphases = [\"abort\"]\n{SPIN}"
    ));
    let server = Server::start(&dir.path().join("gate.toml"), &["--request-timeout", "70s"]);
    let started = Instant::now();
    let (status, answer) = server.post(
        "/v1/evaluate",
        &json!({"phase": "abort", "snapshot": snapshot_json("abort-allow")}),
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow");
    assert!(took < Duration::from_secs(30), "the answer waited {took:?}");
    let trial = &answer["policies"][1];
    assert_eq!(trial["mode"], "shadow");
    let error = trial["error"].as_str().unwrap();
    assert!(
        error.contains("stopped when the decision was made"),
        "{error}"
    );
}

/// Enforcing policies run one after another; if they could outlast a
/// request, the server would answer 503 for a healthy canary at random.
#[test]
fn a_gate_whose_enforcing_policies_could_outlast_a_request_is_refused() {
    let dir = gate_with_hostile(&format!(
        "name = \"long\"\n[limits]\ntimeout_ms = 6000\n\
         [[policy]]\nname = \"one\"\nphases = [\"abort\"]\n{SPIN}\
         [[policy]]\nname = \"two\"\nphases = [\"abort\"]\n{SPIN}"
    ));
    let output = crate::support::shipgate()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--request-timeout",
            "10s",
            "--gate",
        ])
        .arg(dir.path().join("gate.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the abort phase's 2 enforcing policies may take 2 x 6000 ms = 12000 ms"),
        "{stderr}"
    );
}

/// Clients keep asking; the server is killed with SIGKILL at a moment of
/// the clock's choosing. Every decision a client was answered is in the log,
/// whole, and the log replays to the same verdicts.
#[test]
fn every_decision_answered_before_a_kill_9_is_logged_whole_and_replays() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate.toml");
    std::fs::copy(crate::support::example("gate.toml"), &gate).unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut server = Server::start(&gate, &["--decision-log", log.to_str().unwrap()]);
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [
        "abort-allow",
        "abort-rollback",
        "abort-allow",
        "abort-rollback",
    ]
    .into_iter()
    .map(|name| {
        let url = server.url("/v1/evaluate");
        let body = json!({"phase": "abort", "snapshot": snapshot_json(name)});
        let (answered, stop) = (answered.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(response) = client.post(&url).json(&body).send() else {
                    break;
                };
                let Ok(record) = response.json::<serde_json::Value>() else {
                    break;
                };
                let id = record["decision_id"].as_str().unwrap().to_string();
                answered.lock().unwrap().push(id);
            }
        })
    })
    .collect();
    // Somewhere between 40 and 140 answers in, by the clock's nanoseconds.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let kill_after = 40 + nanos % 100;
    crate::server::eventually("answers to kill the server among", || {
        answered.lock().unwrap().len() >= kill_after
    });
    server.signal("KILL");
    server.wait();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let text = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|record| record["decision_id"].as_str().unwrap().to_string())
        .collect();
    for id in &answered {
        assert_eq!(
            logged.iter().filter(|l| *l == id).count(),
            1,
            "decision {id} was answered but is not in the log once"
        );
    }
    let replay = crate::support::shipgate()
        .args(["replay", "--gate"])
        .arg(&gate)
        .arg(&log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(0), "{stdout}");
    let summary = format!(
        "replayed {0} decision(s): {0} identical, 0 differ",
        logged.len()
    );
    assert!(stdout.contains(&summary), "{stdout}");
}

/// 1 500 clients that send half a request and stall neither keep the
/// probes from answering nor keep a stopping server from exiting.
#[test]
fn stalled_connections_neither_block_probes_nor_stop_a_shutdown() {
    use std::net::TcpStream;
    let mut server = Server::start(
        &crate::support::example("gate.toml"),
        &[
            "--header-timeout",
            "60s",
            "--shutdown-delay",
            "0s",
            "--drain-timeout",
            "2s",
            // Every client here, the probe too, comes from 127.0.0.1.
            "--max-connections-per-peer",
            "4096",
        ],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let stalled: Vec<TcpStream> = (0..1500)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .write_all(b"POST /v1/evaluate HTTP/1.1\r\nHost: shipgate\r\nContent-Le")
                .unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    server.signal("TERM");
    assert!(server.wait().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// The load of issue 25: 1 000 clients stalled in their headers and 500
/// sending Argo requests whose bodies never finish, which take Argo's
/// places up to --max-pending: still the probes answer within a second and
/// a decision on another endpoint within its deadline.
#[test]
fn stalled_and_slow_body_clients_leave_decisions_and_probes_answered() {
    use std::net::TcpStream;
    let server = Server::start(
        &crate::support::example("gate.toml"),
        &[
            "--header-timeout",
            "60s",
            "--request-timeout",
            "60s",
            "--max-pending",
            "256",
            // Every client here, the probes too, comes from 127.0.0.1.
            "--max-connections-per-peer",
            "4096",
        ],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let connect = |start: &[u8]| {
        let mut stream = TcpStream::connect(&address).unwrap();
        let _ = stream.write_all(start);
        stream
    };
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|_| connect(b"POST /v1/evaluate HTTP/1.1\r\nHost: shipgate\r\nContent-Le"))
        .collect();
    let slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            connect(
                b"POST /v1/argo/abort HTTP/1.1\r\nHost: shipgate\r\n\
                  Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"snap",
            )
        })
        .collect();
    let started = Instant::now();
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let (status, answer) = server.evaluate("abort-rollback");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "rollback", "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop((stalled, slow));
}

/// A request's headers must come within --header-timeout: a client that
/// stops halfway is disconnected, its connection slot freed.
#[test]
fn a_client_that_stops_sending_its_headers_is_disconnected() {
    use std::net::TcpStream;
    let server = Server::start(
        &crate::support::example("gate.toml"),
        &["--header-timeout", "300ms"],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    stream
        .set_read_timeout(Some(crate::server::DEADLINE))
        .unwrap();
    let mut rest = Vec::new();
    // The server closes it: the read ends (with whatever it said, if anything).
    let _ = stream.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("200 OK"), "{text}");
}

/// One address cannot hold every connection: beyond its share, a new one is
/// answered 503 and closed at once, and another address (a kubelet, a CD
/// system) still gets in.
#[test]
fn one_address_cannot_take_every_connection() {
    use std::net::TcpStream;
    let server = Server::start(
        &crate::support::example("gate.toml"),
        &[
            "--max-connections",
            "8",
            "--max-connections-per-peer",
            "2",
            "--header-timeout",
            "60s",
        ],
    );
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let stall = || {
        let mut stream = TcpStream::connect(address).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHo");
        stream
    };
    let _held = [stall(), stall()];
    let mut third = stall();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    third
        .read_to_end(&mut answer)
        .expect("the third connection from one address is answered and closed at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("retry later\"}"), "{answer}");
    // From another address (127.0.0.2 is loopback too, and another peer).
    let status = crate::server::status_from_another_address(
        address,
        b"GET /healthz HTTP/1.1\r\nHost: shipgate\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// A kept-alive connection lives --connection-lifetime, then closes after
/// the request it is on: nobody keeps a connection forever.
#[test]
fn a_kept_alive_connection_closes_after_its_lifetime() {
    use std::net::TcpStream;
    let server = Server::start(
        &crate::support::example("gate.toml"),
        &["--connection-lifetime", "1s", "--header-timeout", "60s"],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: shipgate\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(crate::server::DEADLINE))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The answer, then the end of the stream when the lifetime is up.
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed after its lifetime, not after the 60 s idle timeout: {:?}",
        started.elapsed()
    );
}

/// Decisions are not for anyone who can reach the port: without a token a
/// server on a non-loopback address refuses to start, unless told.
#[test]
fn no_token_on_an_open_address_is_refused_unless_asked_for() {
    let gate = crate::support::example("gate.toml");
    let output = crate::support::shipgate()
        .args(["serve", "--listen", "0.0.0.0:0", "--gate"])
        .arg(&gate)
        .env_remove("SHIPGATE_TOKEN")
        .timeout(crate::server::DEADLINE)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve decisions without a bearer token on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure"), "{stderr}");
}

/// An instance serves only the routes it is for (a Flagger-facing one,
/// which runs without a token, nothing else), and probes and metrics can
/// have a port of their own.
#[test]
fn an_instance_serves_its_adapters_and_its_probes_where_asked() {
    let server = Server::start(
        &crate::support::example("gate.toml"),
        &["--adapters", "flagger", "--metrics-listen", "127.0.0.1:0"],
    );
    let event =
        json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "x"});
    assert_eq!(server.post("/v1/flagger/event", &event).0, 202);
    let request = json!({"phase": "abort", "snapshot": snapshot_json("abort-allow")});
    assert_eq!(server.post("/v1/evaluate", &request).0, 404);
    assert_eq!(
        server.get("/readyz").0,
        404,
        "probes moved to their own port"
    );
    let side = server.logged("metrics and probes listening")[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics = reqwest::blocking::get(format!("http://{side}/metrics")).unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().unwrap();
    assert!(
        text.contains("shipgate_requests_rejected_total{reason=\"not_found\"} 2"),
        "{text}"
    );
    let ready = reqwest::blocking::get(format!("http://{side}/readyz")).unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

/// Compiled code in the cache runs as native code: a file swapped for
/// another module's (as a restored CI cache could) must not be run in the
/// pinned module's place. Without the cache's tag, it is compiled again.
#[test]
fn a_compiled_module_swapped_in_the_cache_is_compiled_again_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, key) = (
        dir.path().join("cache"),
        dir.path().join("config/cache.key"),
    );
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).unwrap();
    let gate = dir.path().join("gate.toml");
    std::fs::write(
        &gate,
        "name = \"swap\"\n[[policy]]\nname = \"allows\"\nmodule = \"hostile.wasm\"\n\
         phases = [\"abort\"]\nconfig = { behaviour = \"allow\" }\n",
    )
    .unwrap();
    let eval = |gate: Option<&std::path::Path>| {
        let mut command = crate::support::shipgate_in(dir.path());
        command
            .env("SHIPGATE_CACHE_DIR", &cache)
            .env("SHIPGATE_CACHE_KEY_FILE", &key)
            .args(["eval", "--phase", "abort", "--snapshot"])
            .arg(crate::support::snapshot("abort-rollback"));
        if let Some(gate) = gate {
            command.arg("--gate").arg(gate);
        }
        command.output().unwrap().status.code()
    };
    // Both modules compiled into the cache: the fixture allows, the stock
    // canary rolls this snapshot back.
    assert_eq!(eval(Some(&gate)), Some(0));
    assert_eq!(eval(None), Some(2));
    let hostile =
        crate::support::sha256_hex(&std::fs::read(dir.path().join("hostile.wasm")).unwrap());
    let entry = |prefix: &str, suffix: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no cache entry {prefix}…{suffix}"))
    };
    let inspected = crate::support::shipgate()
        .args(["inspect", "--json", "builtin:canary"])
        .output()
        .unwrap();
    let canary = crate::support::json_output(&inspected)["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let (swapped, other) = (entry(&hostile, ".cwasm"), entry(&canary, ".cwasm"));
    // The swap: same owner, same private mode, another module's code and
    // its genuine tag (which names that module, not this one).
    std::fs::copy(&other, &swapped).unwrap();
    std::fs::copy(entry(&canary, ".tag"), entry(&hostile, ".tag")).unwrap();
    assert_eq!(eval(Some(&gate)), Some(0), "the swapped-in code ran");
    assert_ne!(
        std::fs::read(&swapped).unwrap(),
        std::fs::read(&other).unwrap(),
        "the entry was not compiled again"
    );
    assert!(key.exists() && !key.starts_with(&cache));
}
