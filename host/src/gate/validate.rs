//! What a gate file must mean beyond its syntax: percentages that are
//! percentages, limits in range, unique policy names, pins that are digests,
//! no policy that may fail open. Errors name the key.

use std::collections::HashSet;

use shipgate_policy::snapshot::{Threshold, ThresholdRange};
use shipgate_policy::{Decision, Unit};

use super::file::GateFile;
use crate::modules::reference::ModuleKind;
use crate::runtime::MAX_MEMORY_MIB;

/// The largest `limits.max_module_mib`.
const MAX_MODULE_MIB: u64 = 256;

/// The longest a policy's `limits.timeout_ms` may be.
pub(crate) const MAX_TIMEOUT_MS: u64 = 60_000;

pub(super) fn validate(file: &GateFile) -> Result<(), String> {
    if file.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    rollout(file)?;
    let limits = &file.limits;
    if !(1..=MAX_TIMEOUT_MS).contains(&limits.timeout_ms) {
        return Err(format!(
            "limits.timeout_ms: {} is outside 1..={MAX_TIMEOUT_MS}",
            limits.timeout_ms
        ));
    }
    if !(1..=MAX_MODULE_MIB).contains(&limits.max_module_mib) {
        return Err(format!(
            "limits.max_module_mib: {} is outside 1..={MAX_MODULE_MIB}",
            limits.max_module_mib
        ));
    }
    if !(1..=MAX_MEMORY_MIB).contains(&limits.memory_mib) {
        return Err(format!(
            "limits.memory_mib: {} is outside 1..={MAX_MEMORY_MIB}",
            limits.memory_mib
        ));
    }
    file.sources.validate()?;
    policies(file)
}

fn rollout(file: &GateFile) -> Result<(), String> {
    for (i, stage) in file.rollout.stages.iter().enumerate() {
        if !(*stage > 0.0 && *stage <= 100.0) {
            return Err(format!(
                "rollout.stages[{i}]: {stage} is not a percentage in (0, 100]"
            ));
        }
    }
    if let Some(v) = file.rollout.min_stage_minutes
        && !(v >= 0.0 && v.is_finite())
    {
        return Err(format!(
            "rollout.min_stage_minutes: {v} must be a number >= 0"
        ));
    }
    for threshold in file.rollout.abort.declared() {
        let Threshold { key, value: v, .. } = &threshold;
        let ok = match threshold.range {
            ThresholdRange::Fraction => (0.0..=1.0).contains(v),
            ThresholdRange::NonNegative => *v >= 0.0 && v.is_finite(),
        };
        if ok {
            continue;
        }
        return Err(match (threshold.range, threshold.unit) {
            (ThresholdRange::Fraction, _) => {
                format!("rollout.abort.{key}: {v} is not a fraction in [0, 1] (1% is 0.01)")
            }
            (_, Unit::Millis) => {
                format!("rollout.abort.{key}: {v} must be a number of milliseconds >= 0")
            }
            _ => format!("rollout.abort.{key}: {v} must be a number >= 0"),
        });
    }
    Ok(())
}

fn policies(file: &GateFile) -> Result<(), String> {
    let mut names = HashSet::new();
    for (i, policy) in file.policies.iter().enumerate() {
        let at = format!("policy[{i}] ('{}')", policy.name);
        if policy.name.trim().is_empty() {
            return Err(format!("policy[{i}].name: must not be empty"));
        }
        if !names.insert(policy.name.as_str()) {
            return Err(format!("{at}: another policy has the same name"));
        }
        if policy.phases.is_empty() {
            return Err(format!("{at}: phases: list at least one phase"));
        }
        if policy.on_error == Some(Decision::Allow) {
            return Err(format!(
                "{at}: on_error = \"allow\" would let a broken policy pass; \
                 use mode = \"shadow\" for a policy that must not block"
            ));
        }
        if let Some(pin) = &policy.sha256
            && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "{at}: sha256: '{pin}' is not a hex sha256 (64 hex digits)"
            ));
        }
        let kind = policy.module.kind();
        if matches!(kind, ModuleKind::Url(_)) && policy.sha256.is_none() {
            return Err(format!(
                "{at}: sha256: a module named by URL needs its sha256 pin (what the URL serves can change)"
            ));
        }
        if policy.verify.is_some() && !matches!(kind, ModuleKind::Oci(_)) {
            return Err(format!(
                "{at}: verify: signatures are checked for modules from registries (oci://) only"
            ));
        }
    }
    Ok(())
}
