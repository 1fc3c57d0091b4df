use crate::support::{
    custom_policy, eval_json, json_output, sha256_hex, shipgate, shipgate_in, snapshot,
};

/// The example gate with the custom module copied beside it and pinned.
fn pinned_gate(dir: &std::path::Path, pin: &str) {
    let module = custom_policy();
    let target = dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::copy(&module, target.join("change_freeze.wasm")).unwrap();
    let example =
        std::fs::read_to_string(crate::support::example("custom-policy/gate.toml")).unwrap();
    let module_line = "module = \"target/wasm32-wasip2/release/change_freeze.wasm\"\n";
    let pinned = example.replace(module_line, &format!("{module_line}sha256 = \"{pin}\"\n"));
    assert_ne!(pinned, example, "the example gate names the module");
    std::fs::write(dir.join("gate.toml"), pinned).unwrap();
}

#[test]
fn a_custom_policy_loads_by_path_with_its_pin_and_decides() {
    let dir = tempfile::tempdir().unwrap();
    let digest = sha256_hex(&std::fs::read(custom_policy()).unwrap());
    pinned_gate(dir.path(), &digest);
    // Thursday 2026-11-26, outside the end-of-year freeze: allowed.
    let args = ["--phase", "preflight", "--gate", "gate.toml"];
    let (_, json) = eval_json(dir.path(), &args, &snapshot("preflight-ready"));
    assert_eq!(json["decision"], "allow", "{json:#}");
    let freeze = &json["policies"][1];
    assert_eq!(freeze["name"], "change-freeze");
    assert_eq!(freeze["module_sha256"], digest.as_str());
    assert_eq!(freeze["findings"][1]["check"], "weekend");
    assert_eq!(freeze["findings"][1]["observed"], "Thursday");

    // The same snapshot on Christmas Eve is inside the freeze.
    let mut christmas: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot("preflight-ready")).unwrap()).unwrap();
    christmas["now"] = "2026-12-24T10:00:00Z".into();
    let output = shipgate_in(dir.path())
        .args([
            "eval",
            "--phase",
            "preflight",
            "--gate",
            "gate.toml",
            "--snapshot",
            "-",
        ])
        .write_stdin(christmas.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(
            "change-freeze: change freeze 'end-of-year freeze' until 2027-01-04T00:00:00Z"
        ),
        "{stdout}"
    );
}

#[test]
fn inspect_shows_the_digest_to_pin() {
    let module = custom_policy();
    let digest = sha256_hex(&std::fs::read(&module).unwrap());
    let output = shipgate()
        .arg("inspect")
        .arg(&module)
        .arg("--json")
        .output()
        .unwrap();
    let json = json_output(&output);
    assert_eq!(json["name"], "change-freeze");
    assert_eq!(json["sha256"], digest.as_str());
    assert_eq!(
        json["phases"],
        serde_json::json!(["preflight", "promotion"])
    );
}

#[test]
fn a_rebuilt_or_swapped_module_fails_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    pinned_gate(dir.path(), &"ab".repeat(32));
    let args = ["--phase", "promotion", "--gate", "gate.toml"];
    let (status, json) = eval_json(dir.path(), &args, &snapshot("promotion-allow"));
    assert_eq!(status, Some(1));
    let freeze = &json["policies"][0];
    assert_eq!(freeze["decision"], "deny");
    assert!(
        freeze["error"]
            .as_str()
            .unwrap()
            .contains("but the gate pins abab"),
        "{freeze:#}"
    );
}

/// A policy author's own unit tests run natively with plain `cargo test`.
#[test]
fn the_example_policy_unit_tests_pass_natively() {
    let repo = crate::support::repo();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = std::process::Command::new(cargo)
        .args(["test", "--manifest-path"])
        .arg(repo.join("examples/custom-policy/Cargo.toml"))
        .arg("--target-dir")
        .arg(repo.join("target/custom-policy-native"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("test result: ok. 4 passed"), "{stdout}");
}

/// The README's lines for the example, as written (in the copy under
/// target/): the fixtures pass through the module `shipgate build` built
/// and pinned in the example's gate.
#[test]
fn the_example_policys_fixtures_pass_in_its_pinned_gate() {
    let module = custom_policy();
    let copy = crate::support::example_copy();
    let gate = std::fs::read_to_string(copy.join("examples/custom-policy/gate.toml")).unwrap();
    let digest = sha256_hex(&std::fs::read(&module).unwrap());
    assert!(
        gate.contains(&format!("sha256 = \"{digest}\"")),
        "shipgate build pins the example gate:\n{gate}"
    );
    let output = shipgate_in(&copy)
        .args(["test", "examples/custom-policy/tests/policy"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.ends_with("4 passed, 0 failed\n"), "{stdout}");
}
