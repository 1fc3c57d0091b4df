//! `shipgate build`: a policy crate built for wasm32-wasip2 with the stock
//! policies' settings, checked as a component of this contract, and pinned
//! in the crate's own gate file.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use shipgate_policy::Phase;

use crate::error::Error;
use crate::inspect;
use crate::modules::ModuleRef;
use crate::runtime::Runtime;

const TARGET: &str = "wasm32-wasip2";

/// The release profile of the stock policies (the workspace's
/// `[profile.policy]`), given on cargo's command line: configuration
/// overrides whatever the crate's Cargo.toml says.
const PROFILE: [&str; 5] = [
    "profile.release.opt-level=3",
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    "profile.release.strip=true",
    "profile.release.panic=\"abort\"",
];

// POLICY_RUSTFLAGS: the flags host/build.rs builds the stock policies with.
include!("../../policy-rustflags.rs");
pub(super) const RUSTFLAGS: &str = POLICY_RUSTFLAGS;

/// A built, checked module.
#[derive(Debug, Serialize)]
pub(crate) struct Built {
    pub(crate) module: PathBuf,
    pub(crate) sha256: String,
    pub(crate) size: usize,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) phases: Vec<Phase>,
    /// The gate file whose `[[policy]]` entry now pins this module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pinned: Option<PathBuf>,
}

/// What a build came to: cargo's own failure (already shown on stderr) or
/// the module.
pub(crate) enum Outcome {
    CargoFailed,
    Built(Built),
}

/// Builds the crate in `dir`, checks the component, and pins `dir/gate.toml`
/// if one of its policies names the module.
pub(crate) fn build(runtime: &Runtime, dir: &Path) -> Result<Outcome, Error> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::MissingInput(format!(
            "{}: no such file (shipgate build takes a policy crate's directory)",
            manifest.display()
        )));
    }
    ensure_target(dir)?;
    let Some(module) = cargo_build(&manifest)? else {
        return Ok(Outcome::CargoFailed);
    };
    let inspection = inspect::inspect(runtime, &ModuleRef::file(module.clone()))?;
    let pinned = pin_gate(dir, &module, &inspection.sha256)?;
    Ok(Outcome::Built(Built {
        module,
        sha256: inspection.sha256,
        size: inspection.size,
        name: inspection.name,
        version: inspection.version,
        phases: inspection.phases,
        pinned,
    }))
}

/// Installs the wasm target with rustup when the toolchain the crate builds
/// with lacks it.
fn ensure_target(dir: &Path) -> Result<(), Error> {
    let libdir = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("running rustc")))?;
    let installed = libdir.status.success()
        && Path::new(String::from_utf8_lossy(&libdir.stdout).trim()).is_dir();
    if installed {
        return Ok(());
    }
    eprintln!("shipgate: installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => Err(Error::Internal(anyhow::anyhow!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed; \
             install it for the toolchain that builds {}",
            dir.display()
        ))),
    }
}

/// Runs cargo; its diagnostics go to stderr as cargo shows them. Returns
/// the component it built, or `None` when cargo failed.
fn cargo_build(manifest: &Path) -> Result<Option<PathBuf>, Error> {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--release", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest)
        // The crate's own target/, whatever CARGO_TARGET_DIR says: its
        // gate.toml names the module there.
        .arg("--target-dir")
        .arg(manifest.with_file_name("target"))
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS)
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::piped());
    for setting in PROFILE {
        cargo.args(["--config", setting]);
    }
    let mut child = cargo
        .spawn()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("running cargo")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut modules = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| Error::Internal(e.into()))?;
        if let Some(module) = cdylib_artifact(&line) {
            modules.push(module);
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("waiting for cargo")))?;
    if !status.success() {
        return Ok(None);
    }
    match modules.pop() {
        Some(module) => Ok(Some(module)),
        None => Err(Error::InvalidInput(format!(
            "{}: the crate builds no component: set `crate-type = [\"cdylib\", \"rlib\"]` in [lib]",
            manifest.display()
        ))),
    }
}

/// The `.wasm` file of a `compiler-artifact` message for a cdylib target.
fn cdylib_artifact(line: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let kinds = message["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == "cdylib") {
        return None;
    }
    message["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

/// Sets `sha256` on every `[[policy]]` of `dir/gate.toml` whose module is
/// the file just built, keeping the file's comments and layout.
fn pin_gate(dir: &Path, module: &Path, sha256: &str) -> Result<Option<PathBuf>, Error> {
    let path = dir.join("gate.toml");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::reading(&path, e))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    let built = std::fs::canonicalize(module).map_err(|e| Error::reading(module, e))?;
    let Some(policies) = document
        .get_mut("policy")
        .and_then(|p| p.as_array_of_tables_mut())
    else {
        return Ok(None);
    };
    let mut pinned = false;
    for policy in policies.iter_mut() {
        let names_module = policy
            .get("module")
            .and_then(|m| m.as_str())
            .and_then(|m| std::fs::canonicalize(dir.join(m)).ok())
            .is_some_and(|m| m == built);
        if names_module {
            policy["sha256"] = toml_edit::value(sha256);
            pinned = true;
        }
    }
    if !pinned {
        return Ok(None);
    }
    std::fs::write(&path, document.to_string()).map_err(|e| {
        Error::Internal(anyhow::Error::new(e).context(format!("writing {}", path.display())))
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PROFILE` as TOML values, `opt-level` → `3`.
    fn profile_settings() -> toml::Table {
        PROFILE
            .iter()
            .map(|setting| {
                let (key, value) = setting
                    .trim_start_matches("profile.release.")
                    .split_once('=')
                    .unwrap();
                (key.to_string(), value.parse::<toml::Value>().unwrap())
            })
            .collect()
    }

    /// One profile, written in four places: the workspace's for the stock
    /// policies, `shipgate build`'s, the template's and the example's.
    #[test]
    fn every_policy_profile_is_the_stock_one() {
        let settings = profile_settings();
        let profile = |text: &str, name: &str| -> toml::Table {
            let manifest: toml::Table = toml::from_str(text).unwrap();
            let table = manifest["profile"][name].as_table().unwrap().clone();
            table
                .into_iter()
                .filter(|(key, _)| key != "inherits")
                .collect()
        };
        assert_eq!(
            profile(include_str!("../../../Cargo.toml"), "policy"),
            settings
        );
        let template = include_str!("template/Cargo.toml.in").replace("{{sdk_dependency}}", "");
        assert_eq!(
            profile(
                &template
                    .replace("{{name}}", "x")
                    .replace("{{description}}", ""),
                "release"
            ),
            settings
        );
        assert_eq!(
            profile(
                include_str!("../../../examples/custom-policy/Cargo.toml"),
                "release"
            ),
            settings
        );
        assert!(
            include_str!("../../../examples/custom-policy/.cargo/config.toml").contains(RUSTFLAGS)
        );
    }

    #[test]
    fn only_a_cdylibs_wasm_file_is_the_module() {
        let artifact = r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"],"name":"rules"},"filenames":["/t/librules.rlib","/t/rules.wasm"]}"#;
        assert_eq!(
            cdylib_artifact(artifact),
            Some(PathBuf::from("/t/rules.wasm"))
        );
        let dependency = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libserde.rlib"]}"#;
        assert_eq!(cdylib_artifact(dependency), None);
        assert_eq!(
            cdylib_artifact(r#"{"reason":"build-finished","success":true}"#),
            None
        );
        assert_eq!(cdylib_artifact("not json"), None);
    }

    #[test]
    fn the_pin_lands_on_the_entry_that_names_the_module_and_keeps_comments() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("out/rules.wasm");
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, b"\0asm").unwrap();
        let gate = "# keep me\nname = \"g\"\n\n[[policy]]\nname = \"canary\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n\n\
                    [[policy]]\nname = \"rules\"\nmodule = \"out/rules.wasm\"\nsha256 = \"old\"\nphases = [\"abort\"]\n";
        std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
        let pinned = pin_gate(dir.path(), &module, "abc").unwrap();
        assert_eq!(pinned, Some(dir.path().join("gate.toml")));
        let text = std::fs::read_to_string(dir.path().join("gate.toml")).unwrap();
        assert_eq!(text, gate.replace("sha256 = \"old\"", "sha256 = \"abc\""));
    }
}
