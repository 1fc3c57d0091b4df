//! Flagger webhooks: `POST /v1/flagger/{hook}` with Flagger's payload.
//!
//! Flagger passes a hook on 200-202 only. Gating hooks answer 200 on allow
//! and 403 otherwise; the `rollout` hook is an abort check that fails (403)
//! only on rollback; the `rollback` hook is inverted: 200 means roll back
//! now. Flagger's payload names the canary and carries string metadata, so
//! the target comes from the metadata and the evidence from the gate's
//! sources.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use shipgate_policy::{Decision, Phase};

use crate::server::api::{ApiError, Body, Input, Request, read_request};
use crate::server::state::AppState;

/// How shipgate answers one Flagger hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Passes only on allow.
    Gate(Phase),
    /// The `rollout` hook: fails only on rollback.
    AbortCheck,
    /// The `rollback` hook: passes (200) when Flagger must roll back.
    Rollback,
    /// The `event` hook: acknowledged, not evaluated.
    Event,
}

impl Hook {
    pub fn from_name(name: &str) -> Option<Hook> {
        Some(match name {
            "confirm-rollout" | "pre-rollout" => Hook::Gate(Phase::Preflight),
            "confirm-traffic-increase" | "confirm-promotion" => Hook::Gate(Phase::Promotion),
            "post-rollout" => Hook::Gate(Phase::Verify),
            "rollout" => Hook::AbortCheck,
            "rollback" => Hook::Rollback,
            "event" => Hook::Event,
            _ => return None,
        })
    }

    fn phase(self) -> Phase {
        match self {
            Hook::Gate(phase) => phase,
            Hook::AbortCheck | Hook::Rollback | Hook::Event => Phase::Abort,
        }
    }

    /// Whether Flagger should see this decision as the hook passing.
    pub fn passes(self, decision: Decision) -> bool {
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

const HOOKS: &str = "confirm-rollout, pre-rollout, confirm-traffic-increase, confirm-promotion, \
                     rollout, rollback, post-rollout, event";

pub async fn hook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let Some(hook) = Hook::from_name(&name) else {
        let error = ApiError::NotFound(format!("no Flagger hook '{name}' (hooks: {HOOKS})"));
        state.rejected("flagger", &error);
        return error.into_response();
    };
    let input = read_request(body).and_then(target_of);
    let input = match input {
        Ok(input) => input,
        Err(error) => {
            state.rejected("flagger", &error);
            return error.into_response();
        }
    };
    if hook == Hook::Event {
        tracing::info!(hook = %name, "flagger event");
        return (StatusCode::ACCEPTED, Json(json!({"acknowledged": true}))).into_response();
    }
    match state.decide("flagger", hook.phase(), input).await {
        Ok(evaluation) => {
            let status = if hook.passes(evaluation.decision) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (status, Json(evaluation)).into_response()
        }
        Err(error) => error.into_response(),
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
            Some(Hook::Gate(Phase::Preflight))
        );
        assert_eq!(Hook::from_name("rollback-now"), None);
    }
}
