//! shipgate: a deployment gate that evaluates WebAssembly policies over
//! deployment snapshots and answers allow, deny or rollback, with reasons.
//!
//! The `shipgate` binary is a thin front end over this library (see
//! `docs/ARCHITECTURE.md`): [`snapshot`] validates what a CD system sends,
//! [`gate`] reads the gate file, `modules` resolves policy modules (`registry` fetches those from OCI
//! registries),
//! [`runtime`] runs them in fresh sandboxes, [`evaluate`] combines them into
//! a [`decision::Evaluation`], `decision_log` records and replays
//! decisions, `report` prints them, `history` draws a rollout from its log, `authoring` is the policy author's
//! workflow (new, build, test), `sources` gathers evidence, `adapters`
//! speak each CD system's protocol, and `server` serves them over HTTP.
//!
//! What is public is what the benchmark and the tests drive directly: the
//! runtime, gates, snapshots, a prepared gate and its decision record.

mod adapters;
mod authoring;
pub mod builtins;
pub mod cli;
pub mod decision;
mod decision_log;
mod error;
pub mod evaluate;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
mod history;
mod inspect;
mod modules;
mod registry;
mod report;
pub mod runtime;
mod server;
pub mod snapshot;
mod sources;

pub use error::{Error, exit};
pub use shipgate_policy::{Decision, Finding, Phase};

/// The layering of `docs/ARCHITECTURE.md`, checked on the sources: a module
/// may import its own layer and those below, never one above.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Each top-level module and its layer (higher uses lower).
    const LAYERS: [(&str, u8); 23] = [
        ("fuzzing", 5),
        ("cli", 4),
        ("server", 4),
        ("authoring", 3),
        ("adapters", 3),
        ("report", 3),
        ("history", 3),
        ("inspect", 3),
        ("evaluate", 2),
        ("decision_log", 2),
        ("decision", 2),
        ("modules", 2),
        ("gate", 1),
        ("runtime", 1),
        ("sources", 1),
        ("registry", 1),
        ("snapshot", 0),
        ("builtins", 0),
        ("error", 0),
        ("exit", 0),
        ("Decision", 0),
        ("Phase", 0),
        ("Finding", 0),
    ];

    fn layer(module: &str) -> u8 {
        LAYERS
            .iter()
            .find(|(name, _)| *name == module)
            .unwrap_or_else(|| panic!("module `{module}` is not in the layer table"))
            .1
    }

    /// The top-level modules `crate::NAME` paths in `text` name.
    fn imports(text: &str) -> Vec<String> {
        text.match_indices("crate::")
            .map(|(at, _)| {
                let rest = &text[at + "crate::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                rest[..end].to_string()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn imports_point_down_the_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut checked = 0;
        for path in all {
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs");
            if matches!(module, "lib" | "main") {
                continue;
            }
            let own = layer(module);
            let text = std::fs::read_to_string(&path).unwrap();
            for import in imports(&text) {
                if import == module {
                    continue;
                }
                assert!(
                    layer(&import) <= own,
                    "{}: `{module}` (layer {own}) imports `crate::{import}` (layer {})",
                    relative.display(),
                    layer(&import)
                );
                assert!(
                    !matches!(module, "sources" | "registry"),
                    "{}: {module}/ is a leaf, yet imports `crate::{import}`",
                    relative.display()
                );
                checked += 1;
            }
        }
        assert!(
            checked > 50,
            "only {checked} imports found: is the scan broken?"
        );
    }
}
