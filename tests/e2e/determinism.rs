use std::path::Path;

use serde_json::Value;

use crate::support::{fixture, shipgate_in, snapshot};

/// The decision record without what legitimately changes per run: the id,
/// the host's timestamp and how long each policy took.
fn stable_part(mut record: Value) -> String {
    let object = record.as_object_mut().unwrap();
    object.remove("decision_id");
    object.remove("evaluated_at");
    for policy in object["policies"].as_array_mut().unwrap() {
        policy.as_object_mut().unwrap().remove("duration_us");
    }
    serde_json::to_string(&record).unwrap()
}

fn eval_json(dir: &Path, args: &[&str], snapshot_name: &str) -> Value {
    crate::support::eval_json(dir, args, &snapshot(snapshot_name)).1
}

#[test]
fn the_same_inputs_give_byte_identical_verdicts_across_processes() {
    let dir = crate::support::repo();
    for (phase, name) in [
        ("abort", "abort-rollback"),
        ("preflight", "preflight-blocked"),
        ("verify", "verify-deny"),
    ] {
        let first = stable_part(eval_json(&dir, &["--phase", phase], name));
        let second = stable_part(eval_json(&dir, &["--phase", phase], name));
        assert_eq!(first, second, "{name}");
    }
}

#[test]
fn a_policy_reading_clocks_and_randomness_is_still_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).unwrap();
    std::fs::write(
        dir.path().join("gate.toml"),
        "name = \"clock\"\n[[policy]]\nname = \"clock\"\nmodule = \"hostile.wasm\"\nphases = [\"abort\"]\n\
         config = { behaviour = \"clock-and-random\" }\n",
    )
    .unwrap();
    let args = ["--phase", "abort", "--gate", "gate.toml"];
    let first = eval_json(dir.path(), &args, "abort-allow");
    let second = eval_json(dir.path(), &args, "abort-allow");
    assert_eq!(stable_part(first.clone()), stable_part(second));
    let findings = &first["policies"][0]["findings"];
    // The wall clock is the snapshot's `now` (2026-11-26T14:00:00Z) and
    // monotonic time does not move.
    assert_eq!(findings[0]["message"], "1795701600");
    assert_eq!(findings[1]["message"], "0");
    assert_eq!(
        first["policies"][0]["log"][0],
        "wall clock 1795701600, snapshot now 2026-11-26T14:00:00Z"
    );
    // Randomness is seeded from the snapshot: another snapshot, other numbers.
    let other = eval_json(dir.path(), &args, "promotion-allow");
    assert_ne!(
        findings[2]["message"],
        other["policies"][0]["findings"][2]["message"]
    );
}

#[test]
fn the_decision_log_replays_identically_and_catches_a_changed_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    for (phase, name, code) in [
        ("abort", "abort-rollback", 2),
        ("promotion", "promotion-hold", 1),
        ("preflight", "preflight-ready", 0),
    ] {
        shipgate_in(dir.path())
            .args([
                "eval",
                "--phase",
                phase,
                "--decision-log",
                "decisions.jsonl",
                "--snapshot",
            ])
            .arg(snapshot(name))
            .assert()
            .code(code);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 3);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["decision"], "rollback");
    assert_eq!(first["snapshot"]["deployment"]["id"], "d-4812");
    assert!(
        first["snapshot"].get("gate").is_none(),
        "the log keeps the caller's snapshot"
    );

    shipgate_in(dir.path())
        .args(["replay", "decisions.jsonl"])
        .assert()
        .code(0)
        .stdout("replayed 3 decision(s): 3 identical, 0 differ\n");

    // A record whose verdict was edited no longer matches its replay.
    let finding = "\"message\":\"canary error rate 4.1% exceeds 1.0%\"";
    assert!(text.contains(finding));
    let tampered = text.replacen(finding, "\"message\":\"canary error rate looks fine\"", 1);
    std::fs::write(&log, tampered).unwrap();
    let output = shipgate_in(dir.path())
        .args(["replay", "decisions.jsonl"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("line 1: decision "), "{stdout}");
    assert!(
        stdout.ends_with("replayed 3 decision(s): 2 identical, 1 differ\n"),
        "{stdout}"
    );

    // A record whose snapshot was edited is refused for what it is, even
    // where the edit would not change the decision.
    let deployment = "\"id\":\"d-4812\"";
    assert!(text.contains(deployment));
    let edited = text.replacen(deployment, "\"id\":\"d-4813\"", 1);
    std::fs::write(&log, edited).unwrap();
    let output = shipgate_in(dir.path())
        .args(["replay", "decisions.jsonl"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("decisions.jsonl:1: the snapshot was edited after it was recorded"),
        "{stderr}"
    );
}

#[test]
fn replay_refuses_records_made_with_another_gate() {
    let dir = tempfile::tempdir().unwrap();
    shipgate_in(dir.path())
        .args([
            "eval",
            "--phase",
            "abort",
            "--decision-log",
            "log.jsonl",
            "--snapshot",
        ])
        .arg(snapshot("abort-allow"))
        .assert()
        .code(0);
    let output = shipgate_in(dir.path())
        .args(["replay", "log.jsonl", "--gate"])
        .arg(crate::support::example("gate.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("log.jsonl:1: decision "), "{stderr}");
    assert!(stderr.contains("pass that gate with --gate"), "{stderr}");
}
