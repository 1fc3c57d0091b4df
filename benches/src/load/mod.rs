//! The real `shipgate serve` on loopback, driven over keep-alive
//! connections by a minimal HTTP/1.1 client on one thread, so that as
//! little of the machine as possible goes to the load generator.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the repo")
        .to_path_buf()
}

/// The server under test, stopped on drop.
pub struct Server {
    pub child: Child,
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `shipgate serve` on the example gate with `args` added; `log`
/// is the level of the decision lines.
pub fn start_server(log: &str, cache: &Path, args: &[&str]) -> Result<Server> {
    let cli = crate::siblings::sibling("shipgate")?;
    let mut child = Command::new(cli)
        .current_dir(repo())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--gate",
            "examples/gate.toml",
        ])
        .args(args)
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

/// What a load run measured after its warm-up.
pub struct LoadFigures {
    pub decisions: usize,
    pub decisions_per_second: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    /// Answers that were not HTTP 200 with `"decision":"allow"`.
    pub errors: u64,
    /// The server's CPU time (user + system) per decision, when /proc has it.
    pub server_cpu_us_per_decision: Option<f64>,
}

/// Sends `request` (which must be allowed) to `server` over `connections`
/// keep-alive connections from one client thread, for `warmup` and then
/// `seconds`; only the answers after the warm-up count.
pub fn drive(
    server: &Server,
    request: &[u8],
    connections: usize,
    warmup: Duration,
    seconds: Duration,
) -> Result<LoadFigures> {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let warm_until = Instant::now() + warmup;
    let stop_at = warm_until + seconds;
    let server_pid = server.child.id();
    let (tallies, cpu_at_start) = client.block_on(async {
        let sample = tokio::spawn(async move {
            tokio::time::sleep_until(warm_until.into()).await;
            cpu_seconds(server_pid)
        });
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (address, request) = (server.address.clone(), request.to_vec());
                tokio::spawn(async move {
                    let mut connection = Connection::open(&address).await?;
                    connection.keep_asking(&request, warm_until, stop_at).await
                })
            })
            .collect();
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await??);
        }
        Ok::<_, anyhow::Error>((tallies, sample.await?))
    })?;
    let server_cpu = cpu_at_start
        .zip(cpu_seconds(server_pid))
        .map(|(start, end)| end - start);
    let mut latencies: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    Ok(LoadFigures {
        decisions: latencies.len(),
        decisions_per_second: latencies.len() as f64 / seconds.as_secs_f64(),
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        max_us: latencies.last().copied().unwrap_or(0),
        errors: tallies.iter().map(|t| t.errors).sum(),
        server_cpu_us_per_decision: server_cpu
            .filter(|_| !latencies.is_empty())
            .map(|cpu| (cpu * 1e6 / latencies.len() as f64).round()),
    })
}

/// One connection's answers after the warm-up.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
}

/// One keep-alive connection: send, read one whole response, repeat.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(address: &str) -> Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and returns the status and whether the body says
    /// `expected`.
    pub async fn exchange(&mut self, request: &[u8], expected: &[u8]) -> Result<(u16, bool)> {
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

    /// Sends `request` again and again until `stop_at`, timing the answers
    /// that start after `warm_until`.
    async fn keep_asking(
        &mut self,
        request: &[u8],
        warm_until: Instant,
        stop_at: Instant,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        loop {
            let started = Instant::now();
            if started >= stop_at {
                return Ok(tally);
            }
            let (status, allowed) = self.exchange(request, b"\"decision\":\"allow\"").await?;
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

/// A keep-alive `POST path` of a JSON `body`.
pub fn post(address: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// CPU time a process has used so far (user + system), from /proc: the
/// server's cost per decision is steadier than its rate on a noisy machine.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}
