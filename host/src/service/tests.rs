//! The decision service alone: no HTTP, no port.

use std::sync::Arc;
use std::time::Duration;

use shipgate_policy::{Decision, Phase};

use super::*;

fn runtime(slots: u32) -> Arc<Runtime> {
    crate::runtime::test_runtime(slots)
}

/// Settings serving the example gate.
pub(crate) fn settings(max_pending: usize) -> ServiceSettings {
    let gate_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gate.toml");
    ServiceSettings {
        gate_path,
        store: None,
        require_pins: false,
        require_signatures: false,
        trusted_keys: Vec::new(),
        request_timeout: Duration::from_secs(30),
        max_pending,
        max_evaluating: 2,
        max_judging: 1,
        decision_log: None,
        decision_log_url: None,
    }
}

/// The service on a runtime with `slots` instance slots.
pub(crate) fn service_on(slots: u32, settings: ServiceSettings) -> Service {
    let gate = read_gate(&settings).unwrap();
    Service::on(runtime(slots), gate, settings).unwrap()
}

fn example(name: &str) -> String {
    let path = format!(
        "{}/../examples/snapshots/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

fn snapshot(phase: Phase, name: &str) -> DecisionRequest {
    DecisionRequest {
        phase,
        input: Input::Snapshot(example(name)),
    }
}

#[tokio::test]
async fn a_snapshot_is_decided_and_counted() {
    let service = service_on(4, settings(8));
    let evaluation = service
        .decide("generic", snapshot(Phase::Abort, "abort-rollback"), soon())
        .await
        .unwrap();
    assert_eq!(evaluation.decision, Decision::Rollback);
    assert!(service.metrics().encode().contains(
        "shipgate_decisions_total{adapter=\"generic\",phase=\"abort\",decision=\"rollback\"} 1"
    ));
}

#[tokio::test]
async fn an_invalid_snapshot_is_the_requests_fault() {
    let service = service_on(4, settings(8));
    let request = DecisionRequest {
        phase: Phase::Abort,
        input: Input::Snapshot("{\"schema_version\": 1}".into()),
    };
    let refusal = service
        .decide("generic", request, soon())
        .await
        .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::BadSnapshot("snapshot: missing field `now` at line 1 column 21".into())
    );
}

#[test]
fn admission_is_bounded_and_each_admission_has_its_deadline() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _time = runtime.enter();
    let service = service_on(4, settings(1));
    let admitted = service.admit("argo").expect("the only place");
    let left = admitted.deadline - tokio::time::Instant::now();
    assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
    assert_eq!(service.admit("argo").err(), Some(Refusal::Overloaded));
    // Another CD system's places are its own.
    assert!(service.admit("flagger").is_ok());
    drop(admitted);
    assert!(service.admit("argo").is_ok());
}

/// A request whose deadline has passed gets no decision, and nothing is
/// recorded: the deadline is the value handed in, nothing else.
#[tokio::test]
async fn a_passed_deadline_is_a_timeout_never_a_verdict() {
    let service = service_on(4, settings(8));
    let past = tokio::time::Instant::now() - Duration::from_millis(1);
    let refusal = service
        .decide("generic", snapshot(Phase::Abort, "abort-allow"), past)
        .await
        .unwrap_err();
    assert_eq!(refusal, Refusal::Timeout);
}

/// A host out of instance slots has no verdict to give: the caller retries
/// (503), where a policy fault would have rolled a healthy canary back.
#[tokio::test]
async fn a_full_instance_pool_is_a_retry_never_a_verdict() {
    let runtime = runtime(1);
    let settings = settings(8);
    let gate = read_gate(&settings).unwrap();
    let service = Service::on(runtime.clone(), gate, settings).unwrap();
    let canary = crate::builtins::lookup("builtin:canary").unwrap();
    let module = runtime.load(canary.bytes).unwrap();
    let _only_slot = runtime
        .reused_instance(&module, crate::runtime::Limits::default())
        .unwrap();
    assert_eq!(
        service
            .decide("generic", snapshot(Phase::Abort, "abort-allow"), soon())
            .await
            .unwrap_err(),
        Refusal::Overloaded
    );
    // A reload cannot check the policies either: it keeps the gate it had.
    let before = service.gate().gate().sha256.clone();
    let error = service.reload().unwrap_err().to_string();
    assert!(error.contains("no free policy instance slot"), "{error}");
    assert_eq!(service.gate().gate().sha256, before);
    assert!(
        service
            .metrics()
            .encode()
            .contains("shipgate_gate_reloads_total{result=\"error\"} 1")
    );
}
