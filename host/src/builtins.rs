//! The stock policies, compiled to wasm by `build.rs` and embedded.

/// The prefix that names an embedded module in a gate file or on the CLI.
pub const PREFIX: &str = "builtin:";

/// (name, module bytes) of every stock policy.
pub const BUILTINS: [(&str, &[u8]); 3] = [
    (
        "preflight",
        include_bytes!(concat!(env!("OUT_DIR"), "/preflight.wasm")),
    ),
    (
        "canary",
        include_bytes!(concat!(env!("OUT_DIR"), "/canary.wasm")),
    ),
    (
        "verify",
        include_bytes!(concat!(env!("OUT_DIR"), "/verify.wasm")),
    ),
];

/// The bytes of `builtin:NAME`, or `None` when `module` is not a built-in
/// reference or names no stock policy.
pub fn lookup(module: &str) -> Option<&'static [u8]> {
    let name = module.strip_prefix(PREFIX)?;
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// `builtin:preflight, builtin:canary, builtin:verify`, for error messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|(name, _)| format!("{PREFIX}{name}"))
        .collect::<Vec<_>>()
        .join(", ")
}
