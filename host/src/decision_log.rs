//! The decision log: one JSON line per decision, with its snapshot as
//! received (every token as sent, numbers included; only white space
//! between tokens is dropped, so that a record is one line), written whole,
//! fsynced before the decision is answered, in a file only its owner can
//! read; and its replay.
//!
//! A record is a line: it is complete when its newline is there. A crash
//! in the middle of a write leaves a last line without one, a *torn tail*,
//! which a replay reports and skips; a record it can read, it replays.
//!
//! The same lines can go to standard output instead (`--decision-log -`,
//! for a cluster's log pipeline) or, batched and gzipped, to a collector
//! (`serve --decision-log-url`); replay reads a log as written, or gzipped.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decision::Evaluation;
use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Mode};
use crate::runtime::{OUT_OF_DECISION_TIME, Runtime};
use crate::snapshot::{self, ValidSnapshot};

/// One line of the decision log.
#[derive(Debug, Serialize, Deserialize)]
struct Record<'a> {
    #[serde(flatten)]
    evaluation: Evaluation,
    /// The snapshot as the caller sent it (without the host's `gate`): its
    /// tokens as sent, so every number replays exactly.
    #[serde(borrow)]
    snapshot: &'a RawValue,
}

/// The length of the file up to the end of its last whole record (its last
/// newline), reading backwards from the end.
fn whole_records_length(file: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 << 10;
    let mut end = file.metadata()?.len();
    let mut buffer = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Appends are whole lines: writers of this process take turns.
static WRITING: Mutex<()> = Mutex::new(());

/// Where decision records are written before a decision is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogTarget {
    /// A file, appended to and flushed to disk record by record.
    File(PathBuf),
    /// Standard output (`-`), a line per record, for a log pipeline.
    Stdout,
}

impl LogTarget {
    /// `-` is standard output; anything else a file.
    pub(crate) fn from_arg(path: &Path) -> LogTarget {
        if path.as_os_str() == "-" {
            LogTarget::Stdout
        } else {
            LogTarget::File(path.to_path_buf())
        }
    }

    /// Writes one record line (see [`record_line`]).
    pub(crate) fn write(&self, line: &str) -> Result<(), Error> {
        match self {
            LogTarget::File(path) => append_line(path, line),
            LogTarget::Stdout => {
                use std::sync::atomic::{AtomicBool, Ordering};
                // A write that failed part way left a line without its end:
                // the next record starts on a line of its own.
                static TORN: AtomicBool = AtomicBool::new(false);
                let _turn = WRITING
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut stdout = std::io::stdout().lock();
                let start: &[u8] = if TORN.load(Ordering::Relaxed) {
                    b"\n"
                } else {
                    b""
                };
                stdout
                    .write_all(start)
                    .and_then(|()| stdout.write_all(line.as_bytes()))
                    .and_then(|()| stdout.flush())
                    .inspect(|()| TORN.store(false, Ordering::Relaxed))
                    .map_err(|e| {
                        TORN.store(true, Ordering::Relaxed);
                        Error::Internal(
                            anyhow::Error::new(e)
                                .context("writing the decision log to standard output"),
                        )
                    })
            }
        }
    }
}

/// A decision and its snapshot as one JSON line, newline included.
pub(crate) fn record_line(evaluation: &Evaluation, snapshot: &ValidSnapshot) -> String {
    let text = one_line(snapshot.text());
    let raw: &RawValue = serde_json::from_str(&text).expect("a validated snapshot is JSON");
    let record = Record {
        evaluation: evaluation.clone(),
        snapshot: raw,
    };
    let mut line = serde_json::to_string(&record).expect("a record is JSON");
    line.push('\n');
    line
}

/// Appends a decision to the log file and flushes it to disk.
pub(crate) fn append(
    path: &Path,
    evaluation: &Evaluation,
    snapshot: &ValidSnapshot,
) -> Result<(), Error> {
    append_line(path, &record_line(evaluation, snapshot))
}

/// Appends a record line to the log file and flushes it to disk. A new log
/// is created readable by its owner only, and its directory entry is
/// flushed too, so the file itself survives a crash.
fn append_line(path: &Path, line: &str) -> Result<(), Error> {
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let _turn = WRITING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let created = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        // A record torn by a crash was never answered: cut it off, or the
        // next record would be glued to it. A write that fails is cut back
        // the same way, so the log always ends with a whole record.
        let whole = whole_records_length(&file)?;
        if whole < file.metadata()?.len() {
            file.set_len(whole)?;
        }
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            let _ = file.set_len(whole);
            return Err(e);
        }
        if created {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        Error::Internal(
            anyhow::Error::new(e).context(format!("writing the decision log {}", path.display())),
        )
    })
}

/// JSON text on one line: the white space between tokens dropped, every
/// token (strings, numbers) kept as it is.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\n', '\r']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What a replay found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) replayed: usize,
    /// (line number, decision id, what differs)
    pub(crate) differing: Vec<(usize, String, String)>,
    /// The line number of a last record cut short by a crash, skipped.
    pub(crate) torn: Option<usize>,
}

/// The log's lines: gzipped (what a collector received, kept as sent:
/// one gzip member per batch) or not, told by the gzip magic number.
fn log_reader(log: &Path) -> Result<Box<dyn BufRead>, Error> {
    let file = std::fs::File::open(log).map_err(|e| Error::reading(log, e))?;
    let mut file = std::io::BufReader::new(file);
    let gzipped = file
        .fill_buf()
        .map_err(|e| Error::reading(log, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped {
        Box::new(std::io::BufReader::new(
            flate2::bufread::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}

/// One whole record of a log, as read back.
pub(crate) struct Entry {
    /// `FILE:LINE`, for errors.
    pub(crate) at: String,
    pub(crate) line: usize,
    pub(crate) evaluation: Evaluation,
    /// The snapshot as received, validated again, under its recorded digest.
    pub(crate) snapshot: ValidSnapshot,
}

/// Reads every whole record of `log` in order, gzipped or not, and hands
/// each to `each`. Returns the line number of a last record cut short by a
/// crash (skipped), if any. A line that is not a record, or whose snapshot
/// is not valid, is an error naming the file and line.
pub(crate) fn read(
    log: &Path,
    mut each: impl FnMut(Entry) -> Result<(), Error>,
) -> Result<Option<usize>, Error> {
    let mut reader = log_reader(log)?;
    let mut bytes = Vec::new();
    for number in 1.. {
        bytes.clear();
        let read = match reader.read_until(b'\n', &mut bytes) {
            Ok(read) => read,
            // A gzip stream cut short (its last batch half written) ends
            // the log as a torn line does.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Some(number)),
            Err(e) => return Err(Error::reading(log, e)),
        };
        if read == 0 {
            break;
        }
        if bytes.last() != Some(&b'\n') {
            // A write cut short: the end of the log, and no record.
            return Ok(Some(number));
        }
        let line = std::str::from_utf8(&bytes).map_err(|_| {
            Error::InvalidInput(format!("{}:{number}: not UTF-8 text", log.display()))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{number}", log.display());
        let record: Record = serde_json::from_str(line)
            .map_err(|e| Error::InvalidInput(format!("{at}: not a decision record: {e}")))?;
        // Under the digest of the bytes received, which the record names.
        let digest = record.evaluation.snapshot_sha256.clone();
        let snapshot = snapshot::with_digest(record.snapshot.get(), digest)
            .map_err(|e| Error::InvalidInput(format!("{at}: snapshot: {e}")))?;
        each(Entry {
            at,
            line: number,
            evaluation: record.evaluation,
            snapshot,
        })?;
    }
    Ok(None)
}

/// Re-evaluates every record with `gate` and compares each policy's
/// decision, findings and log with what was recorded. Records made with
/// another gate (by digest) are refused: they cannot be replayed exactly.
pub(crate) fn replay(runtime: Arc<Runtime>, gate: Gate, log: &Path) -> Result<Replay, Error> {
    let prepared = PreparedGate::prepare(runtime, gate, &shipgate_policy::Phase::ALL)?;
    let mut report = Replay::default();
    let torn = read(log, |entry| replay_one(&prepared, entry, &mut report))?;
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
    let evidence = recorded
        .policies
        .iter()
        .filter(|p| p.is_missing_evidence())
        .cloned()
        .collect();
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
    use crate::runtime::RuntimeConfig;

    fn runtime() -> Arc<Runtime> {
        let config = RuntimeConfig {
            cache_dir: None,
            max_concurrent_instances: 2,
            ..Default::default()
        };
        Arc::new(Runtime::new(&config).unwrap())
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
    fn one_line_keeps_every_token_and_drops_the_space_between() {
        assert_eq!(
            one_line("{\n  \"a b\": \"x\\\" \\n y\",\r\n \"n\": 1.50 }"),
            "{\"a b\":\"x\\\" \\n y\",\"n\":1.50}"
        );
        assert!(matches!(
            one_line("{\"a\": 1}"),
            std::borrow::Cow::Borrowed(_)
        ));
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
