//! `--growth DIR`: how a decision's cost grows with the snapshot's size and
//! the number of policies in a phase, and how the server's throughput grows
//! with connections. Prints the figures and writes one SVG chart of each to
//! DIR (docs/PERFORMANCE.md shows the committed ones).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use shipgate::decision::Evaluation;
use shipgate::evaluate::PreparedGate;
use shipgate::runtime::Runtime;
use shipgate_bench::load::{LoadFigures, drive, post, repo, start_server};
use shipgate_policy::Phase;
use shipgate_policy_canary::Canary;

use crate::plot::{Axis, Chart, Series};
use crate::{figures, gate_decision, gate_with_canaries};

/// Snapshot sizes measured, in bytes.
const SIZES: [usize; 4] = [2_000, 16_000, 128_000, 1_000_000];
/// Business metrics per snapshot for the findings series: each makes one
/// finding, and the last one is just under the findings cap (1000, with
/// the canary's 6 other findings).
const BUSINESS_METRICS: [usize; 4] = [1, 100, 400, 990];
const POLICY_COUNTS: [usize; 5] = [1, 2, 5, 10, 20];
const CONNECTIONS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Time spent on each point of the in-process series.
const POINT_BUDGET: Duration = Duration::from_millis(600);

pub(crate) fn run(dir: &Path, runtime: Arc<Runtime>, load_seconds: f64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let example: Value = serde_json::from_slice(&std::fs::read(
        repo().join("examples/snapshots/abort-allow.json"),
    )?)?;
    let gate = PreparedGate::prepare(runtime.clone(), gate_with_canaries(1)?, &[Phase::Abort])?;
    let gate_json = serde_json::to_value(gate.gate().snapshot_gate())?;

    println!("Decision time against snapshot size (abort phase, builtin:canary, median µs):");
    println!(
        "{:>10} {:>10} {:>10} {:>10}  grown with",
        "bytes", "gate", "native", "findings"
    );
    let mut padded = Series {
        label: "gate, padded",
        points: Vec::new(),
    };
    let mut business = Series {
        label: "gate, business metrics",
        points: Vec::new(),
    };
    let mut padded_native = Series {
        label: "native, padded",
        points: Vec::new(),
    };
    for size in SIZES {
        let text = padded_to(&example, size);
        let point = measure_snapshot(&gate, &gate_json, &text)?;
        println!(
            "{:>10} {:>10.1} {:>10.1} {:>10}  resolved alerts and changes in flight",
            text.len(),
            point.gate_us,
            point.native_us,
            point.findings
        );
        padded.points.push((text.len() as f64, point.gate_us));
        padded_native
            .points
            .push((text.len() as f64, point.native_us));
    }
    for metrics in BUSINESS_METRICS {
        let text = with_business_metrics(&example, metrics);
        let point = measure_snapshot(&gate, &gate_json, &text)?;
        println!(
            "{:>10} {:>10.1} {:>10.1} {:>10}  {metrics} business metrics",
            text.len(),
            point.gate_us,
            point.native_us,
            point.findings
        );
        business.points.push((text.len() as f64, point.gate_us));
    }
    let over_cap = with_business_metrics(&example, 1000);
    let evaluation = gate_decision(&gate, over_cap.as_bytes(), 1)?;
    let fault = evaluation.policies[0]
        .error
        .as_deref()
        .context("1006 findings, past the cap, and the policy did not fail closed")?;
    let over = "findings > cap";
    println!(
        "{:>10} {over:>32}  1000 business metrics: {} ({fault})",
        over_cap.len(),
        evaluation.decision.as_str(),
    );
    write(
        dir,
        "snapshot-size.svg",
        &Chart {
            title: "One decision against snapshot size",
            x: Axis::log("snapshot (bytes, log scale)"),
            y: Axis::log("median µs (log scale)"),
            series: vec![padded, padded_native, business],
            x_tick: bytes,
        },
    )?;

    println!();
    println!("Decision time against policies in the phase (builtin:canary each, median µs):");
    let example_text = example.to_string();
    let mut per_policy = Series {
        label: "gate",
        points: Vec::new(),
    };
    for count in POLICY_COUNTS {
        let gate =
            PreparedGate::prepare(runtime.clone(), gate_with_canaries(count)?, &[Phase::Abort])?;
        let us = median_us(|| allowed(gate_decision(&gate, example_text.as_bytes(), count)?))?;
        println!("{count:>10} policies {us:>10.1}");
        per_policy.points.push((count as f64, us));
    }
    write(
        dir,
        "policies.svg",
        &Chart {
            title: "One decision against policies in the phase",
            x: Axis::linear("policies"),
            y: Axis::linear("median µs"),
            series: vec![per_policy],
            x_tick: |x| format!("{x:.0}"),
        },
    )?;

    println!();
    println!("Server throughput against connections ({load_seconds} s each, log level info):");
    println!(
        "{:>12} {:>14} {:>8} {:>8} {:>12}",
        "connections", "decisions/s", "p50 µs", "p99 µs", "CPU µs each"
    );
    let cache = tempfile::tempdir()?;
    let server = start_server("info", cache.path(), &[])?;
    let request = post(
        &server.address,
        "/v1/evaluate",
        &json!({"phase": "abort", "snapshot": example}).to_string(),
    );
    let mut rate = Series {
        label: "decisions/s",
        points: Vec::new(),
    };
    for connections in CONNECTIONS {
        let LoadFigures {
            decisions_per_second,
            p50_us,
            p99_us,
            errors,
            server_cpu_us_per_decision,
            ..
        } = drive(
            &server,
            &request,
            connections,
            Duration::from_secs_f64(load_seconds / 4.0),
            Duration::from_secs_f64(load_seconds),
        )?;
        ensure!(
            errors == 0,
            "{errors} requests failed at {connections} connections"
        );
        println!(
            "{connections:>12} {decisions_per_second:>14.0} {p50_us:>8} {p99_us:>8} {:>12}",
            server_cpu_us_per_decision.map_or("?".into(), |cpu| format!("{cpu:.0}"))
        );
        rate.points.push((connections as f64, decisions_per_second));
    }
    write(
        dir,
        "connections.svg",
        &Chart {
            title: "Server throughput against connections",
            x: Axis::log("keep-alive connections (log scale)"),
            y: Axis::linear("decisions per second"),
            series: vec![rate],
            x_tick: |x| format!("{x:.0}"),
        },
    )?;
    println!();
    println!("Charts written to {}", dir.display());
    Ok(())
}

struct SnapshotPoint {
    gate_us: f64,
    native_us: f64,
    findings: usize,
}

/// A gate decision (parse, validate, encode, evaluate) and the native rules
/// (parse, evaluate) on one snapshot, which must be allowed by both.
fn measure_snapshot(gate: &PreparedGate, gate_json: &Value, text: &str) -> Result<SnapshotPoint> {
    let mut findings = 0;
    let gate_us = median_us(|| {
        let evaluation = gate_decision(gate, text.as_bytes(), 1)?;
        findings = evaluation.policies[0].findings.len();
        allowed(evaluation)
    })?;
    let mut with_gate: Value = serde_json::from_str(text)?;
    with_gate["gate"] = gate_json.clone();
    let with_gate = with_gate.to_string();
    let native_us = median_us(|| {
        let verdict = shipgate_policy::evaluate_json::<Canary>(Phase::Abort, &with_gate, "{}")
            .map_err(anyhow::Error::msg)?;
        ensure!(
            verdict.decision.as_str() == "allow",
            "native decided {}",
            verdict.decision.as_str()
        );
        Ok(())
    })?;
    Ok(SnapshotPoint {
        gate_us,
        native_us,
        findings,
    })
}

fn allowed(evaluation: Evaluation) -> Result<()> {
    ensure!(
        evaluation.decision.as_str() == "allow",
        "the gate decided {}",
        evaluation.decision.as_str()
    );
    Ok(())
}

/// The median of as many calls as fit in [`POINT_BUDGET`] (at least 15),
/// after a few warm-up calls.
fn median_us(mut call: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        call()?;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 15 || started.elapsed() < POINT_BUDGET {
        let call_started = Instant::now();
        call()?;
        samples.push(call_started.elapsed());
    }
    Ok(figures("point", samples).median_us)
}

/// The example grown to about `size` bytes with facts the abort phase does
/// not judge: resolved alerts and other changes in flight (which the host
/// still parses, validates and encodes, and the policy still decodes).
fn padded_to(example: &Value, size: usize) -> String {
    let mut snapshot = example.clone();
    let mut index = 0;
    while snapshot.to_string().len() < size {
        // Grow in steps of about 1/16 of what is missing, then check again.
        let missing = size - snapshot.to_string().len();
        for _ in 0..(missing / 16 / 120).max(1) {
            index += 1;
            if index % 2 == 0 {
                push(
                    &mut snapshot["alerts"],
                    json!({
                        "name": format!("QueueDepthHigh{index:06}"),
                        "severity": "warning",
                        "state": "resolved",
                        "since": "2026-11-26T12:10:00Z",
                        "expected": false
                    }),
                );
            } else {
                push(
                    &mut snapshot["deployment"]["changes_in_flight"],
                    json!({
                        "id": format!("chg-{index:06}"),
                        "service": "inventory",
                        "kind": "config",
                        "status": "completed"
                    }),
                );
            }
        }
    }
    snapshot.to_string()
}

fn push(list: &mut Value, item: Value) {
    list.as_array_mut()
        .expect("a list in the example")
        .push(item);
}

/// The example with `count` business metrics in both cohorts, at the same
/// rate per request as its `orders`, so every one passes.
fn with_business_metrics(example: &Value, count: usize) -> String {
    let mut snapshot = example.clone();
    for (cohort, events) in [("baseline", 5000), ("canary", 540)] {
        let business = &mut snapshot["metrics"][cohort]["business"];
        for index in 1..count {
            business[format!("event_{index:04}")] = json!(events);
        }
    }
    snapshot.to_string()
}

fn bytes(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1} MB", value / 1e6)
    } else {
        format!("{:.0} KB", value / 1e3)
    }
}

fn write(dir: &Path, name: &str, chart: &Chart) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, chart.svg()).with_context(|| format!("writing {}", path.display()))
}
