//! Markdown: the decision as a table per policy, for `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;

use super::mark;
use crate::decision::Evaluation;
use crate::gate::Mode;

/// A Markdown summary of a decision.
pub(crate) fn markdown(e: &Evaluation) -> String {
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

/// Makes text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
