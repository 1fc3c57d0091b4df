//! Spinnaker, webhook stage with status polling.
//!
//! `POST /v1/spinnaker/{phase}` evaluates once and answers 202 with an
//! absolute `Location` (Orca calls the header's URL as it is) of
//! `/v1/spinnaker/evaluations/{id}`. The id *is* the evaluation, signed
//! with a key the replicas share, so any replica answers any status URL and
//! none keeps state; it stays small (a few hundred bytes to about 2 KB) for
//! URLs and proxies:
//!
//! - for a **target**, it carries the target: every `GET` decides again with
//!   fresh evidence, so a deny that clears with time is `RUNNING` (Spinnaker
//!   keeps polling); deny at preflight and rollback are `TERMINAL`;
//! - for a full **snapshot**, fixed evidence, it carries the decision
//!   itself: polling cannot change it, so only allow is `SUCCEEDED` and any
//!   other decision is `TERMINAL` at once, rather than a hold polled until
//!   the stage times out.
//!
//! A deny is never a 5xx or 429, which Spinnaker retries.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use shipgate_policy::{Decision, Phase};

use super::{
    Adapter, Answer, ApiError, Authentication, Custom, Endpoint, Method, Request, Route, input,
    phase_in_path,
};
use crate::decision::Evaluation;
use crate::service::{DecisionRequest, Input};
use crate::text::{Limit, clip};

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "spinnaker",
    authentication: Authentication::Bearer,
    routes: &[
        Route {
            method: Method::Post,
            path: "/v1/spinnaker/{phase}",
            endpoint: Endpoint::Custom(Custom::SpinnakerStart),
        },
        Route {
            method: Method::Get,
            path: "/v1/spinnaker/evaluations/{id}",
            endpoint: Endpoint::Custom(Custom::SpinnakerPoll),
        },
    ],
    opt_in: false,
};

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
    /// Whether `X-Forwarded-Proto` and `X-Forwarded-Host` name that host:
    /// only behind a proxy that sets them itself. Otherwise whoever can add
    /// a header to the request (a pipeline's custom headers) would choose
    /// where Orca sends its polls, credentials included.
    pub(crate) trust_forwarded: bool,
}

/// The status Spinnaker reads with `statusJsonPath: $.status`.
pub(crate) fn status_of(phase: Phase, decision: Decision) -> &'static str {
    match (phase, decision) {
        (_, Decision::Allow) => "SUCCEEDED",
        (Phase::Preflight, Decision::Deny) | (_, Decision::Rollback) => "TERMINAL",
        (_, Decision::Deny) => "RUNNING",
    }
}

/// The status of a decision on fixed evidence, which polling cannot change.
fn fixed_status(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "SUCCEEDED",
        Decision::Deny | Decision::Rollback => "TERMINAL",
    }
}

/// What an evaluation id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) phase: Phase,
    /// Unix seconds.
    pub(crate) created: i64,
    pub(crate) expires: i64,
    #[serde(flatten)]
    pub(crate) subject: Subject,
}

/// What a poll of an evaluation answers from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Subject {
    /// A target, decided again at every poll.
    Target(Value),
    /// The decision on a fixed snapshot.
    Decided(Decided),
}

/// A decision as an id keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Decided {
    pub(crate) decision: Decision,
    /// At most [`MAX_SUMMARY_BYTES`].
    pub(crate) summary: String,
    pub(crate) decision_id: String,
}

/// The longest summary an id carries: ids stay far below the 8 KB proxies
/// and HTTP servers accept in a request line.
const MAX_SUMMARY_BYTES: usize = 1024;

/// A started evaluation: the decision to make now, and the ticket its id is
/// issued from once that decision is made.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub(crate) request: DecisionRequest,
    pub(crate) ticket: Ticket,
}

/// What an evaluation's id will say, but for the first decision.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    phase: Phase,
    created: i64,
    expires: i64,
    /// The target to decide again at each poll; `None` for a snapshot.
    target: Option<Value>,
}

/// What a poll asks for.
#[derive(Debug, Clone)]
pub(crate) enum Poll {
    /// Decide again, with fresh evidence.
    Decide(Box<DecisionRequest>),
    /// Answer the decision the id carries.
    Decided,
}

/// Starts an evaluation of `phase` (from the URL) at `now`.
pub(crate) fn start(
    settings: &Settings,
    phase: &str,
    body: Result<Request, ApiError>,
    now: jiff::Timestamp,
) -> Result<Started, ApiError> {
    let phase = phase_in_path(phase)?;
    let mut input = input(body?)?;
    // Polling starts when the stage starts: without a stage start in the
    // request, the evaluation's creation is the stage's start.
    if let Input::Target(target) = &mut input
        && target.stage_started_at.is_none()
    {
        target.stage_started_at = Some(now.to_string());
    }
    let created = now.as_second();
    let ttl = settings.ttl.as_secs().min(i64::MAX as u64) as i64;
    let target = matches!(input, Input::Target(_)).then(|| input.to_json());
    Ok(Started {
        request: DecisionRequest { phase, input },
        ticket: Ticket {
            phase,
            created,
            expires: created.saturating_add(ttl),
            target,
        },
    })
}

/// The signed id of a started evaluation once its first decision is made,
/// and its claims.
pub(crate) fn issue(settings: &Settings, ticket: Ticket, first: &Evaluation) -> (String, Claims) {
    let subject = match ticket.target {
        Some(target) => Subject::Target(target),
        None => Subject::Decided(Decided {
            decision: first.decision,
            summary: cut(&first.summary, MAX_SUMMARY_BYTES),
            decision_id: first.decision_id.clone(),
        }),
    };
    let claims = Claims {
        phase: ticket.phase,
        created: ticket.created,
        expires: ticket.expires,
        subject,
    };
    (sign(&claims, &settings.key), claims)
}

/// The evaluation an id names, at `now`.
pub(crate) fn resume(
    settings: &Settings,
    id: &str,
    now: jiff::Timestamp,
) -> Result<(Claims, Poll), ApiError> {
    let claims = verify(id, &settings.key, now.as_second())?;
    let poll = match &claims.subject {
        Subject::Target(target) => Poll::Decide(Box::new(DecisionRequest {
            phase: claims.phase,
            input: input(Request::from_value(target.clone()))?,
        })),
        Subject::Decided(_) => Poll::Decided,
    };
    Ok((claims, poll))
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    clip(text, Limit::Bytes(max)).into_owned()
}

/// Where an evaluation's status is polled: `public_url`, else the request's
/// own host as `header` gives it (forwarded headers only when trusted).
pub(crate) fn status_url<'h>(
    settings: &Settings,
    id: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> String {
    let forwarded = |name: &str| header(name).filter(|_| settings.trust_forwarded);
    let base = match &settings.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let scheme = forwarded("x-forwarded-proto").unwrap_or("http");
            let host = forwarded("x-forwarded-host")
                .or_else(|| header("host"))
                .unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    };
    format!("{base}/v1/spinnaker/evaluations/{id}")
}

/// The status document of a decision just made: 202 with `Location` when
/// the evaluation starts, 200 on a poll. `$.status` is what Spinnaker
/// reads; `$.summary` is its progress message.
pub(crate) fn answer(
    id: &str,
    claims: &Claims,
    location: Option<String>,
    evaluation: Evaluation,
) -> Answer {
    let status = match claims.subject {
        Subject::Target(_) => status_of(claims.phase, evaluation.decision),
        Subject::Decided(_) => fixed_status(evaluation.decision),
    };
    let body = json!({
        "id": id,
        "status": status,
        "decision": evaluation.decision,
        "summary": evaluation.summary,
        "expires_at": expires_at(claims),
        "evaluation": evaluation,
    });
    let code = if location.is_some() { 202 } else { 200 };
    Answer {
        location,
        ..Answer::json(code, body)
    }
}

/// A poll of a decision on fixed evidence: the decision the id carries (the
/// whole record is in the first answer and the decision log).
pub(crate) fn answer_decided(id: &str, claims: &Claims) -> Answer {
    let Subject::Decided(decided) = &claims.subject else {
        return Answer::refused(ApiError::Internal("the evaluation has no decision".into()));
    };
    Answer::json(
        200,
        json!({
            "id": id,
            "status": fixed_status(decided.decision),
            "decision": decided.decision,
            "summary": decided.summary,
            "decision_id": decided.decision_id,
            "expires_at": expires_at(claims),
        }),
    )
}

fn expires_at(claims: &Claims) -> Option<String> {
    jiff::Timestamp::from_second(claims.expires)
        .map(|t| t.to_string())
        .ok()
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
    clip(id, Limit::Chars(25)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Body;

    fn claims() -> Claims {
        Claims {
            phase: Phase::Promotion,
            created: 1_000,
            expires: 2_000,
            subject: Subject::Target(json!({"service": "checkout"})),
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
            trust_forwarded: false,
        }
    }

    fn evaluation(decision: Decision, summary: &str) -> Evaluation {
        Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            evidence: vec![],
            decision_id: "d1".into(),
            phase: Phase::Promotion,
            decision,
            summary: summary.into(),
            policies: vec![],
            snapshot_sha256: "s".into(),
            gate: "g".into(),
            gate_sha256: "h".into(),
            evaluated_at: "2026-11-26T14:00:00Z".into(),
        }
    }

    #[test]
    fn a_target_evaluation_resumes_from_its_id_and_decides_again() {
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let body = Request::parse(br#"{"service": "checkout", "canary_hash": "b"}"#);
        let started = start(&settings(), "promotion", body, now).unwrap();
        let (id, claims) = issue(
            &settings(),
            started.ticket,
            &evaluation(Decision::Deny, "hold"),
        );
        // The stage started when the evaluation did.
        let Subject::Target(target) = &claims.subject else {
            panic!("a target")
        };
        assert_eq!(target["stage_started_at"], "2026-11-26T14:00:00Z");
        let later = now + jiff::SignedDuration::from_mins(5);
        let (resumed, poll) = resume(&settings(), &id, later).unwrap();
        assert_eq!(resumed, claims);
        assert!(matches!(poll, Poll::Decide(asked) if asked.phase == Phase::Promotion));
        let status = answer(&id, &claims, None, evaluation(Decision::Deny, "hold"));
        let Body::Json(body) = status.body else {
            panic!("JSON")
        };
        assert_eq!(body["status"], "RUNNING");
        let expired = now + jiff::SignedDuration::from_hours(2);
        assert!(resume(&settings(), &id, expired).is_err());
    }

    /// A snapshot is fixed evidence: its deny cannot clear by polling, so it
    /// ends the stage at once, and its id carries the decision, not the
    /// snapshot (whatever the snapshot's size).
    #[test]
    fn a_snapshot_evaluation_carries_its_decision_and_ends_at_once() {
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let large = format!(r#"{{"snapshot": {{"pad": "{}"}}}}"#, "x".repeat(1 << 20));
        let body = Request::parse(large.as_bytes());
        let started = start(&settings(), "verify", body, now).unwrap();
        let long_summary = "not verified yet ".repeat(500);
        let first = evaluation(Decision::Deny, &long_summary);
        let (id, claims) = issue(&settings(), started.ticket, &first);
        assert!(id.len() < 2048, "{} bytes", id.len());
        let (_, poll) = resume(&settings(), &id, now).unwrap();
        assert!(matches!(poll, Poll::Decided));
        let Body::Json(body) = answer_decided(&id, &claims).body else {
            panic!("JSON")
        };
        assert_eq!(body["status"], "TERMINAL");
        assert_eq!(body["decision"], "deny");
        assert_eq!(body["decision_id"], "d1");
        assert!(body["summary"].as_str().unwrap().len() <= MAX_SUMMARY_BYTES);
    }

    /// A target at the limit of every field still gives a URL well under the
    /// 8 KB request lines that proxies and HTTP servers accept.
    #[test]
    fn the_largest_target_id_stays_small() {
        let name = "a".repeat(253);
        let fields: Vec<String> = [
            "service",
            "namespace",
            "environment",
            "deployment_id",
            "stable_hash",
            "canary_hash",
        ]
        .iter()
        .map(|f| format!(r#""{f}": "{name}""#))
        .collect();
        let text = format!(
            r#"{{{}, "weight": 25, "stage_index": 2, "stage_started_at": "2026-11-26T14:00:00.123456789+00:00"}}"#,
            fields.join(", ")
        );
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let started = start(
            &settings(),
            "promotion",
            Request::parse(text.as_bytes()),
            now,
        )
        .unwrap();
        let (id, _) = issue(
            &settings(),
            started.ticket,
            &evaluation(Decision::Deny, "hold"),
        );
        let url = status_url(&settings(), &id, |_| Some("shipgate.shipgate.svc"));
        assert!(url.len() < 4096, "{} bytes", url.len());
    }

    #[test]
    fn status_urls_are_absolute() {
        let header = |name: &str| match name {
            "host" => Some("shipgate:8080"),
            "x-forwarded-host" => Some("evil.example"),
            "x-forwarded-proto" => Some("https"),
            _ => None,
        };
        // Forwarded headers are anyone's to send: ignored unless trusted.
        assert_eq!(
            status_url(&settings(), "ID", header),
            "http://shipgate:8080/v1/spinnaker/evaluations/ID"
        );
        let behind_a_proxy = Settings {
            trust_forwarded: true,
            ..settings()
        };
        assert_eq!(
            status_url(&behind_a_proxy, "ID", header),
            "https://evil.example/v1/spinnaker/evaluations/ID"
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
