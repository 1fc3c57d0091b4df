//! The findings builder: one line per check, "observed vs threshold".

use crate::format::Unit;
use crate::verdict::{Bound, Decision, Finding, Verdict};

/// Collects findings and turns them into a [`Verdict`].
///
/// ```
/// use shipgate_policy::{Decision, Findings, Unit};
/// let mut findings = Findings::new();
/// findings.at_most("error-rate", "canary error rate", 0.041, 0.01, Unit::Percent, Decision::Rollback);
/// let verdict = findings.verdict();
/// assert_eq!(verdict.decision, Decision::Rollback);
/// assert_eq!(verdict.summary, "canary error rate 4.1% exceeds 1.0%");
/// ```
#[derive(Debug, Default)]
pub struct Findings {
    findings: Vec<Finding>,
}

impl Findings {
    /// No findings yet: a verdict built now allows, with "no checks applied".
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let verdict = Findings::new().verdict();
    /// assert_eq!((verdict.decision, verdict.summary.as_str()), (Decision::Allow, "no checks applied"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a finding with this decision and returns it, to add the
    /// observed value and threshold.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// // A decision chosen at run time: a config may say what a breach means.
    /// let on_breach = Decision::Deny;
    /// let mut findings = Findings::new();
    /// findings
    ///     .add("open-incidents", on_breach, "1 open incident on checkout")
    ///     .observed("1")
    ///     .threshold("0");
    /// assert_eq!(findings.decision(), Decision::Deny);
    /// assert_eq!(findings.as_slice()[0].threshold.as_deref(), Some("0"));
    /// ```
    pub fn add(
        &mut self,
        check: &str,
        decision: Decision,
        message: impl Into<String>,
    ) -> &mut Finding {
        self.findings.push(Finding::new(check, decision, message));
        self.findings.last_mut().expect("just pushed")
    }

    /// Records a check that passed.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let mut findings = Findings::new();
    /// findings.allow("stakeholders", "stakeholders notified");
    /// let verdict = findings.verdict();
    /// assert_eq!(verdict.decision, Decision::Allow);
    /// assert_eq!(verdict.summary, "stakeholders notified");
    /// ```
    pub fn allow(&mut self, check: &str, message: impl Into<String>) -> &mut Finding {
        self.add(check, Decision::Allow, message)
    }

    /// Records a check that blocks or holds: not ready, or not enough
    /// evidence yet.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let mut findings = Findings::new();
    /// findings.deny("deploy-window", "deployment window not approved");
    /// assert_eq!(findings.decision(), Decision::Deny);
    /// ```
    pub fn deny(&mut self, check: &str, message: impl Into<String>) -> &mut Finding {
        self.add(check, Decision::Deny, message)
    }

    /// Records a check that calls for a rollback now.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let mut findings = Findings::new();
    /// findings.rollback("smoke-tests", "smoke test 'checkout' failed after the rollout");
    /// assert_eq!(findings.decision(), Decision::Rollback);
    /// ```
    pub fn rollback(&mut self, check: &str, message: impl Into<String>) -> &mut Finding {
        self.add(check, Decision::Rollback, message)
    }

    /// Records that the evidence a check needs is absent. Missing evidence
    /// never passes: the check denies and names what is missing.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let mut findings = Findings::new();
    /// findings.missing("ci-status", "ci.status");
    /// let verdict = findings.verdict();
    /// assert_eq!(verdict.decision, Decision::Deny);
    /// assert_eq!(verdict.summary, "no evidence: ci.status is missing from the snapshot");
    /// assert_eq!(verdict.findings[0].observed.as_deref(), Some("missing"));
    /// ```
    pub fn missing(&mut self, check: &str, what: &str) -> &mut Finding {
        let finding = self.deny(
            check,
            format!("no evidence: {what} is missing from the snapshot"),
        );
        finding.observed("missing");
        finding
    }

    /// Allows when `observed <= limit`, otherwise records `on_breach`.
    /// `what` names the quantity: "canary error rate". The finding carries
    /// both numbers and the unit, for reports to plot.
    ///
    /// ```
    /// use shipgate_policy::{Bound, Decision, Findings, Unit};
    ///
    /// let mut findings = Findings::new();
    /// let p99 = findings.at_most("latency-p99", "canary p99 latency", 1240.0, 800.0, Unit::Millis, Decision::Rollback);
    /// assert_eq!(p99.decision, Decision::Rollback);
    /// assert_eq!(p99.message, "canary p99 latency 1240 ms exceeds 800 ms");
    /// assert_eq!(p99.threshold.as_deref(), Some("<= 800 ms"));
    /// assert_eq!(p99.bound, Some(Bound::AtMost));
    /// ```
    pub fn at_most(
        &mut self,
        check: &str,
        what: &str,
        observed: f64,
        limit: f64,
        unit: Unit,
        on_breach: Decision,
    ) -> &mut Finding {
        let (obs, lim) = (unit.format(observed), unit.format(limit));
        let finding = if observed <= limit {
            self.allow(check, format!("{what} {obs} is within {lim}"))
        } else {
            self.add(check, on_breach, format!("{what} {obs} exceeds {lim}"))
        };
        finding
            .observed(obs)
            .threshold(format!("<= {lim}"))
            .measured(observed, limit, unit, Bound::AtMost)
    }

    /// Allows when `observed >= minimum`, otherwise records `on_shortfall`.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings, Unit};
    ///
    /// // 320 canary requests of the 500 the gate asks for: not evidence enough yet.
    /// let mut findings = Findings::new();
    /// let traffic = findings.at_least("min-requests", "canary traffic", 320.0, 500.0, Unit::Count, Decision::Deny);
    /// assert_eq!(traffic.decision, Decision::Deny);
    /// assert_eq!(traffic.message, "canary traffic 320 is below 500");
    /// assert_eq!(traffic.threshold.as_deref(), Some(">= 500"));
    /// ```
    pub fn at_least(
        &mut self,
        check: &str,
        what: &str,
        observed: f64,
        minimum: f64,
        unit: Unit,
        on_shortfall: Decision,
    ) -> &mut Finding {
        let (obs, min) = (unit.format(observed), unit.format(minimum));
        let finding = if observed >= minimum {
            self.allow(check, format!("{what} {obs} reaches {min}"))
        } else {
            self.add(check, on_shortfall, format!("{what} {obs} is below {min}"))
        };
        finding
            .observed(obs)
            .threshold(format!(">= {min}"))
            .measured(observed, minimum, unit, Bound::AtLeast)
    }

    /// Records a yes/no requirement: allow with `ok` when it holds,
    /// `on_fail` with `failed` when it does not.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings};
    ///
    /// let on_call = ["pager:payments"];
    /// let mut findings = Findings::new();
    /// findings.require(
    ///     "on-call",
    ///     !on_call.is_empty(),
    ///     "on-call present: pager:payments",
    ///     "nobody on call for the deployment window",
    ///     Decision::Deny,
    /// );
    /// let verdict = findings.verdict();
    /// assert_eq!(verdict.decision, Decision::Allow);
    /// assert_eq!(verdict.summary, "on-call present: pager:payments");
    /// ```
    pub fn require(
        &mut self,
        check: &str,
        holds: bool,
        ok: impl Into<String>,
        failed: impl Into<String>,
        on_fail: Decision,
    ) -> &mut Finding {
        if holds {
            self.allow(check, ok)
        } else {
            self.add(check, on_fail, failed)
        }
    }

    /// The findings recorded so far, in order.
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings, Unit};
    ///
    /// let mut findings = Findings::new();
    /// findings.at_most("error-rate", "canary error rate", 0.004, 0.01, Unit::Percent, Decision::Rollback);
    /// findings.missing("latency-p99", "metrics.canary.latency_ms.p99");
    /// let checks: Vec<&str> = findings.as_slice().iter().map(|f| f.check.as_str()).collect();
    /// assert_eq!(checks, ["error-rate", "latency-p99"]);
    /// ```
    pub fn as_slice(&self) -> &[Finding] {
        &self.findings
    }

    /// The most severe decision of all findings (allow when there are none).
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings, Unit};
    ///
    /// let mut findings = Findings::new();
    /// assert_eq!(findings.decision(), Decision::Allow);
    /// findings.at_most("error-rate", "canary error rate", 0.004, 0.01, Unit::Percent, Decision::Rollback);
    /// findings.at_least("min-requests", "canary traffic", 320.0, 500.0, Unit::Count, Decision::Deny);
    /// assert_eq!(findings.decision(), Decision::Deny);
    /// ```
    pub fn decision(&self) -> Decision {
        self.findings
            .iter()
            .map(|f| f.decision)
            .max()
            .unwrap_or(Decision::Allow)
    }

    /// Builds the verdict: the most severe decision wins, and the summary is
    /// the first finding that decided it (with a count of the others).
    ///
    /// ```
    /// use shipgate_policy::{Decision, Findings, Unit};
    ///
    /// let mut findings = Findings::new();
    /// findings.at_least("min-requests", "canary traffic", 320.0, 500.0, Unit::Count, Decision::Deny);
    /// findings.at_most("latency-p99", "canary p99 latency", 1240.0, 800.0, Unit::Millis, Decision::Rollback);
    /// findings.at_most("error-rate", "canary error rate", 0.041, 0.01, Unit::Percent, Decision::Rollback);
    /// let verdict = findings.verdict();
    /// assert_eq!(verdict.decision, Decision::Rollback);
    /// assert_eq!(verdict.summary, "canary p99 latency 1240 ms exceeds 800 ms (and 2 more failing checks)");
    /// ```
    pub fn verdict(self) -> Verdict {
        let decision = self.decision();
        let summary = summarize(&self.findings, decision);
        Verdict {
            decision,
            summary,
            findings: self.findings,
        }
    }
}

fn summarize(findings: &[Finding], decision: Decision) -> String {
    if decision == Decision::Allow {
        return match findings.len() {
            0 => "no checks applied".to_string(),
            1 => findings[0].message.clone(),
            n => format!("all {n} checks passed"),
        };
    }
    let mut deciding = findings.iter().filter(|f| f.decision == decision);
    let first = deciding.next().expect("decision comes from a finding");
    let failing = findings
        .iter()
        .filter(|f| f.decision != Decision::Allow)
        .count();
    match failing - 1 {
        0 => first.message.clone(),
        1 => format!("{} (and 1 more failing check)", first.message),
        n => format!("{} (and {n} more failing checks)", first.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_allows_at_the_limit_and_breaches_above() {
        let mut f = Findings::new();
        f.at_most(
            "p99",
            "p99 latency",
            800.0,
            800.0,
            Unit::Millis,
            Decision::Rollback,
        );
        f.at_most(
            "p95",
            "p95 latency",
            401.0,
            400.0,
            Unit::Millis,
            Decision::Rollback,
        );
        let v = f.verdict();
        assert_eq!(v.findings[0].decision, Decision::Allow);
        assert_eq!(v.findings[1].decision, Decision::Rollback);
        assert_eq!(v.findings[1].observed.as_deref(), Some("401 ms"));
        assert_eq!(v.findings[1].threshold.as_deref(), Some("<= 400 ms"));
        let numbers = &v.findings[1];
        assert_eq!(
            (
                numbers.observed_value,
                numbers.threshold_value,
                numbers.unit
            ),
            (Some(401.0), Some(400.0), Some(Unit::Millis))
        );
        assert_eq!(v.summary, "p95 latency 401 ms exceeds 400 ms");
    }

    #[test]
    fn summary_counts_other_failures_and_allows_say_how_many_passed() {
        let mut f = Findings::new();
        f.deny("a", "first problem");
        f.rollback("b", "the breach");
        f.deny("c", "another problem");
        assert_eq!(
            f.verdict().summary,
            "the breach (and 2 more failing checks)"
        );

        let mut f = Findings::new();
        f.allow("a", "fine");
        f.allow("b", "fine too");
        let v = f.verdict();
        assert_eq!(
            (v.decision, v.summary.as_str()),
            (Decision::Allow, "all 2 checks passed")
        );
    }

    #[test]
    fn numbers_that_are_not_finite_are_left_out() {
        let mut f = Findings::new();
        f.at_most(
            "ratio",
            "ratio",
            f64::INFINITY,
            2.0,
            Unit::Ratio,
            Decision::Deny,
        )
        .baseline(f64::NAN);
        let finding = &f.as_slice()[0];
        assert_eq!(finding.observed.as_deref(), Some("∞x"));
        assert_eq!(
            (
                finding.observed_value,
                finding.threshold_value,
                finding.baseline_value
            ),
            (None, Some(2.0), None)
        );
    }

    #[test]
    fn missing_evidence_denies() {
        let mut f = Findings::new();
        f.missing("ci-status", "ci.status");
        let v = f.verdict();
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(
            v.summary,
            "no evidence: ci.status is missing from the snapshot"
        );
    }
}
