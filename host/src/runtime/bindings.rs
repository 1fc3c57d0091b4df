//! The contract's bindings (`wit/policy.wit`, and the files of contracts
//! 0.3.0 and 0.2.0 for the modules built for them) and the conversions
//! between their types
//! and the SDK's, checking what a policy returns against the host's limits
//! on the way in.

use shipgate_policy::{Bound, Decision, Finding, Phase, PolicyInfo, Unit, Verdict, wire};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::Fault;
use super::sandbox::HostState;

mod generated {
    wasmtime::component::bindgen!({ path: "../policies/sdk/wit", world: "policy" });
}

/// Contract 0.3.0: the same functions and types as the current contract
/// (its types are the current ones), and the snapshot in encoding version 2.
mod generated_0_3 {
    wasmtime::component::bindgen!({
        path: "contracts/0.3.0",
        world: "policy",
        with: { "shipgate:policy/types": super::generated::shipgate::policy::types },
    });
}

/// Contract 0.2.0: the same functions; findings without numbers, and the
/// snapshot in encoding version 1.
mod generated_0_2 {
    wasmtime::component::bindgen!({ path: "contracts/0.2.0", world: "policy" });
}

use generated::shipgate::policy::types as wit;
use generated_0_2::shipgate::policy::types as wit_0_2;

/// The contract this host speaks (the package of `wit/policy.wit`).
pub(crate) const CONTRACT: &str = env!("SHIPGATE_CONTRACT");

/// The older contracts this host still runs, as the versions their modules
/// import their types at, newest first.
pub(super) const OLDER_CONTRACTS: [&str; 2] = [CONTRACT_0_3, CONTRACT_0_2];
const CONTRACT_0_3: &str = "0.3.0";
const CONTRACT_0_2: &str = "0.2.0";

/// A policy compiled and linked, ready to instantiate, for either contract.
pub(super) enum PolicyPre {
    Current(generated::PolicyPre<HostState>),
    V0_3(generated_0_3::PolicyPre<HostState>),
    V0_2(generated_0_2::PolicyPre<HostState>),
}

/// One instance of a policy, for either contract.
pub(super) enum Policy {
    Current(generated::Policy),
    V0_3(generated_0_3::Policy),
    V0_2(generated_0_2::Policy),
}

impl PolicyPre {
    /// Checks that the component exports the world of the contract it was
    /// built for (`contract`: the version of its types import).
    pub(super) fn new(
        pre: InstancePre<HostState>,
        contract: Option<&str>,
    ) -> wasmtime::Result<Self> {
        Ok(match contract {
            Some(CONTRACT_0_3) => PolicyPre::V0_3(generated_0_3::PolicyPre::new(pre)?),
            Some(CONTRACT_0_2) => PolicyPre::V0_2(generated_0_2::PolicyPre::new(pre)?),
            _ => PolicyPre::Current(generated::PolicyPre::new(pre)?),
        })
    }

    pub(super) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Policy> {
        Ok(match self {
            PolicyPre::Current(pre) => Policy::Current(pre.instantiate(store)?),
            PolicyPre::V0_3(pre) => Policy::V0_3(pre.instantiate(store)?),
            PolicyPre::V0_2(pre) => Policy::V0_2(pre.instantiate(store)?),
        })
    }

    /// The snapshot encoding this policy reads.
    pub(super) fn wire_version(&self) -> u8 {
        match self {
            PolicyPre::Current(_) => wire::VERSION,
            PolicyPre::V0_3(_) => wire::VERSION_2,
            PolicyPre::V0_2(_) => wire::VERSION_1,
        }
    }
}

impl Policy {
    pub(super) fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<PolicyInfo> {
        Ok(match self {
            Policy::Current(p) => info_from_wit(p.call_describe(store)?),
            Policy::V0_3(p) => info_from_wit(p.call_describe(store)?),
            Policy::V0_2(p) => {
                let info = p.call_describe(store)?;
                info_from_wit(wit::PolicyInfo {
                    name: info.name,
                    version: info.version,
                    description: info.description,
                    phases: info.phases.into_iter().map(phase_from_0_2).collect(),
                })
            }
        })
    }

    pub(super) fn validate_config(
        &self,
        store: &mut Store<HostState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Policy::Current(p) => p.call_validate_config(store, config_json),
            Policy::V0_3(p) => p.call_validate_config(store, config_json),
            Policy::V0_2(p) => p.call_validate_config(store, config_json),
        }
    }

    /// Calls `evaluate` with `snapshot` in this policy's encoding
    /// ([`PolicyPre::wire_version`]).
    pub(super) fn evaluate(
        &self,
        store: &mut Store<HostState>,
        phase: Phase,
        snapshot: &[u8],
        config_json: &str,
    ) -> wasmtime::Result<Result<Verdict, Fault>> {
        let result = match self {
            Policy::Current(p) => {
                p.call_evaluate(store, phase_to_wit(phase), snapshot, config_json)?
            }
            Policy::V0_3(p) => {
                p.call_evaluate(store, phase_to_wit(phase), snapshot, config_json)?
            }
            Policy::V0_2(p) => p
                .call_evaluate(store, phase_to_0_2(phase), snapshot, config_json)?
                .map(verdict_from_0_2),
        };
        Ok(evaluation_from_wit(result))
    }
}

/// The most findings a verdict may carry.
pub(crate) const MAX_FINDINGS: usize = 1000;
/// The longest string a verdict may carry (summary, message, ...), in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 4096;

fn phase_to_wit(phase: Phase) -> wit::Phase {
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

fn phase_to_0_2(phase: Phase) -> wit_0_2::Phase {
    match phase {
        Phase::Preflight => wit_0_2::Phase::Preflight,
        Phase::Promotion => wit_0_2::Phase::Promotion,
        Phase::Abort => wit_0_2::Phase::Abort,
        Phase::Verify => wit_0_2::Phase::Verify,
    }
}

fn phase_from_0_2(phase: wit_0_2::Phase) -> wit::Phase {
    match phase {
        wit_0_2::Phase::Preflight => wit::Phase::Preflight,
        wit_0_2::Phase::Promotion => wit::Phase::Promotion,
        wit_0_2::Phase::Abort => wit::Phase::Abort,
        wit_0_2::Phase::Verify => wit::Phase::Verify,
    }
}

fn decision_from_0_2(decision: wit_0_2::Decision) -> wit::Decision {
    match decision {
        wit_0_2::Decision::Allow => wit::Decision::Allow,
        wit_0_2::Decision::Deny => wit::Decision::Deny,
        wit_0_2::Decision::Rollback => wit::Decision::Rollback,
    }
}

/// A 0.2.0 verdict as a current one: its findings have no numbers.
fn verdict_from_0_2(verdict: wit_0_2::Verdict) -> wit::Verdict {
    wit::Verdict {
        decision: decision_from_0_2(verdict.decision),
        summary: verdict.summary,
        findings: verdict
            .findings
            .into_iter()
            .map(|f| wit::Finding {
                check: f.check,
                decision: decision_from_0_2(f.decision),
                message: f.message,
                observed: f.observed,
                threshold: f.threshold,
                observed_value: None,
                threshold_value: None,
                baseline_value: None,
                unit: None,
                bound: None,
            })
            .collect(),
    }
}

fn unit_from_wit(unit: wit::Unit) -> Unit {
    match unit {
        wit::Unit::Percent => Unit::Percent,
        wit::Unit::Ms => Unit::Millis,
        wit::Unit::Ratio => Unit::Ratio,
        wit::Unit::Count => Unit::Count,
        wit::Unit::PerRequest => Unit::PerRequest,
        wit::Unit::Seconds => Unit::Seconds,
    }
}

#[cfg(any(test, feature = "fuzzing"))]
fn unit_to_wit(unit: Unit) -> wit::Unit {
    match unit {
        Unit::Percent => wit::Unit::Percent,
        Unit::Millis => wit::Unit::Ms,
        Unit::Ratio => wit::Unit::Ratio,
        Unit::Count => wit::Unit::Count,
        Unit::PerRequest => wit::Unit::PerRequest,
        Unit::Seconds => wit::Unit::Seconds,
    }
}

fn decision_from_wit(decision: wit::Decision) -> Decision {
    match decision {
        wit::Decision::Allow => Decision::Allow,
        wit::Decision::Deny => Decision::Deny,
        wit::Decision::Rollback => Decision::Rollback,
    }
}

fn info_from_wit(info: wit::PolicyInfo) -> PolicyInfo {
    PolicyInfo {
        name: truncate(info.name),
        version: truncate(info.version),
        description: truncate(info.description),
        phases: info.phases.into_iter().map(phase_from_wit).collect(),
    }
}

/// What `evaluate` returned, as the host takes it: a checked verdict, or the
/// policy's own error as its fault.
fn evaluation_from_wit(result: Result<wit::Verdict, String>) -> Result<Verdict, Fault> {
    match result {
        Ok(verdict) => verdict_from_wit(verdict),
        Err(message) => Err(Fault::PolicyError(truncate(message))),
    }
}

/// The host's check of a verdict given in the SDK's types: what the host
/// makes of that verdict when a policy returns it (the fuzzers' oracle).
#[cfg(any(test, feature = "fuzzing"))]
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
                observed_value: f.observed_value,
                threshold_value: f.threshold_value,
                baseline_value: f.baseline_value,
                unit: f.unit.map(unit_to_wit),
                bound: f.bound.map(|b| match b {
                    Bound::AtMost => wit::Bound::AtMost,
                    Bound::AtLeast => wit::Bound::AtLeast,
                }),
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
        let numbers = [f.observed_value, f.threshold_value, f.baseline_value];
        if numbers.into_iter().flatten().any(|n| !n.is_finite()) {
            return malformed(format!(
                "finding {i} ('{}') has a number that is not finite",
                f.check
            ));
        }
        let finding = Finding {
            check: f.check,
            decision: decision_from_wit(f.decision),
            message: f.message,
            observed: f.observed,
            threshold: f.threshold,
            observed_value: f.observed_value,
            threshold_value: f.threshold_value,
            baseline_value: f.baseline_value,
            unit: f.unit.map(unit_from_wit),
            bound: f.bound.map(|b| match b {
                wit::Bound::AtMost => Bound::AtMost,
                wit::Bound::AtLeast => Bound::AtLeast,
            }),
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
pub(super) fn truncate(text: String) -> String {
    // The ellipsis comes on top of the limit, as it always has.
    match crate::text::clip(
        &text,
        crate::text::Limit::Bytes(MAX_TEXT_BYTES + '…'.len_utf8()),
    ) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
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
            observed_value: None,
            threshold_value: None,
            baseline_value: None,
            unit: None,
            bound: None,
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
    fn numbers_must_be_finite() {
        let set: [fn(&mut wit::Finding, f64); 3] = [
            |f, v| f.observed_value = Some(v),
            |f, v| f.threshold_value = Some(v),
            |f, v| f.baseline_value = Some(v),
        ];
        for (field, value) in set
            .iter()
            .flat_map(|s| [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(|v| (s, v)))
        {
            let mut bad = finding("error-rate", wit::Decision::Deny);
            field(&mut bad, value);
            let verdict = wit::Verdict {
                decision: wit::Decision::Deny,
                summary: "s".into(),
                findings: vec![bad],
            };
            assert_eq!(
                verdict_from_wit(verdict),
                Err(Fault::MalformedVerdict(
                    "finding 0 ('error-rate') has a number that is not finite".into()
                )),
                "{value}"
            );
        }
        let mut fine = finding("error-rate", wit::Decision::Deny);
        fine.observed_value = Some(0.041);
        fine.unit = Some(wit::Unit::Percent);
        fine.bound = Some(wit::Bound::AtMost);
        let verdict = wit::Verdict {
            decision: wit::Decision::Deny,
            summary: "s".into(),
            findings: vec![fine],
        };
        let checked = verdict_from_wit(verdict).unwrap();
        assert_eq!(checked.findings[0].bound, Some(Bound::AtMost));
        assert_eq!(checked.findings[0].unit, Some(Unit::Percent));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(MAX_TEXT_BYTES));
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert_eq!(truncate("short".into()), "short");
    }
}
