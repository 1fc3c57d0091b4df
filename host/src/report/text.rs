//! Text for people: a decision (the decision first, then each failing check
//! with observed vs threshold), and what `inspect`, `policies`, `check` and
//! `replay` report.

use std::fmt::Write as _;

use shipgate_policy::Decision;

use super::{Style, evidence};
use crate::decision::{Evaluation, PolicyOutcome};
use crate::gate::{Mode, PolicyEntry};
use crate::inspect::Inspection;
use crate::replay::Replay;
use crate::runtime::{Fault, LoadedModule};

/// The decision first, then per policy each failing check with observed vs
/// threshold, then a count of the checks that passed (verbose: each of
/// them).
pub(super) fn decision(e: &Evaluation, style: Style) -> String {
    let mut out = String::new();
    let dot = style.dot();
    let _ = writeln!(
        out,
        "{}  {} {dot} gate {}",
        e.decision.as_str().to_uppercase(),
        e.phase,
        e.gate
    );
    let _ = writeln!(out, "{}", one_line(&e.summary));
    if !e.evidence.is_empty() {
        let _ = writeln!(out, "\nmissing evidence:");
        for problem in &e.evidence {
            let _ = writeln!(
                out,
                "  {} {} ({}): {}",
                style.mark(Decision::Deny),
                one_line(&problem.what),
                one_line(&problem.source),
                one_line(&problem.why)
            );
            if let Some(query) = &problem.query {
                let _ = writeln!(out, "      query: {}", one_line(query));
            }
        }
    }
    for policy in &e.policies {
        out.push('\n');
        policy_text(&mut out, policy, style);
    }
    let _ = writeln!(
        out,
        "\ndecision {} {dot} snapshot sha256 {} {dot} gate sha256 {}",
        e.decision_id,
        &e.snapshot_sha256[..12.min(e.snapshot_sha256.len())],
        &e.gate_sha256[..12.min(e.gate_sha256.len())]
    );
    out
}

fn policy_text(out: &mut String, p: &PolicyOutcome, style: Style) {
    let shadow = if p.mode == Mode::Shadow {
        " (shadow: does not count)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{} {}: {} [{}]{shadow}",
        style.mark(p.decision),
        p.name,
        p.decision,
        p.module
    );
    if let Some(error) = &p.error {
        let _ = writeln!(out, "    {}", one_line(error));
    }
    let mut passed = 0;
    for f in &p.findings {
        if f.decision == Decision::Allow && !style.verbose {
            passed += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "  {} {} ({}): {}",
            style.mark(f.decision),
            one_line(&f.check),
            f.decision,
            one_line(&f.message)
        );
        if let Some(evidence) = evidence(f) {
            let _ = writeln!(out, "      {}", one_line(&evidence));
        }
    }
    if passed > 0 {
        let _ = writeln!(
            out,
            "  {} {passed} check{} passed",
            style.mark(Decision::Allow),
            if passed == 1 { "" } else { "s" }
        );
    }
    for line in &p.log {
        let _ = writeln!(out, "  | {line}");
    }
}

/// Policy-supplied text on one line, so it cannot forge the layout.
pub(super) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Text as a terminal may show it: every control character but newline
/// and tab written out (`\x1b`), so text from a snapshot or a policy
/// cannot move the cursor, rewrite a line or recolour a decision.
pub(crate) fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `shipgate inspect`: what a module says it is and what it imports.
pub(crate) fn inspection(i: &Inspection) -> String {
    let phases: Vec<&str> = i.phases.iter().map(|p| p.as_str()).collect();
    let mut out = String::new();
    let _ = writeln!(out, "{} {} ({})", i.name, i.version, i.module);
    let _ = writeln!(out, "  {}", i.description);
    let _ = writeln!(out, "  phases:  {}", phases.join(", "));
    let _ = writeln!(out, "  sha256:  {}", i.sha256);
    let _ = writeln!(out, "  size:    {} bytes", i.size);
    if let Some(key) = &i.signed_by {
        let _ = writeln!(out, "  signed:  by key {key}");
    }
    let _ = writeln!(
        out,
        "  imports: {}",
        if i.imports.is_empty() {
            "none".to_string()
        } else {
            i.imports.len().to_string()
        }
    );
    for import in &i.imports {
        let _ = writeln!(out, "    {import}");
    }
    out
}

/// `shipgate policies`: one line per stock policy.
pub(crate) fn policies(stock: &[Inspection]) -> String {
    let mut out = String::new();
    for info in stock {
        let phases: Vec<&str> = info.phases.iter().map(|p| p.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<20} {:<20} {}",
            info.module,
            phases.join(", "),
            info.description
        );
    }
    out
}

/// `shipgate check`: each policy with its module's digest, or its fault.
pub(crate) fn check(
    policies: &[(&PolicyEntry, Result<&LoadedModule, &Fault>)],
    style: Style,
) -> String {
    let mut out = String::new();
    let (ok, failed, dot) = (
        style.mark(Decision::Allow),
        style.mark(Decision::Deny),
        style.dot(),
    );
    for (policy, module) in policies {
        let phases: Vec<&str> = policy.phases.iter().map(|p| p.as_str()).collect();
        let _ = match module {
            Ok(module) => writeln!(
                out,
                "{ok} {} [{}] {} {dot} sha256 {}",
                policy.name,
                policy.module,
                phases.join(", "),
                module.sha256
            ),
            Err(fault) => writeln!(out, "{failed} {} [{}]: {fault}", policy.name, policy.module),
        };
    }
    out
}

/// `shipgate replay`: every decision that differs, then the counts.
pub(crate) fn replay(report: &Replay) -> String {
    let mut out = String::new();
    for (line, id, what) in &report.differing {
        let _ = writeln!(out, "line {line}: decision {id} differs: {what}");
    }
    if let Some(line) = report.torn {
        let _ = writeln!(
            out,
            "line {line}: a record cut short at the end of the log (a write interrupted by a crash); skipped"
        );
    }
    let _ = writeln!(
        out,
        "replayed {} decision(s): {} identical, {} differ",
        report.replayed,
        report.replayed - report.differing.len(),
        report.differing.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(
            terminal_safe("orders\u{1b}[2K\rALLOW\u{7f}\u{9b}\n\tok"),
            "orders\\x1b[2K\\x0dALLOW\\x7f\\x9b\n\tok"
        );
        assert!(matches!(
            terminal_safe("plain\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn policy_text_stays_on_its_line() {
        assert_eq!(one_line("a\n::add-mask::b"), "a ::add-mask::b");
    }

    #[test]
    fn missing_evidence_has_its_own_section_with_the_query() {
        let evaluation = Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            decision_id: "d1".into(),
            phase: shipgate_policy::Phase::Abort,
            decision: Decision::Deny,
            summary: "missing evidence: metrics.canary.errors".into(),
            policies: vec![],
            evidence: vec![crate::decision::EvidenceProblem {
                source: "prometheus".into(),
                what: "metrics.canary.errors".into(),
                why: "no series".into(),
                query: Some("sum(rate(errors{hash=\"b\"}[5m]))".into()),
            }],
            snapshot_sha256: "s".into(),
            gate: "g".into(),
            gate_sha256: "h".into(),
            evaluated_at: "2026-11-26T14:00:00Z".into(),
        };
        let text = decision(&evaluation, Style::default());
        let section = text.split("missing evidence:\n").nth(1).expect("a section");
        let mut lines = section.lines();
        let first = lines.next().unwrap();
        assert!(
            first.contains("metrics.canary.errors (prometheus): no series"),
            "{text}"
        );
        assert_eq!(
            lines.next().unwrap().trim(),
            "query: sum(rate(errors{hash=\"b\"}[5m]))"
        );
        assert!(
            !text.contains("evidence  "),
            "no policy named evidence: {text}"
        );
    }
}
