//! The server's log lines go to stderr in batches. Writing each line on its
//! own cost a system call and a wake-up of whatever reads the pipe, for
//! every decision: about 4 % of a loaded server's CPU. Here a line is
//! copied into a buffer, and a thread writes what has gathered a moment
//! ([`LINGER`]) after the first line of a batch arrived. Lines keep their
//! order; past [`MAX_PENDING`] the writer waits for stderr as before, and
//! [`Flush`] writes the rest when the server stops. A process killed
//! outright loses what is buffered: at most [`LINGER`] of lines.

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
    /// No writer thread any more: lines go straight to the sink.
    closed: bool,
}

type Sink = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Pending>,
    arrived: Condvar,
    /// Always taken after `pending`, never before: whoever writes holds
    /// the sink before letting the next lines in, so they stay in order.
    sink: Mutex<Sink>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// Lines to stderr.
    pub(crate) fn start() -> (LogLines, Flush) {
        LogLines::to(Box::new(std::io::stderr()))
    }

    fn to(sink: Sink) -> (LogLines, Flush) {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            arrived: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shipgate-log".into())
            .spawn(move || write_batches(&writer))
            .ok();
        // Without a thread (none could be started), every line is written
        // at once.
        lock(&shared.pending).closed = thread.is_none();
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
        let mut pending = lock(&shared.pending);
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .arrived
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(LINGER);
            pending = lock(&shared.pending);
        }
        std::mem::swap(&mut batch, &mut pending.bytes);
        let closed = pending.closed;
        let mut sink = lock(&shared.sink);
        drop(pending);
        // Nowhere else to report a failed write to stderr.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        drop(sink);
        batch.clear();
        if closed {
            return;
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
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
        let mut pending = lock(&self.0.pending);
        if pending.closed || pending.bytes.len() + line.len() > MAX_PENDING {
            // In order: what is buffered first, then this line.
            let mut sink = lock(&self.0.sink);
            sink.write_all(&std::mem::take(&mut pending.bytes))?;
            sink.write_all(line)?;
            sink.flush()?;
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

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_once_in_order_past_the_limit_and_after_the_flush() {
        let captured = Captured::default();
        let (lines, flush) = LogLines::to(Box::new(captured.clone()));
        let mut expected = Vec::new();
        let mut writer = lines.make_writer();
        // Enough to pass MAX_PENDING several times over if the thread is
        // slow, so the overflow path runs too.
        let filler = "x".repeat(1000);
        for index in 0..5000 {
            let line = format!("{{\"n\":{index},\"pad\":\"{filler}\"}}\n");
            writer.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(flush);
        writer.write_all(b"{\"n\":\"after\"}\n").unwrap();
        expected.extend_from_slice(b"{\"n\":\"after\"}\n");
        assert!(lock(&lines.0.pending).bytes.is_empty());
        let written = lock(&captured.0).clone();
        assert_eq!(written.len(), expected.len());
        assert!(written == expected, "lines lost, repeated or out of order");
    }
}
