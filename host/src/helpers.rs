//! Threads kept waiting to take a share of one request's work (a large
//! Kayenta request's values, read while its structure is parsed; the
//! second instance of its judgement). A thread started while its parent
//! is busy runs only when the kernel moves it off its parent's core: on a
//! busy 2-core machine that took 2.1 ms at the median and 4.5 ms at the 90th
//! percentile, while a waiting thread woke in 13 µs (docs/PERFORMANCE.md).
//! A helper waiting inside the work it took (the values' reader waits for
//! the parse) is taken for that long: work offered meanwhile is done by
//! its caller.
//!
//! Work offered and not yet taken when its result is wanted is taken back
//! and done by the caller, so a caller never waits for a helper to be
//! free; work dropped before a helper took it is not done.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// Work offered to the helpers; its result, or its panic, is fetched with
/// [`Offered::join`].
pub(crate) struct Offered<T> {
    slot: Arc<Slot<T>>,
}

/// Offers `work` to a waiting helper thread; [`Offered::join`] gets its
/// result (doing the work on the caller's thread if no helper took it).
pub(crate) fn offer<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Offered<T> {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Offered(Box::new(work))),
        done: Condvar::new(),
    });
    let pool = pool();
    // With no helper alive, nothing would ever take it: `join` does it.
    if pool.live.load(Ordering::Acquire) > 0 {
        pool.push(slot.clone());
    }
    Offered { slot }
}

impl<T> Offered<T> {
    /// The work's result: done here if no helper has taken it, else
    /// waited for. A panic in the work resumes here.
    pub(crate) fn join(self) -> T {
        match self.finish(true) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => unreachable!("work taken back is done here"),
        }
    }

    /// Gives the work up: dropped undone if no helper has taken it, else
    /// waited for (so nothing of it outlives this call) and its result,
    /// or its panic, dropped.
    pub(crate) fn abandon(self) {
        drop(self.finish(false));
    }

    /// The work's result, done here when `take_back` and no helper has
    /// taken it; `None` when it was dropped undone instead.
    fn finish(self, take_back: bool) -> Option<std::thread::Result<T>> {
        let mut state = lock(&self.slot.state);
        loop {
            match std::mem::replace(&mut *state, State::Joined) {
                State::Offered(work) => {
                    drop(state);
                    return take_back.then(|| std::panic::catch_unwind(AssertUnwindSafe(work)));
                }
                State::Running => {
                    *state = State::Running;
                    state = self
                        .slot
                        .done
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                State::Done(result) => return Some(result),
                State::Joined => unreachable!("an offer is finished once"),
            }
        }
    }
}

impl<T> Drop for Offered<T> {
    /// Work not taken yet is dropped undone (its caller gave up on it).
    fn drop(&mut self) {
        let mut state = lock(&self.slot.state);
        if matches!(*state, State::Offered(_)) {
            *state = State::Joined;
        }
    }
}

type Work<T> = Box<dyn FnOnce() -> T + Send>;

struct Slot<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

enum State<T> {
    Offered(Work<T>),
    Running,
    Done(std::thread::Result<T>),
    Joined,
}

/// A slot a helper can run, whatever its result type.
trait Runnable: Send + Sync {
    /// Does the work if it is still offered.
    fn run(&self);
}

impl<T: Send> Runnable for Slot<T> {
    fn run(&self) {
        let mut state = lock(&self.state);
        let State::Offered(work) = std::mem::replace(&mut *state, State::Running) else {
            // Taken back by the caller (it is `Joined`): nothing to do.
            *state = State::Joined;
            return;
        };
        drop(state);
        let result = std::panic::catch_unwind(AssertUnwindSafe(work));
        *lock(&self.state) = State::Done(result);
        self.done.notify_all();
    }
}

/// The helper threads and the work offered to them.
struct Pool {
    waiting: Mutex<VecDeque<Arc<dyn Runnable>>>,
    offered: Condvar,
    /// Helper threads serving.
    live: AtomicUsize,
}

/// Counts a helper out when its thread ends, by a panic too.
struct Alive(&'static Pool);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    fn push(&self, slot: Arc<dyn Runnable>) {
        lock(&self.waiting).push_back(slot);
        self.offered.notify_one();
    }

    fn serve(&'static self) {
        let _alive = Alive(self);
        loop {
            let mut waiting = lock(&self.waiting);
            let slot = loop {
                match waiting.pop_front() {
                    Some(slot) => break slot,
                    None => {
                        waiting = self
                            .offered
                            .wait(waiting)
                            .unwrap_or_else(PoisonError::into_inner)
                    }
                }
            };
            drop(waiting);
            slot.run();
        }
    }
}

/// The pool, its threads started on first use: one per core beyond the
/// first, none on one core (a helper would only take turns with its
/// caller). A thread that cannot be started is done without: offered
/// work is then done by its caller.
fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            waiting: Mutex::default(),
            offered: Condvar::new(),
            live: AtomicUsize::new(0),
        }));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for n in 0..cores.saturating_sub(1) {
            pool.live.fetch_add(1, Ordering::AcqRel);
            let started = std::thread::Builder::new()
                .name(format!("shipgate-helper-{n}"))
                .spawn(|| pool.serve());
            if started.is_err() {
                pool.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
        pool
    })
}

/// The state behind `mutex`; what it guards (a queue, a slot's state) is
/// whole after any panic, which `catch_unwind` keeps outside the lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_work_gives_its_result_whoever_does_it() {
        let offers: Vec<Offered<u64>> = (0..50u64).map(|n| offer(move || n * n)).collect();
        let results: Vec<u64> = offers.into_iter().map(Offered::join).collect();
        assert_eq!(results, (0..50u64).map(|n| n * n).collect::<Vec<_>>());
    }

    #[test]
    fn a_helper_does_the_work_while_the_caller_does_its_own() {
        if pool().live.load(Ordering::Acquire) == 0 {
            // One core: no helpers, by design; `offer` then defers to `join`.
            return;
        }
        let (started, running) = std::sync::mpsc::channel();
        let offered = offer(move || {
            started.send(()).unwrap();
            std::thread::current().id()
        });
        // The caller waits until a helper has the work, then joins it.
        running
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a helper took the work");
        assert_ne!(offered.join(), std::thread::current().id());
    }

    #[test]
    fn a_panic_in_the_work_resumes_in_the_caller() {
        let offered = offer(|| -> u32 { panic!("the work failed") });
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| offered.join()));
        let panic = caught.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the work failed"));
    }

    #[test]
    fn work_given_up_before_a_helper_took_it_is_not_done() {
        let give_ups: [fn(Offered<()>); 2] = [drop, Offered::abandon];
        for give_up in give_ups {
            let (done, was_done) = std::sync::mpsc::channel::<()>();
            // Offered as `offer` does, kept from the pool to decide who
            // comes first.
            let slot = Arc::new(Slot {
                state: Mutex::new(State::Offered(Box::new(move || done.send(()).unwrap()))),
                done: Condvar::new(),
            });
            give_up(Offered { slot: slot.clone() });
            // A helper coming to it afterwards finds nothing to do.
            slot.run();
            assert!(was_done.recv().is_err(), "the work ran");
        }
    }

    #[test]
    fn abandoning_work_a_helper_has_waits_for_its_end() {
        if pool().live.load(Ordering::Acquire) == 0 {
            // One core: no helpers, by design.
            return;
        }
        let (started, running) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let offered = offer(move || {
            started.send(()).unwrap();
            // Long enough that a return without waiting would be seen.
            std::thread::sleep(std::time::Duration::from_millis(50));
            finish.send(()).unwrap();
        });
        running
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a helper took the work");
        offered.abandon();
        assert!(
            finished.try_recv().is_ok(),
            "abandon returned before the work ended"
        );
    }
}
