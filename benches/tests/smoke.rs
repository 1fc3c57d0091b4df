//! The benchmark runs and agrees across engines (a few iterations; the
//! figures themselves are not checked here: timings belong to the bench).

use std::process::Command;

/// Runs a benchmark binary, which must succeed, and reads its JSON report.
fn report(binary: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_benchmark_runs_and_reports_every_case_and_ratio() {
    let report = report(
        env!("CARGO_BIN_EXE_shipgate-bench"),
        &["--json", "--iterations", "5", "--process-runs", "2"],
    );
    for case in [
        "native",
        "wasm_fresh",
        "wasm_reused",
        "regorus",
        "cel",
        "gate1",
        "gate5",
        "gate5_parallel",
        "cli_cold",
        "cli_native",
        "judge_native",
        "judge_wasm",
        "judge_http",
    ] {
        let figures = &report["cases"][case];
        assert!(
            figures["median_us"].as_f64().unwrap() > 0.0,
            "{case}: {figures}"
        );
        assert!(
            figures["p99_us"].as_f64().unwrap() >= figures["median_us"].as_f64().unwrap(),
            "{case}"
        );
    }
    for ratio in [
        "wasm_fresh/native",
        "regorus/wasm_fresh",
        "cel/wasm_fresh",
        "gate5/gate1",
        "gate5_parallel/wasm_fresh",
        "cli_cold/cli_native",
        "judge_wasm/judge_native",
        "judge_http median ms",
    ] {
        assert!(report["ratios"][ratio].as_f64().unwrap() > 0.0, "{ratio}");
    }
}

#[test]
fn unknown_arguments_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_shipgate-bench"))
        .arg("--fast")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument '--fast'"));
}

#[test]
fn the_load_benchmark_drives_a_real_server_without_errors() {
    let report = report(
        env!("CARGO_BIN_EXE_shipgate-load"),
        &[
            "--json",
            "--connections",
            "4",
            "--seconds",
            "0.5",
            "--warmup",
            "0.2",
        ],
    );
    assert!(report["decisions"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0);
    assert!(report["p99_us"].as_u64().unwrap() >= report["p50_us"].as_u64().unwrap());
}

/// A short soak: the mix is answered as documented, load is shed with
/// 503s, and the server is sampled.
#[test]
fn the_soak_run_saturates_a_real_server_without_errors() {
    let report = report(
        env!("CARGO_BIN_EXE_shipgate-soak"),
        &["--json", "--seconds", "2", "--sample", "0.5"],
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["answered"].as_u64().unwrap() > 0, "{report}");
    assert!(report["samples"].as_array().unwrap().len() >= 4, "{report}");
    assert!(report["rss_mib"]["max"].as_f64().unwrap() > 0.0, "{report}");
}
