//! Flagger webhooks: `POST /v1/flagger/{hook}` with Flagger's payload.
//!
//! Flagger passes a hook on 200-202 only. Gating hooks answer 200 on allow
//! and 403 otherwise; the `rollout` hook is an abort check that fails (403)
//! only on rollback; the `rollback` hook is inverted: 200 means roll back
//! now. Flagger's payload names the canary and carries string metadata, so
//! the target comes from the metadata and the evidence from the gate's
//! sources. The `event` hook is acknowledged whatever its metadata: Flagger
//! adds `eventMessage`, `eventType` and `timestamp` to it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use shipgate_policy::{Decision, Phase};

use super::{
    Adapter, Answer, ApiError, Authentication, Call as Invocation, Endpoint, Exchange, Method,
    Request, Route, input,
};
use crate::decision::Evaluation;
use crate::service::{DecisionRequest, Input};

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "flagger",
    authentication: Authentication::Bearer,
    routes: &[Route {
        method: Method::Post,
        path: "/v1/flagger/{hook}",
        endpoint: Endpoint::Decide(exchange),
    }],
    opt_in: false,
};

/// A webhook: decide the hook's phase and answer as Flagger reads it; an
/// event is acknowledged and logged.
fn exchange(invocation: Invocation) -> Result<Exchange, Answer> {
    let hook = Hook::from_name(invocation.parameter.as_deref().unwrap_or_default())
        .map_err(Answer::refused)?;
    let call = invocation
        .body
        .and_then(|body| request(hook, body))
        .map_err(|error| answer(hook, Err(error)))?;
    Ok(match call {
        Call::Decide(asked) => Exchange::Decide(
            asked,
            Box::new(move |result| answer(hook, result.map(Some))),
        ),
        Call::Event { canary, message } => Exchange::Acknowledge {
            answer: answer(hook, Ok(None)),
            note: format!("flagger event: {canary}: {message}"),
        },
    })
}

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
const METADATA_KEYS: [&str; 9] = [
    "target",
    "service",
    "environment",
    "deployment_id",
    "stable_hash",
    "canary_hash",
    "weight",
    "stage_index",
    "stage_started_at",
];

/// What a call of a hook asks for.
#[derive(Debug)]
pub(crate) enum Call {
    /// A decision.
    Decide(DecisionRequest),
    /// An event to record: `canary` (namespace/name) and Flagger's message.
    Event { canary: String, message: String },
}

/// What a call of `hook` asks for.
pub(crate) fn request(hook: Hook, body: Request) -> Result<Call, ApiError> {
    if hook == Hook::Event {
        let text = |key: &str| body.fields.get(key).and_then(Value::as_str).unwrap_or("?");
        let message = body
            .fields
            .get("metadata")
            .and_then(|m| m.get("eventMessage"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(Call::Event {
            canary: format!("{}/{}", text("namespace"), text("name")),
            message: message.to_string(),
        });
    }
    Ok(Call::Decide(DecisionRequest {
        phase: hook.phase(),
        input: target_of(body)?,
    }))
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

/// The target of a Flagger payload. Flagger names the workloads after the
/// Canary's `targetRef.name` (`TARGET-primary` for the stable version,
/// `TARGET` for the canary, and its `flagger_canary_weight{workload}`
/// series the same way); the payload carries only the Canary's own name, so
/// `metadata.target` gives the target when the two differ. The target stands
/// in for the service and the hashes unless the metadata says otherwise.
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
    let mut metadata = payload.metadata;
    let workload = metadata.remove("target").unwrap_or(payload.name);
    let mut target: Map<String, Value> = metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let defaults = [
        ("service", workload.clone()),
        ("namespace", payload.namespace),
        ("stable_hash", format!("{workload}-primary")),
        ("canary_hash", workload),
    ];
    for (key, value) in defaults {
        target.entry(key).or_insert(Value::String(value));
    }
    input(Request {
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
        let Call::Decide(asked) = request(Hook::AbortCheck, body).unwrap() else {
            panic!("a decision")
        };
        assert_eq!(asked.phase, Phase::Abort);
        let Input::Target(target) = asked.input else {
            panic!("a target")
        };
        assert_eq!(target.service.as_deref(), Some("podinfo"));
        assert_eq!(target.namespace.as_deref(), Some("test"));
        assert_eq!(target.stable_hash.as_deref(), Some("podinfo-v1"));
        assert_eq!(target.canary_hash.as_deref(), Some("podinfo"));
    }

    /// The payload `CallEventWebhook` builds (flagger pkg/controller/webhook.go):
    /// its metadata always carries eventMessage, eventType and timestamp.
    #[test]
    fn events_are_acknowledged_whatever_their_metadata() {
        let body = Request::parse(
            br#"{"name": "podinfo", "namespace": "test", "phase": "Progressing",
                 "checksum": "6d6b9b7c8f", "metadata": {
                    "eventMessage": "Advance podinfo.test canary weight 10",
                    "eventType": "Normal", "timestamp": "1764165600123"}}"#,
        )
        .unwrap();
        let Call::Event { canary, message } = request(Hook::Event, body).unwrap() else {
            panic!("an event")
        };
        assert_eq!(canary, "test/podinfo");
        assert_eq!(message, "Advance podinfo.test canary weight 10");
        assert_eq!(answer(Hook::Event, Ok(None)).status, 202);
    }

    #[test]
    fn the_workloads_are_named_after_the_canarys_target() {
        let body = Request::parse(
            br#"{"name": "podinfo-canary", "namespace": "test", "phase": "Progressing",
                 "checksum": "x", "metadata": {"target": "podinfo"}}"#,
        )
        .unwrap();
        let Call::Decide(asked) = request(Hook::Gate(Phase::Promotion), body).unwrap() else {
            panic!("a decision")
        };
        let Input::Target(target) = asked.input else {
            panic!("a target")
        };
        assert_eq!(target.service.as_deref(), Some("podinfo"));
        assert_eq!(target.stable_hash.as_deref(), Some("podinfo-primary"));
        assert_eq!(target.canary_hash.as_deref(), Some("podinfo"));
    }
}
