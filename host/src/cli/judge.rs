//! `shipgate judge`: Kayenta's remote judge on the command line. A
//! `RemoteJudgeRequest` goes through the stock judge policy in the runtime,
//! the same code a gate runs, and comes back as Kayenta's
//! `CanaryJudgeResult`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;

use super::{print, runtime};
use crate::adapters::kayenta;
use crate::error::{Error, exit};
use crate::report::{self, Style};
use crate::service::judge;
use crate::snapshot;

#[derive(Debug, clap::Args)]
pub(super) struct JudgeArgs {
    /// Kayenta's `RemoteJudgeRequest` (`{canaryConfig, metricSetPairList,
    /// scoreThresholds}`, as Kayenta posts it); `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    kayenta_request: PathBuf,
    /// Output: Kayenta's `CanaryJudgeResult` (json), a line per metric
    /// (text), or a Markdown table.
    #[arg(long, value_enum, default_value_t = JudgeFormat::Json)]
    format: JudgeFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JudgeFormat {
    Json,
    Text,
    Markdown,
}

impl JudgeArgs {
    /// Exit 0 Pass, 1 Marginal, 2 Fail, as Kayenta classifies the score.
    pub(super) fn execute(&self) -> Result<i32, Error> {
        let label = if self.kayenta_request.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            self.kayenta_request.display().to_string()
        };
        let body = super::read_input(&self.kayenta_request)?;
        let now = jiff::Timestamp::now().to_string();
        let mut request = kayenta::parse(Arc::<[u8]>::from(body), &now)
            .map_err(|e| Error::InvalidInput(format!("{label}: {e}")))?;
        // Megabytes of series: moved into the snapshot, not copied.
        let typed = std::mem::take(&mut request.snapshot);
        let snapshot = snapshot::from_typed(typed, std::mem::take(&mut request.sha256))
            .map_err(|e| Error::InvalidInput(format!("{label}: {e}")))?;
        // The Markdown report draws the series the judge consumes.
        let series = (self.format == JudgeFormat::Markdown)
            .then(|| snapshot.typed().metrics.as_ref()?.series.clone())
            .flatten()
            .unwrap_or_default();
        let instances =
            judge::instances_for(&request.config, snapshot.typed(), super::COMMAND_INSTANCES);
        let judged = judge::judge(
            &Arc::new(runtime()?),
            &request.config,
            snapshot,
            &label,
            None,
            instances,
        )?;
        let (judgement, sentences) = (judged.judgement, judged.sentences);
        print(&match self.format {
            JudgeFormat::Json => report::json(&kayenta::result(&request, &judgement)),
            JudgeFormat::Text => {
                report::judgement_text(&judgement, &sentences, Style::from_env(false))
            }
            JudgeFormat::Markdown => report::judgement_markdown(&judgement, &sentences, &series),
        });
        Ok(match judgement["classification"].as_str() {
            Some("Pass") => exit::ALLOW,
            Some("Marginal") => exit::DENY,
            _ => exit::ROLLBACK,
        })
    }
}
