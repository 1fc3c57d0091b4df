//! The wasm engine's configuration (pooling allocator, copy-on-write memory
//! images, epoch interruption) and the thread that advances its epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{MAX_MEMORY_MIB, RuntimeConfig};

/// How often the epoch advances; deadlines are measured in ticks of this.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Core instances one policy component may have.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Memories one policy component may have.
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one policy component may have.
const MAX_TABLES_PER_COMPONENT: u32 = 8;

/// Memory a pool slot zeroes with memset on reuse instead of returning it to
/// the kernel: madvise then faulting the pages back costs more, and under
/// load its TLB shootdowns interrupt every core.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

pub(super) fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_concurrent_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // Every slot can hold a component at the per-component caps, so a
    // policy heavy in core instances or tables (a shadow one, say) cannot
    // drain the pool below its slot count. A Rust policy for wasm32-wasip2
    // has 1 memory, about 4 core instances and 2 tables.
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .total_memories(slots.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
        .total_tables(slots.saturating_mul(MAX_TABLES_PER_COMPONENT))
        // The memory limit is per instance (see `MemoryCap`).
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        // Async stacks are not used, but each pool slot costs a guard-page
        // mprotect at start-up (the default, 1000, was ~4 ms of a CLI run).
        .total_stacks(slots)
        .max_memory_size((MAX_MEMORY_MIB << 20) as usize)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    let mut wasm = Config::new();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .wasm_component_model(true);
    // For profiling policies with `perf`: names the JIT code of every
    // module (docs/PERFORMANCE.md). Off unless asked for.
    if std::env::var("SHIPGATE_PROFILE").as_deref() == Ok("perfmap") {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasm
}

/// The epoch deadline of a call with this budget: whole ticks, rounded up,
/// plus the tick already under way.
pub(super) fn deadline_ticks(timeout_ms: u64) -> u64 {
    let tick_ms = EPOCH_TICK.as_millis() as u64;
    timeout_ms.div_ceil(tick_ms).max(1) + 1
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("shipgate-epoch".to_string())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(1000), 501);
        assert_eq!(deadline_ticks(1), 2);
        assert_eq!(deadline_ticks(0), 2);
    }
}
