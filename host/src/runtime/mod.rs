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
//! print at most 64 KiB per stream. An epoch deadline
//! stops it after `timeout_ms` (a tick is 2 ms), a resource limiter
//! caps its memory at `memory_mib`, and wasm's own stack limit stops runaway
//! recursion. Each of these ends the call with a [`Fault`]; the engine and
//! every other module stay usable.

mod bindings;
mod cache;
mod call;
mod component;
mod engine;
mod fault;
mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use shipgate_policy::{Phase, PolicyInfo, Verdict};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub(crate) use bindings::CONTRACT;
#[cfg(feature = "fuzzing")]
pub(crate) use bindings::{MAX_FINDINGS, MAX_TEXT_BYTES, check_verdict};
pub(crate) use cache::ModuleCache;
pub use call::{Cancel, ReusedInstance};
pub use component::ComponentError;
pub(crate) use fault::OUT_OF_DECISION_TIME;
pub use fault::{Fault, HostFault};
pub use sandbox::Determinism;

use bindings::PolicyPre;
use component::{check_is_component, contract_of, root_cause, runs};
use engine::EpochTicker;
use sandbox::HostState;

/// The largest memory limit a gate may set.
pub(crate) const MAX_MEMORY_MIB: u64 = 1024;

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
    /// The key that authenticates every cache entry, kept outside the
    /// cache (created, mode 0600, on first use); `None` disables the cache.
    /// Default: [`ModuleCache::default_key_file`].
    pub cache_key_file: Option<PathBuf>,
    /// How many policy instances may be alive at once (the pooling
    /// allocator's slots). Default 64.
    pub max_concurrent_instances: u32,
    /// The longest a module may take to compile; beyond, loading it is a
    /// fault of the host's (no verdict). Default 60 s.
    pub compile_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: ModuleCache::default_dir(),
            cache_key_file: ModuleCache::default_key_file(),
            max_concurrent_instances: 64,
            compile_timeout: Duration::from_secs(60),
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
    pre: PolicyPre,
}

impl LoadedModule {
    /// The component's imports and exports, by name
    /// (`wasi:cli/environment@0.2.x`, ...; the contract's `describe`,
    /// `validate-config` and `evaluate`).
    pub(crate) fn imports_and_exports(&self, runtime: &Runtime) -> (Vec<String>, Vec<String>) {
        let component_type = self.component.component_type();
        let names = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_string).collect();
        (
            names(
                &mut component_type
                    .imports(&runtime.engine)
                    .map(|(name, _)| name),
            ),
            names(
                &mut component_type
                    .exports(&runtime.engine)
                    .map(|(name, _)| name),
            ),
        )
    }

    /// The snapshot encoding this module reads
    /// ([`shipgate_policy::wire::VERSION`], or version 1 for a module built
    /// for contract 0.2.0).
    pub fn wire_version(&self) -> u8 {
        self.pre.wire_version()
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
    compile_timeout: Duration,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine::engine_config(config))
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
        let cache = match (&config.cache_dir, &config.cache_key_file) {
            (Some(dir), Some(key)) => ModuleCache::open(dir, key, &engine).ok(),
            _ => None,
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            loaded: Mutex::default(),
            compile_timeout: config.compile_timeout,
            _ticker: ticker,
        })
    }

    /// Compiles (or fetches from the caches) a policy module. The error says
    /// what is wrong with the bytes.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, ComponentError> {
        self.load_digested(bytes, &hex::encode(Sha256::digest(bytes)))
    }

    /// [`Runtime::load`] for bytes whose hex sha256 the caller already has
    /// (the stock policies' is computed at build time). The digest keys the
    /// compiled-module caches, so it must be the bytes' own: crate-only.
    pub(crate) fn load_digested(
        &self,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Arc<LoadedModule>, ComponentError> {
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
                let component = self.compile(bytes)?;
                if let Some(cache) = &self.cache {
                    let _ = cache.put(&sha256, &component);
                }
                component
            }
        };
        let contract = contract_of(&self.engine, &component)?;
        if let Some(built_for) = &contract
            && !runs(built_for)
        {
            return Err(ComponentError::ContractMismatch {
                built_for: built_for.clone(),
            });
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ComponentError::MissingImport(root_cause(&e)))?;
        let pre = PolicyPre::new(instance_pre, contract.as_deref())
            .map_err(|e| ComponentError::WrongWorld(root_cause(&e)))?;
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

    /// Lets go of the compiled modules nothing uses any more (no prepared
    /// gate holds them): a reload to a new module version must not keep
    /// every old one in memory. A module asked for again is compiled again,
    /// or read back from the on-disk cache.
    pub(crate) fn forget_unused(&self) -> usize {
        let mut loaded = self.loaded.lock().expect("not poisoned");
        let before = loaded.len();
        loaded.retain(|_, module| Arc::strong_count(module) > 1);
        before - loaded.len()
    }

    /// Compiles on a thread of its own, waiting at most the compile
    /// timeout: a module built to take the compiler hours cannot hold a
    /// gate's loading (or a reload) that long. A compilation past its time
    /// is left to end on its own; its result is dropped.
    fn compile(&self, bytes: &[u8]) -> Result<Component, ComponentError> {
        let (done, result) = std::sync::mpsc::channel();
        let engine = self.engine.clone();
        let bytes = bytes.to_vec();
        std::thread::Builder::new()
            .name("shipgate-compile".into())
            .spawn(move || {
                let _ = done.send(Component::new(&engine, &bytes));
            })
            .map_err(|e| ComponentError::Invalid(format!("starting the compiler: {e}")))?;
        match result.recv_timeout(self.compile_timeout) {
            Ok(compiled) => compiled.map_err(|e| ComponentError::Invalid(root_cause(&e))),
            Err(_) => Err(ComponentError::CompileTimeout {
                seconds: self.compile_timeout.as_secs(),
            }),
        }
    }

    /// Asks a policy to describe itself.
    pub(crate) fn describe(&self, module: &LoadedModule, limits: Limits) -> Called<PolicyInfo> {
        self.call(module, limits, Determinism::FIXED, None, |policy, store| {
            Ok(Ok(policy.describe(store)?))
        })
    }

    /// Asks a policy to check its config; `Err(Fault::PolicyError)` carries
    /// the policy's complaint.
    pub(crate) fn validate_config(
        &self,
        module: &LoadedModule,
        config_json: &str,
        limits: Limits,
    ) -> Called<()> {
        self.call(module, limits, Determinism::FIXED, None, |policy, store| {
            Ok(policy
                .validate_config(store, config_json)?
                .map_err(Fault::PolicyError))
        })
    }

    /// Evaluates one phase in a fresh instance. `snapshot` is in the
    /// contract's encoding ([`shipgate_policy::wire`]). `cancel` lets the
    /// caller stop it (a [`HostFault::Cancelled`]).
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &self,
        module: &LoadedModule,
        phase: Phase,
        snapshot: &[u8],
        config_json: &str,
        limits: Limits,
        determinism: Determinism,
        cancel: Option<&Cancel>,
    ) -> Called<Verdict> {
        self.call(module, limits, determinism, cancel, |policy, store| {
            policy.evaluate(store, phase, snapshot, config_json)
        })
    }
}

/// A runtime for the crate's tests: `slots` instances at once, no module
/// cache on disk.
#[cfg(test)]
pub(crate) fn test_runtime(slots: u32) -> Arc<Runtime> {
    let config = RuntimeConfig {
        cache_dir: None,
        max_concurrent_instances: slots,
        ..Default::default()
    };
    Arc::new(Runtime::new(&config).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(config: RuntimeConfig) -> Runtime {
        Runtime::new(&RuntimeConfig {
            cache_dir: None,
            ..config
        })
        .unwrap()
    }

    /// A component of `count` instances of an empty core module.
    fn many_core_instances(count: u32) -> Vec<u8> {
        use wasm_encoder::{Component, InstanceSection, Module, ModuleSection};
        let mut component = Component::new();
        component.section(&ModuleSection(&Module::new()));
        let mut instances = InstanceSection::new();
        for _ in 0..count {
            instances.instantiate(0, std::iter::empty::<(&str, wasm_encoder::ModuleArg)>());
        }
        component.section(&instances);
        component.finish()
    }

    #[test]
    fn a_component_with_too_many_core_instances_is_refused_at_load() {
        let runtime = runtime(RuntimeConfig::default());
        let Err(error) = runtime.load(&many_core_instances(17)) else {
            panic!("loaded")
        };
        assert!(
            error
                .to_string()
                .contains("17 core module instances, which exceeds the configured maximum of 16"),
            "{error}"
        );
    }

    #[test]
    fn modules_no_gate_holds_are_let_go() {
        let runtime = runtime(RuntimeConfig::default());
        let canary = crate::builtins::by_name("canary").unwrap();
        let verify = crate::builtins::by_name("verify").unwrap();
        let held = runtime.load(canary.bytes).unwrap();
        drop(runtime.load(verify.bytes).unwrap());
        assert_eq!(runtime.forget_unused(), 1, "verify, which nothing holds");
        assert_eq!(runtime.forget_unused(), 0);
        // The one still held stays compiled: loading it again is the same.
        assert!(Arc::ptr_eq(&held, &runtime.load(canary.bytes).unwrap()));
    }

    #[test]
    fn a_compilation_past_its_time_is_the_hosts_fault() {
        let runtime = runtime(RuntimeConfig {
            compile_timeout: Duration::ZERO,
            ..RuntimeConfig::default()
        });
        let canary = crate::builtins::lookup("builtin:canary").unwrap();
        let Err(error) = runtime.load(canary.bytes) else {
            panic!("compiled in no time")
        };
        assert_eq!(error, ComponentError::CompileTimeout { seconds: 0 });
    }

    /// The WASI context is built on a policy's first WASI call: a stock
    /// policy's decision makes none, so it costs nothing.
    #[test]
    fn stock_decisions_build_no_wasi_context() {
        let runtime = runtime(RuntimeConfig::default());
        let gate =
            crate::gate::Gate::parse(crate::gate::DEFAULT_GATE, crate::gate::Origin::BuiltIn)
                .unwrap();
        let gate = shipgate_policy::wire::EncodedGate::new(&gate.snapshot_gate());
        let example = include_bytes!("../../../examples/snapshots/abort-rollback.json");
        let input = crate::snapshot::parse(example)
            .unwrap()
            .encode_with_gate(&gate);
        for builtin in &crate::builtins::BUILTINS {
            let module = runtime.load(builtin.bytes).unwrap();
            for phase in Phase::ALL {
                let called = runtime.call(
                    &module,
                    Limits::default(),
                    Determinism::FIXED,
                    None,
                    |policy, store| {
                        // Whatever it decides, or refuses for a phase it
                        // does not decide.
                        let _decided_or_refused =
                            policy.evaluate(&mut *store, phase, &input, "{}")?;
                        Ok(Ok(store.data().used_wasi()))
                    },
                );
                let name = builtin.name;
                let used_wasi = called
                    .result
                    .unwrap_or_else(|fault| panic!("{name}, {phase}: {fault}"));
                assert!(!used_wasi, "{name}, {phase}");
            }
        }
    }

    /// Sleeping is refused by replacing WASI's clock: a WASI without that
    /// clock must stop the runtime from starting, not let sleeping through.
    #[test]
    fn the_clock_replaced_must_be_the_one_wasi_links() {
        let engine = Engine::default();
        let mut bare: Linker<HostState> = Linker::new(&engine);
        let error = sandbox::forbid_sleeping(&mut bare).unwrap_err();
        assert!(
            error.to_string().contains("sleeping would not be refused"),
            "{error}"
        );
        let mut linked: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linked).unwrap();
        sandbox::forbid_sleeping(&mut linked).unwrap();
    }
}
