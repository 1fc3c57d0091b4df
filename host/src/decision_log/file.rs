//! The decision log as a file: each record appended whole and fsynced
//! before the decision is answered, in a file only its owner can read; a
//! record torn by a crash is cut off before the next one is written.
//!
//! Several processes may write one log (a server and `eval --decision-log`
//! runs): each write takes an exclusive advisory lock on the file (`flock`)
//! for its repair, record and fsync, so no writer cuts off what another
//! has just written. The log is never reached through a symbolic link, and
//! a log that others may read or write is refused: records hold snapshots.

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
        let _turn = WRITING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let created = !path.exists();
        let mut file = open(path)?;
        // Other processes writing this log wait here for their turn.
        lock_within(&file, LOCK_WAIT)?;
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
    write().map_err(|e| log_error(path, e))
}

/// Checks, before anything is decided, that the log can be written: the
/// server and `eval` refuse to start on a log they would refuse to write.
pub(crate) fn check(path: &Path) -> Result<(), Error> {
    open(path).map(drop).map_err(|e| log_error(path, e))
}

/// How long a write waits for another process's turn on the log.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The log opened for appending (created mode 0600): never through a
/// symbolic link, and refused when others may read or write it.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a symbolic link, which a decision log is never written through",
            ),
            _ => e,
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o777
    };
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "its mode {mode:o} lets others read or write it, and records hold snapshots; \
                 make it the owner's alone (chmod 600)"
            ),
        ));
    }
    Ok(file)
}

/// Takes the log's exclusive lock, waiting at most `wait` for another
/// process to let go of it (one stopped mid-write must not stall every
/// decision).
fn lock_within(file: &std::fs::File, wait: std::time::Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("another process has held its lock for {} s", wait.as_secs()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// A log that cannot be written: the user's to fix (a link, a mode, a
/// directory), or the host's.
fn log_error(path: &Path, e: std::io::Error) -> Error {
    let at = format!("the decision log {}", path.display());
    match e.kind() {
        std::io::ErrorKind::InvalidInput => Error::InvalidInput(format!("{at}: {e}")),
        std::io::ErrorKind::PermissionDenied => Error::NoPermission(format!("{at}: {e}")),
        _ => Error::Internal(anyhow::Error::new(e).context(format!("writing {at}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_writer_waits_for_another_process_holding_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        append_line(&path, "{\"first\":1}\n").unwrap();
        // Another process in the middle of its write (flock locks are
        // per open file, so a second open stands in for it).
        let other = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        other.lock().unwrap();
        let (done, finished) = mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                append_line(&path, "{\"second\":2}\n").unwrap();
                done.send(()).unwrap();
            })
        };
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "wrote while another process held the log"
        );
        // The other writer's record, torn at the moment, is whole by the
        // time it lets go: nothing is cut from it.
        (&other).write_all(b"{\"other\":3}\n").unwrap();
        other.unlock().unwrap();
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"first\":1}\n{\"other\":3}\n{\"second\":2}\n"
        );
    }

    #[test]
    fn a_lock_held_too_long_is_an_error_not_a_stall() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        append_line(&path, "{}\n").unwrap();
        let other = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        other.lock().unwrap();
        let mine = open(&path).unwrap();
        let error = lock_within(&mine, Duration::from_millis(50)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("another process has held its lock"),
            "{error}"
        );
    }

    #[test]
    fn links_and_logs_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.jsonl");
        std::fs::write(&target, "").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("decisions.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = append_line(&link, "{}\n").unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        // Said before anything is decided.
        let error = check(&link).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");

        let shared = dir.path().join("shared.jsonl");
        std::fs::write(&shared, "{}\n").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = format!("{:#}", append_line(&shared, "{}\n").unwrap_err());
        assert!(error.contains("its mode 644 lets others read"), "{error}");
        assert_eq!(std::fs::read_to_string(&shared).unwrap(), "{}\n");
    }
}
