//! GitHub Actions: workflow commands (annotations) for the decision and
//! each failing check, then the text report with command processing
//! stopped, so that nothing a policy or a snapshot says can become a
//! workflow command.

use std::fmt::Write as _;

use shipgate_policy::Decision;

use super::evidence;
use crate::decision::Evaluation;
use crate::gate::Mode;

/// The workflow commands, then `text` between `::stop-commands::` and its
/// end marker: the runner reads no line in between as a command, whatever
/// it starts with (a leading space is not enough, the runner trims it). The
/// marker is random, so text cannot end the section early.
pub(super) fn render(evaluation: &Evaluation, text: &str) -> String {
    let token = stop_token(&evaluation.decision_id);
    format!(
        "{}::stop-commands::{token}\n{}::{token}::\n",
        workflow_commands(evaluation),
        inert(text)
    )
}

/// 128 random bits, hex: from the kernel (getrandom(2)), else the
/// decision id and the clock, which a policy cannot know either.
fn stop_token(decision_id: &str) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        use sha2::{Digest, Sha256};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::digest(format!("{decision_id}:{nanos}:{}", std::process::id()));
        bytes.copy_from_slice(&digest[..16]);
    }
    hex::encode(bytes)
}

/// GitHub workflow commands: the decision first, as `::notice::` (allow) or
/// `::error::` (GitHub shows at most 10 error annotations a step, so the one
/// that matters leads), then one `::error::` per failing check or fault.
fn workflow_commands(e: &Evaluation) -> String {
    let mut out = String::new();
    let title = format!("shipgate {}", e.phase);
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
    for problem in &e.evidence {
        let line = format!(
            "missing evidence: {} ({}): {}",
            problem.what, problem.source, problem.why
        );
        let _ = writeln!(out, "::error title={}::{}", property(&title), escape(&line));
    }
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
    out
}

/// Belt and braces inside the stopped section: a line that starts with
/// `::` is indented.
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
pub(crate) fn escape(text: &str) -> String {
    let escaped = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    super::terminal_safe(&escaped).into_owned()
}

/// Escapes a workflow command property (also `:` and `,`).
pub(crate) fn property(text: &str) -> String {
    escape(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_tokens_are_random() {
        let a = stop_token("d");
        assert_eq!(a.len(), 32);
        assert_ne!(a, stop_token("d"));
    }

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
