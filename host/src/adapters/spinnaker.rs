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

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use shipgate_policy::{Decision, Phase};

use super::{Answer, ApiError, Authentication, DecisionRequest, Input, Request, phase_in_path};
use crate::decision::Evaluation;

pub(crate) const AUTHENTICATION: Authentication = Authentication::Bearer;

/// The Spinnaker adapter's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The key that authenticates evaluation ids; replicas share it.
    pub(crate) key: Vec<u8>,
    /// Whether that key is a random one for this process only (none given).
    pub(crate) key_is_random: bool,
    /// How long an evaluation answers its status URL.
    pub(crate) ttl: Duration,
    /// The base of absolute status URLs; from the request's host when unset.
    pub(crate) public_url: Option<String>,
}

/// The status Spinnaker reads with `statusJsonPath: $.status`.
pub(crate) fn status_of(phase: Phase, decision: Decision) -> &'static str {
    match (phase, decision) {
        (_, Decision::Allow) => "SUCCEEDED",
        (Phase::Preflight, Decision::Deny) | (_, Decision::Rollback) => "TERMINAL",
        (_, Decision::Deny) => "RUNNING",
    }
}

/// What an evaluation id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) phase: Phase,
    /// Unix seconds.
    pub(crate) created: i64,
    pub(crate) expires: i64,
    /// The request as first sent (a snapshot or a target).
    pub(crate) request: Value,
}

/// A started evaluation: its signed id, and the decision to make now.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub(crate) id: String,
    pub(crate) claims: Claims,
    pub(crate) request: DecisionRequest,
}

/// Starts an evaluation of `phase` (from the URL) at `now`.
pub(crate) fn start(
    settings: &Settings,
    phase: &str,
    body: Result<Request, ApiError>,
    now: jiff::Timestamp,
) -> Result<Started, ApiError> {
    let phase = phase_in_path(phase)?;
    let mut input = Input::from_request(body?)?;
    // Polling starts when the stage starts: without a stage start in the
    // request, the evaluation's creation is the stage's start.
    if let Input::Target(target) = &mut input
        && target.stage_started_at.is_none()
    {
        target.stage_started_at = Some(now.to_string());
    }
    let created = now.as_second();
    let ttl = settings.ttl.as_secs().min(i64::MAX as u64) as i64;
    let claims = Claims {
        phase,
        created,
        expires: created.saturating_add(ttl),
        request: input.to_json(),
    };
    Ok(Started {
        id: sign(&claims, &settings.key),
        claims,
        request: DecisionRequest { phase, input },
    })
}

/// The evaluation an id names, to decide again at `now`.
pub(crate) fn resume(
    settings: &Settings,
    id: &str,
    now: jiff::Timestamp,
) -> Result<(Claims, DecisionRequest), ApiError> {
    let claims = verify(id, &settings.key, now.as_second())?;
    let input = Input::from_request(Request::from_value(claims.request.clone()))?;
    let request = DecisionRequest {
        phase: claims.phase,
        input,
    };
    Ok((claims, request))
}

/// Where an evaluation's status is polled: `public_url`, else the request's
/// own host as `header` gives it.
pub(crate) fn status_url<'h>(
    settings: &Settings,
    id: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> String {
    let base = match &settings.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let scheme = header("x-forwarded-proto").unwrap_or("http");
            let host = header("x-forwarded-host")
                .or_else(|| header("host"))
                .unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    };
    format!("{base}/v1/spinnaker/evaluations/{id}")
}

/// The status document: 202 with `Location` when an evaluation starts, 200
/// on every poll.
pub(crate) fn answer(
    id: &str,
    claims: &Claims,
    location: Option<String>,
    result: Result<Evaluation, ApiError>,
) -> Answer {
    let evaluation = match result {
        Ok(evaluation) => evaluation,
        Err(error) => return Answer::refused(error),
    };
    let body = json!({
        "id": id,
        "status": status_of(claims.phase, evaluation.decision),
        "decision": evaluation.decision,
        "summary": evaluation.summary,
        "expires_at": jiff::Timestamp::from_second(claims.expires).map(|t| t.to_string()).ok(),
        "evaluation": evaluation,
    });
    let status = if location.is_some() { 202 } else { 200 };
    Answer {
        location,
        ..Answer::json(status, body)
    }
}

type HmacSha256 = Hmac<Sha256>;

/// `base64url(claims) "." base64url(hmac(key, first part))`.
fn sign(claims: &Claims, key: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims are JSON"));
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{body}.{tag}")
}

/// The claims of an id this server (or a replica with the same key)
/// issued and that has not expired. The tag is checked in constant time
/// before anything in the id is read.
fn verify(id: &str, key: &[u8], now: i64) -> Result<Claims, ApiError> {
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

    fn settings() -> Settings {
        Settings {
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
            key_is_random: false,
            ttl: Duration::from_secs(3600),
            public_url: None,
        }
    }

    #[test]
    fn a_started_evaluation_resumes_from_its_id_alone() {
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let body = Request::parse(br#"{"service": "checkout", "canary_hash": "b"}"#);
        let started = start(&settings(), "promotion", body, now).unwrap();
        // The stage started when the evaluation did.
        assert_eq!(
            started.claims.request["stage_started_at"],
            "2026-11-26T14:00:00Z"
        );
        let later = now + jiff::SignedDuration::from_mins(5);
        let (claims, resumed) = resume(&settings(), &started.id, later).unwrap();
        assert_eq!(claims, started.claims);
        assert_eq!(resumed.phase, Phase::Promotion);
        let expired = now + jiff::SignedDuration::from_hours(2);
        assert!(resume(&settings(), &started.id, expired).is_err());
    }

    #[test]
    fn status_urls_are_absolute() {
        let header = |name: &str| match name {
            "host" => Some("shipgate:8080"),
            _ => None,
        };
        assert_eq!(
            status_url(&settings(), "ID", header),
            "http://shipgate:8080/v1/spinnaker/evaluations/ID"
        );
        let public = Settings {
            public_url: Some("https://gate.example.com/".into()),
            ..settings()
        };
        assert_eq!(
            status_url(&public, "ID", header),
            "https://gate.example.com/v1/spinnaker/evaluations/ID"
        );
    }
}
