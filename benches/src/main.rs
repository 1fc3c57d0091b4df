//! `cargo run --release -p shipgate-bench -- [--json]`, or
//! `-- --growth DIR` for how the cost grows (see [`growth`]).
//!
//! Measures, in one run and on the same example snapshots (the repo's
//! abort-allow and abort-rollback), the cost of one canary decision:
//!
//! - `native`: builtin:canary's rules compiled natively, JSON parse included (the floor);
//! - `wasm_fresh`: the real runtime path: snapshot parsed and validated by the host, encoded, a fresh
//!   store and instance with deadline and memory limit, the verdict checked;
//! - `wasm_reused`: one instance reused (for reference only: no isolation);
//! - `regorus` and `cel`: the same rules in Rego and in CEL (timed in a
//!   process of their own, `shipgate-peers`: see benches/peers);
//! - `gate1` and `gate5`: a whole gate with 1 and with 5 policies for the phase;
//! - `gate5_parallel`: five fresh decisions split over the cores (not the
//!   host's path: what concurrency within a phase would give);
//! - `cli_cold` and `cli_native`: whole processes, `shipgate eval` with a cached
//!   module against a native binary doing parse + rules + print;
//! - `judge_native`, `judge_wasm` and `judge_http`: the statistical judge at
//!   Kayenta's scale, natively, in the runtime, and through a server (see
//!   [`judge`]).
//!
//! Every engine must reach the same decision on every snapshot; the run
//! stops otherwise.

mod growth;
mod judge;
mod peers;
mod plot;

use peers::Peers;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use serde_json::{Value, json};
use shipgate::decision::Evaluation;
use shipgate::evaluate::PreparedGate;
use shipgate::gate::{Gate, Origin};
use shipgate::runtime::{Determinism, Limits, LoadedModule, Runtime, RuntimeConfig};
use shipgate::snapshot::{self, ValidSnapshot};
use shipgate_bench::load::repo;
use shipgate_bench::siblings::sibling;
use shipgate_policy::Phase;
use shipgate_policy::wire::EncodedGate;
use shipgate_policy_canary::Canary;

const SNAPSHOTS: [(&str, &str); 2] = [("abort-allow", "allow"), ("abort-rollback", "rollback")];

struct Options {
    json: bool,
    iterations: usize,
    process_runs: usize,
    /// Where `--growth` writes its charts; `None` runs the comparison.
    growth: Option<PathBuf>,
    /// Seconds of load per connection count, for `--growth` only.
    load_seconds: Option<f64>,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        json: false,
        iterations: 3000,
        process_runs: 60,
        growth: None,
        load_seconds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            let value = args
                .next()
                .with_context(|| format!("{name} needs a number"))?;
            value
                .parse()
                .with_context(|| format!("{name}: '{value}' is not a number"))
        };
        match arg.as_str() {
            "--json" => options.json = true,
            "--iterations" => options.iterations = number("--iterations")?.max(1),
            "--process-runs" => options.process_runs = number("--process-runs")?.max(1),
            "--load-seconds" => {
                let seconds = number("--load-seconds")?;
                ensure!(seconds > 0, "--load-seconds must be at least 1");
                options.load_seconds = Some(seconds as f64);
            }
            "--growth" => match args.next() {
                Some(dir) if !dir.starts_with('-') => options.growth = Some(dir.into()),
                _ => bail!("--growth needs a directory to write its charts to"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: shipgate-bench [--json] [--iterations N (3000)] [--process-runs N (60)]\n       \
                     shipgate-bench --growth DIR [--load-seconds N (3)]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}' (try --help)"),
        }
    }
    ensure!(
        options.load_seconds.is_none() || options.growth.is_some(),
        "--load-seconds goes with --growth"
    );
    ensure!(
        options.growth.is_none() || !options.json,
        "--growth prints a table and writes charts; --json is for the comparison"
    );
    Ok(options)
}

/// Median and 99th percentile of a case, in microseconds.
pub(crate) struct Figures {
    name: &'static str,
    pub(crate) median_us: f64,
    p99_us: f64,
}

pub(crate) fn figures(name: &'static str, mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Figures {
        name,
        median_us: at(0.5),
        p99_us: at(0.99),
    }
}

/// One call: decide one input, check the decision. It returns the time
/// the call measured itself (a call into another process times the work
/// there, without the pipe), or `None` to be timed from here.
type Call<'a> = Box<dyn FnMut(&Input) -> Result<Option<Duration>> + 'a>;

/// One case: a name, what its number of calls is divided by (1: all of
/// them; 10: a tenth, for a slow engine), and the call.
struct Case<'a> {
    name: &'static str,
    divisor: usize,
    call: Call<'a>,
    samples: Vec<Duration>,
}

impl<'a> Case<'a> {
    fn new(
        name: &'static str,
        divisor: usize,
        mut call: impl FnMut(&Input) -> Result<()> + 'a,
    ) -> Self {
        Case::self_timed(name, divisor, move |input| call(input).map(|()| None))
    }

    fn self_timed(
        name: &'static str,
        divisor: usize,
        call: impl FnMut(&Input) -> Result<Option<Duration>> + 'a,
    ) -> Self {
        Case {
            name,
            divisor,
            call: Box::new(call),
            samples: Vec::new(),
        }
    }
}

/// How many rounds the in-process cases are interleaved over.
const ROUNDS: usize = 20;

/// Times `iterations / divisor` calls (at least one) per snapshot of every
/// case, after a warm-up. The cases take turns in [`ROUNDS`] rounds, each
/// round a share of every case's calls, alternating the snapshots, so that a
/// noisy spell of the machine falls on every case alike instead of on
/// whichever ran then: the ratios compare like with like.
fn time_interleaved(iterations: usize, inputs: &[Input], cases: &mut [Case]) -> Result<()> {
    for case in cases.iter_mut() {
        for input in inputs {
            for _ in 0..(iterations / 10 / case.divisor).max(1) {
                (case.call)(input)?;
            }
        }
    }
    for round in 0..ROUNDS {
        for case in cases.iter_mut() {
            // Round r takes calls [total*r/ROUNDS, total*(r+1)/ROUNDS).
            let total = (iterations / case.divisor).max(1);
            let calls = total * (round + 1) / ROUNDS - total * round / ROUNDS;
            for _ in 0..calls {
                for input in inputs {
                    let started = Instant::now();
                    let measured = (case.call)(input)?;
                    case.samples
                        .push(measured.unwrap_or_else(|| started.elapsed()));
                }
            }
        }
    }
    Ok(())
}

/// One example snapshot in the forms the engines take.
struct Input {
    /// Its place in the list, as the peers process knows it.
    index: usize,
    name: &'static str,
    expected: &'static str,
    path: PathBuf,
    /// The snapshot as a CD system sends it.
    bytes: Vec<u8>,
    /// The snapshot with the gate object, as JSON (the native, Rego and CEL
    /// engines parse it).
    with_gate: String,
    /// The same in the contract's encoding, as a wasm policy receives it.
    wire: Vec<u8>,
}

fn load_inputs(gate: &Gate, gate_wire: &EncodedGate) -> Result<Vec<Input>> {
    SNAPSHOTS
        .iter()
        .enumerate()
        .map(|(index, &(name, expected))| {
            let path = repo().join(format!("examples/snapshots/{name}.json"));
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut value: Value = serde_json::from_slice(&bytes)?;
            value["gate"] = serde_json::to_value(gate.snapshot_gate())?;
            Ok(Input {
                index,
                name,
                expected,
                path,
                with_gate: value.to_string(),
                wire: snapshot::parse(&bytes)?.encode_with_gate(gate_wire),
                bytes,
            })
        })
        .collect()
}

fn check(engine: &str, input: &Input, decision: &str) -> Result<()> {
    ensure!(
        decision == input.expected,
        "{engine} decided {decision} on {}, expected {}",
        input.name,
        input.expected
    );
    Ok(())
}

pub(crate) fn gate_with_canaries(count: usize) -> Result<Gate> {
    let mut text = String::from(shipgate::gate::DEFAULT_GATE);
    text = text.replace("name = \"default\"", &format!("name = \"bench-{count}\""));
    let policies_start = text
        .find("[[policy]]")
        .context("the default gate has policies")?;
    text.truncate(policies_start);
    for i in 1..=count {
        text.push_str(&format!(
            "[[policy]]\nname = \"canary-{i}\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n\n"
        ));
    }
    Ok(Gate::parse(&text, Origin::BuiltIn)?)
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let cache = tempfile::tempdir()?;
    let runtime = Arc::new(Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })?);
    if let Some(dir) = &options.growth {
        return growth::run(dir, runtime, options.load_seconds.unwrap_or(3.0));
    }
    let gate1 = PreparedGate::prepare(runtime.clone(), gate_with_canaries(1)?, &[Phase::Abort])?;
    let gate5 = PreparedGate::prepare(runtime.clone(), gate_with_canaries(5)?, &[Phase::Abort])?;
    let gate_wire = EncodedGate::new(&gate1.gate().snapshot_gate());
    let inputs = load_inputs(gate1.gate(), &gate_wire)?;
    let module = runtime
        .load(
            shipgate::builtins::lookup("builtin:canary")
                .context("builtin:canary")?
                .bytes,
        )
        .map_err(anyhow::Error::msg)?;
    let limits = Limits::default();
    let n = options.iterations;

    let mut reused = runtime
        .reused_instance(&module, limits)
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    // Every process is built (or found) before anything is timed.
    let shipgate = sibling("shipgate")?;
    let cli_native = sibling("cli-native")?;
    let mut peers = Peers::start(&inputs)?;
    let peers = std::cell::RefCell::new(&mut peers);
    let judge = std::cell::RefCell::new(judge::JudgeBench::new(runtime.clone(), cache.path())?);
    let mut cases = vec![
        Case::new("native", 1, |input| {
            let verdict =
                shipgate_policy::evaluate_json::<Canary>(Phase::Abort, &input.with_gate, "{}")
                    .map_err(anyhow::Error::msg)?;
            check("native", input, verdict.decision.as_str())
        }),
        Case::new("wasm_fresh", 1, |input| {
            let snapshot = snapshot::parse(&input.bytes)?;
            let wire = snapshot.encode_with_gate(&gate_wire);
            let decision = fresh_decision(&runtime, &module, &wire, &snapshot, limits)?;
            check("wasm_fresh", input, &decision)
        }),
        Case::new("wasm_reused", 1, |input| {
            let verdict = reused
                .evaluate(Phase::Abort, &input.wire, "{}")
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            check("wasm_reused", input, verdict.decision.as_str())
        }),
        // Rego is slower: fewer calls give the same confidence.
        Case::self_timed("regorus", 10, |input| {
            let (decision, took) = peers.borrow_mut().decide("rego", input)?;
            check("regorus", input, &decision).map(|()| Some(took))
        }),
        Case::self_timed("cel", 1, |input| {
            let (decision, took) = peers.borrow_mut().decide("cel", input)?;
            check("cel", input, &decision).map(|()| Some(took))
        }),
        Case::new("gate1", 1, whole_gate("gate1", &gate1, 1)),
        Case::new("gate5", 1, whole_gate("gate5", &gate5, 5)),
        // Not the host's path: what running a phase's five policies
        // concurrently (over rayon's threads, one per core) would give when
        // cores are free. Compare with wasm_fresh, which is one of them.
        Case::new("gate5_parallel", 1, |input| {
            let snapshot = snapshot::parse(&input.bytes)?;
            let wire = snapshot.encode_with_gate(&gate_wire);
            (0..5).into_par_iter().try_for_each(|_| {
                let decision = fresh_decision(&runtime, &module, &wire, &snapshot, limits)?;
                check("gate5_parallel", input, &decision)
            })
        }),
        // A judgement at Kayenta's scale takes tens of milliseconds: a
        // hundredth of the calls.
        Case::new("judge_native", 100, |_| judge.borrow().check_native()),
        Case::new("judge_wasm", 100, |_| judge.borrow().wasm()),
        Case::new("judge_http", 100, |_| judge.borrow_mut().http()),
    ];
    time_interleaved(n, &inputs, &mut cases)?;
    let mut results: Vec<Figures> = cases
        .into_iter()
        .map(|case| figures(case.name, case.samples))
        .collect();

    let mut processes = [
        process_case("cli_cold", |input| {
            let mut command = Command::new(&shipgate);
            command
                .args(["eval", "--phase", "abort", "--format", "json", "--snapshot"])
                .arg(&input.path)
                .env("SHIPGATE_CACHE_DIR", cache.path());
            command
        }),
        process_case("cli_native", |input| {
            let mut command = Command::new(&cli_native);
            command.arg(&input.path);
            command
        }),
    ];
    time_interleaved(options.process_runs, &inputs, &mut processes)?;
    results.extend(
        processes
            .into_iter()
            .map(|case| figures(case.name, case.samples)),
    );

    report(&results, options.json);
    Ok(())
}

/// A whole-process case; each process must exit with its snapshot's
/// decision code.
fn process_case<'a>(name: &'static str, command: impl Fn(&Input) -> Command + 'a) -> Case<'a> {
    Case::new(name, 1, move |input| {
        let output = command(input).output()?;
        let expected = match input.expected {
            "allow" => 0,
            "deny" => 1,
            _ => 2,
        };
        ensure!(
            output.status.code() == Some(expected),
            "{:?} on {} exited {:?}: {}",
            command(input).get_program(),
            input.name,
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    })
}

/// One policy's decision in a fresh instance on a snapshot already parsed
/// and encoded: the runtime's real path, without the gate around it.
fn fresh_decision(
    runtime: &Runtime,
    module: &LoadedModule,
    wire: &[u8],
    snapshot: &ValidSnapshot,
    limits: Limits,
) -> Result<String> {
    let determinism = Determinism {
        now_unix_seconds: snapshot.now.unix_seconds(),
        seed: [0; 32],
    };
    let called = runtime.evaluate(module, Phase::Abort, wire, "{}", limits, determinism, None);
    let verdict = called.result.map_err(|f| anyhow::anyhow!("{f}"))?;
    Ok(verdict.decision.as_str().to_string())
}

/// A whole gate decision in the abort phase: parse and validate the
/// snapshot, run the gate, which must have run `policies` policies.
pub(crate) fn gate_decision(
    gate: &PreparedGate,
    snapshot_bytes: &[u8],
    policies: usize,
) -> Result<Evaluation> {
    let evaluation = gate.evaluate(Phase::Abort, &snapshot::parse(snapshot_bytes)?)?;
    ensure!(
        evaluation.policies.len() == policies,
        "the gate ran {} policies, not {policies}",
        evaluation.policies.len()
    );
    Ok(evaluation)
}

fn whole_gate<'a>(
    name: &'static str,
    gate: &'a PreparedGate,
    policies: usize,
) -> impl FnMut(&Input) -> Result<()> + 'a {
    move |input| {
        let evaluation = gate_decision(gate, &input.bytes, policies)?;
        check(name, input, evaluation.decision.as_str())
    }
}

fn find<'a>(results: &'a [Figures], name: &str) -> &'a Figures {
    results
        .iter()
        .find(|f| f.name == name)
        .expect("every case is measured")
}

fn report(results: &[Figures], as_json: bool) {
    let ratio = |a: &str, b: &str| find(results, a).median_us / find(results, b).median_us;
    let ratios = [
        ("wasm_fresh/native", ratio("wasm_fresh", "native"), "<= 2.0"),
        ("regorus/wasm_fresh", ratio("regorus", "wasm_fresh"), ">= 5"),
        ("cel/wasm_fresh", ratio("cel", "wasm_fresh"), ">= 5"),
        ("gate5/gate1", ratio("gate5", "gate1"), "<= 2.5"),
        (
            "gate5_parallel/wasm_fresh",
            ratio("gate5_parallel", "wasm_fresh"),
            "(for reference)",
        ),
        (
            "cli_cold/cli_native",
            ratio("cli_cold", "cli_native"),
            "<= 2.0",
        ),
        (
            "judge_wasm/judge_native",
            ratio("judge_wasm", "judge_native"),
            "<= 2.0",
        ),
        (
            "judge_http median ms",
            find(results, "judge_http").median_us / 1000.0,
            "<= 50",
        ),
        (
            "wasm_fresh p99/median",
            find(results, "wasm_fresh").p99_us / find(results, "wasm_fresh").median_us,
            "<= 3.0",
        ),
    ];
    if as_json {
        let mut cases = serde_json::Map::new();
        for f in results {
            cases.insert(
                f.name.to_string(),
                json!({"median_us": round(f.median_us), "p99_us": round(f.p99_us)}),
            );
        }
        let mut ratio_map = serde_json::Map::new();
        for (name, value, _) in &ratios {
            ratio_map.insert(name.to_string(), json!(round(*value)));
        }
        println!("{}", json!({"cases": cases, "ratios": ratio_map}));
        return;
    }
    println!("{:<14} {:>12} {:>12}", "case", "median µs", "p99 µs");
    for f in results {
        println!("{:<14} {:>12.1} {:>12.1}", f.name, f.median_us, f.p99_us);
    }
    println!();
    println!("{:<24} {:>8}   target", "ratio", "value");
    for (name, value, target) in ratios {
        println!("{name:<24} {value:>8.2}   {target}");
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
