//! One call into a policy: a fresh store with the sandbox's limits and
//! deadline, a fresh instance, the call, and traps turned into faults.

use std::time::Instant;

use shipgate_policy::{Phase, Verdict};
use wasmtime::{Store, Trap};

use super::bindings::{self, Policy, truncate};
use super::component::root_cause;
use super::engine::deadline_ticks;
use super::sandbox::{Determinism, HostState, MAX_OUTPUT_BYTES};
use super::{Called, Fault, Limits, LoadedModule, MAX_MEMORY_MIB, Runtime};

impl Runtime {
    /// A store with the sandbox's limits and deadline set.
    fn new_store(&self, limits: Limits, determinism: Determinism) -> Store<HostState> {
        let memory_bytes =
            usize::try_from(limits.memory_mib.min(MAX_MEMORY_MIB) << 20).unwrap_or(usize::MAX);
        let mut store = Store::new(&self.engine, HostState::new(memory_bytes, determinism));
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(deadline_ticks(limits.timeout_ms));
        store
    }

    /// One call in a fresh store and instance, with limits, turning traps
    /// into faults.
    pub(super) fn call<T>(
        &self,
        module: &LoadedModule,
        limits: Limits,
        determinism: Determinism,
        body: impl FnOnce(&Policy, &mut Store<HostState>) -> wasmtime::Result<Result<T, Fault>>,
    ) -> Called<T> {
        let started = Instant::now();
        let mut store = self.new_store(limits, determinism);
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
        let mut store = self.new_store(limits, Determinism::FIXED);
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
        match self.policy.call_evaluate(
            &mut self.store,
            bindings::phase_to_wit(phase),
            snapshot,
            config_json,
        ) {
            Ok(result) => bindings::evaluation_from_wit(result),
            Err(error) => Err(classify_trap(&error, self.store.data(), self.limits)),
        }
    }
}

/// Names a failed call: time limit, memory limit, output limit, or the trap
/// itself (with the policy's last words, usually its panic message).
fn classify_trap(error: &wasmtime::Error, state: &HostState, limits: Limits) -> Fault {
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
