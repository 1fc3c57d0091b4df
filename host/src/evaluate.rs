//! Evaluating a gate: resolve each policy's module, run every policy bound
//! to the phase in its own sandbox, combine, and record the decision.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};
use shipgate_policy::Phase;
use shipgate_policy::wire::{self, EncodedGate};

use crate::decision::{Evaluation, EvidenceProblem, PolicyOutcome, RECORD_VERSION, combine};
use crate::error::Error;
use crate::gate::{Gate, Mode, PolicyEntry};
use crate::modules::{LoadError, load_module};
use crate::runtime::{
    Cancel, ComponentError, Determinism, Fault, HostFault, LoadedModule, Runtime,
};
use crate::snapshot::ValidSnapshot;

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
            let module = match load_module(
                &runtime,
                &gate.module_base,
                &gate.remote,
                policy,
                gate.max_module_bytes(),
            ) {
                // The host's own limit: the gate does not load, no verdict.
                Err(LoadError::Component {
                    error: error @ ComponentError::CompileTimeout { .. },
                    module,
                }) => {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "{}: policy '{}': module '{module}': {error}",
                        gate.origin.label(),
                        policy.name
                    )));
                }
                loaded => loaded.map_err(|error| Fault::Load(error.to_string())),
            };
            let module = match module {
                Ok(module) => check_policy(&runtime, &gate, policy, module)?,
                Err(fault) => Err(fault),
            };
            modules.insert(policy.name.clone(), module);
        }
        Ok(PreparedGate {
            runtime,
            gate_wire: EncodedGate::new(&gate.snapshot_gate()),
            gate,
            modules,
        })
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Whether every policy is one of the stock policies embedded in this
    /// binary (trusted code), rather than a module read from a file.
    pub(crate) fn runs_only_stock_policies(&self) -> bool {
        self.gate
            .file
            .policies
            .iter()
            .all(|p| p.module.is_builtin())
    }

    /// Each prepared policy with its module, or the fault it will fail
    /// closed with, in gate order.
    pub(crate) fn policies(&self) -> Vec<(&PolicyEntry, Result<&LoadedModule, &Fault>)> {
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

    /// Evaluates one phase. Every problem of a policy's is a fault that
    /// fails closed inside the returned decision; only a fault of the host's
    /// (no free instance slot) is an error, and no verdict.
    pub fn evaluate(
        &self,
        phase: Phase,
        snapshot: &ValidSnapshot,
    ) -> Result<Evaluation, HostFault> {
        self.evaluate_with(phase, snapshot, Vec::new(), &Budget::default())
    }

    /// Evaluates one phase within `budget`; `evidence` is what the host's
    /// sources could not find, which denies.
    pub(crate) fn evaluate_with(
        &self,
        phase: Phase,
        snapshot: &ValidSnapshot,
        evidence: Vec<EvidenceProblem>,
        budget: &Budget,
    ) -> Result<Evaluation, HostFault> {
        let input = Input {
            current: snapshot.encode_with_gate(&self.gate_wire),
            v2: OnceLock::new(),
            v1: OnceLock::new(),
            snapshot,
            gate: &self.gate_wire,
        };
        let determinism = Determinism {
            now_unix_seconds: snapshot.now.unix_seconds(),
            seed: seed_from(&snapshot.sha256),
        };
        let policies: Vec<&PolicyEntry> = self.gate.policies_for(phase).collect();
        let call = Call {
            phase,
            input: &input,
            determinism,
        };
        let ran = match &budget.beside {
            None => policies
                .iter()
                .map(|policy| self.run(policy, &call, budget.cancel.as_ref()))
                .collect::<Result<Vec<_>, _>>()?,
            Some(slots) => self.run_beside(&policies, &call, budget, slots)?,
        };
        let (decision, summary) = combine(phase, &ran, &evidence);
        let evaluated_at = jiff::Timestamp::now().to_string();
        Ok(Evaluation {
            record_version: RECORD_VERSION,
            decision_id: decision_id(&snapshot.sha256, &self.gate.sha256, phase, &evaluated_at),
            phase,
            decision,
            summary,
            policies: ran,
            evidence,
            snapshot_sha256: snapshot.sha256.clone(),
            gate: self.gate.file.name.clone(),
            gate_sha256: self.gate.sha256.clone(),
            evaluated_at,
        })
    }

    /// Runs the enforcing policies here and the shadow ones beside them on
    /// their own threads, each with a slot of `slots` (none free: it is
    /// recorded as not run). The shadow policies still running when the
    /// decision is made are stopped: they never delay the answer.
    fn run_beside(
        &self,
        policies: &[&PolicyEntry],
        call: &Call<'_>,
        budget: &Budget,
        slots: &Arc<tokio::sync::Semaphore>,
    ) -> Result<Vec<PolicyOutcome>, HostFault> {
        let stop = Cancel::default();
        let mut ran: Vec<Option<PolicyOutcome>> = vec![None; policies.len()];
        std::thread::scope(|scope| {
            let mut beside = Vec::new();
            for (index, policy) in policies.iter().enumerate() {
                if policy.mode != Mode::Shadow {
                    continue;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    let busy = Fault::Host(HostFault::Busy);
                    ran[index] = Some(fail_closed(policy, call.phase, None, &busy, 0, Vec::new()));
                    continue;
                };
                let stop = &stop;
                let thread = scope.spawn(move || {
                    let _slot = slot;
                    let started = Instant::now();
                    match self.run(policy, call, Some(stop)) {
                        Err(HostFault::Cancelled) => {
                            let after = started.elapsed();
                            let fault = Fault::OutOfDecisionTime {
                                after_ms: after.as_millis() as u64,
                            };
                            let us = after.as_micros() as u64;
                            fail_closed(policy, call.phase, None, &fault, us, Vec::new())
                        }
                        Err(fault) => fail_closed(
                            policy,
                            call.phase,
                            None,
                            &Fault::Host(fault),
                            0,
                            Vec::new(),
                        ),
                        Ok(outcome) => outcome,
                    }
                });
                beside.push((index, thread));
            }
            let mut enforced = Ok(());
            for (index, policy) in policies.iter().enumerate() {
                if policy.mode == Mode::Enforce && enforced.is_ok() {
                    match self.run(policy, call, budget.cancel.as_ref()) {
                        Ok(outcome) => ran[index] = Some(outcome),
                        Err(fault) => enforced = Err(fault),
                    }
                }
            }
            stop.cancel();
            for (index, thread) in beside {
                ran[index] = Some(
                    thread
                        .join()
                        .expect("a shadow policy's thread does not panic"),
                );
            }
            enforced
        })?;
        Ok(ran.into_iter().flatten().collect())
    }

    /// Runs one policy. A host fault ends the decision (no verdict), except
    /// for a shadow policy, whose outcome never counts: it records it.
    fn run(
        &self,
        policy: &PolicyEntry,
        call: &Call<'_>,
        cancel: Option<&Cancel>,
    ) -> Result<PolicyOutcome, HostFault> {
        let Call {
            phase,
            input,
            determinism,
        } = *call;
        let module = match self.modules.get(&policy.name) {
            Some(Ok(module)) => module,
            Some(Err(fault)) => return Ok(fail_closed(policy, phase, None, fault, 0, Vec::new())),
            None => {
                let fault = Fault::Load("the gate was not prepared for this phase".into());
                return Ok(fail_closed(policy, phase, None, &fault, 0, Vec::new()));
            }
        };
        let called = self.runtime.evaluate(
            module,
            phase,
            input.for_module(module),
            &policy.config_json(),
            self.gate.limits(),
            determinism,
            cancel,
        );
        let duration_us = called.duration.as_micros() as u64;
        Ok(match called.result {
            Ok(verdict) => PolicyOutcome {
                name: policy.name.clone(),
                module: policy.module.to_string(),
                module_sha256: Some(module.sha256.clone()),
                mode: policy.mode,
                decision: verdict.decision,
                summary: verdict.summary,
                findings: verdict.findings,
                duration_us,
                error: None,
                log: called.log,
            },
            Err(Fault::Host(HostFault::Cancelled)) => return Err(HostFault::Cancelled),
            Err(Fault::Host(fault)) if policy.mode == Mode::Enforce => return Err(fault),
            Err(fault) => fail_closed(policy, phase, Some(module), &fault, duration_us, called.log),
        })
    }
}

/// What every policy of one decision is called with.
#[derive(Clone, Copy)]
struct Call<'a> {
    phase: Phase,
    input: &'a Input<'a>,
    determinism: Determinism,
}

/// The snapshot with the gate, in each encoding a policy of the decision
/// reads: the current one built once and shared by every policy, an older
/// one only when a policy built for an older contract asks for it.
struct Input<'a> {
    current: Vec<u8>,
    v2: OnceLock<Vec<u8>>,
    v1: OnceLock<Vec<u8>>,
    snapshot: &'a ValidSnapshot,
    gate: &'a EncodedGate,
}

impl Input<'_> {
    fn for_module(&self, module: &LoadedModule) -> &[u8] {
        match module.wire_version() {
            wire::VERSION_2 => self
                .v2
                .get_or_init(|| self.snapshot.encode_v2_with_gate(self.gate)),
            wire::VERSION_1 => self
                .v1
                .get_or_init(|| self.snapshot.encode_v1_with_gate(self.gate)),
            _ => &self.current,
        }
    }
}

/// How one decision runs.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Lets the caller stop the decision (and claim it done first).
    pub cancel: Option<Cancel>,
    /// Run shadow policies beside the enforcing ones, each with a slot of
    /// these, and stop them when the decision is made (the server, where
    /// the answer must not wait for them). `None`: one after another.
    pub beside: Option<Arc<tokio::sync::Semaphore>>,
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
        module: policy.module.to_string(),
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
    // The host failing to run the policy says nothing about the policy:
    // the gate does not load (a reload keeps the gate it had).
    let host = |fault: HostFault| {
        Error::Internal(anyhow::anyhow!(
            "{at}: shipgate could not run the policy to check it: {fault}"
        ))
    };
    let info = match runtime.describe(&module, gate.limits()).result {
        Ok(info) => info,
        Err(Fault::Host(fault)) => return Err(host(fault)),
        // A policy that cannot describe itself cannot be trusted to decide.
        Err(fault) => return Ok(Err(fault)),
    };
    if let Some(phase) = policy.phases.iter().find(|p| !info.phases.contains(p)) {
        let supported: Vec<&str> = info.phases.iter().map(|p| p.as_str()).collect();
        return refuse(format!(
            "module '{}' does not evaluate the {phase} phase (it evaluates: {})",
            policy.module.as_str(),
            supported.join(", ")
        ));
    }
    match runtime
        .validate_config(&module, &policy.config_json(), gate.limits())
        .result
    {
        Ok(()) => Ok(Ok(module)),
        Err(Fault::PolicyError(why)) => refuse(why),
        Err(Fault::Host(fault)) => Err(host(fault)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Origin;
    use shipgate_policy::Decision;

    fn runtime() -> Arc<Runtime> {
        crate::runtime::test_runtime(4)
    }

    fn gate(policies: &str) -> Gate {
        // The built-in gate's plan and thresholds, with these policies.
        let plan = crate::gate::DEFAULT_GATE
            .split("[limits]")
            .next()
            .expect("the built-in gate has a plan");
        let text = format!("{plan}\n{policies}");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gate.toml");
        Gate::parse(&text, Origin::File(path)).unwrap()
    }

    const BAD_CONFIG: &str =
        "module = \"builtin:canary\"\nphases = [\"abort\"]\nconfig = { no_such_option = 1 }\n";

    fn snapshot() -> ValidSnapshot {
        crate::snapshot::parse(include_bytes!("../../examples/snapshots/abort-allow.json")).unwrap()
    }

    #[test]
    fn an_enforcing_policy_whose_config_is_refused_stops_the_gate() {
        let text = format!("[[policy]]\nname = \"strict\"\n{BAD_CONFIG}");
        let error = PreparedGate::prepare(runtime(), gate(&text), &[Phase::Abort])
            .err()
            .expect("refused");
        let message = error.to_string();
        assert!(
            message.contains("gate.toml: policy 'strict': config: unknown field `no_such_option`"),
            "{message}"
        );
        assert_eq!(error.exit_code(), crate::exit::INVALID_INPUT);
    }

    #[test]
    fn a_shadow_policy_whose_config_is_refused_is_only_its_own_fault() {
        let text = format!(
            "[[policy]]\nname = \"canary\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n\
             [[policy]]\nname = \"trial\"\nmode = \"shadow\"\n{BAD_CONFIG}"
        );
        let prepared = PreparedGate::prepare(runtime(), gate(&text), &[Phase::Abort]).unwrap();
        let evaluation = prepared.evaluate(Phase::Abort, &snapshot()).unwrap();
        assert_eq!(evaluation.decision, Decision::Allow);
        let trial = &evaluation.policies[1];
        assert_eq!(trial.name, "trial");
        assert!(trial.failed_closed());
        assert!(
            trial
                .error
                .as_deref()
                .unwrap()
                .contains("unknown field `no_such_option`"),
            "{trial:?}"
        );
    }

    #[test]
    fn a_module_that_cannot_load_fails_closed_at_every_decision() {
        let text = "[[policy]]\nname = \"gone\"\nmodule = \"gone.wasm\"\nphases = [\"abort\"]\n";
        let prepared = PreparedGate::prepare(runtime(), gate(text), &[Phase::Abort]).unwrap();
        let (policy, module) = &prepared.policies()[0];
        assert_eq!(policy.name, "gone");
        assert!(module.is_err());
        let evaluation = prepared.evaluate(Phase::Abort, &snapshot()).unwrap();
        assert_eq!(evaluation.decision, Decision::Rollback);
        let error = evaluation.policies[0].error.as_deref().unwrap();
        assert!(
            error.starts_with("policy could not be loaded: module file 'gone.wasm' not found in "),
            "{error}"
        );
    }

    #[test]
    fn a_phase_the_gate_was_not_prepared_for_fails_closed() {
        let text = "[[policy]]\nname = \"canary\"\nmodule = \"builtin:canary\"\nphases = [\"promotion\"]\n";
        let prepared = PreparedGate::prepare(runtime(), gate(text), &[Phase::Abort]).unwrap();
        let evaluation = prepared.evaluate(Phase::Promotion, &snapshot()).unwrap();
        assert_eq!(evaluation.decision, Decision::Deny);
        assert!(evaluation.policies[0].failed_closed());
    }
}
