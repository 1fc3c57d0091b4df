//! The contract's bindings (`wit/policy.wit`) and the conversions between
//! its types and the SDK's, checking what a policy returns against the
//! host's limits on the way in.

use shipgate_policy::{Decision, Finding, Phase, PolicyInfo, Verdict};

use super::Fault;

pub(super) mod generated {
    wasmtime::component::bindgen!({ path: "../policies/sdk/wit", world: "policy" });
}

use generated::shipgate::policy::types as wit;

pub(super) use generated::{Policy, PolicyPre};

/// The contract this host speaks (the package of `wit/policy.wit`).
pub(crate) const CONTRACT: &str = env!("SHIPGATE_CONTRACT");

/// The most findings a verdict may carry.
pub(crate) const MAX_FINDINGS: usize = 1000;
/// The longest string a verdict may carry (summary, message, ...), in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 4096;

pub(super) fn phase_to_wit(phase: Phase) -> wit::Phase {
    match phase {
        Phase::Preflight => wit::Phase::Preflight,
        Phase::Promotion => wit::Phase::Promotion,
        Phase::Abort => wit::Phase::Abort,
        Phase::Verify => wit::Phase::Verify,
    }
}

fn phase_from_wit(phase: wit::Phase) -> Phase {
    match phase {
        wit::Phase::Preflight => Phase::Preflight,
        wit::Phase::Promotion => Phase::Promotion,
        wit::Phase::Abort => Phase::Abort,
        wit::Phase::Verify => Phase::Verify,
    }
}

fn decision_from_wit(decision: wit::Decision) -> Decision {
    match decision {
        wit::Decision::Allow => Decision::Allow,
        wit::Decision::Deny => Decision::Deny,
        wit::Decision::Rollback => Decision::Rollback,
    }
}

pub(super) fn info_from_wit(info: wit::PolicyInfo) -> PolicyInfo {
    PolicyInfo {
        name: truncate(info.name),
        version: truncate(info.version),
        description: truncate(info.description),
        phases: info.phases.into_iter().map(phase_from_wit).collect(),
    }
}

/// What `evaluate` returned, as the host takes it: a checked verdict, or the
/// policy's own error as its fault.
pub(super) fn evaluation_from_wit(result: Result<wit::Verdict, String>) -> Result<Verdict, Fault> {
    match result {
        Ok(verdict) => verdict_from_wit(verdict),
        Err(message) => Err(Fault::PolicyError(truncate(message))),
    }
}

/// The host's check of a verdict given in the SDK's types: what the host
/// makes of that verdict when a policy returns it (the fuzzers' oracle).
pub(crate) fn check_verdict(verdict: Verdict) -> Result<Verdict, Fault> {
    let decision = |d: Decision| match d {
        Decision::Allow => wit::Decision::Allow,
        Decision::Deny => wit::Decision::Deny,
        Decision::Rollback => wit::Decision::Rollback,
    };
    verdict_from_wit(wit::Verdict {
        decision: decision(verdict.decision),
        summary: verdict.summary,
        findings: verdict
            .findings
            .into_iter()
            .map(|f| wit::Finding {
                check: f.check,
                decision: decision(f.decision),
                message: f.message,
                observed: f.observed,
                threshold: f.threshold,
            })
            .collect(),
    })
}

/// Checks a verdict against the host's limits and its own consistency.
fn verdict_from_wit(verdict: wit::Verdict) -> Result<Verdict, Fault> {
    let malformed = |why: String| Err(Fault::MalformedVerdict(why));
    if verdict.findings.len() > MAX_FINDINGS {
        return malformed(format!(
            "{} findings, more than the limit of {MAX_FINDINGS}",
            verdict.findings.len()
        ));
    }
    let decision = decision_from_wit(verdict.decision);
    let mut findings = Vec::with_capacity(verdict.findings.len());
    for (i, f) in verdict.findings.into_iter().enumerate() {
        let texts = [
            Some(&f.check),
            Some(&f.message),
            f.observed.as_ref(),
            f.threshold.as_ref(),
        ];
        if let Some(long) = texts
            .into_iter()
            .flatten()
            .find(|t| t.len() > MAX_TEXT_BYTES)
        {
            return malformed(format!(
                "finding {i} has a text of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
                long.len()
            ));
        }
        if f.check.is_empty() {
            return malformed(format!("finding {i} has an empty check id"));
        }
        let finding = Finding {
            check: f.check,
            decision: decision_from_wit(f.decision),
            message: f.message,
            observed: f.observed,
            threshold: f.threshold,
        };
        if finding.decision > decision {
            return malformed(format!(
                "its decision is {decision} but check '{}' says {}",
                finding.check, finding.decision
            ));
        }
        findings.push(finding);
    }
    if verdict.summary.len() > MAX_TEXT_BYTES {
        return malformed(format!(
            "a summary of {} bytes, more than the limit of {MAX_TEXT_BYTES}",
            verdict.summary.len()
        ));
    }
    Ok(Verdict {
        decision,
        summary: verdict.summary,
        findings,
    })
}

/// Cuts a policy's text to [`MAX_TEXT_BYTES`], on a character boundary.
pub(super) fn truncate(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_is_the_wit_files_package() {
        let wit = include_str!("../../../policies/sdk/wit/policy.wit");
        assert!(
            wit.contains(&format!("\npackage {CONTRACT};\n")),
            "{CONTRACT}"
        );
    }

    fn finding(check: &str, decision: wit::Decision) -> wit::Finding {
        wit::Finding {
            check: check.into(),
            decision,
            message: "m".into(),
            observed: None,
            threshold: None,
        }
    }

    #[test]
    fn verdicts_must_be_consistent_and_bounded() {
        let lenient = wit::Verdict {
            decision: wit::Decision::Allow,
            summary: "fine".into(),
            findings: vec![finding("error-rate", wit::Decision::Rollback)],
        };
        assert_eq!(
            verdict_from_wit(lenient),
            Err(Fault::MalformedVerdict(
                "its decision is allow but check 'error-rate' says rollback".into()
            ))
        );
        let many = wit::Verdict {
            decision: wit::Decision::Deny,
            summary: "s".into(),
            findings: (0..=MAX_FINDINGS)
                .map(|_| finding("x", wit::Decision::Deny))
                .collect(),
        };
        assert!(
            matches!(verdict_from_wit(many), Err(Fault::MalformedVerdict(m)) if m.starts_with("1001 findings"))
        );
        let long = wit::Verdict {
            decision: wit::Decision::Deny,
            summary: "s".repeat(MAX_TEXT_BYTES + 1),
            findings: vec![],
        };
        assert!(matches!(
            verdict_from_wit(long),
            Err(Fault::MalformedVerdict(_))
        ));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(MAX_TEXT_BYTES));
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert_eq!(truncate("short".into()), "short");
    }
}
