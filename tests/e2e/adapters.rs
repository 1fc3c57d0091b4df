//! Each adapter over loopback, with requests shaped as its CD system sends
//! them and answers read the way that system reads them, using the
//! condition fields of the files shipped in `integrations/`.

use serde_json::{Value, json};

use crate::server::{Server, snapshot_json};
use crate::support::{example, yaml_documents};

fn example_gate() -> Server {
    Server::start(&example("gate.toml"), &[])
}

/// The one metric of a shipped AnalysisTemplate.
pub(crate) fn argo_metric(template: &str) -> serde_yaml::Value {
    let documents = yaml_documents("integrations/argo/analysis-templates.yaml");
    let found = documents
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(template))
        .unwrap_or_else(|| panic!("no AnalysisTemplate {template}"));
    found["spec"]["metrics"][0].clone()
}

/// What Argo Rollouts makes of a web measurement: the template's
/// `jsonPath` picks the result, then `failureCondition` and
/// `successCondition` classify it. Only the forms the shipped templates
/// use are understood; anything else fails the test.
pub(crate) fn argo_outcome(metric: &serde_yaml::Value, body: &Value) -> &'static str {
    let path = metric["provider"]["web"]["jsonPath"]
        .as_str()
        .expect("jsonPath");
    let field = path
        .strip_prefix("{$.")
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or_else(|| panic!("unexpected jsonPath {path}"));
    let result = body[field]
        .as_str()
        .unwrap_or_else(|| panic!("jsonPath {path} finds no string in {body}"));
    let holds = |key: &str| {
        let condition = metric[key].as_str().unwrap_or_else(|| panic!("no {key}"));
        let expected = condition
            .strip_prefix("result == \"")
            .and_then(|c| c.strip_suffix('"'))
            .unwrap_or_else(|| panic!("unexpected {key}: {condition}"));
        result == expected
    };
    if holds("failureCondition") {
        "Failed"
    } else if holds("successCondition") {
        "Successful"
    } else {
        "Inconclusive"
    }
}

/// The path of an absolute URL.
pub(crate) fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").expect("an absolute URL").1;
    &rest[rest.find('/').expect("a path")..]
}

#[test]
fn generic_endpoint_answers_the_decision_record() {
    let server = example_gate();
    let body = json!({"phase": "abort", "snapshot": snapshot_json("abort-rollback")});
    let (status, answer) = server.post("/v1/evaluate", &body);
    assert_eq!(status, 200);
    assert_eq!(answer["decision"], "rollback");
    assert_eq!(answer["phase"], "abort");
    assert_eq!(answer["policies"][0]["name"], "canary");
    assert_eq!(answer["gate"], "checkout-production");
}

#[test]
fn generic_endpoint_names_what_is_wrong_with_a_request() {
    let server = example_gate();
    let raw = server
        .client()
        .post(server.url("/v1/evaluate"))
        .body("{\"phase\": \"abort\",\n \"snapshot\": {")
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let error = raw.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("not valid JSON") && error.contains("line 2"),
        "{error}"
    );

    let mut snapshot = snapshot_json("abort-allow");
    snapshot["metrics"]["canary"]["errors"] = json!("eleven");
    let (status, answer) = server.post(
        "/v1/evaluate",
        &json!({"phase": "abort", "snapshot": snapshot}),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("snapshot: metrics.canary.errors:"),
        "{answer}"
    );
    let (status, answer) = server.post("/v1/evaluate", &json!({"phase": "canary"}));
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown phase 'canary'")
    );
    let (status, answer) = server.post(
        "/v1/evaluate",
        &json!({"phase": "abort", "snapshot": {}, "service": "checkout"}),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("not both"),
        "{answer}"
    );
    let (status, _) = server.get("/v1/nothing-here");
    assert_eq!(status, 404);
}

#[test]
fn argo_web_provider_reads_allow_rollback_and_hold_as_intended() {
    let server = example_gate();
    let abort = argo_metric("shipgate-abort");
    let promotion = argo_metric("shipgate-promotion");
    for (metric, phase, snapshot, outcome) in [
        (&abort, "abort", "abort-allow", "Successful"),
        (&abort, "abort", "abort-rollback", "Failed"),
        (&promotion, "promotion", "promotion-allow", "Successful"),
        (&promotion, "promotion", "promotion-hold", "Inconclusive"),
    ] {
        let (status, body) = server.post(
            &format!("/v1/argo/{phase}"),
            &json!({"snapshot": snapshot_json(snapshot)}),
        );
        // Argo would count a non-2xx answer as an Error, not a decision.
        assert_eq!(status, 200, "{snapshot}: {body}");
        assert_eq!(argo_outcome(metric, &body), outcome, "{snapshot}: {body}");
    }
}

#[test]
fn argo_requests_the_gate_refuses_are_a_hold_not_a_rollback() {
    let server = example_gate();
    let (status, body) = server.post(
        "/v1/argo/abort",
        &json!({"service": "checkout", "weight": "ten"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        argo_outcome(&argo_metric("shipgate-abort"), &body),
        "Inconclusive"
    );
    assert_eq!(body["error"], "weight: 'ten' is not a number");
}

/// Starts a Spinnaker evaluation of an example snapshot; its status URL.
fn start_spinnaker_evaluation(server: &Server, phase: &str, snapshot: &str) -> String {
    start_spinnaker(server, phase, &json!({"snapshot": snapshot_json(snapshot)}))
}

/// POSTs a webhook stage's payload and returns the `Location` to poll.
pub(crate) fn start_spinnaker(server: &Server, phase: &str, payload: &Value) -> String {
    let response = server
        .client()
        .post(server.url(&format!("/v1/spinnaker/{phase}")))
        .json(payload)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{payload}");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    // Within what proxies and HTTP servers accept in a request line.
    assert!(location.len() < 4096, "{} bytes", location.len());
    location
}

/// What a server started without an evaluation key warns.
const RANDOM_KEY_WARNING: &str = "no evaluation key (SHIPGATE_EVALUATION_KEY or --key-file): \
                                  Spinnaker status URLs work on this process only";

#[test]
fn spinnaker_polls_the_location_until_a_terminal_status() {
    let server = Server::start_with_env(
        &example("gate.toml"),
        &[],
        &[(
            "SHIPGATE_EVALUATION_KEY",
            "0123456789abcdef0123456789abcdef",
        )],
    );
    assert!(server.logged(RANDOM_KEY_WARNING).is_empty());
    let documents = yaml_documents("integrations/spinnaker/orca-local.yml");
    let hook = &documents[0]["webhook"]["preconfigured"][0];
    assert_eq!(hook["statusUrlResolution"], "locationHeader");
    let status_path = hook["statusJsonPath"].as_str().unwrap();
    let progress = hook["progressJsonPath"]
        .as_str()
        .and_then(|p| p.strip_prefix("$."))
        .expect("a progress message for Deck");
    let field = status_path
        .strip_prefix("$.")
        .expect("a top-level JSON path");
    let listed = |key: &str| -> Vec<String> {
        hook[key]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    // Orca's monitor: a listed success or terminal status ends the stage;
    // anything else keeps it RUNNING and polling.
    let stage_outcome = |status: &str| {
        if listed("successStatuses").iter().any(|s| s == status) {
            "SUCCEEDED"
        } else if listed("terminalStatuses").iter().any(|s| s == status) {
            "TERMINAL"
        } else {
            "RUNNING"
        }
    };
    // A snapshot is fixed evidence: a hold on it could never clear, so it
    // ends the stage instead of polling to the stage's timeout.
    for (phase, snapshot, expected) in [
        ("promotion", "promotion-allow", "SUCCEEDED"),
        ("promotion", "promotion-hold", "TERMINAL"),
        ("verify", "verify-deny", "TERMINAL"),
        ("abort", "abort-rollback", "TERMINAL"),
        ("preflight", "preflight-blocked", "TERMINAL"),
    ] {
        let location = start_spinnaker_evaluation(&server, phase, snapshot);
        assert!(
            location.starts_with(&server.base),
            "absolute Location: {location}"
        );
        // Orca GETs the Location it was given, again and again.
        for _ in 0..2 {
            let (status, body) = server.get(path_of(&location));
            assert_eq!(status, 200);
            let reported = body[field].as_str().expect("a status");
            assert_eq!(stage_outcome(reported), expected, "{snapshot}: {body}");
            assert!(body[progress].is_string(), "{body}");
        }
    }
    // A large snapshot (many business metrics) still gives a short URL.
    let mut large = snapshot_json("promotion-allow");
    let business: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("event_{i:05}"), json!(i)))
        .collect();
    large["metrics"]["canary"]["business"] = Value::Object(business);
    let location = start_spinnaker(&server, "promotion", &json!({"snapshot": large}));
    let (status, body) = server.get(path_of(&location));
    assert_eq!(status, 200, "{body}");
    assert!(body["decision"].is_string());
    // A target is decided afresh at every poll: a hold keeps the stage
    // RUNNING until the evidence allows (here no source gives any).
    let target = json!({"service": "checkout", "namespace": "shop",
                        "stable_hash": "6f7d8c", "canary_hash": "9b1e2a"});
    let location = start_spinnaker(&server, "promotion", &target);
    for _ in 0..2 {
        let (status, body) = server.get(path_of(&location));
        assert_eq!(status, 200);
        assert_eq!(
            stage_outcome(body[field].as_str().unwrap()),
            "RUNNING",
            "{body}"
        );
        assert!(
            body["evaluation"]["decision_id"].is_string(),
            "decided again: {body}"
        );
    }
    // A second replica with the same key answers the same status URL.
    let location = start_spinnaker_evaluation(&server, "abort", "abort-rollback");
    let replica = Server::start_with_env(
        &example("gate.toml"),
        &[],
        &[(
            "SHIPGATE_EVALUATION_KEY",
            "0123456789abcdef0123456789abcdef",
        )],
    );
    let (status, body) = replica.get(path_of(&location));
    assert_eq!((status, body["status"].as_str()), (200, Some("TERMINAL")));
}

#[test]
fn spinnaker_forged_unknown_and_expired_ids_are_404_with_json() {
    let server = Server::start(&example("gate.toml"), &["--evaluation-ttl", "1s"]);
    let (status, body) = server.get("/v1/spinnaker/evaluations/not-an-id");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().starts_with("no evaluation"));
    let location = start_spinnaker_evaluation(&server, "abort", "abort-allow");
    let id = location.rsplit('/').next().unwrap();
    // Same claims, another tag: forged.
    let (claims, _) = id.split_once('.').unwrap();
    let forged = format!("{claims}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let (status, _) = server.get(&format!("/v1/spinnaker/evaluations/{forged}"));
    assert_eq!(status, 404);
    // Another server (another key) does not know it either.
    let stranger = Server::start(&example("gate.toml"), &[]);
    assert_eq!(stranger.get(path_of(&location)).0, 404);
    assert_eq!(stranger.logged(RANDOM_KEY_WARNING).len(), 1, "it says why");
    crate::server::eventually("the evaluation to expire", || {
        let (status, body) = server.get(path_of(&location));
        status == 404
            && body["error"]
                .as_str()
                .unwrap()
                .starts_with("evaluation expired")
    });
}

/// Flagger's webhook payload.
pub(crate) fn flagger_payload(metadata: Value) -> Value {
    json!({
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "6f7d8c9b",
        "metadata": metadata,
    })
}

#[test]
fn flagger_hooks_pass_halt_and_invert_rollback() {
    let server = example_gate();
    // No metrics source in the example gate: no evidence, so the gating
    // hooks halt (403) and the abort checks carry on.
    for (hook, status) in [
        ("confirm-rollout", 403),
        ("pre-rollout", 403),
        ("confirm-traffic-increase", 403),
        ("confirm-promotion", 403),
        ("post-rollout", 403),
        ("rollout", 200),
        ("rollback", 403),
        ("event", 202),
    ] {
        let (got, body) = server.post(
            &format!("/v1/flagger/{hook}"),
            &flagger_payload(json!({"service": "podinfo"})),
        );
        assert_eq!(got, status, "{hook}: {body}");
    }
    let (status, body) = server.post(
        "/v1/flagger/rollback",
        &flagger_payload(json!({"sevice": "x"})),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("metadata.sevice:")
    );
    let (status, _) = server.post("/v1/flagger/promote", &flagger_payload(json!({})));
    assert_eq!(status, 404);
    // Flagger's event payload always carries these three keys
    // (pkg/controller/webhook.go, CallEventWebhook): still acknowledged.
    let event = flagger_payload(json!({
        "eventMessage": "Starting canary analysis for podinfo.test",
        "eventType": "Normal",
        "timestamp": "1764165600123",
    }));
    let (status, body) = server.post("/v1/flagger/event", &event);
    assert_eq!(status, 202, "{body}");
}

#[test]
fn a_bearer_token_guards_decisions_but_not_probes() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start(
        &example("gate.toml"),
        &["--token-file", token_file.to_str().unwrap()],
    );
    let body = json!({"phase": "abort", "snapshot": snapshot_json("abort-allow")});
    let (status, answer) = server.post("/v1/evaluate", &body);
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("bearer token"));
    let with_token = |token: &str| {
        let response = server
            .client()
            .post(server.url("/v1/evaluate"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(with_token("s3cret-tokeN"), 401);
    assert_eq!(with_token("s3cret-token"), 200);
    assert_eq!(server.get("/readyz").0, 200);
    assert!(
        server
            .metrics()
            .contains("shipgate_requests_rejected_total{reason=\"unauthorized\"} 2")
    );
}

#[test]
fn metrics_count_decisions_faults_and_latency() {
    let server = example_gate();
    for snapshot in ["abort-rollback", "abort-rollback", "abort-allow"] {
        let body = json!({"phase": "abort", "snapshot": snapshot_json(snapshot)});
        assert_eq!(server.post("/v1/evaluate", &body).0, 200);
    }
    let rollback =
        "shipgate_decisions_total{adapter=\"generic\",phase=\"abort\",decision=\"rollback\"}";
    let allow = "shipgate_decisions_total{adapter=\"generic\",phase=\"abort\",decision=\"allow\"}";
    assert_eq!(server.metric(rollback), 2.0);
    assert_eq!(server.metric(allow), 1.0);
    assert_eq!(
        server.metric("shipgate_decision_duration_seconds_count{phase=\"abort\"}"),
        3.0
    );
    // One log line per decision, with its id.
    crate::server::eventually("three decision log lines", || {
        server.logged("decision").len() == 3
    });
    assert!(
        server
            .logged("decision")
            .iter()
            .all(|r| r["decision_id"].is_string())
    );
}
