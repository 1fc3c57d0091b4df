//! The files in `integrations/` agree with shipgate and with each other:
//! their gates load, their requests are ones the server accepts, and the
//! Rollout's stages are the gate's declared plan.

use serde_json::{Value, json};

use crate::server::Server;
use crate::support::{repo, shipgate, yaml_documents};

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).expect("an integration file")
}

#[test]
fn the_shipped_gates_load_and_every_policy_checks() {
    for gate in ["integrations/gate.toml", "integrations/flagger/gate.toml"] {
        shipgate()
            .args(["check", "--gate", gate])
            .assert()
            .success();
    }
}

#[test]
fn the_kubernetes_configmap_carries_the_shipped_gate() {
    let configmap = yaml_documents("integrations/kubernetes/shipgate.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(
        configmap["data"]["gate.toml"].as_str().unwrap(),
        read("integrations/gate.toml")
    );
}

#[test]
fn the_rollout_stages_are_the_gates_declared_plan() {
    let gate: toml::Table = toml::from_str(&read("integrations/gate.toml")).unwrap();
    let stages: Vec<f64> = gate["rollout"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_float().or(s.as_integer().map(|i| i as f64)).unwrap())
        .collect();
    let rollout = yaml_documents("integrations/argo/rollout.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Rollout")
        .unwrap();
    let steps = rollout["spec"]["strategy"]["canary"]["steps"]
        .as_sequence()
        .unwrap();
    let mut weight = None;
    let mut checked = 0;
    for step in steps {
        if let Some(w) = step["setWeight"].as_f64() {
            weight = Some(w);
        }
        let Some(args) = step["analysis"]["args"].as_sequence() else {
            continue;
        };
        let arg = |name: &str| {
            args.iter()
                .find(|a| a["name"] == name)
                .and_then(|a| a["value"].as_str())
                .map(|v| v.parse::<f64>().unwrap())
        };
        if let (Some(sent), Some(index)) = (arg("weight"), arg("stage_index")) {
            assert_eq!(
                Some(sent),
                weight,
                "the analysis judges the weight just set"
            );
            assert_eq!(stages[index as usize], sent, "stage {index} of the plan");
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "one promotion check per stage below 100%");
    assert_eq!(weight, Some(100.0));
}

#[test]
fn the_spinnaker_stage_payload_is_a_request_the_server_takes() {
    let stage: Value =
        serde_json::from_str(&read("integrations/spinnaker/pipeline-stage.json")).unwrap();
    let orca = yaml_documents("integrations/spinnaker/orca-local.yml");
    assert_eq!(
        stage["type"].as_str(),
        orca[0]["webhook"]["preconfigured"][0]["type"].as_str()
    );
    // Orca evaluates the stage's expressions before sending the payload.
    let mut text = stage["payload"].to_string();
    for (key, value) in stage["parameterValues"].as_object().unwrap() {
        text = text.replace(
            &format!("${{parameterValues['{key}']}}"),
            value.as_str().unwrap(),
        );
    }
    let payload: Value = serde_json::from_str(&text).unwrap();
    let mut payload = payload.as_object().unwrap().clone();
    for value in payload.values_mut() {
        if value
            .as_str()
            .is_some_and(|v| v.starts_with("${T(java.time.Instant)"))
        {
            *value = json!("2026-11-26T13:44:00Z");
        }
    }
    assert!(!Value::Object(payload.clone()).to_string().contains("${"));
    let server = Server::start(&repo().join("examples/gate.toml"), &[]);
    let phase = stage["parameterValues"]["phase"].as_str().unwrap();
    let response = server
        .client()
        .post(server.url(&format!("/v1/spinnaker/{phase}")))
        .json(&payload)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

#[test]
fn every_flagger_webhook_reaches_its_hook_with_metadata_the_server_takes() {
    let canary = yaml_documents("integrations/flagger/canary.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Canary")
        .unwrap();
    let server = Server::start(&repo().join("examples/gate.toml"), &[]);
    let webhooks = canary["spec"]["analysis"]["webhooks"]
        .as_sequence()
        .unwrap();
    let kinds: Vec<&str> = webhooks
        .iter()
        .map(|w| w["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "rollout",
            "confirm-traffic-increase",
            "confirm-promotion",
            "rollback",
            "post-rollout",
            "event"
        ],
        "the Canary works as applied: no preflight hook (it needs a facts source)"
    );
    for webhook in webhooks {
        let kind = webhook["type"].as_str().unwrap();
        let url = webhook["url"].as_str().unwrap();
        assert!(url.ends_with(&format!("/v1/flagger/{kind}")), "{url}");
        let metadata: Value = serde_json::to_value(&webhook["metadata"]).unwrap();
        let payload = json!({
            "name": canary["metadata"]["name"].as_str().unwrap(),
            "namespace": canary["metadata"]["namespace"].as_str().unwrap(),
            "phase": "Progressing",
            "checksum": "6f7d8c9b",
            "metadata": if metadata.is_null() { json!({}) } else { metadata },
        });
        let (status, body) = server.post(&format!("/v1/flagger/{kind}"), &payload);
        assert!([200, 202, 403].contains(&status), "{kind}: {status} {body}");
    }
}

/// The Deployment's arguments start a server (with the shipped gate), and
/// its grace period covers the preStop sleep, the shutdown delay and a
/// request at its full timeout.
#[test]
fn the_kubernetes_deployment_starts_and_drains_within_its_grace_period() {
    let deployment = yaml_documents("integrations/kubernetes/shipgate.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    // Everything but where to listen and which gate file: the test's own.
    let mut kept = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--gate" | "--listen" => {
                rest.next();
            }
            other => kept.push(other),
        }
    }
    let server = Server::start(&repo().join("integrations/gate.toml"), &kept);
    assert_eq!(server.get("/readyz").0, 200);
    let seconds = |flag: &str, default: u64| {
        let at = args.iter().position(|a| *a == flag);
        at.map_or(default, |i| {
            args[i + 1].trim_end_matches('s').parse().unwrap()
        })
    };
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let needed = pre_stop + seconds("--shutdown-delay", 5) + seconds("--request-timeout", 10);
    assert!(
        grace > needed,
        "terminationGracePeriodSeconds {grace} <= {needed}"
    );
}
