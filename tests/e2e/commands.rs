use predicates::prelude::*;

use crate::support::{cache_dir, eval_json, fixture, gate_dir, json_output, shipgate, snapshot};

#[test]
fn policies_lists_the_stock_policies_with_their_phases() {
    let output = shipgate().arg("policies").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("builtin:preflight    preflight            Preflight checklist"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("builtin:canary       promotion, abort     Canary analysis"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("builtin:verify       verify               Post-deploy verification"),
        "{stdout}"
    );
    assert!(
        lines[3]
            .starts_with("builtin:judge        promotion, abort     Statistical canary judgement"),
        "{stdout}"
    );
}

#[test]
fn inspect_a_builtin_shows_its_imports_and_size() {
    let output = shipgate()
        .args(["inspect", "builtin:canary", "--json"])
        .output()
        .unwrap();
    let json = json_output(&output);
    assert_eq!(json["name"], "canary");
    assert_eq!(json["phases"], serde_json::json!(["promotion", "abort"]));
    assert!(json["size"].as_u64().unwrap() > 1000);
    let imports: Vec<&str> = json["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    // WASI (linked with an empty context) and the contract's own types.
    assert!(
        imports.contains(&"shipgate:policy/types@0.4.0"),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .all(|i| i.starts_with("wasi:") || i.starts_with("shipgate:policy/")),
        "{imports:?}"
    );
}

#[test]
fn inspect_text_is_readable() {
    shipgate()
        .args(["inspect", "builtin:verify"])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with(
            "verify 0.1.0 (builtin:verify)\n",
        ))
        .stdout(predicate::str::contains("  phases:  verify\n"));
}

#[test]
fn inspect_refuses_a_wrong_world_component_with_a_clear_error() {
    shipgate()
        .arg("inspect")
        .arg(fixture("wrong_world"))
        .assert()
        .code(65)
        .stderr(predicate::str::contains(
            "it does not implement the shipgate:policy/policy world",
        ));
    shipgate()
        .args(["inspect", "builtin:nonesuch"])
        .assert()
        .code(65)
        .stderr("shipgate: error: no stock policy 'builtin:nonesuch' (there are builtin:preflight, builtin:canary, builtin:verify, builtin:judge)\n");
    shipgate()
        .args(["inspect", "missing.wasm"])
        .assert()
        .code(66);
}

#[test]
fn a_module_built_for_the_previous_contract_is_refused_with_the_fix() {
    let why = "it was built for shipgate:policy@0.1.0, and this shipgate speaks \
               shipgate:policy@0.4.0 (and runs modules built for 0.3.0 and 0.2.0): rebuild it with the \
               matching shipgate-policy SDK";
    shipgate()
        .arg("inspect")
        .arg(fixture("old_contract"))
        .assert()
        .code(65)
        .stderr(predicate::str::contains(why));
    // In a gate it fails closed (abort: rollback) and the decision says why.
    shipgate()
        .args(["eval", "--phase", "abort", "--snapshot"])
        .arg(snapshot("abort-allow"))
        .arg("--policy")
        .arg(fixture("old_contract"))
        .assert()
        .code(2)
        .stdout(predicate::str::contains(why));
}

/// Modules built for contracts 0.2.0 and 0.3.0 run beside a current one in
/// one gate: each reads the snapshot in its own encoding (versions 1 and 2;
/// each denies on any other); 0.2.0 findings have no numbers, 0.3.0's and
/// the stock policy's do.
#[test]
fn modules_built_for_contracts_0_2_0_and_0_3_0_run_beside_a_current_one() {
    let gate = gate_dir(
        "name = \"mixed\"\n\
         [rollout.abort]\nmax_error_rate = 0.01\nmax_latency_ratio = 1.3\n\
         max_business_drop = 0.1\nmin_requests = 500\n\
         [[policy]]\nname = \"legacy\"\nmodule = \"legacy.wasm\"\nphases = [\"verify\"]\n\
         [[policy]]\nname = \"verify\"\nmodule = \"builtin:verify\"\nphases = [\"verify\"]\n\
         [[policy]]\nname = \"previous\"\nmodule = \"previous.wasm\"\nphases = [\"verify\"]\n",
    );
    std::fs::copy(fixture("contract_0_2"), gate.path().join("legacy.wasm")).unwrap();
    std::fs::copy(fixture("contract_0_3"), gate.path().join("previous.wasm")).unwrap();
    let (code, record) = eval_json(
        gate.path(),
        &["--phase", "verify", "--gate", "gate.toml"],
        &snapshot("verify-allow"),
    );
    assert_eq!(code, Some(0), "{record:#}");
    let legacy = &record["policies"][0];
    assert_eq!(legacy["decision"], "allow", "{legacy:#}");
    assert_eq!(
        legacy["findings"][0]["message"],
        "read the snapshot of 2026-11-26T14:00:00Z"
    );
    assert!(legacy["findings"][0].get("observed_value").is_none());
    let error_rate = record["policies"][1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "error-rate")
        .unwrap();
    assert_eq!(error_rate["unit"], "percent");
    assert_eq!(error_rate["threshold_value"], 0.01);
    let previous = &record["policies"][2];
    assert_eq!(previous["decision"], "allow", "{previous:#}");
    assert_eq!(
        previous["findings"][0]["message"],
        "read the snapshot of 2026-11-26T14:00:00Z"
    );
    assert_eq!(previous["findings"][0]["observed_value"], 2.0);
    shipgate()
        .arg("inspect")
        .arg(fixture("contract_0_3"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("shipgate:policy/types@0.3.0"));
    shipgate()
        .arg("inspect")
        .arg(fixture("contract_0_2"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("shipgate:policy/types@0.2.0"));
}

#[test]
fn shipgate_profile_perfmap_names_policy_code_for_perf() {
    let run = |profile: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
        command
            .args(["eval", "--phase", "abort", "--snapshot"])
            .arg(snapshot("abort-allow"))
            .env("SHIPGATE_CACHE_DIR", cache_dir())
            .env_remove("SHIPGATE_PROFILE")
            .stdout(std::process::Stdio::null());
        if let Some(profile) = profile {
            command.env("SHIPGATE_PROFILE", profile);
        }
        let mut child = command.spawn().unwrap();
        let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        assert!(child.wait().unwrap().success());
        let written = std::fs::read_to_string(&map).ok();
        let _ = std::fs::remove_file(&map);
        written
    };
    let map = run(Some("perfmap")).expect("a perf map was written");
    assert!(map.lines().any(|line| line.contains("wasm")), "{map}");
    assert_eq!(run(None), None, "no perf map unless asked for");
}

#[test]
fn schemas_are_json_schema_documents() {
    for (what, field) in [("snapshot", "rollback_plan"), ("gate", "min_stage_minutes")] {
        let output = shipgate().args(["schema", what]).output().unwrap();
        let json = json_output(&output);
        assert_eq!(
            json["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(json.to_string().contains(field), "{what}");
    }
}

#[test]
fn check_loads_every_policy_of_every_phase() {
    shipgate()
        .args(["check", "--gate"])
        .arg(crate::support::example("gate.toml"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "✓ preflight [builtin:preflight] preflight · sha256 ",
        ))
        .stdout(predicate::str::contains(
            "✓ canary [builtin:canary] promotion, abort · sha256 ",
        ));
}

#[test]
fn check_reports_a_config_error_of_a_phase_not_being_evaluated() {
    let dir = gate_dir(
        "name = \"g\"\n[[policy]]\nname = \"verify\"\nmodule = \"builtin:verify\"\nphases = [\"verify\"]\n\
         config = { min_observation_minute = 30 }\n",
    );
    crate::support::shipgate_in(dir.path())
        .args(["check", "--gate", "gate.toml"])
        .assert()
        .code(65)
        .stderr(predicate::str::starts_with(
            "shipgate: error: gate.toml: policy 'verify': config: unknown field `min_observation_minute`",
        ));
}

#[test]
fn check_names_a_module_that_would_fail_closed() {
    let dir = gate_dir(
        "name = \"g\"\n[[policy]]\nname = \"team\"\nmodule = \"missing.wasm\"\nphases = [\"abort\"]\n",
    );
    crate::support::shipgate_in(dir.path())
        .args(["check", "--gate", "gate.toml"])
        .assert()
        .code(65)
        .stdout(predicate::str::starts_with("✗ team [missing.wasm]: policy could not be loaded: module file 'missing.wasm' not found"))
        .stderr(predicate::str::starts_with("shipgate: error: gate.toml: policy 'team': policy could not be loaded"));
}
