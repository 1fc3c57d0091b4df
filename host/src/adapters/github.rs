//! GitHub deployment protection rules: a GitHub App's custom rule.
//!
//! GitHub sends the App a `deployment_protection_rule` webhook (action
//! `requested`) when a workflow job targets a protected environment, signed
//! with the App's webhook secret (`X-Hub-Signature-256: sha256=HMAC`). The
//! App answers later, by POSTing `{"environment_name", "state", "comment"}`
//! to the event's `deployment_callback_url` with an installation token (an
//! App JWT, RS256, exchanged at `POST /app/installations/{id}/access_tokens`).
//! GitHub wants the webhook answered within 10 seconds and never redelivers
//! on its own, so the delivery is acknowledged at once and the decision is
//! reported through the callback.
//!
//! This module maps the payload to a decision request and the decision to
//! the review GitHub takes, and builds the JWT; the server makes the calls.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use shipgate_policy::{Decision, Phase};

use super::{Adapter, Answer, ApiError, Authentication, Custom, Endpoint, Method, Request, Route};
use crate::decision::Evaluation;
use crate::gate::Mode;
use crate::service::{DecisionRequest, Input};
use crate::sources::{Target, as_name};
use crate::text::{Limit, clip};

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "github",
    authentication: Authentication::GithubSignature,
    routes: &[Route {
        method: Method::Post,
        path: "/v1/github/deployment-protection",
        endpoint: Endpoint::Custom(Custom::GithubProtectionRule),
    }],
    opt_in: false,
};

/// The header GitHub signs deliveries in.
pub(crate) const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The header naming the event.
pub(crate) const EVENT_HEADER: &str = "x-github-event";

/// The longest comment GitHub shows on a review.
const MAX_COMMENT_CHARS: usize = 1024;

/// The GitHub adapter's settings.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The App's id or client id: the JWT's issuer.
    pub(crate) app_id: String,
    /// The App's private key (RS256).
    pub(crate) key: std::sync::Arc<ring::signature::RsaKeyPair>,
    /// The webhook secret deliveries are signed with.
    pub(crate) webhook_secret: Vec<u8>,
    pub(crate) routing: Routing,
}

/// What reading a delivery needs (no credentials): where callbacks may go
/// and which phase each environment asks for.
#[derive(Debug, Clone)]
pub(crate) struct Routing {
    /// The REST API's base, `https://api.github.com` (GitHub Enterprise
    /// Server: `https://HOST/api/v3`). Callback URLs must start with it.
    pub(crate) api_url: String,
    /// The phase each environment asks for; others ask for `default_phase`.
    pub(crate) environments: BTreeMap<String, Phase>,
    pub(crate) default_phase: Phase,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_id", &self.app_id)
            .field("routing", &self.routing)
            .finish_non_exhaustive()
    }
}

/// Reads an App's private key as GitHub hands it out (PEM, PKCS#1 `RSA
/// PRIVATE KEY`, or PKCS#8 `PRIVATE KEY`).
pub(crate) fn read_key(pem: &str) -> Result<ring::signature::RsaKeyPair, String> {
    let body = |label: &str| {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = pem.find(&begin)? + begin.len();
        let stop = pem[start..].find(&end)? + start;
        let text: String = pem[start..stop].split_whitespace().collect();
        STANDARD.decode(text).ok()
    };
    if let Some(der) = body("RSA PRIVATE KEY") {
        return ring::signature::RsaKeyPair::from_der(&der)
            .map_err(|e| format!("not an RSA private key: {e}"));
    }
    if let Some(der) = body("PRIVATE KEY") {
        return ring::signature::RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("not an RSA private key: {e}"));
    }
    Err("no PEM RSA private key (-----BEGIN RSA PRIVATE KEY-----) in it".into())
}

type HmacSha256 = Hmac<Sha256>;

/// Whether `signature` (the header's value) is `sha256=` and the HMAC of
/// `body` with `secret`, compared in constant time.
pub(crate) fn signature_ok(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex_tag) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The App's JWT at `now` (Unix seconds): RS256, issued a minute early for
/// clock drift, valid nine minutes (GitHub allows ten).
pub(crate) fn app_jwt(settings: &Settings, now: i64) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({"iat": now - 60, "exp": now + 540, "iss": settings.app_id});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let mut signature = vec![0; settings.key.public().modulus_len()];
    settings
        .key
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "signing the App JWT failed".to_string())?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The parts of a `deployment_protection_rule` delivery shipgate reads.
#[derive(Debug, Deserialize)]
struct Payload {
    action: Option<String>,
    environment: Option<String>,
    deployment_callback_url: Option<String>,
    sha: Option<String>,
    deployment: Option<Deployment>,
    repository: Option<Repository>,
    installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    id: Option<u64>,
    sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    name: String,
    owner: Option<Owner>,
}

#[derive(Debug, Deserialize)]
struct Owner {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Installation {
    id: u64,
}

/// A protection rule to answer: where, for which environment, with whose
/// installation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Callback {
    pub(crate) url: String,
    pub(crate) environment: String,
    pub(crate) installation: u64,
    /// What one review answers: the run's callback, the environment and the
    /// deployment (a job re-run is a new deployment), so that a delivery
    /// replayed for it is known.
    pub(crate) review_key: String,
}

/// What a delivery asks for.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A decision to report to `callback`.
    Review(Box<DecisionRequest>, Callback),
    /// Nothing to decide (a ping, another event or action): acknowledged.
    Ignored(String),
}

/// Reads a (signature-checked) delivery of `event`.
pub(crate) fn request(
    routing: &Routing,
    event: Option<&str>,
    body: Request,
) -> Result<Delivery, ApiError> {
    let event = event.unwrap_or("");
    if event != "deployment_protection_rule" {
        return Ok(Delivery::Ignored(format!("event '{event}'")));
    }
    let payload: Payload = serde_json::from_value(Value::Object(body.fields)).map_err(|e| {
        ApiError::BadRequest(format!("not a deployment_protection_rule payload: {e}"))
    })?;
    let action = payload.action.as_deref().unwrap_or("");
    if action != "requested" {
        return Ok(Delivery::Ignored(format!("action '{action}'")));
    }
    let field = |name: &str| ApiError::BadRequest(format!("{name}: missing"));
    let environment = payload.environment.ok_or_else(|| field("environment"))?;
    let url = payload
        .deployment_callback_url
        .ok_or_else(|| field("deployment_callback_url"))?;
    let api = routing.api_url.trim_end_matches('/');
    if !url.starts_with(&format!("{api}/repos/")) {
        return Err(ApiError::BadRequest(format!(
            "deployment_callback_url: '{url}' is not on {api}; shipgate sends its token nowhere else"
        )));
    }
    let installation = payload
        .installation
        .ok_or_else(|| field("installation"))?
        .id;
    let repository = payload.repository.ok_or_else(|| field("repository"))?;
    let commit = payload
        .sha
        .or_else(|| payload.deployment.as_ref().and_then(|d| d.sha.clone()));
    let deployment_id = payload.deployment.as_ref().and_then(|d| d.id);
    let review_key = format!(
        "{url}\n{environment}\n{}",
        deployment_id.map_or_else(String::new, |id| id.to_string())
    );
    let target = Target {
        service: Some(repository.name),
        namespace: repository.owner.map(|o| o.login),
        // GitHub's names are free text; a target's are not.
        environment: Some(as_name(&environment)),
        deployment_id: deployment_id.map(|id| format!("github-{id}")),
        commit,
        ..Target::default()
    };
    let target = Target::from_json(serde_json::to_value(target).expect("targets are JSON"))
        .map_err(ApiError::BadRequest)?;
    let phase = routing
        .environments
        .get(&environment)
        .copied()
        .unwrap_or(routing.default_phase);
    let request = DecisionRequest {
        phase,
        input: Input::Target(target),
    };
    let callback = Callback {
        url,
        environment,
        installation,
        review_key,
    };
    Ok(Delivery::Review(Box::new(request), callback))
}

/// The delivery's acknowledgement: 202, the decision follows by callback.
pub(crate) fn acknowledge(delivery: &Delivery) -> Answer {
    let body = match delivery {
        Delivery::Review(request, callback) => json!({
            "accepted": true,
            "environment": callback.environment,
            "phase": request.phase,
        }),
        Delivery::Ignored(what) => json!({"accepted": true, "ignored": what}),
    };
    Answer::json(202, body)
}

/// A delivery for a run already reviewed, or being reviewed (a replay, or
/// GitHub delivering twice): acknowledged, and nothing more is done.
pub(crate) fn acknowledge_duplicate(callback: &Callback) -> Answer {
    Answer::json(
        202,
        json!({"accepted": true, "environment": callback.environment,
               "ignored": "this run is reviewed already"}),
    )
}

/// What GitHub's review endpoint takes (`environment_name` required; a
/// `state` approves or rejects; without one the comment is a status report
/// that leaves the rule pending).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Review {
    pub(crate) environment_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<&'static str>,
    pub(crate) comment: String,
}

/// The review for a decision: allow approves, deny and rollback reject. A
/// host fault is no verdict: it is reported without a state, so the rule
/// stays pending for a person (or a redelivery).
pub(crate) fn review(callback: &Callback, result: &Result<Evaluation, ApiError>) -> Review {
    let (state, comment) = match result {
        Ok(evaluation) => {
            let state = match evaluation.decision {
                Decision::Allow => "approved",
                Decision::Deny | Decision::Rollback => "rejected",
            };
            (Some(state), verdict_comment(evaluation))
        }
        Err(error) => (
            None,
            format!(
                "shipgate could not decide: {}. Redeliver the webhook to ask again.",
                error.message()
            ),
        ),
    };
    Review {
        environment_name: callback.environment.clone(),
        state,
        comment: cut_chars(&comment, MAX_COMMENT_CHARS),
    }
}

/// A verdict as a review comment: the decision, then every check that
/// failed by name (and every policy that failed closed) as long as the
/// comment has room, counting those it has none for, then the summary and
/// the failing checks' messages as they fit.
fn verdict_comment(evaluation: &Evaluation) -> String {
    let head = format!(
        "shipgate {}: **{}** (decision `{}`)",
        evaluation.phase, evaluation.decision, evaluation.decision_id
    );
    let mut failing = Vec::new();
    for policy in evaluation
        .policies
        .iter()
        .filter(|p| p.mode == Mode::Enforce)
    {
        if let Some(error) = &policy.error {
            failing.push((policy.name.clone(), error.clone()));
        }
        for finding in policy
            .findings
            .iter()
            .filter(|f| f.decision != Decision::Allow)
        {
            let check = format!("{}/{} ({})", policy.name, finding.check, finding.decision);
            failing.push((check, finding.message.clone()));
        }
    }
    if failing.is_empty() {
        return format!("{head}. {}", evaluation.summary);
    }
    let fits = |comment: &str, more: &str| {
        comment.chars().count() + more.chars().count() <= MAX_COMMENT_CHARS
    };
    let mut comment = format!("{head}. Failing:");
    // Room for the count of the names left out.
    const COUNT_ROOM: usize = 24;
    for (shown, (name, _)) in failing.iter().enumerate() {
        let left = failing.len() - shown - 1;
        let room = if left > 0 { COUNT_ROOM } else { 0 };
        let part = format!(" {name}{}", if left > 0 { "," } else { "." });
        if comment.chars().count() + part.chars().count() + room > MAX_COMMENT_CHARS {
            comment.push_str(&format!(" and {} more.", failing.len() - shown));
            break;
        }
        comment.push_str(&part);
    }
    let summary = format!("\n\n{}", evaluation.summary);
    if fits(&comment, &summary) {
        comment.push_str(&summary);
    }
    for (name, message) in &failing {
        let line = format!("\n- {name}: {message}");
        if !fits(&comment, &line) {
            break;
        }
        comment.push_str(&line);
    }
    comment
}

fn cut_chars(text: &str, max: usize) -> String {
    clip(text, Limit::Chars(max)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let pem = include_str!("../../../tests/fixtures/github/test-app-key.pem");
        Settings {
            app_id: "123456".into(),
            key: std::sync::Arc::new(read_key(pem).unwrap()),
            webhook_secret: b"It's a Secret to Everybody".to_vec(),
            routing: Routing {
                api_url: "https://api.github.com".into(),
                environments: BTreeMap::from([("canary".into(), Phase::Verify)]),
                default_phase: Phase::Preflight,
            },
        }
    }

    /// GitHub's own test vector (docs: "Validating webhook deliveries").
    #[test]
    fn signatures_are_checked_as_github_documents_them() {
        let secret = b"It's a Secret to Everybody";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_ok(secret, b"Hello, World!", Some(good)));
        assert!(!signature_ok(secret, b"Hello, World?", Some(good)));
        assert!(!signature_ok(
            b"another secret",
            b"Hello, World!",
            Some(good)
        ));
        assert!(!signature_ok(secret, b"Hello, World!", Some(&good[7..])));
        assert!(!signature_ok(secret, b"Hello, World!", None));
    }

    fn delivery() -> Request {
        let text = include_str!("../../../tests/fixtures/github/deployment_protection_rule.json");
        Request::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_requested_rule_asks_for_the_environments_phase_about_the_repository() {
        let Delivery::Review(request, callback) = request(
            &settings().routing,
            Some("deployment_protection_rule"),
            delivery(),
        )
        .unwrap() else {
            panic!("a review")
        };
        assert_eq!(request.phase, Phase::Preflight);
        let Input::Target(target) = &request.input else {
            panic!("a target")
        };
        assert_eq!(target.service.as_deref(), Some("hello-world"));
        assert_eq!(target.namespace.as_deref(), Some("octo-org"));
        assert_eq!(target.environment.as_deref(), Some("production"));
        assert_eq!(
            target.commit.as_deref(),
            Some("6dcb09b5b57875f334f61aebed695e2e4193db5e")
        );
        assert_eq!(callback.installation, 12345678);
        assert!(
            callback
                .url
                .ends_with("/actions/runs/1234567890/deployment_protection_rule")
        );
    }

    #[test]
    fn other_events_and_actions_are_acknowledged_and_ignored() {
        let ping = request(&settings().routing, Some("ping"), Request::default()).unwrap();
        assert!(matches!(ping, Delivery::Ignored(_)));
        assert_eq!(acknowledge(&ping).status, 202);
    }

    #[test]
    fn a_callback_off_the_api_is_refused() {
        let mut body = delivery();
        body.fields["deployment_callback_url"] = "https://evil.example/repos/x".into();
        let error = request(
            &settings().routing,
            Some("deployment_protection_rule"),
            body,
        )
        .unwrap_err();
        assert!(error.message().contains("is not on https://api.github.com"));
    }

    #[test]
    fn decisions_become_reviews_and_faults_stay_pending() {
        let callback = Callback {
            url: "u".into(),
            environment: "production".into(),
            installation: 1,
            review_key: "u\nproduction\n1".into(),
        };
        let evaluation = |decision| Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            evidence: vec![],
            decision_id: "d1".into(),
            phase: Phase::Preflight,
            decision,
            summary: "s".repeat(3000),
            policies: vec![],
            snapshot_sha256: String::new(),
            gate: "g".into(),
            gate_sha256: String::new(),
            evaluated_at: String::new(),
        };
        let approved = review(&callback, &Ok(evaluation(Decision::Allow)));
        assert_eq!(approved.state, Some("approved"));
        assert_eq!(approved.comment.chars().count(), MAX_COMMENT_CHARS);
        let rejected = review(&callback, &Ok(evaluation(Decision::Rollback)));
        assert_eq!(rejected.state, Some("rejected"));
        let pending = review(&callback, &Err(ApiError::Overloaded));
        assert_eq!(pending.state, None);
        let body = serde_json::to_value(&pending).unwrap();
        assert!(body.get("state").is_none(), "{body}");
    }

    #[test]
    fn a_rejection_names_the_failing_checks_first_and_counts_those_it_cannot() {
        let findings: Vec<shipgate_policy::Finding> = (0..200)
            .map(|i| {
                shipgate_policy::Finding::new(format!("check-{i:03}"), Decision::Deny, "missing")
            })
            .collect();
        let outcome = crate::decision::PolicyOutcome {
            name: "preflight".into(),
            module: "builtin:preflight".into(),
            module_sha256: None,
            mode: Mode::Enforce,
            decision: Decision::Deny,
            summary: String::new(),
            findings,
            duration_us: 0,
            error: None,
            log: vec![],
        };
        let evaluation = Evaluation {
            record_version: crate::decision::RECORD_VERSION,
            evidence: vec![],
            decision_id: "d1".into(),
            phase: Phase::Preflight,
            decision: Decision::Deny,
            summary: "s".repeat(3000),
            policies: vec![outcome],
            snapshot_sha256: String::new(),
            gate: "g".into(),
            gate_sha256: String::new(),
            evaluated_at: String::new(),
        };
        let comment = verdict_comment(&evaluation);
        assert!(comment.chars().count() <= MAX_COMMENT_CHARS, "{comment}");
        assert!(
            comment.contains("Failing: preflight/check-000 (deny), preflight/check-001 (deny),")
        );
        let shown = comment.matches("preflight/check-").count();
        assert!(
            comment.contains(&format!(" and {} more.", 200 - shown)),
            "{comment}"
        );
    }

    #[test]
    fn the_app_jwt_is_rs256_and_short_lived() {
        let jwt = app_jwt(&settings(), 1_800_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "123456");
        assert_eq!(claims["iat"], 1_800_000_000 - 60);
        assert_eq!(claims["exp"], 1_800_000_000 + 540);
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            settings().key.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(public.verify(signed.as_bytes(), &signature).is_ok());
    }
}
