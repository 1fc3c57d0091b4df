//! The decision record (what every front end prints and the decision log
//! keeps), and the rules that combine several policies into one decision.

use serde::{Deserialize, Serialize};
use shipgate_policy::{Decision, Finding, Phase};

use crate::gate::Mode;

/// The version of the decision record's layout. 2 gave missing evidence a
/// field of its own (`evidence`); version 1 records, which carried it as
/// an outcome named `evidence`, are read into the same form.
pub const RECORD_VERSION: u32 = 2;

/// One gate decision: the record `eval --format json`, the server and the
/// decision log all use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "stored::Stored")]
pub struct Evaluation {
    /// The record's layout ([`RECORD_VERSION`]).
    pub record_version: u32,
    pub decision_id: String,
    pub phase: Phase,
    pub decision: Decision,
    pub summary: String,
    pub policies: Vec<PolicyOutcome>,
    /// What the evidence sources could not find, or found invalid (server
    /// mode, for a request that names a target): any of it denies.
    pub evidence: Vec<EvidenceProblem>,
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
}

/// Evidence a source could not give: part of the decision's input, kept as
/// is by a replay. Never a healthy zero: the decision denies and says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceProblem {
    /// The source that was asked (`prometheus`, `facts`, `gate` when none
    /// is configured).
    pub source: String,
    /// The snapshot field it would have filled (`metrics.canary.errors`),
    /// or a part of the snapshot (`metrics`, `facts`).
    pub what: String,
    pub why: String,
    /// The query that was, or would have been, asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl EvidenceProblem {
    /// Every problem of a source's evidence.
    pub(crate) fn of(source: &str, missing: &crate::sources::Missing) -> EvidenceProblem {
        EvidenceProblem {
            source: source.to_string(),
            what: missing.what.clone(),
            why: missing.why.clone(),
            query: Some(missing.query.clone()).filter(|q| !q.is_empty()),
        }
    }
}

/// The record as stored by every version, read into the current form.
mod stored {
    use serde::Deserialize;
    use shipgate_policy::{Decision, Finding, Phase};

    use super::{Evaluation, EvidenceProblem, PolicyOutcome};
    use crate::gate::Mode;

    #[derive(Deserialize)]
    pub(super) struct Stored {
        #[serde(default = "version_1")]
        record_version: u32,
        decision_id: String,
        phase: Phase,
        decision: Decision,
        summary: String,
        policies: Vec<StoredOutcome>,
        #[serde(default)]
        evidence: Vec<EvidenceProblem>,
        snapshot_sha256: String,
        gate: String,
        gate_sha256: String,
        evaluated_at: String,
    }

    fn version_1() -> u32 {
        1
    }

    /// An outcome; in version 1 also missing evidence, marked by `kind`.
    #[derive(Deserialize)]
    struct StoredOutcome {
        name: String,
        module: String,
        module_sha256: Option<String>,
        mode: Mode,
        decision: Decision,
        summary: String,
        findings: Vec<Finding>,
        duration_us: u64,
        error: Option<String>,
        log: Vec<String>,
        #[serde(default)]
        kind: Option<String>,
    }

    impl From<Stored> for Evaluation {
        fn from(stored: Stored) -> Evaluation {
            let mut policies = Vec::with_capacity(stored.policies.len());
            let mut evidence = stored.evidence;
            for outcome in stored.policies {
                if outcome.kind.as_deref() == Some("missing_evidence") {
                    let source = outcome.module.trim_start_matches("source:").to_string();
                    evidence.extend(outcome.findings.iter().map(|f| lifted(&source, f)));
                    continue;
                }
                policies.push(PolicyOutcome {
                    name: outcome.name,
                    module: outcome.module,
                    module_sha256: outcome.module_sha256,
                    mode: outcome.mode,
                    decision: outcome.decision,
                    summary: outcome.summary,
                    findings: outcome.findings,
                    duration_us: outcome.duration_us,
                    error: outcome.error,
                    log: outcome.log,
                });
            }
            Evaluation {
                record_version: stored.record_version,
                decision_id: stored.decision_id,
                phase: stored.phase,
                decision: stored.decision,
                summary: stored.summary,
                policies,
                evidence,
                snapshot_sha256: stored.snapshot_sha256,
                gate: stored.gate,
                gate_sha256: stored.gate_sha256,
                evaluated_at: stored.evaluated_at,
            }
        }
    }

    /// A version 1 missing-evidence finding: check `source:FIELD`, observed
    /// the reason, threshold "a value from `QUERY`" (or "a valid value").
    fn lifted(source: &str, finding: &Finding) -> EvidenceProblem {
        let what = finding.check.trim_start_matches("source:").to_string();
        let query = finding
            .threshold
            .as_deref()
            .and_then(|t| t.strip_prefix("a value from `"))
            .and_then(|t| t.strip_suffix('`'))
            .map(str::to_string);
        EvidenceProblem {
            source: source.to_string(),
            why: finding.observed.clone().unwrap_or_default(),
            what,
            query,
        }
    }
}

/// Combines the outcomes of one phase: the most severe enforcing decision
/// wins (rollback > deny > allow), shadow policies never count, missing
/// evidence denies, preflight cannot roll back (nothing shipped yet), and a
/// phase no enforcing policy evaluates is denied: no evidence, no
/// deployment.
pub(crate) fn combine(
    phase: Phase,
    outcomes: &[PolicyOutcome],
    evidence: &[EvidenceProblem],
) -> (Decision, String) {
    let enforcing: Vec<&PolicyOutcome> = outcomes
        .iter()
        .filter(|o| o.mode == Mode::Enforce)
        .collect();
    let policies_worst = enforcing.iter().map(|o| o.decision).max();
    let worst = match (policies_worst, evidence.is_empty()) {
        (None, true) => {
            return (
                Decision::Deny,
                format!("no enforcing policy evaluates the {phase} phase"),
            );
        }
        (Some(worst), true) => worst,
        (worst, false) => worst.unwrap_or(Decision::Deny).max(Decision::Deny),
    };
    let decision = match (phase, worst) {
        (Phase::Preflight, Decision::Rollback) => Decision::Deny,
        (_, worst) => worst,
    };
    let deciding: Vec<&&PolicyOutcome> = enforcing.iter().filter(|o| o.decision == worst).collect();
    let summary = match (evidence.first(), worst) {
        (Some(first), Decision::Deny) => {
            format!(
                "missing evidence: {}: {}{}{}",
                first.what,
                first.why,
                more(evidence.len() - 1, "more"),
                policies_more(deciding.len())
            )
        }
        _ => match (enforcing.len(), worst) {
            (1, _) => enforcing[0].summary.clone(),
            (n, Decision::Allow) => format!("all {n} policies allow"),
            _ => {
                let first = deciding[0];
                format!(
                    "{}: {}{}",
                    first.name,
                    first.summary,
                    policies_more(deciding.len() - 1)
                )
            }
        },
    };
    (decision, summary)
}

/// " (and N more)", or nothing for none.
fn more(n: usize, what: &str) -> String {
    match n {
        0 => String::new(),
        n => format!(" (and {n} {what})"),
    }
}

/// " (and 1 more policy)", " (and N more policies)", or nothing.
fn policies_more(n: usize) -> String {
    match n {
        1 => more(1, "more policy"),
        n => more(n, "more policies"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn problem(what: &str) -> EvidenceProblem {
        EvidenceProblem {
            source: "prometheus".into(),
            what: what.into(),
            why: "no series".into(),
            query: Some(format!("q({what})")),
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
            combine(Phase::Abort, &outcomes, &[]),
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
            combine(Phase::Abort, &outcomes, &[]),
            (Decision::Allow, "a says allow".into())
        );
    }

    #[test]
    fn preflight_rollback_is_a_deny() {
        let outcomes = [outcome("p", Mode::Enforce, Decision::Rollback)];
        assert_eq!(combine(Phase::Preflight, &outcomes, &[]).0, Decision::Deny);
    }

    #[test]
    fn no_enforcing_policy_denies() {
        let outcomes = [outcome("s", Mode::Shadow, Decision::Allow)];
        assert_eq!(
            combine(Phase::Verify, &outcomes, &[]),
            (
                Decision::Deny,
                "no enforcing policy evaluates the verify phase".into()
            )
        );
    }

    #[test]
    fn missing_evidence_denies_and_names_what_is_missing() {
        let allow = [outcome("a", Mode::Enforce, Decision::Allow)];
        let missing = [
            problem("metrics.canary.errors"),
            problem("metrics.canary.requests"),
        ];
        assert_eq!(
            combine(Phase::Abort, &allow, &missing),
            (
                Decision::Deny,
                "missing evidence: metrics.canary.errors: no series (and 1 more)".into()
            )
        );
        let deny = [outcome("a", Mode::Enforce, Decision::Deny)];
        assert_eq!(
            combine(Phase::Abort, &deny, &missing[..1]).1,
            "missing evidence: metrics.canary.errors: no series (and 1 more policy)"
        );
        // A breach the policies found still rolls back.
        let rollback = [outcome("a", Mode::Enforce, Decision::Rollback)];
        assert_eq!(
            combine(Phase::Abort, &rollback, &missing),
            (Decision::Rollback, "a says rollback".into())
        );
        assert_eq!(combine(Phase::Abort, &[], &missing).0, Decision::Deny);
    }

    #[test]
    fn a_version_1_record_reads_its_missing_evidence_into_the_evidence_field() {
        let v1 = json!({
            "decision_id": "d", "phase": "abort", "decision": "deny",
            "summary": "evidence: missing evidence: metrics.canary.errors: no series",
            "policies": [
                {"name": "evidence", "module": "source:prometheus", "module_sha256": null,
                 "mode": "enforce", "decision": "deny", "summary": "missing evidence: …",
                 "findings": [
                    {"check": "source:metrics.canary.errors", "decision": "deny",
                     "message": "metrics.canary.errors: no series", "observed": "no series",
                     "threshold": "a value from `sum(errors)`"},
                    {"check": "source:metrics.canary.requests", "decision": "deny",
                     "message": "metrics.canary.requests: refused", "observed": "refused",
                     "threshold": "a valid value"}],
                 "duration_us": 0, "error": null, "log": [], "kind": "missing_evidence"},
                {"name": "canary", "module": "builtin:canary", "module_sha256": "ab",
                 "mode": "enforce", "decision": "deny", "summary": "held", "findings": [],
                 "duration_us": 3, "error": null, "log": []}
            ],
            "snapshot_sha256": "s", "gate": "g", "gate_sha256": "h",
            "evaluated_at": "2026-11-26T14:00:00Z"
        });
        let read: Evaluation = serde_json::from_value(v1).unwrap();
        assert_eq!(read.record_version, 1);
        assert_eq!(read.policies.len(), 1);
        assert_eq!(read.policies[0].name, "canary");
        assert_eq!(
            read.evidence,
            [
                EvidenceProblem {
                    source: "prometheus".into(),
                    what: "metrics.canary.errors".into(),
                    why: "no series".into(),
                    query: Some("sum(errors)".into()),
                },
                EvidenceProblem {
                    source: "prometheus".into(),
                    what: "metrics.canary.requests".into(),
                    why: "refused".into(),
                    query: None,
                },
            ]
        );
        // Written again, it is a current record that reads back the same.
        let written = serde_json::to_value(&read).unwrap();
        assert!(written["policies"][0].get("kind").is_none());
        let again: Evaluation = serde_json::from_value(written).unwrap();
        assert_eq!(again, read);
    }

    #[test]
    fn summaries_count_policies() {
        let allow = [
            outcome("a", Mode::Enforce, Decision::Allow),
            outcome("b", Mode::Enforce, Decision::Allow),
        ];
        assert_eq!(
            combine(Phase::Promotion, &allow, &[]).1,
            "all 2 policies allow"
        );
        let deny = [
            outcome("a", Mode::Enforce, Decision::Deny),
            outcome("b", Mode::Enforce, Decision::Deny),
        ];
        assert_eq!(
            combine(Phase::Promotion, &deny, &[]).1,
            "a: a says deny (and 1 more policy)"
        );
    }
}
