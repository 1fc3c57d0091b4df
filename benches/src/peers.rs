//! The Rego and CEL engines, in their own process (`shipgate-peers`, see
//! benches/peers/Cargo.toml for why): started once, fed the inputs, asked
//! for one decision at a time over a pipe. The time of a call is the one
//! the engine's process measured.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shipgate_bench::siblings::sibling;

use crate::Input;

pub(crate) struct Peers {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    answer: String,
    /// The inputs' JSON, as files the process reads at start.
    _inputs: tempfile::TempDir,
}

impl Peers {
    pub(crate) fn start(inputs: &[Input]) -> Result<Peers> {
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(sibling("shipgate-peers")?);
        for input in inputs {
            let path = dir.path().join(format!("{}.json", input.index));
            std::fs::write(&path, &input.with_gate)?;
            command.arg(path);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting shipgate-peers")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Peers {
            child,
            stdin,
            stdout,
            answer: String::new(),
            _inputs: dir,
        })
    }

    /// `engine`'s decision on `input` and the time it took.
    pub(crate) fn decide(&mut self, engine: &str, input: &Input) -> Result<(String, Duration)> {
        writeln!(self.stdin, "{engine} {}", input.index)?;
        self.stdin.flush()?;
        self.answer.clear();
        if self.stdout.read_line(&mut self.answer)? == 0 {
            bail!("shipgate-peers stopped (its error is above)");
        }
        let (decision, nanos) = self
            .answer
            .trim_end()
            .split_once(' ')
            .with_context(|| format!("shipgate-peers answered '{}'", self.answer.trim_end()))?;
        let nanos: u64 = nanos.parse().context("shipgate-peers' time")?;
        Ok((decision.to_string(), Duration::from_nanos(nanos)))
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
