//! What every CLI of its kind has: `--version`, shell completions, a man
//! page, environment variables for the server's options, plain output on
//! terminals that ask for it, and `-v`.

use std::process::Command;

use predicates::prelude::*;

use crate::server::Server;
use crate::support::{repo, shipgate, snapshot};

/// The version line of `package` in Cargo.lock.
fn locked_version(package: &str) -> String {
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let at = lock
        .find(&format!("name = \"{package}\"\nversion = \""))
        .expect("the package is locked");
    let rest = &lock[at..];
    let start = rest.find("version = \"").unwrap() + "version = \"".len();
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

#[test]
fn version_names_the_binary_the_contract_and_wasmtime() {
    let wit = std::fs::read_to_string(repo().join("wit/policy.wit")).unwrap();
    let contract = wit
        .lines()
        .find_map(|line| line.strip_prefix("package "))
        .unwrap()
        .trim_end_matches(';');
    let expected = format!(
        "shipgate {}\npolicy contract: {contract}\nwasmtime: {}\n",
        env!("CARGO_PKG_VERSION"),
        locked_version("wasmtime")
    );
    shipgate()
        .arg("--version")
        .assert()
        .success()
        .stdout(expected);
    shipgate()
        .arg("-V")
        .assert()
        .success()
        .stdout(format!("shipgate {}\n", env!("CARGO_PKG_VERSION")));
}

/// Writes `shipgate completions SHELL` to a file and returns its path.
fn completions(shell: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let output = shipgate().args(["completions", shell]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let path = dir.join(format!("shipgate.{shell}"));
    std::fs::write(&path, output.stdout).unwrap();
    path
}

fn run(shell: &str, args: &[&str]) -> String {
    let output = Command::new(shell)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {shell} ({e}): ./test.sh installs it"));
    assert!(output.status.success(), "{shell} {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn completions_complete_commands_and_options_in_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let bash = completions("bash", dir.path());
    // What bash does on `shipgate ev<TAB>` and `shipgate serve --decision-log<TAB>`.
    let script = format!(
        "source {}; \
         COMP_WORDS=(shipgate ev); COMP_CWORD=1; _shipgate shipgate ev shipgate; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(shipgate serve --decision-log); COMP_CWORD=2; _shipgate shipgate --decision-log serve; echo \"${{COMPREPLY[@]}}\"",
        bash.display()
    );
    let offered = run("bash", &["-c", &script]);
    let mut lines = offered.lines();
    assert_eq!(lines.next(), Some("eval"), "{offered}");
    let options = lines.next().unwrap_or_default();
    assert!(
        options.contains("--decision-log-url") && options.contains("--decision-log-queue-bytes"),
        "{offered}"
    );

    let fish = completions("fish", dir.path());
    let offered = run(
        "fish",
        &[
            "-c",
            &format!("source {}; complete -C 'shipgate comp'", fish.display()),
        ],
    );
    assert!(offered.starts_with("completions\t"), "{offered}");

    let zsh = completions("zsh", dir.path());
    let text = std::fs::read_to_string(&zsh).unwrap();
    assert!(text.starts_with("#compdef shipgate"), "{text}");
    assert!(text.contains("--decision-log-url"));
    run("zsh", &["-n", zsh.to_str().unwrap()]);
}

#[test]
fn the_man_page_renders_with_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("shipgate.1");
    let output = shipgate().arg("man").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    std::fs::write(&page, &output.stdout).unwrap();
    let render = |page: &std::path::Path| {
        run(
            "man",
            &["--warnings", "-E", "ascii", "-l", page.to_str().unwrap()],
        )
    };
    let text = render(&page);
    for command in ["eval", "serve", "replay", "completions", "man"] {
        assert!(text.contains(command), "{command} missing:\n{text}");
    }
    assert!(text.contains("Exit codes:"), "{text}");

    shipgate()
        .args(["man", "--dir"])
        .arg(dir.path().join("pages"))
        .assert()
        .success();
    let serve = render(&dir.path().join("pages/shipgate-serve.1"));
    assert!(serve.contains("--decision-log-url"), "{serve}");
    assert!(serve.contains("SHIPGATE_LISTEN"), "{serve}");
}

#[test]
fn every_serve_option_has_its_environment_variable_in_the_help() {
    let help = shipgate().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let options: Vec<&str> = help
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let flag = line.strip_prefix("--")?;
            Some(flag.split([' ', '=', '<']).next().unwrap())
        })
        .filter(|flag| *flag != "help")
        .collect();
    assert!(options.len() > 20, "{help}");
    for flag in options {
        let variable = format!("[env: SHIPGATE_{}=", flag.to_uppercase().replace('-', "_"));
        assert!(
            help.contains(&variable),
            "--{flag}: no {variable}] in:\n{help}"
        );
    }
}

#[test]
fn serve_takes_its_gate_and_address_from_the_environment() {
    let mut command = Server::command();
    command
        .env("SHIPGATE_GATE", repo().join("examples/gate.toml"))
        .env("SHIPGATE_LISTEN", "127.0.0.1:0")
        .env("SHIPGATE_SHUTDOWN_DELAY", "0s");
    let server = Server::spawn(command);
    let health = server.client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        server.logged("listening")[0]["gate"],
        repo().join("examples/gate.toml").display().to_string()
    );

    let mut bad = Server::command();
    bad.env("SHIPGATE_GATE", "gate.toml")
        .env("SHIPGATE_REQUEST_TIMEOUT", "soon");
    let output = bad.output().unwrap();
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'soon' is not a duration") && stderr.contains("--request-timeout"),
        "{stderr}"
    );
}

#[test]
fn plain_terminals_get_ascii_marks() {
    for (variable, value) in [("NO_COLOR", "1"), ("TERM", "dumb"), ("LANG", "C")] {
        let output = shipgate()
            .args(["eval", "--phase", "abort", "--snapshot"])
            .arg(snapshot("abort-rollback"))
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.is_ascii(), "{variable}={value}:\n{text}");
        assert!(
            text.starts_with("ROLLBACK  abort - gate default\n"),
            "{text}"
        );
        assert!(text.contains("  xx error-rate (rollback): "), "{text}");
        assert!(text.contains("  ok 3 checks passed\n"), "{text}");
    }
}

#[test]
fn verbose_eval_lists_the_checks_that_passed_too() {
    let quiet = shipgate()
        .args(["eval", "--phase", "abort", "--snapshot"])
        .arg(snapshot("abort-rollback"))
        .output()
        .unwrap();
    let verbose = shipgate()
        .args(["eval", "-v", "--phase", "abort", "--snapshot"])
        .arg(snapshot("abort-rollback"))
        .output()
        .unwrap();
    assert_eq!(verbose.status.code(), Some(2));
    let (quiet, verbose) = (
        String::from_utf8(quiet.stdout).unwrap(),
        String::from_utf8(verbose.stdout).unwrap(),
    );
    assert!(quiet.contains("3 checks passed"), "{quiet}");
    assert!(!verbose.contains("checks passed"), "{verbose}");
    let passed: Vec<&str> = verbose
        .lines()
        .filter(|line| line.starts_with("  ✓ ") && line.contains(" (allow): "))
        .collect();
    assert_eq!(passed.len(), 3, "{verbose}");
    assert!(
        verbose.contains("  ✗✗ error-rate (rollback): "),
        "{verbose}"
    );
}

#[test]
fn eval_refuses_to_mix_its_decision_log_into_standard_output() {
    shipgate()
        .args([
            "eval",
            "--phase",
            "abort",
            "--decision-log",
            "-",
            "--snapshot",
        ])
        .arg(snapshot("abort-rollback"))
        .assert()
        .code(64)
        .stderr(predicate::str::contains(
            "--decision-log -: standard output carries the decision",
        ));
}

/// The README's completion and manual lines, run as written by a user
/// whose home is empty but for the directories they name.
#[test]
fn the_readmes_completion_and_manual_lines_work_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines: Vec<&str> = readme
        .lines()
        .filter(|line| {
            line.starts_with("shipgate completions ") || line.starts_with("shipgate man")
        })
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let home = tempfile::tempdir().unwrap();
    for dir in [
        ".local/share/bash-completion/completions",
        ".zfunc",
        ".config/fish/completions",
    ] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_shipgate"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for line in lines {
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", line])
            .env("HOME", home.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{line}: {output:?}");
        if line.starts_with("shipgate man") {
            assert!(
                String::from_utf8_lossy(&output.stdout).contains("shipgate"),
                "{line}"
            );
        }
    }
    for file in [
        ".local/share/bash-completion/completions/shipgate",
        ".zfunc/_shipgate",
        ".config/fish/completions/shipgate.fish",
    ] {
        let text = std::fs::read_to_string(home.path().join(file)).unwrap();
        assert!(text.contains("decision-log-url"), "{file}");
    }
}
