//! The GitHub reviews a server makes after it has answered a delivery 202:
//! a bounded number at once (beyond, 503, so GitHub marks the delivery
//! failed and a person can redeliver it), and one review per run: a
//! delivery replayed for a run already reviewed, or being reviewed, is
//! acknowledged and does nothing, while one whose review failed may be
//! redelivered. At shutdown the reviews in flight get a last moment to
//! finish; those that do not are logged as dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reviews in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Runs remembered as reviewed; the oldest are forgotten first (GitHub
/// gives up on a rule after 30 days, replays come within hours).
const REMEMBERED: usize = 10_000;
/// How long reviews in flight may take to finish once the port closes
/// (alongside the connections' drain, and no longer than it).
pub(crate) const FINISH_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// Where each review stands, by what it answers (a run's callback, its
/// environment and deployment: [`crate::adapters::github::Callback`]).
#[derive(Default)]
struct Runs {
    /// `true` once reviewed, `false` while a review is being made.
    state: HashMap<String, bool>,
    /// The reviewed ones, oldest first.
    reviewed: VecDeque<String>,
}

pub(crate) struct Reviews {
    slots: Arc<Semaphore>,
    runs: Mutex<Runs>,
}

/// What a delivery may do.
pub(crate) enum Claim {
    /// Review the run; finish with [`Ticket::finish`].
    Review(Ticket),
    /// The run is reviewed, or being reviewed: nothing to do.
    Duplicate,
    /// As many reviews as allowed are in flight.
    Busy,
}

/// The right to review one run, with a slot; dropped unfinished (the task
/// was cancelled), the run may be reviewed again.
pub(crate) struct Ticket {
    reviews: Arc<Reviews>,
    url: String,
    _slot: OwnedSemaphorePermit,
    finished: bool,
}

impl Default for Reviews {
    fn default() -> Self {
        Reviews {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            runs: Mutex::default(),
        }
    }
}

impl Reviews {
    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims the review `key` names.
    pub(crate) fn claim(self: &Arc<Self>, url: &str) -> Claim {
        let mut runs = self.runs();
        if runs.state.contains_key(url) {
            return Claim::Duplicate;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Claim::Busy;
        };
        runs.state.insert(url.to_string(), false);
        Claim::Review(Ticket {
            reviews: self.clone(),
            url: url.to_string(),
            _slot: slot,
            finished: false,
        })
    }

    /// Waits up to `budget` for the reviews in flight; how many were still
    /// running when it ran out.
    pub(crate) async fn finish(&self, budget: Duration) -> usize {
        let all = MAX_IN_FLIGHT as u32;
        match tokio::time::timeout(budget, self.slots.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => MAX_IN_FLIGHT - self.slots.available_permits(),
        }
    }
}

impl Ticket {
    /// The review is done: posted (`true`, the run is never reviewed again)
    /// or not (a redelivery may try again).
    pub(crate) fn finish(mut self, posted: bool) {
        self.finished = true;
        let mut runs = self.reviews.runs();
        if posted {
            runs.state.insert(self.url.clone(), true);
            runs.reviewed.push_back(self.url.clone());
            while runs.reviewed.len() > REMEMBERED {
                if let Some(oldest) = runs.reviewed.pop_front() {
                    runs.state.remove(&oldest);
                }
            }
        } else {
            runs.state.remove(&self.url);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.reviews.runs().state.remove(&self.url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_reviewed_once_unless_its_review_failed() {
        let reviews = Arc::new(Reviews::default());
        let Claim::Review(first) = reviews.claim("run-1") else {
            panic!("the first delivery reviews")
        };
        assert!(matches!(reviews.claim("run-1"), Claim::Duplicate));
        first.finish(false);
        let Claim::Review(again) = reviews.claim("run-1") else {
            panic!("a failed review may be redelivered")
        };
        again.finish(true);
        assert!(matches!(reviews.claim("run-1"), Claim::Duplicate));
        // A cancelled review leaves the run free.
        let Claim::Review(cancelled) = reviews.claim("run-2") else {
            panic!("another run")
        };
        drop(cancelled);
        assert!(matches!(reviews.claim("run-2"), Claim::Review(_)));
    }

    #[test]
    fn beyond_the_slots_a_delivery_is_turned_away() {
        let reviews = Arc::new(Reviews::default());
        let held: Vec<Claim> = (0..MAX_IN_FLIGHT)
            .map(|i| reviews.claim(&format!("run-{i}")))
            .collect();
        assert!(held.iter().all(|c| matches!(c, Claim::Review(_))));
        assert!(matches!(reviews.claim("one-more"), Claim::Busy));
        drop(held);
        assert!(matches!(reviews.claim("one-more"), Claim::Review(_)));
    }
}
