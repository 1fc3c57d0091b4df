//! The server's own metrics, in Prometheus exposition format at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decision::Evaluation;
use crate::decision_log::ship::ShipperCounters;

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
struct FindingLabels {
    policy: String,
    check: String,
    decision: String,
}

/// The most distinct (policy, check) pairs `shipgate_findings_total`
/// names: check ids come from policies, and a policy that made up a new
/// one per decision must not grow the exposition without end. Beyond,
/// findings count under `check="other"`.
const MAX_FINDING_CHECKS: usize = 1000;
/// The most check ids one policy names. Some ids carry names from the
/// snapshot (`business-orders`): a caller making names up fills its
/// policy's share, never the others'.
const MAX_CHECKS_PER_POLICY: usize = 100;
/// The longest check id used as a label value.
const MAX_CHECK_LABEL: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassificationLabels {
    classification: String,
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
    judgements: Family<ClassificationLabels, Counter>,
    judgement_latency: Histogram,
    in_flight: Gauge,
    findings: Family<FindingLabels, Counter>,
    /// The check ids named so far, by policy.
    finding_checks:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    shipper: ShipperCounters,
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
        let judgements = Family::<ClassificationLabels, Counter>::default();
        registry.register(
            "kayenta_judgements",
            "Kayenta remote-judge requests judged, by classification (Pass, Marginal, Fail)",
            judgements.clone(),
        );
        let judgement_latency = latency_histogram();
        registry.register(
            "kayenta_judgement_duration_seconds",
            "Time a Kayenta remote-judge request takes from its parsed body to its judgement",
            judgement_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Decisions being made now (waiting, gathering evidence or evaluating)",
            in_flight.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "Checks that held (deny) or rolled back a decision, by policy, check and decision",
            findings.clone(),
        );
        let shipper = ShipperCounters::default();
        registry.register(
            "decision_log_shipped",
            "Decision records the --decision-log-url collector took",
            shipper.shipped.clone(),
        );
        let dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "decision_log_dropped",
            "Decision records never shipped to the --decision-log-url collector, by reason \
             (queue_full, undeliverable, shutdown)",
            dropped.clone(),
        );
        let dropped_for = |reason: &str| {
            dropped
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .clone()
        };
        let shipper = ShipperCounters {
            dropped_queue_full: dropped_for("queue_full"),
            dropped_undeliverable: dropped_for("undeliverable"),
            dropped_at_shutdown: dropped_for("shutdown"),
            ..shipper
        };
        // Series whose label values are a closed set start at zero, so that
        // dashboards and rate() see them before their first event.
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ResultLabels {
                result: result.to_string(),
            });
        }
        for state in ["approved", "rejected", "pending"] {
            for posted in ["true", "false"] {
                let _ = reviews.get_or_create(&ReviewLabels {
                    state: state.to_string(),
                    posted: posted.to_string(),
                });
            }
        }
        for classification in ["Pass", "Marginal", "Fail"] {
            let _ = judgements.get_or_create(&ClassificationLabels {
                classification: classification.to_string(),
            });
        }
        Metrics {
            judgements,
            judgement_latency,
            findings,
            finding_checks: Default::default(),
            shipper,
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

    /// Counts a Kayenta judgement (`Pass`, `Marginal` or `Fail`).
    pub(crate) fn judged(&self, classification: &str, seconds: f64) {
        let classification = match classification {
            "Pass" | "Marginal" => classification,
            _ => "Fail",
        };
        self.judgements
            .get_or_create(&ClassificationLabels {
                classification: classification.to_string(),
            })
            .inc();
        self.judgement_latency.observe(seconds);
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
        // One per source that could not give its evidence.
        let mut sources: Vec<&str> = evaluation
            .evidence
            .iter()
            .map(|e| e.source.as_str())
            .collect();
        sources.dedup();
        for _ in sources {
            self.missing_evidence
                .get_or_create(&PhaseLabels {
                    phase: phase.clone(),
                })
                .inc();
        }
        for policy in &evaluation.policies {
            if policy.failed_closed() {
                self.faults
                    .get_or_create(&PolicyLabels {
                        policy: policy_label(&policy.name),
                        phase: phase.clone(),
                    })
                    .inc();
            }
            // Only what decided: a shadow policy holds nothing back.
            if policy.mode == crate::gate::Mode::Shadow {
                continue;
            }
            for finding in &policy.findings {
                if finding.decision == shipgate_policy::Decision::Allow {
                    continue;
                }
                self.findings
                    .get_or_create(&FindingLabels {
                        policy: policy_label(&policy.name),
                        check: self.check_label(&policy.name, &finding.check),
                        decision: finding.decision.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// `check`, or `other` once its policy has [`MAX_CHECKS_PER_POLICY`]
    /// ids named or all policies [`MAX_FINDING_CHECKS`], or when the id (a
    /// policy's own text) is not a plain, short identifier: label values
    /// are not escaped in the exposition.
    fn check_label(&self, policy: &str, check: &str) -> String {
        if check.len() > MAX_CHECK_LABEL || !check.bytes().all(plain_label_byte) {
            return "other".to_string();
        }
        let mut named = self
            .finding_checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if named
            .get(policy)
            .is_some_and(|checks| checks.contains(check))
        {
            return check.to_string();
        }
        let total: usize = named.values().map(|checks| checks.len()).sum();
        let of_policy = named.get(policy).map_or(0, |checks| checks.len());
        if of_policy >= MAX_CHECKS_PER_POLICY || total >= MAX_FINDING_CHECKS {
            return "other".to_string();
        }
        named
            .entry(policy.to_string())
            .or_default()
            .insert(check.to_string());
        check.to_string()
    }

    /// The counters a decision log shipper keeps.
    pub(crate) fn shipper_counters(&self) -> ShipperCounters {
        self.shipper.clone()
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

/// What a label value may hold as it is: the exposition writes label values
/// without escaping them, so a quote or a newline would corrupt it.
fn plain_label_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_.:-".contains(&byte)
}

/// A policy's name (the gate's) as a label value: other bytes become `_`.
fn policy_label(name: &str) -> String {
    name.bytes()
        .map(|b| if plain_label_byte(b) { b as char } else { '_' })
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_policies_cannot_corrupt_the_exposition() {
        let metrics = Metrics::new();
        assert_eq!(policy_label("team \"canary\"\n"), "team__canary__");
        assert_eq!(metrics.check_label("p", "error-rate"), "error-rate");
        assert_eq!(metrics.check_label("p", "x\"} 1\nfake 2"), "other");
        assert_eq!(
            metrics.check_label("p", &"a".repeat(MAX_CHECK_LABEL + 1)),
            "other"
        );
    }

    #[test]
    fn a_policy_inventing_check_ids_names_at_most_its_share() {
        let metrics = Metrics::new();
        assert_eq!(metrics.check_label("canary", "error-rate"), "error-rate");
        // Made-up business names fill the policy's share ...
        for i in 1..MAX_CHECKS_PER_POLICY {
            let check = format!("business-made-up-{i}");
            assert_eq!(metrics.check_label("canary", &check), check);
        }
        assert_eq!(metrics.check_label("canary", "business-one-more"), "other");
        assert_eq!(
            metrics.check_label("canary", "error-rate"),
            "error-rate",
            "a named pair keeps its name"
        );
        // ... and no other policy's.
        assert_eq!(metrics.check_label("verify", "smoke-tests"), "smoke-tests");
        // All policies together name at most the total.
        for p in 0..MAX_FINDING_CHECKS / MAX_CHECKS_PER_POLICY {
            for i in 0..MAX_CHECKS_PER_POLICY {
                metrics.check_label(&format!("p{p}"), &format!("c{i}"));
            }
        }
        assert_eq!(metrics.check_label("late", "c0"), "other");
    }
}
