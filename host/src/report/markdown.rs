//! Markdown: the decision as a table per policy, then charts of what the
//! enforcing policies measured against their limits (Mermaid), for
//! `$GITHUB_STEP_SUMMARY` and `eval --format markdown`.

use std::fmt::Write as _;

use shipgate_policy::snapshot::AbortThresholds;

use super::mark;
use super::mermaid::{finding_charts, number, plan_gantt};
use crate::decision::Evaluation;
use crate::gate::{Gate, Mode, PolicyEntry};
use crate::runtime::{Fault, LoadedModule};

/// A Markdown summary of a decision.
pub(crate) fn markdown(e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### shipgate {}: **{}**\n", e.phase, e.decision);
    let _ = writeln!(out, "**Summary:** {}\n", cell(&e.summary));
    if !e.evidence.is_empty() {
        let _ = writeln!(
            out,
            "#### Missing evidence\n\n| | field | source | why | query |\n|---|---|---|---|---|"
        );
        for problem in &e.evidence {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                mark(shipgate_policy::Decision::Deny),
                code(&problem.what),
                cell(&problem.source),
                cell(&problem.why),
                problem.query.as_deref().map(code).unwrap_or_default()
            );
        }
        out.push('\n');
    }
    for p in &e.policies {
        let shadow = if p.mode == Mode::Shadow {
            " (shadow)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "#### {} {}: {}{shadow}\n",
            cell(&p.name),
            code(&p.module),
            p.decision
        );
        if let Some(error) = &p.error {
            let _ = writeln!(out, "> **Fault:** {}\n", cell(error));
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
                "| {} | {} | {} | {} | {} |",
                mark(f.decision),
                code(&f.check),
                cell(f.observed.as_deref().unwrap_or("")),
                cell(f.threshold.as_deref().unwrap_or("")),
                cell(&f.message)
            );
        }
        out.push('\n');
    }
    let enforcing: Vec<_> = e
        .policies
        .iter()
        .filter(|p| p.mode == Mode::Enforce && !p.failed_closed())
        .collect();
    let named = |policy: &str, check: &str| match enforcing.len() {
        1 => check.to_string(),
        _ => format!("{policy}/{check}"),
    };
    let charts = finding_charts(
        enforcing
            .iter()
            .flat_map(|p| p.findings.iter().map(|f| (named(&p.name, &f.check), f))),
    );
    if !charts.is_empty() {
        let _ = writeln!(out, "#### Measured against the limits\n\n{charts}");
    }
    let _ = writeln!(
        out,
        "<sub>decision {} · gate {}</sub>",
        code(&e.decision_id),
        code(&e.gate)
    );
    out
}

/// `shipgate check --format markdown`: a gate for review in a pull
/// request: its policies, its rollout plan as a gantt, and its abort
/// thresholds.
pub(crate) fn check(
    gate: &Gate,
    policies: &[(&PolicyEntry, Result<&LoadedModule, &Fault>)],
) -> String {
    let file = &gate.file;
    let mut out = format!("### shipgate gate {}\n\n", code(&file.name));
    out.push_str("| | policy | module | phases | mode | sha256 |\n|---|---|---|---|---|---|\n");
    for (policy, module) in policies {
        let phases: Vec<&str> = policy.phases.iter().map(|p| p.as_str()).collect();
        let (ok, digest) = match module {
            Ok(module) => (
                mark(shipgate_policy::Decision::Allow),
                format!("`{}`", module.sha256),
            ),
            Err(fault) => (
                mark(shipgate_policy::Decision::Deny),
                cell(&fault.to_string()),
            ),
        };
        let _ = writeln!(
            out,
            "| {ok} | {} | {} | {} | {} | {digest} |",
            cell(&policy.name),
            code(policy.module.as_str()),
            phases.join(", "),
            match policy.mode {
                Mode::Enforce => "enforce",
                Mode::Shadow => "shadow",
            },
        );
    }
    let plan = &file.rollout;
    if !plan.stages.is_empty() {
        let minutes = plan
            .min_stage_minutes
            .map_or("no minimum time".to_string(), |m| {
                format!("at least {} minutes a stage", number(m))
            });
        let _ = write!(
            out,
            "\n#### Rollout plan: {} stages, {minutes}\n\n{}",
            plan.stages.len(),
            plan_gantt(&file.name, plan)
        );
    }
    let thresholds = abort_thresholds(&plan.abort);
    if !thresholds.is_empty() {
        out.push_str("\n#### Abort thresholds, declared before the rollout\n\n| threshold | value |\n|---|---|\n");
        for (name, value) in thresholds {
            let _ = writeln!(out, "| `{name}` | {value} |");
        }
    }
    let _ = writeln!(out, "\n<sub>gate sha256 `{}`</sub>", gate.sha256);
    out
}

/// The declared abort thresholds, by their gate-file keys, for people.
fn abort_thresholds(abort: &AbortThresholds) -> Vec<(String, String)> {
    abort
        .declared()
        .into_iter()
        .map(|t| (t.key, t.unit.format(t.value)))
        .collect()
}

/// Text from a policy, a snapshot or a gate, safe inside a Markdown table
/// cell or after other text on a line: it cannot end the cell or the line,
/// or open a link or image written as markup, a code span or fence,
/// emphasis or HTML. Backslashes first, so an escape cannot be undone. (A
/// bare URL may still be autolinked by GitHub: it stays the text it was.)
pub(crate) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '|' | '`' | '[' | ']' | '!' | '*' | '_' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            // Only what could open a tag: "<= 1.0%" stays as it reads.
            '<' if chars
                .peek()
                .is_some_and(|next| next.is_ascii_alphabetic() || "/!?".contains(*next)) =>
            {
                out.push_str("&lt;");
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An identifier (a check, a module, a digest) as a code span in a table
/// cell: backticks become quotes and what could read as markup elsewhere
/// becomes look-alikes (no identifier of shipgate's has them); pipes stay
/// escaped (GitHub reads `\|` inside a code span in a table as a pipe).
pub(crate) fn code(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '<' => '‹',
            '>' => '›',
            '[' => '(',
            ']' => ')',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", cleaned.replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("a\\|b"), "a\\\\\\|b", "an escaped pipe stays escaped");
        assert_eq!(
            cell("[x](http://e) ![i](u) <img src=x> `c` <= 1%"),
            "\\[x\\](http://e) \\!\\[i\\](u) &lt;img src=x> \\`c\\` <= 1%"
        );
        assert_eq!(code("a`b|c"), "`a'b\\|c`");
    }
}
