//! The command line: one file per command (as wasmtime's `src/commands/`),
//! each a clap struct with an `execute` that makes the library calls and
//! returns an exit code. `main.rs` only calls [`main`].

mod author;
mod docs;
mod eval;
mod gate;
mod judge;
mod registry;
mod report;
mod serve;

use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use shipgate_policy::Phase;

use crate::error::{Error, exit};
use crate::gate::Gate;
use crate::runtime::{Runtime, RuntimeConfig};

const EXIT_CODES: &str = "\
Exit codes:
  0   allow        the gate lets the deployment go ahead
  1   deny         block / hold / not verified yet
  2   rollback     roll back now
  64  usage error  (a mistyped flag never reads as rollback)
  65  invalid input: snapshot, gate file, policy config, content a registry refused
  66  an input file, tag or digest does not exist
  69  a registry or service shipgate needs is unreachable
  70  internal error
  77  a registry refused the credentials";

const JUDGE_EXIT_CODES: &str = "\
Exit codes:
  0   Pass         the canary's score reaches the pass threshold
  1   Marginal     at least marginal, below pass (keep observing)
  2   Fail         below marginal, or a critical metric failed
  65  invalid request: the message names the field
  66  the request file does not exist
  70  internal error";

/// `shipgate --version`: this binary, the policy contract it runs, and the
/// wasmtime it runs them with (both from the build: wit/ and Cargo.lock).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\npolicy contract: ",
    env!("SHIPGATE_CONTRACT"),
    "\nwasmtime: ",
    env!("SHIPGATE_WASMTIME_VERSION"),
);

/// A deployment gate: evaluates WebAssembly policies over a deployment
/// snapshot and answers allow, deny or rollback, with the reasons.
#[derive(Debug, Parser)]
#[command(name = "shipgate", version, long_version = LONG_VERSION, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a phase of a deployment: the gate step of a pipeline.
    #[command(after_help = EXIT_CODES)]
    Eval(eval::EvalArgs),
    /// List the stock policies and the phases they evaluate.
    Policies,
    /// Show what a policy module is: name, version, phases, sha256, size, imports.
    Inspect(gate::InspectArgs),
    /// Print the JSON Schema of a snapshot or a gate file.
    Schema(gate::SchemaArgs),
    /// Re-evaluate every decision in a decision log and report any that differ.
    Replay(report::ReplayArgs),
    /// Check a whole gate before a rollout: load every policy of every phase,
    /// verify pins and phases, and have each policy validate its config.
    Check(gate::CheckArgs),
    /// Draw a rollout from its decision log: a self-contained HTML page of
    /// its stages, decisions and metrics against their limits (--html), or
    /// the incident report of a rollback (--incident).
    Report(report::ReportArgs),
    /// Create a policy crate that builds and passes its own tests as
    /// generated: the policy, unit tests, fixtures, a gate and a README.
    New(author::NewArgs),
    /// Build a policy crate for wasm32-wasip2 with the stock policies'
    /// settings, check the component, and pin it in the crate's gate.toml.
    Build(author::BuildArgs),
    /// Run fixture cases (`tests/policy/*.toml`) through the real runtime:
    /// exit 0 when every case passes, 1 when any fails.
    Test(author::TestArgs),
    /// Publish a policy module to an OCI registry as a Wasm artifact; print
    /// its reference pinned to the digest, for a gate's `module`.
    Push(registry::PushArgs),
    /// Fetch a module (and its cosign signatures) from a registry into the
    /// module store, e.g. in an init container before `serve --store`.
    Pull(registry::PullArgs),
    /// Sign a module in a registry with a key, in cosign's format.
    Sign(registry::SignArgs),
    /// Judge a canary as Kayenta's remote judge: read a RemoteJudgeRequest,
    /// run the stock judge policy, print a CanaryJudgeResult.
    #[command(after_help = JUDGE_EXIT_CODES)]
    Judge(judge::JudgeArgs),
    /// Serve decisions over HTTP to Argo Rollouts, Spinnaker, Flagger and
    /// any client (see integrations/README.md).
    Serve(Box<serve::ServeArgs>),
    /// Print a shell completion script: `shipgate completions bash >
    /// /etc/bash_completion.d/shipgate`.
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff): `shipgate man | man -l -`; with --dir,
    /// write a page for every command into DIR instead.
    Man(docs::ManArgs),
}

/// The whole program: parse the process's arguments, run, and return the
/// exit code (see [`crate::exit`]). Errors are printed to stderr.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap's own usage code is 2, which a pipeline would read as
            // "rollback": usage errors are 64.
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::ALLOW,
                _ => exit::USAGE,
            };
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "shipgate: error: {}",
                crate::report::terminal_safe(&error.to_string())
            );
            error.exit_code()
        }
    }
}

/// Runs a parsed command and returns its exit code.
fn run(command: Command) -> Result<i32, Error> {
    match command {
        Command::Eval(args) => args.execute(),
        Command::Policies => gate::policies(),
        Command::Inspect(args) => args.execute(),
        Command::Schema(args) => args.execute(),
        Command::Check(args) => args.execute(),
        Command::Replay(args) => args.execute(),
        Command::Report(args) => args.execute(),
        Command::New(args) => args.execute(),
        Command::Build(args) => args.execute(),
        Command::Test(args) => args.execute(),
        Command::Push(args) => args.execute(),
        Command::Pull(args) => args.execute(),
        Command::Sign(args) => args.execute(),
        Command::Judge(args) => args.execute(),
        Command::Serve(args) => args.execute(),
        Command::Completions(args) => args.execute(),
        Command::Man(args) => args.execute(),
    }
}

/// Instances a command's runtime holds at once: a command evaluates one
/// policy at a time (a shadow beside it, or a judgement in two parts), and
/// a small pool keeps start-up short (every slot costs set-up system calls).
const COMMAND_INSTANCES: u32 = 2;

fn runtime() -> Result<Runtime, Error> {
    let config = RuntimeConfig {
        max_concurrent_instances: COMMAND_INSTANCES,
        ..RuntimeConfig::default()
    };
    Ok(Runtime::new(&config)?)
}

/// The gate file at `path`, or the built-in gate.
fn load_gate(path: Option<&Path>) -> Result<Gate, Error> {
    match path {
        Some(path) => Gate::read(path),
        None => Ok(Gate::default_gate()),
    }
}

/// A file's bytes, or standard input's for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, Error> {
    if path.as_os_str() != "-" {
        return std::fs::read(path).map_err(|e| Error::reading(path, e));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading standard input")))?;
    Ok(bytes)
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    text.parse()
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| writing(path, e))
}

fn append_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::reading(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| writing(path, e))
}

fn writing(path: &Path, error: std::io::Error) -> Error {
    Error::Internal(anyhow::Error::new(error).context(format!("writing {}", path.display())))
}

/// Prints to stdout, every control character but newline and tab written
/// out (text from snapshots and policies reaches a terminal); a closed pipe
/// (`shipgate ... | head`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(crate::report::terminal_safe(text).as_bytes())
        .and_then(|()| stdout.flush());
}

/// Where a command writes a report: a file, or standard output.
fn print_or_write(path: Option<&PathBuf>, text: &str) -> Result<(), Error> {
    match path {
        Some(path) => write_file(path, text),
        None => {
            print(text);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("shipgate").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn an_unknown_phase_is_a_usage_error_that_lists_the_phases() {
        let err = parse(&["eval", "--phase", "canary", "--snapshot", "s.json"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected preflight, promotion, abort or verify"),
            "{err}"
        );
    }

    #[test]
    fn schema_takes_snapshot_or_gate() {
        assert!(parse(&["schema", "gate"]).is_ok());
        assert!(parse(&["schema", "verdict"]).is_err());
    }

    #[test]
    fn every_command_has_help_and_parses_its_help_flag() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
