//! The WebAssembly runtime: one engine per process, policies compiled once
//! and pre-instantiated, a fresh sandboxed instance for every call.
//!
//! # Isolation
//! Every call ([`Runtime::evaluate`], [`Runtime::describe`],
//! [`Runtime::validate_config`]) gets a new `Store` and a new instance from
//! the module's pre-instantiated form, and both are dropped when the call
//! returns: no data is shared between two evaluations of the same module.
//!
//! # What a hostile policy can do
//! Nothing it was not granted. WASI is linked with an empty context (no
//! files, environment, arguments or sockets); clocks are frozen at the
//! snapshot's `now` and randomness is seeded from the snapshot digest; it can
//! print at most [`sandbox::MAX_OUTPUT_BYTES`] per stream. An epoch deadline
//! stops it after `timeout_ms` (a tick is [`EPOCH_TICK`]), a resource limiter
//! caps its memory at `memory_mib`, and wasm's own stack limit stops runaway
//! recursion. Each of these ends the call with a [`Fault`]; the engine and
//! every other module stay usable.

mod cache;
mod fault;
mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use shipgate_policy::{Decision, Finding, Phase, PolicyInfo, Verdict};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

pub use cache::ModuleCache;
pub use fault::Fault;
pub use sandbox::{Determinism, MAX_OUTPUT_BYTES};

use sandbox::HostState;

mod bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "policy" });
}

use bindings::shipgate::policy::types as wit;

/// The contract this host speaks (the package of `wit/policy.wit`).
pub const CONTRACT: &str = "shipgate:policy@0.2.0";

/// How often the epoch advances; deadlines are measured in ticks of this.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The most findings a verdict may carry.
pub const MAX_FINDINGS: usize = 1000;
/// The longest string a verdict may carry (summary, message, ...), in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// The largest memory limit a gate may set.
pub const MAX_MEMORY_MIB: u64 = 1024;

/// Per-call resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call. Default 1000 ms.
    pub timeout_ms: u64,
    /// Linear memory a policy may use. Default 64 MiB.
    pub memory_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 1000,
            memory_mib: 64,
        }
    }
}

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled modules are cached; `None` disables the cache.
    /// Default: [`ModuleCache::default_dir`].
    pub cache_dir: Option<PathBuf>,
    /// How many policy instances may be alive at once (the pooling
    /// allocator's slots). Default 64.
    pub max_concurrent_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: ModuleCache::default_dir(),
            max_concurrent_instances: 64,
        }
    }
}

/// A policy module compiled and ready to instantiate.
pub struct LoadedModule {
    /// Hex sha256 of the module bytes.
    pub sha256: String,
    /// Size of the module in bytes.
    pub size: usize,
    component: Component,
    pre: bindings::PolicyPre<HostState>,
}

impl LoadedModule {
    /// The component's imports, by name (`wasi:cli/environment@0.2.x`, ...).
    pub fn imports(&self, runtime: &Runtime) -> Vec<String> {
        self.component
            .component_type()
            .imports(&runtime.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

/// The outcome of one call into a policy, with what it printed.
#[derive(Debug)]
pub struct Called<T> {
    pub result: Result<T, Fault>,
    pub log: Vec<String>,
    pub duration: Duration,
}

/// The shared, thread-safe evaluation environment. Build one per process
/// and share it (`Arc<Runtime>`).
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ModuleCache>,
    /// Compiled modules by sha256, so a module used by several policies or
    /// gates is compiled once.
    loaded: Mutex<HashMap<String, Arc<LoadedModule>>>,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine_config(config))
            .map_err(anyhow::Error::from)
            .context("setting up the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        sandbox::forbid_sleeping(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the frozen clock")?;
        // A cache that cannot be opened only costs compile time.
        let cache = config
            .cache_dir
            .as_deref()
            .and_then(|dir| ModuleCache::open(dir, &engine).ok());
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            loaded: Mutex::default(),
            _ticker: ticker,
        })
    }

    /// Compiles (or fetches from the caches) a policy module. The error says
    /// what is wrong with the bytes.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, String> {
        self.load_digested(bytes, &hex::encode(Sha256::digest(bytes)))
    }

    /// [`Runtime::load`] for bytes whose hex sha256 the caller already has
    /// (the stock policies' is computed at build time). The digest keys the
    /// compiled-module caches, so it must be the bytes' own: crate-only.
    pub(crate) fn load_digested(
        &self,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Arc<LoadedModule>, String> {
        check_is_component(bytes)?;
        let sha256 = sha256.to_ascii_lowercase();
        if let Some(module) = self.loaded.lock().expect("not poisoned").get(&sha256) {
            return Ok(module.clone());
        }
        let component = match self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.engine, &sha256))
        {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes).map_err(|e| {
                    format!("not a valid WebAssembly component: {}", root_cause(&e))
                })?;
                if let Some(cache) = &self.cache {
                    let _ = cache.put(&sha256, &component);
                }
                component
            }
        };
        let contract_mismatch = || contract_mismatch(&self.engine, &component);
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            contract_mismatch().unwrap_or_else(|| {
                format!(
                    "it needs something shipgate does not provide: {}",
                    root_cause(&e)
                )
            })
        })?;
        let pre = bindings::PolicyPre::new(instance_pre).map_err(|e| {
            contract_mismatch().unwrap_or_else(|| {
                format!(
                    "it does not implement the shipgate:policy/policy world of {CONTRACT} \
                     ({}); build it with the shipgate-policy SDK for wasm32-wasip2",
                    root_cause(&e)
                )
            })
        })?;
        let module = Arc::new(LoadedModule {
            sha256: sha256.clone(),
            size: bytes.len(),
            component,
            pre,
        });
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(sha256, module.clone());
        Ok(module)
    }

    /// Asks a policy to describe itself.
    pub fn describe(&self, module: &LoadedModule, limits: Limits) -> Called<PolicyInfo> {
        self.call(module, limits, Determinism::FIXED, |policy, store| {
            Ok(Ok(info_from_wit(policy.call_describe(store)?)))
        })
    }

    /// Asks a policy to check its config; `Err(Fault::PolicyError)` carries
    /// the policy's complaint.
    pub fn validate_config(
        &self,
        module: &LoadedModule,
        config_json: &str,
        limits: Limits,
    ) -> Called<()> {
        self.call(module, limits, Determinism::FIXED, |policy, store| {
            Ok(policy
                .call_validate_config(store, config_json)?
                .map_err(Fault::PolicyError))
        })
    }

    /// Evaluates one phase in a fresh instance. `snapshot` is in the
    /// contract's encoding ([`shipgate_policy::wire`]).
    pub fn evaluate(
        &self,
        module: &LoadedModule,
        phase: Phase,
        snapshot: &[u8],
        config_json: &str,
        limits: Limits,
        determinism: Determinism,
    ) -> Called<Verdict> {
        self.call(module, limits, determinism, |policy, store| {
            let result = policy.call_evaluate(store, phase_to_wit(phase), snapshot, config_json)?;
            Ok(match result {
                Ok(verdict) => verdict_from_wit(verdict),
                Err(message) => Err(Fault::PolicyError(truncate(message))),
            })
        })
    }

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
    fn call<T>(
        &self,
        module: &LoadedModule,
        limits: Limits,
        determinism: Determinism,
        body: impl FnOnce(
            &bindings::Policy,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<T, Fault>>,
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
}

/// One instance kept across calls. **For measurement only**: it gives up
/// the isolation every real decision has ([`Runtime::evaluate`] instantiates
/// afresh); the benchmark uses it to show what a fresh instance costs.
pub struct ReusedInstance {
    store: Store<HostState>,
    policy: bindings::Policy,
    limits: Limits,
}

impl Runtime {
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
            .call_evaluate(&mut self.store, phase_to_wit(phase), snapshot, config_json)
        {
            Ok(Ok(verdict)) => verdict_from_wit(verdict),
            Ok(Err(message)) => Err(Fault::PolicyError(truncate(message))),
            Err(error) => Err(classify_trap(&error, self.store.data(), self.limits)),
        }
    }
}

/// Memory a pool slot zeroes with memset on reuse instead of returning it to
/// the kernel: madvise then faulting the pages back costs more, and under
/// load its TLB shootdowns interrupt every core.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_concurrent_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        // The memory limit is per instance (see `MemoryCap`); a component
        // with many memories would also drain the pool.
        .max_memories_per_component(2)
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

fn deadline_ticks(timeout_ms: u64) -> u64 {
    let tick_ms = EPOCH_TICK.as_millis() as u64;
    timeout_ms.div_ceil(tick_ms).max(1) + 1
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

fn root_cause(error: &wasmtime::Error) -> String {
    // The outermost message is often generic ("error while executing at
    // wasm backtrace: ..."); the root says what happened.
    let root = error.root_cause().to_string();
    root.lines().next().unwrap_or_default().to_string()
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A module built for another version of the contract imports its types
/// interface under that version: name it, so the fix (rebuild) is clear.
fn contract_mismatch(engine: &Engine, component: &Component) -> Option<String> {
    const TYPES: &str = "shipgate:policy/types@";
    let ours = CONTRACT.rsplit_once('@').map(|(_, version)| version)?;
    component
        .component_type()
        .imports(engine)
        .find_map(|(name, _)| {
            let version = name.strip_prefix(TYPES)?;
            (version != ours).then(|| {
                format!(
                    "it was built for shipgate:policy@{version}, and this shipgate speaks \
                     {CONTRACT}: rebuild it with the matching shipgate-policy SDK"
                )
            })
        })
}

/// Refuses what is not a component before handing it to the compiler, with
/// an error that says what the file is instead.
fn check_is_component(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly file (no \\0asm header)".to_string());
    }
    // Bytes 4..8: version and layer; a core module is version 1, layer 0.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "this is a core module, not a component; build it with the shipgate-policy \
                    SDK for wasm32-wasip2"
                .to_string(),
        );
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
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

fn phase_to_wit(phase: Phase) -> wit::Phase {
    match phase {
        Phase::Preflight => wit::Phase::Preflight,
        Phase::Promotion => wit::Phase::Promotion,
        Phase::Abort => wit::Phase::Abort,
        Phase::Verify => wit::Phase::Verify,
    }
}

fn phase_from_wit(phase: wit::Phase) -> Phase {
    match phase {
        wit::Phase::Preflight => Phase::Preflight,
        wit::Phase::Promotion => Phase::Promotion,
        wit::Phase::Abort => Phase::Abort,
        wit::Phase::Verify => Phase::Verify,
    }
}

fn decision_from_wit(decision: wit::Decision) -> Decision {
    match decision {
        wit::Decision::Allow => Decision::Allow,
        wit::Decision::Deny => Decision::Deny,
        wit::Decision::Rollback => Decision::Rollback,
    }
}

fn info_from_wit(info: wit::PolicyInfo) -> PolicyInfo {
    PolicyInfo {
        name: truncate(info.name),
        version: truncate(info.version),
        description: truncate(info.description),
        phases: info.phases.into_iter().map(phase_from_wit).collect(),
    }
}

/// Checks a verdict against the host's limits and its own consistency.
fn verdict_from_wit(verdict: wit::Verdict) -> Result<Verdict, Fault> {
    let malformed = |why: String| Err(Fault::MalformedVerdict(why));
    if verdict.findings.len() > MAX_FINDINGS {
        return malformed(format!(
            "{} findings, more than the limit of {MAX_FINDINGS}",
            verdict.findings.len()
        ));
    }
    let decision = decision_from_wit(verdict.decision);
    let mut findings = Vec::with_capacity(verdict.findings.len());
    for (i, f) in verdict.findings.into_iter().enumerate() {
        let texts = [
            Some(&f.check),
            Some(&f.message),
            f.observed.as_ref(),
            f.threshold.as_ref(),
        ];
        if let Some(long) = texts
            .into_iter()
            .flatten()
            .find(|t| t.len() > MAX_TEXT_BYTES)
        {
            return malformed(format!(
                "finding {i} has a text of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
                long.len()
            ));
        }
        if f.check.is_empty() {
            return malformed(format!("finding {i} has an empty check id"));
        }
        let finding = Finding {
            check: f.check,
            decision: decision_from_wit(f.decision),
            message: f.message,
            observed: f.observed,
            threshold: f.threshold,
        };
        if finding.decision > decision {
            return malformed(format!(
                "its decision is {decision} but check '{}' says {}",
                finding.check, finding.decision
            ));
        }
        findings.push(finding);
    }
    if verdict.summary.len() > MAX_TEXT_BYTES {
        return malformed(format!(
            "a summary of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
            verdict.summary.len()
        ));
    }
    Ok(Verdict {
        decision,
        summary: verdict.summary,
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_files_that_are_not_components() {
        assert_eq!(
            check_is_component(b"hello world, not wasm"),
            Err("not a WebAssembly file (no \\0asm header)".to_string())
        );
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        assert!(
            check_is_component(&core)
                .unwrap_err()
                .contains("core module, not a component")
        );
        let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert_eq!(check_is_component(&component), Ok(()));
    }

    #[test]
    fn the_contract_is_the_wit_files_package() {
        let wit = include_str!("../../../wit/policy.wit");
        assert!(
            wit.contains(&format!("\npackage {CONTRACT};\n")),
            "{CONTRACT}"
        );
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(1000), 501);
        assert_eq!(deadline_ticks(1), 2);
        assert_eq!(deadline_ticks(0), 2);
    }

    fn finding(check: &str, decision: wit::Decision) -> wit::Finding {
        wit::Finding {
            check: check.into(),
            decision,
            message: "m".into(),
            observed: None,
            threshold: None,
        }
    }

    #[test]
    fn verdicts_must_be_consistent_and_bounded() {
        let lenient = wit::Verdict {
            decision: wit::Decision::Allow,
            summary: "fine".into(),
            findings: vec![finding("error-rate", wit::Decision::Rollback)],
        };
        assert_eq!(
            verdict_from_wit(lenient),
            Err(Fault::MalformedVerdict(
                "its decision is allow but check 'error-rate' says rollback".into()
            ))
        );
        let many = wit::Verdict {
            decision: wit::Decision::Deny,
            summary: "s".into(),
            findings: (0..=MAX_FINDINGS)
                .map(|_| finding("x", wit::Decision::Deny))
                .collect(),
        };
        assert!(
            matches!(verdict_from_wit(many), Err(Fault::MalformedVerdict(m)) if m.starts_with("1001 findings"))
        );
        let long = wit::Verdict {
            decision: wit::Decision::Deny,
            summary: "s".repeat(MAX_TEXT_BYTES + 1),
            findings: vec![],
        };
        assert!(matches!(
            verdict_from_wit(long),
            Err(Fault::MalformedVerdict(_))
        ));
    }
}
