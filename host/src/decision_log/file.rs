//! The decision log as a file: each record appended whole and fsynced
//! before the decision is answered, in a file only its owner can read; a
//! record torn by a crash is cut off before the next one is written.

use super::{WRITING, record_line};
use crate::decision::Evaluation;
use crate::error::Error;
use crate::snapshot::ValidSnapshot;
use std::io::Write;
use std::path::Path;

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
pub(super) fn append_line(path: &Path, line: &str) -> Result<(), Error> {
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
