//! `shipgate test`: fixture cases through the real runtime (the sandbox,
//! limits and gate handling of `eval`), each judged against what it
//! expects, with coverage of the outcomes each check was seen to reach.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use shipgate_policy::{Decision, Phase};

use super::fixture::{self, Case, Fixture};
use crate::decision::Evaluation;
use crate::error::Error;
use crate::evaluate::PreparedGate;
use crate::gate::{Gate, Mode};
use crate::runtime::Runtime;

/// Where the cases run.
pub(crate) struct Setup<'a> {
    /// The gate for fixtures that name none (default: the built-in gate).
    pub(crate) gate: Option<&'a Path>,
    /// Modules evaluated instead of the gate's policies, per case phase.
    pub(crate) policies: &'a [String],
}

/// Every case's result and the coverage of outcomes.
#[derive(Debug)]
pub(crate) struct TestRun {
    pub(crate) cases: Vec<CaseResult>,
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) coverage: Vec<PolicyCoverage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CaseResult {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) name: String,
    pub(crate) phase: Phase,
    pub(crate) expect: Decision,
    pub(crate) decision: Decision,
    pub(crate) passed: bool,
    /// Why the case failed: each unmet expectation and each policy fault.
    pub(crate) problems: Vec<String>,
    /// The checks that did not allow, for the reader of a failure.
    pub(crate) failing_checks: Vec<FailingCheck>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FailingCheck {
    pub(crate) policy: String,
    pub(crate) check: String,
    pub(crate) decision: Decision,
    pub(crate) message: String,
    pub(crate) observed: Option<String>,
    pub(crate) threshold: Option<String>,
}

/// Every check a policy reported across the run and the decisions it was
/// seen to make.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyCoverage {
    pub(crate) policy: String,
    pub(crate) checks: Vec<CheckCoverage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckCoverage {
    pub(crate) check: String,
    pub(crate) decisions: Vec<Decision>,
    /// No case saw this check deny or roll back.
    pub(crate) failing_side_untested: bool,
}

/// Reads every fixture under `paths` (all of them before running any, so a
/// bad fixture stops the run before a case runs; a bad gate stops it when
/// its first case comes) and runs the cases.
pub(crate) fn run(
    runtime: Runtime,
    paths: &[PathBuf],
    setup: &Setup<'_>,
) -> Result<TestRun, Error> {
    let fixtures = fixture::discover(paths)?
        .iter()
        .map(|path| fixture::read(path))
        .collect::<Result<Vec<Fixture>, Error>>()?;
    let runtime = Arc::new(runtime);
    let mut gates = Gates::default();
    let mut cases = Vec::new();
    let mut seen: BTreeMap<String, BTreeMap<String, BTreeSet<Decision>>> = BTreeMap::new();
    for fixture in &fixtures {
        let gate_path = fixture.gate.as_deref().or(setup.gate);
        for case in &fixture.cases {
            let prepared = gates.prepared(&runtime, gate_path, setup.policies, case.phase)?;
            let evaluation = prepared
                .evaluate(case.phase, &case.snapshot)
                .map_err(|fault| {
                    Error::Internal(anyhow::anyhow!(
                        "{}:{}: case '{}': no decision: {fault}",
                        fixture.path.display(),
                        case.line,
                        case.name
                    ))
                })?;
            for policy in &evaluation.policies {
                let checks = seen.entry(policy.name.clone()).or_default();
                for finding in &policy.findings {
                    checks
                        .entry(finding.check.clone())
                        .or_default()
                        .insert(finding.decision);
                }
            }
            cases.push(judge(&fixture.path, case, &evaluation));
        }
    }
    let failed = cases.iter().filter(|c| !c.passed).count();
    Ok(TestRun {
        passed: cases.len() - failed,
        failed,
        cases,
        coverage: coverage(seen),
    })
}

/// Prepared gates, one per gate file (and per phase when `--policy`
/// replaces the gate's policies for that phase), loaded once per run.
#[derive(Default)]
struct Gates {
    prepared: HashMap<(Option<PathBuf>, Option<Phase>), PreparedGate>,
}

impl Gates {
    fn prepared(
        &mut self,
        runtime: &Arc<Runtime>,
        path: Option<&Path>,
        policies: &[String],
        phase: Phase,
    ) -> Result<&PreparedGate, Error> {
        let replacing = !policies.is_empty();
        let key = (path.map(Path::to_path_buf), replacing.then_some(phase));
        if !self.prepared.contains_key(&key) {
            let mut gate = match path {
                Some(path) => Gate::read(path)?,
                None => Gate::default_gate(),
            };
            // Every phase, as `shipgate check` does: whichever fixture
            // comes next may use another phase of the same gate.
            if replacing {
                gate = gate.with_modules(policies, phase)?;
            }
            let prepared = PreparedGate::prepare(runtime.clone(), gate, &Phase::ALL)?;
            self.prepared.insert(key.clone(), prepared);
        }
        Ok(&self.prepared[&key])
    }
}

/// A case passes when the decision is the one expected, every check named
/// decided as expected, and no policy faulted: a fault's fail-closed
/// decision is never what a test means to check.
fn judge(file: &Path, case: &Case, evaluation: &Evaluation) -> CaseResult {
    let mut problems = Vec::new();
    // A decision no policy of the case's own made (no enforcing policy
    // evaluates this phase) tests nothing.
    let enforced = evaluation.policies.iter().any(|p| p.mode == Mode::Enforce);
    if !enforced {
        problems.push(format!(
            "no enforcing policy of the gate evaluates the {} phase: the decision tests nothing",
            case.phase
        ));
    }
    if evaluation.decision != case.expect {
        problems.push(format!(
            "expected {}, got {}",
            case.expect, evaluation.decision
        ));
    }
    for policy in &evaluation.policies {
        if let Some(error) = &policy.error {
            problems.push(format!("policy '{}' failed closed: {error}", policy.name));
        }
    }
    for (check, expected) in &case.findings {
        let reported: Vec<(&str, Decision)> = evaluation
            .policies
            .iter()
            .flat_map(|p| p.findings.iter().map(move |f| (p, f)))
            .filter(|(p, f)| f.check == *check || format!("{}/{}", p.name, f.check) == *check)
            .map(|(p, f)| (p.name.as_str(), f.decision))
            .collect();
        if reported.is_empty() {
            let all: BTreeSet<&str> = evaluation
                .policies
                .iter()
                .flat_map(|p| p.findings.iter().map(|f| f.check.as_str()))
                .collect();
            let all: Vec<&str> = all.into_iter().collect();
            problems.push(format!(
                "check '{check}' was not reported (reported: {})",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            ));
        }
        for (policy, decision) in reported {
            if decision != *expected {
                problems.push(format!(
                    "check '{check}' of policy '{policy}': expected {expected}, got {decision}"
                ));
            }
        }
    }
    let failing_checks = evaluation
        .policies
        .iter()
        .flat_map(|p| p.findings.iter().map(move |f| (p, f)))
        .filter(|(_, f)| f.decision != Decision::Allow)
        .map(|(p, f)| FailingCheck {
            policy: p.name.clone(),
            check: f.check.clone(),
            decision: f.decision,
            message: f.message.clone(),
            observed: f.observed.clone(),
            threshold: f.threshold.clone(),
        })
        .collect();
    CaseResult {
        file: file.display().to_string(),
        line: case.line,
        name: case.name.clone(),
        phase: case.phase,
        expect: case.expect,
        decision: evaluation.decision,
        passed: problems.is_empty(),
        problems,
        failing_checks,
    }
}

fn coverage(seen: BTreeMap<String, BTreeMap<String, BTreeSet<Decision>>>) -> Vec<PolicyCoverage> {
    seen.into_iter()
        .map(|(policy, checks)| PolicyCoverage {
            policy,
            checks: checks
                .into_iter()
                .map(|(check, decisions)| CheckCoverage {
                    failing_side_untested: decisions.iter().all(|d| *d == Decision::Allow),
                    decisions: decisions.into_iter().collect(),
                    check,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PolicyOutcome;
    use shipgate_policy::Finding;

    fn outcome(mode: Mode, decision: Decision, error: Option<&str>) -> PolicyOutcome {
        PolicyOutcome {
            name: "rules".into(),
            module: "rules.wasm".into(),
            module_sha256: None,
            mode,
            decision,
            summary: String::new(),
            findings: vec![{
                let mut finding = Finding::new(
                    "error-budget",
                    decision,
                    format!("error-budget: {decision}"),
                );
                finding.observed("3.0%").threshold("<= 2.0%");
                finding
            }],
            duration_us: 0,
            error: error.map(str::to_string),
            log: vec![],
        }
    }

    fn evaluation(decision: Decision, policies: Vec<PolicyOutcome>) -> Evaluation {
        Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            evidence: vec![],
            decision_id: "d".into(),
            phase: Phase::Abort,
            decision,
            summary: String::new(),
            policies,
            snapshot_sha256: String::new(),
            gate: "g".into(),
            gate_sha256: String::new(),
            evaluated_at: String::new(),
        }
    }

    fn case(expect: Decision, findings: &[(&str, Decision)]) -> Case {
        let snapshot =
            crate::snapshot::parse(br#"{"schema_version": 1, "now": "2026-11-26T14:00:00Z"}"#)
                .unwrap();
        Case {
            name: "c".into(),
            line: 3,
            phase: Phase::Abort,
            snapshot,
            expect,
            findings: findings.iter().map(|(c, d)| (c.to_string(), *d)).collect(),
        }
    }

    fn problems(case: &Case, evaluation: &Evaluation) -> Vec<String> {
        let result = judge(Path::new("f.toml"), case, evaluation);
        assert_eq!(result.passed, result.problems.is_empty());
        result.problems
    }

    #[test]
    fn the_decision_and_each_named_check_must_be_as_expected() {
        let rolled_back = evaluation(
            Decision::Rollback,
            vec![outcome(Mode::Enforce, Decision::Rollback, None)],
        );
        assert!(
            problems(
                &case(Decision::Rollback, &[("error-budget", Decision::Rollback)]),
                &rolled_back
            )
            .is_empty()
        );
        assert!(
            problems(
                &case(
                    Decision::Rollback,
                    &[("rules/error-budget", Decision::Rollback)]
                ),
                &rolled_back
            )
            .is_empty()
        );
        assert_eq!(
            problems(
                &case(Decision::Allow, &[("error-budget", Decision::Allow)]),
                &rolled_back
            ),
            [
                "expected allow, got rollback",
                "check 'error-budget' of policy 'rules': expected allow, got rollback"
            ]
        );
        assert_eq!(
            problems(
                &case(Decision::Rollback, &[("latency", Decision::Allow)]),
                &rolled_back
            ),
            ["check 'latency' was not reported (reported: error-budget)"]
        );
    }

    #[test]
    fn a_fault_fails_the_case_even_when_its_fail_closed_decision_was_expected() {
        let faulted = evaluation(
            Decision::Deny,
            vec![outcome(
                Mode::Enforce,
                Decision::Deny,
                Some("policy crashed"),
            )],
        );
        assert_eq!(
            problems(&case(Decision::Deny, &[]), &faulted),
            ["policy 'rules' failed closed: policy crashed"]
        );
    }

    #[test]
    fn a_decision_no_enforcing_policy_made_tests_nothing() {
        let shadow_only = evaluation(
            Decision::Deny,
            vec![outcome(Mode::Shadow, Decision::Deny, None)],
        );
        assert_eq!(
            problems(&case(Decision::Deny, &[]), &shadow_only),
            [
                "no enforcing policy of the gate evaluates the abort phase: the decision tests nothing"
            ]
        );
        assert_eq!(
            problems(
                &case(Decision::Deny, &[]),
                &evaluation(Decision::Deny, vec![])
            )
            .len(),
            1
        );
    }
}
