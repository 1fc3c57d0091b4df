//! Decision records off the pod: `--decision-log-url` posts them to a
//! collector in gzipped JSON-lines batches, from a bounded queue, with
//! retries. A decision never waits for the collector: a full queue drops
//! the new record, a batch the collector keeps refusing is dropped after
//! its retries, and both are counted in `/metrics`. A file log (fsynced
//! before the answer) is the durable record; this one is best effort.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How the shipper is configured (`serve --decision-log-url ...`).
#[derive(Debug, Clone)]
pub(crate) struct ShipperSettings {
    pub(crate) url: reqwest::Url,
    /// The most record bytes queued or being delivered; beyond, new records
    /// are dropped.
    pub(crate) queue_bytes: usize,
}

impl ShipperSettings {
    /// The collector's URL for logs: without credentials or query, which
    /// may carry a token.
    fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }
}

/// Counters the shipper keeps, registered by [`super::metrics::Metrics`].
#[derive(Clone, Default)]
pub(crate) struct ShipperCounters {
    pub(crate) shipped: Counter,
    pub(crate) dropped_queue_full: Counter,
    pub(crate) dropped_undeliverable: Counter,
    pub(crate) dropped_at_shutdown: Counter,
}

/// The most records in one batch.
const BATCH_RECORDS: usize = 500;
/// The most record bytes in one batch, before compression.
const BATCH_BYTES: usize = 4 << 20;
/// How long the first record of a batch waits for others.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// One POST's budget.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at one batch before it is dropped: backoff from 100 ms,
/// doubling, about 3 s in all.
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// After SIGTERM, how long the last records have to reach the collector.
pub(crate) const FINAL_FLUSH: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Queue {
    records: VecDeque<String>,
    /// Bytes of the records queued and of the batch being delivered.
    bytes: usize,
    /// Records taken for the batch being delivered.
    in_flight: usize,
    in_flight_bytes: usize,
    /// Set by [`Shipper::close`]: the last records must be out by then.
    deadline: Option<Instant>,
}

/// The handle requests use: [`Shipper::send`] never blocks.
pub(crate) struct Shipper {
    queue: Mutex<Queue>,
    arrived: Notify,
    settings: ShipperSettings,
    counters: ShipperCounters,
}

impl Shipper {
    pub(crate) fn new(settings: ShipperSettings, counters: ShipperCounters) -> Arc<Shipper> {
        Arc::new(Shipper {
            queue: Mutex::default(),
            arrived: Notify::new(),
            settings,
            counters,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one record line; a full queue drops it (counted), and so
    /// does a shipper that is closing (a decision that outlived the drain).
    pub(crate) fn send(&self, line: String) {
        {
            let mut queue = self.queue();
            if queue.deadline.is_some() {
                drop(queue);
                self.counters.dropped_at_shutdown.inc();
                return;
            }
            if queue.bytes + line.len() > self.settings.queue_bytes {
                drop(queue);
                self.counters.dropped_queue_full.inc();
                return;
            }
            queue.bytes += line.len();
            queue.records.push_back(line);
        }
        self.arrived.notify_one();
    }

    /// Ships batches until [`Shipper::close`]; then what is left, until
    /// the close's deadline.
    pub(crate) async fn run(self: Arc<Shipper>) {
        // Its own client: a redirect would turn the POST into a GET without
        // its body, which a login page would answer 200.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!("decision log shipping is off: no HTTP client: {error}");
                // Nothing will ship: what comes is refused and counted.
                self.close();
                self.abandon();
                return;
            }
        };
        while let Some(batch) = self.next_batch().await {
            let count = batch.len() as u64;
            let delivered = self.deliver(&client, &batch).await;
            let closing = {
                let mut queue = self.queue();
                queue.bytes = queue.bytes.saturating_sub(queue.in_flight_bytes);
                queue.in_flight = 0;
                queue.in_flight_bytes = 0;
                queue.deadline.is_some()
            };
            match delivered {
                Ok(()) => {
                    self.counters.shipped.inc_by(count);
                }
                Err(why) => {
                    tracing::error!(
                        records = count,
                        url = %self.settings.shown_url(),
                        "decision log batch dropped: {why}"
                    );
                    if closing {
                        self.counters.dropped_at_shutdown.inc_by(count);
                    } else {
                        self.counters.dropped_undeliverable.inc_by(count);
                    }
                }
            }
            if self
                .deadline()
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                break;
            }
        }
        self.abandon();
    }

    /// Ends shipping: what is queued is sent at once, within
    /// [`FINAL_FLUSH`], then [`Shipper::run`] returns.
    pub(crate) fn close(&self) {
        self.queue().deadline = Some(Instant::now() + FINAL_FLUSH);
        self.arrived.notify_one();
    }

    fn deadline(&self) -> Option<Instant> {
        self.queue().deadline
    }

    /// Counts and logs what is still queued or being delivered as never
    /// shipped, and forgets it: for when shipping stops at exit.
    pub(crate) fn abandon(&self) {
        let left = {
            let mut queue = self.queue();
            let left = (queue.records.len() + queue.in_flight) as u64;
            queue.records.clear();
            queue.bytes = 0;
            queue.in_flight = 0;
            queue.in_flight_bytes = 0;
            left
        };
        if left > 0 {
            tracing::error!(
                records = left,
                "decision log records not shipped before exit"
            );
            self.counters.dropped_at_shutdown.inc_by(left);
        }
    }

    /// The next batch: once a record is queued, whatever arrives within
    /// [`BATCH_WAIT`] (or at once when closing), up to the batch limits.
    /// `None` when closing and nothing is left.
    async fn next_batch(&self) -> Option<Vec<String>> {
        loop {
            {
                let queue = self.queue();
                if !queue.records.is_empty() {
                    break;
                }
                if queue.deadline.is_some() {
                    return None;
                }
            }
            self.arrived.notified().await;
        }
        let wait_until = Instant::now() + BATCH_WAIT;
        loop {
            {
                let queue = self.queue();
                if queue.deadline.is_some()
                    || queue.records.len() >= BATCH_RECORDS
                    || queue.bytes >= BATCH_BYTES
                    || Instant::now() >= wait_until
                {
                    break;
                }
            }
            let _ = tokio::time::timeout_at(wait_until, self.arrived.notified()).await;
        }
        let mut queue = self.queue();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(line) = queue.records.front() {
            let full = batch.len() >= BATCH_RECORDS || bytes + line.len() > BATCH_BYTES;
            if full && !batch.is_empty() {
                break;
            }
            bytes += line.len();
            batch.push(queue.records.pop_front().expect("front exists"));
        }
        queue.in_flight = batch.len();
        queue.in_flight_bytes = bytes;
        Some(batch)
    }

    /// POSTs one gzipped batch, retrying what may pass later (no answer,
    /// 408, 429, 5xx) with backoff; other answers, redirects included, are
    /// final. Once closing, no new attempt outlasts the close's deadline (one
    /// already sent is stopped with the shipper at the final flush's end).
    async fn deliver(&self, client: &reqwest::Client, batch: &[String]) -> Result<(), String> {
        let body = gzip(batch).map_err(|e| format!("compressing: {e}"))?;
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let timeout = self.deadline().map_or(POST_TIMEOUT, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(POST_TIMEOUT)
            });
            if timeout.is_zero() {
                break;
            }
            let sent = client
                .post(self.settings.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    last = format!("the collector answered {status}");
                    let retry = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !retry {
                        return Err(last);
                    }
                }
                // Without the URL, whose query may hold a token.
                Err(error) => last = error.without_url().to_string(),
            }
            let wake = Instant::now() + backoff;
            if attempt == ATTEMPTS || self.deadline().is_some_and(|deadline| wake >= deadline) {
                break;
            }
            tracing::warn!(
                attempt,
                url = %self.settings.shown_url(),
                "decision log batch not taken, retrying: {last}"
            );
            tokio::time::sleep_until(wake).await;
            backoff *= 2;
        }
        Err(last)
    }
}

fn gzip(batch: &[String]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for line in batch {
        encoder.write_all(line.as_bytes())?;
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipper(queue_bytes: usize) -> Arc<Shipper> {
        Shipper::new(
            ShipperSettings {
                url: "http://127.0.0.1:9/".parse().unwrap(),
                queue_bytes,
            },
            ShipperCounters::default(),
        )
    }

    #[test]
    fn a_full_queue_drops_the_new_record_and_counts_it() {
        let shipper = shipper(10);
        shipper.send("12345\n".into());
        shipper.send("12345\n".into());
        assert_eq!(shipper.queue().records.len(), 1);
        assert_eq!(shipper.counters.dropped_queue_full.get(), 1);
    }

    #[tokio::test]
    async fn a_closing_shipper_batches_at_once_within_the_limits() {
        let shipper = shipper(usize::MAX);
        for _ in 0..BATCH_RECORDS + 3 {
            shipper.send("{}\n".into());
        }
        shipper.close();
        let first = shipper.next_batch().await.unwrap();
        assert_eq!(shipper.queue().in_flight, BATCH_RECORDS);
        let second = shipper.next_batch().await.unwrap();
        assert_eq!((first.len(), second.len()), (BATCH_RECORDS, 3));
        assert!(shipper.next_batch().await.is_none());
        assert_eq!(
            shipper.queue().bytes,
            (BATCH_RECORDS + 3) * 3,
            "batches taken but not delivered still count"
        );
        shipper.send("{}\n".into());
        assert_eq!(
            shipper.counters.dropped_at_shutdown.get(),
            1,
            "closed: not queued"
        );
    }

    #[test]
    fn logs_never_show_the_collectors_credentials() {
        let settings = ShipperSettings {
            url: "https://user:secret@collector.example/ingest?token=abc"
                .parse()
                .unwrap(),
            queue_bytes: 1,
        };
        assert_eq!(settings.shown_url(), "https://collector.example/ingest");
    }

    #[test]
    fn what_is_left_at_exit_is_counted_as_dropped() {
        let shipper = shipper(usize::MAX);
        shipper.send("{}\n".into());
        shipper.send("{}\n".into());
        shipper.queue().in_flight = 3;
        shipper.abandon();
        assert_eq!(shipper.counters.dropped_at_shutdown.get(), 5);
        assert!(shipper.queue().records.is_empty());
    }

    #[test]
    fn a_batch_is_one_gzip_member_of_its_lines() {
        use std::io::Read;
        let body = gzip(&["a\n".into(), "b\n".into()]).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\nb\n");
    }
}
