//! The binaries the benchmarks start as processes, found beside the running
//! one: the real `shipgate`, the native comparison `cli-native`, and the
//! Rego and CEL engines (`shipgate-peers`).
//!
//! `cargo run --release -p shipgate-bench` builds only the binary it runs,
//! so the benchmark's documented command would find none of them on a fresh
//! checkout, or stale ones from an older build. When cargo started this
//! process (it sets `CARGO`), each is built here (a no-op when it is up to
//! date) with the same cargo, profile and target directory: the same
//! `shipgate` that `cargo build --release -p shipgate` (and the image)
//! builds. In the dev profile, which is `cargo test`'s, binaries already
//! there are used: `cargo test --workspace` (what ./test.sh runs) builds all
//! three for their own tests, with the workspace's features, and building
//! them again here, package by package, would compile most of the workspace
//! a second time. A missing one is built. (After `cargo test -p
//! shipgate-bench` alone, `shipgate` and `shipgate-peers` may be older than
//! the sources.) Started outside cargo, the binaries must be there already.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Each binary and the package that has it.
const SIBLINGS: [(&str, &str); 3] = [
    ("shipgate", "shipgate"),
    ("cli-native", "shipgate-bench"),
    ("shipgate-peers", "shipgate-bench-peers"),
];

/// The path of `name` (one of [`SIBLINGS`]), brought up to date first when
/// cargo started this process.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let (_, package) = SIBLINGS
        .iter()
        .find(|(binary, _)| *binary == name)
        .with_context(|| format!("{name} is not a binary the benchmarks start"))?;
    let exe = std::env::current_exe().context("locating the running benchmark")?;
    let dir = exe
        .parent()
        .context("the benchmark binary has a directory")?;
    let path = dir.join(name);
    let dev_profile = dir.file_name().is_some_and(|profile| profile == "debug");
    match std::env::var("CARGO") {
        Ok(_) if dev_profile && path.exists() => {}
        Ok(cargo) => build(&cargo, dir, package, name)?,
        Err(_) if path.exists() => {}
        Err(_) => bail!(
            "{} has no {name}: build it with `cargo build --release -p {package} --bin {name}` \
             (for a release benchmark), or start the benchmark with \
             `cargo run --release -p shipgate-bench`",
            dir.display()
        ),
    }
    ensure!(
        path.exists(),
        "cargo built {name}, but {} is missing",
        path.display()
    );
    Ok(path)
}

fn build(cargo: &str, dir: &Path, package: &str, name: &str) -> Result<()> {
    // target/<profile>/: cargo names the dev profile's directory `debug`.
    let profile = dir
        .file_name()
        .and_then(|name| name.to_str())
        .context("the benchmark's directory has no name")?;
    let target_dir = dir.parent().context("the profile directory has a parent")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("benches/ is in the workspace")?
        .join("Cargo.toml");
    let mut command = Command::new(cargo);
    // `cargo run` gave this process the variables it sets for a crate
    // (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...). Some build scripts
    // track those: inherited, they would make this build recompile
    // shipgate's dependencies instead of sharing what
    // `cargo build --release -p shipgate` built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if set_by_cargo_for_a_crate(&name) {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .args(["build", "--profile"])
        .arg(if profile == "debug" { "dev" } else { profile })
        .arg("--manifest-path")
        .arg(&workspace)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", package, "--bin", name])
        .status()
        .with_context(|| format!("running {cargo}"))?;
    ensure!(status.success(), "building {name} failed ({status})");
    Ok(())
}

fn set_by_cargo_for_a_crate(name: &str) -> bool {
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
