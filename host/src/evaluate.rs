//! Evaluating a gate: resolve each policy's module, run every policy bound
//! to the phase in its own sandbox, combine, and record the decision.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use shipgate_policy::Phase;
use shipgate_policy::wire::EncodedGate;

use crate::builtins;
use crate::error::Error;
use crate::gate::{Gate, Mode, ModuleBase, PolicyEntry};
use crate::runtime::{Determinism, Fault, LoadedModule, Runtime};
use crate::snapshot::ValidSnapshot;
use crate::verdict::{Evaluation, PolicyOutcome, combine};

/// A gate whose modules are loaded and whose policies accepted their
/// config: ready to evaluate any number of snapshots.
pub struct PreparedGate {
    runtime: Arc<Runtime>,
    gate: Gate,
    /// The `gate` object policies see, encoded once.
    gate_wire: EncodedGate,
    /// Per policy name: the loaded module, or why it could not be used (the
    /// policy then fails closed at every evaluation).
    modules: HashMap<String, Result<Arc<LoadedModule>, Fault>>,
}

impl PreparedGate {
    /// Loads the modules of the policies bound to `phases` and checks each
    /// policy's phases and config with the policy itself. A config the policy
    /// refuses or a phase it does not evaluate is an error in the gate; a
    /// module that cannot be loaded is kept as a fault, so the gate fails
    /// closed instead of refusing to answer.
    pub fn prepare(
        runtime: Arc<Runtime>,
        gate: Gate,
        phases: &[Phase],
    ) -> Result<PreparedGate, Error> {
        let mut modules = HashMap::new();
        let wanted = gate
            .file
            .policies
            .iter()
            .filter(|p| p.phases.iter().any(|ph| phases.contains(ph)));
        for policy in wanted {
            let module = load_module(&runtime, &gate.module_base, policy).map_err(Fault::Load);
            let module = match module {
                Ok(module) => check_policy(&runtime, &gate, policy, module)?,
                Err(fault) => Err(fault),
            };
            modules.insert(policy.name.clone(), module);
        }
        let gate_object = gate
            .snapshot_gate()
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        Ok(PreparedGate {
            runtime,
            gate,
            gate_wire: EncodedGate::new(&gate_object),
            modules,
        })
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Whether every policy is one of the stock policies embedded in this
    /// binary (trusted code), rather than a module read from a file.
    pub fn runs_only_stock_policies(&self) -> bool {
        self.gate
            .file
            .policies
            .iter()
            .all(|p| p.module.starts_with(builtins::PREFIX))
    }

    /// Each prepared policy with its module, or the fault it will fail
    /// closed with, in gate order.
    pub fn policies(&self) -> Vec<(&PolicyEntry, Result<&LoadedModule, &Fault>)> {
        self.gate
            .file
            .policies
            .iter()
            .filter_map(|policy| {
                let module = self.modules.get(&policy.name)?;
                Some((policy, module.as_ref().map(|m| m.as_ref())))
            })
            .collect()
    }

    /// Evaluates one phase. Never fails: every policy problem is a fault
    /// that fails closed inside the returned decision.
    pub fn evaluate(&self, phase: Phase, snapshot: &ValidSnapshot) -> Evaluation {
        self.evaluate_with(phase, snapshot, Vec::new())
    }

    /// Evaluates one phase, counting `evidence` (what the host's sources
    /// could not find) as outcomes beside the policies'.
    pub fn evaluate_with(
        &self,
        phase: Phase,
        snapshot: &ValidSnapshot,
        evidence: Vec<PolicyOutcome>,
    ) -> Evaluation {
        // Built once, shared by every policy of the phase.
        let input = snapshot.encode_with_gate(&self.gate_wire);
        let determinism = Determinism {
            now_unix_seconds: snapshot.now.0,
            seed: seed_from(&snapshot.sha256),
        };
        let mut outcomes = evidence;
        outcomes.extend(
            self.gate
                .policies_for(phase)
                .map(|policy| self.run(policy, phase, &input, determinism)),
        );
        let (decision, summary) = combine(phase, &outcomes);
        let evaluated_at = jiff::Timestamp::now().to_string();
        Evaluation {
            decision_id: decision_id(&snapshot.sha256, &self.gate.sha256, phase, &evaluated_at),
            phase,
            decision,
            summary,
            policies: outcomes,
            snapshot_sha256: snapshot.sha256.clone(),
            gate: self.gate.file.name.clone(),
            gate_sha256: self.gate.sha256.clone(),
            evaluated_at,
        }
    }

    fn run(
        &self,
        policy: &PolicyEntry,
        phase: Phase,
        input: &[u8],
        determinism: Determinism,
    ) -> PolicyOutcome {
        let module = match self.modules.get(&policy.name) {
            Some(Ok(module)) => module,
            Some(Err(fault)) => return fail_closed(policy, phase, None, fault, 0, Vec::new()),
            None => {
                let fault = Fault::Load("the gate was not prepared for this phase".into());
                return fail_closed(policy, phase, None, &fault, 0, Vec::new());
            }
        };
        let called = self.runtime.evaluate(
            module,
            phase,
            input,
            &policy.config_json(),
            self.gate.limits(),
            determinism,
        );
        let duration_us = called.duration.as_micros() as u64;
        match called.result {
            Ok(verdict) => PolicyOutcome {
                name: policy.name.clone(),
                module: policy.module.clone(),
                module_sha256: Some(module.sha256.clone()),
                mode: policy.mode,
                decision: verdict.decision,
                summary: verdict.summary,
                findings: verdict.findings,
                duration_us,
                error: None,
                log: called.log,
            },
            Err(fault) => fail_closed(policy, phase, Some(module), &fault, duration_us, called.log),
        }
    }
}

fn fail_closed(
    policy: &PolicyEntry,
    phase: Phase,
    module: Option<&Arc<LoadedModule>>,
    fault: &Fault,
    duration_us: u64,
    log: Vec<String>,
) -> PolicyOutcome {
    let decision = policy.on_error_for(phase);
    PolicyOutcome {
        name: policy.name.clone(),
        module: policy.module.clone(),
        module_sha256: module.map(|m| m.sha256.clone()),
        mode: policy.mode,
        decision,
        summary: format!(
            "policy '{}' failed closed ({decision}): {fault}",
            policy.name
        ),
        findings: Vec::new(),
        duration_us,
        error: Some(fault.to_string()),
        log,
    }
}

/// Reads a policy's module (built-in, or a file under the module base),
/// checks its pin and compiles it.
pub fn load_module(
    runtime: &Runtime,
    base: &ModuleBase,
    policy: &PolicyEntry,
) -> Result<Arc<LoadedModule>, String> {
    let module = read_module(base, &policy.module)?;
    if let Some(pin) = &policy.sha256
        && !module.sha256.eq_ignore_ascii_case(pin)
    {
        return Err(format!(
            "module '{}' has sha256 {}, but the gate pins {pin}",
            policy.module, module.sha256
        ));
    }
    runtime
        .load_digested(&module.bytes, &module.sha256)
        .map_err(|why| format!("module '{}': {why}", policy.module))
}

/// A policy module's bytes and their digest.
pub struct ModuleBytes {
    pub bytes: Cow<'static, [u8]>,
    /// Hex sha256 of `bytes`.
    pub sha256: String,
}

/// The bytes of a module reference.
pub fn read_module(base: &ModuleBase, module: &str) -> Result<ModuleBytes, String> {
    if module.starts_with(builtins::PREFIX) {
        let builtin = builtins::lookup(module).ok_or_else(|| {
            format!(
                "no stock policy '{module}' (there are {})",
                builtins::names()
            )
        })?;
        return Ok(ModuleBytes {
            bytes: Cow::Borrowed(builtin.bytes),
            sha256: builtin.sha256.to_string(),
        });
    }
    let bytes = match base {
        ModuleBase::WorkingDir => std::fs::read(module).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("module file '{module}' not found"),
            _ => format!("reading module '{module}': {e}"),
        }),
        ModuleBase::Confined(dir) => read_confined(dir, module),
    }?;
    Ok(ModuleBytes {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: Cow::Owned(bytes),
    })
}

/// Reads `module` inside `dir` only: an absolute path or one that climbs
/// out with `..` is refused, so a gate (or a request naming a gate's module)
/// cannot reach other files.
fn read_confined(dir: &Path, module: &str) -> Result<Vec<u8>, String> {
    let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
        .map_err(|e| format!("opening the gate's directory {}: {e}", dir.display()))?;
    root.read(module).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("module file '{module}' not found in {}", dir.display())
        }
        _ if Path::new(module).is_absolute() || module.split(['/', '\\']).any(|c| c == "..") => {
            format!(
                "module path '{module}' leaves the gate file's directory {}; \
             module paths are relative to the gate file and stay inside it",
                dir.display()
            )
        }
        _ => format!("reading module '{module}' in {}: {e}", dir.display()),
    })
}

/// Asks the policy for its phases and has it validate its config.
fn check_policy(
    runtime: &Runtime,
    gate: &Gate,
    policy: &PolicyEntry,
    module: Arc<LoadedModule>,
) -> Result<Result<Arc<LoadedModule>, Fault>, Error> {
    let at = format!("{}: policy '{}'", gate.origin.label(), policy.name);
    // A shadow policy never changes a decision, so its mistakes must not
    // stop the gate either: they become its fault.
    let refuse = |why: String| -> Result<Result<Arc<LoadedModule>, Fault>, Error> {
        match policy.mode {
            Mode::Shadow => Ok(Err(Fault::Load(why))),
            Mode::Enforce => Err(Error::InvalidInput(format!("{at}: {why}"))),
        }
    };
    let info = match runtime.describe(&module, gate.limits()).result {
        Ok(info) => info,
        // A policy that cannot describe itself cannot be trusted to decide.
        Err(fault) => return Ok(Err(fault)),
    };
    if let Some(phase) = policy.phases.iter().find(|p| !info.phases.contains(p)) {
        let supported: Vec<&str> = info.phases.iter().map(|p| p.as_str()).collect();
        return refuse(format!(
            "module '{}' does not evaluate the {phase} phase (it evaluates: {})",
            policy.module,
            supported.join(", ")
        ));
    }
    match runtime
        .validate_config(&module, &policy.config_json(), gate.limits())
        .result
    {
        Ok(()) => Ok(Ok(module)),
        Err(Fault::PolicyError(why)) => refuse(why),
        Err(fault) => Ok(Err(fault)),
    }
}

/// The random seed of an evaluation: the snapshot digest.
fn seed_from(snapshot_sha256: &str) -> [u8; 32] {
    let mut seed = [0u8; 32];
    if hex::decode_to_slice(snapshot_sha256, &mut seed).is_err() {
        seed.copy_from_slice(&Sha256::digest(snapshot_sha256.as_bytes()));
    }
    seed
}

fn decision_id(
    snapshot_sha256: &str,
    gate_sha256: &str,
    phase: Phase,
    evaluated_at: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [snapshot_sha256, gate_sha256, phase.as_str(), evaluated_at] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    // Two decisions in one process within the clock's resolution still differ.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(SEQUENCE.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&hasher.finalize()[..16])
}
