//! The decision log (JSON lines, one decision with its snapshot per line,
//! fsynced before the decision is returned) and its replay.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decision::Evaluation;
use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Mode};
use crate::runtime::{OUT_OF_DECISION_TIME, Runtime};
use crate::snapshot::{self, ValidSnapshot};

/// One line of the decision log.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(flatten)]
    pub(crate) evaluation: Evaluation,
    /// The snapshot as the caller sent it (without the host's `gate`).
    pub(crate) snapshot: Value,
}

/// Appends a decision to the log and flushes it to disk.
pub(crate) fn append(
    path: &Path,
    evaluation: &Evaluation,
    snapshot: &ValidSnapshot,
) -> Result<(), Error> {
    let record = Record {
        evaluation: evaluation.clone(),
        snapshot: snapshot.to_value(),
    };
    let mut line = serde_json::to_string(&record).expect("a record is JSON");
    line.push('\n');
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()
    };
    write().map_err(|e| {
        Error::Internal(
            anyhow::Error::new(e).context(format!("writing the decision log {}", path.display())),
        )
    })
}

/// What a replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) replayed: usize,
    /// (line number, decision id, what differs)
    pub(crate) differing: Vec<(usize, String, String)>,
}

/// Re-evaluates every record with `gate` and compares each policy's
/// decision, findings and log with what was recorded. Records made with
/// another gate (by digest) are refused: they cannot be replayed exactly.
pub(crate) fn replay(runtime: Arc<Runtime>, gate: Gate, log: &Path) -> Result<Replay, Error> {
    let file = std::fs::File::open(log).map_err(|e| Error::reading(log, e))?;
    let prepared = PreparedGate::prepare(runtime, gate, &shipgate_policy::Phase::ALL)?;
    let mut report = Replay::default();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| Error::reading(log, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{number}", log.display());
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| Error::InvalidInput(format!("{at}: not a decision record: {e}")))?;
        let recorded = &record.evaluation;
        if recorded.gate_sha256 != prepared.gate().sha256 {
            return Err(Error::InvalidInput(format!(
                "{at}: decision {} was made with gate sha256 {}, not {} ({}); pass that gate with --gate",
                recorded.decision_id,
                recorded.gate_sha256,
                prepared.gate().sha256,
                prepared.gate().origin.label()
            )));
        }
        let snapshot = snapshot::from_value(&record.snapshot, recorded.snapshot_sha256.clone())
            .map_err(|e| Error::InvalidInput(format!("{at}: snapshot: {e}")))?;
        // What a source could not find was part of the input: it stays.
        let evidence = recorded
            .policies
            .iter()
            .filter(|p| p.is_missing_evidence())
            .cloned()
            .collect();
        let again = prepared
            .evaluate_with(recorded.phase, &snapshot, evidence, &Budget::default())
            .map_err(|fault| Error::Internal(anyhow::anyhow!("{at}: no decision: {fault}")))?;
        if let Some(difference) = difference(recorded, &again) {
            report
                .differing
                .push((number, recorded.decision_id.clone(), difference));
        }
        report.replayed += 1;
    }
    Ok(report)
}

/// The first difference in what policies decided, ignoring timing and ids.
fn difference(recorded: &Evaluation, again: &Evaluation) -> Option<String> {
    if recorded.decision != again.decision {
        return Some(format!(
            "decision was {}, now {}",
            recorded.decision, again.decision
        ));
    }
    if recorded.policies.len() != again.policies.len() {
        return Some(format!(
            "{} policies recorded, {} now",
            recorded.policies.len(),
            again.policies.len()
        ));
    }
    for (was, now) in recorded.policies.iter().zip(&again.policies) {
        // A shadow policy stopped when the decision was made had less time
        // than a replay gives it; it never counted.
        let cut_short = was.mode == Mode::Shadow
            && was
                .error
                .as_deref()
                .is_some_and(|e| e.contains(OUT_OF_DECISION_TIME));
        if cut_short && was.name == now.name {
            continue;
        }
        let same = was.name == now.name
            && was.module_sha256 == now.module_sha256
            && was.decision == now.decision
            && was.findings == now.findings
            && was.error == now.error
            && was.log == now.log;
        if !same {
            return Some(format!(
                "policy '{}' now says {}: {}",
                now.name, now.decision, now.summary
            ));
        }
    }
    None
}
