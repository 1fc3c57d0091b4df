//! One call into a policy: a fresh store with the sandbox's limits and
//! deadline, a fresh instance, the call, and traps turned into faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use shipgate_policy::{Phase, Verdict};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use super::bindings::{Policy, truncate};
use super::component::root_cause;
use super::engine::deadline_ticks;
use super::sandbox::{Determinism, HostState, MAX_OUTPUT_BYTES};
use super::{Called, Fault, HostFault, Limits, LoadedModule, MAX_MEMORY_MIB, Runtime};

/// Lets a caller that stops waiting stop the work too, and lets the work
/// claim its completion first: exactly one of the two wins, so a decision is
/// either answered (and recorded) or dropped, never recorded unanswered.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const COMPLETING: u8 = 2;

impl Cancel {
    /// Stops the work, unless it has claimed its completion; `true` when the
    /// work is (or already was) cancelled.
    pub fn cancel(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == CANCELLED,
        }
    }

    /// Claims completion for the work; `false` when it was cancelled first.
    pub fn complete(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, COMPLETING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMPLETING,
        }
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCELLED
    }
}

/// The most data the host copies out of a policy in one call or return: a
/// verdict at its limits (1000 findings of 4 KiB texts) is about 17 MiB.
const MAX_LIFTED_BYTES: usize = 32 << 20;

/// The error a cancelled call stops with.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

impl Runtime {
    /// A store with the sandbox's limits and deadline set. With `cancel`,
    /// the deadline is checked every tick, so the caller can stop the call
    /// within a tick.
    fn new_store(
        &self,
        limits: Limits,
        determinism: Determinism,
        cancel: Option<&Cancel>,
    ) -> Store<HostState> {
        let memory_bytes =
            usize::try_from(limits.memory_mib.min(MAX_MEMORY_MIB) << 20).unwrap_or(usize::MAX);
        let mut store = Store::new(&self.engine, HostState::new(memory_bytes, determinism));
        store.limiter(|state| state.limiter());
        store.set_hostcall_fuel(MAX_LIFTED_BYTES);
        let ticks = deadline_ticks(limits.timeout_ms);
        match cancel {
            None => store.set_epoch_deadline(ticks),
            Some(cancel) => {
                let cancel = cancel.clone();
                let mut left = ticks;
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(move |_| {
                    if cancel.is_cancelled() {
                        return Err(wasmtime::Error::new(Cancelled));
                    }
                    left -= 1;
                    if left == 0 {
                        return Err(Trap::Interrupt.into());
                    }
                    Ok(UpdateDeadline::Continue(1))
                });
            }
        }
        store
    }

    /// One call in a fresh store and instance, with limits, turning traps
    /// into faults.
    pub(super) fn call<T>(
        &self,
        module: &LoadedModule,
        limits: Limits,
        determinism: Determinism,
        cancel: Option<&Cancel>,
        body: impl FnOnce(&Policy, &mut Store<HostState>) -> wasmtime::Result<Result<T, Fault>>,
    ) -> Called<T> {
        let started = Instant::now();
        let mut store = self.new_store(limits, determinism, cancel);
        let outcome = module
            .pre
            .instantiate(&mut store)
            .and_then(|policy| body(&policy, &mut store));
        let log = store.data().log();
        let result = match outcome {
            Ok(result) => result,
            Err(error) => Err(classify_trap(&error, store.data(), limits)),
        };
        Called {
            result,
            log,
            duration: started.elapsed(),
        }
    }

    /// One instance kept across calls, for the benchmark only: see
    /// [`ReusedInstance`].
    #[doc(hidden)]
    pub fn reused_instance(
        &self,
        module: &LoadedModule,
        limits: Limits,
    ) -> Result<ReusedInstance, Fault> {
        let mut store = self.new_store(limits, Determinism::FIXED, None);
        let policy = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify_trap(&e, store.data(), limits))?;
        Ok(ReusedInstance {
            store,
            policy,
            limits,
        })
    }
}

/// One instance kept across calls. **For measurement only**: it gives up
/// the isolation every real decision has ([`Runtime::evaluate`] instantiates
/// afresh); the benchmark uses it to show what a fresh instance costs.
#[doc(hidden)]
pub struct ReusedInstance {
    store: Store<HostState>,
    policy: Policy,
    limits: Limits,
}

impl ReusedInstance {
    pub fn evaluate(
        &mut self,
        phase: Phase,
        snapshot: &[u8],
        config_json: &str,
    ) -> Result<Verdict, Fault> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.timeout_ms));
        match self
            .policy
            .evaluate(&mut self.store, phase, snapshot, config_json)
        {
            Ok(result) => result,
            Err(error) => Err(classify_trap(&error, self.store.data(), self.limits)),
        }
    }
}

/// Names a failed call: time limit, memory limit, output limit, or the trap
/// itself (with the policy's last words, usually its panic message).
fn classify_trap(error: &wasmtime::Error, state: &HostState, limits: Limits) -> Fault {
    // The host's own limits first: they are no verdict on the policy.
    if error.is::<PoolConcurrencyLimitError>() {
        return Fault::Host(HostFault::Busy);
    }
    if error.is::<Cancelled>() {
        return Fault::Host(HostFault::Cancelled);
    }
    // wasmtime's own error for it is private: known by its message.
    if root_cause(error).contains("fuel allocated for hostcalls has been exhausted") {
        return Fault::MalformedVerdict(format!(
            "it hands the host more than the {} MiB it takes from a policy at once",
            MAX_LIFTED_BYTES >> 20
        ));
    }
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return Fault::Timeout {
            limit_ms: limits.timeout_ms,
        };
    }
    if state.hit_memory_limit() {
        return Fault::OutOfMemory {
            limit_mib: limits.memory_mib,
        };
    }
    if state.output_full() {
        return Fault::Trap(format!(
            "printed more than its output limit of {} KiB",
            MAX_OUTPUT_BYTES / 1024
        ));
    }
    let mut why = match trap {
        Some(Trap::StackOverflow) => "stack overflow (runaway recursion?)".to_string(),
        // Rust keeps its stack in linear memory: overflowing it reads or
        // writes below address 0.
        Some(Trap::MemoryOutOfBounds) => {
            "out of bounds memory access (often the policy's stack overflowing: runaway recursion?)"
                .to_string()
        }
        Some(trap) => trap.to_string(),
        None => root_cause(error),
    };
    let log = state.log();
    if let Some(last_words) = log.iter().rev().find(|line| !line.starts_with("note: ")) {
        why = format!("{why}; it printed: {last_words}");
    }
    Fault::Trap(truncate(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_the_caller_cancels_or_the_work_completes_never_both() {
        let cancel = Cancel::default();
        assert!(cancel.cancel());
        assert!(cancel.cancel(), "cancelling twice is still cancelled");
        assert!(!cancel.complete());
        let done = Cancel::default();
        assert!(done.complete());
        assert!(!done.cancel(), "too late: the work already answers");
    }
}
