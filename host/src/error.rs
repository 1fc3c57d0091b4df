//! The one error type the library returns to its front ends, and the exit
//! codes the CLI maps outcomes to.

use std::fmt;
use std::path::Path;

/// Exit codes of `shipgate`, documented once (README, `--help`).
pub mod exit {
    /// The decision is allow.
    pub const ALLOW: i32 = 0;
    /// The decision is deny (block, hold, not verified).
    pub const DENY: i32 = 1;
    /// The decision is rollback.
    pub const ROLLBACK: i32 = 2;
    /// The command line is wrong (clap's own code 2 is remapped: a typo in a
    /// pipeline must never read as "rollback").
    pub const USAGE: i32 = 64;
    /// An input (snapshot, gate file, policy config) is invalid.
    pub const INVALID_INPUT: i32 = 65;
    /// An input file, or a tag or digest in a registry, does not exist.
    pub const MISSING_INPUT: i32 = 66;
    /// A service shipgate needs (a registry) cannot be reached.
    pub const UNAVAILABLE: i32 = 69;
    /// shipgate itself failed.
    pub const INTERNAL: i32 = 70;
    /// A registry refused the credentials.
    pub const NO_PERMISSION: i32 = 77;
}

/// What went wrong before a decision could be made. Each message names the
/// file (and field or line) it is about.
#[derive(Debug)]
pub enum Error {
    Usage(String),
    InvalidInput(String),
    MissingInput(String),
    /// A registry or other service cannot be reached (retry later).
    Unavailable(String),
    /// Credentials were refused.
    NoPermission(String),
    Internal(anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::InvalidInput(_) => exit::INVALID_INPUT,
            Error::MissingInput(_) => exit::MISSING_INPUT,
            Error::Unavailable(_) => exit::UNAVAILABLE,
            Error::NoPermission(_) => exit::NO_PERMISSION,
            Error::Internal(_) => exit::INTERNAL,
        }
    }

    /// An I/O error reading `path`: a missing file is a missing input,
    /// anything else is internal.
    pub(crate) fn reading(path: &Path, error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::NotFound => {
                Error::MissingInput(format!("{}: no such file", path.display()))
            }
            _ => Error::Internal(
                anyhow::Error::new(error).context(format!("reading {}", path.display())),
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::InvalidInput(m)
            | Error::MissingInput(m)
            | Error::Unavailable(m)
            | Error::NoPermission(m) => f.write_str(m),
            Error::Internal(e) => write!(f, "internal error: {e:#}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        Error::Internal(error)
    }
}

/// A registry's failure as the command line reports it: a tag or digest it
/// does not have is a missing input (66), content it refused invalid (65),
/// a registry out of reach unavailable (69), credentials refused 77.
impl From<crate::registry::error::RegistryError> for Error {
    fn from(error: crate::registry::error::RegistryError) -> Error {
        use crate::registry::error::RegistryErrorKind as Kind;
        match error.kind {
            Kind::NotFound => Error::MissingInput(error.message),
            Kind::Refused => Error::InvalidInput(error.message),
            Kind::Unreachable => Error::Unavailable(error.message),
            Kind::Denied => Error::NoPermission(error.message),
            Kind::Local => Error::Internal(anyhow::anyhow!(error.message)),
        }
    }
}
