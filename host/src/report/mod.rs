//! Presentation: every way shipgate prints a result — text for people,
//! JSON for programs, GitHub Actions workflow commands, Markdown and
//! Mermaid, JUnit, TAP, a rollout's HTML page with its SVG charts, the
//! incident report, Tekton results, what the author's commands print — and
//! the exit code a decision maps to. Commands compute; this module prints,
//! so a new format is one file here.

mod author;
mod github;
mod html;
mod incident;
mod json;
mod judgement;
mod junit;
mod markdown;
mod mermaid;
mod svg;
mod tekton;
mod test_run;
mod text;

use shipgate_policy::Decision;

use crate::decision::Evaluation;
use crate::error::exit;

pub(crate) use author::{built, created};
pub(crate) use html::page as rollout_page;
pub(crate) use incident::report as incident;
pub(crate) use json::json;
pub(crate) use judgement::{markdown as judgement_markdown, text as judgement_text};
pub(crate) use junit::junit;
pub(crate) use markdown::{check as check_markdown, markdown};
pub(crate) use tekton::task_results;
pub(crate) use test_run::{TestFormat, render as test_run};
pub(crate) use text::{check, inspection, policies, replay, terminal_safe};

use markdown::{cell, code};
use mermaid::{nice_ceiling, number, scale};

/// How `eval` prints a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// For people: the decision first, then each failing check.
    #[default]
    Text,
    /// The decision record, pretty-printed.
    Json,
    /// GitHub Actions: `::error::`/`::notice::` lines, then the text; a
    /// Markdown summary goes to `$GITHUB_STEP_SUMMARY` when it is set.
    Github,
    /// Markdown: a table per policy and Mermaid charts of the measured
    /// checks against their limits (a merge request comment, a wiki).
    Markdown,
}

/// How text for people looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Style {
    /// ASCII marks instead of ✓ ✗ and ·.
    pub(crate) ascii: bool,
    /// Every check, passed ones too (`eval -v`), not just the failing ones.
    pub(crate) verbose: bool,
}

impl Style {
    /// The style this process's environment asks for (see [`plain_output`]).
    pub(crate) fn from_env(verbose: bool) -> Style {
        Style {
            ascii: plain_output(|name| std::env::var_os(name)),
            verbose,
        }
    }

    /// The mark of a decision: ✓, ✗ and ✗✗ (ASCII: ok, x, xx).
    fn mark(self, decision: Decision) -> &'static str {
        match (decision, self.ascii) {
            (Decision::Allow, false) => "✓",
            (Decision::Deny, false) => "✗",
            (Decision::Rollback, false) => "✗✗",
            (Decision::Allow, true) => "ok",
            (Decision::Deny, true) => "x",
            (Decision::Rollback, true) => "xx",
        }
    }

    /// The separator between the parts of a heading.
    fn dot(self) -> &'static str {
        if self.ascii { "-" } else { "·" }
    }
}

/// Whether output must be plain ASCII: `NO_COLOR` is set, `TERM` is
/// `dumb`, or the locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`) names a
/// character set other than UTF-8 (`C`, `POSIX`, `en_US.ISO-8859-1`). No
/// locale at all keeps UTF-8: CI runners and pods rarely set one, and
/// their log viewers are UTF-8.
fn plain_output(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    if set("NO_COLOR").is_some() || set("TERM").is_some_and(|term| term == "dumb") {
        return true;
    }
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| set(name))
        .is_some_and(|locale| {
            let locale = locale.to_string_lossy().to_ascii_lowercase();
            !(locale.contains("utf-8") || locale.contains("utf8"))
        })
}

/// A decision in `format`.
pub(crate) fn render(evaluation: &Evaluation, format: Format, style: Style) -> String {
    match format {
        Format::Text => text::decision(evaluation, style),
        Format::Json => json(evaluation),
        Format::Github => github::render(evaluation, &text::decision(evaluation, style)),
        Format::Markdown => markdown(evaluation),
    }
}

/// The stage of a decision as people count it: "stage 3 (25%)".
fn stage_label(point: &crate::history::Point) -> Option<String> {
    let weight = point.weight?;
    Some(match point.stage_index {
        Some(index) => format!("stage {} ({}%)", u64::from(index) + 1, number(weight)),
        None => format!("{}%", number(weight)),
    })
}

/// The exit code of a decision: 0 allow, 1 deny, 2 rollback.
pub(crate) fn exit_code(decision: Decision) -> i32 {
    match decision {
        Decision::Allow => exit::ALLOW,
        Decision::Deny => exit::DENY,
        Decision::Rollback => exit::ROLLBACK,
    }
}

/// ✓, ✗ and ✗✗ for allow, deny and rollback, where UTF-8 is certain
/// (Markdown).
fn mark(decision: Decision) -> &'static str {
    Style::default().mark(decision)
}

/// Observed and threshold of a finding, as "observed X, threshold Y".
fn evidence(finding: &shipgate_policy::Finding) -> Option<String> {
    let parts: Vec<String> = [
        ("observed", &finding.observed),
        ("threshold", &finding.threshold),
    ]
    .into_iter()
    .filter_map(|(label, value)| value.as_ref().map(|v| format!("{label} {v}")))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_map_to_exit_codes() {
        assert_eq!(exit_code(Decision::Allow), 0);
        assert_eq!(exit_code(Decision::Deny), 1);
        assert_eq!(exit_code(Decision::Rollback), 2);
    }

    fn plain(vars: &[(&str, &str)]) -> bool {
        plain_output(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.into()))
    }

    #[test]
    fn output_is_plain_when_asked_or_when_the_locale_is_not_utf8() {
        assert!(!plain(&[]), "no locale: UTF-8");
        assert!(!plain(&[("LANG", "en_US.UTF-8"), ("TERM", "xterm")]));
        assert!(
            !plain(&[("LC_ALL", "C.utf8"), ("LANG", "C")]),
            "LC_ALL wins"
        );
        assert!(
            !plain(&[("NO_COLOR", ""), ("LANG", "de_DE.UTF-8")]),
            "an empty NO_COLOR is unset"
        );
        assert!(plain(&[("NO_COLOR", "1")]));
        assert!(plain(&[("TERM", "dumb")]));
        assert!(plain(&[("LANG", "C")]));
        assert!(
            plain(&[("LC_CTYPE", "POSIX"), ("LANG", "en_US.UTF-8")]),
            "LC_CTYPE wins over LANG"
        );
        assert!(plain(&[("LANG", "en_US.ISO-8859-1")]));
    }
}
