//! The SDK crate as `shipgate new --sdk vendored` writes it: its sources
//! and the contract's WIT embedded in the binary, and a manifest that stands
//! alone (every `workspace = true` replaced by the workspace's value), so a
//! policy crate builds with no checkout and no `shipgate-policy` release.

use std::fmt::Write as _;
use std::path::Path;

use toml::{Table, Value};

/// Writes `OUT_DIR/vendored_sdk.rs`: each file's path in the SDK crate and
/// its text; the license travels with the copy.
pub(crate) fn embed(workspace: &Path, out_dir: &Path) {
    let sdk = workspace.join("policies/sdk");
    let manifest = standalone_manifest(
        &read(&sdk.join("Cargo.toml")),
        &read(&workspace.join("Cargo.toml")),
    );
    let manifest_path = out_dir.join("vendored-sdk-Cargo.toml");
    std::fs::write(&manifest_path, manifest).expect("writing the vendored SDK's manifest");

    let mut files = vec![
        ("Cargo.toml".to_string(), manifest_path),
        ("LICENSE".to_string(), workspace.join("LICENSE")),
    ];
    for dir in ["src", "wit"] {
        collect(&sdk, &sdk.join(dir), &mut files);
    }
    let mut code = String::from("&[\n");
    for (relative, path) in &files {
        let source = path.display().to_string();
        writeln!(code, "    ({relative:?}, include_str!({source:?})),").expect("a String");
    }
    code.push(']');
    std::fs::write(out_dir.join("vendored_sdk.rs"), code).expect("writing vendored_sdk.rs");
}

/// Every file under `dir`, in a stable order, as (path relative to `root`
/// with `/` separators, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, std::path::PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        // Editors' and the OS's hidden files are not the SDK.
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let relative = path
                .strip_prefix(root)
                .expect("under the SDK")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((relative, path));
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The SDK's manifest with the workspace's values in place of
/// `workspace = true`, and without what points outside the crate.
fn standalone_manifest(sdk: &str, workspace: &str) -> String {
    let mut manifest: Table = sdk.parse().expect("policies/sdk/Cargo.toml is TOML");
    let workspace: Table = workspace.parse().expect("Cargo.toml is TOML");
    let section = |name: &str| -> Table {
        workspace
            .get("workspace")
            .and_then(|w| w.get(name))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (package_values, dependencies) = (section("package"), section("dependencies"));

    let package = manifest
        .get_mut("package")
        .and_then(Value::as_table_mut)
        .expect("the SDK has a [package]");
    for (key, value) in package.iter_mut() {
        if inherits(value) {
            *value = package_values
                .get(key)
                .unwrap_or_else(|| panic!("[workspace.package] has no {key}"))
                .clone();
        }
    }
    // Paths outside the crate do not exist in the copy.
    for key in ["readme", "include", "exclude", "workspace"] {
        package.remove(key);
    }
    package.insert("publish".into(), Value::Boolean(false));

    resolve_dependencies(&mut manifest, &dependencies);
    if let Some(targets) = manifest.get_mut("target").and_then(Value::as_table_mut) {
        for (_, target) in targets.iter_mut() {
            let Some(target) = target.as_table_mut() else {
                continue;
            };
            target.remove("dev-dependencies");
            resolve_dependencies(target, &dependencies);
        }
    }
    // The workspace's lints are for this repository's CI, not for a copy.
    // Tests, examples and benches stay in the repository.
    for key in ["lints", "dev-dependencies", "test", "example", "bench"] {
        manifest.remove(key);
    }

    format!(
        "# The shipgate-policy SDK, as the shipgate binary that created this crate\n\
         # carries it (`shipgate new --sdk vendored`). Do not edit: to move to a\n\
         # release, depend on shipgate-policy from crates.io and delete this directory.\n{}",
        toml::to_string(&manifest).expect("a TOML table serialises")
    )
}

fn inherits(value: &Value) -> bool {
    value
        .get("workspace")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `name.workspace = true` (with its own `features` or `optional`) becomes
/// the workspace's entry merged with them.
fn resolve_dependencies(table: &mut Table, workspace: &Table) {
    for kind in ["dependencies", "build-dependencies"] {
        let Some(entries) = table.get_mut(kind).and_then(Value::as_table_mut) else {
            continue;
        };
        for (name, entry) in entries.iter_mut() {
            if !inherits(entry) {
                continue;
            }
            let mut resolved = match workspace.get(name) {
                Some(Value::String(version)) => {
                    Table::from_iter([("version".to_string(), Value::String(version.clone()))])
                }
                Some(Value::Table(table)) => table.clone(),
                _ => panic!("[workspace.dependencies] has no {name}"),
            };
            assert!(
                !resolved.contains_key("path"),
                "the SDK depends on {name} by path; a vendored copy cannot"
            );
            let own = entry.as_table().expect("an inherited entry is a table");
            for (key, value) in own.iter().filter(|(key, _)| *key != "workspace") {
                if let (Some(Value::Array(features)), Value::Array(extra)) =
                    (resolved.get_mut(key), value)
                {
                    features.extend(extra.iter().cloned());
                } else {
                    resolved.insert(key.clone(), value.clone());
                }
            }
            *entry = Value::Table(resolved);
        }
    }
}
