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

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shipgate_bench::load::{Connection, cpu_seconds, percentile, post, repo, start_server};

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

fn main() -> Result<()> {
    let options = parse_options()?;
    let cache = tempfile::tempdir()?;
    let server = start_server(&options.log, cache.path(), &[])?;
    let snapshot = std::fs::read_to_string(repo().join("examples/snapshots/abort-allow.json"))?;
    let body = format!("{{\"phase\":\"abort\",\"snapshot\":{}}}", snapshot.trim());
    let request = post(&server.address, "/v1/evaluate", &body);

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
