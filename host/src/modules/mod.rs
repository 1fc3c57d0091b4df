//! Module references → compiled policies: `builtin:NAME` (embedded in this
//! binary), a path, confined to the gate file's directory, or an `oci://`
//! reference (read from the module store, fetched into it when missing, its
//! signature verified when the gate asks); the pin checked before anything
//! is compiled.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub(crate) mod reference;

use crate::builtins;
use crate::error::Error;
use crate::gate::{Gate, ModuleBase, PolicyEntry};
use crate::registry::{self, PublicKey, Reference, Remote};
use crate::runtime::{ComponentError, LoadedModule, Runtime};

pub(crate) use reference::{ModuleKind, ModuleRef};

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
    /// Not a regular file (a pipe, a device, a directory).
    NotAFile { module: String },
    /// Larger than the gate's `limits.max_module_mib`.
    TooLarge { module: String, size: u64, max: u64 },
    /// The bytes are not the ones the gate pins.
    PinMismatch {
        module: String,
        actual: String,
        pinned: String,
    },
    /// A module from a registry or URL that could not be fetched or read.
    Remote {
        module: String,
        error: registry::RegistryError,
    },
    /// A module from a registry whose signature the gate requires and
    /// which does not verify.
    Signature { module: String, detail: String },
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
            LoadError::NotAFile { module } => {
                write!(f, "module '{module}' is not a regular file")
            }
            LoadError::TooLarge { module, size, max } => write!(
                f,
                "module '{module}' has {size} bytes, more than the limit of {max} \
                 (limits.max_module_mib)"
            ),
            LoadError::PinMismatch {
                module,
                actual,
                pinned,
            } => write!(
                f,
                "module '{module}' has sha256 {actual}, but the gate pins {pinned}"
            ),
            LoadError::Component { module, error } => write!(f, "module '{module}': {error}"),
            LoadError::Remote { module, error } => write!(f, "module '{module}': {error}"),
            LoadError::Signature { module, detail } => {
                write!(f, "module '{module}': signature: {detail}")
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// A policy module's bytes and their digest.
pub(crate) struct ModuleBytes {
    pub(crate) bytes: Cow<'static, [u8]>,
    /// Hex sha256 of `bytes`.
    pub(crate) sha256: String,
    /// For a module from a registry: its reference, pinned.
    pub(crate) reference: Option<Reference>,
}

/// Reads a policy's module, checks its pin and compiles it.
pub(crate) fn load_module(
    runtime: &Runtime,
    base: &ModuleBase,
    remote: &Remote,
    policy: &PolicyEntry,
    max_bytes: u64,
) -> Result<Arc<LoadedModule>, LoadError> {
    let module = read_module(
        base,
        remote,
        &policy.module,
        policy.sha256.as_deref(),
        max_bytes,
    )?;
    if let Some(pin) = &policy.sha256
        && !module.sha256.eq_ignore_ascii_case(pin)
    {
        return Err(LoadError::PinMismatch {
            module: policy.module.to_string(),
            actual: module.sha256,
            pinned: pin.clone(),
        });
    }
    if asks_for_signature(remote, policy) {
        // The gate refuses `verify` on anything but a registry reference.
        let reference = module
            .reference
            .as_ref()
            .ok_or_else(|| "only modules from registries are signed".to_string());
        let key = policy.verify.as_ref().map(|v| v.key.as_str());
        signed_by(base, remote, reference, key).map_err(|detail| LoadError::Signature {
            module: policy.module.to_string(),
            detail,
        })?;
    }
    compile(runtime, policy.module.as_str(), &module)
}

/// Whether a policy's module must be signed: the gate names a `verify`
/// key, or the server requires signatures of modules from registries
/// (`--require-signatures`, by the keys it trusts). The stock policies are
/// part of the binary, and signed with it.
fn asks_for_signature(remote: &Remote, policy: &PolicyEntry) -> bool {
    let from_registry = matches!(policy.module.kind(), ModuleKind::Oci(_));
    policy.verify.is_some() || (remote.require_signed && from_registry)
}

/// Checks the module at `reference` is signed, and by whom: by `key` when
/// the gate names one (which must be one of the server's `--trust-key`
/// keys, when it names any: a gate may only narrow them), else by any key
/// the server trusts. The signer's fingerprint.
fn signed_by(
    base: &ModuleBase,
    remote: &Remote,
    reference: Result<&Reference, String>,
    key: Option<&str>,
) -> Result<String, String> {
    let reference = reference?;
    let keys = match key {
        Some(key) => {
            let key = read_key(base, key)?;
            let trusted = remote
                .trusted
                .iter()
                .any(|t| t.fingerprint == key.fingerprint);
            if !remote.trusted.is_empty() && !trusted {
                return Err(format!(
                    "key {} is not one the server trusts (--trust-key): a gate may only \
                     narrow the server's keys",
                    key.fingerprint
                ));
            }
            vec![key]
        }
        None if remote.trusted.is_empty() => {
            return Err("no key to verify with: the server trusts none (--trust-key)".into());
        }
        None => remote.trusted.clone(),
    };
    remote
        .verify(reference, &keys)
        .map_err(|error| match keys.len() {
            1 => error.to_string(),
            n => format!("signed by none of the {n} keys the server trusts ({error})"),
        })
}

/// Fetches every module of the gate that lives in a registry or at a URL
/// into the store now, and checks the signatures the gate asks for, so a
/// server starts, or reloads, only when it has them all: an unreachable
/// registry keeps the old gate instead of one that fails closed.
pub(crate) fn fetch_remote(gate: &Gate) -> Result<(), Error> {
    let remote = gate.file.policies.iter().filter(|p| p.module.is_remote());
    for policy in remote {
        let at = format!("{}: policy '{}'", gate.origin.label(), policy.name);
        read_module(
            &gate.module_base,
            &gate.remote,
            &policy.module,
            policy.sha256.as_deref(),
            gate.max_module_bytes(),
        )
        .map_err(|e| match e {
            LoadError::Remote { error, .. } => {
                let module = &policy.module;
                Error::from(registry::RegistryError::new(
                    error.kind,
                    format!("{at}: module '{module}': {error}"),
                ))
            }
            other => Error::InvalidInput(format!("{at}: {other}")),
        })?;
        if let Some(Err(why)) = signer(&gate.module_base, &gate.remote, policy) {
            return Err(Error::InvalidInput(format!(
                "{at}: module '{}': signature: {why}",
                policy.module
            )));
        }
    }
    Ok(())
}

/// Who signed a policy's module (a key's fingerprint), once the signature
/// verifies; `None` when no signature is asked for.
pub(crate) fn signer(
    base: &ModuleBase,
    remote: &Remote,
    policy: &PolicyEntry,
) -> Option<Result<String, String>> {
    if !asks_for_signature(remote, policy) {
        return None;
    }
    let key = policy.verify.as_ref().map(|v| v.key.as_str());
    Some(signed_by(base, remote, pinned(&policy.module), key))
}

/// Verifies the module `module` (a pinned registry reference) with the key
/// file `key`; the key's fingerprint.
pub(crate) fn verify_reference(
    base: &ModuleBase,
    remote: &Remote,
    module: &ModuleRef,
    key: &str,
) -> Result<String, String> {
    signed_by(base, remote, pinned(module), Some(key))
}

/// The registry reference a signature is checked for: pinned to a digest.
fn pinned(module: &ModuleRef) -> Result<&Reference, String> {
    match module.kind() {
        ModuleKind::Oci(reference) if reference.digest.is_some() => Ok(reference),
        ModuleKind::Oci(_) => Err("a reference without a digest cannot be verified".into()),
        _ => Err("only modules from registries (oci://) are signed".into()),
    }
}

/// The largest key file read.
const MAX_KEY_BYTES: u64 = 64 << 10;

/// A verification key, relative to the gate file's directory or absolute:
/// a regular file of at most `MAX_KEY_BYTES`.
fn read_key(base: &ModuleBase, key: &str) -> Result<PublicKey, String> {
    let path = match base {
        ModuleBase::Confined(dir) => dir.join(key),
        ModuleBase::WorkingDir => PathBuf::from(key),
    };
    let failed = |why: String| format!("key {}: {why}", path.display());
    let metadata = std::fs::metadata(&path).map_err(|e| failed(e.to_string()))?;
    if !metadata.is_file() {
        return Err(failed("not a regular file".into()));
    }
    let bytes = registry::read_at_most(&path, MAX_KEY_BYTES)
        .map_err(failed)?
        .ok_or_else(|| failed("no such file".into()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not PEM text".into()))?;
    PublicKey::from_pem(&text).map_err(failed)
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

/// The largest module read when no gate says otherwise.
pub(crate) const DEFAULT_MAX_MODULE_BYTES: u64 = crate::gate::DEFAULT_MAX_MODULE_MIB << 20;

/// The bytes of a module reference, at most `max_bytes` of them, from a
/// regular file only (a pipe or a device would block or never end).
pub(crate) fn read_module(
    base: &ModuleBase,
    remote: &Remote,
    reference: &ModuleRef,
    pin: Option<&str>,
    max_bytes: u64,
) -> Result<ModuleBytes, LoadError> {
    let module = reference.as_str();
    let remote_error = |error: registry::RegistryError| LoadError::Remote {
        module: module.to_string(),
        error,
    };
    match reference.kind() {
        ModuleKind::Builtin(name) => {
            let builtin = builtins::by_name(name).ok_or_else(|| LoadError::UnknownBuiltin {
                module: module.to_string(),
            })?;
            Ok(ModuleBytes {
                bytes: Cow::Borrowed(builtin.bytes),
                sha256: builtin.sha256.to_string(),
                reference: None,
            })
        }
        ModuleKind::Url(url) => {
            // What a URL serves can change: only its pin says what it is.
            let pin = pin.ok_or_else(|| {
                remote_error(
                    "a module named by URL needs its sha256 pin"
                        .to_string()
                        .into(),
                )
            })?;
            let bytes = remote
                .url_module(url, pin, max_bytes)
                .map_err(remote_error)?;
            Ok(ModuleBytes {
                sha256: pin.to_ascii_lowercase(),
                bytes: Cow::Owned(bytes),
                reference: None,
            })
        }
        ModuleKind::Oci(oci) => {
            let fetched = remote.module(oci, max_bytes).map_err(remote_error)?;
            Ok(ModuleBytes {
                bytes: Cow::Owned(fetched.bytes),
                sha256: fetched.module_hex,
                reference: Some(fetched.reference),
            })
        }
        ModuleKind::File(_) => read_file_module(base, module, max_bytes),
    }
}

/// A module file's bytes: confined to the gate's directory, or the user's
/// own path on the command line.
fn read_file_module(
    base: &ModuleBase,
    module: &str,
    max_bytes: u64,
) -> Result<ModuleBytes, LoadError> {
    let bytes = match base {
        ModuleBase::WorkingDir => {
            let opened = std::fs::metadata(module).and_then(|metadata| {
                refuse_special(metadata.is_file())?;
                Ok((metadata, std::fs::File::open(module)?))
            });
            let (metadata, file) = opened.map_err(|e| io_error(module, None, e))?;
            read_limited(module, metadata.len(), file, max_bytes)
        }
        ModuleBase::Confined(dir) => read_confined(dir, module, max_bytes),
    }?;
    Ok(ModuleBytes {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: Cow::Owned(bytes),
        reference: None,
    })
}

/// Reads `module` inside `dir` only: an absolute path or one that climbs
/// out with `..` is refused, so a gate (or a request naming a gate's module)
/// cannot reach other files.
fn read_confined(dir: &Path, module: &str, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    let root =
        cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(|e| {
            LoadError::Unreadable {
                module: module.to_string(),
                detail: format!(": opening the gate's directory {}: {e}", dir.display()),
            }
        })?;
    let opened = root.metadata(module).and_then(|metadata| {
        refuse_special(metadata.is_file())?;
        Ok((metadata.len(), root.open(module)?))
    });
    let (len, file) = opened.map_err(|e| match e.kind() {
        _ if Path::new(module).is_absolute() || module.split(['/', '\\']).any(|c| c == "..") => {
            LoadError::OutsideGateDir {
                module: module.to_string(),
                dir: dir.to_path_buf(),
            }
        }
        _ => io_error(module, Some(dir), e),
    })?;
    read_limited(module, len, file.into_std(), max_bytes)
}

/// Refuses what is not a regular file, as an I/O error of kind
/// `InvalidInput` ([`LoadError::NotAFile`]).
fn refuse_special(is_file: bool) -> std::io::Result<()> {
    if is_file {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "not a regular file",
    ))
}

fn io_error(module: &str, dir: Option<&Path>, e: std::io::Error) -> LoadError {
    let module = module.to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            module,
            dir: dir.map(Path::to_path_buf),
        },
        std::io::ErrorKind::InvalidInput => LoadError::NotAFile { module },
        _ => LoadError::Unreadable {
            module,
            detail: match dir {
                Some(dir) => format!(" in {}: {e}", dir.display()),
                None => format!(": {e}"),
            },
        },
    }
}

/// Reads at most `max_bytes` (a file that grows meanwhile is caught too).
fn read_limited(
    module: &str,
    len: u64,
    file: std::fs::File,
    max_bytes: u64,
) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let too_large = |size: u64| LoadError::TooLarge {
        module: module.to_string(),
        size,
        max: max_bytes,
    };
    if len > max_bytes {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(module, None, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(dir: &Path, module: &str) -> Result<ModuleBytes, LoadError> {
        read_module(
            &ModuleBase::Confined(dir.to_path_buf()),
            &Remote::default(),
            &ModuleRef::parse(module).unwrap(),
            None,
            64,
        )
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
        let unknown = read_module(
            &ModuleBase::WorkingDir,
            &Remote::default(),
            &ModuleRef::builtin("nope"),
            None,
            64,
        )
        .err()
        .unwrap();
        assert_eq!(
            unknown.to_string(),
            "no stock policy 'builtin:nope' (there are builtin:preflight, builtin:canary, builtin:verify, builtin:judge)"
        );
        let stock = read_module(
            &ModuleBase::WorkingDir,
            &Remote::default(),
            &ModuleRef::builtin("canary"),
            None,
            64,
        )
        .unwrap();
        assert_eq!(
            stock.sha256,
            builtins::lookup("builtin:canary").unwrap().sha256
        );
    }

    /// A module over the size cap is refused before it is read, and what is
    /// not a regular file (a FIFO, which would block a read, a directory) is
    /// refused without being opened for reading.
    #[test]
    fn oversized_modules_and_special_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.wasm"), vec![0u8; 2048]).unwrap();
        let base = ModuleBase::Confined(dir.path().to_path_buf());
        let big = ModuleRef::parse("big.wasm").unwrap();
        match read_module(&base, &Remote::default(), &big, None, 1024) {
            Err(LoadError::TooLarge { size, max, .. }) => assert_eq!((size, max), (2048, 1024)),
            other => panic!("{:?}", other.map(|m| m.sha256)),
        }
        assert!(
            read_module(&base, &Remote::default(), &big, None, 2048).is_ok(),
            "at the cap"
        );
        let fifo = dir.path().join("fifo.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::create_dir(dir.path().join("dir.wasm")).unwrap();
        for special in ["fifo.wasm", "dir.wasm"] {
            let error = confined(dir.path(), special).err().unwrap();
            assert!(
                matches!(error, LoadError::NotAFile { .. }),
                "{special}: {error}"
            );
            assert!(
                error.to_string().contains("is not a regular file"),
                "{error}"
            );
        }
        let error = read_module(
            &ModuleBase::WorkingDir,
            &Remote::default(),
            &ModuleRef::file(fifo.clone()),
            None,
            1024,
        )
        .err()
        .unwrap();
        assert!(matches!(error, LoadError::NotAFile { .. }), "{error}");
    }
}
