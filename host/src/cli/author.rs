//! The policy author's commands: `new`, `build` and `test`.

use std::path::PathBuf;

use clap::ValueEnum;
use shipgate_policy::Phase;

use super::{parse_phase, print, runtime, write_file};
use crate::authoring;
use crate::error::{Error, exit};
use crate::report::{self, TestFormat};

#[derive(Debug, clap::Args)]
pub(super) struct NewArgs {
    /// The policy's name: lowercase letters, digits, '-' and '_'.
    name: String,
    /// Create the crate here instead of ./NAME (must not exist).
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// The phases the policy evaluates, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_phase,
          default_value = "promotion,abort")]
    phases: Vec<Phase>,
    /// Where the SDK comes from: crates-io (the release of this version),
    /// vendored (the copy this binary carries, written into
    /// vendor/shipgate-policy), path:DIR (an SDK crate on disk, e.g.
    /// path:policies/sdk of a checkout), or auto: crates.io when the registry
    /// has this version, else vendored.
    #[arg(long, value_name = "SOURCE", default_value = "auto")]
    sdk: authoring::SdkSource,
}

impl NewArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let created = authoring::create(&authoring::NewPolicy {
            name: &self.name,
            path: self.path.as_deref(),
            phases: &self.phases,
            sdk: &self.sdk,
        })?;
        print(&report::created(&self.name, &created));
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct BuildArgs {
    /// The policy crate's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BuildFormat::Text)]
    format: BuildFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BuildFormat {
    Text,
    Json,
}

impl BuildArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let built = match authoring::build(&runtime()?, &self.dir)? {
            authoring::BuildOutcome::CargoFailed => return Ok(exit::DENY),
            authoring::BuildOutcome::Built(built) => built,
        };
        print(&match self.format {
            BuildFormat::Json => report::json(&built),
            BuildFormat::Text => report::built(&built),
        });
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct TestArgs {
    /// Fixture files, or directories searched for *.toml.
    #[arg(value_name = "PATH", default_value = "tests/policy")]
    paths: Vec<PathBuf>,
    /// The gate for fixtures that name none (default: the built-in gate).
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
    /// Evaluate these modules (`builtin:NAME` or a .wasm path) instead of
    /// the gate's policies in every case.
    #[arg(long = "policy", value_name = "MODULE")]
    policies: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TestFormat::Text)]
    format: TestFormat,
    /// Write the report to FILE; the text report still goes to standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also report, per policy, each check and the decisions the cases saw
    /// it make, flagging checks never seen to deny or roll back.
    #[arg(long)]
    coverage: bool,
}

impl TestArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let setup = authoring::TestSetup {
            gate: self.gate.as_deref(),
            policies: &self.policies,
        };
        let run = authoring::run_tests(runtime()?, &self.paths, &setup)?;
        let rendered = report::test_run(&run, self.format, self.coverage);
        match &self.output {
            Some(path) => {
                write_file(path, &rendered)?;
                print(&report::test_run(&run, TestFormat::Text, self.coverage));
            }
            None => print(&rendered),
        }
        Ok(if run.failed == 0 {
            exit::ALLOW
        } else {
            exit::DENY
        })
    }
}
