//! The wasm-only glue between the WIT bindings and the SDK's plain types.

pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "shipgate_policy::component::bindings",
    });
}

use crate::Policy;
use bindings::shipgate::policy::types as wit;

pub use bindings::Guest;
pub use wit::{Phase, PolicyInfo, Verdict};

fn phase_from_wit(phase: wit::Phase) -> crate::Phase {
    match phase {
        wit::Phase::Preflight => crate::Phase::Preflight,
        wit::Phase::Promotion => crate::Phase::Promotion,
        wit::Phase::Abort => crate::Phase::Abort,
        wit::Phase::Verify => crate::Phase::Verify,
    }
}

fn phase_to_wit(phase: crate::Phase) -> wit::Phase {
    match phase {
        crate::Phase::Preflight => wit::Phase::Preflight,
        crate::Phase::Promotion => wit::Phase::Promotion,
        crate::Phase::Abort => wit::Phase::Abort,
        crate::Phase::Verify => wit::Phase::Verify,
    }
}

fn decision_to_wit(decision: crate::Decision) -> wit::Decision {
    match decision {
        crate::Decision::Allow => wit::Decision::Allow,
        crate::Decision::Deny => wit::Decision::Deny,
        crate::Decision::Rollback => wit::Decision::Rollback,
    }
}

fn unit_to_wit(unit: crate::Unit) -> wit::Unit {
    match unit {
        crate::Unit::Percent => wit::Unit::Percent,
        crate::Unit::Millis => wit::Unit::Ms,
        crate::Unit::Ratio => wit::Unit::Ratio,
        crate::Unit::Count => wit::Unit::Count,
        crate::Unit::PerRequest => wit::Unit::PerRequest,
        crate::Unit::Seconds => wit::Unit::Seconds,
    }
}

pub fn describe<P: Policy>() -> PolicyInfo {
    let info = P::info();
    PolicyInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        phases: info.phases.into_iter().map(phase_to_wit).collect(),
    }
}

pub fn evaluate<P: Policy>(phase: Phase, snapshot: &[u8], config: &str) -> Result<Verdict, String> {
    let verdict = crate::run_evaluate::<P>(phase_from_wit(phase), snapshot, config)?;
    Ok(Verdict {
        decision: decision_to_wit(verdict.decision),
        summary: verdict.summary,
        findings: verdict
            .findings
            .into_iter()
            .map(|f| wit::Finding {
                check: f.check,
                decision: decision_to_wit(f.decision),
                message: f.message,
                observed: f.observed,
                threshold: f.threshold,
                observed_value: f.observed_value,
                threshold_value: f.threshold_value,
                baseline_value: f.baseline_value,
                unit: f.unit.map(unit_to_wit),
                bound: f.bound.map(|b| match b {
                    crate::Bound::AtMost => wit::Bound::AtMost,
                    crate::Bound::AtLeast => wit::Bound::AtLeast,
                }),
            })
            .collect(),
    })
}
