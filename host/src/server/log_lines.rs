//! The server's log lines go to stderr in batches. Writing each line on its
//! own cost a system call and a wake-up of whatever reads the pipe, for
//! every decision: about 4 % of a loaded server's CPU. Here a line is
//! copied into a buffer, and a thread writes what has gathered a moment
//! ([`LINGER`]) after the first line of a batch arrived. Nothing is dropped:
//! past [`MAX_PENDING`] the writer waits for stderr as before, and
//! [`Flush`] writes the rest when the server stops.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the first line of a batch waits for others.
const LINGER: Duration = Duration::from_millis(2);
/// Bytes buffered at most; a line that finds more writes them itself.
const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// No writer thread any more: lines go straight to stderr.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writer the log subscriber makes its lines with.
#[derive(Clone)]
pub(crate) struct LogLines(Arc<Shared>);

/// Writes what is buffered and stops the writer thread when dropped.
pub(crate) struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogLines {
    pub(crate) fn start() -> (LogLines, Flush) {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shipgate-log".into())
            .spawn(move || write_batches(&writer))
            .ok();
        // Without a thread (none could be started), every line is written
        // at once.
        shared.lock().closed = thread.is_none();
        let flush = Flush {
            shared: shared.clone(),
            thread,
        };
        (LogLines(shared), flush)
    }
}

fn write_batches(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .arrived
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(LINGER);
            pending = shared.lock();
        }
        std::mem::swap(&mut batch, &mut pending.bytes);
        let closed = pending.closed;
        drop(pending);
        // Nowhere else to report a failed write to stderr.
        let _ = std::io::stderr().write_all(&batch);
        batch.clear();
        if closed {
            return;
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line on its way (the subscriber writes each event whole).
pub(crate) struct Line<'a>(&'a Shared);

impl<'a> MakeWriter<'a> for LogLines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.0.lock();
        if pending.closed || pending.bytes.len() + line.len() > MAX_PENDING {
            // In order: what is buffered first, under the lock.
            let mut stderr = std::io::stderr().lock();
            stderr.write_all(&std::mem::take(&mut pending.bytes))?;
            stderr.write_all(line)?;
            return Ok(line.len());
        }
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        if first {
            self.0.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flush_writes_everything_buffered_and_later_lines_go_straight_out() {
        let (lines, flush) = LogLines::start();
        let mut writer = lines.make_writer();
        for _ in 0..1000 {
            writer.write_all(b"{\"message\":\"decision\"}\n").unwrap();
        }
        drop(flush);
        assert!(lines.0.lock().closed);
        assert!(lines.0.lock().bytes.is_empty(), "all written");
        writer.write_all(b"{\"message\":\"after\"}\n").unwrap();
        assert!(lines.0.lock().bytes.is_empty(), "not buffered once closed");
    }
}
