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

/// Each Kubernetes file's ConfigMap is the gate it names, byte for byte.
#[test]
fn the_kubernetes_configmaps_carry_the_shipped_gates() {
    for (file, gate) in [
        (
            "integrations/kubernetes/shipgate.yaml",
            "integrations/gate.toml",
        ),
        (
            "integrations/kubernetes/shipgate-flagger.yaml",
            "integrations/flagger/gate.toml",
        ),
    ] {
        let configmap = documents_of(file, "ConfigMap").remove(0);
        assert_eq!(
            configmap["data"]["gate.toml"].as_str().unwrap(),
            read(gate),
            "{file}"
        );
    }
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

/// A Deployment's container arguments, and its pod spec.
fn deployment(file: &str) -> (Vec<String>, serde_yaml::Value) {
    let deployment = documents_of(file, "Deployment").remove(0);
    let pod = deployment["spec"]["template"]["spec"].clone();
    (container_args(&pod["containers"][0]), pod)
}

/// Starts a Deployment's server with its own arguments, but on loopback
/// ports and with the test's copy of `gate`; returns it and, when it has
/// one, the address of its probes and metrics.
fn start_deployment(args: &[String], gate: &str) -> (Server, Option<String>) {
    assert_eq!(args[0], "serve");
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--gate" | "--listen" => {
                rest.next();
            }
            "--metrics-listen" => {
                rest.next();
                kept.extend(["--metrics-listen", "127.0.0.1:0"]);
            }
            other => kept.push(other),
        }
    }
    let server = Server::start(&repo().join(gate), &kept);
    let side = server
        .logged("metrics and probes listening")
        .first()
        .map(|line| format!("http://{}", line["address"].as_str().unwrap()));
    (server, side)
}

/// Each Deployment's arguments start a server with its gate, and its grace
/// period covers the preStop sleep, the shutdown delay and the drain.
#[test]
fn the_kubernetes_deployments_start_and_drain_within_their_grace_period() {
    for (file, gate) in [
        (
            "integrations/kubernetes/shipgate.yaml",
            "integrations/gate.toml",
        ),
        (
            "integrations/kubernetes/shipgate-flagger.yaml",
            "integrations/flagger/gate.toml",
        ),
    ] {
        let (args, pod) = deployment(file);
        let (server, side) = start_deployment(&args, gate);
        // Probes never queue behind decision traffic: they are on the
        // metrics port, which --metrics-listen serves.
        probes_on_the_metrics_port(&args, &pod, side.as_deref(), file);
        // The main instance's decision records go to the cluster's log
        // pipeline, on stdout.
        let logs_to_stdout = args.windows(2).any(|pair| pair == ["--decision-log", "-"]);
        assert_eq!(logs_to_stdout, file.ends_with("/shipgate.yaml"), "{file}");
        if logs_to_stdout {
            let (status, answer) = server.evaluate("abort-rollback");
            assert_eq!(status, 200, "{answer}");
            let id = answer["decision_id"].as_str().unwrap().to_string();
            crate::server::eventually("the decision record on stdout", || {
                server.stdout_lines().iter().any(|line| line.contains(&id))
            });
        }
        let seconds = |flag: &str, default: u64| {
            let at = args.iter().position(|a| a == flag);
            at.map_or(default, |i| {
                args[i + 1].trim_end_matches('s').parse().unwrap()
            })
        };
        let container = &pod["containers"][0];
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .expect("a preStop sleep");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let needed = pre_stop + seconds("--shutdown-delay", 5) + seconds("--drain-timeout", 15);
        assert!(
            grace > needed,
            "{file}: terminationGracePeriodSeconds {grace} <= {needed}"
        );
    }
}

/// The instance Flagger calls takes no token, so it serves Flagger's hooks
/// and nothing else; its probes are where its pod spec looks for them.
#[test]
fn the_flagger_instance_serves_flaggers_hooks_only() {
    let (args, pod) = deployment("integrations/kubernetes/shipgate-flagger.yaml");
    let (server, side) = start_deployment(&args, "integrations/flagger/gate.toml");
    let event = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
                       "checksum": "5f9c7b7d4", "metadata": {"eventMessage": "m",
                       "eventType": "Normal", "timestamp": "1764165600000"}});
    assert_eq!(server.post("/v1/flagger/event", &event).0, 202);
    let request = json!({"phase": "abort", "service": "checkout"});
    for route in ["/v1/evaluate", "/v1/argo/abort", "/v1/spinnaker/abort"] {
        assert_eq!(server.post(route, &request).0, 404, "{route}");
    }
    probes_on_the_metrics_port(&args, &pod, side.as_deref(), "the Flagger instance");
    // The Canary calls this instance's Service.
    let service =
        documents_of("integrations/kubernetes/shipgate-flagger.yaml", "Service").remove(0);
    let name = service["metadata"]["name"].as_str().unwrap();
    assert!(
        read("integrations/flagger/canary.yaml")
            .contains(&format!("http://{name}.shipgate.svc/v1/flagger/")),
        "the Canary's webhooks call {name}"
    );
}

/// The pod's probes are on its `metrics` port, which is the server's
/// `--metrics-listen` (`side`, where the started server serves them), and
/// they answer there.
fn probes_on_the_metrics_port(
    args: &[String],
    pod: &serde_yaml::Value,
    side: Option<&str>,
    what: &str,
) {
    let side = side.unwrap_or_else(|| panic!("{what}: probes on their own port"));
    let container = &pod["containers"][0];
    let metrics_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap_or_else(|| panic!("{what}: a metrics port"))["containerPort"]
        .as_u64()
        .unwrap();
    assert!(
        args.contains(&format!("0.0.0.0:{metrics_port}")),
        "{what}: --metrics-listen is the metrics port"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"], "metrics",
            "{what}: {probe}"
        );
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        let answer = reqwest::blocking::get(format!("{side}{path}")).unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{what}: {probe} {path}");
    }
}

/// The documents of `relative` whose `kind` is `kind`.
fn documents_of(relative: &str, kind: &str) -> Vec<serde_yaml::Value> {
    yaml_documents(relative)
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

/// shipgate's own default request budget: a CD system that gives up first
/// turns shipgate's 503 into a timeout of its own.
const SERVER_REQUEST_TIMEOUT_SECONDS: u64 = 10;

#[test]
fn argo_and_flagger_wait_longer_than_shipgate_takes() {
    for (file, kind) in [
        (
            "integrations/argo/analysis-templates.yaml",
            "AnalysisTemplate",
        ),
        (
            "integrations/argo/cluster-analysis-templates.yaml",
            "ClusterAnalysisTemplate",
        ),
    ] {
        for template in documents_of(file, kind) {
            for metric in template["spec"]["metrics"].as_sequence().unwrap() {
                let web = &metric["provider"]["web"];
                if web.is_null() {
                    continue;
                }
                let timeout = web["timeoutSeconds"].as_u64().unwrap();
                assert!(
                    timeout > SERVER_REQUEST_TIMEOUT_SECONDS,
                    "{file}: {timeout}s"
                );
            }
        }
    }
    let canary = &documents_of("integrations/flagger/canary.yaml", "Canary")[0];
    for hook in canary["spec"]["analysis"]["webhooks"]
        .as_sequence()
        .unwrap()
    {
        if hook["type"] == "event" {
            continue; // acknowledged, never evaluated
        }
        let timeout: u64 = hook["timeout"]
            .as_str()
            .unwrap()
            .trim_end_matches('s')
            .parse()
            .unwrap();
        assert!(
            timeout > SERVER_REQUEST_TIMEOUT_SECONDS,
            "{}: {timeout}s",
            hook["name"].as_str().unwrap()
        );
    }
}

#[test]
fn the_cluster_templates_are_the_namespaced_ones() {
    let namespaced = documents_of(
        "integrations/argo/analysis-templates.yaml",
        "AnalysisTemplate",
    );
    let cluster = documents_of(
        "integrations/argo/cluster-analysis-templates.yaml",
        "ClusterAnalysisTemplate",
    );
    assert_eq!(namespaced.len(), cluster.len());
    for (a, b) in namespaced.iter().zip(&cluster) {
        assert_eq!(a["metadata"], b["metadata"]);
        assert_eq!(
            a["spec"],
            b["spec"],
            "{}",
            a["metadata"]["name"].as_str().unwrap()
        );
    }
}

/// Every template a consumer names exists, every arg it passes is one the
/// templates declare, and every arg a template needs (no value of its own)
/// is passed.
fn assert_analysis_wiring(
    consumer: &str,
    analysis: &serde_yaml::Value,
    templates: &[String],
    key: &str,
) {
    let all = documents_of(
        "integrations/argo/analysis-templates.yaml",
        "AnalysisTemplate",
    );
    let passed: Vec<&str> = analysis["args"]
        .as_sequence()
        .map(|args| args.iter().map(|a| a["name"].as_str().unwrap()).collect())
        .unwrap_or_default();
    let mut declared = Vec::new();
    for name in templates {
        let template = all
            .iter()
            .find(|t| t["metadata"]["name"].as_str() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{consumer}: no template {name}"));
        for arg in template["spec"]["args"].as_sequence().unwrap() {
            let arg_name = arg["name"].as_str().unwrap();
            declared.push(arg_name.to_string());
            let has_own = !arg["value"].is_null() || !arg["valueFrom"].is_null();
            assert!(
                has_own || passed.contains(&arg_name),
                "{consumer} ({key}): {name} needs arg {arg_name}"
            );
        }
    }
    for arg in passed {
        assert!(
            declared.iter().any(|d| d == arg),
            "{consumer} ({key}): no template takes {arg}"
        );
    }
}

#[test]
fn the_bluegreen_rollout_and_the_kargo_stage_pass_what_the_templates_take() {
    let rollout = &documents_of("integrations/argo/rollout-bluegreen.yaml", "Rollout")[0];
    let blue_green = &rollout["spec"]["strategy"]["blueGreen"];
    for key in ["prePromotionAnalysis", "postPromotionAnalysis"] {
        let analysis = &blue_green[key];
        let names: Vec<String> = analysis["templates"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t["templateName"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"shipgate-health".to_string()), "{key}");
        assert_analysis_wiring("rollout-bluegreen.yaml", analysis, &names, key);
    }
    for service in ["activeService", "previewService"] {
        let name = blue_green[service].as_str().unwrap();
        assert!(
            documents_of("integrations/argo/rollout-bluegreen.yaml", "Service")
                .iter()
                .any(|s| s["metadata"]["name"] == name),
            "{service} {name}"
        );
    }
    let stage = &documents_of("integrations/kargo/stage.yaml", "Stage")[0];
    let verification = &stage["spec"]["verification"];
    let names: Vec<String> = verification["analysisTemplates"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_analysis_wiring("kargo/stage.yaml", verification, &names, "verification");
}

/// The health template's body, as Argo fills it, with and without a
/// baseline offset: a request shipgate takes and answers with a decision.
#[test]
fn the_health_template_body_is_a_request_the_server_takes() {
    let template = documents_of(
        "integrations/argo/analysis-templates.yaml",
        "AnalysisTemplate",
    )
    .into_iter()
    .find(|t| t["metadata"]["name"] == "shipgate-health")
    .unwrap();
    let metric = &template["spec"]["metrics"][0];
    let url = metric["provider"]["web"]["url"].as_str().unwrap();
    let path = url.split_once(".svc").unwrap().1;
    let body: Value = serde_json::to_value(&metric["provider"]["web"]["jsonBody"]).unwrap();
    let server = Server::start(&repo().join("integrations/gate.toml"), &[]);
    for offset in ["0", "1800"] {
        let filled = body
            .to_string()
            .replace("{{args.service}}", "checkout")
            .replace("{{args.namespace}}", "shop")
            .replace("{{args.environment}}", "production")
            .replace("{{args.stable_hash}}", "6f7d8c")
            .replace("{{args.canary_hash}}", "9b1e2a")
            .replace("{{args.baseline_offset_seconds}}", offset);
        assert!(!filled.contains("{{args."), "{filled}");
        let (status, answer) = server.post(path, &serde_json::from_str(&filled).unwrap());
        assert_eq!(status, 200, "{answer}");
        // No Prometheus here: missing evidence, a hold, and never a 4xx.
        assert_eq!(answer["decision"], "deny", "{answer}");
    }
}

/// Runs a container's `shipgate` arguments with the real binary, its
/// mounted paths mapped to files of the test's own.
fn run_container_args(args: &[&str], paths: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mapped: Vec<String> = args
        .iter()
        .map(|arg| {
            paths
                .iter()
                .find(|(inside, _)| arg == inside)
                .map_or(arg.to_string(), |(_, outside)| {
                    outside.display().to_string()
                })
        })
        .collect();
    shipgate().args(&mapped).output().unwrap()
}

fn container_args(container: &serde_yaml::Value) -> Vec<String> {
    assert_eq!(container["command"][0], "shipgate");
    container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_argocd_presync_job_blocks_a_sync_that_preflight_denies() {
    let job = &documents_of("integrations/argocd/presync-preflight.yaml", "Job")[0];
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["argocd.argoproj.io/hook"], "PreSync");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let args = container_args(&job["spec"]["template"]["spec"]["containers"][0]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gate = repo().join("integrations/gate.toml");
    for (snapshot, code) in [("preflight-ready", 0), ("preflight-blocked", 1)] {
        let path = crate::support::snapshot(snapshot);
        let output = run_container_args(
            &args,
            &[
                ("/snapshot/snapshot.json", &path),
                ("/etc/shipgate/gate.toml", &gate),
            ],
        );
        assert_eq!(output.status.code(), Some(code), "{snapshot}");
    }
}

#[test]
fn the_tekton_task_writes_the_results_the_pipeline_reads() {
    let task = &documents_of("integrations/tekton/task.yaml", "Task")[0];
    let step = &task["spec"]["steps"][0];
    assert_eq!(step["onError"], "continue");
    let defaults: Vec<(String, String)> = task["spec"]["params"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["default"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let results: Vec<&str> = task["spec"]["results"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["decision", "summary"]);
    let workspace = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("integrations/gate.toml"),
        workspace.path().join("gate.toml"),
    )
    .unwrap();
    let results_dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = container_args(step)
        .into_iter()
        .map(|arg| {
            let mut arg = arg;
            for (name, value) in &defaults {
                arg = arg.replace(&format!("$(params.{name})"), value);
            }
            arg.replace("/tekton/results", results_dir.path().to_str().unwrap())
        })
        .collect();
    for (snapshot, code, decision) in [
        ("preflight-ready", 0, "allow"),
        ("preflight-blocked", 1, "deny"),
    ] {
        std::fs::copy(
            crate::support::snapshot(snapshot),
            workspace.path().join("snapshot.json"),
        )
        .unwrap();
        let output = crate::support::shipgate_in(workspace.path())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(code), "{snapshot}");
        let read = |name: &str| std::fs::read_to_string(results_dir.path().join(name)).unwrap();
        assert_eq!(read("decision"), decision);
        assert!(!read("summary").is_empty());
    }
    // An invalid snapshot is no decision: no result for the pipeline to read.
    let errors = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("snapshot.json"), "{}").unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace(
                results_dir.path().to_str().unwrap(),
                errors.path().to_str().unwrap(),
            )
        })
        .collect();
    let output = crate::support::shipgate_in(workspace.path())
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    assert!(!errors.path().join("decision").exists());
    // The Pipeline reads those results from the task that runs this Task.
    let pipeline = &documents_of("integrations/tekton/pipeline.yaml", "Pipeline")[0];
    let tasks = pipeline["spec"]["tasks"].as_sequence().unwrap();
    let preflight = tasks
        .iter()
        .find(|t| t["taskRef"]["name"] == task["metadata"]["name"])
        .unwrap();
    let name = preflight["name"].as_str().unwrap();
    let deploy = tasks.iter().find(|t| !t["when"].is_null()).unwrap();
    assert_eq!(
        deploy["when"][0]["input"],
        format!("$(tasks.{name}.results.decision)").as_str()
    );
    assert_eq!(deploy["when"][0]["values"][0], "allow");
}

/// The metric families a running server exports, with their types, from
/// the `# TYPE` lines of its `/metrics`, once it has seen what each counts:
/// decisions, a rollback's findings, a policy fault, evidence a source
/// could not find, and a request it refused.
fn exposition() -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::support::fixture("hostile"),
        dir.path().join("hostile.wasm"),
    )
    .unwrap();
    let mut gate = read("examples/gate.toml");
    gate.push_str(&format!(
        "\n[sources.facts]\npath = \"{}/{{service}}.json\"\n\n\
         [[policy]]\nname = \"crashes\"\nmodule = \"hostile.wasm\"\nphases = [\"verify\"]\n\
         config = {{ behaviour = \"panic\" }}\n",
        dir.path().display()
    ));
    std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
    let server = Server::start(&dir.path().join("gate.toml"), &[]);
    for snapshot in ["abort-rollback", "verify-allow"] {
        assert_eq!(server.evaluate(snapshot).0, 200);
    }
    let no_facts = json!({"phase": "preflight", "service": "checkout"});
    assert_eq!(server.post("/v1/evaluate", &no_facts).0, 200);
    let refused = server
        .client()
        .post(server.url("/v1/evaluate"))
        .body("{")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    server.metrics()
}

/// The families of an exposition, with their types, from its `# TYPE`
/// lines.
fn families(exposition: &str) -> std::collections::BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The labels a query groups by: every `by (a, b)`.
fn grouped_by(query: &str) -> Vec<&str> {
    query
        .match_indices("by (")
        .flat_map(|(at, _)| {
            let rest = &query[at + "by (".len()..];
            rest[..rest.find(')').unwrap()].split(',').map(str::trim)
        })
        .collect()
}

/// The family and type a sample name in a query stands for.
fn family_of(sample: &str) -> (&str, &str) {
    for (suffix, kind) in [("_total", "counter"), ("_bucket", "histogram")] {
        if let Some(family) = sample.strip_suffix(suffix) {
            return (family, kind);
        }
    }
    (sample, "gauge")
}

#[test]
fn the_grafana_dashboard_queries_what_the_server_exports_in_valid_promql() {
    let dashboard: Value =
        serde_json::from_str(&read("integrations/grafana/shipgate-dashboard.json")).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        // A row groups panels and queries nothing.
        .filter(|panel| panel["type"] != "row")
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 14);

    let exposition = exposition();
    let exported = families(&exposition);
    let mut queried = std::collections::BTreeSet::new();
    for query in &queries {
        for (at, _) in query.match_indices("shipgate_") {
            let name: String = query[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let (family, kind) = family_of(&name);
            assert_eq!(
                exported.get(family).map(String::as_str),
                Some(kind),
                "{query}: `{name}` is not a {kind} shipgate exports ({exported:?})"
            );
            // Every label it groups by is one the samples carry.
            for label in grouped_by(query) {
                let carried = exposition.lines().any(|line| {
                    line.starts_with(&format!("{name}{{")) && line.contains(&format!("{label}=\""))
                });
                assert!(
                    carried,
                    "{query}: no `{name}` sample has the label `{label}`"
                );
            }
            queried.insert(family.to_string());
        }
    }
    let unshown: Vec<&String> = exported.keys().filter(|f| !queried.contains(*f)).collect();
    assert!(
        unshown.is_empty(),
        "metrics the dashboard does not show: {unshown:?}"
    );

    // Grafana's own variables replaced, each query is a recording rule
    // Prometheus's promtool must accept.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<serde_yaml::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let query = query
                .replace("$__rate_interval", "5m")
                .replace("$__range", "6h");
            serde_yaml::to_value(json!({"record": format!("dashboard:query_{i}"), "expr": query}))
                .unwrap()
        })
        .collect();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    let checked = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool: ./test.sh installs it (Debian package prometheus)");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Where the image is named: what `image/set-reference.sh` rewrites.
const IMAGE_NAMED_IN: [&str; 5] = [
    "integrations",
    "docs",
    "templates",
    "action.yml",
    "README.md",
];

/// Every image reference in the files under `root` (integrations/, docs/,
/// templates/, action.yml, README.md), as (file, reference).
fn image_references(root: &std::path::Path) -> Vec<(String, String)> {
    fn walk(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
        } else {
            out.push(path.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for top in IMAGE_NAMED_IN {
        walk(&root.join(top), &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (at, _) in text.match_indices("ghcr.io/shipgate/shipgate") {
            let reference: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"`\"',)".contains(*c))
                .collect();
            found.push((
                file.strip_prefix(root).unwrap().display().to_string(),
                reference,
            ));
        }
    }
    found
}

#[test]
fn every_file_runs_the_one_image_reference_and_a_release_changes_it_once() {
    let reference = read("image/REFERENCE").trim().to_string();
    assert_eq!(
        reference.rsplit_once(':').unwrap().1,
        env!("CARGO_PKG_VERSION"),
        "image/REFERENCE's tag is the release's version"
    );
    let found = image_references(&repo());
    assert!(found.len() >= 8, "{found:?}");
    for file in ["action.yml", "templates/shipgate.yml"] {
        assert!(
            found.iter().any(|(named_in, _)| named_in == file),
            "{file} runs the image by its reference: {found:?}"
        );
    }
    for (file, named) in &found {
        // GitLab runs scripts: its job needs the variant with a shell.
        let expected = if file.ends_with(".gitlab-ci.yml") || file.starts_with("templates/") {
            format!("{reference}-shell")
        } else {
            reference.clone()
        };
        assert_eq!(named, &expected, "{file} names another image");
    }

    // The release step, on a copy: every reference moves, none is left.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .args(IMAGE_NAMED_IN)
        .arg("image")
        .arg(copy.path())
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success());
    let next = "ghcr.io/shipgate/shipgate:9.8.7";
    let output = std::process::Command::new(copy.path().join("image/set-reference.sh"))
        .arg(next)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let moved = image_references(copy.path());
    assert_eq!(moved.len(), found.len());
    assert!(
        moved
            .iter()
            .all(|(_, named)| named.strip_suffix("-shell").unwrap_or(named) == next),
        "{moved:?}"
    );
    assert_eq!(
        std::fs::read_to_string(copy.path().join("image/REFERENCE")).unwrap(),
        format!("{next}\n")
    );

    let refused = std::process::Command::new(copy.path().join("image/set-reference.sh"))
        .arg("shipgate latest")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64));
}

/// The servers' module caches are on a writable volume, with their key
/// beside them, never inside (a key inside would travel with the cache).
#[test]
fn the_servers_cache_key_is_writable_and_outside_the_cache() {
    for file in [
        "integrations/kubernetes/shipgate.yaml",
        "integrations/kubernetes/shipgate-flagger.yaml",
    ] {
        let (_, pod) = deployment(file);
        let container = &pod["containers"][0];
        let env = |name: &str| {
            container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{file}: no {name}"))
                .to_string()
        };
        let cache = std::path::Path::new(&env("XDG_CACHE_HOME")).join("shipgate");
        let key = std::path::PathBuf::from(env("SHIPGATE_CACHE_KEY_FILE"));
        assert!(
            !key.starts_with(&cache),
            "{file}: the key is inside the cache"
        );
        let mounted = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .any(|at| key.starts_with(at) && cache.starts_with(at));
        assert!(
            mounted,
            "{file}: the key and the cache are not on a mounted volume"
        );
    }
}
