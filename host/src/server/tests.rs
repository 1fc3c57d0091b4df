//! The server's decide path and its refusals, driven through the router
//! without a port (the e2e tests drive a real process over loopback).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::routes::router;
use super::state::{AppState, Settings};
use crate::adapters::{ADAPTERS, Authentication, Method, spinnaker};

fn state(token: Option<&str>, max_pending: usize) -> Arc<AppState> {
    let settings = Settings {
        service: crate::service::tests::settings(max_pending),
        token: token.map(str::to_string),
        spinnaker: spinnaker::Settings {
            key: vec![7; 32],
            key_is_random: false,
            ttl: Duration::from_secs(60),
            public_url: None,
            trust_forwarded: false,
        },
        github: None,
        max_body_bytes: 1 << 20,
        max_judge_body_bytes: 1 << 20,
        shutdown_delay: Duration::ZERO,
        watch_interval: None,
        adapters: ADAPTERS.to_vec(),
        operations_listen: None,
        connections: super::listener::ConnectionLimits {
            max_connections: 64,
            max_per_peer: 16,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            lifetime: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(1),
        },
    };
    let service = crate::service::tests::service_on(4, settings.service.clone());
    Arc::new(AppState::new(settings, service))
}

fn example(name: &str) -> String {
    let path = format!(
        "{}/../examples/snapshots/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

async fn post(state: &Arc<AppState>, path: &str, body: String) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn rejected(state: &AppState, reason: &str) -> u64 {
    let needle = format!("shipgate_requests_rejected_total{{reason=\"{reason}\"}} ");
    state
        .service
        .metrics()
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_full_admission_queue_refuses_at_once_before_reading_the_body() {
    let state = state(None, 1);
    let _held = state.service.admit("generic").expect("the only permit");
    let body = json!({"phase": "abort", "snapshot": serde_json::from_str::<Value>(&example("abort-allow")).unwrap()});
    let (status, answer) = post(&state, "/v1/evaluate", body.to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(rejected(&state, "overloaded"), 1);
    // Argo's places are its own: the generic endpoint's burst leaves them.
    let argo = json!({"snapshot": serde_json::from_str::<Value>(&example("abort-allow")).unwrap()});
    let (status, answer) = post(&state, "/v1/argo/abort", argo.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
}

/// Authentication comes first: a caller without the token is refused for
/// what it is, and never takes one of the places the CD systems need.
#[tokio::test]
async fn a_request_that_does_not_authenticate_never_takes_a_place() {
    let state = state(Some("the-token"), 1);
    let _held = state.service.admit("generic").expect("the only permit");
    let (status, _) = post(&state, "/v1/evaluate", "{}".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(rejected(&state, "overloaded"), 0);
}

/// Argo answers even a body it cannot read with 200 and a decision, and
/// the refusal is counted like any other.
#[tokio::test]
async fn every_refusal_is_counted_once_whatever_the_adapter_answers() {
    let state = state(None, 8);
    let (status, body) = post(&state, "/v1/argo/abort", "not json".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["decision"], "deny");
    assert_eq!(rejected(&state, "bad_request"), 1);
    let (status, _) = post(&state, "/v1/argo/canary", "{}".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(rejected(&state, "not_found"), 1);
    let (status, _) = post(&state, "/v1/evaluate", json!({"phase": "x"}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(rejected(&state, "bad_request"), 2);
    let (status, _) = post(&state, "/v1/nowhere", "{}".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(rejected(&state, "not_found"), 2);
}

#[tokio::test]
async fn bearer_routes_refuse_a_missing_token() {
    let state = state(Some("s3cret"), 8);
    let body = json!({"phase": "abort", "snapshot": serde_json::from_str::<Value>(&example("abort-allow")).unwrap()});
    let (status, answer) = post(&state, "/v1/evaluate", body.to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("bearer token"));
    assert_eq!(rejected(&state, "unauthorized"), 1);
    let request = Request::post("/v1/evaluate")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Every route of every adapter in the table is served: a forgotten
/// registration is a failing test, never a silent 404.
#[tokio::test]
async fn every_route_of_the_adapter_table_is_mounted() {
    let state = state(None, 64);
    let mut checked = 0;
    for adapter in ADAPTERS {
        // GitHub's route needs the App's secret to check deliveries.
        if adapter.authentication == Authentication::GithubSignature {
            continue;
        }
        for route in adapter.routes {
            let path = route
                .path
                .replace("{phase}", "abort")
                .replace("{hook}", "rollout")
                .replace("{id}", "made-up");
            let request = match route.method {
                Method::Get => Request::get(&path).body(Body::empty()),
                Method::Post => Request::post(&path).body(Body::from("{}")),
            }
            .unwrap();
            let response = router(state.clone()).oneshot(request).await.unwrap();
            let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("no such endpoint"),
                "{} {path}: {text}",
                adapter.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} routes checked");
}
