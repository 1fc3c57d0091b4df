//! What can go wrong inside a policy, named for the people reading the
//! decision. Every fault fails closed.

use std::fmt;

/// A policy fault: the policy produced no usable verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The module could not be read, is not a policy component, or failed
    /// its sha256 pin.
    Load(String),
    /// Ran past its time limit.
    Timeout { limit_ms: u64 },
    /// Tried to grow memory past its limit.
    OutOfMemory { limit_mib: u64 },
    /// Trapped: panic, stack overflow, unreachable, ...
    Trap(String),
    /// Returned `err` from `evaluate`.
    PolicyError(String),
    /// Returned a verdict the host refuses.
    MalformedVerdict(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Load(why) => write!(f, "policy could not be loaded: {why}"),
            Fault::Timeout { limit_ms } => {
                write!(
                    f,
                    "policy ran past its time limit of {limit_ms} ms and was stopped"
                )
            }
            Fault::OutOfMemory { limit_mib } => {
                write!(
                    f,
                    "policy tried to use more than its memory limit of {limit_mib} MiB"
                )
            }
            Fault::Trap(why) => write!(f, "policy crashed: {why}"),
            Fault::PolicyError(why) => write!(f, "policy returned an error: {why}"),
            Fault::MalformedVerdict(why) => write!(f, "policy returned a malformed verdict: {why}"),
        }
    }
}
