//! Builds the stock policies (`policies/{preflight,canary,verify,judge}`) for
//! wasm32-wasip2 with a nested cargo and its own target directory, so the
//! `shipgate` binary embeds them and evaluates with no policy files; embeds
//! the SDK's source for `shipgate new --sdk vendored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "build/vendored_sdk.rs"]
mod vendored_sdk;

const POLICIES: [&str; 4] = ["preflight", "canary", "verify", "judge"];
include!("policy-rustflags.rs");
const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "policy";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ is inside the workspace");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=policy-rustflags.rs");
    for watched in ["policies", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    println!(
        "cargo:rustc-env=SHIPGATE_CONTRACT={}",
        contract(&workspace.join("policies/sdk/wit/policy.wit"))
    );
    println!(
        "cargo:rustc-env=SHIPGATE_WASMTIME_VERSION={}",
        locked_version(&workspace.join("Cargo.lock"), "wasmtime")
    );

    vendored_sdk::embed(workspace, &out_dir);

    ensure_wasm_target();
    let target_dir = shared_target_dir(&out_dir).join("policy-wasm");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(workspace)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for policy in POLICIES {
        cargo.args(["-p", &format!("shipgate-policy-{policy}")]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(var);
    }
    cargo.env("CARGO_ENCODED_RUSTFLAGS", POLICY_RUSTFLAGS);
    let output = cargo
        .output()
        .expect("running cargo to build the stock policies");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nhint: install the wasm target with `rustup target add wasm32-wasip2`"
        } else {
            ""
        };
        panic!("building the stock policies for {TARGET} failed:\n{stderr}{hint}");
    }
    let built = target_dir.join(TARGET).join(PROFILE);
    for policy in POLICIES {
        let file = format!("shipgate_policy_{policy}.wasm");
        let bytes =
            std::fs::read(built.join(&file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        // The digest every decision records, computed here rather than at
        // each start of the CLI.
        let sha256 = hex::encode(Sha256::digest(&bytes));
        std::fs::write(out_dir.join(format!("{policy}.wasm")), &bytes)
            .and_then(|()| std::fs::write(out_dir.join(format!("{policy}.sha256")), sha256))
            .unwrap_or_else(|e| panic!("writing {policy}'s module: {e}"));
    }
}

/// Installs the wasm32-wasip2 standard library with rustup when it is
/// missing, so a fresh clone builds with plain `cargo build`.
fn ensure_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|root| root.join("lib/rustlib").join(TARGET).is_dir());
    if installed {
        return;
    }
    println!(
        "cargo:warning=installing the {TARGET} target with rustup (needed to build the stock policies)"
    );
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !added.is_ok_and(|status| status.success()) {
        panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and build again"
        );
    }
}

/// The outer target directory (the one holding `CACHEDIR.TAG`), so the dev
/// and release builds of the host share one build of the policies.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or(out_dir)
        .to_path_buf()
}

/// The contract's package and version, from the WIT file's `package` line:
/// the one place it is written.
fn contract(wit: &Path) -> String {
    let text = std::fs::read_to_string(wit).expect("wit/policy.wit is readable");
    text.lines()
        .find_map(|line| line.strip_prefix("package "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .expect("wit/policy.wit declares its package")
}

/// The version of `package` that Cargo.lock pins, for `shipgate --version`;
/// "unknown" when the lock file is missing (a build outside the workspace).
fn locked_version(lock: &Path, package: &str) -> String {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return "unknown".into();
    };
    let name_line = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == name_line
            && let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return version.trim_matches('"').to_string();
        }
    }
    "unknown".into()
}
