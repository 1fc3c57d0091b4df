//! The server's decide path and its refusals, driven through the router
//! without a port (the e2e tests drive a real process over loopback).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use shipgate_policy::{Decision, Phase};
use tower::ServiceExt;

use super::state::{AppState, Settings};
use super::{router, state::load_gate};
use crate::adapters::{ApiError, DecisionRequest, Input, spinnaker};
use crate::runtime::{Runtime, RuntimeConfig};

fn runtime(slots: u32) -> Arc<Runtime> {
    let config = RuntimeConfig {
        cache_dir: None,
        max_concurrent_instances: slots,
        ..Default::default()
    };
    Arc::new(Runtime::new(&config).unwrap())
}

fn state(token: Option<&str>, max_pending: usize) -> Arc<AppState> {
    state_on(runtime(4), token, max_pending)
}

fn state_on(runtime: Arc<Runtime>, token: Option<&str>, max_pending: usize) -> Arc<AppState> {
    let gate_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gate.toml");
    let settings = Settings {
        gate_path,
        token: token.map(str::to_string),
        spinnaker: spinnaker::Settings {
            key: vec![7; 32],
            key_is_random: false,
            ttl: Duration::from_secs(60),
            public_url: None,
        },
        github: None,
        request_timeout: Duration::from_secs(30),
        max_body_bytes: 1 << 20,
        max_pending,
        max_evaluating: 2,
        decision_log: None,
        decision_log_url: None,
        shutdown_delay: Duration::ZERO,
        watch_interval: None,
        adapters: vec!["generic", "argo", "spinnaker", "flagger", "github"],
        operations_listen: None,
        connections: super::listener::ConnectionLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(1),
        },
        store: None,
        require_pins: false,
        require_signatures: false,
    };
    let gate = load_gate(&runtime, &settings).unwrap();
    Arc::new(AppState::new(settings, runtime, gate))
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
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&needle)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_snapshot_is_decided_and_counted() {
    let state = state(None, 8);
    let request = DecisionRequest {
        phase: Phase::Abort,
        input: Input::Snapshot(example("abort-rollback")),
    };
    let evaluation = state.decide("generic", request).await.unwrap();
    assert_eq!(evaluation.decision, Decision::Rollback);
    assert!(state.metrics.encode().contains(
        "shipgate_decisions_total{adapter=\"generic\",phase=\"abort\",decision=\"rollback\"} 1"
    ));
}

#[tokio::test]
async fn a_full_admission_queue_refuses_at_once_before_reading_the_body() {
    let state = state(None, 1);
    let _held = state.admit().expect("the only permit");
    let body = json!({"phase": "abort", "snapshot": serde_json::from_str::<Value>(&example("abort-allow")).unwrap()});
    let (status, answer) = post(&state, "/v1/evaluate", body.to_string()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(rejected(&state, "overloaded"), 1);
}

#[tokio::test]
async fn an_invalid_snapshot_is_the_requests_fault() {
    let state = state(None, 8);
    let request = DecisionRequest {
        phase: Phase::Abort,
        input: Input::Snapshot("{\"schema_version\": 1}".into()),
    };
    let error = state.decide("generic", request).await.unwrap_err();
    assert_eq!(
        error,
        ApiError::BadRequest("snapshot: missing field `now` at line 1 column 21".into())
    );
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

/// A host out of instance slots has no verdict to give: the caller retries
/// (503), where a policy fault would have rolled a healthy canary back.
#[tokio::test]
async fn a_full_instance_pool_is_a_retry_never_a_verdict() {
    let runtime = runtime(1);
    let state = state_on(runtime.clone(), None, 8);
    let canary = crate::builtins::lookup("builtin:canary").unwrap();
    let module = runtime.load(canary.bytes).unwrap();
    let _only_slot = runtime
        .reused_instance(&module, crate::runtime::Limits::default())
        .unwrap();
    let request = DecisionRequest {
        phase: Phase::Abort,
        input: Input::Snapshot(example("abort-allow")),
    };
    assert_eq!(
        state.decide("generic", request).await.unwrap_err(),
        ApiError::Overloaded
    );
    // A reload cannot check the policies either: it keeps the gate it had.
    let before = state.gate().gate().sha256.clone();
    let error = state.reload().unwrap_err().to_string();
    assert!(error.contains("no free policy instance slot"), "{error}");
    assert_eq!(state.gate().gate().sha256, before);
    assert!(
        state
            .metrics
            .encode()
            .contains("shipgate_gate_reloads_total{result=\"error\"} 1")
    );
}
