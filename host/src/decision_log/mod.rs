//! The decision log: one JSON line per decision, with its snapshot as
//! received (every token as sent, numbers included; only white space
//! between tokens is dropped, so that a record is one line), written whole,
//! fsynced before the decision is answered, in a file only its owner can
//! read ([`file`]); shipped to a collector ([`ship`]); read back (replay and
//! `shipgate report` read it).
//!
//! A record is a line: it is complete when its newline is there. A crash
//! in the middle of a write leaves a last line without one, a *torn tail*,
//! which a replay reports and skips; a record it can read, it replays.
//!
//! The same lines can go to standard output instead (`--decision-log -`,
//! for a cluster's log pipeline) or, batched and gzipped, to a collector
//! (`serve --decision-log-url`); replay reads a log as written, or gzipped.

mod file;
pub(crate) mod ship;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::decision::Evaluation;
use crate::error::Error;
use crate::snapshot::{self, ValidSnapshot};

pub(crate) use file::{append, check};

/// Writers of this process take turns, so that lines stay whole.
static WRITING: Mutex<()> = Mutex::new(());

/// One line of the decision log.
#[derive(Debug, Serialize, Deserialize)]
struct Record<'a> {
    #[serde(flatten)]
    evaluation: Evaluation,
    /// The snapshot as the caller sent it (without the host's `gate`): its
    /// tokens as sent, so every number replays exactly.
    #[serde(borrow)]
    snapshot: &'a RawValue,
    /// sha256 of `snapshot` as this line holds it (white space between
    /// tokens dropped), so that `replay` sees an edited snapshot for what it
    /// is. Absent from records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_record_sha256: Option<String>,
}

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
            LogTarget::File(path) => file::append_line(path, line),
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
        snapshot_record_sha256: Some(hex::encode(Sha256::digest(raw.get().as_bytes()))),
    };
    let mut line = serde_json::to_string(&record).expect("a record is JSON");
    line.push('\n');
    line
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
        if let Some(recorded) = &record.snapshot_record_sha256 {
            let actual = hex::encode(Sha256::digest(record.snapshot.get().as_bytes()));
            if !actual.eq_ignore_ascii_case(recorded) {
                return Err(Error::InvalidInput(format!(
                    "{at}: the snapshot was edited after it was recorded: its sha256 is {actual}, \
                     the record says {recorded}"
                )));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
