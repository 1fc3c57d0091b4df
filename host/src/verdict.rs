//! The decision record (what every front end prints and the decision log
//! keeps), and the rules that combine several policies into one decision.

use serde::{Deserialize, Serialize};
use shipgate_policy::{Decision, Finding, Phase};

use crate::gate::Mode;

/// How the module of a missing-evidence outcome is named (`source:prometheus`).
pub const EVIDENCE_MODULE_PREFIX: &str = "source:";

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
}

impl PolicyOutcome {
    /// Whether the policy faulted and its decision is its `on_error`.
    pub fn failed_closed(&self) -> bool {
        self.error.is_some()
    }

    /// Whether this is not a policy but what a snapshot source could not
    /// find (server mode): part of the decision's input, not re-evaluated.
    pub fn is_missing_evidence(&self) -> bool {
        self.module.starts_with(EVIDENCE_MODULE_PREFIX)
    }
}

/// Combines the outcomes of one phase: the most severe enforcing decision
/// wins (rollback > deny > allow), shadow policies never count, preflight
/// cannot roll back (nothing shipped yet), and a phase no enforcing policy
/// evaluates is denied: no evidence, no deployment.
pub fn combine(phase: Phase, outcomes: &[PolicyOutcome]) -> (Decision, String) {
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
