//! Why the registry side of a command failed, in kinds a user acts on
//! differently (and the CLI maps to exit codes).

use std::fmt;

/// A registry operation's failure: what kind, and a message that names the
/// registry, reference or URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryError {
    pub(crate) kind: RegistryErrorKind,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryErrorKind {
    /// The registry does not have the tag, digest or blob.
    NotFound,
    /// The registry refused the credentials (401, 403).
    Denied,
    /// The registry cannot be reached, timed out, or answered 5xx/429.
    Unreachable,
    /// What came back is not acceptable: a digest that does not match, too
    /// large, not a Wasm module artifact, an answer outside the protocol,
    /// a signature that does not verify.
    Refused,
    /// Something on this machine: the module store, a key file.
    Local,
}

impl RegistryError {
    pub(crate) fn new(kind: RegistryErrorKind, message: impl Into<String>) -> RegistryError {
        RegistryError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> RegistryError {
        RegistryError::new(RegistryErrorKind::NotFound, message)
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> RegistryError {
        RegistryError::new(RegistryErrorKind::Unreachable, message)
    }

    pub(crate) fn local(message: impl Into<String>) -> RegistryError {
        RegistryError::new(RegistryErrorKind::Local, message)
    }

    /// The kind an HTTP status other than success means.
    pub(crate) fn from_status(status: u16, message: String) -> RegistryError {
        let kind = match status {
            404 => RegistryErrorKind::NotFound,
            401 | 403 => RegistryErrorKind::Denied,
            429 | 500..=599 => RegistryErrorKind::Unreachable,
            _ => RegistryErrorKind::Refused,
        };
        RegistryError::new(kind, message)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

/// A message of the protocol's own checks: what came back is refused.
impl From<String> for RegistryError {
    fn from(message: String) -> RegistryError {
        RegistryError::new(RegistryErrorKind::Refused, message)
    }
}
