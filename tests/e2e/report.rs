//! Decisions people can see: the example rollout's decision log, made as
//! the README makes it, drawn as an HTML page that a real browser (headless
//! Chromium) renders, and drafted into the incident report kept in
//! `examples/`; and the Mermaid charts of `--format markdown` and the
//! GitHub step summary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{cache_key_file, repo, shipgate, shipgate_in, snapshot};

/// The lines of the README's ```sh block right after `intro`.
fn readme_block(intro: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let after = &readme[readme
        .find(intro)
        .unwrap_or_else(|| panic!("the README says {intro:?}"))..];
    let start = after.find("```sh\n").expect("a sh block follows") + "```sh\n".len();
    let end = after[start..].find("```").expect("the block ends");
    after[start..start + end].to_string()
}

/// Runs a README block with bash in `dir`, with this build's `shipgate`
/// first on PATH, and returns its output.
fn run_block(dir: &Path, block: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_shipgate")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = Command::new("bash")
        .arg("-c")
        .arg(block)
        .current_dir(dir)
        .env("PATH", path)
        .env("SHIPGATE_CACHE_DIR", crate::support::cache_dir())
        .env("SHIPGATE_CACHE_KEY_FILE", cache_key_file())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{block}\nfailed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A directory where the README's paths (`examples/...`) resolve, for the
/// files the commands write.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples")).unwrap();
    dir
}

/// The example rollout's decision log, made by the README's loop.
fn rollout_log(dir: &Path) -> PathBuf {
    run_block(
        dir,
        &readme_block("evaluates the example rollout's snapshots in order"),
    );
    let log = dir.join("rollout.jsonl");
    let records = std::fs::read_to_string(&log).unwrap();
    assert_eq!(records.lines().count(), 9, "one record per snapshot");
    log
}

/// Headless Chromium, as root needs it (no sandbox), with a profile of
/// its own; stderr carries the page's console messages.
fn chromium(dir: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let profile = dir.join("chromium-profile");
    Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (./test.sh installs the Debian package)")
}

#[test]
fn the_rollout_page_renders_in_a_real_browser() {
    let dir = workdir();
    rollout_log(dir.path());
    let page = dir.path().join("rollout.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains(" src=") && !html.contains(" href="),
        "self-contained: no script, nothing fetched"
    );

    let png = dir.path().join("rollout.png");
    let shot = chromium(
        dir.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1100,1900",
        ],
        &page,
    );
    let console = String::from_utf8_lossy(&shot.stderr);
    assert!(shot.status.success(), "{console}");
    assert!(
        !console.contains(":CONSOLE"),
        "the page loads without a console message (no error, no blocked load): {console}"
    );
    let image = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert_eq!(&image[1..4], b"PNG");
    assert!(
        image.len() > 20_000,
        "a drawn page, not a blank one: {} bytes",
        image.len()
    );

    // The DOM as the browser parsed it.
    let dom = chromium(dir.path(), &["--dump-dom"], &page);
    assert!(dom.status.success());
    let dom = String::from_utf8(dom.stdout).unwrap();
    for element in [
        "<svg id=\"timeline\"",
        "<svg id=\"error-rate\"",
        "<svg id=\"latency-ratio\"",
        "<table id=\"decisions\"",
        "<path class=\"weight\"",
        "<path class=\"limit\"",
        "<path class=\"canary\"",
        "<path class=\"baseline\"",
        "<path class=\"p99\"",
    ] {
        assert!(dom.contains(element), "{element} is on the page");
    }
    let count = |needle: &str| dom.matches(needle).count();
    assert_eq!(count("class=\"marker "), 9, "every decision is a marker");
    assert_eq!(count("class=\"marker allow\""), 7);
    assert_eq!(count("class=\"marker deny\""), 1, "the hold at 13:50");
    assert_eq!(count("class=\"marker rollback\""), 1);
    assert_eq!(count("<tr class=\"decision "), 9);
    // The failing checks under the hold and the rollback.
    assert!(
        dom.contains("<b>canary/stage-duration</b> deny: observed 10m 0s, threshold &gt;= 15m 0s")
    );
    assert!(dom.contains("<b>canary/error-rate</b> rollback: observed 4.1%, threshold &lt;= 1.0%"));
    assert!(
        dom.contains(
            "<b>canary/latency-p99</b> rollback: observed 1240 ms, threshold &lt;= 800 ms"
        )
    );
    assert!(dom.contains("stages 5% → 10% → 25%"), "{dom}");
}

/// A judging gate's decisions put each judged metric's two series on the
/// page, under the judge's sentence for it, a gap breaking the line.
#[test]
fn the_page_draws_the_series_a_judge_judged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("judged.jsonl");
    let snapshot = repo().join("examples/judge/regressed.json");
    let mut gapped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&snapshot).unwrap()).unwrap();
    gapped["metrics"]["series"]["latency_p99_ms"]["canary"][5] = serde_json::Value::Null;
    let gapped_file = dir.path().join("gapped.json");
    std::fs::write(&gapped_file, gapped.to_string()).unwrap();
    shipgate()
        .args(["eval", "--phase", "abort", "--gate"])
        .arg(repo().join("examples/judge/gate.toml"))
        .arg("--snapshot")
        .arg(&gapped_file)
        .arg("--decision-log")
        .arg(&log)
        .assert()
        .code(2);
    let page = dir.path().join("judged.html");
    shipgate()
        .arg("report")
        .arg(&log)
        .arg("--html")
        .arg(&page)
        .assert()
        .success();
    let dom = chromium(dir.path(), &["--dump-dom"], &page);
    assert!(dom.status.success());
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(dom.contains("<h2>Judged series</h2>"), "{dom}");
    let chart = |name: &str| -> String {
        let at = dom
            .find(&format!("<h3>{name}</h3>"))
            .unwrap_or_else(|| panic!("{name} has a chart: {dom}"));
        let rest = &dom[at..];
        rest[..rest.find("</svg>").unwrap()].to_string()
    };
    let latency = chart("latency_p99_ms");
    assert!(
        latency.contains("latency_p99_ms High: canary − baseline +"),
        "{latency}"
    );
    // A line per run of steps with values: a gap splits it.
    let runs = |cohort: &str| -> usize {
        let points = gapped["metrics"]["series"]["latency_p99_ms"][cohort]
            .as_array()
            .unwrap();
        let mut runs = 0;
        let mut previous_null = true;
        for point in points {
            if !point.is_null() && previous_null {
                runs += 1;
            }
            previous_null = point.is_null();
        }
        runs
    };
    for cohort in ["baseline", "canary"] {
        let lines = latency
            .matches(&format!("<path class=\"{cohort}\""))
            .count();
        assert_eq!(lines, runs(cohort), "{cohort}: {latency}");
    }
    assert!(runs("canary") >= 2, "the gap splits the canary's line");
    assert!(chart("error_rate").contains("<path class=\"canary\""));
}

/// Replaces every decision id (32 hex digits) with `<id>`: ids carry the
/// time they were made at, everything else in the report is the log's.
fn without_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 32 {
            out.push_str("<id>");
            rest = &rest[32..];
        } else {
            let step = rest.chars().next().unwrap().len_utf8().max(hex);
            out.push_str(&rest[..step]);
            rest = &rest[step..];
        }
    }
    out
}

#[test]
fn the_incident_report_of_the_example_rollback_is_drafted_from_its_log() {
    let dir = workdir();
    let log = rollout_log(dir.path());
    let output = run_block(dir.path(), &readme_block("drafts the incident report"));
    assert!(output.stdout.is_empty(), "the report went to the file");
    let report = std::fs::read_to_string(dir.path().join("incident.md")).unwrap();
    let example = std::fs::read_to_string(repo().join("examples/incident-report.md")).unwrap();
    assert_eq!(
        without_ids(&report),
        without_ids(&example),
        "examples/incident-report.md is what the example log drafts"
    );
    // It names the decision that rolled back, from the log.
    let records = std::fs::read_to_string(&log).unwrap();
    let rollback: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["decision"] == "rollback")
        .unwrap();
    let id = rollback["decision_id"].as_str().unwrap();
    assert!(report.contains(&format!("| Rollback decision | `{id}` |")));
    for fact in [
        "| 14:12:00 | stage 3 entered: 25% of traffic |",
        "| 14:28:00 | **rollback decided**: canary error rate 4.1% exceeds 1.0%",
        "| 14:28:30 | rollback started (`rollback.started_at`) |",
        "| 14:31:10 | rollback completed (`rollback.completed_at`) |",
        "| error rate | 4.1% | 0.08% | <= 1.0% |",
        "| canary | `latency-p99` | rollback | 1240 ms | <= 800 ms | canary p99 latency 1240 ms exceeds 800 ms |",
        "| `rollback-duration` | allow | 2m 40s | <= 5m 0s |",
        "| `rollback-record` | allow |",
        "## Root cause\n\n**To fill in.**",
        "## Action items\n\n**To fill in.**",
    ] {
        assert!(report.contains(fact), "{fact}\nnot in:\n{report}");
    }

    // By id too, and a decision that did not roll back is refused.
    let by_id = shipgate_in(dir.path())
        .args(["report", "rollout.jsonl", "--incident", id])
        .output()
        .unwrap();
    assert_eq!(by_id.status.code(), Some(0));
    assert_eq!(String::from_utf8(by_id.stdout).unwrap(), report);
    let allow = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["decision"] == "allow")
        .unwrap();
    shipgate()
        .arg("report")
        .arg(&log)
        .args(["--incident", allow["decision_id"].as_str().unwrap()])
        .assert()
        .code(65)
        .stderr(predicates::str::contains("is allow, not rollback"));
}

#[test]
fn a_log_of_several_deployments_needs_one_named_and_bad_logs_say_where() {
    let dir = workdir();
    let log = rollout_log(dir.path());
    // Another deployment's decision in the same log.
    shipgate()
        .args(["eval", "--phase", "abort", "--snapshot"])
        .arg(snapshot("abort-allow"))
        .arg("--decision-log")
        .arg(&log)
        .assert()
        .code(0);
    let html = dir.path().join("page.html");
    // `shipgate report LOG ARGS --html page.html`, its exit code and stderr.
    let report = |log: &Path, args: &[&str]| {
        let output = shipgate()
            .arg("report")
            .arg(log)
            .args(args)
            .arg("--html")
            .arg(&html)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (output.status.code(), stderr)
    };
    let (code, stderr) = report(&log, &[]);
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains(
            "holds decisions about 2 deployments (d-4812, d-5120): choose one with --deployment ID"
        ),
        "{stderr}"
    );
    assert_eq!(report(&log, &["--deployment", "d-5120"]).0, Some(0));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("class=\"marker ").count(), 9);
    let (code, stderr) = report(&log, &["--deployment", "d-1"]);
    assert_eq!(code, Some(65));
    assert!(
        stderr.contains("no decision about deployment 'd-1' (the log has: d-4812, d-5120)"),
        "{stderr}"
    );
    // A last record cut short by a crash is skipped, and said so.
    let torn = dir.path().join("torn.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"decision_id\": \"cut");
    std::fs::write(&torn, text).unwrap();
    let (code, stderr) = report(&torn, &["--deployment", "d-5120"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "torn.jsonl:11: the last record is cut short (a crash while writing); skipped"
        ),
        "{stderr}"
    );
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"decision\": \"allow\"}\n").unwrap();
    let (code, stderr) = report(&broken, &[]);
    assert_eq!(code, Some(65));
    assert!(
        stderr.contains("broken.jsonl:1: not a decision record"),
        "{stderr}"
    );
    shipgate()
        .arg("report")
        .arg(&log)
        .assert()
        .code(64)
        .stderr(predicates::str::contains("--html"));
}

/// `eval --format markdown` of the example abort rollback, with the example
/// gate (absolute latency limits: a chart per quantile).
fn abort_rollback_markdown() -> std::process::Output {
    shipgate()
        .args(["eval", "--phase", "abort", "--format", "markdown", "--gate"])
        .arg(repo().join("examples/gate.toml"))
        .arg("--snapshot")
        .arg(snapshot("abort-rollback"))
        .output()
        .unwrap()
}

#[test]
fn markdown_and_the_github_summary_chart_what_was_measured() {
    let output = abort_rollback_markdown();
    assert_eq!(output.status.code(), Some(2));
    let markdown = String::from_utf8(output.stdout).unwrap();
    assert!(markdown.contains("#### Measured against the limits"));
    assert!(markdown.contains(
        "title \"error-rate: canary vs baseline, limit ≤ 1.0%\"\n    x-axis [\"baseline\", \"canary\", \"limit\"]"
    ), "{markdown}");
    assert!(markdown.contains("xychart-beta horizontal\n    title \"Headroom"));

    let summary = tempfile::NamedTempFile::new().unwrap();
    shipgate()
        .args([
            "eval",
            "--phase",
            "abort",
            "--format",
            "github",
            "--snapshot",
        ])
        .arg(snapshot("abort-rollback"))
        .env("GITHUB_STEP_SUMMARY", summary.path())
        .assert()
        .code(2);
    let written = std::fs::read_to_string(summary.path()).unwrap();
    assert!(
        written.contains("```mermaid\nxychart-beta horizontal"),
        "{written}"
    );

    // As the README runs it.
    let dir = workdir();
    let check = run_block(
        dir.path(),
        &readme_block("abort thresholds. For the example gate"),
    );
    let check = String::from_utf8(check.stdout).unwrap();
    assert!(check.contains(
        "```mermaid\ngantt\n    title Rollout plan of checkout-production\n    dateFormat HH:mm\n"
    ));
    assert!(check.contains(
        "    stage 1 at 5 percent :s0, 00:00, 15m\n    stage 2 at 10 percent :s1, after s0, 15m\n"
    ));
    assert!(check.contains("    stage 5 at 100 percent :milestone, s4, after s3, 0m\n"));
    assert!(check.contains("| `max_latency_ms.p99` | 800 ms |"));
}

/// The Mermaid blocks of a Markdown text.
fn mermaid_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```mermaid\n")
        .skip(1)
        .map(|rest| rest[..rest.find("```").expect("the block ends")].to_string())
        .collect()
}

/// What GitHub does with a Mermaid block, done by Mermaid itself (the npm
/// package `./test.sh` installs under target/mermaid) in headless
/// Chromium: every chart of `eval --format markdown` and `check --format
/// markdown` must render, none as a syntax error.
#[test]
fn mermaid_renders_every_chart_the_markdown_carries() {
    let mermaid = repo().join("target/mermaid/node_modules/mermaid/dist/mermaid.min.js");
    assert!(
        mermaid.is_file(),
        "{} is missing: ./test.sh installs it (npm install --prefix target/mermaid mermaid@11.17.2)",
        mermaid.display()
    );
    let eval = abort_rollback_markdown();
    let check = shipgate()
        .args(["check", "--format", "markdown", "--gate"])
        .arg(repo().join("examples/gate.toml"))
        .output()
        .unwrap();
    let judged = shipgate()
        .args(["judge", "--format", "markdown", "--kayenta-request"])
        .arg(repo().join("examples/judge/kayenta-request.json"))
        .output()
        .unwrap();
    let mut blocks = mermaid_blocks(&String::from_utf8(eval.stdout).unwrap());
    blocks.extend(mermaid_blocks(&String::from_utf8(check.stdout).unwrap()));
    let series = mermaid_blocks(&String::from_utf8(judged.stdout).unwrap());
    assert_eq!(series.len(), 2, "a chart per judged metric: {series:?}");
    blocks.extend(series);
    assert!(
        blocks.len() >= 7,
        "charts of four checks with a baseline, headroom, the plan, two judged series"
    );

    let dir = tempfile::tempdir().unwrap();
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let charts: String = blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            format!(
                "<pre class=\"mermaid\" id=\"chart-{i}\">{}</pre>\n",
                escape(block)
            )
        })
        .collect();
    let page = dir.path().join("charts.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><script src=\"file://{}\"></script>\
             </head><body>{charts}<script>\
             mermaid.initialize({{startOnLoad: false, securityLevel: 'strict'}});\
             mermaid.run({{querySelector: '.mermaid'}})\
               .then(() => document.body.setAttribute('data-rendered', 'yes'))\
               .catch(e => document.body.setAttribute('data-error', String(e)));\
             </script></body></html>",
            mermaid.display()
        ),
    )
    .unwrap();
    let dom = chromium(
        dir.path(),
        &["--dump-dom", "--virtual-time-budget=20000"],
        &page,
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "mermaid did not finish: {dom}"
    );
    // Mermaid draws a syntax error as a chart of its own, of this role.
    assert!(!dom.contains("aria-roledescription=\"error\""), "{dom}");
    for (i, block) in blocks.iter().enumerate() {
        let at = dom.find(&format!("id=\"chart-{i}\"")).unwrap();
        let chart = &dom[at..];
        let end = chart.find("</pre>").unwrap();
        assert!(
            chart[..end].contains("<svg"),
            "chart {i} did not render:\n{block}\n{}",
            &chart[..end.min(2000)]
        );
    }
}

/// What a policy writes is text, wherever it is shown: a verdict full of
/// markup (from the hostile test policy, which returns the verdict its
/// config holds) cannot add an element to the HTML page, a link, image,
/// code span or cell to the Markdown, or a line to a Mermaid block.
#[test]
fn policy_text_stays_text_in_every_report() {
    let dir = workdir();
    std::fs::copy(
        crate::support::fixture("hostile"),
        dir.path().join("hostile.wasm"),
    )
    .unwrap();
    let evil = "<img src=x onerror=alert(1)>|`x`|[link](http://e)\n```\n<script>";
    let verdict = serde_json::json!({
        "decision": "rollback",
        "summary": evil,
        "findings": [{
            "check": format!("check{evil}"), "decision": "rollback", "message": evil,
            "observed": evil, "threshold": evil,
            "observed_value": 2.0, "threshold_value": 1.0, "baseline_value": 0.5,
            "unit": "ratio", "bound": "at-most"
        }]
    });
    let gate = serde_json::json!({
        "name": "hostile",
        "policy": [{"name": "echo", "module": "hostile.wasm", "phases": ["abort"],
                    "config": {"behaviour": "echo", "verdict": verdict}}]
    });
    let gate = toml::to_string(&gate).unwrap();
    std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
    let markdown = shipgate_in(dir.path())
        .args([
            "eval",
            "--phase",
            "abort",
            "--gate",
            "gate.toml",
            "--format",
            "markdown",
        ])
        .args(["--decision-log", "hostile.jsonl", "--snapshot"])
        .arg(snapshot("abort-allow"))
        .output()
        .unwrap();
    assert_eq!(markdown.status.code(), Some(2));
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    // A table row has five cells: six pipes that no backslash escapes
    // (one is escaped by an odd run of backslashes before it).
    for line in markdown.lines().filter(|l| l.starts_with("| ")) {
        let mut pipes = 0;
        let mut backslashes = 0;
        for c in line.chars() {
            match c {
                '\\' => backslashes += 1,
                '|' if backslashes % 2 == 0 => pipes += 1,
                _ => {}
            }
            if c != '\\' {
                backslashes = 0;
            }
        }
        assert_eq!(pipes, 6, "five cells: {line}");
    }
    assert!(
        !markdown.contains("<img")
            && !markdown.contains("<script")
            && !markdown.contains("[link]("),
        "{markdown}"
    );
    for block in mermaid_blocks(&markdown) {
        assert!(!block.contains('<') && !block.contains('`'), "{block}");
    }

    let html = dir.path().join("hostile.html");
    shipgate_in(dir.path())
        .args(["report", "hostile.jsonl", "--html"])
        .arg(&html)
        .assert()
        .code(0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("<img") && !page.contains("<script"),
        "{page}"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));

    let incident = shipgate_in(dir.path())
        .args(["report", "hostile.jsonl", "--incident", "last"])
        .output()
        .unwrap();
    assert_eq!(incident.status.code(), Some(0));
    let incident = String::from_utf8(incident.stdout).unwrap();
    assert!(
        !incident.contains("<img")
            && !incident.contains("<script")
            && !incident.contains("[link]("),
        "{incident}"
    );
    assert!(
        incident.contains("| echo | `check‹img src=x onerror=alert(1)›\\|'x'\\|(link)(http://e)"),
        "{incident}"
    );
}
