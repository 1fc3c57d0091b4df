//! What a source found for a target, and what it could not find.

use serde_json::Value;

/// What one source found: a value per snapshot field, and why the others
/// are missing.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// The source that gathered it (`prometheus`); names its outcome.
    pub(crate) source: &'static str,
    /// Snapshot paths (`metrics.canary.errors`) and their values.
    pub(crate) values: Vec<(String, Value)>,
    pub(crate) missing: Vec<Missing>,
}

/// A field a source could not fill: never a healthy zero, always a reason.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Missing {
    /// The snapshot path it would have filled.
    pub(crate) field: String,
    /// The query that was (or would have been) asked; empty when the
    /// value came but was not valid.
    pub(crate) query: String,
    pub(crate) why: String,
}
