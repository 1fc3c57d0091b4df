//! `shipgate-peers INPUT.json...`: the engines users would otherwise pick,
//! timed for the benchmark in a process of their own (see Cargo.toml).
//!
//! Each line on stdin names an engine and an input, `rego 0` or `cel 1`;
//! the answer is one line, the decision and the call's time in
//! nanoseconds (`allow 41250`). The inputs (snapshot with its gate, as
//! JSON) are read once at start; the time covers what an OPA or CEL user's
//! call covers: the input parsed, the rules evaluated. Each timed call
//! follows an untimed one on the same input.

mod engines;

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let inputs = std::env::args()
        .skip(1)
        .map(|path| std::fs::read_to_string(&path).with_context(|| format!("reading {path}")))
        .collect::<Result<Vec<String>>>()?;
    let mut rego = engines::Rego::new()?;
    let cel = engines::Cel::new()?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (engine, index) = line
            .split_once(' ')
            .with_context(|| format!("'{line}': expected ENGINE INDEX"))?;
        let input = index
            .parse::<usize>()
            .ok()
            .and_then(|index| inputs.get(index))
            .with_context(|| format!("'{line}': no input {index}"))?;
        let mut decide = || match engine {
            "rego" => rego.decide(input),
            "cel" => cel.decide(input),
            other => bail!("'{line}': no engine {other} (rego, cel)"),
        };
        // Woken by the pipe, the engine would run on cold caches, which
        // the in-process cases, called back to back, do not: an untimed
        // call first.
        decide()?;
        let started = Instant::now();
        let decision = decide()?;
        let nanos = started.elapsed().as_nanos();
        writeln!(out, "{decision} {nanos}")?;
        out.flush()?;
    }
    Ok(())
}
