//! The decision record (what every front end prints and the decision log
//! keeps), and the rules that combine several policies into one decision.

use serde::{Deserialize, Serialize};
use shipgate_policy::{Decision, Finding, Phase};

use crate::gate::Mode;
use crate::sources::Evidence;

/// The name of an outcome that reports missing evidence.
const EVIDENCE_OUTCOME: &str = "evidence";

/// One gate decision: the record `eval --format json`, the server and the
/// decision log all use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision_id: String,
    pub phase: Phase,
    pub decision: Decision,
    pub summary: String,
    pub policies: Vec<PolicyOutcome>,
    pub snapshot_sha256: String,
    pub gate: String,
    pub gate_sha256: String,
    /// When the host made the decision (RFC 3339). Policies never see it.
    pub evaluated_at: String,
}

/// What one policy said, or the fault that made it fail closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub name: String,
    /// The module as the gate names it (`builtin:canary`, `rules.wasm`).
    pub module: String,
    /// The digest of the module that ran; `None` when it could not be read.
    pub module_sha256: Option<String>,
    pub mode: Mode,
    pub decision: Decision,
    pub summary: String,
    pub findings: Vec<Finding>,
    pub duration_us: u64,
    /// The fault, when the policy failed closed.
    pub error: Option<String>,
    /// What the policy printed.
    pub log: Vec<String>,
    /// What this outcome is; only missing evidence says so in the record.
    #[serde(default, skip_serializing_if = "OutcomeKind::is_policy")]
    pub kind: OutcomeKind,
}

/// What produced an outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A policy of the gate.
    #[default]
    Policy,
    /// Not a policy: what a source could not find (server mode). It is part
    /// of the decision's input, kept as is by a replay.
    MissingEvidence,
}

impl OutcomeKind {
    fn is_policy(&self) -> bool {
        *self == OutcomeKind::Policy
    }
}

impl PolicyOutcome {
    /// Whether the policy faulted and its decision is its `on_error`.
    pub fn failed_closed(&self) -> bool {
        self.error.is_some()
    }

    /// Whether this is what a source could not find rather than a policy.
    pub(crate) fn is_missing_evidence(&self) -> bool {
        self.kind == OutcomeKind::MissingEvidence
    }

    /// What a source could not find, as an enforcing outcome that denies and
    /// names each missing field with its query, so a decision without
    /// evidence says why instead of passing. `None` when nothing is missing.
    pub(crate) fn missing_evidence(evidence: &Evidence) -> Option<PolicyOutcome> {
        let missing = &evidence.missing;
        let first = missing.first()?;
        let findings = missing
            .iter()
            .map(|m| {
                let mut finding = Finding::new(
                    format!("source:{}", m.field),
                    Decision::Deny,
                    format!("{}: {}", m.field, m.why),
                );
                finding
                    .observed(m.why.clone())
                    .threshold(match m.query.as_str() {
                        "" => "a valid value".to_string(),
                        query => format!("a value from `{query}`"),
                    });
                finding
            })
            .collect();
        let more = match missing.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(PolicyOutcome {
            name: EVIDENCE_OUTCOME.into(),
            module: format!("source:{}", evidence.source),
            module_sha256: None,
            mode: Mode::Enforce,
            decision: Decision::Deny,
            summary: format!("missing evidence: {}: {}{more}", first.field, first.why),
            findings,
            duration_us: 0,
            error: None,
            log: Vec::new(),
            kind: OutcomeKind::MissingEvidence,
        })
    }
}

/// Combines the outcomes of one phase: the most severe enforcing decision
/// wins (rollback > deny > allow), shadow policies never count, preflight
/// cannot roll back (nothing shipped yet), and a phase no enforcing policy
/// evaluates is denied: no evidence, no deployment.
pub(crate) fn combine(phase: Phase, outcomes: &[PolicyOutcome]) -> (Decision, String) {
    let enforcing: Vec<&PolicyOutcome> = outcomes
        .iter()
        .filter(|o| o.mode == Mode::Enforce)
        .collect();
    let Some(worst) = enforcing.iter().map(|o| o.decision).max() else {
        return (
            Decision::Deny,
            format!("no enforcing policy evaluates the {phase} phase"),
        );
    };
    let decision = match (phase, worst) {
        (Phase::Preflight, Decision::Rollback) => Decision::Deny,
        (_, worst) => worst,
    };
    let deciding: Vec<&&PolicyOutcome> = enforcing.iter().filter(|o| o.decision == worst).collect();
    let summary = match (enforcing.len(), worst) {
        (1, _) => enforcing[0].summary.clone(),
        (n, Decision::Allow) => format!("all {n} policies allow"),
        _ => {
            let first = deciding[0];
            let others = deciding.len() - 1;
            let more = match others {
                0 => String::new(),
                1 => " (and 1 more policy)".to_string(),
                n => format!(" (and {n} more policies)"),
            };
            format!("{}: {}{more}", first.name, first.summary)
        }
    };
    (decision, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, mode: Mode, decision: Decision) -> PolicyOutcome {
        PolicyOutcome {
            name: name.into(),
            module: format!("builtin:{name}"),
            module_sha256: None,
            mode,
            decision,
            summary: format!("{name} says {decision}"),
            findings: vec![],
            duration_us: 0,
            error: None,
            log: vec![],
            kind: OutcomeKind::Policy,
        }
    }

    #[test]
    fn the_most_severe_enforcing_decision_wins() {
        let outcomes = [
            outcome("a", Mode::Enforce, Decision::Allow),
            outcome("b", Mode::Enforce, Decision::Rollback),
            outcome("c", Mode::Enforce, Decision::Deny),
        ];
        assert_eq!(
            combine(Phase::Abort, &outcomes),
            (Decision::Rollback, "b: b says rollback".into())
        );
    }

    #[test]
    fn shadow_policies_never_change_the_decision() {
        let outcomes = [
            outcome("a", Mode::Enforce, Decision::Allow),
            outcome("s", Mode::Shadow, Decision::Rollback),
        ];
        assert_eq!(
            combine(Phase::Abort, &outcomes),
            (Decision::Allow, "a says allow".into())
        );
    }

    #[test]
    fn preflight_rollback_is_a_deny() {
        let outcomes = [outcome("p", Mode::Enforce, Decision::Rollback)];
        assert_eq!(combine(Phase::Preflight, &outcomes).0, Decision::Deny);
    }

    #[test]
    fn no_enforcing_policy_denies() {
        let outcomes = [outcome("s", Mode::Shadow, Decision::Allow)];
        assert_eq!(
            combine(Phase::Verify, &outcomes),
            (
                Decision::Deny,
                "no enforcing policy evaluates the verify phase".into()
            )
        );
    }

    #[test]
    fn missing_evidence_denies_and_names_every_query() {
        let evidence = Evidence {
            source: "prometheus",
            values: vec![],
            missing: ["metrics.canary.errors", "metrics.canary.requests"]
                .map(|field| crate::sources::Missing {
                    field: field.into(),
                    query: format!("q({field})"),
                    why: "no series".into(),
                })
                .to_vec(),
        };
        let found = PolicyOutcome::missing_evidence(&evidence).unwrap();
        assert!(found.is_missing_evidence());
        assert_eq!(found.module, "source:prometheus");
        assert_eq!(
            found.summary,
            "missing evidence: metrics.canary.errors: no series (and 1 more)"
        );
        assert_eq!(
            found.findings[1].threshold.as_deref(),
            Some("a value from `q(metrics.canary.requests)`")
        );
        let record = serde_json::to_value(&found).unwrap();
        assert_eq!(record["kind"], "missing_evidence");
        // A gate's own policy, even one whose module is named like a source,
        // is a policy: the record says nothing more about it.
        let mut policy = found.clone();
        policy.kind = OutcomeKind::Policy;
        assert!(serde_json::to_value(&policy).unwrap().get("kind").is_none());
        let read: PolicyOutcome =
            serde_json::from_value(serde_json::to_value(&policy).unwrap()).unwrap();
        assert!(!read.is_missing_evidence());
        let outcomes = [
            outcome("a", Mode::Enforce, Decision::Allow),
            PolicyOutcome::missing_evidence(&evidence).unwrap(),
        ];
        assert_eq!(combine(Phase::Abort, &outcomes).0, Decision::Deny);
        let nothing_missing = Evidence {
            missing: vec![],
            ..evidence
        };
        assert!(PolicyOutcome::missing_evidence(&nothing_missing).is_none());
    }

    #[test]
    fn summaries_count_policies() {
        let allow = [
            outcome("a", Mode::Enforce, Decision::Allow),
            outcome("b", Mode::Enforce, Decision::Allow),
        ];
        assert_eq!(combine(Phase::Promotion, &allow).1, "all 2 policies allow");
        let deny = [
            outcome("a", Mode::Enforce, Decision::Deny),
            outcome("b", Mode::Enforce, Decision::Deny),
        ];
        assert_eq!(
            combine(Phase::Promotion, &deny).1,
            "a: a says deny (and 1 more policy)"
        );
    }
}
