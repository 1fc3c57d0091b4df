//! What can go wrong inside a policy, named for the people reading the
//! decision, and what can go wrong around it. A policy's fault fails closed
//! into its `on_error` decision; a fault of the host's is no verdict at all.

use std::fmt;

/// How a shadow policy stopped when the decision was made is described: a
/// replay, which runs it to the end, does not hold it to that outcome.
pub(crate) const OUT_OF_DECISION_TIME: &str =
    "policy was stopped when the decision was made, after";

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
    /// Stopped when the decision was made, before its own time limit: only
    /// a shadow policy, which runs beside the enforcing ones.
    OutOfDecisionTime { after_ms: u64 },
    /// Not the policy's doing: the host could not run it.
    Host(HostFault),
}

/// Why the host could not run a policy. Never a verdict: the server answers
/// 503 (retry), the CLI exits 70.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    /// Every instance slot is in use.
    Busy,
    /// The caller stopped waiting (the request's time ran out).
    Cancelled,
}

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFault::Busy => f.write_str("no free policy instance slot; retry shortly"),
            HostFault::Cancelled => f.write_str("the decision was cancelled: its time ran out"),
        }
    }
}

impl std::error::Error for HostFault {}

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
            Fault::OutOfDecisionTime { after_ms } => write!(
                f,
                "{OUT_OF_DECISION_TIME} {after_ms} ms \
                 (shadow policies run beside the enforcing ones and never delay the answer)"
            ),
            Fault::Host(fault) => write!(f, "shipgate could not run the policy: {fault}"),
        }
    }
}
