use crate::support::{eval_json, example, repo, shipgate, snapshot};

/// Every bundled example decides as its name says, with the default gate
/// and with the example gate file, with the matching exit code (a verified
/// rollback is an allow).
#[test]
fn every_example_decides_as_named() {
    let cases = [
        ("preflight-ready", "preflight", "allow", 0),
        ("preflight-blocked", "preflight", "deny", 1),
        ("promotion-allow", "promotion", "allow", 0),
        ("promotion-hold", "promotion", "deny", 1),
        ("promotion-rollback", "promotion", "rollback", 2),
        ("abort-allow", "abort", "allow", 0),
        ("abort-rollback", "abort", "rollback", 2),
        ("verify-allow", "verify", "allow", 0),
        ("verify-deny", "verify", "deny", 1),
        ("verify-rollback", "verify", "rollback", 2),
        ("verify-rollback-restored", "verify", "allow", 0),
    ];
    for gate in [None, Some(example("gate.toml"))] {
        for (name, phase, decision, code) in cases {
            let mut args = vec!["--phase", phase];
            if let Some(gate) = &gate {
                args.extend(["--gate", gate.to_str().unwrap()]);
            }
            let (status, json) = eval_json(&repo(), &args, &snapshot(name));
            assert_eq!(json["decision"], decision, "{name} with {gate:?}: {json:#}");
            assert_eq!(status, Some(code), "{name} with {gate:?}");
            assert_eq!(json["phase"], phase);
        }
    }
}

#[test]
fn the_snapshot_can_come_from_standard_input() {
    let text = std::fs::read(snapshot("abort-rollback")).unwrap();
    shipgate()
        .args(["eval", "--phase", "abort", "--snapshot", "-"])
        .write_stdin(text)
        .assert()
        .code(2)
        .stdout(predicates::str::starts_with(
            "ROLLBACK  abort · gate default\n",
        ));
}

/// The example gate declares absolute latency limits; the default does not.
#[test]
fn the_gate_file_thresholds_reach_the_policy() {
    let gate = example("gate.toml");
    let (_, json) = eval_json(
        &repo(),
        &["--phase", "abort", "--gate", gate.to_str().unwrap()],
        &snapshot("abort-rollback"),
    );
    let findings = json["policies"][0]["findings"].as_array().unwrap();
    let p99 = findings
        .iter()
        .find(|f| f["check"] == "latency-p99")
        .expect("latency-p99 finding");
    assert_eq!(p99["decision"], "rollback");
    assert_eq!(p99["observed"], "1240 ms");
    assert_eq!(p99["threshold"], "<= 800 ms");
    assert_eq!(json["gate"], "checkout-production");
}

#[test]
fn policy_flag_runs_named_modules_under_the_gate() {
    let args = ["--phase", "abort", "--policy", "builtin:canary"];
    let (_, json) = eval_json(&repo(), &args, &snapshot("abort-allow"));
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["policies"][0]["name"], "canary");
    assert_eq!(json["policies"][0]["module"], "builtin:canary");
}

#[test]
fn shadow_policies_are_reported_but_do_not_decide() {
    let dir = crate::support::gate_dir(
        r#"name = "shadowed"
[rollout]
stages = [5, 10, 25, 50, 100]
min_stage_minutes = 15
[rollout.abort]
max_error_rate = 0.01
max_latency_ratio = 1.3
max_business_drop = 0.1

[[policy]]
name = "lenient"
module = "builtin:canary"
phases = ["abort"]
config = {}

[[policy]]
name = "strict-shadow"
module = "builtin:verify"
phases = ["verify"]
mode = "shadow"
"#,
    );
    // The only verify policy is in shadow mode: nothing enforces the phase.
    let (_, json) = eval_json(
        dir.path(),
        &["--phase", "verify", "--gate", "gate.toml"],
        &snapshot("verify-allow"),
    );
    assert_eq!(json["decision"], "deny");
    assert_eq!(
        json["summary"],
        "no enforcing policy evaluates the verify phase"
    );
    assert_eq!(json["policies"][0]["mode"], "shadow");
    assert_eq!(json["policies"][0]["decision"], "allow");
}

/// Two modules with the same file name are two policies, not one.
#[test]
fn policy_flags_with_the_same_file_name_both_run() {
    let dir = tempfile::tempdir().unwrap();
    for team in ["team-a", "team-b"] {
        std::fs::create_dir(dir.path().join(team)).unwrap();
        std::fs::copy(
            crate::support::custom_policy(),
            dir.path().join(team).join("rules.wasm"),
        )
        .unwrap();
    }
    let args = [
        "--phase",
        "promotion",
        "--policy",
        "team-a/rules.wasm",
        "--policy",
        "team-b/rules.wasm",
    ];
    let (_, json) = eval_json(dir.path(), &args, &snapshot("promotion-allow"));
    let policies = json["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rules", "team-b/rules.wasm"]);
    let modules: Vec<&str> = policies
        .iter()
        .map(|p| p["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["team-a/rules.wasm", "team-b/rules.wasm"]);
}
