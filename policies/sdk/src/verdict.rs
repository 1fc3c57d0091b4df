//! Plain Rust mirrors of the WIT types, so policies build and test natively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::format::Unit;

/// The deployment phase a decision is asked for.
///
/// A phase reads and prints as its lowercase name, as gate files and the
/// command line write it:
///
/// ```
/// use shipgate_policy::Phase;
///
/// let phase: Phase = "promotion".parse().unwrap();
/// assert_eq!(phase, Phase::Promotion);
/// assert_eq!(phase.to_string(), "promotion");
/// assert!("canary".parse::<Phase>().unwrap_err().contains("unknown phase 'canary'"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before anything ships: is the change ready to deploy at all?
    Preflight,
    /// During a staged rollout: is the current stage good enough to widen?
    Promotion,
    /// Continuously during a rollout: must the canary be rolled back now?
    Abort,
    /// After the rollout: is the deployment verified?
    Verify,
}

impl Phase {
    /// Every phase, in the order of a rollout.
    ///
    /// ```
    /// use shipgate_policy::Phase;
    ///
    /// let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    /// assert_eq!(names, ["preflight", "promotion", "abort", "verify"]);
    /// ```
    pub const ALL: [Phase; 4] = [
        Phase::Preflight,
        Phase::Promotion,
        Phase::Abort,
        Phase::Verify,
    ];

    /// The phase's name as gate files, snapshots and reports write it.
    ///
    /// ```
    /// use shipgate_policy::Phase;
    ///
    /// assert_eq!(Phase::Abort.as_str(), "abort");
    /// ```
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
///
/// What each decision means depends on the phase: in promotion, deny holds
/// the rollout at its stage and rollback aborts it.
///
/// ```
/// use shipgate_policy::Decision;
///
/// // One check breached, one still waiting for traffic: the breach wins.
/// let checks = [Decision::Allow, Decision::Rollback, Decision::Deny];
/// assert_eq!(checks.into_iter().max(), Some(Decision::Rollback));
/// assert_eq!("deny".parse::<Decision>(), Ok(Decision::Deny));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Go ahead, widen, healthy, verified.
    Allow,
    /// Block or hold: not ready, or not enough evidence yet.
    Deny,
    /// Roll back now (in the preflight phase, treated as deny).
    Rollback,
}

impl Decision {
    /// The decision's name as verdicts and reports write it.
    ///
    /// ```
    /// use shipgate_policy::Decision;
    ///
    /// assert_eq!(Decision::Rollback.as_str(), "rollback");
    /// ```
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
///
/// Most policies let [`Findings`](crate::Findings) build their findings; a
/// finding built by hand takes its parts one by one:
///
/// ```
/// use shipgate_policy::{Decision, Finding};
///
/// let mut finding = Finding::new("ci-status", Decision::Deny, "CI status is 'failed'");
/// finding.observed("failed").threshold("passed");
/// assert_eq!(finding.check, "ci-status");
/// assert_eq!(finding.observed.as_deref(), Some("failed"));
/// assert_eq!(finding.threshold.as_deref(), Some("passed"));
/// assert_eq!(finding.observed_value, None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// A stable identifier, e.g. "error-rate". Pipelines and dashboards key
    /// on it, so a policy must not rename it lightly.
    pub check: String,
    /// What this check alone says.
    pub decision: Decision,
    /// One human sentence, e.g. "canary error rate 4.1% exceeds 1.0%".
    pub message: String,
    /// What was measured, formatted for people, e.g. "4.1%".
    pub observed: Option<String>,
    /// The limit it was compared with, e.g. "<= 1.0%".
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
    /// The unit of the numbers above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// Which side of the threshold passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
}

/// Which side of its threshold a measured value passes on.
///
/// ```
/// use shipgate_policy::{Bound, Decision, Finding, Unit};
///
/// // Canary traffic must reach a minimum: more is better.
/// let mut finding = Finding::new("min-requests", Decision::Allow, "canary traffic 1200 reaches 500");
/// finding.measured(1200.0, 500.0, Unit::Count, Bound::AtLeast);
/// assert_eq!(finding.bound, Some(Bound::AtLeast));
/// ```
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
    ///
    /// ```
    /// use shipgate_policy::{Decision, Finding};
    ///
    /// let finding = Finding::new("on-call", Decision::Deny, "nobody on call for the deployment window");
    /// assert_eq!(finding.decision, Decision::Deny);
    /// assert_eq!(finding.observed, None);
    /// ```
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
    ///
    /// ```
    /// use shipgate_policy::{Bound, Decision, Finding, Unit};
    ///
    /// let mut finding = Finding::new("error-rate", Decision::Rollback, "canary error rate 4.1% exceeds 1.0%");
    /// finding.measured(0.041, 0.01, Unit::Percent, Bound::AtMost);
    /// assert_eq!((finding.observed_value, finding.threshold_value), (Some(0.041), Some(0.01)));
    ///
    /// // The baseline had no errors: the canary's rate is infinitely many times it.
    /// let mut ratio = Finding::new("error-rate-ratio", Decision::Rollback, "canary error rate vs baseline");
    /// ratio.measured(f64::INFINITY, 1.5, Unit::Ratio, Bound::AtMost);
    /// assert_eq!((ratio.observed_value, ratio.threshold_value), (None, Some(1.5)));
    /// ```
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
    ///
    /// ```
    /// use shipgate_policy::{Bound, Decision, Finding, Unit};
    ///
    /// let mut finding = Finding::new("latency-p99", Decision::Rollback, "canary p99 latency 1240 ms exceeds 800 ms");
    /// finding.measured(1240.0, 800.0, Unit::Millis, Bound::AtMost).baseline(310.0);
    /// assert_eq!(finding.baseline_value, Some(310.0));
    /// ```
    pub fn baseline(&mut self, baseline: f64) -> &mut Self {
        self.baseline_value = baseline.is_finite().then_some(baseline);
        self
    }

    /// Sets what was measured, formatted for people.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Finding};
    ///
    /// let mut finding = Finding::new("changes-in-flight", Decision::Deny, "2 other change(s) in flight");
    /// finding.observed("2");
    /// assert_eq!(finding.observed.as_deref(), Some("2"));
    /// ```
    pub fn observed(&mut self, observed: impl Into<String>) -> &mut Self {
        self.observed = Some(observed.into());
        self
    }

    /// Sets the limit the observation was compared with.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Finding};
    ///
    /// let mut finding = Finding::new("changes-in-flight", Decision::Deny, "2 other change(s) in flight");
    /// finding.threshold("0");
    /// assert_eq!(finding.threshold.as_deref(), Some("0"));
    /// ```
    pub fn threshold(&mut self, threshold: impl Into<String>) -> &mut Self {
        self.threshold = Some(threshold.into());
        self
    }
}

/// A policy's answer for one phase.
///
/// [`Findings::verdict`](crate::Findings::verdict) builds one. The host
/// refuses a verdict whose decision is less severe than one of its findings.
///
/// ```
/// use shipgate_policy::{Decision, Findings, Unit};
///
/// let mut findings = Findings::new();
/// findings.at_least("min-requests", "canary traffic", 13000.0, 500.0, Unit::Count, Decision::Deny);
/// let verdict = findings.verdict();
/// assert_eq!(verdict.decision, Decision::Allow);
/// assert_eq!(verdict.summary, "canary traffic 13000 reaches 500");
/// assert_eq!(verdict.findings.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The policy's decision: at least as severe as each finding's.
    pub decision: Decision,
    /// One sentence a person reads first.
    pub summary: String,
    /// One per check, in the order the policy made them.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// The finding with this check id, if the policy reported one.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings, Unit};
    ///
    /// let mut findings = Findings::new();
    /// findings.at_most("error-rate", "canary error rate", 0.041, 0.01, Unit::Percent, Decision::Rollback);
    /// let verdict = findings.verdict();
    /// assert_eq!(verdict.finding("error-rate").unwrap().observed.as_deref(), Some("4.1%"));
    /// assert!(verdict.finding("latency-p99").is_none());
    /// ```
    pub fn finding(&self, check: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.check == check)
    }
}

/// What a policy says about itself (`shipgate inspect` shows it);
/// [`PolicyInfo::new`] builds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The policy's name, e.g. "error-budget".
    pub name: String,
    /// Its version, e.g. "0.1.0" (a policy crate's `CARGO_PKG_VERSION`).
    pub version: String,
    /// One sentence on what it checks.
    pub description: String,
    /// The phases the policy evaluates; the host refuses a gate that binds
    /// it to any other.
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
