//! JUnit XML: one test case per check of every policy (a failing check is a
//! failure, a policy fault an error, a shadow policy's failing check is
//! skipped), for CI systems that show test reports (GitLab's merge request
//! widget through `artifacts:reports:junit`, Jenkins, Tekton dashboards).

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use shipgate_policy::Decision;

use super::evidence;
use crate::decision::Evaluation;
use crate::gate::Mode;

/// A decision as a JUnit report.
pub(crate) fn junit(e: &Evaluation) -> String {
    let mut suite = TestSuite::new(format!("shipgate {} (gate {})", e.phase, e.gate));
    suite.add_properties([
        Property::new("decision", e.decision.as_str()),
        Property::new("summary", e.summary.as_str()),
        Property::new("decision_id", e.decision_id.as_str()),
    ]);
    for problem in &e.evidence {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_message(problem.why.as_str())
            .set_type("missing evidence");
        if let Some(query) = &problem.query {
            status.set_description(format!("query {query}"));
        }
        let mut case = TestCase::new(format!("evidence/{}", problem.what), status);
        case.set_classname(format!("source:{}", problem.source));
        suite.add_test_case(case);
    }
    for p in &e.policies {
        let shadow = p.mode == Mode::Shadow;
        if let Some(error) = &p.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(error.as_str())
                .set_type(format!("fails closed: {}", p.decision));
            let mut case = TestCase::new(format!("{}: policy fault", p.name), status);
            case.set_classname(p.name.as_str());
            suite.add_test_case(case);
        }
        for f in &p.findings {
            let status = match f.decision {
                Decision::Allow => TestCaseStatus::success(),
                _ if shadow => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("shadow policy (does not count): {}", f.message));
                    status
                }
                decision => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(f.message.as_str())
                        .set_type(decision.as_str());
                    if let Some(evidence) = evidence(f) {
                        status.set_description(evidence);
                    }
                    status
                }
            };
            let mut case = TestCase::new(format!("{}/{}", p.name, f.check), status);
            case.set_classname(p.name.as_str());
            suite.add_test_case(case);
        }
    }
    let mut report = Report::new("shipgate");
    report.add_test_suite(suite);
    report
        .to_string()
        .expect("writing XML to a string cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PolicyOutcome;
    use shipgate_policy::{Finding, Phase};

    #[test]
    fn failing_checks_are_failures_faults_errors_and_shadows_skipped() {
        let finding = |check: &str, decision| {
            let mut finding = Finding::new(check, decision, format!("{check} says {decision}"));
            finding.observed("4.1%").threshold("<= 1.0%");
            finding
        };
        let policy = |name: &str, mode, findings, error: Option<&str>| PolicyOutcome {
            name: name.into(),
            module: "builtin:canary".into(),
            module_sha256: None,
            mode,
            decision: Decision::Rollback,
            summary: String::new(),
            findings,
            duration_us: 0,
            error: error.map(str::to_string),
            log: vec![],
        };
        let evaluation = Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            evidence: vec![],
            decision_id: "d1".into(),
            phase: Phase::Abort,
            decision: Decision::Rollback,
            summary: "canary error rate 4.1% exceeds 1.0% <&>".into(),
            policies: vec![
                policy(
                    "canary",
                    Mode::Enforce,
                    vec![
                        finding("error-rate", Decision::Rollback),
                        finding("latency-p99", Decision::Allow),
                    ],
                    None,
                ),
                policy(
                    "trial",
                    Mode::Shadow,
                    vec![finding("x", Decision::Deny)],
                    None,
                ),
                policy(
                    "broken",
                    Mode::Enforce,
                    vec![],
                    Some("policy crashed: unreachable"),
                ),
            ],
            snapshot_sha256: String::new(),
            gate: "g".into(),
            gate_sha256: String::new(),
            evaluated_at: String::new(),
        };
        let xml = junit(&evaluation);
        let report = Report::deserialize_from_str(&xml).expect("valid JUnit XML");
        let suite = &report.test_suites[0];
        assert_eq!(
            (suite.tests, suite.failures, suite.errors),
            (4, 1, 1),
            "{xml}"
        );
        assert!(xml.contains(r#"<failure message="error-rate says rollback" type="rollback">observed 4.1%, threshold &lt;= 1.0%</failure>"#), "{xml}");
        assert!(xml.contains("&lt;&amp;&gt;"), "{xml}");
    }
}
