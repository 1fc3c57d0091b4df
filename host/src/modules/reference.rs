//! A module reference, parsed once where it is read (a gate file, the
//! command line): what it names decides how it is loaded, and every place
//! that asks matches on [`ModuleKind`] instead of testing prefixes.

use std::fmt;
use std::path::PathBuf;

use crate::builtins;
use crate::registry::{self, Reference};

/// A policy module as a gate or the command line names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct ModuleRef {
    /// As written: what records and messages show.
    text: String,
    kind: ModuleKind,
}

/// What a module reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// `builtin:NAME`: a stock policy embedded in the binary.
    Builtin(String),
    /// A .wasm file (relative to the gate file's directory, or the working
    /// directory on the command line).
    File(PathBuf),
    /// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`.
    Oci(Reference),
    /// `https://…` (or `http://` on loopback), pinned by `sha256`.
    Url(String),
}

impl ModuleRef {
    /// Reads a reference; only a malformed `oci://` one is refused here (a
    /// missing file or unknown stock policy is the module's fault when it
    /// loads, so a gate still fails closed rather than not loading).
    pub(crate) fn parse(text: &str) -> Result<ModuleRef, String> {
        let kind = if let Some(name) = text.strip_prefix(builtins::PREFIX) {
            ModuleKind::Builtin(name.to_string())
        } else if text.starts_with(registry::SCHEME) {
            ModuleKind::Oci(Reference::parse(text)?)
        } else if text.starts_with("https://") || text.starts_with("http://") {
            ModuleKind::Url(text.to_string())
        } else {
            ModuleKind::File(PathBuf::from(text))
        };
        Ok(ModuleRef {
            text: text.to_string(),
            kind,
        })
    }

    /// `builtin:NAME`.
    pub(crate) fn builtin(name: &str) -> ModuleRef {
        ModuleRef {
            text: format!("{}{name}", builtins::PREFIX),
            kind: ModuleKind::Builtin(name.to_string()),
        }
    }

    /// A file named by path.
    pub(crate) fn file(path: PathBuf) -> ModuleRef {
        ModuleRef {
            text: path.display().to_string(),
            kind: ModuleKind::File(path),
        }
    }

    pub(crate) fn kind(&self) -> &ModuleKind {
        &self.kind
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it is one of the stock policies (the host's own code).
    pub(crate) fn is_builtin(&self) -> bool {
        matches!(self.kind, ModuleKind::Builtin(_))
    }

    /// Whether it is fetched from elsewhere (a registry or a URL).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self.kind, ModuleKind::Oci(_) | ModuleKind::Url(_))
    }

    /// A registry reference without a digest: what it names can change.
    pub(crate) fn is_unpinned_reference(&self) -> bool {
        matches!(&self.kind, ModuleKind::Oci(reference) if reference.digest.is_none())
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for ModuleRef {
    type Error = String;

    fn try_from(text: String) -> Result<ModuleRef, String> {
        ModuleRef::parse(&text)
    }
}

impl From<ModuleRef> for String {
    fn from(reference: ModuleRef) -> String {
        reference.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_reference_is_told_apart_once() {
        let kind = |text: &str| ModuleRef::parse(text).unwrap().kind;
        assert_eq!(kind("builtin:canary"), ModuleKind::Builtin("canary".into()));
        assert_eq!(
            kind("team/rules.wasm"),
            ModuleKind::File("team/rules.wasm".into())
        );
        assert!(matches!(kind("oci://r.example/p:1"), ModuleKind::Oci(_)));
        assert!(matches!(
            kind("https://e.example/p.wasm"),
            ModuleKind::Url(_)
        ));
        assert!(
            ModuleRef::parse("oci://")
                .unwrap_err()
                .contains("is not an OCI reference")
        );
        let pinned = "oci://r.example/p@sha256:".to_string() + &"a".repeat(64);
        assert!(!ModuleRef::parse(&pinned).unwrap().is_unpinned_reference());
        assert!(
            ModuleRef::parse("oci://r.example/p:1")
                .unwrap()
                .is_unpinned_reference()
        );
        assert_eq!(ModuleRef::builtin("verify").to_string(), "builtin:verify");
    }
}
