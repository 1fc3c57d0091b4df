//! Commands over a decision log: `report` draws a rollout, `replay`
//! re-evaluates every decision.

use std::path::PathBuf;
use std::sync::Arc;

use super::{load_gate, print, print_or_write, runtime, write_file};
use crate::error::{Error, exit};
use crate::history;
use crate::replay;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("report").required(true).args(["html", "incident"])))]
pub(super) struct ReportArgs {
    /// A decision log written by `eval --decision-log` or `serve` (gzipped
    /// or not).
    log: PathBuf,
    /// The deployment to draw (its `deployment.id`); needed when the log
    /// holds decisions about several.
    #[arg(long, value_name = "ID")]
    deployment: Option<String>,
    /// Write the rollout as one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Draft the incident report (Markdown) of this rollback decision
    /// (`last`: the deployment's last rollback), to standard output or
    /// --output.
    #[arg(long, value_name = "DECISION_ID|last", conflicts_with = "html")]
    incident: Option<String>,
    /// Write the incident report to FILE instead of standard output.
    #[arg(long, value_name = "FILE", requires = "incident")]
    output: Option<PathBuf>,
}

impl ReportArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let rollout = history::read(&self.log, self.deployment.as_deref())?;
        if let Some(line) = rollout.torn {
            eprintln!(
                "shipgate: warning: {}:{line}: the last record is cut short (a crash while \
                 writing); skipped",
                self.log.display()
            );
        }
        if let Some(path) = &self.html {
            write_file(path, &report::rollout_page(&rollout))?;
            eprintln!(
                "shipgate: wrote the report of {} decisions to {}",
                rollout.points.len(),
                path.display()
            );
        }
        if let Some(decision) = &self.incident {
            let incident = report::incident(&rollout, decision)?;
            print_or_write(self.output.as_ref(), &incident)?;
        }
        Ok(exit::ALLOW)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ReplayArgs {
    /// A decision log written by `eval --decision-log`.
    log: PathBuf,
    /// The gate the decisions were made with (default: the built-in gate).
    #[arg(long, value_name = "FILE")]
    gate: Option<PathBuf>,
}

impl ReplayArgs {
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let gate = load_gate(self.gate.as_deref())?;
        let replayed = replay::replay(Arc::new(runtime()?), gate, &self.log)?;
        print(&report::replay(&replayed));
        Ok(if replayed.differing.is_empty() {
            exit::ALLOW
        } else {
            exit::DENY
        })
    }
}
