use crate::support::{json_output, shipgate, snapshot};

fn stdout_of(phase: &str, name: &str, format: &str) -> String {
    let output = shipgate()
        .args(["eval", "--phase", phase, "--format", format, "--snapshot"])
        .arg(snapshot(name))
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn text_puts_the_decision_first_then_each_failing_check_with_its_evidence() {
    let text = stdout_of("abort", "abort-rollback", "text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ROLLBACK  abort · gate default");
    assert_eq!(
        lines[1],
        "canary error rate 4.1% exceeds 1.0% (and 3 more failing checks)"
    );
    assert!(text.contains("  ✗✗ error-rate (rollback): canary error rate 4.1% exceeds 1.0%\n      observed 4.1%, threshold <= 1.0%\n"), "{text}");
    assert!(text.contains("  ✓ 3 checks passed\n"), "{text}");
}

#[test]
fn text_for_an_allow_is_short() {
    let text = stdout_of("verify", "verify-allow", "text");
    assert!(
        text.starts_with("ALLOW  verify · gate default\nall 13 checks passed\n"),
        "{text}"
    );
    assert!(!text.contains('✗'), "{text}");
}

#[test]
fn json_is_the_decision_record() {
    let output = shipgate()
        .args([
            "eval",
            "--phase",
            "promotion",
            "--format",
            "json",
            "--snapshot",
        ])
        .arg(snapshot("promotion-hold"))
        .output()
        .unwrap();
    let json = json_output(&output);
    for key in [
        "decision_id",
        "phase",
        "decision",
        "summary",
        "policies",
        "snapshot_sha256",
        "gate_sha256",
        "evaluated_at",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json:#}");
    }
    let policy = &json["policies"][0];
    assert_eq!(policy["name"], "canary");
    assert_eq!(policy["mode"], "enforce");
    assert_eq!(policy["error"], serde_json::Value::Null);
    assert_eq!(policy["module_sha256"].as_str().unwrap().len(), 64);
    let hold = policy["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "stage-duration")
        .unwrap();
    assert_eq!(hold["decision"], "deny");
    assert_eq!(
        hold["message"],
        "hold: 6m 0s of 15m 0s observed in this stage, 9m 0s left"
    );
}

#[test]
fn github_format_annotates_failures_and_writes_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let output = shipgate()
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args([
            "eval",
            "--phase",
            "preflight",
            "--format",
            "github",
            "--snapshot",
        ])
        .arg(snapshot("preflight-blocked"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("::error title=shipgate preflight::preflight/ci-commit: CI ran on 4c2e0aa, but 9f8d111 is being deployed (observed 4c2e0aa, threshold = 9f8d111)\n"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("::error title=shipgate preflight::preflight/")
            .count(),
        5,
        "{stdout}"
    );
    // The decision leads: GitHub shows only the first 10 error annotations.
    assert!(
        stdout.starts_with("::error title=shipgate preflight::deny: CI ran on"),
        "{stdout}"
    );
    // The text report follows with command processing stopped: no line a
    // policy or snapshot wrote can act as a workflow command.
    let (_, rest) = stdout.split_once("::stop-commands::").expect("stopped");
    let (token, report) = rest.split_once('\n').unwrap();
    assert_eq!(token.len(), 32, "{token}");
    assert!(
        report.trim_end().ends_with(&format!("::{token}::")),
        "{report}"
    );
    assert!(report.contains("DENY  preflight"), "{report}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        markdown.starts_with("### shipgate preflight: **deny**"),
        "{markdown}"
    );
    assert!(markdown.contains("| ✗ | `rollback-tested` | 9m 0s | <= 5m 0s | tested rollback time 9m 0s exceeds 5m 0s |"), "{markdown}");
}

#[test]
fn github_format_gives_a_notice_on_allow() {
    let stdout = stdout_of("abort", "abort-allow", "github");
    assert!(
        stdout.starts_with("::notice title=shipgate abort::allow: "),
        "{stdout}"
    );
}

/// A snapshot whose business metric's name carries terminal escapes (erase
/// the line, back to its start, write ALLOW) cannot rewrite the decision on
/// screen or in GitHub's log: every control character is written out.
#[test]
fn escapes_in_snapshot_text_reach_no_terminal() {
    let text = std::fs::read_to_string(snapshot("abort-rollback")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let forged = "orders\u{1b}[2K\rALLOW  abort";
    for cohort in ["baseline", "canary"] {
        let business = value["metrics"][cohort]["business"]
            .as_object_mut()
            .unwrap();
        let orders = business.remove("orders").unwrap();
        business.insert(forged.to_string(), orders);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.json");
    std::fs::write(&path, value.to_string()).unwrap();
    for format in ["text", "github"] {
        let output = shipgate()
            .args([
                "eval",
                "--phase",
                "abort",
                "--format",
                format,
                "-v",
                "--snapshot",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{format}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            !stdout
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{format}: {stdout:?}"
        );
        assert!(stdout.contains("orders\\x1b[2K"), "{format}: {stdout}");
    }
}
