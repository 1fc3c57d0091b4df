//! docs/PERFORMANCE.md's commands, run exactly as written: the benchmark's
//! release build (sharing target/image with the image tests, same profile),
//! its table, its JSON, the growth charts and the load run; then
//! docs/RELIABILITY.md's soak line, stopped after its first progress line.
//! The figures are the benchmark's business; here they must only be there
//! and agree.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{as_a_user, repo};

/// The shell lines of a doc's code blocks that start with `cargo`, without
/// their trailing comments.
fn documented_commands(doc: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join(doc)).unwrap();
    let mut in_block = false;
    let mut commands = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && line.starts_with("cargo ") {
            let command = line.split(" #").next().unwrap().trim_end();
            commands.push(command.to_string());
        }
    }
    commands
}

/// `sh -c line` in the repository, building in target/image.
fn shell(line: &str) -> Command {
    let mut command = Command::new("sh");
    as_a_user(&mut command)
        .args(["-c", line])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", repo().join("target/image"));
    command
}

/// Runs one shell line and returns its standard output; it must succeed.
fn run(line: &str) -> String {
    let output = shell(line).output().unwrap();
    assert!(
        output.status.success(),
        "{line}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Puts the committed charts back when the test ends, however it ends: the
/// documented growth command writes over them.
struct Restore(Vec<(PathBuf, Vec<u8>)>);

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, bytes) in &self.0 {
            let _ = std::fs::write(path, bytes);
        }
    }
}

const CHARTS: [(&str, usize); 3] = [
    ("snapshot-size.svg", 3),
    ("policies.svg", 1),
    ("connections.svg", 1),
];

fn committed_charts(dir: &Path) -> Restore {
    Restore(
        CHARTS
            .iter()
            .map(|(name, _)| {
                let path = dir.join(name);
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{} is committed: {e}", path.display()));
                (path, bytes)
            })
            .collect(),
    )
}

#[test]
fn the_documented_benchmark_commands_run_as_written() {
    let commands = documented_commands("docs/PERFORMANCE.md");
    assert_eq!(
        commands,
        [
            "cargo run --release -p shipgate-bench",
            "cargo run --release -p shipgate-bench -- --json",
            "cargo run --release -p shipgate-bench -- --growth docs/growth",
            "cargo run --release -p shipgate-bench --bin shipgate-load -- --connections 16 --seconds 8",
        ],
        "the test runs every command docs/PERFORMANCE.md shows"
    );

    // The README gives some of the same lines in its text: they must be
    // these, so running these runs them.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let in_readme: Vec<&str> = readme
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("cargo run --release -p shipgate-bench"))
        .collect();
    assert!(in_readme.len() >= 3, "{in_readme:?}");
    for line in in_readme {
        assert!(
            commands.iter().any(|command| command == line),
            "the README's `{line}` is not run here"
        );
    }

    // `cargo run` builds only the benchmark's own binary; it builds the
    // processes it times itself. The table has a row for every case and
    // ratio the JSON reports (benches/tests/smoke.rs checks those).
    let table = run(&commands[0]);
    let report: serde_json::Value = serde_json::from_str(&run(&commands[1])).unwrap();
    let cases = report["cases"].as_object().unwrap();
    let ratios = report["ratios"].as_object().unwrap();
    assert!(cases.len() >= 10 && ratios.len() >= 7, "{report}");
    for name in cases.keys().chain(ratios.keys()) {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "{name} missing from the table:\n{table}"
        );
    }
    for case in ["wasm_fresh", "gate5_parallel", "regorus", "cli_cold"] {
        assert!(cases[case]["median_us"].as_f64().unwrap() > 0.0, "{report}");
    }

    let charts = repo().join("docs/growth");
    let _restore = committed_charts(&charts);
    let growth = run(&commands[2]);
    for heading in [
        "Decision time against snapshot size",
        "Decision time against policies in the phase",
        "Server throughput against connections",
        "Charts written to docs/growth",
    ] {
        assert!(growth.contains(heading), "{heading}:\n{growth}");
    }
    // Every snapshot size and policy count was decided (allow), and the
    // findings cap is where the doc says it bites.
    assert!(
        growth.contains(
            "1000 business metrics: rollback (policy returned a malformed verdict: \
             1006 findings, more than the limit of 1000)"
        ),
        "{growth}"
    );
    for (name, series) in CHARTS {
        let svg = std::fs::read_to_string(charts.join(name)).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{name}"
        );
        assert_eq!(svg.matches("<polyline").count(), series, "{name}");
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
    }

    let load = run(&commands[3]);
    assert!(
        load.contains("16 keep-alive connections") && load.contains("errors 0"),
        "{load}"
    );

    let soak: Vec<String> = documented_commands("docs/RELIABILITY.md")
        .into_iter()
        .filter(|line| line.contains("shipgate-bench"))
        .collect();
    assert_eq!(
        soak,
        ["cargo run --release -p shipgate-bench --bin shipgate-soak"]
    );
    let progress = first_progress_line(&soak[0]);
    let count = |what: &str| -> u64 {
        let after = progress.split(&format!("{what} ")).nth(1).unwrap_or("");
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no {what} count: {progress}"))
    };
    assert!(count("answered") > 0, "{progress}");
    assert_eq!(count("errors"), 0, "{progress}");
}

/// Kills a whole process group when dropped, however the test ends.
struct Group {
    leader: std::process::Child,
    killed: bool,
}

impl Group {
    /// SIGKILL to the group, then the leader reaped; an error if the
    /// signal could not be sent.
    fn kill(&mut self) -> std::io::Result<()> {
        if std::mem::replace(&mut self.killed, true) {
            return Ok(());
        }
        let group = -(self.leader.id() as i32);
        // SAFETY: kill(2) with a negative pid only signals that group.
        if unsafe { libc::kill(group, libc::SIGKILL) } != 0 {
            let error = std::io::Error::last_os_error();
            // ESRCH: every process in it has already exited.
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error);
            }
        }
        self.leader.wait().map(drop)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// How long cargo may take to bring the soak up to date (a release link),
/// and then how long the soak may take to its first progress line.
const BUILD_DEADLINE: Duration = Duration::from_secs(1200);
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

/// Starts the soak as written and returns its first progress line, then
/// kills it with its server (the whole process group: sh, the soak, the
/// server it started): a full soak runs ten minutes.
fn first_progress_line(line: &str) -> String {
    use std::os::unix::process::CommandExt;
    // The soak's temporary module cache lives here, so killing it leaves
    // nothing behind.
    let temporary = tempfile::tempdir().unwrap();
    let mut group = Group {
        leader: shell(line)
            .env("TMPDIR", temporary.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        killed: false,
    };
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = group.leader.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut deadline = Instant::now() + BUILD_DEADLINE;
    let mut seen = Vec::new();
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains(" s: answered ") => break Ok(line),
            Ok(line) => {
                // cargo's "Running `…`": the build is done, the soak starts.
                if line.trim_start().starts_with("Running `") {
                    deadline = Instant::now() + PROGRESS_DEADLINE;
                }
                seen.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break Err("timed out".to_string()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = group.leader.wait().unwrap();
                break Err(format!("exited ({status})"));
            }
        }
    };
    group.kill().expect("killing the soak's process group");
    outcome.unwrap_or_else(|why| {
        panic!(
            "{line}: {why} before a progress line; its stderr:\n{}",
            seen.join("\n")
        )
    })
}
