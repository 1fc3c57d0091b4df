use serde_json::{Value, json};

use crate::authoring::readme_block;
use crate::server::Server;
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
    assert_eq!(lines.len(), 4, "{lines:?}");
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

    // The same judgement from the canary config as Kayenta stores it: every
    // line after the gate's own (name and digest) is the same.
    let from_file = argv(&lines[3]);
    let output = run(&from_file.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let findings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.contains("gate "))
            .map(str::to_string)
            .collect()
    };
    let from_gate = run(&regressed.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(findings(&stdout(&output)), findings(&stdout(&from_gate)));
}

/// A judgement too large for the judge to print is the request's
/// problem, said as such (exit 65), never shipgate's fault.
#[test]
fn a_request_of_too_many_series_is_refused_as_too_large() {
    let many = request(|r| {
        let pair = r["metricSetPairList"][1].clone();
        let pairs: Vec<Value> = (0..400)
            .map(|i| {
                let mut pair = pair.clone();
                pair["tags"] = json!({"pod": format!("checkout-{i:04}")});
                pair
            })
            .collect();
        r["metricSetPairList"] = pairs.into();
    });
    let output = judge(&many, "json");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("KiB, more than the 60 KiB a policy may print: judge fewer metrics"),
        "{stderr}"
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
    // Kayenta routes only that name here; its judgeConfigurations pick
    // the sequential judge, and give it its options.
    let remote_sequential = request(|r| {
        r["canaryConfig"]["judge"] = json!({"name": "RemoteJudge-v1.0",
            "judgeConfigurations": {"judge": "shipgate-sequential-v1", "alpha": 0.05, "margin": 0.25}});
    });
    let output = judge(&remote_sequential, "json");
    assert_eq!(json_output(&output), result);
    let unknown = request(|r| {
        r["canaryConfig"]["judge"] = json!({"name": "RemoteJudge-v1.0",
            "judgeConfigurations": {"judge": "dredd-v1.0"}});
    });
    let output = judge(&unknown, "json");
    assert_eq!(output.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            "canaryConfig.judge.judgeConfigurations.judge: `dredd-v1.0` is not a judge shipgate runs"
        ),
        "{}",
        String::from_utf8_lossy(&output.stderr)
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

/// Kayenta's `RemoteJudge-v1.0` with `kayenta.remoteJudge.endpoint.baseUrl`
/// set as the README shows: Retrofit 1 appends `/judge` to the base URL, and
/// the body is the request as Kayenta serializes it. The server, started with
/// the README's command, answers what `shipgate judge` prints, refuses what
/// it cannot judge in its own words, and bounds the body on its own.
#[test]
fn kayenta_s_remote_judge_gets_from_the_server_what_the_command_prints() {
    let intro = "remote judge at `POST /v1/kayenta/judge`";
    let line = readme_block(intro).concat();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find(intro).unwrap()..];
    let base_url = section
        .lines()
        .find_map(|line| line.trim().strip_prefix("baseUrl: "))
        .expect("the README configures Kayenta's baseUrl");
    let path = format!("{}/judge", &base_url[base_url.find("/v1/").unwrap()..]);
    assert_eq!(path, "/v1/kayenta/judge");

    // As written, but on a free port: tests never take a fixed one.
    let args: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(args[..2], ["shipgate", "serve"], "{line}");
    let mut command = Server::command();
    for arg in &args[2..] {
        command.arg(arg.replace("127.0.0.1:8080", "127.0.0.1:0"));
    }
    let server = Server::spawn(command);
    let example = request(|_| {});
    let body: Value = serde_json::from_slice(&std::fs::read(example.path()).unwrap()).unwrap();
    let (status, answer) = server.post(&path, &body);
    assert_eq!(status, 200, "{answer}");
    let printed = json_output(&judge(&example, "json"));
    assert_eq!(answer, printed);
    assert!(
        server
            .metrics()
            .contains("shipgate_kayenta_judgements_total{classification=\"Pass\"} 1\n"),
        "{}",
        server.metrics()
    );

    let mut unknown = body.clone();
    unknown["canaryConfig"]["judge"]["name"] = "NetflixACAJudge-v2.0".into();
    let (status, answer) = server.post(&path, &unknown);
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("canaryConfig.judge.name: `NetflixACAJudge-v2.0` is not a judge"),
        "{error}"
    );

    let mut long = body.clone();
    long["metricSetPairList"][0]["values"]["control"] = json!(vec![1.5; 12_000]);
    let (status, answer) = server.post(&path, &long);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(
            "metricSetPairList[0].values.control: 12000 points, more than the limit of 10080"
        ),
        "{answer}"
    );
    // Beyond --max-judge-body-bytes, refused unread.
    let small = Server::start(
        &repo().join("integrations/gate.toml"),
        &["--adapters", "kayenta", "--max-judge-body-bytes", "100000"],
    );
    let mut large = body.clone();
    large["metricSetPairList"][0]["values"]["control"] = json!(vec![1.5; 30_000]);
    let (status, answer) = small.post(&path, &large);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--max-judge-body-bytes (100000)"),
        "{answer}"
    );
    // Only the adapters named are served, and Kayenta's only when named.
    assert_eq!(server.evaluate("abort-allow").0, 404);
    let default = Server::start(&repo().join("integrations/gate.toml"), &[]);
    assert_eq!(default.post(&path, &body).0, 404);
    let refused = Server::command()
        .args(["--gate", "integrations/gate.toml", "--max-judging", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("--max-judging must be between 1 and --max-evaluating"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
