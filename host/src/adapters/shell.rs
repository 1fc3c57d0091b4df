//! The shell / CI adapter: exit codes, and the decision as text for people,
//! JSON for programs, or GitHub Actions workflow commands plus a Markdown
//! step summary.

use std::fmt::Write as _;

use shipgate_policy::{Decision, Finding};

use crate::error::exit;
use crate::gate::Mode;
use crate::verdict::{Evaluation, PolicyOutcome};

/// How `eval` prints a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: the decision first, then each failing check.
    #[default]
    Text,
    /// The decision record (DESIGN §8), pretty-printed.
    Json,
    /// GitHub Actions: `::error::`/`::notice::` lines, then the text; a
    /// Markdown summary goes to `$GITHUB_STEP_SUMMARY` when it is set.
    Github,
}

/// The exit code of a decision: 0 allow, 1 deny, 2 rollback.
pub fn exit_code(decision: Decision) -> i32 {
    match decision {
        Decision::Allow => exit::ALLOW,
        Decision::Deny => exit::DENY,
        Decision::Rollback => exit::ROLLBACK,
    }
}

pub fn render(evaluation: &Evaluation, format: Format) -> String {
    match format {
        Format::Text => text(evaluation),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(evaluation).expect("a decision is JSON");
            json.push('\n');
            json
        }
        Format::Github => format!(
            "{}{}",
            workflow_commands(evaluation),
            inert(&text(evaluation))
        ),
    }
}

fn mark(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "✓",
        Decision::Deny => "✗",
        Decision::Rollback => "✗✗",
    }
}

/// Observed and threshold of a finding, as "observed X, threshold Y".
fn evidence(finding: &Finding) -> Option<String> {
    let parts: Vec<String> = [
        ("observed", &finding.observed),
        ("threshold", &finding.threshold),
    ]
    .into_iter()
    .filter_map(|(label, value)| value.as_ref().map(|v| format!("{label} {v}")))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The decision first, then per policy each failing check with observed vs
/// threshold, then a count of the checks that passed.
pub fn text(e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} · gate {}",
        e.decision.as_str().to_uppercase(),
        e.phase,
        e.gate
    );
    let _ = writeln!(out, "{}", one_line(&e.summary));
    for policy in &e.policies {
        out.push('\n');
        policy_text(&mut out, policy);
    }
    let _ = writeln!(
        out,
        "\ndecision {} · snapshot sha256 {} · gate sha256 {}",
        e.decision_id,
        &e.snapshot_sha256[..12.min(e.snapshot_sha256.len())],
        &e.gate_sha256[..12.min(e.gate_sha256.len())]
    );
    out
}

fn policy_text(out: &mut String, p: &PolicyOutcome) {
    let shadow = if p.mode == Mode::Shadow {
        " (shadow: does not count)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{} {}: {} [{}]{shadow}",
        mark(p.decision),
        p.name,
        p.decision,
        p.module
    );
    if let Some(error) = &p.error {
        let _ = writeln!(out, "    {}", one_line(error));
    }
    let mut passed = 0;
    for f in &p.findings {
        if f.decision == Decision::Allow {
            passed += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "  {} {} ({}): {}",
            mark(f.decision),
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
            "  ✓ {passed} check{} passed",
            if passed == 1 { "" } else { "s" }
        );
    }
    for line in &p.log {
        let _ = writeln!(out, "  | {line}");
    }
}

/// GitHub workflow commands: one `::error::` per failing check or fault,
/// and the decision as `::notice::` (allow) or `::error::`.
fn workflow_commands(e: &Evaluation) -> String {
    let mut out = String::new();
    let title = format!("shipgate {}", e.phase);
    for p in e.policies.iter().filter(|p| p.mode == Mode::Enforce) {
        if let Some(error) = &p.error {
            let _ = writeln!(
                out,
                "::error title={}::{}: {}",
                property(&title),
                escape(&p.name),
                escape(error)
            );
        }
        for f in p.findings.iter().filter(|f| f.decision != Decision::Allow) {
            let detail = evidence(f).map(|ev| format!(" ({ev})")).unwrap_or_default();
            let line = format!("{}/{}: {}{detail}", p.name, f.check, f.message);
            let _ = writeln!(out, "::error title={}::{}", property(&title), escape(&line));
        }
    }
    let level = if e.decision == Decision::Allow {
        "notice"
    } else {
        "error"
    };
    let _ = writeln!(
        out,
        "::{level} title={}::{}: {}",
        property(&title),
        e.decision,
        escape(&e.summary)
    );
    out
}

/// A Markdown summary for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### shipgate {}: **{}**\n", e.phase, e.decision);
    let _ = writeln!(out, "{}\n", cell(&e.summary));
    for p in &e.policies {
        let shadow = if p.mode == Mode::Shadow {
            " (shadow)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "#### {} `{}`: {}{shadow}\n",
            cell(&p.name),
            p.module,
            p.decision
        );
        if let Some(error) = &p.error {
            let _ = writeln!(out, "> {}\n", cell(error));
        }
        if p.findings.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "| | check | observed | threshold | message |\n|---|---|---|---|---|"
        );
        for f in &p.findings {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} |",
                mark(f.decision),
                cell(&f.check),
                cell(f.observed.as_deref().unwrap_or("")),
                cell(f.threshold.as_deref().unwrap_or("")),
                cell(&f.message)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<sub>decision `{}` · gate `{}`</sub>",
        e.decision_id,
        cell(&e.gate)
    );
    out
}

/// The runner reads any output line that starts with `::` as a command;
/// policy and snapshot text must never become one.
fn inert(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with("::") {
                format!(" {line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// Escapes a workflow command's message (GitHub's rules: %, CR, LF).
fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command property (also `:` and `,`).
fn property(text: &str) -> String {
    escape(text).replace(':', "%3A").replace(',', "%2C")
}

/// Policy-supplied text on one line, so it cannot forge the layout.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_text_is_escaped() {
        assert_eq!(escape("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(property("a: b, c"), "a%3A b%2C c");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(
            inert("ok\n::stop-commands::x\n"),
            "ok\n ::stop-commands::x\n"
        );
        assert_eq!(one_line("a\n::add-mask::b"), "a ::add-mask::b");
    }

    #[test]
    fn decisions_map_to_exit_codes() {
        assert_eq!(exit_code(Decision::Allow), 0);
        assert_eq!(exit_code(Decision::Deny), 1);
        assert_eq!(exit_code(Decision::Rollback), 2);
    }
}
