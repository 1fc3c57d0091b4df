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

use std::time::Duration;

use anyhow::{Context, Result, bail};
use shipgate_bench::load::{LoadFigures, drive, post, repo, start_server};

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
    if options.connections == 0 || !(options.seconds > 0.0 && options.seconds.is_finite()) {
        bail!("--connections and --seconds must be positive numbers");
    }
    if !(options.warmup >= 0.0 && options.warmup.is_finite()) {
        bail!("--warmup must be a number of seconds, 0 or more");
    }
    Ok(options)
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let cache = tempfile::tempdir()?;
    let server = start_server(&options.log, cache.path(), &[])?;
    let snapshot = std::fs::read_to_string(repo().join("examples/snapshots/abort-allow.json"))?;
    let body = format!("{{\"phase\":\"abort\",\"snapshot\":{}}}", snapshot.trim());
    let request = post(&server.address, "/v1/evaluate", &body);
    let figures = drive(
        &server,
        &request,
        options.connections,
        Duration::from_secs_f64(options.warmup),
        Duration::from_secs_f64(options.seconds),
    )?;
    let LoadFigures {
        decisions,
        decisions_per_second: rate,
        p50_us: p50,
        p99_us: p99,
        max_us: max,
        errors,
        server_cpu_us_per_decision: cpu_us_per_decision,
    } = figures;
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
                "decisions": decisions,
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
