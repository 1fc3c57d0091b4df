//! GitHub deployment protection rules, end to end: a signed
//! `deployment_protection_rule` delivery (the payload of
//! `tests/fixtures/github/`, shaped after GitHub's OpenAPI description of the
//! webhook, `webhook-deployment-protection-rule-requested`), and GitHub's
//! API played on loopback by a stand-in that checks what GitHub checks: the
//! App JWT (RS256, its signature, `iss`, `iat`, `exp` at most 10 minutes
//! ahead), the installation token on the review, the API headers, and the
//! review body against the documented schema (`environment_name` required,
//! `state` approved or rejected, or a comment-only status report; a comment
//! of at most 1024 characters). GitHub itself cannot be reached from here.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde_json::{Value, json};

use crate::server::{Server, eventually};
use crate::support::repo;

const APP_ID: &str = "123456";
const SECRET: &str = "webhook secret of the test App";
const TOKEN: &str = "ghs_installation_token_of_the_test";

/// What the stand-in saw and how it should behave.
#[derive(Default)]
struct Api {
    tokens: Vec<u64>,
    /// Review bodies GitHub accepted (204).
    reviews: Vec<Value>,
    /// Review attempts answered 502 before accepting, per the knob below.
    failed_reviews: usize,
    fail_first_reviews: usize,
    /// How long the review endpoint takes to answer.
    review_delay: std::time::Duration,
    /// Why a request would be refused by GitHub; the test fails on any.
    refusals: Vec<String>,
}

type Shared = Arc<Mutex<Api>>;

fn public_key() -> ring::signature::UnparsedPublicKey<Vec<u8>> {
    let pem =
        std::fs::read_to_string(repo().join("tests/fixtures/github/test-app-key.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pair = ring::signature::RsaKeyPair::from_der(&der).unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public().as_ref().to_vec(),
    )
}

fn api_headers(headers: &HeaderMap) -> Result<(), String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if get("accept") != "application/vnd.github+json" {
        return Err(format!("Accept is '{}'", get("accept")));
    }
    if get("x-github-api-version") != "2022-11-28" {
        return Err("no X-GitHub-Api-Version: 2022-11-28".into());
    }
    if get("user-agent").is_empty() {
        return Err("no User-Agent (GitHub refuses requests without one)".into());
    }
    Ok(())
}

/// GitHub's checks of an App JWT.
fn check_jwt(headers: &HeaderMap) -> Result<(), String> {
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("a JWT must come as Authorization: Bearer")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not a JWT".into());
    };
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    if decode(header)["alg"] != "RS256" {
        return Err("alg is not RS256".into());
    }
    let signed = format!("{header}.{claims}");
    public_key()
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .map_err(|_| "the JWT's signature is not the App key's")?;
    let claims = decode(claims);
    let now = jiff::Timestamp::now().as_second();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    if claims["iss"] != APP_ID {
        return Err(format!("iss is {}", claims["iss"]));
    }
    if iat > now || exp <= now || exp > now + 600 {
        return Err(format!("iat {iat} / exp {exp} around now {now}"));
    }
    Ok(())
}

/// The request body schema of "Review custom deployment protection rules
/// for a workflow run".
fn check_review(body: &Value) -> Result<(), String> {
    let object = body.as_object().ok_or("not an object")?;
    if let Some(key) = object
        .keys()
        .find(|k| !["environment_name", "state", "comment"].contains(&k.as_str()))
    {
        return Err(format!("unknown property {key}"));
    }
    if !body["environment_name"].is_string() {
        return Err("environment_name is required".into());
    }
    match body.get("state") {
        Some(state) if state != "approved" && state != "rejected" => {
            return Err(format!("state {state}"));
        }
        None if !body["comment"].is_string() => {
            return Err("a status report needs a comment".into());
        }
        _ => {}
    }
    if body["comment"]
        .as_str()
        .is_some_and(|c| c.chars().count() > 1024)
    {
        return Err("comment longer than 1024 characters".into());
    }
    Ok(())
}

async fn access_tokens(
    State(api): State<Shared>,
    Path(installation): Path<u64>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let mut api = api.lock().unwrap();
    if let Err(why) = api_headers(&headers).and_then(|()| check_jwt(&headers)) {
        api.refusals.push(format!("access_tokens: {why}"));
        return (StatusCode::UNAUTHORIZED, Json(json!({"message": why})));
    }
    api.tokens.push(installation);
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    (
        StatusCode::CREATED,
        Json(json!({"token": TOKEN, "expires_at": expires.to_string(),
                    "permissions": {"deployments": "write"}, "repository_selection": "all"})),
    )
}

async fn review(
    State(api): State<Shared>,
    Path((_owner, _repo, _run)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let delay = api.lock().unwrap().review_delay;
    tokio::time::sleep(delay).await;
    let mut api = api.lock().unwrap();
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let checked = api_headers(&headers).and_then(|()| check_review(&body));
    if let Err(why) = checked.and_then(|()| {
        authorized
            .then_some(())
            .ok_or("not the installation token".into())
    }) {
        api.refusals.push(format!("review: {why}"));
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    if api.failed_reviews < api.fail_first_reviews {
        api.failed_reviews += 1;
        return StatusCode::BAD_GATEWAY;
    }
    api.reviews.push(body);
    StatusCode::NO_CONTENT
}

/// GitHub's API on a loopback port, until the test ends.
fn stand_in(api: Shared) -> String {
    let app = Router::new()
        .route("/app/installations/{id}/access_tokens", post(access_tokens))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule",
            post(review),
        )
        .with_state(api);
    format!("http://{}", crate::server::serve_on_loopback(app))
}

struct Setup {
    _dir: tempfile::TempDir,
    facts: std::path::PathBuf,
    api: Shared,
    api_url: String,
    server: Server,
}

/// A server serving the test App, whose gate reads release facts, and
/// the stand-in it calls.
fn setup() -> Setup {
    setup_with(&[])
}

/// [`setup`], the server started with `extra` arguments too.
fn setup_with(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let api: Shared = Arc::default();
    let api_url = stand_in(api.clone());
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::create_dir_all(dir.path().join("facts/octo-org")).unwrap();
    let gate = dir.path().join("gate.toml");
    let mut text = std::fs::read_to_string(repo().join("examples/gate.toml")).unwrap();
    text.push_str(&format!(
        "\n[sources.facts]\npath = \"{}/facts/{{namespace}}/{{service}}.json\"\n",
        dir.path().display()
    ));
    std::fs::write(&gate, text).unwrap();
    let key = repo().join("tests/fixtures/github/test-app-key.pem");
    let server = Server::start(
        &gate,
        &[
            "--github-app-id",
            APP_ID,
            "--github-private-key-file",
            key.to_str().unwrap(),
            "--github-webhook-secret-file",
            secret.to_str().unwrap(),
            "--github-api-url",
            &api_url,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    Setup {
        facts: dir.path().join("facts/octo-org/hello-world.json"),
        _dir: dir,
        api,
        api_url,
        server,
    }
}

/// The release facts the pipeline wrote: the preflight checklist, with CI
/// on the commit GitHub is deploying.
fn write_ready_facts(path: &std::path::Path) {
    let mut facts = crate::server::release_facts();
    facts["ci"]["commit"] = "6dcb09b5b57875f334f61aebed695e2e4193db5e".into();
    facts["deployment"] = json!({"triggered_by": "ci", "changes_in_flight": []});
    std::fs::write(path, facts.to_string()).unwrap();
}

/// The delivery GitHub sends, with its callback on the stand-in.
fn delivery(api_url: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(
        repo().join("tests/fixtures/github/deployment_protection_rule.json"),
    )
    .unwrap();
    text.replace("https://api.github.com", api_url).into_bytes()
}

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn deliver(server: &Server, event: &str, body: &[u8], signature: Option<String>) -> (u16, Value) {
    let mut request = server
        .client()
        .post(server.url("/v1/github/deployment-protection"))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/044aadd")
        .header("x-github-event", event)
        .header("x-github-delivery", "0b989ba4-242f-11e5-81e1-c7b6966d2516")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// A deployment protection rule delivery signed with the App's secret,
/// as GitHub sends it.
fn deliver_signed(server: &Server, body: &[u8]) -> (u16, Value) {
    deliver(
        server,
        "deployment_protection_rule",
        body,
        Some(sign(body, SECRET)),
    )
}

fn reviews(api: &Shared) -> Vec<Value> {
    let api = api.lock().unwrap();
    assert!(
        api.refusals.is_empty(),
        "GitHub would refuse: {:?}",
        api.refusals
    );
    api.reviews.clone()
}

#[test]
fn a_ready_release_is_approved_through_the_callback() {
    let Setup {
        _dir,
        facts,
        api,
        api_url,
        server,
        ..
    } = setup();
    write_ready_facts(&facts);
    let body = delivery(&api_url);
    let (status, answer) = deliver_signed(&server, &body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["phase"], "preflight");
    eventually("the review", || !reviews(&api).is_empty());
    let review = &reviews(&api)[0];
    assert_eq!(review["environment_name"], "production");
    assert_eq!(review["state"], "approved", "{review}");
    assert!(
        review["comment"]
            .as_str()
            .unwrap()
            .starts_with("shipgate preflight: **allow**")
    );
    assert_eq!(api.lock().unwrap().tokens, [12345678]);
    let posted = "shipgate_github_reviews_total{state=\"approved\",posted=\"true\"}";
    eventually("the review to be counted", || server.metric(posted) == 1.0);
}

#[test]
fn a_release_without_its_facts_is_rejected_and_says_why() {
    let Setup {
        _dir,
        api,
        api_url,
        server,
        ..
    } = setup();
    let body = delivery(&api_url);
    let (status, _) = deliver_signed(&server, &body);
    assert_eq!(status, 202);
    eventually("the review", || !reviews(&api).is_empty());
    let review = &reviews(&api)[0];
    assert_eq!(review["state"], "rejected");
    let comment = review["comment"].as_str().unwrap();
    assert!(comment.contains("no such file"), "{review}");
    // Every failing check by name, not the first and a count.
    let failing = comment
        .split("Failing: ")
        .nth(1)
        .and_then(|rest| rest.split(".\n").next())
        .unwrap_or_else(|| panic!("the comment lists the failing checks: {comment}"));
    for check in [
        "preflight/ci-status",
        "preflight/rollback-plan",
        "preflight/on-call",
    ] {
        assert!(failing.contains(check), "{check} in {failing}");
    }
}

/// GitHub delivers a webhook again, or someone replays a signed one: the
/// run is reviewed once, on the facts as they were. A rule left pending by
/// a failed review can still be redelivered.
#[test]
fn a_replayed_delivery_does_not_review_a_reviewed_run_again() {
    let Setup {
        _dir,
        facts,
        api,
        api_url,
        server,
        ..
    } = setup();
    write_ready_facts(&facts);
    let body = delivery(&api_url);
    let signature = sign(&body, SECRET);
    let (status, _) = deliver(
        &server,
        "deployment_protection_rule",
        &body,
        Some(signature.clone()),
    );
    assert_eq!(status, 202);
    eventually("the review", || reviews(&api).len() == 1);
    // The facts change (CI went red) and the same delivery comes again.
    std::fs::remove_file(&facts).unwrap();
    for _ in 0..4 {
        let (status, answer) = deliver(
            &server,
            "deployment_protection_rule",
            &body,
            Some(signature.clone()),
        );
        assert_eq!(
            (status, answer["ignored"].as_str()),
            (202, Some("this run is reviewed already")),
            "{answer}"
        );
    }
    let posted = "shipgate_github_reviews_total{state=\"approved\",posted=\"true\"}";
    assert_eq!(server.metric(posted), 1.0);
    let reviewed = reviews(&api);
    assert_eq!(reviewed.len(), 1, "{reviewed:?}");
    assert_eq!(reviewed[0]["state"], "approved");
    assert_eq!(
        api.lock().unwrap().tokens.len(),
        1,
        "one installation token"
    );

    // The same run deploying to another environment, and a re-run of the
    // job (a new deployment), are reviews of their own.
    let text = String::from_utf8(body).unwrap();
    let mut payload: Value = serde_json::from_str(&text).unwrap();
    payload["environment"] = "staging".into();
    let staging = payload.to_string().into_bytes();
    payload["environment"] = "production".into();
    payload["deployment"]["id"] = 2.into();
    let rerun = payload.to_string().into_bytes();
    for body in [staging, rerun] {
        let signature = sign(&body, SECRET);
        let (status, answer) = deliver(
            &server,
            "deployment_protection_rule",
            &body,
            Some(signature),
        );
        assert_eq!(
            (status, answer["ignored"].as_str()),
            (202, None),
            "{answer}"
        );
    }
    eventually("two more reviews", || reviews(&api).len() == 3);
}

/// A delivery answered 202 just before SIGTERM is still reviewed: the
/// process waits for its review before it exits.
#[test]
fn a_review_in_flight_at_shutdown_is_finished() {
    let Setup {
        _dir,
        facts,
        api,
        api_url,
        mut server,
        ..
    } = setup_with(&["--shutdown-delay", "0s"]);
    write_ready_facts(&facts);
    api.lock().unwrap().review_delay = std::time::Duration::from_secs(1);
    let body = delivery(&api_url);
    let (status, _) = deliver_signed(&server, &body);
    assert_eq!(status, 202);
    eventually("the review to be on its way", || {
        !api.lock().unwrap().tokens.is_empty()
    });
    server.signal("TERM");
    assert!(server.wait().success());
    assert_eq!(reviews(&api).len(), 1, "posted before the exit");
}

/// Anyone can reach the webhook and send a body slowly: until its
/// signature is checked it holds none of the places decisions need. Four
/// stalled deliveries against --max-pending 2 leave decisions answered,
/// and are cut off within the webhook's own read deadline.
#[test]
fn slow_unsigned_deliveries_take_no_place_from_decisions() {
    use std::io::{Read, Write};
    let Setup { _dir, server, .. } = setup_with(&["--max-pending", "2"]);
    let address = server.url("").trim_start_matches("http://").to_string();
    let mut stalled: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream
                .write_all(
                    b"POST /v1/github/deployment-protection HTTP/1.1\r\nHost: shipgate\r\n\
                      Content-Type: application/json\r\nX-GitHub-Event: deployment_protection_rule\r\n\
                      Content-Length: 100000\r\n\r\n{\"action\"",
                )
                .unwrap();
            stream
        })
        .collect();
    for name in ["abort-allow", "abort-rollback"] {
        let (status, answer) = server.evaluate(name);
        assert_eq!(status, 200, "{answer}");
    }
    // Each is answered within the webhook's read deadline, not held open.
    for stream in &mut stalled {
        stream
            .set_read_timeout(Some(crate::server::DEADLINE))
            .unwrap();
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).unwrap();
        assert_eq!(&status_line, b"HTTP/1.1 503");
    }
}

/// An outsider holding webhook reads from one address gets its share (2),
/// not GitHub's: a delivery from another address is read and reviewed.
#[test]
fn one_address_cannot_hold_every_webhook_read() {
    use std::io::{Read, Write};
    let Setup {
        _dir,
        api,
        api_url,
        server,
        ..
    } = setup();
    let address: std::net::SocketAddr = server
        .url("")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let slow = || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(
                b"POST /v1/github/deployment-protection HTTP/1.1\r\nHost: shipgate\r\n\
                  Content-Type: application/json\r\nX-GitHub-Event: deployment_protection_rule\r\n\
                  Content-Length: 100000\r\n\r\n{\"action\"",
            )
            .unwrap();
        stream
    };
    let _held = [slow(), slow()];
    // Wait until the server reads them: a third is then over the share.
    let mut third = slow();
    eventually("the third to be turned away", || {
        let mut status = [0u8; 12];
        third
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        if third.read_exact(&mut status).is_ok() {
            assert_eq!(&status, b"HTTP/1.1 503");
            return true;
        }
        third = slow();
        false
    });
    // GitHub, from another address (127.0.0.2 is loopback too).
    let body = delivery(&api_url);
    let signature = sign(&body, SECRET);
    let head = format!(
        "POST /v1/github/deployment-protection HTTP/1.1\r\nHost: shipgate\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: deployment_protection_rule\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let request = [head.as_bytes(), &body].concat();
    let status = crate::server::status_from_another_address(address, &request);
    assert_eq!(status, "HTTP/1.1 202 Accepted");
    eventually("the review", || !reviews(&api).is_empty());
}

/// GitHub's environment names are free text (its schema types them as a
/// string): `Production EU` is reviewed under its own name.
#[test]
fn an_environment_named_in_free_text_is_reviewed_under_its_name() {
    let Setup {
        _dir,
        api,
        api_url,
        server,
        ..
    } = setup();
    let text = String::from_utf8(delivery(&api_url)).unwrap();
    let mut payload: Value = serde_json::from_str(&text).unwrap();
    payload["environment"] = "Production EU".into();
    let body = payload.to_string().into_bytes();
    let (status, answer) = deliver_signed(&server, &body);
    assert_eq!(status, 202, "{answer}");
    eventually("the review", || !reviews(&api).is_empty());
    assert_eq!(reviews(&api)[0]["environment_name"], "Production EU");
}

#[test]
fn a_delivery_not_signed_with_the_secret_is_refused() {
    let Setup {
        _dir,
        api,
        api_url,
        server,
        ..
    } = setup();
    let body = delivery(&api_url);
    for signature in [
        None,
        Some(sign(&body, "another secret")),
        Some("sha256=00".into()),
    ] {
        let (status, answer) = deliver(&server, "deployment_protection_rule", &body, signature);
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("X-Hub-Signature-256")
        );
    }
    let bad = "shipgate_requests_rejected_total{reason=\"bad_signature\"}";
    assert_eq!(server.metric(bad), 3.0);
    assert!(reviews(&api).is_empty());
    assert!(
        api.lock().unwrap().tokens.is_empty(),
        "no token for an unsigned delivery"
    );
}

#[test]
fn github_errors_are_retried_and_other_events_ignored() {
    let Setup {
        _dir,
        facts,
        api,
        api_url,
        server,
        ..
    } = setup();
    write_ready_facts(&facts);
    api.lock().unwrap().fail_first_reviews = 1;
    let body = delivery(&api_url);
    let (status, _) = deliver_signed(&server, &body);
    assert_eq!(status, 202);
    eventually("the review, after a retry", || !reviews(&api).is_empty());
    assert_eq!(api.lock().unwrap().failed_reviews, 1);
    assert_eq!(reviews(&api).len(), 1);
    let ping = br#"{"zen": "Design for failure.", "hook_id": 1}"#;
    let (status, answer) = deliver(&server, "ping", ping, Some(sign(ping, SECRET)));
    assert_eq!(
        (status, answer["ignored"].as_str()),
        (202, Some("event 'ping'"))
    );
}
