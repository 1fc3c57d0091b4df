//! Load benchmark of `shipgate serve`: starts the real server on loopback
//! and drives `POST /v1/evaluate` over keep-alive connections for a fixed
//! time, then prints decisions per second and latency percentiles.
//!
//! `cargo run --release -p shipgate-bench --bin shipgate-load -- [--connections N]
//!  [--seconds S] [--warmup S] [--log LEVEL] [--json]`
//!
//! The client is a minimal HTTP/1.1 writer/reader on one thread, so as
//! little of the machine as possible goes to the load generator; it still
//! shares the cores with the server, as any loopback benchmark does.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    connections: usize,
    seconds: f64,
    warmup: f64,
    log: String,
    json: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        connections: 32,
        seconds: 10.0,
        warmup: 2.0,
        log: "info".into(),
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--connections" => options.connections = value("--connections")?.parse()?,
            "--seconds" => options.seconds = value("--seconds")?.parse()?,
            "--warmup" => options.warmup = value("--warmup")?.parse()?,
            "--log" => options.log = value("--log")?,
            "--json" => options.json = true,
            other => bail!(
                "unknown argument {other} (--connections N, --seconds S, --warmup S, --log LEVEL, --json)"
            ),
        }
    }
    if options.connections == 0 || options.seconds <= 0.0 {
        bail!("--connections and --seconds must be positive");
    }
    Ok(options)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the repo")
        .to_path_buf()
}

/// The server under test, stopped on drop.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(log: &str, cache: &std::path::Path) -> Result<Server> {
    let exe = std::env::current_exe()?;
    let cli = exe.with_file_name("shipgate-cli");
    if !cli.exists() {
        bail!(
            "{} is missing: build the bench crate's binaries first",
            cli.display()
        );
    }
    let mut child = Command::new(cli)
        .current_dir(repo())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gate",
            "examples/gate.toml",
        ])
        // The decision lines at the level asked for; start-up always, for the port.
        .env("SHIPGATE_LOG", format!("{log},shipgate::server=info"))
        .env("SHIPGATE_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting shipgate serve")?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log for the port, then keeps draining it so logging never
    // blocks the server.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
                && record["message"] == "listening"
            {
                let _ = tx.send(record["address"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server never logged 'listening'")?;
    Ok(Server { child, address })
}

/// One keep-alive connection: send, read one whole response, repeat.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and returns the status and whether the body says
    /// `expected`.
    async fn exchange(&mut self, request: &[u8], expected: &[u8]) -> Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let (head_end, length) = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])?;
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .context("a response without Content-Length")?;
                break (end + 4, length);
            }
            self.read_more().await?;
        };
        while self.buffer.len() < head_end + length {
            self.read_more().await?;
        }
        let status = std::str::from_utf8(&self.buffer[9..12])?.parse()?;
        let body = &self.buffer[head_end..head_end + length];
        Ok((status, find(body, expected).is_some()))
    }

    async fn read_more(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn drive(
    address: String,
    request: Vec<u8>,
    warm_until: Instant,
    stop_at: Instant,
) -> Result<Tally> {
    let mut connection = Connection::open(&address).await?;
    let mut tally = Tally::default();
    loop {
        let started = Instant::now();
        if started >= stop_at {
            return Ok(tally);
        }
        let (status, allowed) = connection
            .exchange(&request, b"\"decision\":\"allow\"")
            .await?;
        if started >= warm_until {
            tally
                .latencies_us
                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
            if status != 200 || !allowed {
                tally.errors += 1;
            }
        }
    }
}

/// CPU time a process has used so far (user + system), from /proc: the
/// server's cost per decision is steadier than its rate on a noisy machine.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let cache = tempfile::tempdir()?;
    let server = start_server(&options.log, cache.path())?;
    let snapshot = std::fs::read_to_string(repo().join("examples/snapshots/abort-allow.json"))?;
    let body = format!("{{\"phase\":\"abort\",\"snapshot\":{}}}", snapshot.trim());
    let request = format!(
        "POST /v1/evaluate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.address,
        body.len()
    )
    .into_bytes();

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let warm_until = started + Duration::from_secs_f64(options.warmup);
    let stop_at = warm_until + Duration::from_secs_f64(options.seconds);
    let server_pid = server.child.id();
    let mut cpu_at_start = None;
    let tallies: Vec<Tally> = client.block_on(async {
        let sample = tokio::spawn(async move {
            tokio::time::sleep_until(warm_until.into()).await;
            cpu_seconds(server_pid)
        });
        let tasks: Vec<_> = (0..options.connections)
            .map(|_| {
                tokio::spawn(drive(
                    server.address.clone(),
                    request.clone(),
                    warm_until,
                    stop_at,
                ))
            })
            .collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await??);
        }
        cpu_at_start = sample.await?;
        Ok::<_, anyhow::Error>(tallies)
    })?;
    let server_cpu = cpu_at_start
        .zip(cpu_seconds(server_pid))
        .map(|(start, end)| end - start);
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / options.seconds;
    let cpu_us_per_decision = server_cpu
        .filter(|_| !latencies.is_empty())
        .map(|cpu| (cpu * 1e6 / latencies.len() as f64).round());
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0),
    );
    if errors > 0 {
        eprintln!("shipgate-load: {errors} requests failed or did not allow");
    }
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "connections": options.connections,
                "seconds": options.seconds,
                "log": options.log,
                "decisions": latencies.len(),
                "decisions_per_second": rate.round(),
                "p50_us": p50,
                "p99_us": p99,
                "max_us": max,
                "errors": errors,
                "server_cpu_us_per_decision": cpu_us_per_decision,
            })
        );
    } else {
        println!(
            "POST /v1/evaluate, {} keep-alive connections, {} s (log level {}):\n  \
             {:.0} decisions/s   p50 {p50} µs   p99 {p99} µs   max {max} µs   errors {errors}   \
             server CPU {} µs/decision",
            options.connections,
            options.seconds,
            options.log,
            rate,
            cpu_us_per_decision.map_or("?".to_string(), |c| c.to_string())
        );
    }
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
