//! The server's own metrics, in Prometheus exposition format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decision::Evaluation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    adapter: String,
    phase: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    state: String,
    posted: String,
}

type HistogramFamily = Family<PhaseLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub(crate) struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: HistogramFamily,
    faults: Family<PolicyLabels, Counter>,
    missing_evidence: Family<PhaseLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    reviews: Family<ReviewLabels, Counter>,
    in_flight: Gauge,
}

/// Counts a decision in flight for as long as it lives.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shipgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions made, by adapter, phase and decision",
            decisions.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_duration_seconds",
            "Time from a request's arrival to its decision (evidence and every policy), by phase",
            latency.clone(),
        );
        let faults = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_faults",
            "Policies that failed closed, by policy and phase",
            faults.clone(),
        );
        let missing_evidence = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "missing_evidence",
            "Decisions in which a source could not supply some evidence, by phase",
            missing_evidence.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_rejected",
            "Requests answered without a decision, by reason",
            rejected.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "gate_reloads",
            "Gate reloads on SIGHUP, by result",
            reloads.clone(),
        );
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "github_reviews",
            "Deployment protection rule reviews, by state (approved, rejected, pending) and whether GitHub took them",
            reviews.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Decisions being made now (waiting, gathering evidence or evaluating)",
            in_flight.clone(),
        );
        Metrics {
            in_flight,
            registry,
            decisions,
            latency,
            faults,
            missing_evidence,
            rejected,
            reloads,
            reviews,
        }
    }

    pub(crate) fn record(&self, adapter: &str, evaluation: &Evaluation, seconds: f64) {
        let phase = evaluation.phase.as_str().to_string();
        self.decisions
            .get_or_create(&DecisionLabels {
                adapter: adapter.to_string(),
                phase: phase.clone(),
                decision: evaluation.decision.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&PhaseLabels {
                phase: phase.clone(),
            })
            .observe(seconds);
        for policy in &evaluation.policies {
            if policy.failed_closed() {
                self.faults
                    .get_or_create(&PolicyLabels {
                        policy: policy.name.clone(),
                        phase: phase.clone(),
                    })
                    .inc();
            }
            if policy.is_missing_evidence() {
                self.missing_evidence
                    .get_or_create(&PhaseLabels {
                        phase: phase.clone(),
                    })
                    .inc();
            }
        }
    }

    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a GitHub review and whether it was posted.
    pub(crate) fn reviewed(&self, state: &str, posted: bool) {
        self.reviews
            .get_or_create(&ReviewLabels {
                state: state.to_string(),
                posted: posted.to_string(),
            })
            .inc();
    }

    /// The exposition text.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
