//! The per-evaluation sandbox: a store whose WASI context grants nothing,
//! whose clocks are frozen and whose randomness is seeded, and whose memory
//! growth is capped.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The most random bytes a policy may ask for at once: its seed's stream
/// is endless, the host's memory is not.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// The most a policy may print (stdout and stderr each) in one evaluation.
/// Writing more is a fault: the output lands in every decision record.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Inputs that make an evaluation reproducible.
#[derive(Debug, Clone, Copy)]
pub struct Determinism {
    /// The snapshot's `now`, in seconds since the Unix epoch.
    pub now_unix_seconds: f64,
    /// Seed for every random source the policy can reach.
    pub seed: [u8; 32],
}

impl Determinism {
    /// For calls without a snapshot (`describe`, `validate-config`).
    pub const FIXED: Determinism = Determinism {
        now_unix_seconds: 0.0,
        seed: [0; 32],
    };
}

/// What a store holds for one evaluation.
pub(crate) struct HostState {
    /// Built on the policy's first WASI call. Stock policies make none in an
    /// evaluation, and building the context (clocks, seeded random sources,
    /// output pipes) was a measurable share of a fresh decision.
    wasi: Option<Wasi>,
    determinism: Determinism,
    table: ResourceTable,
    limits: MemoryCap,
}

/// The WASI context a policy sees: nothing granted, frozen clocks, seeded
/// randomness, output captured up to [`MAX_OUTPUT_BYTES`].
struct Wasi {
    ctx: WasiCtx,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Wasi {
    fn new(determinism: Determinism) -> Self {
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let now = Duration::from_secs_f64(determinism.now_unix_seconds.max(0.0));
        let seed = determinism.seed;
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock(now))
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                seed.iter().rev().copied().collect(),
            ))
            .insecure_random_seed(u128::from_le_bytes(
                seed[..16].try_into().expect("16 bytes"),
            ))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Wasi {
            ctx,
            stdout,
            stderr,
        }
    }

    fn pipes(&self) -> [&MemoryOutputPipe; 2] {
        [&self.stdout, &self.stderr]
    }
}

impl HostState {
    pub(crate) fn new(memory_bytes: usize, determinism: Determinism) -> Self {
        HostState {
            wasi: None,
            determinism,
            table: ResourceTable::new(),
            limits: MemoryCap {
                max_bytes: memory_bytes,
                used_bytes: 0,
                refused: false,
            },
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut MemoryCap {
        &mut self.limits
    }

    /// Whether the policy tried to grow past its memory limit.
    pub(crate) fn hit_memory_limit(&self) -> bool {
        self.limits.refused
    }

    /// Whether the policy has made a WASI call in this store.
    #[cfg(test)]
    pub(crate) fn used_wasi(&self) -> bool {
        self.wasi.is_some()
    }

    /// Whether stdout or stderr is (nearly) full: a write that would overflow
    /// the buffer is refused, so a flood stops just short of the limit.
    pub(crate) fn output_full(&self) -> bool {
        const SLACK: usize = 4096;
        self.wasi.as_ref().is_some_and(|wasi| {
            wasi.pipes()
                .iter()
                .any(|pipe| pipe.contents().len() + SLACK > MAX_OUTPUT_BYTES)
        })
    }

    /// What the policy printed, stdout then stderr, one entry per line.
    pub(crate) fn log(&self) -> Vec<String> {
        let Some(wasi) = &self.wasi else {
            return Vec::new();
        };
        wasi.pipes()
            .iter()
            .flat_map(|pipe| {
                String::from_utf8_lossy(&pipe.contents())
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let determinism = self.determinism;
        let wasi = self.wasi.get_or_insert_with(|| Wasi::new(determinism));
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

/// Caps the linear memory of a whole instance (all its memories together)
/// and table growth, remembering a refusal so a trap that follows can be
/// reported as "out of memory" rather than a bare trap.
pub(crate) struct MemoryCap {
    max_bytes: usize,
    used_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let after = self
            .used_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        let allowed = after <= self.max_bytes;
        if allowed {
            self.used_bytes = after;
        }
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table entry costs the host a pointer or more; the same budget
        // in entries is generous and still bounded.
        let allowed = desired <= self.max_bytes / 8;
        self.refused |= !allowed;
        Ok(allowed)
    }
}

/// The WASI version whose monotonic clock is replaced.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Time is frozen, so waiting for it to pass would wait forever, and a
/// blocking host call is beyond the epoch deadline's reach. Asking to sleep
/// is therefore a fault, at once.
///
/// The clock replaced must be the one WASI was linked with: a WASI of
/// another version would add its own clock under another name, and sleeping
/// would be allowed again. So it is checked here, when the runtime starts.
pub(crate) fn forbid_sleeping(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    fn refuse(
        _store: wasmtime::StoreContextMut<'_, HostState>,
        (_when,): (u64,),
    ) -> wasmtime::Result<(Resource<DynPollable>,)> {
        Err(wasmtime::format_err!(
            "policies may not sleep or wait: time is frozen at the snapshot's `now`"
        ))
    }
    linker.allow_shadowing(false);
    let probe = linker
        .instance(MONOTONIC_CLOCK)?
        .func_wrap("subscribe-duration", refuse);
    if probe.is_ok() {
        wasmtime::bail!(
            "WASI as linked provides no {MONOTONIC_CLOCK}: sleeping would not be refused; \
             update MONOTONIC_CLOCK to the WASI version wasmtime-wasi links"
        );
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(name, refuse)?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// Monotonic time does not move: a policy that waits on it waits forever and
/// meets its deadline, instead of reading real time.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}
