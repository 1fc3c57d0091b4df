//! The server's state: the gate being served (swapped whole on reload),
//! the limits on work in flight, and one decision from input to record.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shipgate_policy::Phase;
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::shipper::Shipper;
use crate::adapters::{ApiError, DecisionRequest, Input, github, spinnaker};
use crate::decision::Evaluation;
use crate::decision_log;
use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::Gate;
use crate::runtime::{Cancel, HostFault, Runtime};
use crate::snapshot;

/// The log target of the one line per decision, so it can be filtered on its
/// own (`SHIPGATE_LOG=info,shipgate::decision=off`).
pub(crate) const DECISION_LOG_TARGET: &str = "shipgate::decision";

/// How the server was started; fixed for its lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate_path: PathBuf,
    /// Required bearer token on `/v1/*`, when set.
    pub(crate) token: Option<String>,
    pub(crate) spinnaker: spinnaker::Settings,
    /// The GitHub App, when deployment protection rules are served.
    pub(crate) github: Option<github::Settings>,
    /// Budget of one request, from arrival to answer.
    pub(crate) request_timeout: Duration,
    pub(crate) max_body_bytes: usize,
    /// Requests admitted at once (waiting or evaluating); beyond, 503.
    pub(crate) max_pending: usize,
    /// Gate evaluations running at once.
    pub(crate) max_evaluating: usize,
    /// Where every decision is written before it is answered.
    pub(crate) decision_log: Option<decision_log::LogTarget>,
    /// The collector decisions are shipped to, best effort.
    pub(crate) decision_log_url: Option<super::shipper::ShipperSettings>,
    /// How long to keep serving after SIGTERM before the port closes.
    pub(crate) shutdown_delay: Duration,
    /// How often to look for changed gate or module files; `None`: never.
    pub(crate) watch_interval: Option<Duration>,
    /// The adapters this instance serves.
    pub(crate) adapters: Vec<&'static str>,
    /// Where probes and `/metrics` are served instead of the main port.
    pub(crate) operations_listen: Option<std::net::SocketAddr>,
    pub(crate) connections: super::listener::ConnectionLimits,
    /// The module store, when named (`--store`).
    pub(crate) store: Option<PathBuf>,
    pub(crate) require_pins: bool,
    pub(crate) require_signatures: bool,
}

impl Settings {
    /// Whether this instance serves the adapter named `name`.
    pub(crate) fn serves(&self, name: &str) -> bool {
        self.adapters.contains(&name)
    }
}

pub(crate) struct AppState {
    pub(crate) settings: Settings,
    pub(crate) metrics: Metrics,
    runtime: Arc<Runtime>,
    /// In-flight requests keep the gate they started with across a reload.
    served: RwLock<Arc<PreparedGate>>,
    pending: Arc<Semaphore>,
    evaluating: Arc<Semaphore>,
    /// Instance slots for shadow policies, which run beside the enforcing
    /// ones: none free, a shadow policy is skipped, never waited for.
    shadows: Arc<Semaphore>,
    /// Outbound HTTP: sources' queries, GitHub's API.
    pub(crate) http: reqwest::Client,
    shutting_down: AtomicBool,
    reloading: std::sync::Mutex<()>,
    /// Ships decision records to `--decision-log-url`, when set.
    pub(crate) shipper: Option<Arc<Shipper>>,
}

/// Instance slots kept beyond the evaluations' for loading a gate again
/// (its policies describe themselves and check their config).
pub(crate) const RELOAD_SLOTS: usize = 2;

/// Instance slots for shadow policies: one per shadow policy of the
/// gate's busiest phase (at least one) for each evaluation at once. A gate
/// reloaded with more shadow policies than it started with has some skipped
/// when the server is busy.
pub(crate) fn shadow_slots(gate: &Gate, settings: &Settings) -> usize {
    let most = Phase::ALL
        .iter()
        .map(|phase| {
            gate.policies_for(*phase)
                .filter(|p| p.mode == crate::gate::Mode::Shadow)
                .count()
        })
        .max()
        .unwrap_or(0);
    settings.max_evaluating * most.max(1)
}

/// Reads a gate file and prepares it for every phase. The enforcing
/// policies of a phase must fit in a request's time: the decision waits for
/// each in turn, and a decision out of time is no decision (503).
pub(crate) fn load_gate(
    runtime: &Arc<Runtime>,
    settings: &Settings,
) -> Result<PreparedGate, Error> {
    prepare_gate(runtime, read_gate(settings)?, settings.request_timeout)
}

/// Reads the gate file with what serving asks of it: registry references
/// pinned (and pins or signatures everywhere when required), and every
/// module from a registry in the store (`--store`), fetched now if need be.
pub(crate) fn read_gate(settings: &Settings) -> Result<Gate, Error> {
    let mut gate = Gate::read(&settings.gate_path)?;
    gate.check_servable(settings.require_pins, settings.require_signatures)?;
    if let Some(store) = &settings.store {
        gate.remote.store = Some(store.clone());
    }
    crate::modules::fetch_remote(&gate)?;
    Ok(gate)
}

/// Prepares a gate already read for every phase, if its enforcing policies
/// fit in a request's time.
pub(crate) fn prepare_gate(
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
            .filter(|p| p.mode == crate::gate::Mode::Enforce)
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

impl AppState {
    pub(crate) fn new(settings: Settings, runtime: Arc<Runtime>, gate: PreparedGate) -> AppState {
        let metrics = Metrics::new();
        let shipper = settings
            .decision_log_url
            .clone()
            .map(|url| Shipper::new(url, metrics.shipper_counters()));
        AppState {
            shipper,
            pending: Arc::new(Semaphore::new(settings.max_pending)),
            evaluating: Arc::new(Semaphore::new(settings.max_evaluating)),
            shadows: Arc::new(Semaphore::new(shadow_slots(gate.gate(), &settings))),
            settings,
            metrics,
            runtime,
            served: RwLock::new(Arc::new(gate)),
            http: reqwest::Client::new(),
            shutting_down: AtomicBool::new(false),
            reloading: std::sync::Mutex::new(()),
        }
    }

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
        let result = load_gate(&self.runtime, &self.settings);
        self.metrics.reloaded(result.is_ok());
        let gate = result?;
        *self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(gate);
        Ok(())
    }

    /// Admits one more request, unless `--max-pending` are in already.
    pub(super) fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.pending.clone().try_acquire_owned().ok()
    }

    pub(crate) fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// One decision: admit, gather evidence, evaluate, record. Bounded in
    /// time and in the work waiting.
    /// Refusals are the caller's to answer and count (see `extract`).
    pub(crate) async fn decide(
        &self,
        adapter: &'static str,
        request: DecisionRequest,
    ) -> Result<Evaluation, ApiError> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let deadline = super::extract::deadline()
            .map(tokio::time::Instant::into_std)
            .unwrap_or(started + self.settings.request_timeout);
        let result = self.decide_by(deadline, request.phase, request.input).await;
        if let Ok(evaluation) = &result {
            let took = started.elapsed();
            self.metrics.record(adapter, evaluation, took.as_secs_f64());
            tracing::info!(
                target: DECISION_LOG_TARGET,
                decision_id = %evaluation.decision_id,
                adapter,
                phase = %evaluation.phase,
                decision = %evaluation.decision,
                duration_us = took.as_micros() as u64,
                summary = %evaluation.summary,
                "decision"
            );
        }
        result
    }

    /// Admits, gathers evidence and evaluates, all before `deadline`. When
    /// the deadline passes, the evaluation is stopped (its store
    /// interrupted); its permits are held until it has really stopped, and
    /// it records nothing. An evaluation that finished first is answered.
    async fn decide_by(
        &self,
        deadline: Instant,
        phase: Phase,
        input: Input,
    ) -> Result<Evaluation, ApiError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let gate = self.gate();
        let prepared = async {
            let (snapshot, evidence) = match input {
                Input::Snapshot(text) => {
                    let snapshot = snapshot::parse(text.as_bytes())
                        .map_err(|e| ApiError::BadRequest(format!("snapshot: {e}")))?;
                    (snapshot, Vec::new())
                }
                Input::Target(target) => super::evidence::gather(&gate, &target, phase).await?,
            };
            let evaluating = self
                .evaluating
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::Internal("the server is shutting down".into()))?;
            Ok::<_, ApiError>((snapshot, evidence, evaluating))
        };
        let (snapshot, evidence, evaluating) = tokio::time::timeout_at(deadline, prepared)
            .await
            .map_err(|_| ApiError::Timeout)??;
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
                return Err(ApiError::Timeout);
            }
            if log.is_some() || shipper.is_some() {
                let line = decision_log::record_line(&evaluation, &snapshot);
                if let Some(log) = log {
                    log.write(&line)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                }
                if let Some(shipper) = shipper {
                    shipper.send(line);
                }
            }
            Ok::<_, ApiError>(evaluation)
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
                    return Err(ApiError::Timeout);
                }
                // It claimed its completion first: its answer is recorded,
                // so it is the caller's.
                work.await
            }
        };
        joined.map_err(|e| ApiError::Internal(format!("the evaluation task failed: {e}")))?
    }
}

/// Cancels the work it guards when dropped; a no-op once the work has
/// claimed its completion.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A fault of the host's as the server answers it: retry later.
fn host_fault(fault: HostFault) -> ApiError {
    match fault {
        HostFault::Busy => ApiError::Overloaded,
        HostFault::Cancelled => ApiError::Timeout,
    }
}
