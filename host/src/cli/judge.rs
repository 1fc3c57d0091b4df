//! `shipgate judge`: Kayenta's remote judge on the command line. A
//! `RemoteJudgeRequest` goes through the stock judge policy in the runtime,
//! the same code a gate runs, and comes back as Kayenta's
//! `CanaryJudgeResult`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use shipgate_policy::Phase;

use super::{print, runtime};
use crate::adapters::kayenta;
use crate::error::{Error, exit};
use crate::evaluate::PreparedGate;
use crate::gate::{Gate, Origin};
use crate::report::{self, Style};
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
        let request = kayenta::parse(&body, &now)
            .map_err(|e| Error::InvalidInput(format!("{label}: {e}")))?;
        let snapshot = snapshot::parse(request.snapshot.to_string().as_bytes())
            .map_err(|e| Error::InvalidInput(format!("{label}: {e}")))?;
        // Errors in the config name the request, as a gate file's name it.
        let origin = Origin::File(format!("{label}: canaryConfig").into());
        let gate = Gate::parse(&gate_text(&request.config)?, origin)?;
        let prepared = PreparedGate::prepare(Arc::new(runtime()?), gate, &[Phase::Promotion])
            .map_err(|e| match e {
                Error::Internal(_) => e,
                other => Error::InvalidInput(other.to_string()),
            })?;
        let evaluation = prepared
            .evaluate(Phase::Promotion, &snapshot)
            .map_err(|fault| Error::Internal(anyhow::anyhow!("no judgement: {fault}")))?;
        let outcome = evaluation
            .policies
            .first()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the judge policy did not run")))?;
        let judgement = outcome
            .log
            .iter()
            .find_map(|line| line.strip_prefix(kayenta::JUDGEMENT_LOG_PREFIX))
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "the judge gave no judgement: {}",
                    outcome.error.as_deref().unwrap_or("its log has none")
                ))
            })?;
        let sentences: Vec<(String, String)> = outcome
            .findings
            .iter()
            .filter(|f| f.check != "score")
            .map(|f| (f.check.clone(), f.message.clone()))
            .collect();
        print(&match self.format {
            JudgeFormat::Json => report::json(&kayenta::result(&request, &judgement)),
            JudgeFormat::Text => {
                report::judgement_text(&judgement, &sentences, Style::from_env(false))
            }
            JudgeFormat::Markdown => report::judgement_markdown(&judgement, &sentences),
        });
        Ok(match judgement["classification"].as_str() {
            Some("Pass") => exit::ALLOW,
            Some("Marginal") => exit::DENY,
            _ => exit::ROLLBACK,
        })
    }
}

/// A gate of one policy, the stock judge with the request's config.
fn gate_text(config: &serde_json::Value) -> Result<String, Error> {
    let mut config = config.clone();
    config["log_judgement"] = true.into();
    let table = toml::Value::try_from(without_nulls(config))
        .map_err(|e| Error::InvalidInput(format!("canaryConfig: {e}")))?;
    let mut gate = toml::Table::new();
    gate.insert("name".into(), "kayenta-remote-judge".into());
    let mut policy = toml::Table::new();
    policy.insert("name".into(), "judge".into());
    policy.insert("module".into(), "builtin:judge".into());
    policy.insert(
        "phases".into(),
        toml::Value::Array(vec!["promotion".into()]),
    );
    policy.insert("config".into(), table);
    gate.insert("policy".into(), toml::Value::Array(vec![policy.into()]));
    toml::to_string(&gate).map_err(|e| Error::Internal(anyhow::anyhow!("the judge's gate: {e}")))
}

/// TOML has no null: a key set to null in Kayenta's JSON is a key not set.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}
