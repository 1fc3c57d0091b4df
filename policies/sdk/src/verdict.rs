//! Plain Rust mirrors of the WIT types, so policies build and test natively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::format::Unit;

/// The deployment phase a decision is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Preflight,
    Promotion,
    Abort,
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Preflight,
        Phase::Promotion,
        Phase::Abort,
        Phase::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Promotion => "promotion",
            Phase::Abort => "abort",
            Phase::Verify => "verify",
        }
    }
}

/// What a policy or one check says. Ordered by severity, so `max` combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Rollback,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Rollback => "rollback",
        }
    }
}

/// One check's outcome: one line of "observed vs threshold".
///
/// Beside the text, a finding may carry its numbers (contract 0.3.0), which
/// reports plot: [`Findings::at_most`](crate::Findings::at_most) and
/// [`Findings::at_least`](crate::Findings::at_least) fill them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub decision: Decision,
    pub message: String,
    pub observed: Option<String>,
    pub threshold: Option<String>,
    /// What was measured, in `unit` (0.041 for 4.1%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    /// The limit, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_value: Option<f64>,
    /// The baseline's value of the same quantity, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// Which side of the threshold passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
}

/// Which side of its threshold a measured value passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// Passes when observed <= threshold.
    AtMost,
    /// Passes when observed >= threshold.
    AtLeast,
}

impl Finding {
    /// A finding with its text only; the builder methods add the rest.
    pub fn new(check: impl Into<String>, decision: Decision, message: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            decision,
            message: message.into(),
            observed: None,
            threshold: None,
            observed_value: None,
            threshold_value: None,
            baseline_value: None,
            unit: None,
            bound: None,
        }
    }

    /// Sets the numbers behind the text: what was measured, its threshold
    /// and which side of it passes, in `unit`. Values that are not finite
    /// (a ratio over zero) are left out, since no chart can place them.
    pub fn measured(
        &mut self,
        observed: f64,
        threshold: f64,
        unit: Unit,
        bound: Bound,
    ) -> &mut Self {
        self.observed_value = observed.is_finite().then_some(observed);
        self.threshold_value = threshold.is_finite().then_some(threshold);
        self.unit = Some(unit);
        self.bound = Some(bound);
        self
    }

    /// Sets the baseline's value of the measured quantity, in the same unit.
    pub fn baseline(&mut self, baseline: f64) -> &mut Self {
        self.baseline_value = baseline.is_finite().then_some(baseline);
        self
    }

    /// Sets what was measured, formatted for people.
    pub fn observed(&mut self, observed: impl Into<String>) -> &mut Self {
        self.observed = Some(observed.into());
        self
    }

    /// Sets the limit the observation was compared with.
    pub fn threshold(&mut self, threshold: impl Into<String>) -> &mut Self {
        self.threshold = Some(threshold.into());
        self
    }
}

/// A policy's answer for one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    pub summary: String,
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// The finding with this check id, if the policy reported one.
    pub fn finding(&self, check: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.check == check)
    }
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub phases: Vec<Phase>,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown phase '{s}' (expected preflight, promotion, abort or verify)")
            })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Decision::Allow, Decision::Deny, Decision::Rollback]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown decision '{s}' (expected allow, deny or rollback)"))
    }
}
