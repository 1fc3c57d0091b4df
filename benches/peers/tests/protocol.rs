//! `shipgate-peers` answers as the benchmark expects, and names what it
//! cannot do. (Also: this test makes `cargo test --workspace` build the
//! binary, so the benchmark's own tests find it.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The repository's abort-rollback example with the default gate, as the
/// benchmark hands it over.
fn input(dir: &std::path::Path) -> std::path::PathBuf {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/snapshots/abort-rollback.json"
    );
    let mut snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    snapshot["gate"] = shipgate_policy::testing::default_gate();
    let path = dir.join("0.json");
    std::fs::write(&path, snapshot.to_string()).unwrap();
    path
}

fn ask(lines: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipgate-peers"))
        .arg(input(dir.path()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn each_engine_answers_its_decision_and_a_time() {
    let output = ask("rego 0\ncel 0\n");
    assert!(output.status.success(), "{output:?}");
    let answers = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in answers {
        let (decision, nanos) = answer.split_once(' ').unwrap();
        assert_eq!(decision, "rollback");
        assert!(nanos.parse::<u64>().unwrap() > 0);
    }
}

#[test]
fn an_unknown_engine_or_input_is_named() {
    for (line, expected) in [
        ("lua 0\n", "no engine lua"),
        ("rego 3\n", "no input 3"),
        ("rego\n", "expected ENGINE INDEX"),
    ] {
        let output = ask(line);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{line}: {stderr}");
    }
}
