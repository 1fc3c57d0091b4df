use std::path::Path;

use predicates::prelude::*;

use crate::support::{example, shipgate, shipgate_in, snapshot};

fn eval_snapshot_text(text: &str) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    std::fs::write(&file, text).unwrap();
    shipgate_in(dir.path())
        .args(["eval", "--phase", "abort", "--snapshot", "snapshot.json"])
        .assert()
}

fn example_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot("abort-allow")).unwrap()).unwrap();
    edit(&mut json);
    serde_json::to_string_pretty(&json).unwrap()
}

#[test]
fn malformed_json_names_file_line_and_column() {
    eval_snapshot_text("{\n  \"schema_version\": 1,\n  \"now\": \n}\n")
        .code(65)
        .stdout("")
        .stderr(
            "shipgate: error: snapshot.json: not valid JSON: expected value at line 4 column 1\n",
        );
}

#[test]
fn a_wrong_type_names_the_json_path_and_line() {
    let text = example_with(|s| s["metrics"]["canary"]["errors"] = "eleven".into());
    let line = text.lines().position(|l| l.contains("\"eleven\"")).unwrap() + 1;
    eval_snapshot_text(&text).code(65).stderr(format!(
        "shipgate: error: snapshot.json: metrics.canary.errors: invalid type: string \"eleven\", expected f64 at line {line} column 24\n"
    ));
}

#[test]
fn a_snapshot_carrying_gate_is_refused() {
    let text = example_with(|s| {
        s["gate"] = serde_json::json!({"rollout": {"abort": {"max_error_rate": 0.5}}})
    });
    eval_snapshot_text(&text)
        .code(65)
        .stderr(predicate::str::starts_with(
            "shipgate: error: snapshot.json: gate: a snapshot may not carry `gate`",
        ));
}

#[test]
fn unknown_gate_keys_are_reported_with_line_and_column() {
    let dir =
        crate::support::gate_dir("name = \"typo\"\n\n[rollout.abort]\nmax_eror_rate = 0.01\n");
    eval_with_gate(dir.path(), "abort", "abort-allow")
        .code(65)
        .stderr("shipgate: error: gate.toml:4:1: unknown key 'max_eror_rate' (did you mean 'max_error_rate'?)\n");
}

#[test]
fn a_policy_config_typo_is_reported_when_the_gate_loads() {
    let dir = crate::support::gate_dir(
        "name = \"g\"\n[[policy]]\nname = \"preflight\"\nmodule = \"builtin:preflight\"\nphases = [\"preflight\"]\nconfig = { max_rollbak_seconds = 120 }\n",
    );
    eval_with_gate(dir.path(), "preflight", "preflight-ready")
        .code(65)
        .stderr(predicate::str::starts_with(
            "shipgate: error: gate.toml: policy 'preflight': config: unknown field `max_rollbak_seconds`",
        ));
}

#[test]
fn binding_a_policy_to_a_phase_it_does_not_evaluate_is_an_error() {
    let dir = crate::support::gate_dir(
        "name = \"g\"\n[[policy]]\nname = \"canary\"\nmodule = \"builtin:canary\"\nphases = [\"verify\"]\n",
    );
    eval_with_gate(dir.path(), "verify", "verify-allow")
        .code(65)
        .stderr("shipgate: error: gate.toml: policy 'canary': module 'builtin:canary' does not evaluate the verify phase (it evaluates: promotion, abort)\n");
}

/// `shipgate eval --gate gate.toml` in `dir`.
fn eval_with_gate(dir: &Path, phase: &str, snapshot_name: &str) -> assert_cmd::assert::Assert {
    shipgate_in(dir)
        .args([
            "eval",
            "--phase",
            phase,
            "--gate",
            "gate.toml",
            "--snapshot",
        ])
        .arg(snapshot(snapshot_name))
        .assert()
}

fn gate_with_module(dir: &Path, module_line: &str) {
    std::fs::write(
        dir.join("gate.toml"),
        format!("name = \"g\"\n[[policy]]\nname = \"team\"\n{module_line}\nphases = [\"abort\"]\n"),
    )
    .unwrap();
}

fn eval_abort_in(dir: &Path) -> serde_json::Value {
    let args = ["--phase", "abort", "--gate", "gate.toml"];
    let (status, json) = crate::support::eval_json(dir, &args, &snapshot("abort-allow"));
    assert_eq!(status, Some(2), "abort fails closed to rollback");
    json
}

#[test]
fn a_pin_mismatch_fails_closed_and_names_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::support::fixture("hostile"),
        dir.path().join("team.wasm"),
    )
    .unwrap();
    let wrong = "0".repeat(64);
    gate_with_module(
        dir.path(),
        &format!("module = \"team.wasm\"\nsha256 = \"{wrong}\""),
    );
    let json = eval_abort_in(dir.path());
    let error = json["policies"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("policy could not be loaded: module 'team.wasm' has sha256 "),
        "{error}"
    );
    assert!(
        error.ends_with(&format!("but the gate pins {wrong}")),
        "{error}"
    );
}

#[test]
fn a_missing_module_in_a_gate_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    gate_with_module(dir.path(), "module = \"nowhere.wasm\"");
    let json = eval_abort_in(dir.path());
    let error = json["policies"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("policy could not be loaded: module file 'nowhere.wasm' not found in "),
        "{error}"
    );
}

#[test]
fn a_module_path_cannot_leave_the_gate_directory() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("gates");
    std::fs::create_dir(&inner).unwrap();
    std::fs::copy(
        crate::support::fixture("hostile"),
        dir.path().join("outside.wasm"),
    )
    .unwrap();
    gate_with_module(&inner, "module = \"../outside.wasm\"");
    let json = eval_abort_in(&inner);
    let error = json["policies"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("module path '../outside.wasm' leaves the gate file's directory"),
        "{error}"
    );
}

#[test]
fn a_missing_module_on_the_command_line_is_a_missing_input() {
    shipgate()
        .args([
            "eval",
            "--phase",
            "abort",
            "--policy",
            "nope.wasm",
            "--snapshot",
        ])
        .arg(snapshot("abort-allow"))
        .assert()
        .code(66)
        .stderr("shipgate: error: nope.wasm: no such module file\n");
}

#[test]
fn missing_files_exit_66() {
    shipgate()
        .args([
            "eval",
            "--phase",
            "abort",
            "--snapshot",
            "no-such-snapshot.json",
        ])
        .assert()
        .code(66)
        .stderr("shipgate: error: no-such-snapshot.json: no such file\n");
    shipgate()
        .args([
            "eval",
            "--phase",
            "abort",
            "--gate",
            "no-such-gate.toml",
            "--snapshot",
        ])
        .arg(snapshot("abort-allow"))
        .assert()
        .code(66)
        .stderr("shipgate: error: no-such-gate.toml: no such file\n");
}

#[test]
fn a_mistyped_flag_exits_64_never_2() {
    shipgate()
        .args(["eval", "--phse", "abort", "--snapshot"])
        .arg(snapshot("abort-allow"))
        .assert()
        .code(64)
        .stderr(predicate::str::contains("unexpected argument '--phse'"));
    shipgate()
        .args(["eval", "--phase", "rollout", "--snapshot", "x.json"])
        .assert()
        .code(64);
    shipgate().args(["evaluate"]).assert().code(64);
    shipgate().assert().code(64);
}

#[test]
fn help_and_version_exit_0_and_help_documents_exit_codes() {
    shipgate()
        .args(["eval", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("64  usage error"));
    shipgate().arg("--version").assert().code(0);
}

#[test]
fn the_example_gate_file_loads() {
    shipgate()
        .args(["eval", "--phase", "preflight", "--gate"])
        .arg(example("gate.toml"))
        .arg("--snapshot")
        .arg(snapshot("preflight-ready"))
        .assert()
        .code(0);
}
