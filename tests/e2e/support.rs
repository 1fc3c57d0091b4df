//! Shared helpers: the real `shipgate` binary, example files, and wasm
//! modules built from the repo's own crates (once per test process).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repo")
        .to_path_buf()
}

pub(crate) fn example(relative: &str) -> PathBuf {
    repo().join("examples").join(relative)
}

pub(crate) fn snapshot(name: &str) -> PathBuf {
    example(&format!("snapshots/{name}.json"))
}

/// The compiled-module cache the tests share (never the user's own).
pub(crate) fn cache_dir() -> PathBuf {
    repo().join("target").join("e2e-module-cache")
}

/// The key of that cache, outside it (never the user's own either).
pub(crate) fn cache_key_file() -> PathBuf {
    repo().join("target").join("e2e-module-cache.key")
}

/// `shipgate` as a user runs it, from the working directory `dir`.
pub(crate) fn shipgate_in(dir: &Path) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    command
        .current_dir(dir)
        .env("SHIPGATE_CACHE_DIR", cache_dir())
        .env("SHIPGATE_CACHE_KEY_FILE", cache_key_file())
        .env_remove("GITHUB_STEP_SUMMARY")
        // Reproducible-build environments export it; push reads it.
        .env_remove("SOURCE_DATE_EPOCH")
        // A UTF-8 terminal that asks for nothing plain, whatever the
        // environment the tests run in: the text output's marks depend on it.
        .env("LANG", "C.UTF-8")
        .env("TERM", "xterm")
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .env_remove("NO_COLOR");
    command
}

pub(crate) fn shipgate() -> assert_cmd::Command {
    shipgate_in(&repo())
}

/// Builds a workspace of policies for wasm32-wasip2 and returns the
/// directory holding the .wasm files.
fn build_wasm(manifest: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("wasm32-wasip2").join("release")
}

/// A module from `tests/fixtures` (`hostile`, `wrong_world`, `old_contract`,
/// `contract_0_2`, `contract_0_3`).
pub(crate) fn fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        build_wasm(
            &repo().join("tests/fixtures/Cargo.toml"),
            &repo().join("target/fixtures"),
        )
    });
    dir.join(format!("{name}.wasm"))
}

/// A directory under target/ holding a copy of `examples/custom-policy` and
/// the `examples/snapshots` its fixtures read, at the same relative paths
/// (`shipgate build` pins the crate's gate.toml, which must not change the
/// checkout). The crate's own target/ is kept between runs.
pub(crate) fn example_copy() -> PathBuf {
    static COPIED: OnceLock<PathBuf> = OnceLock::new();
    COPIED
        .get_or_init(|| {
            let copy = repo().join("target/example-copy");
            for dir in ["custom-policy", "snapshots"] {
                copy_dir(&example(dir), &copy.join("examples").join(dir));
            }
            // The example depends on the SDK at ../../policies/sdk.
            let policies = copy.join("policies");
            if !policies.exists() {
                std::os::unix::fs::symlink(repo().join("policies"), policies).unwrap();
            }
            copy
        })
        .clone()
}

/// Copies `from` into `to` (replacing files, skipping `target/`).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            if name != "target" {
                copy_dir(&path, &to.join(name));
            }
        } else {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// The example custom policy, built with the README's `shipgate build
/// examples/custom-policy` in [`example_copy`]; the module path it printed.
pub(crate) fn custom_policy() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let output = shipgate_in(&example_copy())
                .args(["build", "examples/custom-policy"])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "shipgate build failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let module = example_copy()
                .join("examples/custom-policy/target/wasm32-wasip2/release/change_freeze.wasm");
            assert!(
                stdout.starts_with(&format!("built   {}\n", module.display())),
                "{stdout}"
            );
            module
        })
        .clone()
}

/// The JSON printed by `eval --format json`.
pub(crate) fn json_output(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Runs `shipgate eval --format json ARGS --snapshot SNAPSHOT` in `dir` and
/// returns the exit code and the decision record.
pub(crate) fn eval_json(
    dir: &Path,
    args: &[&str],
    snapshot: &Path,
) -> (Option<i32>, serde_json::Value) {
    let output = shipgate_in(dir)
        .args(["eval", "--format", "json"])
        .args(args)
        .arg("--snapshot")
        .arg(snapshot)
        .output()
        .expect("running shipgate");
    (output.status.code(), json_output(&output))
}

/// A temporary directory holding `gate.toml` with this text.
pub(crate) fn gate_dir(gate_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("gate.toml"), gate_toml).expect("writing gate.toml");
    dir
}

/// The YAML documents of a file in the repository (`integrations/...`).
pub(crate) fn yaml_documents(relative: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo().join(relative)).expect("a file of the repository");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|d: &serde_yaml::Value| !d.is_null())
        .collect()
}

/// `command` (a cargo, or a script that runs one) with the environment a
/// user's shell gives it: without the variables cargo sets for this test
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, `OUT_DIR`, ...). Some build
/// scripts track those, so a nested cargo that inherits them rebuilds their
/// crates and everything above them, and two tests sharing a target
/// directory would take turns rebuilding shipgate.
pub(crate) fn as_a_user(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if cargo_sets_for_a_crate(&name) {
            command.env_remove(name.as_ref());
        }
    }
    command
}

fn cargo_sets_for_a_crate(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// An executable file written by another process: a file this test
/// process held open for writing could be inherited by a process another
/// test forks, and executing it would then fail (ETXTBSY).
pub(crate) fn install_executable(dir: &Path, name: &str, text: &str) -> PathBuf {
    let source = dir.join(format!("{name}.source"));
    std::fs::write(&source, text).unwrap();
    let path = dir.join(name);
    let status = Command::new("install")
        .args(["-m", "755"])
        .arg(&source)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// The cargo that runs the tests (`CARGO`), else the one on `PATH`.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}
