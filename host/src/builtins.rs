//! The stock policies, compiled to wasm by `build.rs` and embedded.

/// The prefix that names an embedded module in a gate file or on the CLI.
pub(crate) const PREFIX: &str = "builtin:";

/// A stock policy's module.
pub struct Builtin {
    /// `canary` for `builtin:canary`.
    pub name: &'static str,
    pub bytes: &'static [u8],
    /// Hex sha256 of `bytes`, computed at build time.
    pub sha256: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")),
            sha256: include_str!(concat!(env!("OUT_DIR"), "/", $name, ".sha256")),
        }
    };
}

/// Every stock policy.
pub(crate) const BUILTINS: [Builtin; 4] = [
    builtin!("preflight"),
    builtin!("canary"),
    builtin!("verify"),
    builtin!("judge"),
];

/// `builtin:NAME`'s module, or `None` when `module` is not a built-in
/// reference or names no stock policy.
pub fn lookup(module: &str) -> Option<&'static Builtin> {
    by_name(module.strip_prefix(PREFIX)?)
}

/// The stock policy called `name` (`canary`).
pub(crate) fn by_name(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

/// `builtin:preflight, builtin:canary, builtin:verify`, for error messages.
pub(crate) fn names() -> String {
    BUILTINS
        .iter()
        .map(|builtin| format!("{PREFIX}{}", builtin.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_build_time_digests_are_the_modules_digests() {
        for builtin in &BUILTINS {
            assert_eq!(
                builtin.sha256,
                hex::encode(Sha256::digest(builtin.bytes)),
                "{}",
                builtin.name
            );
        }
    }
}
