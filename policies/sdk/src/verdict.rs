//! Plain Rust mirrors of the WIT types, so policies build and test natively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub decision: Decision,
    pub message: String,
    pub observed: Option<String>,
    pub threshold: Option<String>,
}

impl Finding {
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
