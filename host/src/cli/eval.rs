//! `shipgate eval`: one decision, the gate step of a pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shipgate_policy::Phase;

use super::{append_file, load_gate, parse_phase, print, read_input, runtime, write_file};
use crate::decision_log;
use crate::error::Error;
use crate::evaluate::PreparedGate;
use crate::report::{self, Format, Style};
use crate::snapshot::{self, ValidSnapshot};

#[derive(Debug, clap::Args)]
pub(super) struct EvalArgs {
    /// The phase to decide: preflight, promotion, abort or verify.
    #[arg(long, value_parser = parse_phase)]
    phase: Phase,
    /// The deployment snapshot (JSON, schema v1 or v2); `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    snapshot: PathBuf,
    /// The gate file (TOML). Default: the built-in gate (stock policies,
    /// stages 5/10/25/50/100, 15 minutes a stage).
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
    /// Evaluate these modules (`builtin:NAME` or a .wasm path) instead of
    /// the gate's policies, under the gate's plan, thresholds and limits.
    #[arg(long = "policy", value_name = "MODULE")]
    policies: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List every check, passed ones too (text and github formats).
    #[arg(short, long)]
    verbose: bool,
    /// Append the decision, with its snapshot, to this JSON-lines log
    /// (flushed to disk before the decision is printed; a file: standard
    /// output carries the decision).
    #[arg(long, value_name = "FILE")]
    decision_log: Option<PathBuf>,
    /// Also write the decision and its summary as the files `decision` and
    /// `summary` in this directory (Tekton task results: /tekton/results).
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// Also write the decision as JUnit XML to this file, a test case per
    /// check (GitLab: `artifacts:reports:junit`).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

impl EvalArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        if self.decision_log.as_deref() == Some(Path::new("-")) {
            return Err(Error::Usage(
                "--decision-log -: standard output carries the decision here; name a file \
                 (serve writes its decision log to standard output with -)"
                    .into(),
            ));
        }
        if let Some(log) = &self.decision_log {
            decision_log::check(log)?;
        }
        // Inputs first: a bad snapshot or gate is reported before any module loads.
        let snapshot = read_snapshot(&self.snapshot)?;
        let mut gate = load_gate(self.gate.as_deref())?;
        if !self.policies.is_empty() {
            gate = gate.with_modules(&self.policies, self.phase)?;
        }
        for policy in gate.unpinned_references() {
            eprintln!(
                "shipgate: warning: policy '{}': {} names no digest, so what runs can change \
                 under the gate; pin it (oci://…@sha256:…, as `shipgate push` prints)",
                policy.name, policy.module
            );
        }
        let prepared = PreparedGate::prepare(Arc::new(runtime()?), gate, &[self.phase])?;
        let evaluation = prepared
            .evaluate(self.phase, &snapshot)
            .map_err(|fault| Error::Internal(anyhow::anyhow!("no decision: {fault}")))?;
        if let Some(log) = &self.decision_log {
            decision_log::append(log, &evaluation, &snapshot)?;
        }
        if let Some(dir) = &self.results_dir {
            for (name, text) in report::task_results(&evaluation) {
                write_file(&dir.join(name), &text)?;
            }
        }
        if let Some(path) = &self.junit {
            write_file(path, &report::junit(&evaluation))?;
        }
        print(&report::render(
            &evaluation,
            self.format,
            Style::from_env(self.verbose),
        ));
        if self.format == Format::Github
            && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty())
        {
            // The decision is made and printed: a summary that cannot be
            // written must not change the exit code a pipeline acts on.
            if let Err(error) = append_file(Path::new(&summary), &report::markdown(&evaluation)) {
                eprintln!("shipgate: warning: GITHUB_STEP_SUMMARY: {error}");
            }
        }
        Ok(report::exit_code(evaluation.decision))
    }
}

/// Reads and validates the snapshot; errors are prefixed with the file.
fn read_snapshot(path: &Path) -> Result<ValidSnapshot, Error> {
    let bytes = read_input(path)?;
    let label = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    snapshot::parse(&bytes).map_err(|e| Error::InvalidInput(format!("{label}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::super::tests::parse;
    use super::*;

    #[test]
    fn eval_takes_phase_snapshot_gate_policies_and_format() {
        let command = parse(&[
            "eval",
            "--phase",
            "abort",
            "--snapshot",
            "-",
            "--gate",
            "g.toml",
            "--policy",
            "builtin:canary",
            "--policy",
            "x.wasm",
            "--format",
            "github",
        ])
        .unwrap();
        let Command::Eval(args) = command else {
            panic!("not eval")
        };
        assert_eq!(args.phase, Phase::Abort);
        assert_eq!(args.policies, ["builtin:canary", "x.wasm"]);
        assert_eq!(args.format, Format::Github);
    }
}
