//! What a caller asks the decision service for, whatever protocol it came
//! by: a phase, and a snapshot or a target.

use serde_json::{Value, json};
use shipgate_policy::Phase;

use crate::sources::Target;

/// A decision asked for, in plain terms.
#[derive(Debug, Clone)]
pub(crate) struct DecisionRequest {
    pub(crate) phase: Phase,
    pub(crate) input: Input,
}

/// What a request asks to evaluate. One lives per request, moved along
/// the decide path: boxing the target would only add an allocation.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
    /// A full snapshot, as the caller's JSON text: validated and digested
    /// as sent, never re-serialized.
    Snapshot(String),
    /// What is being deployed; the gate's sources supply the evidence.
    Target(Target),
}

impl Input {
    /// The request as JSON again (what a Spinnaker evaluation id carries).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            // The text came from the JSON parser: it is JSON.
            Input::Snapshot(text) => {
                json!({ "snapshot": serde_json::from_str::<Value>(text).unwrap_or_default() })
            }
            Input::Target(target) => {
                let mut value = serde_json::to_value(target).expect("targets are JSON");
                if let Value::Object(object) = &mut value {
                    // Short ids: unset fields are left out.
                    object.retain(|_, v| !v.is_null());
                }
                value
            }
        }
    }
}

/// Why the service made no decision. Each caller answers it in its own
/// protocol's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// The snapshot the caller sent is not valid.
    BadSnapshot(String),
    /// Too many requests admitted already: retry later.
    Overloaded,
    /// The request's time ran out before a decision.
    Timeout,
    /// The sources' evidence could not be made into a snapshot.
    BadEvidence(String),
    /// The service itself failed (or is shutting down).
    Internal(String),
}
