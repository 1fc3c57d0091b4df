//! Kayenta's remote judge as a service: a canary config (the stock judge
//! policy's config, as the Kayenta adapter maps it) and a snapshot of series
//! go through `builtin:judge` in the runtime, the same code a gate runs. Used
//! by `shipgate judge` and by the server's `/v1/kayenta/judge`.

use std::sync::Arc;

use serde_json::Value;
use shipgate_policy::judge::JUDGEMENT_LOG_PREFIX;
use shipgate_policy::{Phase, Snapshot};

use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Origin, without_nulls};
use crate::runtime::{Cancel, HostFault, Runtime};
use crate::snapshot::ValidSnapshot;

use super::Refusal;

/// What a judgement may take: Kayenta's requests carry up to 7 days of
/// per-minute points per cohort and metric, so the guest gets more room
/// and time than a gate's defaults, still well within the host's caps.
const JUDGE_MEMORY_MIB: u64 = 512;
const JUDGE_TIMEOUT_MS: u64 = 30_000;

/// The judge's answer.
#[derive(Debug)]
pub(crate) struct Judged {
    /// The judgement as the policy printed it (`shipgate_policy::judge::Judgement`).
    pub(crate) judgement: Value,
    /// Each metric's sentence (`check`, `message`), as its finding says it.
    pub(crate) sentences: Vec<(String, String)>,
}

/// Why there is no judgement.
#[derive(Debug)]
pub(crate) enum JudgeError {
    /// The config or the series cannot be judged (the caller's mistake).
    Invalid(String),
    /// The host could not run the judge (no slot, stopped): retry.
    Host(HostFault),
    /// The judge ran but gave no judgement: a fault of shipgate's.
    Internal(String),
}

impl From<JudgeError> for Error {
    fn from(error: JudgeError) -> Error {
        match error {
            JudgeError::Invalid(why) => Error::InvalidInput(why),
            JudgeError::Host(fault) => Error::Internal(anyhow::anyhow!("no judgement: {fault}")),
            JudgeError::Internal(why) => Error::Internal(anyhow::anyhow!(why)),
        }
    }
}

/// Judges `snapshot`'s series with the judge policy configured by
/// `config`; `label` names the request in errors (`<stdin>`, a file, an
/// HTTP request). `cancel` lets a caller that stops waiting stop the work.
pub(crate) fn judge(
    runtime: &Arc<Runtime>,
    config: &Value,
    snapshot: &ValidSnapshot,
    label: &str,
    cancel: Option<Cancel>,
) -> Result<Judged, JudgeError> {
    // Errors in the config name the request, as a gate file's name it.
    let origin = Origin::File(format!("{label}: canaryConfig").into());
    let gate =
        Gate::parse(&gate_text(config)?, origin).map_err(|e| JudgeError::Invalid(e.to_string()))?;
    let prepared =
        PreparedGate::prepare(runtime.clone(), gate, &[Phase::Promotion]).map_err(|e| match e {
            Error::Internal(_) => JudgeError::Internal(e.to_string()),
            other => JudgeError::Invalid(other.to_string()),
        })?;
    let budget = Budget {
        cancel,
        beside: None,
    };
    let evaluation = prepared
        .evaluate_with(Phase::Promotion, snapshot, Vec::new(), &budget)
        .map_err(JudgeError::Host)?;
    let outcome = evaluation
        .policies
        .first()
        .ok_or_else(|| JudgeError::Internal("the judge policy did not run".into()))?;
    let judgement = outcome
        .log
        .iter()
        .find_map(|line| line.strip_prefix(JUDGEMENT_LOG_PREFIX))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .ok_or_else(|| match outcome.error.as_deref() {
            // The request's size, not a fault of shipgate's.
            Some(error)
                if error.contains("a policy may print") || error.contains("output limit") =>
            {
                JudgeError::Invalid(format!("{label}: {error}"))
            }
            error => JudgeError::Internal(format!(
                "the judge gave no judgement: {}",
                error.unwrap_or("its log has none")
            )),
        })?;
    let sentences = outcome
        .findings
        .iter()
        .filter(|f| f.check != "score")
        .map(|f| (f.check.clone(), f.message.clone()))
        .collect();
    Ok(Judged {
        judgement,
        sentences,
    })
}

/// A gate of one policy, the stock judge with `config`, printing its
/// judgement into the decision's log.
fn gate_text(config: &Value) -> Result<String, JudgeError> {
    let mut config = config.clone();
    config["log_judgement"] = true.into();
    let table = toml::Value::try_from(without_nulls(config))
        .map_err(|e| JudgeError::Invalid(format!("canaryConfig: {e}")))?;
    let mut limits = toml::Table::new();
    limits.insert("memory_mib".into(), (JUDGE_MEMORY_MIB as i64).into());
    limits.insert("timeout_ms".into(), (JUDGE_TIMEOUT_MS as i64).into());
    let mut policy = toml::Table::new();
    policy.insert("name".into(), "judge".into());
    policy.insert("module".into(), "builtin:judge".into());
    policy.insert(
        "phases".into(),
        toml::Value::Array(vec!["promotion".into()]),
    );
    policy.insert("config".into(), table);
    let mut gate = toml::Table::new();
    gate.insert("name".into(), "kayenta-remote-judge".into());
    gate.insert("limits".into(), limits.into());
    gate.insert("policy".into(), toml::Value::Array(vec![policy.into()]));
    toml::to_string(&gate).map_err(|e| JudgeError::Internal(format!("the judge's gate: {e}")))
}

impl super::Service {
    /// Lets one more Kayenta request in before its body is read, unless
    /// `--max-judging` are in: each holds a body of up to
    /// `--max-judge-body-bytes` and a guest's memory, so they are bounded
    /// far below the `--max-pending` every request also counts in, and
    /// take no more than that many of the evaluation slots.
    pub(crate) fn admit_judgement(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        self.judging
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded)
    }

    /// One Kayenta judgement before `deadline`: the snapshot of series
    /// checked, the judge run with an evaluation slot on the
    /// blocking pool (it is seconds of work at Kayenta's largest), and
    /// stopped when the deadline passes.
    pub(crate) async fn judge(
        &self,
        config: Value,
        snapshot: Snapshot,
        sha256: String,
        label: String,
        deadline: tokio::time::Instant,
    ) -> Result<Judged, Refusal> {
        let started = std::time::Instant::now();
        let _in_flight = self.metrics.in_flight();
        let evaluating = tokio::time::timeout_at(deadline, self.evaluating.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::Timeout)?
            .map_err(|_| Refusal::Internal("the server is shutting down".into()))?;
        let runtime = self.runtime.clone();
        let cancel = Cancel::default();
        let _stop_if_dropped = super::CancelOnDrop(cancel.clone());
        let stop = cancel.clone();
        let work = tokio::task::spawn_blocking(move || {
            let _permit = evaluating;
            let snapshot = crate::snapshot::from_typed(snapshot, sha256)
                .map_err(|e| Refusal::BadSnapshot(format!("{label}: {e}")))?;
            judge(&runtime, &config, &snapshot, &label, Some(stop)).map_err(|e| match e {
                JudgeError::Invalid(why) => Refusal::BadSnapshot(why),
                JudgeError::Host(fault) => super::host_fault(fault),
                JudgeError::Internal(why) => Refusal::Internal(why),
            })
        });
        let judged = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Refusal::Timeout)?
            .map_err(|e| Refusal::Internal(format!("the judgement task failed: {e}")))??;
        let classification = judged.judgement["classification"]
            .as_str()
            .unwrap_or("Fail");
        self.metrics
            .judged(classification, started.elapsed().as_secs_f64());
        Ok(judged)
    }
}
