//! The server's state: the gate being served (swapped whole on reload),
//! the limits on work in flight, and one decision from input to record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shipgate_policy::Phase;
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::adapters::{ApiError, DecisionRequest, Input, github, spinnaker};
use crate::decision::{Evaluation, PolicyOutcome};
use crate::decision_log;
use crate::error::Error;
use crate::evaluate::PreparedGate;
use crate::gate::Gate;
use crate::runtime::Runtime;
use crate::snapshot::{self, ValidSnapshot};
use crate::sources::{self, Target};

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
    pub(crate) decision_log: Option<PathBuf>,
    /// How long to keep serving after SIGTERM before the port closes.
    pub(crate) shutdown_delay: Duration,
    /// How often to look for changed gate or module files; `None`: never.
    pub(crate) watch_interval: Option<Duration>,
}

pub(crate) struct AppState {
    pub(crate) settings: Settings,
    pub(crate) metrics: Metrics,
    runtime: Arc<Runtime>,
    /// In-flight requests keep the gate they started with across a reload.
    served: RwLock<Arc<PreparedGate>>,
    pending: Arc<Semaphore>,
    evaluating: Arc<Semaphore>,
    /// Outbound HTTP: sources' queries, GitHub's API.
    pub(crate) http: reqwest::Client,
    shutting_down: AtomicBool,
}

/// Reads a gate file and prepares it for every phase.
pub(crate) fn load_gate(runtime: &Arc<Runtime>, path: &Path) -> Result<PreparedGate, Error> {
    let gate = Gate::read(path)?;
    PreparedGate::prepare(runtime.clone(), gate, &Phase::ALL)
}

impl AppState {
    pub(crate) fn new(settings: Settings, runtime: Arc<Runtime>, gate: PreparedGate) -> AppState {
        AppState {
            pending: Arc::new(Semaphore::new(settings.max_pending)),
            evaluating: Arc::new(Semaphore::new(settings.max_evaluating)),
            settings,
            metrics: Metrics::new(),
            runtime,
            served: RwLock::new(Arc::new(gate)),
            http: reqwest::Client::new(),
            shutting_down: AtomicBool::new(false),
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
        let result = load_gate(&self.runtime, &self.settings.gate_path);
        self.metrics.reloaded(result.is_ok());
        let gate = result?;
        *self
            .served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(gate);
        Ok(())
    }

    /// Takes one admission permit, as a request waiting would.
    #[cfg(test)]
    pub(super) fn hold_admission(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.pending
            .clone()
            .try_acquire_owned()
            .expect("a free permit")
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
        let result = tokio::time::timeout(
            self.settings.request_timeout,
            self.decide_now(request.phase, request.input),
        )
        .await
        .unwrap_or(Err(ApiError::Timeout));
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

    async fn decide_now(&self, phase: Phase, input: Input) -> Result<Evaluation, ApiError> {
        // Admission: never an unbounded queue.
        let _admitted = self
            .pending
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        let gate = self.gate();
        let (snapshot, evidence) = match input {
            Input::Snapshot(text) => {
                let snapshot = snapshot::parse(text.as_bytes())
                    .map_err(|e| ApiError::BadRequest(format!("snapshot: {e}")))?;
                (snapshot, Vec::new())
            }
            Input::Target(target) => self.assemble(&gate, &target, phase).await?,
        };
        let _evaluating = self
            .evaluating
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the server is shutting down".into()))?;
        let log = self.settings.decision_log.clone();
        // Stock policies are the host's own code, bounded like parsing the
        // request, so they run right here: a hand-off to another thread costs
        // about a tenth of the throughput. Modules from files are untrusted
        // and may spin until their timeout, and a decision log waits for the
        // disk: those go to the blocking pool, so they never stall other
        // requests or the probes.
        let inline = log.is_none() && gate.runs_only_stock_policies();
        let decide = move || {
            let evaluation = gate.evaluate_with(phase, &snapshot, evidence);
            if let Some(log) = log {
                decision_log::append(&log, &evaluation, &snapshot)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
            }
            Ok::<_, ApiError>(evaluation)
        };
        if inline {
            decide()
        } else {
            tokio::task::spawn_blocking(decide)
                .await
                .map_err(|e| ApiError::Internal(format!("the evaluation task failed: {e}")))?
        }
    }

    /// The snapshot for a target: its identity plus the sources' evidence,
    /// and what they could not find as denying outcomes.
    async fn assemble(
        &self,
        gate: &PreparedGate,
        target: &Target,
        phase: Phase,
    ) -> Result<(ValidSnapshot, Vec<PolicyOutcome>), ApiError> {
        let now = jiff::Timestamp::now();
        let declared = &gate.gate().file;
        let asked = sources::Asked {
            target,
            phase,
            at: now,
        };
        let evidence = declared.sources.collect(&self.http, asked).await;
        let value = sources::assemble(target, &declared.rollout, &evidence, now);
        let snapshot = snapshot::parse(value.to_string().as_bytes()).map_err(|e| {
            ApiError::BadEvidence(format!(
                "the sources' evidence is not a valid snapshot: {e}"
            ))
        })?;
        let missing = evidence.iter().filter_map(PolicyOutcome::missing_evidence);
        Ok((snapshot, missing.collect()))
    }
}
