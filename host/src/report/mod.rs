//! Presentation: every way shipgate prints a result — text for people,
//! JSON for programs, GitHub Actions workflow commands, Markdown — and the
//! exit code a decision maps to. Commands compute; this module prints, so a
//! new format is one file here.

mod github;
mod json;
mod junit;
mod markdown;
mod text;

use shipgate_policy::Decision;

use crate::decision::Evaluation;
use crate::error::exit;

pub(crate) use json::json;
pub(crate) use junit::junit;
pub(crate) use markdown::markdown;
pub(crate) use text::{check, inspection, policies, replay};

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
}

/// A decision in `format`.
pub(crate) fn render(evaluation: &Evaluation, format: Format) -> String {
    match format {
        Format::Text => text::decision(evaluation),
        Format::Json => json(evaluation),
        Format::Github => github::render(evaluation, &text::decision(evaluation)),
    }
}

/// The exit code of a decision: 0 allow, 1 deny, 2 rollback.
pub(crate) fn exit_code(decision: Decision) -> i32 {
    match decision {
        Decision::Allow => exit::ALLOW,
        Decision::Deny => exit::DENY,
        Decision::Rollback => exit::ROLLBACK,
    }
}

/// ✓, ✗ and ✗✗ for allow, deny and rollback.
fn mark(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "✓",
        Decision::Deny => "✗",
        Decision::Rollback => "✗✗",
    }
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
}
