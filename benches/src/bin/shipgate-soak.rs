//! Soak run of `shipgate serve`: the real server on loopback, saturated for
//! a long time (default 10 minutes) by a mix of requests, with its resident
//! memory, open file descriptors and threads sampled as it goes. Every
//! answer must be one the docs promise: the right decision, 400 for a
//! malformed body, or 503 when the server sheds load. Anything else is an
//! error, and the run exits 1.
//!
//! `cargo run --release -p shipgate-bench --bin shipgate-soak -- [--seconds S]
//!  [--connections N] [--sample S] [--json]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shipgate_bench::load::{Connection, post, repo, start_server};

struct Options {
    seconds: f64,
    connections: usize,
    sample: f64,
    json: bool,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        seconds: 600.0,
        connections: 48,
        sample: 10.0,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value("--seconds")?.parse()?,
            "--connections" => options.connections = value("--connections")?.parse()?,
            "--sample" => options.sample = value("--sample")?.parse()?,
            "--json" => options.json = true,
            other => {
                bail!("unknown argument {other} (--seconds S, --connections N, --sample S, --json)")
            }
        }
    }
    if options.connections == 0 || options.seconds <= 0.0 || options.sample <= 0.0 {
        bail!("--seconds, --connections and --sample must be positive");
    }
    Ok(options)
}

/// The server is started small, so that the mix saturates it and it sheds
/// load: evaluations at once, and requests admitted at once.
const SERVER_ARGS: [&str; 4] = ["--max-evaluating", "2", "--max-pending", "4"];

/// A connection is closed and opened again after this many requests, so
/// that connections come and go as they do in production.
const REQUESTS_PER_CONNECTION: u64 = 500;

/// One kind of request in the mix and the answer the docs promise.
struct Kind {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// Text the answer's body must contain.
    expected: &'static [u8],
}

fn mix(address: &str) -> Result<Vec<Kind>> {
    let snapshot = |name: &str| -> Result<String> {
        let path = repo().join("examples/snapshots").join(name);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| path.display().to_string())?
            .trim()
            .to_string())
    };
    let evaluate = |phase: &str, snapshot: String| {
        post(
            address,
            "/v1/evaluate",
            &format!("{{\"phase\":\"{phase}\",\"snapshot\":{snapshot}}}"),
        )
    };
    Ok(vec![
        Kind {
            name: "abort-allow",
            request: evaluate("abort", snapshot("abort-allow.json")?),
            status: 200,
            expected: b"\"decision\":\"allow\"",
        },
        Kind {
            name: "abort-rollback",
            request: evaluate("abort", snapshot("abort-rollback.json")?),
            status: 200,
            expected: b"\"decision\":\"rollback\"",
        },
        Kind {
            name: "promotion-hold (argo)",
            request: post(
                address,
                "/v1/argo/promotion",
                &format!("{{\"snapshot\":{}}}", snapshot("promotion-hold.json")?),
            ),
            status: 200,
            expected: b"\"decision\":\"deny\"",
        },
        Kind {
            name: "malformed body",
            request: post(
                address,
                "/v1/evaluate",
                "{\"phase\": \"abort\", \"snapshot\": {",
            ),
            status: 400,
            expected: b"not valid JSON",
        },
    ])
}

/// What the connections have seen so far, shared so that the run can
/// report as it goes.
#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    shed: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn read(&self) -> (u64, u64, u64) {
        (
            self.answered.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// One connection's view: the shared counts and its own first errors.
struct Tally {
    counts: Arc<Counts>,
    first_errors: Vec<String>,
}

impl Tally {
    fn count(&self, counter: fn(&Counts) -> &AtomicU64) {
        counter(&self.counts).fetch_add(1, Ordering::Relaxed);
    }

    fn error(&mut self, what: String) {
        self.count(|c| &c.errors);
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }
}

async fn drive(
    address: String,
    kinds: Arc<Vec<Kind>>,
    counts: Arc<Counts>,
    offset: usize,
    stop_at: Instant,
) -> Tally {
    let mut tally = Tally {
        counts,
        first_errors: Vec::new(),
    };
    let mut connection: Option<Connection> = None;
    let mut sent: u64 = 0;
    let mut turn = offset;
    while Instant::now() < stop_at {
        if connection.is_none() || sent.is_multiple_of(REQUESTS_PER_CONNECTION) {
            match Connection::open(&address).await {
                Ok(opened) => connection = Some(opened),
                Err(e) => {
                    tally.error(format!("connecting: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let kind = &kinds[turn % kinds.len()];
        turn += 1;
        sent += 1;
        let open = connection.as_mut().expect("opened above");
        match open.exchange(&kind.request, kind.expected).await {
            Ok((503, _)) => tally.count(|c| &c.shed),
            Ok((status, true)) if status == kind.status => tally.count(|c| &c.answered),
            Ok((status, _)) => tally.error(format!(
                "{}: status {status} or an unexpected body",
                kind.name
            )),
            Err(e) => {
                tally.error(format!("{}: {e}", kind.name));
                connection = None;
            }
        }
    }
    tally
}

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    rss_mib: f64,
    fds: usize,
    threads: usize,
}

fn sample(pid: u32, seconds: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        seconds,
        rss_mib: field("VmRSS:")? / 1024.0,
        fds,
        threads: field("Threads:")? as usize,
    })
}

/// A line on stderr at every sample, so that a ten-minute run shows how it
/// goes (and a broken one can be stopped early).
fn progress(seconds: f64, now: Option<&Sample>, counts: &Counts) {
    let (answered, shed, errors) = counts.read();
    let server = match now {
        Some(now) => format!(
            "RSS {:.1} MiB, {} open fds, {} threads",
            now.rss_mib, now.fds, now.threads
        ),
        None => "the server's /proc entry is gone".to_string(),
    };
    eprintln!(
        "{seconds:>5.0} s: answered {answered}, shed with 503 {shed}, errors {errors}; {server}"
    );
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let cache = tempfile::tempdir()?;
    let server = start_server("warn", cache.path(), &SERVER_ARGS)?;
    let kinds = Arc::new(mix(&server.address)?);
    let counts = Arc::new(Counts::default());
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(options.seconds);
    let mut samples = vec![sample(pid, 0.0).context("reading the server's /proc")?];
    let tallies: Vec<Tally> = runtime.block_on(async {
        let tasks: Vec<_> = (0..options.connections)
            .map(|i| {
                let (address, kinds, counts) =
                    (server.address.clone(), kinds.clone(), counts.clone());
                tokio::spawn(drive(address, kinds, counts, i, stop_at))
            })
            .collect();
        let every = Duration::from_secs_f64(options.sample);
        while Instant::now() < stop_at {
            tokio::time::sleep_until((Instant::now() + every).min(stop_at).into()).await;
            let seconds = started.elapsed().as_secs_f64();
            let now = sample(pid, seconds);
            progress(seconds, now.as_ref(), &counts);
            samples.extend(now);
        }
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await?);
        }
        Ok::<_, anyhow::Error>(tallies)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let (answered, shed, errors) = counts.read();
    let first_errors: Vec<&String> = tallies
        .iter()
        .flat_map(|t| &t.first_errors)
        .take(5)
        .collect();
    // The first sample after a tenth of the run: the server is warm by then.
    let warm = samples
        .iter()
        .find(|s| s.seconds >= options.seconds / 10.0)
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().expect("one sample at least");
    let max = |f: fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let (max_rss, max_fds, max_threads) = (
        max(|s| s.rss_mib),
        max(|s| s.fds as f64),
        max(|s| s.threads as f64),
    );
    if options.json {
        let series: Vec<_> = samples
            .iter()
            .map(|s| serde_json::json!({"seconds": s.seconds.round(), "rss_mib": (s.rss_mib * 10.0).round() / 10.0, "fds": s.fds, "threads": s.threads}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "seconds": elapsed.round(),
                "connections": options.connections,
                "answered": answered,
                "answered_per_second": (answered as f64 / elapsed).round(),
                "shed_503": shed,
                "errors": errors,
                "first_errors": first_errors,
                "rss_mib": {"warm": warm.rss_mib, "last": last.rss_mib, "max": max_rss},
                "fds": {"warm": warm.fds, "last": last.fds, "max": max_fds},
                "threads": {"warm": warm.threads, "last": last.threads, "max": max_threads},
                "samples": series,
            })
        );
    } else {
        println!(
            "shipgate serve soaked for {elapsed:.0} s by {} connections ({}):\n  \
             answered {answered} ({:.0}/s), shed with 503 {shed}, errors {errors}\n  \
             RSS MiB    warm {:.1}  last {:.1}  max {max_rss:.1}\n  \
             open fds   warm {}  last {}  max {max_fds}\n  \
             threads    warm {}  last {}  max {max_threads}",
            options.connections,
            kinds.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            answered as f64 / elapsed,
            warm.rss_mib,
            last.rss_mib,
            warm.fds,
            last.fds,
            warm.threads,
            last.threads,
        );
        for error in &first_errors {
            println!("  error: {error}");
        }
    }
    // An error from main (not `exit`) stops the server and removes its
    // cache on the way out.
    if errors > 0 {
        bail!("{errors} answers were not the documented ones");
    }
    Ok(())
}
