//! What the policy author's commands print: `new`'s crate and next steps,
//! `build`'s module and the gate lines to paste.

use crate::authoring::{Built, Created};

/// What `shipgate new` made, and what to run next.
pub(crate) fn created(name: &str, created: &Created) -> String {
    let dir = created.dir.display();
    format!(
        "created policy '{name}' in {dir}: {}\nsdk: {}\n\nnext:\n  cd {dir}\n  cargo test       \
         # unit tests, natively\n  shipgate build   # the wasm component, pinned in gate.toml\n  \
         shipgate test    # tests/policy/*.toml through the real runtime\n",
        created.files.join(", "),
        created.sdk
    )
}

/// What `shipgate build` prints: the module and the gate lines to paste.
pub(crate) fn built(built: &Built) -> String {
    let words: Vec<&str> = built.phases.iter().map(|p| p.as_str()).collect();
    let quoted: Vec<String> = words.iter().map(|p| format!("\"{p}\"")).collect();
    let file_name = built
        .module
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let pinned = built
        .pinned
        .as_ref()
        .map_or_else(String::new, |gate| format!("pinned  {}\n", gate.display()));
    format!(
        "built   {}\npolicy  {} {} (phases: {})\nsize    {} bytes\nsha256  {}\n{pinned}\n\
         # for your gate file (module paths are relative to it):\n\
         [[policy]]\nname = \"{}\"\nmodule = \"{file_name}\"\nsha256 = \"{}\"\nphases = [{}]\n",
        built.module.display(),
        built.name,
        built.version,
        words.join(", "),
        built.size,
        built.sha256,
        built.name,
        built.sha256,
        quoted.join(", "),
    )
}
