//! The policy author's workflow as the README gives it: `shipgate new`,
//! `cargo test`, `shipgate build`, `shipgate test`, `shipgate check`, on the
//! SDK the binary carries; fixtures, their formats and their mistakes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{cargo, json_output, repo, sha256_hex, shipgate_in};

/// The lines of the README's ```sh block under `heading`.
pub(crate) fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find(heading).expect("the heading is in the README")..];
    let block = &section[section.find("```sh\n").unwrap() + "```sh\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    block.lines().map(str::to_string).collect()
}

/// The text of the README's plain ``` block after `intro`.
fn readme_output(intro: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    readme
        .split(&format!("{intro}\n\n```\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("the README shows output after {intro:?}"))
        .to_string()
}

/// Runs one README line in `dir` (a `cd` moves it) and returns its output,
/// with cargo offline: only what cargo has already fetched, as on a machine
/// where the registry cannot serve the SDK.
fn run_line(dir: &mut PathBuf, line: &str) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        ["cd", to] => {
            *dir = dir.join(to);
            Command::new("true").output().unwrap()
        }
        ["shipgate", ref args @ ..] => shipgate_in(dir)
            .args(args)
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .unwrap(),
        ["cargo", ref args @ ..] => cargo()
            .current_dir(&*dir)
            .args(args)
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .unwrap(),
        _ => panic!("a README line this test cannot run: {line}"),
    }
}

/// From nothing to a tested policy in a gate, each README line as written,
/// in a scratch directory outside any checkout and offline: the crate
/// builds on the SDK the binary carries.
#[test]
fn the_first_policy_commands_work_as_written_offline_outside_a_checkout() {
    let scratch = tempfile::tempdir().unwrap();
    let lines = readme_block("### Write your first policy");
    assert_eq!(lines.len(), 6, "{lines:?}");
    let mut dir = scratch.path().to_path_buf();
    let mut outputs = Vec::new();
    for line in &lines {
        let output = run_line(&mut dir, line);
        assert!(
            output.status.success(),
            "`{line}` failed ({:?}):\n{}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8(output.stdout).unwrap());
    }
    let [new, _, tests, build, test, check] = &outputs[..] else {
        unreachable!("six lines")
    };
    let shown = readme_output("`shipgate new` prints what it made and what to run next:");
    assert_eq!(new, &shown, "the README shows the output as it is");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("shipgate-policy = { path = \"vendor/shipgate-policy\" }"),
        "{manifest}"
    );
    let vendored = dir.join("vendor/shipgate-policy");
    assert_eq!(
        std::fs::read(vendored.join("wit/policy.wit")).unwrap(),
        std::fs::read(repo().join("policies/sdk/wit/policy.wit")).unwrap(),
        "the crate carries the contract this binary runs"
    );
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    assert!(
        build.contains("policy  team-rules 0.1.0 (phases: promotion, abort)"),
        "{build}"
    );
    let module = dir.join("target/wasm32-wasip2/release/team_rules.wasm");
    let digest = sha256_hex(&std::fs::read(&module).unwrap());
    assert!(build.contains(&format!("sha256 = \"{digest}\"")), "{build}");
    let gate = std::fs::read_to_string(dir.join("gate.toml")).unwrap();
    assert!(
        gate.contains(&format!("sha256 = \"{digest}\"")),
        "the build pins the gate:\n{gate}"
    );
    let shown = readme_output("`shipgate test` in the new crate:");
    assert_eq!(test, &shown, "the README shows the output as it is");
    assert!(check.contains("team-rules"), "{check}");

    // The module that ran is the one built: the pin is checked.
    let json = json_output(
        &shipgate_in(&dir)
            .args(["build", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        json["sha256"],
        digest.as_str(),
        "a rebuild is reproducible: {json:#}"
    );
    assert_eq!(json["name"], "team-rules");
    assert_eq!(json["phases"], serde_json::json!(["promotion", "abort"]));
    assert_eq!(json["size"], std::fs::metadata(&module).unwrap().len());

    a_failing_case_exits_1_with_a_junit_report_ci_can_read(&dir);
    a_compile_error_is_cargos_and_exits_1(&dir);
}

fn a_failing_case_exits_1_with_a_junit_report_ci_can_read(dir: &Path) {
    let fixture = dir.join("tests/policy/checks.toml");
    let mut text = std::fs::read_to_string(&fixture).unwrap();
    text += "\n[[case]]\nname = \"a 2.5% error rate passes\"\nphase = \"promotion\"\n\
             snapshot = \"../snapshots/healthy.json\"\npatch = { metrics = { canary = { errors = 250 } } }\n\
             expect = \"allow\"\n";
    std::fs::write(&fixture, text).unwrap();
    let output = shipgate_in(dir)
        .args(["test", "--format", "junit", "--output", "report.xml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.ends_with("2 passed, 1 failed\n"),
        "the text still goes to stdout: {stdout}"
    );
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit XML");
    assert_eq!((report.tests, report.failures), (3, 1), "{xml}");
    let failed = report.test_suites[0]
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == "a 2.5% error rate passes")
        .unwrap();
    let quick_junit::TestCaseStatus::NonSuccess {
        message,
        description,
        ..
    } = &failed.status
    else {
        panic!("not a failure: {xml}")
    };
    assert_eq!(
        message.as_ref().map(|m| m.as_str()),
        Some("expected allow, got deny")
    );
    assert!(
        description.as_ref().unwrap().as_str().contains(
            "team-rules/error-budget deny: canary error rate 2.5% exceeds 2.0% (observed 2.5%, threshold <= 2.0%)"
        ),
        "{xml}"
    );
    // An independent XML parser reads it too.
    let parsed = Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as t; r = t.parse(sys.argv[1]).getroot(); \
                      print(r.tag, r.get('tests'), r.get('failures'), len(r.iter('failure').__next__().text) > 0)"])
        .arg(dir.join("report.xml"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout),
        "testsuites 3 1 True\n"
    );
}

fn a_compile_error_is_cargos_and_exits_1(dir: &Path) {
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        text.replace("Ok(findings.verdict())", "Ok(findings.verdict("),
    )
    .unwrap();
    let output = shipgate_in(dir).arg("build").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: "),
        "cargo's own diagnostics: {stderr}"
    );
    assert!(output.stdout.is_empty(), "no module is reported");
}

#[test]
fn new_refuses_to_overwrite_and_bad_names() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir(scratch.path().join("taken")).unwrap();
    for (args, message) in [
        (&["new", "taken"][..], "taken: already exists"),
        (&["new", "Rules"], "'Rules' is not a policy name"),
        (
            &["new", "x", "--phases", "canary"],
            "expected preflight, promotion, abort or verify",
        ),
    ] {
        let output = shipgate_in(scratch.path()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(scratch.path().join("taken"))
            .unwrap()
            .count(),
        0
    );
}

/// `--sdk auto` asks the registry through cargo (the user's cargo, with
/// its settings) and depends on the release when the registry has it; a
/// source that cannot be used is refused and leaves no directory.
#[test]
fn new_chooses_the_sdk_as_asked() {
    let scratch = tempfile::tempdir().unwrap();
    let calls = scratch.path().join("calls");
    // A cargo whose registry has the release: `info` succeeds.
    let cargo_stand_in = crate::support::install_executable(
        scratch.path(),
        "cargo",
        &format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
    );
    let output = shipgate_in(scratch.path())
        .args(["new", "released"])
        .env("CARGO", &cargo_stand_in)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout.contains(&format!(
            "sdk: shipgate-policy {version} from crates.io (the registry has it)"
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("info shipgate-policy@{version}\n")
    );
    let manifest = std::fs::read_to_string(scratch.path().join("released/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("shipgate-policy = \"{version}\"")),
        "{manifest}"
    );
    assert!(!scratch.path().join("released/vendor").exists());
    // A directory that exists is refused before the registry is asked.
    let again = shipgate_in(scratch.path())
        .args(["new", "released"])
        .env("CARGO", &cargo_stand_in)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(64), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap().lines().count(),
        1,
        "cargo was asked once, for the first crate"
    );

    let not_sdk = scratch.path().join("not-sdk");
    std::fs::create_dir(&not_sdk).unwrap();
    std::fs::write(not_sdk.join("Cargo.toml"), "[package]\nname = \"serde\"\n").unwrap();
    let not_sdk = format!("path:{}", not_sdk.display());
    for (sdk, code, message) in [
        (
            "crates",
            64,
            "'crates' is not an SDK source: use auto, crates-io, vendored or path:DIR",
        ),
        ("path:", 64, "path: needs a directory"),
        ("path:missing", 66, "missing/Cargo.toml"),
        (
            not_sdk.as_str(),
            65,
            "is not the shipgate-policy crate's manifest",
        ),
    ] {
        let output = shipgate_in(scratch.path())
            .args(["new", "refused", "--sdk", sdk])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{sdk}: {stderr}");
        assert!(stderr.contains(message), "{sdk}: {stderr}");
        assert!(
            !scratch.path().join("refused").exists(),
            "{sdk}: nothing written"
        );
    }
}

/// The stock policies' fixtures, as the README runs them, in every format.
#[test]
fn the_stock_policies_fixtures_pass_in_every_format() {
    let line = readme_block("flags the checks no case saw deny or roll back");
    let args: Vec<&str> = line[0].split_whitespace().skip(1).collect();
    let output = shipgate_in(&repo()).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.ends_with("28 passed, 0 failed\n"), "{text}");
    assert!(
        text.contains("    error-rate         allow, deny, rollback\n"),
        "{text}"
    );
    assert!(
        text.contains("    stage-plan         allow   <- never seen deny or roll back\n"),
        "{text}"
    );

    let run = |format: &str| {
        let output = shipgate_in(&repo())
            .args(&args)
            .args(["--format", format])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{format}");
        String::from_utf8(output.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(
        (json["passed"].as_u64(), json["failed"].as_u64()),
        (Some(28), Some(0))
    );
    assert_eq!(
        json["cases"][0]["file"],
        "policies/preflight/tests/policy/preflight.toml"
    );
    assert_eq!(json["coverage"][0]["policy"], "canary");
    let tap = run("tap");
    assert!(tap.starts_with("TAP version 13\n1..28\nok 1 - "), "{tap}");
    assert_eq!(
        tap.lines().filter(|l| l.starts_with("ok ")).count(),
        28,
        "{tap}"
    );
    let junit = quick_junit::Report::deserialize_from_str(&run("junit")).unwrap();
    assert_eq!(
        (junit.tests, junit.failures, junit.test_suites.len()),
        (28, 0, 5)
    );
    let github = run("github");
    assert!(
        github.contains(
            "::warning title=shipgate test coverage::check 'stage-plan' of policy 'canary'"
        ),
        "{github}"
    );
    assert!(!github.contains("::error"), "{github}");
}

/// Bad fixtures: the exit code says which kind, the message where.
#[test]
fn fixture_mistakes_exit_65_or_66_with_a_position() {
    let scratch = tempfile::tempdir().unwrap();
    let snapshot = crate::support::snapshot("abort-allow");
    let cases = [
        (
            "phase = \"canary\"",
            65,
            "f.toml:3:9: unknown variant `canary`",
        ),
        (
            "phase = \"abort\"\nexpct = \"allow\"",
            65,
            "f.toml:4:1: unknown key 'expct' (did you mean 'expect'?)",
        ),
        (
            "phase = \"abort\"\nsnapshot = \"gone.json\"",
            66,
            "f.toml:4:12: snapshot ",
        ),
    ];
    for (middle, code, message) in cases {
        let text = format!(
            "[[case]]\nname = \"n\"\n{middle}\nexpect = \"allow\"\n{}",
            if middle.contains("snapshot") {
                String::new()
            } else {
                format!("snapshot = {:?}\n", snapshot.display().to_string())
            }
        );
        std::fs::write(scratch.path().join("f.toml"), text).unwrap();
        let output = shipgate_in(scratch.path())
            .args(["test", "f.toml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.starts_with(&format!("shipgate: error: {message}")),
            "{stderr}\nexpected: {message}"
        );
    }
    let output = shipgate_in(scratch.path())
        .args(["test", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(66));
}

/// The contract lives in the SDK crate, which packages it; the top-level
/// `wit/` is the same file.
#[test]
fn the_contract_has_one_home() {
    let top = std::fs::read(repo().join("wit/policy.wit")).unwrap();
    let sdk = std::fs::read(repo().join("policies/sdk/wit/policy.wit")).unwrap();
    assert_eq!(top, sdk);
}

/// A toolchain without the wasm target: `shipgate build` asks rustup to add
/// it, and says so plainly when that fails. `rustc` and `rustup` here are
/// stand-ins that record how they were called.
#[test]
fn build_installs_the_wasm_target_with_rustup_or_says_why_it_cannot() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = scratch.path().join("calls");
    let stand_in = |name: &str, body: &str| {
        let text = format!(
            "#!/bin/sh\necho \"{name} $*\" >> {}\n{body}\n",
            calls.display()
        );
        crate::support::install_executable(&bin, name, &text);
    };
    // A target libdir that does not exist: the target is not installed.
    stand_in("rustc", "echo /nonexistent/lib/rustlib/wasm32-wasip2/lib");
    stand_in("rustup", "exit 1");
    let new = shipgate_in(scratch.path())
        .args(["new", "rules", "--sdk", "vendored"])
        .output()
        .unwrap();
    assert!(new.status.success());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = shipgate_in(&scratch.path().join("rules"))
        .arg("build")
        .env("PATH", &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("shipgate: installing the wasm32-wasip2 target with rustup"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the wasm32-wasip2 target is not installed and `rustup target add wasm32-wasip2` failed"
        ),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "rustc --print target-libdir --target wasm32-wasip2\nrustup target add wasm32-wasip2\n"
    );
}
