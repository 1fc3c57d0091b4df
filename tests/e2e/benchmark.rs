//! docs/PERFORMANCE.md's commands, run exactly as written: the benchmark's
//! release build (sharing target/image with the image tests, same profile),
//! its table, its JSON, the growth charts and the load run. The figures
//! are the benchmark's business; here they must only be there and agree.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{as_a_user, repo};

/// The shell lines of docs/PERFORMANCE.md's code blocks that start with
/// `cargo`, without their trailing comments.
fn documented_commands() -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/PERFORMANCE.md")).unwrap();
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

/// Runs one shell line with `sh`, in the repository, and returns its
/// standard output; it must succeed.
fn run(line: &str) -> String {
    let output = as_a_user(&mut Command::new("sh"))
        .args(["-c", line])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", repo().join("target/image"))
        .output()
        .unwrap();
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
    let commands = documented_commands();
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

    // Not a documented line: the release binaries the lines below use, in
    // one cargo run so that their link-time optimisations share the cores
    // (the serial links were most of this test's time in CI). The features
    // are the same as in separate builds, so the documented commands find
    // these fresh; the benchmark still builds `shipgate-peers` (other
    // features) itself.
    run(
        "cargo build --release -p shipgate -p shipgate-bench --bin shipgate \
         --bin shipgate-bench --bin shipgate-load --bin cli-native",
    );

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
}
