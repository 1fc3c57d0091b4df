//! The decision service: one decision from a caller's request to its
//! record, with no HTTP in it. It admits requests (a bounded number at
//! once, each with a deadline), gathers evidence for a target, evaluates
//! the served gate within the deadline, records the decision (log file,
//! collector) and counts it. The server maps HTTP onto it and back; the
//! GitHub App's background reviews call it the same way.

mod evidence;
pub(crate) mod judge;
mod metrics;
mod request;
#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shipgate_policy::Phase;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::decision::Evaluation;
use crate::decision_log::ship::{Shipper, ShipperSettings};
use crate::decision_log::{self, LogTarget};
use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Mode};
use crate::runtime::{Cancel, HostFault, Runtime, RuntimeConfig};
use crate::snapshot;

#[cfg(feature = "fuzzing")]
pub(crate) use evidence::validated;
pub(crate) use metrics::Metrics;
pub(crate) use request::{DecisionRequest, Input, Refusal};

/// The log target of the one line per decision, so it can be filtered on its
/// own (`SHIPGATE_LOG=info,shipgate::decision=off`).
pub(crate) const DECISION_LOG_TARGET: &str = "shipgate::decision";

/// Instance slots kept beyond the evaluations' for loading a gate again
/// (its policies describe themselves and check their config).
const RELOAD_SLOTS: usize = 2;

/// How the service runs; fixed for its lifetime.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSettings {
    pub(crate) gate_path: PathBuf,
    /// The module store, when named (`--store`).
    pub(crate) store: Option<PathBuf>,
    pub(crate) require_pins: bool,
    pub(crate) require_signatures: bool,
    /// The keys modules may be signed by (`--trust-key`); a gate's own
    /// `verify` key must be one of them when there are any.
    pub(crate) trusted_keys: Vec<crate::registry::PublicKey>,
    /// Budget of one request, from admission to answer.
    pub(crate) request_timeout: Duration,
    /// Requests admitted at once from one caller (waiting or evaluating);
    /// beyond, refused.
    pub(crate) max_pending: usize,
    /// Gate evaluations running at once.
    pub(crate) max_evaluating: usize,
    /// Kayenta judgements admitted at once (each holds a large body and
    /// takes one of the evaluation slots while it runs, a large one a
    /// second when two are free).
    pub(crate) max_judging: usize,
    /// Where every decision is written before it is answered.
    pub(crate) decision_log: Option<LogTarget>,
    /// The collector decisions are shipped to, best effort.
    pub(crate) decision_log_url: Option<ShipperSettings>,
}

/// A request let in: its deadline, and its place among the admitted (held
/// until it is dropped).
pub(crate) struct Admission {
    pub(crate) deadline: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

pub(crate) struct Service {
    settings: ServiceSettings,
    metrics: Metrics,
    runtime: Arc<Runtime>,
    /// In-flight requests keep the gate they started with across a reload.
    served: RwLock<Arc<PreparedGate>>,
    /// Requests admitted, by caller (an adapter): each has `--max-pending`
    /// of its own, which no other's traffic can take.
    pending: std::sync::Mutex<std::collections::HashMap<&'static str, Arc<Semaphore>>>,
    evaluating: Arc<Semaphore>,
    /// Kayenta requests let in at once (see [`Service::admit_judgement`]).
    judging: Arc<Semaphore>,
    /// Instance slots for shadow policies, which run beside the enforcing
    /// ones: none free, a shadow policy is skipped, never waited for.
    shadows: Arc<Semaphore>,
    reloading: std::sync::Mutex<()>,
    shutting_down: AtomicBool,
    /// Ships decision records to `--decision-log-url`, when set.
    shipper: Option<Arc<Shipper>>,
}

impl Service {
    /// Loads the gate (every policy checked) and sizes the runtime for the
    /// settings: a gate that does not load never serves.
    pub(crate) fn start(settings: ServiceSettings) -> Result<Service, Error> {
        if let Some(LogTarget::File(path)) = &settings.decision_log {
            decision_log::check(path)?;
        }
        let gate = read_gate(&settings)?;
        let shadows = shadow_slots(&gate, settings.max_evaluating);
        // Each evaluation holds one instance for its enforcing policies and
        // one per shadow policy running beside them, and holds its permits
        // until its work has really stopped; the spare slots are the
        // reloads'.
        let runtime = Arc::new(Runtime::new(&RuntimeConfig {
            max_concurrent_instances: (settings.max_evaluating + shadows + RELOAD_SLOTS) as u32,
            ..RuntimeConfig::default()
        })?);
        Service::on(runtime, gate, settings)
    }

    /// The service on a runtime of the caller's, with a gate already read.
    fn on(runtime: Arc<Runtime>, gate: Gate, settings: ServiceSettings) -> Result<Service, Error> {
        let shadows = shadow_slots(&gate, settings.max_evaluating);
        let gate = prepare_gate(&runtime, gate, settings.request_timeout)?;
        let metrics = Metrics::new();
        let shipper = settings
            .decision_log_url
            .clone()
            .map(|url| Shipper::new(url, metrics.shipper_counters()));
        Ok(Service {
            shipper,
            pending: std::sync::Mutex::default(),
            evaluating: Arc::new(Semaphore::new(settings.max_evaluating)),
            judging: Arc::new(Semaphore::new(settings.max_judging)),
            shadows: Arc::new(Semaphore::new(shadows)),
            metrics,
            runtime,
            served: RwLock::new(Arc::new(gate)),
            reloading: std::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            settings,
        })
    }

    pub(crate) fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The collector records are shipped to, when one is configured.
    pub(crate) fn shipper(&self) -> Option<Arc<Shipper>> {
        self.shipper.clone()
    }

    /// The gate being served.
    pub(crate) fn gate(&self) -> Arc<PreparedGate> {
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Loads the gate file again; on any error the old gate keeps serving.
    pub(crate) fn reload(&self) -> Result<(), Error> {
        // One reload at a time: each uses one of the RELOAD_SLOTS.
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = read_gate(&self.settings)
            .and_then(|gate| prepare_gate(&self.runtime, gate, self.settings.request_timeout));
        self.metrics.reloaded(result.is_ok());
        let gate = result?;
        let previous = std::mem::replace(
            &mut *self
                .served
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            Arc::new(gate),
        );
        // The old gate's modules go once its last request is done; what no
        // gate holds now goes at once.
        drop(previous);
        let forgotten = self.runtime.forget_unused();
        if forgotten > 0 {
            tracing::info!(
                modules = forgotten,
                "compiled modules no gate uses are let go"
            );
        }
        Ok(())
    }

    /// Whether the service still takes work (it stops at shutdown, so that
    /// readiness fails at once).
    pub(crate) fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Admits one more request from `caller`, with its deadline
    /// `--request-timeout` from now, unless `--max-pending` of the caller's
    /// are in already (never an unbounded queue; one CD system's burst never
    /// takes another's places).
    pub(crate) fn admit(&self, caller: &'static str) -> Result<Admission, Refusal> {
        let places = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(caller)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_pending)))
            .clone();
        let permit = places
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded)?;
        Ok(Admission {
            deadline: tokio::time::Instant::now() + self.settings.request_timeout,
            _permit: permit,
        })
    }

    /// One decision for `caller` (an adapter's name, for metrics and the
    /// log line): gather evidence, evaluate, record, all before `deadline`.
    pub(crate) async fn decide(
        &self,
        caller: &'static str,
        request: DecisionRequest,
        deadline: tokio::time::Instant,
    ) -> Result<Evaluation, Refusal> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let result = self.decide_by(deadline, request.phase, request.input).await;
        if let Ok(evaluation) = &result {
            let took = started.elapsed();
            self.metrics.record(caller, evaluation, took.as_secs_f64());
            tracing::info!(
                target: DECISION_LOG_TARGET,
                decision_id = %evaluation.decision_id,
                adapter = caller,
                phase = %evaluation.phase,
                decision = %evaluation.decision,
                duration_us = took.as_micros() as u64,
                summary = %evaluation.summary,
                "decision"
            );
        }
        result
    }

    /// Gathers evidence and evaluates, all before `deadline`. When the
    /// deadline passes, the evaluation is stopped (its store interrupted);
    /// its permits are held until it has really stopped, and it records
    /// nothing. An evaluation that finished first is answered.
    async fn decide_by(
        &self,
        deadline: tokio::time::Instant,
        phase: Phase,
        input: Input,
    ) -> Result<Evaluation, Refusal> {
        let gate = self.gate();
        let prepared = async {
            let (snapshot, evidence) = match input {
                Input::Snapshot(text) => {
                    let snapshot = snapshot::parse(text.as_bytes())
                        .map_err(|e| Refusal::BadSnapshot(format!("snapshot: {e}")))?;
                    (snapshot, Vec::new())
                }
                Input::Target(target) => evidence::gather(&gate, &target, phase).await?,
            };
            let evaluating = self
                .evaluating
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Refusal::Internal("the server is shutting down".into()))?;
            Ok::<_, Refusal>((snapshot, evidence, evaluating))
        };
        let (snapshot, evidence, evaluating) = tokio::time::timeout_at(deadline, prepared)
            .await
            .map_err(|_| Refusal::Timeout)??;
        let log = self.settings.decision_log.clone();
        let shipper = self.shipper.clone();
        let budget = Budget {
            cancel: Some(Cancel::default()),
            beside: Some(self.shadows.clone()),
        };
        let cancel = budget.cancel.clone().expect("set above");
        // Stock policies are the host's own code, bounded like parsing the
        // request, so they run right here: a hand-off to another thread costs
        // about a tenth of the throughput. Modules from files are untrusted
        // and may spin until their timeout, and a decision log waits for the
        // disk or the pipe: those go to the blocking pool, so they never stall
        // other requests or the probes. (The shipper's queue never waits.)
        let inline = log.is_none() && gate.runs_only_stock_policies();
        // Inline, nothing else can stop the work at the deadline: the work
        // checks it itself before recording anything.
        let inline_deadline = inline.then(|| deadline.into_std());
        let decide = move || {
            // The permit lives as long as the work, not as the request.
            let _permit = evaluating;
            let started = Instant::now();
            let late = |what: &str| {
                tracing::warn!(
                    ran_ms = started.elapsed().as_millis() as u64,
                    "evaluation {what}: its request ran out of time; nothing recorded"
                );
            };
            let evaluation = gate
                .evaluate_with(phase, &snapshot, evidence, &budget)
                .map_err(|fault| {
                    if fault == HostFault::Cancelled {
                        late("stopped");
                    }
                    host_fault(fault)
                })?;
            let cancel = budget.cancel.as_ref().expect("set above");
            let out_of_time = inline_deadline.is_some_and(|at| Instant::now() >= at);
            if out_of_time || !cancel.complete() {
                late("finished");
                return Err(Refusal::Timeout);
            }
            if log.is_some() || shipper.is_some() {
                let line = decision_log::record_line(&evaluation, &snapshot);
                if let Some(log) = log {
                    log.write(&line)
                        .map_err(|e| Refusal::Internal(e.to_string()))?;
                }
                if let Some(shipper) = shipper {
                    shipper.send(line);
                }
            }
            Ok::<_, Refusal>(evaluation)
        };
        if inline {
            return decide();
        }
        // A caller that goes away (a closed connection, the drain's end)
        // stops the work as a timeout does: nobody is told its decision.
        let _stop_if_dropped = CancelOnDrop(cancel.clone());
        let mut work = tokio::task::spawn_blocking(decide);
        let joined = tokio::select! {
            joined = &mut work => joined,
            () = tokio::time::sleep_until(deadline) => {
                if cancel.cancel() {
                    return Err(Refusal::Timeout);
                }
                // It claimed its completion first: its answer is recorded,
                // so it is the caller's.
                work.await
            }
        };
        joined.map_err(|e| Refusal::Internal(format!("the evaluation task failed: {e}")))?
    }
}

/// Instance slots for shadow policies: one per shadow policy of the gate's
/// busiest phase (at least one) for each evaluation at once. A gate
/// reloaded with more shadow policies than it started with has some skipped
/// when the server is busy.
fn shadow_slots(gate: &Gate, max_evaluating: usize) -> usize {
    let most = Phase::ALL
        .iter()
        .map(|phase| {
            gate.policies_for(*phase)
                .filter(|p| p.mode == Mode::Shadow)
                .count()
        })
        .max()
        .unwrap_or(0);
    max_evaluating * most.max(1)
}

/// Reads the gate file with what serving asks of it: registry references
/// pinned (and pins or signatures everywhere when required), and every
/// module from a registry in the store (`--store`), fetched now if need be.
fn read_gate(settings: &ServiceSettings) -> Result<Gate, Error> {
    let mut gate = Gate::read(&settings.gate_path)?;
    gate.check_servable(settings.require_pins, settings.require_signatures)?;
    if let Some(store) = &settings.store {
        gate.remote.store = Some(store.clone());
    }
    gate.remote.trusted = settings.trusted_keys.clone();
    gate.remote.require_signed = settings.require_signatures;
    crate::modules::fetch_remote(&gate)?;
    Ok(gate)
}

/// Prepares a gate already read for every phase, if its enforcing policies
/// fit in a request's time: the decision waits for each in turn, and a
/// decision out of time is no decision.
fn prepare_gate(
    runtime: &Arc<Runtime>,
    gate: Gate,
    request_timeout: Duration,
) -> Result<PreparedGate, Error> {
    fits_in(&gate, request_timeout)?;
    PreparedGate::prepare(runtime.clone(), gate, &Phase::ALL)
}

/// Refuses a gate whose enforcing policies of one phase could, one after
/// another at their time limit, outlast a request.
fn fits_in(gate: &Gate, request_timeout: Duration) -> Result<(), Error> {
    let timeout_ms = gate.limits().timeout_ms;
    for phase in Phase::ALL {
        let enforcing = gate
            .policies_for(phase)
            .filter(|p| p.mode == Mode::Enforce)
            .count() as u64;
        let total_ms = enforcing * timeout_ms;
        if total_ms >= request_timeout.as_millis() as u64 {
            return Err(Error::InvalidInput(format!(
                "{}: the {phase} phase's {enforcing} enforcing policies may take \
                 {enforcing} x {timeout_ms} ms = {total_ms} ms, not less than --request-timeout \
                 ({} ms): lower limits.timeout_ms or raise --request-timeout",
                gate.origin.label(),
                request_timeout.as_millis()
            )));
        }
    }
    Ok(())
}

/// Cancels the work it guards when dropped; a no-op once the work has
/// claimed its completion.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A fault of the host's: no verdict, retry later.
fn host_fault(fault: HostFault) -> Refusal {
    match fault {
        HostFault::Busy => Refusal::Overloaded,
        HostFault::Cancelled => Refusal::Timeout,
    }
}
