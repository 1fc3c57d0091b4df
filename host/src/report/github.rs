//! GitHub Actions: workflow commands (annotations) for each failing check
//! and the decision, then the text report made inert.

use std::fmt::Write as _;

use shipgate_policy::Decision;

use super::evidence;
use crate::decision::Evaluation;
use crate::gate::Mode;

/// The workflow commands, then `text` with no line the runner would read
/// as a command.
pub(super) fn render(evaluation: &Evaluation, text: &str) -> String {
    format!("{}{}", workflow_commands(evaluation), inert(text))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_text_is_escaped() {
        assert_eq!(escape("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(property("a: b, c"), "a%3A b%2C c");
        assert_eq!(
            inert("ok\n::stop-commands::x\n"),
            "ok\n ::stop-commands::x\n"
        );
    }
}
