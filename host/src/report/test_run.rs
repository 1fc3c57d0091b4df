//! `shipgate test` results in the formats CI systems read: text for people,
//! JSON, JUnit XML, TAP 13 and GitHub workflow annotations.

use std::fmt::Write;

use clap::ValueEnum;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use serde::Serialize;

use super::github::{escape as data, property};
use crate::authoring::{CaseResult, PolicyCoverage, TestRun};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TestFormat {
    Text,
    Json,
    Junit,
    Tap,
    Github,
}

/// The run in `format`; coverage is included when asked for.
pub(crate) fn render(run: &TestRun, format: TestFormat, coverage: bool) -> String {
    match format {
        TestFormat::Text => text(run, coverage),
        TestFormat::Json => json(run, coverage),
        TestFormat::Junit => junit(run),
        TestFormat::Tap => tap(run, coverage),
        TestFormat::Github => github(run, coverage),
    }
}

fn closing_line(run: &TestRun) -> String {
    format!("{} passed, {} failed\n", run.passed, run.failed)
}

/// What a failure says beyond its first line: every problem, then the
/// checks that did not allow, observed vs threshold.
fn details(case: &CaseResult) -> Vec<String> {
    let mut lines: Vec<String> = case.problems.clone();
    for check in &case.failing_checks {
        let mut line = format!(
            "{}/{} {}: {}",
            check.policy, check.check, check.decision, check.message
        );
        if let (Some(observed), Some(threshold)) = (&check.observed, &check.threshold) {
            let _ = write!(line, " (observed {observed}, threshold {threshold})");
        }
        lines.push(line);
    }
    lines
}

fn text(run: &TestRun, coverage: bool) -> String {
    let mut out = String::new();
    for case in &run.cases {
        let mark = if case.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {}:{} {} ({}: {})",
            case.file, case.line, case.name, case.phase, case.decision
        );
        if !case.passed {
            for line in details(case) {
                let _ = writeln!(out, "       {line}");
            }
        }
    }
    if coverage {
        out += &coverage_text(run);
    }
    out + &closing_line(run)
}

fn coverage_text(run: &TestRun) -> String {
    let mut out = String::from("coverage of outcomes (decisions each check was seen to make):\n");
    for policy in &run.coverage {
        let _ = writeln!(out, "  {}", policy.policy);
        let width = policy
            .checks
            .iter()
            .map(|c| c.check.len())
            .max()
            .unwrap_or(0);
        for check in &policy.checks {
            let decisions: Vec<&str> = check.decisions.iter().map(|d| d.as_str()).collect();
            let flag = if check.failing_side_untested {
                "   <- never seen deny or roll back"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {:width$}  {}{flag}",
                check.check,
                decisions.join(", ")
            );
        }
    }
    out
}

fn json(run: &TestRun, coverage: bool) -> String {
    /// The run, with coverage only when asked for.
    #[derive(Serialize)]
    struct Json<'a> {
        cases: &'a [CaseResult],
        passed: usize,
        failed: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        coverage: Option<&'a [PolicyCoverage]>,
    }
    let json = Json {
        cases: &run.cases,
        passed: run.passed,
        failed: run.failed,
        coverage: coverage.then_some(run.coverage.as_slice()),
    };
    serde_json::to_string_pretty(&json).expect("a test run is JSON") + "\n"
}

/// One test suite per fixture file, one test case per case.
fn junit(run: &TestRun) -> String {
    let mut report = Report::new("shipgate test");
    let mut suites: Vec<TestSuite> = Vec::new();
    for case in &run.cases {
        if suites.last().is_none_or(|s| s.name.as_str() != case.file) {
            suites.push(TestSuite::new(case.file.as_str()));
        }
        let status = if case.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(case.problems.join("; "))
                .set_type(format!("expected {}, got {}", case.expect, case.decision))
                .set_description(details(case).join("\n"));
            status
        };
        let mut test_case = TestCase::new(case.name.as_str(), status);
        test_case.set_classname(format!("{}:{}", case.file, case.line));
        suites
            .last_mut()
            .expect("pushed above")
            .add_test_case(test_case);
    }
    report.add_test_suites(suites);
    report
        .to_string()
        .expect("writing XML to a string cannot fail")
}

/// TAP version 13, with a YAML block under each failure.
fn tap(run: &TestRun, coverage: bool) -> String {
    let mut out = format!("TAP version 13\n1..{}\n", run.cases.len());
    for (n, case) in run.cases.iter().enumerate() {
        let status = if case.passed { "ok" } else { "not ok" };
        // A `#` would start a directive (`# TODO` turns a failure into a
        // pass for TAP consumers), a newline a new line of the stream.
        let name = case.name.replace('#', "\\#").replace(['\n', '\r'], " ");
        let _ = writeln!(out, "{status} {} - {name}", n + 1);
        if !case.passed {
            // JSON strings are YAML strings: quoting done right.
            let quote = |s: &str| serde_json::Value::from(s).to_string();
            let _ = writeln!(out, "  ---");
            let _ = writeln!(
                out,
                "  at: {}",
                quote(&format!("{}:{}", case.file, case.line))
            );
            let _ = writeln!(out, "  expected: {}", case.expect);
            let _ = writeln!(out, "  got: {}", case.decision);
            let _ = writeln!(out, "  problems:");
            for line in details(case) {
                let _ = writeln!(out, "    - {}", quote(&line));
            }
            let _ = writeln!(out, "  ...");
        }
    }
    if coverage {
        for line in coverage_text(run).lines() {
            let _ = writeln!(out, "# {line}");
        }
    }
    out
}

/// GitHub workflow commands: an error annotation on each failing case's
/// line, a warning for each check no case saw fail.
fn github(run: &TestRun, coverage: bool) -> String {
    let mut out = String::new();
    for case in run.cases.iter().filter(|c| !c.passed) {
        let _ = writeln!(
            out,
            "::error file={},line={},title={}::{}",
            property(&case.file),
            case.line,
            property(&format!("shipgate test: {}", case.name)),
            data(&details(case).join("\n"))
        );
    }
    if coverage {
        for policy in &run.coverage {
            for check in policy.checks.iter().filter(|c| c.failing_side_untested) {
                let _ = writeln!(
                    out,
                    "::warning title=shipgate test coverage::{}",
                    data(&format!(
                        "check '{}' of policy '{}' is never seen deny or roll back in any case",
                        check.check, policy.policy
                    ))
                );
            }
        }
    }
    out + &closing_line(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate_policy::{Decision, Phase};

    fn failed(name: &str) -> TestRun {
        TestRun {
            cases: vec![CaseResult {
                file: "tests/policy/a,b.toml".into(),
                line: 7,
                name: name.into(),
                phase: Phase::Abort,
                expect: Decision::Allow,
                decision: Decision::Rollback,
                passed: false,
                problems: vec!["expected allow, got rollback".into()],
                failing_checks: vec![],
            }],
            passed: 0,
            failed: 1,
            coverage: vec![],
        }
    }

    #[test]
    fn a_case_name_cannot_turn_a_tap_failure_into_a_todo() {
        let tap = render(
            &failed("breach # TODO\nok 2 - fake"),
            TestFormat::Tap,
            false,
        );
        assert!(
            tap.contains("not ok 1 - breach \\# TODO ok 2 - fake\n"),
            "{tap}"
        );
        assert_eq!(
            tap.lines().filter(|l| l.starts_with("ok ")).count(),
            0,
            "{tap}"
        );
    }

    #[test]
    fn github_annotations_point_at_the_case_with_escaped_properties() {
        let github = render(&failed("50% of: checks"), TestFormat::Github, false);
        assert_eq!(
            github,
            "::error file=tests/policy/a%2Cb.toml,line=7,title=shipgate test%3A 50%25 of%3A checks::expected allow, got rollback\n\
             0 passed, 1 failed\n"
        );
    }
}
