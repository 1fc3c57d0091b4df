//! The policy SDK as `cargo package` makes it for crates.io: no warning
//! (the metadata a registry asks for is there), the WIT contract and the
//! source in, the large test fixtures out. `--no-verify`: nothing is
//! compiled (`authoring.rs` builds a policy on the copy the binary carries:
//! the same sources and WIT, with a manifest that stands alone).

use std::path::Path;
use std::process::Output;

use crate::support::{as_a_user, cargo, repo};

/// What `exclude` in policies/sdk/Cargo.toml leaves out of the package.
const EXCLUDED: [&str; 1] = ["tests/fixtures/"];

/// `cargo package -p shipgate-policy` with `extra` arguments, into
/// `target_dir`, from the repository root.
fn cargo_package(target_dir: &Path, extra: &[&str]) -> Output {
    as_a_user(&mut cargo())
        .current_dir(repo())
        // A dirty working tree is the checkout under test, not a release.
        .args([
            "package",
            "-p",
            "shipgate-policy",
            "--no-verify",
            "--offline",
            "--allow-dirty",
            "--target-dir",
        ])
        .arg(target_dir)
        .args(extra)
        .output()
        .expect("running cargo")
}

#[test]
fn the_sdk_packages_without_a_warning_with_its_contract_and_without_its_fixtures() {
    let target = tempfile::tempdir().expect("a temporary directory");

    let packaged = cargo_package(target.path(), &[]);
    let stderr = String::from_utf8_lossy(&packaged.stderr);
    assert!(packaged.status.success(), "cargo package failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.trim_start().starts_with("warning"))
        .collect();
    assert!(warnings.is_empty(), "cargo package warns:\n{stderr}");
    let crates: Vec<String> = std::fs::read_dir(target.path().join("package"))
        .expect("cargo package wrote target/package")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("shipgate-policy-") && name.ends_with(".crate"))
        .collect();
    assert_eq!(crates.len(), 1, "{crates:?}");

    let listed = cargo_package(target.path(), &["--list"]);
    assert!(
        listed.status.success(),
        "cargo package --list failed:\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let stdout = String::from_utf8_lossy(&listed.stdout);
    let files: Vec<&str> = stdout.lines().collect();
    for needed in ["wit/policy.wit", "src/lib.rs", "Cargo.toml"] {
        assert!(
            files.contains(&needed),
            "{needed} is not packaged:\n{stdout}"
        );
    }
    let carried: Vec<&str> = files
        .iter()
        .copied()
        .filter(|file| EXCLUDED.iter().any(|excluded| file.starts_with(excluded)))
        .collect();
    assert!(
        carried.is_empty(),
        "excluded files are packaged: {carried:?}"
    );
}
