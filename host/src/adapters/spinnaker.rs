//! Spinnaker, webhook stage with status polling.
//!
//! `POST /v1/spinnaker/{phase}` evaluates once and answers 202 with an
//! absolute `Location` (Orca calls the header's URL as it is) of
//! `/v1/spinnaker/evaluations/{id}`; every `GET` of it evaluates again with
//! fresh evidence. The id *is* the evaluation: the request, phase and
//! expiry, signed with a key the replicas share, so any replica answers any
//! status URL and none keeps state. A deny that can clear with time is
//! `RUNNING` (Spinnaker keeps polling); deny at preflight and rollback are
//! `TERMINAL`. A deny is never a 5xx or 429, which Spinnaker retries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use shipgate_policy::{Decision, Phase};

use crate::server::api::{ApiError, Body, Input, Request, phase_in_path, read_request};
use crate::server::state::AppState;
use crate::verdict::Evaluation;

/// The status Spinnaker reads with `statusJsonPath: $.status`.
pub fn status_of(phase: Phase, decision: Decision) -> &'static str {
    match (phase, decision) {
        (_, Decision::Allow) => "SUCCEEDED",
        (Phase::Preflight, Decision::Deny) | (_, Decision::Rollback) => "TERMINAL",
        (_, Decision::Deny) => "RUNNING",
    }
}

/// What an evaluation id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub phase: Phase,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    /// The request as first sent (a snapshot or a target).
    pub request: Value,
}

type HmacSha256 = Hmac<Sha256>;

/// `base64url(claims) "." base64url(hmac(key, first part))`.
pub fn sign(claims: &Claims, key: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims are JSON"));
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{body}.{tag}")
}

/// The claims of an id this server (or a replica with the same key)
/// issued and that has not expired. The tag is checked in constant time
/// before anything in the id is read.
pub fn verify(id: &str, key: &[u8], now: i64) -> Result<Claims, ApiError> {
    let unknown = || ApiError::NotFound(format!("no evaluation '{}'", shorten(id)));
    let (body, tag) = id.split_once('.').ok_or_else(unknown)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| unknown())?;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    mac.verify_slice(&tag).map_err(|_| unknown())?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(unknown)?;
    if now >= claims.expires {
        let expired = jiff::Timestamp::from_second(claims.expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        return Err(ApiError::NotFound(format!(
            "evaluation expired at {expired}; start a new one"
        )));
    }
    Ok(claims)
}

fn shorten(id: &str) -> String {
    match id.char_indices().nth(24) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_string(),
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(phase): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = phase_in_path(&phase).and_then(|phase| {
        let mut input = Input::from_request(read_request(body)?)?;
        // Polling starts when the stage starts: without a stage start in
        // the request, the evaluation's creation is the stage's start.
        let now = jiff::Timestamp::now();
        if let Input::Target(target) = &mut input
            && target.stage_started_at.is_none()
        {
            target.stage_started_at = Some(now.to_string());
        }
        Ok((phase, input, now.as_second()))
    });
    let (phase, input, now) = match request {
        Ok(request) => request,
        Err(error) => {
            state.rejected("spinnaker", &error);
            return error.into_response();
        }
    };
    let ttl = state.settings.evaluation_ttl;
    let claims = Claims {
        phase,
        created: now,
        expires: now.saturating_add(ttl.as_secs().min(i64::MAX as u64) as i64),
        request: input.to_json(),
    };
    let id = sign(&claims, &state.settings.evaluation_key);
    let location = format!(
        "{}/v1/spinnaker/evaluations/{id}",
        public_base(&state, &headers)
    );
    match state.decide("spinnaker", phase, input).await {
        Ok(evaluation) => {
            let body = answer(&id, &claims, &evaluation);
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response()
        }
        Err(error) => error.into_response(),
    }
}

pub async fn status(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let now = jiff::Timestamp::now().as_second();
    let claims = verify(&id, &state.settings.evaluation_key, now).and_then(|claims| {
        let request = Request::from_value(claims.request.clone());
        Ok((Input::from_request(request)?, claims))
    });
    let (input, claims) = match claims {
        Ok(found) => found,
        Err(error) => {
            state.rejected("spinnaker", &error);
            return error.into_response();
        }
    };
    match state.decide("spinnaker", claims.phase, input).await {
        Ok(evaluation) => Json(answer(&id, &claims, &evaluation)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn answer(id: &str, claims: &Claims, evaluation: &Evaluation) -> Value {
    json!({
        "id": id,
        "status": status_of(claims.phase, evaluation.decision),
        "decision": evaluation.decision,
        "summary": evaluation.summary,
        "expires_at": jiff::Timestamp::from_second(claims.expires).map(|t| t.to_string()).ok(),
        "evaluation": evaluation,
    })
}

/// Where status URLs point: `--public-url`, else this request's host.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = text("x-forwarded-proto").unwrap_or("http");
    let host = text("x-forwarded-host")
        .or_else(|| text("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            phase: Phase::Promotion,
            created: 1_000,
            expires: 2_000,
            request: json!({"service": "checkout"}),
        }
    }

    #[test]
    fn an_id_verifies_with_its_key_until_it_expires() {
        let id = sign(&claims(), b"replica key");
        assert_eq!(verify(&id, b"replica key", 1_500), Ok(claims()));
        let expired = verify(&id, b"replica key", 2_000).unwrap_err();
        assert!(expired.message().starts_with("evaluation expired at"));
    }

    #[test]
    fn forged_or_foreign_ids_are_unknown() {
        let id = sign(&claims(), b"replica key");
        assert!(matches!(
            verify(&id, b"other key", 1_500),
            Err(ApiError::NotFound(_))
        ));
        // Change the claims but keep the tag: the phase becomes "abort".
        let (_, tag) = id.split_once('.').unwrap();
        let mut forged = claims();
        forged.phase = Phase::Abort;
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged_id = format!("{forged_body}.{tag}");
        assert!(matches!(
            verify(&forged_id, b"replica key", 1_500),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            verify("nonsense", b"replica key", 0),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn statuses_follow_the_stage_semantics() {
        assert_eq!(status_of(Phase::Promotion, Decision::Allow), "SUCCEEDED");
        assert_eq!(status_of(Phase::Promotion, Decision::Deny), "RUNNING");
        assert_eq!(status_of(Phase::Preflight, Decision::Deny), "TERMINAL");
        assert_eq!(status_of(Phase::Abort, Decision::Rollback), "TERMINAL");
    }
}
