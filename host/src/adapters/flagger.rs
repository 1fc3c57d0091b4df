//! Flagger webhooks: `POST /v1/flagger/{hook}` with Flagger's payload.
//!
//! Flagger passes a hook on 200-202 only. Gating hooks answer 200 on allow
//! and 403 otherwise; the `rollout` hook is an abort check that fails (403)
//! only on rollback; the `rollback` hook is inverted: 200 means roll back
//! now. Flagger's payload names the canary and carries string metadata, so
//! the target comes from the metadata and the evidence from the gate's
//! sources.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use shipgate_policy::{Decision, Phase};

use super::{Answer, ApiError, Authentication, DecisionRequest, Input, Request};
use crate::decision::Evaluation;

pub(crate) const AUTHENTICATION: Authentication = Authentication::Bearer;

/// How shipgate answers one Flagger hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    /// Passes only on allow.
    Gate(Phase),
    /// The `rollout` hook: fails only on rollback.
    AbortCheck,
    /// The `rollback` hook: passes (200) when Flagger must roll back.
    Rollback,
    /// The `event` hook: acknowledged, not evaluated.
    Event,
}

const HOOKS: &str = "confirm-rollout, pre-rollout, confirm-traffic-increase, confirm-promotion, \
                     rollout, rollback, post-rollout, event";

impl Hook {
    /// The hook a URL names.
    pub(crate) fn from_name(name: &str) -> Result<Hook, ApiError> {
        Ok(match name {
            "confirm-rollout" | "pre-rollout" => Hook::Gate(Phase::Preflight),
            "confirm-traffic-increase" | "confirm-promotion" => Hook::Gate(Phase::Promotion),
            "post-rollout" => Hook::Gate(Phase::Verify),
            "rollout" => Hook::AbortCheck,
            "rollback" => Hook::Rollback,
            "event" => Hook::Event,
            _ => {
                return Err(ApiError::NotFound(format!(
                    "no Flagger hook '{name}' (hooks: {HOOKS})"
                )));
            }
        })
    }

    fn phase(self) -> Phase {
        match self {
            Hook::Gate(phase) => phase,
            Hook::AbortCheck | Hook::Rollback | Hook::Event => Phase::Abort,
        }
    }

    /// Whether Flagger should see this decision as the hook passing.
    pub(crate) fn passes(self, decision: Decision) -> bool {
        match self {
            Hook::Gate(_) => decision == Decision::Allow,
            Hook::AbortCheck => decision != Decision::Rollback,
            Hook::Rollback => decision == Decision::Rollback,
            Hook::Event => true,
        }
    }
}

/// Flagger's webhook payload.
#[derive(Debug, Deserialize)]
struct Payload {
    name: String,
    namespace: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The metadata keys shipgate reads; the rest of the target is derived.
const METADATA_KEYS: [&str; 8] = [
    "service",
    "environment",
    "deployment_id",
    "stable_hash",
    "canary_hash",
    "weight",
    "stage_index",
    "stage_started_at",
];

/// What a call of `hook` asks for: a decision, or (`event`) nothing.
pub(crate) fn request(hook: Hook, body: Request) -> Result<Option<DecisionRequest>, ApiError> {
    let input = target_of(body)?;
    Ok(match hook {
        Hook::Event => None,
        _ => Some(DecisionRequest {
            phase: hook.phase(),
            input,
        }),
    })
}

/// 200 when the hook passes, 403 when it does not; `event` is 202.
pub(crate) fn answer(hook: Hook, result: Result<Option<Evaluation>, ApiError>) -> Answer {
    match result {
        Ok(Some(evaluation)) => {
            let status = if hook.passes(evaluation.decision) {
                200
            } else {
                403
            };
            Answer::decision(status, evaluation)
        }
        Ok(None) => Answer::json(202, json!({"acknowledged": true})),
        Err(error) => Answer::refused(error),
    }
}

/// The target of a Flagger payload: the Canary's name is the service and
/// its workloads (`NAME-primary`, `NAME`) stand in for the hashes, unless
/// the metadata says otherwise.
fn target_of(request: Request) -> Result<Input, ApiError> {
    let payload: Payload = serde_json::from_value(Value::Object(request.fields))
        .map_err(|e| ApiError::BadRequest(format!("not a Flagger webhook payload: {e}")))?;
    if let Some(key) = payload
        .metadata
        .keys()
        .find(|k| !METADATA_KEYS.contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.{key}: not a key shipgate reads (keys: {})",
            METADATA_KEYS.join(", ")
        )));
    }
    let mut target: Map<String, Value> = payload
        .metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let defaults = [
        ("service", payload.name.clone()),
        ("namespace", payload.namespace),
        ("stable_hash", format!("{}-primary", payload.name)),
        ("canary_hash", payload.name),
    ];
    for (key, value) in defaults {
        target.entry(key).or_insert(Value::String(value));
    }
    Input::from_request(Request {
        snapshot: None,
        fields: target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_map_to_phases_and_pass_as_flagger_expects() {
        let gate = Hook::from_name("confirm-promotion").unwrap();
        assert_eq!(gate, Hook::Gate(Phase::Promotion));
        assert!(gate.passes(Decision::Allow));
        assert!(!gate.passes(Decision::Deny));
        let check = Hook::from_name("rollout").unwrap();
        assert!(check.passes(Decision::Deny));
        assert!(!check.passes(Decision::Rollback));
        let rollback = Hook::from_name("rollback").unwrap();
        assert!(rollback.passes(Decision::Rollback));
        assert!(!rollback.passes(Decision::Allow));
        assert_eq!(
            Hook::from_name("pre-rollout"),
            Ok(Hook::Gate(Phase::Preflight))
        );
        assert!(matches!(
            Hook::from_name("rollback-now"),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn the_canary_names_the_target_unless_the_metadata_says_otherwise() {
        let body = Request::parse(
            br#"{"name": "podinfo", "namespace": "test", "phase": "Progressing",
                 "metadata": {"stable_hash": "podinfo-v1"}}"#,
        )
        .unwrap();
        let asked = request(Hook::AbortCheck, body).unwrap().unwrap();
        assert_eq!(asked.phase, Phase::Abort);
        let Input::Target(target) = asked.input else {
            panic!("a target")
        };
        assert_eq!(target.service.as_deref(), Some("podinfo"));
        assert_eq!(target.namespace.as_deref(), Some("test"));
        assert_eq!(target.stable_hash.as_deref(), Some("podinfo-v1"));
        assert_eq!(target.canary_hash.as_deref(), Some("podinfo"));
    }

    #[test]
    fn events_are_acknowledged_without_a_decision() {
        let body = Request::parse(br#"{"name": "podinfo", "namespace": "test"}"#).unwrap();
        assert!(request(Hook::Event, body).unwrap().is_none());
        assert_eq!(answer(Hook::Event, Ok(None)).status, 202);
    }
}
