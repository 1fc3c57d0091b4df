use serde_json::{Value, json};

use crate::authoring::readme_block;
use crate::support::{json_output, repo, shipgate_in};

fn run(args: &[&str]) -> std::process::Output {
    shipgate_in(&repo()).args(args).output().unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_readme_judge_commands_run_as_written() {
    let lines = readme_block("### Judging canaries over time series");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let args = |line: &str| -> Vec<String> {
        assert!(line.starts_with("shipgate "), "{line}");
        line.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let argv = |line: &str| args(line);

    let regressed = argv(&lines[0]);
    let output = run(&regressed.iter().map(String::as_str).collect::<Vec<_>>());
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.starts_with("ROLLBACK  abort"), "{text}");
    assert!(
        text.contains("latency_p99_ms High: canary − baseline +"),
        "{text}"
    );
    assert!(
        text.contains("(critical)"),
        "the error rate is critical: {text}"
    );

    let healthy = argv(&lines[1]);
    let output = run(&healthy.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    let judge = argv(&lines[2]);
    let output = run(&judge.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let result = json_output(&output);
    assert_eq!(result["judgeName"], "NetflixACAJudge-v1.0");
    assert_eq!(result["score"]["score"], 100.0);
    assert_eq!(result["score"]["classification"], "Pass");
    let results = result["results"].as_array().unwrap();
    // The muted metric failed, and is shown but not scored.
    let failing = &results[0];
    assert_eq!(failing["name"], "Failing metric");
    assert_eq!(failing["id"], "5b6f0fa0-1c37-4b8e-a0d2-3f0f7c1b9a01");
    assert_eq!(failing["tags"], json!({"pod": "checkout-7d9f"}));
    assert_eq!(failing["classification"], "High");
    assert_eq!(
        (&failing["muted"], &failing["critical"]),
        (&json!(true), &json!(true))
    );
    let metadata = &failing["resultMetadata"];
    for key in [
        "ratio",
        "ciLower",
        "ciUpper",
        "estimate",
        "bound",
        "effectSize",
        "pValue",
    ] {
        assert!(metadata[key].is_f64(), "{key}: {metadata}");
    }
    assert_eq!(metadata["nCanary"], 60);
    // Jackson's "NaN" is a gap: 59 canary points remain.
    assert_eq!(results[1]["resultMetadata"]["nCanary"], 59);
    assert_eq!(results[1]["experimentMetadata"]["stats"]["count"], 59);
    assert_eq!(
        result["groupScores"][0],
        json!({"name": "pod-group", "score": 100.0, "classification": "", "classificationReason": ""})
    );
}

/// The example request, changed.
fn request(change: impl FnOnce(&mut Value)) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(repo().join("examples/judge/kayenta-request.json")).unwrap();
    let mut request: Value = serde_json::from_str(&text).unwrap();
    change(&mut request);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), request.to_string()).unwrap();
    file
}

fn judge(file: &tempfile::NamedTempFile, format: &str) -> std::process::Output {
    run(&[
        "judge",
        "--kayenta-request",
        file.path().to_str().unwrap(),
        "--format",
        format,
    ])
}

#[test]
fn the_score_sets_the_exit_code_and_the_request_picks_the_judge() {
    // Unmuted and not critical, the failing metric halves the group: 50 is
    // Marginal.
    let marginal = request(|r| {
        r["canaryConfig"]["metrics"][0]["analysisConfigurations"]["canary"] =
            json!({"direction": "increase"});
    });
    let output = judge(&marginal, "text");
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("MARGINAL NetflixACAJudge-v1.0 50.0\n  ✗ Failing metric"),
        "{text}"
    );
    // Unmuted and critical: Fail.
    let fail = request(|r| {
        r["canaryConfig"]["metrics"][0]["analysisConfigurations"]["canary"]["muted"] = false.into();
    });
    let output = judge(&fail, "markdown");
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stdout(&output).contains("| Failing metric{pod=\"checkout-7d9f\"} | High |"));
    // The sequential judge, with its options from judgeConfigurations.
    let sequential = request(|r| {
        r["canaryConfig"]["judge"] = json!({"name": "shipgate-sequential-v1", "judgeConfigurations": {"alpha": 0.05, "margin": 0.25}});
    });
    let output = judge(&sequential, "json");
    let result = json_output(&output);
    assert_eq!(result["judgeName"], "shipgate-sequential-v1", "{result}");
    assert_eq!(result["results"][0]["classification"], "High");
    // The failing metric is muted; the other passes once inside its 25 %.
    assert_eq!(result["score"]["classification"], "Pass", "{result}");
    assert_eq!(output.status.code(), Some(0));
    // Kayenta names the remote judge in configs it routes here.
    let remote = request(|r| r["canaryConfig"]["judge"]["name"] = "RemoteJudge-v1.0".into());
    assert_eq!(
        json_output(&judge(&remote, "json"))["judgeName"],
        "NetflixACAJudge-v1.0"
    );
}

/// A change to a request, and what the refusal must say.
type Mistake = (Box<dyn FnOnce(&mut Value)>, &'static str);

#[test]
fn a_request_it_cannot_judge_exits_65_naming_the_field() {
    let cases: [Mistake; 6] = [
        (
            Box::new(|r| r["metricSetPairList"][0]["name"] = "Unknown metric".into()),
            "metricSetPairList[0].name: `Unknown metric` is not a metric of canaryConfig.metrics",
        ),
        (
            Box::new(|r| r["metricSetPairList"][1]["values"]["experiment"][3] = "Infinity".into()),
            "metricSetPairList[1].values.experiment[3]: Infinity is not a measurement",
        ),
        (
            Box::new(|r| r["canaryConfig"]["judge"]["name"] = "dredd-v1.0".into()),
            "canaryConfig.judge.name: `dredd-v1.0` is not a judge shipgate runs",
        ),
        (
            Box::new(|r| {
                r["canaryConfig"]["metrics"][1]["analysisConfigurations"]["canary"]["nanStratgy"] =
                    "replace".into()
            }),
            "metric `Successful metric`: unknown field `nanStratgy`",
        ),
        (
            Box::new(|r| {
                r["canaryConfig"]["metrics"][1]["analysisConfigurations"]["canary"]["critical"] =
                    "true".into()
            }),
            "expected a boolean",
        ),
        (
            Box::new(|r| {
                r.as_object_mut()
                    .unwrap()
                    .remove("scoreThresholds")
                    .map(drop)
                    .unwrap()
            }),
            "missing field `scoreThresholds`",
        ),
    ];
    for (change, why) in cases {
        let file = request(change);
        let output = judge(&file, "json");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(65), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(output.stdout.is_empty(), "no result on a refused request");
    }
    let output = run(&["judge", "--kayenta-request", "no-such-request.json"]);
    assert_eq!(output.status.code(), Some(66));
}

/// docs/JUDGEMENT.md's simulation, run as written; its table has a row per
/// data kind and number of looks.
#[test]
fn the_documented_simulation_runs_as_written() {
    let doc = std::fs::read_to_string(repo().join("docs/JUDGEMENT.md")).unwrap();
    let lines: Vec<&str> = doc.lines().filter(|l| l.starts_with("cargo run")).collect();
    assert_eq!(
        lines,
        ["cargo run --release -p shipgate-policy --example judge-sim -- --runs 2000"]
    );
    let output = std::process::Command::new("sh")
        .args(["-c", lines[0]])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = stdout(&output);
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| data"))
        .count();
    assert_eq!(rows, 12, "{table}");
    // The figures in the doc are this run's: the same seeds give the same table.
    assert!(
        doc.contains(table.trim_end()),
        "docs/JUDGEMENT.md shows another run:\n{table}"
    );
}
