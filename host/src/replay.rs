//! Replaying a decision log: every record evaluated again with the gate it
//! names, and any decision that differs reported. By construction none
//! should: a decision is a pure function of module, phase, snapshot and
//! config.

use std::path::Path;
use std::sync::Arc;

use crate::decision::Evaluation;
use crate::decision_log::{self, Entry};
use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Mode};
use crate::runtime::{OUT_OF_DECISION_TIME, Runtime};

/// What a replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) replayed: usize,
    /// (line number, decision id, what differs)
    pub(crate) differing: Vec<(usize, String, String)>,
    /// The line number of a last record cut short by a crash, skipped.
    pub(crate) torn: Option<usize>,
}

/// Re-evaluates every record with `gate` and compares each policy's
/// decision, findings and log with what was recorded. Records made with
/// another gate (by digest) are refused: they cannot be replayed exactly.
pub(crate) fn replay(runtime: Arc<Runtime>, gate: Gate, log: &Path) -> Result<Replay, Error> {
    let prepared = PreparedGate::prepare(runtime, gate, &shipgate_policy::Phase::ALL)?;
    let mut report = Replay::default();
    let torn = decision_log::read(log, |entry| replay_one(&prepared, entry, &mut report))?;
    report.torn = torn;
    Ok(report)
}

fn replay_one(prepared: &PreparedGate, entry: Entry, report: &mut Replay) -> Result<(), Error> {
    let Entry {
        at,
        line,
        evaluation: recorded,
        snapshot,
    } = entry;
    if recorded.gate_sha256 != prepared.gate().sha256 {
        return Err(Error::InvalidInput(format!(
            "{at}: decision {} was made with gate sha256 {}, not {} ({}); pass that gate with --gate",
            recorded.decision_id,
            recorded.gate_sha256,
            prepared.gate().sha256,
            prepared.gate().origin.label()
        )));
    }
    // What a source could not find was part of the input: it stays.
    let evidence = recorded.evidence.clone();
    let again = prepared
        .evaluate_with(recorded.phase, &snapshot, evidence, &Budget::default())
        .map_err(|fault| Error::Internal(anyhow::anyhow!("{at}: no decision: {fault}")))?;
    if let Some(difference) = difference(&recorded, &again) {
        report
            .differing
            .push((line, recorded.decision_id.clone(), difference));
    }
    report.replayed += 1;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::{append, record_line};
    use crate::snapshot;

    fn runtime() -> Arc<Runtime> {
        crate::runtime::test_runtime(2)
    }

    /// The built-in gate, ready for the abort phase.
    fn abort_gate() -> PreparedGate {
        PreparedGate::prepare(
            runtime(),
            Gate::default_gate(),
            &[shipgate_policy::Phase::Abort],
        )
        .unwrap()
    }

    /// Numbers a float round trip would change, and the sender's spacing.
    const SENT: &str = r#"{"schema_version": 1,  "now": "2026-11-26T14:00:00Z",
        "metrics": {"canary": {"requests": 1e3, "errors": 0.30000000000000004}}}"#;

    #[test]
    fn a_record_keeps_the_snapshot_as_sent_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("decisions.jsonl");
        let snapshot = snapshot::parse(SENT.as_bytes()).unwrap();
        let gate = abort_gate();
        let evaluation = gate
            .evaluate(shipgate_policy::Phase::Abort, &snapshot)
            .unwrap();
        append(&log, &evaluation, &snapshot).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r#""snapshot":{"schema_version":1,"now":"2026-11-26T14:00:00Z","metrics":{"canary":{"requests":1e3,"errors":0.30000000000000004}}}"#),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let report = replay(runtime(), Gate::default_gate(), &log).unwrap();
        assert_eq!((report.replayed, report.differing.len()), (1, 0));
    }

    #[test]
    fn a_gzipped_log_replays_and_a_batch_cut_short_is_a_torn_tail() {
        use std::io::Write as _;
        let snapshot = snapshot::parse(SENT.as_bytes()).unwrap();
        let gate = abort_gate();
        // Two batches as a collector keeps them: one gzip member each.
        let member = || {
            let evaluation = gate
                .evaluate(shipgate_policy::Phase::Abort, &snapshot)
                .unwrap();
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder
                .write_all(record_line(&evaluation, &snapshot).as_bytes())
                .unwrap();
            encoder.finish().unwrap()
        };
        let (first, second) = (member(), member());
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("collected.jsonl.gz");
        std::fs::write(&log, [first.clone(), second.clone()].concat()).unwrap();
        let report = replay(runtime(), Gate::default_gate(), &log).unwrap();
        assert_eq!((report.replayed, report.torn), (2, None));
        std::fs::write(&log, [&first[..], &second[..second.len() / 2]].concat()).unwrap();
        let report = replay(runtime(), Gate::default_gate(), &log).unwrap();
        assert_eq!((report.replayed, report.torn), (1, Some(2)));
    }

    #[test]
    fn a_torn_last_record_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("decisions.jsonl");
        let snapshot = snapshot::parse(include_bytes!(
            "../../examples/snapshots/abort-rollback.json"
        ))
        .unwrap();
        let gate = abort_gate();
        for _ in 0..2 {
            let evaluation = gate
                .evaluate(shipgate_policy::Phase::Abort, &snapshot)
                .unwrap();
            append(&log, &evaluation, &snapshot).unwrap();
        }
        // A crash in the middle of the second write.
        let text = std::fs::read_to_string(&log).unwrap();
        let first_end = text.find('\n').unwrap() + 1;
        let cut = first_end + (text.len() - first_end) / 2;
        std::fs::write(&log, &text[..cut]).unwrap();
        let report = replay(runtime(), Gate::default_gate(), &log).unwrap();
        assert_eq!(report.replayed, 1);
        assert_eq!(report.torn, Some(2));
        assert!(report.differing.is_empty());
        // The next append cuts the torn record off instead of gluing to it.
        let evaluation = gate
            .evaluate(shipgate_policy::Phase::Abort, &snapshot)
            .unwrap();
        append(&log, &evaluation, &snapshot).unwrap();
        let report = replay(runtime(), Gate::default_gate(), &log).unwrap();
        assert_eq!((report.replayed, report.torn), (2, None));
        // A broken record that is not the last is no torn tail: an error.
        std::fs::write(
            &log,
            format!("{}\n{}", &text[first_end..cut], &text[..first_end]),
        )
        .unwrap();
        let error = replay(runtime(), Gate::default_gate(), &log)
            .unwrap_err()
            .to_string();
        assert!(error.contains(":1: not a decision record"), "{error}");
    }
}
