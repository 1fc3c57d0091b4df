//! Module references → compiled policies: `builtin:NAME` (embedded in this
//! binary) or a path, confined to the gate file's directory; the sha256 pin
//! checked before anything is compiled.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::builtins;
use crate::gate::{ModuleBase, PolicyEntry};
use crate::runtime::{ComponentError, LoadedModule, Runtime};

/// Why a policy's module cannot be used. Callers branch on the kind; the
/// message names the module and, for files, where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadError {
    /// `builtin:NAME` names no stock policy.
    UnknownBuiltin { module: String },
    /// No such file (in `dir`, when confined to a gate's directory).
    NotFound {
        module: String,
        dir: Option<PathBuf>,
    },
    /// The path climbs out of the gate file's directory.
    OutsideGateDir { module: String, dir: PathBuf },
    /// The file exists but could not be read.
    Unreadable { module: String, detail: String },
    /// The bytes are not the ones the gate pins.
    PinMismatch {
        module: String,
        actual: String,
        pinned: String,
    },
    /// The bytes are not a policy component of this contract.
    Component {
        module: String,
        error: ComponentError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::UnknownBuiltin { module } => write!(
                f,
                "no stock policy '{module}' (there are {})",
                builtins::names()
            ),
            LoadError::NotFound { module, dir: None } => {
                write!(f, "module file '{module}' not found")
            }
            LoadError::NotFound {
                module,
                dir: Some(dir),
            } => write!(f, "module file '{module}' not found in {}", dir.display()),
            LoadError::OutsideGateDir { module, dir } => write!(
                f,
                "module path '{module}' leaves the gate file's directory {}; \
                 module paths are relative to the gate file and stay inside it",
                dir.display()
            ),
            LoadError::Unreadable { module, detail } => {
                write!(f, "reading module '{module}'{detail}")
            }
            LoadError::PinMismatch {
                module,
                actual,
                pinned,
            } => write!(
                f,
                "module '{module}' has sha256 {actual}, but the gate pins {pinned}"
            ),
            LoadError::Component { module, error } => write!(f, "module '{module}': {error}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// A policy module's bytes and their digest.
pub(crate) struct ModuleBytes {
    pub(crate) bytes: Cow<'static, [u8]>,
    /// Hex sha256 of `bytes`.
    pub(crate) sha256: String,
}

/// Reads a policy's module, checks its pin and compiles it.
pub(crate) fn load_module(
    runtime: &Runtime,
    base: &ModuleBase,
    policy: &PolicyEntry,
) -> Result<Arc<LoadedModule>, LoadError> {
    let module = read_module(base, &policy.module)?;
    if let Some(pin) = &policy.sha256
        && !module.sha256.eq_ignore_ascii_case(pin)
    {
        return Err(LoadError::PinMismatch {
            module: policy.module.clone(),
            actual: module.sha256,
            pinned: pin.clone(),
        });
    }
    compile(runtime, &policy.module, &module)
}

/// Compiles bytes read by [`read_module`].
pub(crate) fn compile(
    runtime: &Runtime,
    module: &str,
    bytes: &ModuleBytes,
) -> Result<Arc<LoadedModule>, LoadError> {
    runtime
        .load_digested(&bytes.bytes, &bytes.sha256)
        .map_err(|error| LoadError::Component {
            module: module.to_string(),
            error,
        })
}

/// The bytes of a module reference.
pub(crate) fn read_module(base: &ModuleBase, module: &str) -> Result<ModuleBytes, LoadError> {
    if module.starts_with(builtins::PREFIX) {
        let builtin = builtins::lookup(module).ok_or_else(|| LoadError::UnknownBuiltin {
            module: module.to_string(),
        })?;
        return Ok(ModuleBytes {
            bytes: Cow::Borrowed(builtin.bytes),
            sha256: builtin.sha256.to_string(),
        });
    }
    let bytes = match base {
        ModuleBase::WorkingDir => std::fs::read(module).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound {
                module: module.to_string(),
                dir: None,
            },
            _ => LoadError::Unreadable {
                module: module.to_string(),
                detail: format!(": {e}"),
            },
        }),
        ModuleBase::Confined(dir) => read_confined(dir, module),
    }?;
    Ok(ModuleBytes {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: Cow::Owned(bytes),
    })
}

/// Reads `module` inside `dir` only: an absolute path or one that climbs
/// out with `..` is refused, so a gate (or a request naming a gate's module)
/// cannot reach other files.
fn read_confined(dir: &Path, module: &str) -> Result<Vec<u8>, LoadError> {
    let root =
        cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(|e| {
            LoadError::Unreadable {
                module: module.to_string(),
                detail: format!(": opening the gate's directory {}: {e}", dir.display()),
            }
        })?;
    root.read(module).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            module: module.to_string(),
            dir: Some(dir.to_path_buf()),
        },
        _ if Path::new(module).is_absolute() || module.split(['/', '\\']).any(|c| c == "..") => {
            LoadError::OutsideGateDir {
                module: module.to_string(),
                dir: dir.to_path_buf(),
            }
        }
        _ => LoadError::Unreadable {
            module: module.to_string(),
            detail: format!(" in {}: {e}", dir.display()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(dir: &Path, module: &str) -> Result<ModuleBytes, LoadError> {
        read_module(&ModuleBase::Confined(dir.to_path_buf()), module)
    }

    #[test]
    fn module_references_resolve_or_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.wasm"), b"bytes").unwrap();
        let read = confined(dir.path(), "rules.wasm").unwrap();
        assert_eq!(read.sha256, hex::encode(Sha256::digest(b"bytes")));
        assert!(matches!(
            confined(dir.path(), "missing.wasm"),
            Err(LoadError::NotFound { dir: Some(_), .. })
        ));
        let outside = confined(dir.path(), "../etc/passwd").err().unwrap();
        assert!(matches!(outside, LoadError::OutsideGateDir { .. }));
        assert!(
            outside
                .to_string()
                .contains("leaves the gate file's directory")
        );
        let absolute = confined(dir.path(), "/etc/hostname").err().unwrap();
        assert!(matches!(absolute, LoadError::OutsideGateDir { .. }));
        let unknown = read_module(&ModuleBase::WorkingDir, "builtin:nope")
            .err()
            .unwrap();
        assert_eq!(
            unknown.to_string(),
            "no stock policy 'builtin:nope' (there are builtin:preflight, builtin:canary, builtin:verify)"
        );
        let stock = read_module(&ModuleBase::WorkingDir, "builtin:canary").unwrap();
        assert_eq!(
            stock.sha256,
            builtins::lookup("builtin:canary").unwrap().sha256
        );
    }
}
