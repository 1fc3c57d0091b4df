//! `docs/ARCHITECTURE.md` checked against the sources. The document's module
//! table is the specification: each row names a module, its layer and its
//! files. These tests fail when a file exists that the table does not name
//! (or the reverse), when an import points up a layer, when a leaf imports
//! the crate, when HTTP types leave `server/`, and when imports form a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One row of the module table.
struct Row {
    /// `service`, `registry::error`, `text`, ...
    module: String,
    layer: u8,
    /// Paths relative to `src/`, as on disk.
    files: Vec<String>,
    /// "nothing of the crate" in the may-import column.
    leaf: bool,
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn architecture() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ARCHITECTURE.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backticked words of one table cell.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The rows of the table under `## Modules`.
fn rows() -> Vec<Row> {
    let text = architecture();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Modules"))
        .expect("docs/ARCHITECTURE.md has a `## Modules` section");
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(cells.len() >= 6, "module table row has 4 cells: {line}");
        let name = backticked(cells[1])[0];
        let layer = cells[2]
            .parse()
            .unwrap_or_else(|_| panic!("layer `{}` is not a number: {line}", cells[2]));
        let (module, files) = if let Some(dir) = name.strip_suffix('/') {
            let files = backticked(cells[4])
                .into_iter()
                .filter(|w| w.ends_with(".rs"))
                .map(|file| format!("{dir}/{file}"))
                .collect();
            (dir.replace('/', "::"), files)
        } else {
            let module = name
                .strip_suffix(".rs")
                .unwrap_or_else(|| panic!("`{name}` is neither `DIR/` nor `FILE.rs`: {line}"));
            (module.replace('/', "::"), vec![name.to_string()])
        };
        let leaf = cells[3].contains("nothing of the crate");
        rows.push(Row {
            module,
            layer,
            files,
            leaf,
        });
    }
    assert!(rows.len() > 20, "only {} module rows found", rows.len());
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file, relative to `src/` with `/` separators.
fn sources() -> Vec<String> {
    let src = source_dir();
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    let mut names: Vec<String> = all
        .iter()
        .map(|p| {
            let relative = p.strip_prefix(&src).unwrap();
            relative.to_str().unwrap().replace('\\', "/")
        })
        .collect();
    names.sort();
    names
}

/// The module path a file defines: `service/mod.rs` → `service`.
fn module_of(file: &str) -> String {
    let path = file.strip_suffix(".rs").unwrap();
    let path = path.strip_suffix("/mod").unwrap_or(path);
    path.replace('/', "::")
}

/// The row that owns `path` (`a::b::c`): the longest module prefix.
fn owner<'a>(rows: &'a [Row], path: &[String]) -> Option<&'a Row> {
    rows.iter()
        .filter(|row| {
            let module: Vec<&str> = row.module.split("::").collect();
            module.len() <= path.len() && module.iter().zip(path).all(|(a, b)| a == b)
        })
        .max_by_key(|row| row.module.len())
}

/// Every path `crate::…` names in `text`, braces expanded:
/// `crate::a::{b::C, d}` gives `a::b::C` and `a::d`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `shipgate_policy::…` ends in `…crate::`? not ours
        }
        expand(&text[at + "crate::".len()..], Vec::new(), &mut out);
    }
    out
}

/// Parses one path (with nested groups) at the start of `rest`.
fn expand(rest: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut i = 0;
    let bytes = rest.as_bytes();
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            let segment = &rest[start..i];
            if segment != "self" {
                path.push(segment.to_string());
            }
        }
        if rest[i..].starts_with("::{") {
            i += 3;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
                i += expand(&rest[i..], path.clone(), out);
            }
        } else if rest[i..].starts_with("::") && i > start {
            i += 2;
        } else {
            if !path.is_empty() {
                out.push(path);
            }
            return i;
        }
    }
}

/// `super::` paths of a file's own module, resolved to crate paths.
fn super_paths(file: &str, text: &str) -> Vec<Vec<String>> {
    let own: Vec<String> = module_of(file).split("::").map(String::from).collect();
    // In `a/b.rs` `super` is `a`; in `a/mod.rs` it is the parent of `a`.
    let mut out = Vec::new();
    for (at, _) in text.match_indices("super::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &text[at..];
        let mut base = own.clone();
        while let Some(tail) = rest.strip_prefix("super::") {
            base.pop();
            rest = tail;
        }
        expand(rest, base, &mut out);
    }
    out
}

/// A file's text without its `#[cfg(test)]` part (tests sit at the end).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

#[test]
fn the_module_table_names_every_file_and_only_files_that_exist() {
    let rows = rows();
    let documented: BTreeSet<String> = rows.iter().flat_map(|r| r.files.clone()).collect();
    let on_disk: BTreeSet<String> = sources().into_iter().collect();
    let undocumented: Vec<_> = on_disk.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&on_disk).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "docs/ARCHITECTURE.md's module table is out of date:\n  files it does not name: \
         {undocumented:?}\n  files it names that do not exist: {missing:?}"
    );
}

#[test]
fn imports_point_down_the_layers_and_leaves_import_nothing() {
    let rows = rows();
    let src = source_dir();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let root_reexports: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub use "))
        .flat_map(|line| crate_paths(&format!("crate::{line}")))
        .filter_map(|path| path.last().cloned())
        .collect();
    let mut checked = 0;
    // This file's own examples are not imports.
    for file in sources().into_iter().filter(|f| f != "layers.rs") {
        let own_path: Vec<String> = module_of(&file).split("::").map(String::from).collect();
        let Some(own) = owner(&rows, &own_path) else {
            panic!("{file}: no row of the module table owns it");
        };
        let text = std::fs::read_to_string(src.join(&file)).unwrap();
        for path in crate_paths(&text) {
            let Some(target) = owner(&rows, &path).or_else(|| {
                // `crate::Error`, `crate::exit::…`: the root's re-exports.
                let reexported = root_reexports.iter().any(|name| *name == path[0]);
                reexported.then(|| owner(&rows, &["lib".to_string()]))?
            }) else {
                panic!(
                    "{file}: `crate::{}` is in no row of the module table",
                    path.join("::")
                );
            };
            checked += 1;
            if target.module == own.module {
                continue;
            }
            assert!(
                target.layer <= own.layer,
                "{file}: `{}` (layer {}) imports `crate::{}` of `{}` (layer {})",
                own.module,
                own.layer,
                path.join("::"),
                target.module,
                target.layer
            );
            let same_tree = target.module.split("::").next() == own.module.split("::").next();
            assert!(
                !own.leaf || same_tree,
                "{file}: `{}` is a leaf, yet imports `crate::{}`",
                own.module,
                path.join("::")
            );
        }
    }
    assert!(
        checked > 200,
        "only {checked} imports found: is the scan broken?"
    );
}

#[test]
fn http_types_stay_in_the_server() {
    let src = source_dir();
    for file in sources().iter().filter(|f| !f.starts_with("server/")) {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        for http in ["axum", "hyper", "hyper_util", "tower", "tower_http"] {
            let used = text.contains(&format!("{http}::")) || text.contains(&format!("use {http}"));
            assert!(!used, "{file} uses `{http}`: HTTP types belong to server/");
        }
    }
}

#[test]
fn no_circle_in_the_import_graph() {
    let src = source_dir();
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // The file-module a path lands in: its longest prefix that is a file.
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| *f != "layers.rs") {
        let from = module_of(file);
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        let code = without_tests(&text);
        let mut paths = crate_paths(code);
        paths.extend(super_paths(file, code));
        for path in paths {
            let Some(to) = resolve(&path) else { continue };
            // A module declaring and re-exporting its own children is not
            // a dependency on them in the sense that matters here.
            let is_descendant = to.starts_with(&format!("{from}::"));
            if to != from && !is_descendant {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        edges.len() > 40,
        "only {} modules import anything",
        edges.len()
    );
    // Depth-first search; a node on the stack seen again closes a circle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_string());
            panic!("imports form a circle: {}", circle.join(" → "));
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_scanner_expands_groups_and_resolves_super() {
    let paths = crate_paths("use crate::a::{b::C, d::{self, E}};\nlet x = crate::f::g();");
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["a::b::C", "a::d", "a::d::E", "f::g"]);
    let supers = super_paths("a/b.rs", "use super::X; use super::super::y::Z;");
    let joined: Vec<String> = supers.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["a::X", "y::Z"]);
    let supers = super_paths("a/mod.rs", "use super::q;");
    assert_eq!(supers, [vec!["q".to_string()]]);
}
