//! `shipgate-sequential-v1`: a judge that may be asked at every interval of
//! a rollout. Every call gets all evidence since monitoring began; the
//! judge keeps no state, so a replay of the same evidence gives the same
//! answer.
//!
//! - **Series** (latency, rates) are paired by time step, so load that both
//!   cohorts see cancels out, and tested with a mixture sequential
//!   probability ratio test (mSPRT; Johari et al., "Always Valid Inference")
//!   on the per-step differences, in its sequential t-test form (the
//!   variance integrated out, so no plug-in estimate inflates early looks).
//!   For independent normal differences the chance of ever failing an equal
//!   canary stays at `alpha` however often it is asked; each call takes the
//!   smallest 1/Λ over every prefix of the evidence. Correlated steps
//!   (overlapping rate windows) are counted as n (1 − ρ)/(1 + ρ) for the
//!   lag-1 autocorrelation ρ of all the differences: a widening, not a
//!   guarantee, and since ρ is estimated again at each call, a crossing
//!   seen at an earlier call can be revised (docs/JUDGEMENT.md measures it).
//! - **Counts** (errors out of requests per cohort, cumulative) are tested
//!   with a beta-binomial mixture e-value on the canary's share of the
//!   events given its share of the exposures (as in Lindon et al., "Rapid
//!   Regression Detection in Software Deployments through Sequential
//!   Testing"), so 3 errors in 200 requests against 0 in 20 000 fails. It
//!   assumes the canary's share of traffic is the same throughout: across
//!   stages of different weights it is an approximation.
//!
//! A metric is High or Low once its regression is significant at `alpha`,
//! Pass once its confidence sequence lies inside the allowed band, and
//! Inconclusive otherwise. The canary fails on any regression, passes when
//! every scored metric passes, and is Marginal (keep observing) otherwise.
//! Of a metric's settings it reads `direction`, `critical`, `muted` and the
//! allowed increase and decrease (as mean ratios); gaps are skipped, and
//! outlier removal, effect measures and group weights are Kayenta's only.

use serde::{Deserialize, Serialize};

use super::MetricPair;
use super::config::{Direction, MetricRule};
use super::result::{Classification, Figures, Judgement, Label, MetricResult};
use super::stats::describe::{self, Summary, mean_ratio};

/// The judge's name, as a canary config or a gate names it.
pub const NAME: &str = "shipgate-sequential-v1";

/// The judge's options (`judgeConfigurations` in a Kayenta request).
///
/// ```
/// use shipgate_policy::judge::sequential::Options;
///
/// // A stricter false-rollback rate; the other options keep their defaults.
/// let options: Options = serde_json::from_str(r#"{"alpha": 0.001}"#).unwrap();
/// assert_eq!(options.alpha, 0.001);
/// assert_eq!((options.margin, options.min_pairs), (0.1, 5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The false-rollback rate per metric, over all looks.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The change, relative to the baseline's mean, that still passes when
    /// the metric allows no change by its effect sizes (Kayenta's 1.0).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Fewer paired steps than this are not yet tested.
    #[serde(default = "default_min_pairs")]
    pub min_pairs: usize,
    /// A count metric without a single event passes only once the canary
    /// has had this many exposures (requests).
    #[serde(default = "default_min_exposures")]
    pub min_exposures: f64,
}

fn default_alpha() -> f64 {
    0.01
}
fn default_margin() -> f64 {
    0.1
}
fn default_min_pairs() -> usize {
    5
}
fn default_min_exposures() -> f64 {
    1000.0
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: default_alpha(),
            margin: default_margin(),
            min_pairs: default_min_pairs(),
            min_exposures: default_min_exposures(),
        }
    }
}

impl Options {
    /// Refuses options that cannot give a meaningful test.
    ///
    /// ```
    /// use shipgate_policy::judge::sequential::Options;
    ///
    /// assert_eq!(Options::default().validate(), Ok(()));
    /// // Alpha is a rate, not a percentage.
    /// let percent = Options { alpha: 5.0, ..Options::default() };
    /// assert_eq!(percent.validate(), Err("alpha must be in (0, 1), got 5".to_string()));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            return Err(format!("margin must be ≥ 0, got {}", self.margin));
        }
        if !(self.min_exposures >= 0.0 && self.min_exposures.is_finite()) {
            return Err(format!(
                "min_exposures must be ≥ 0, got {}",
                self.min_exposures
            ));
        }
        if self.min_pairs < 3 {
            return Err(format!(
                "min_pairs must be at least 3, got {}",
                self.min_pairs
            ));
        }
        Ok(())
    }
}

/// Events out of exposures for one cohort, counted since the rollout
/// began (errors out of requests).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// How many events (errors) happened.
    pub events: f64,
    /// Out of how many exposures (requests).
    pub exposures: f64,
}

/// Judges series metrics (aligned by step: `canary[i]` and `baseline[i]`
/// are the same step; NaN is a gap).
///
/// ```
/// use shipgate_policy::judge::sequential::{self, Options};
/// use shipgate_policy::judge::{Label, MetricPair, MetricRule};
///
/// let rule: MetricRule = serde_json::from_str(r#"{"name": "latency_p99_ms", "direction": "increase"}"#).unwrap();
/// // Twenty minutes, a step a minute: the canary's p99 runs 60-odd ms over the baseline's.
/// let baseline: Vec<f64> = (0..20).map(|i| 310.0 + f64::from(i % 7)).collect();
/// let canary: Vec<f64> = baseline.iter().enumerate().map(|(i, b)| b + 60.0 + (i % 4) as f64).collect();
/// let pair = MetricPair { name: "latency_p99_ms".into(), canary, baseline };
/// let result = sequential::classify_series(&rule, &pair, &Options::default());
/// assert_eq!(result.label, Label::High);
/// assert_eq!(result.reason.as_deref(), Some("latency_p99_ms was classified as High"));
/// ```
pub fn classify_series(rule: &MetricRule, pair: &MetricPair, options: &Options) -> MetricResult {
    let steps: Vec<f64> = pair
        .canary
        .iter()
        .zip(&pair.baseline)
        .filter(|(c, b)| c.is_finite() && b.is_finite())
        .map(|(c, b)| c - b)
        .collect();
    let finite =
        |values: &[f64]| -> Vec<f64> { values.iter().copied().filter(|v| v.is_finite()).collect() };
    let (canary, baseline) = (finite(&pair.canary), finite(&pair.baseline));
    let mut result = base_result(rule, pair, &canary, &baseline);
    if steps.len() < options.min_pairs {
        result.label = Label::Inconclusive;
        result.reason = Some(format!(
            "{}: {} paired steps of the {} needed to test",
            pair.name,
            steps.len(),
            options.min_pairs
        ));
        return result;
    }
    let test = MixtureTest::run(&steps, options.alpha);
    let baseline_mean = describe::mean(&baseline).abs();
    let (allow_up, allow_down) = allowed_change(rule, options, baseline_mean);
    result.figures = Figures {
        ci_lower: Some(test.mean - test.half_width),
        ci_upper: Some(test.mean + test.half_width),
        estimate: Some(test.mean),
        bound: Some(allow_up),
        effect_size: Some(result.ratio),
        p_value: Some(test.p_value),
        level: Some(1.0 - options.alpha),
    };
    if test.autocorrelation >= 0.1 {
        let rho = test.autocorrelation;
        result.note = Some(format!(
            "steps are correlated (lag-1 {rho:.2}): {} steps count as {:.0} independent ones; \
             a step as long as the rate window gives more",
            steps.len(),
            steps.len() as f64 * (1.0 - rho) / (1.0 + rho)
        ));
    }
    let crossed = if test.exact {
        result.note = Some(format!(
            "the same difference at every step: the shift is exactly {}",
            test.mean
        ));
        Crossings {
            up: test.mean > allow_up,
            down: test.mean < -allow_down,
        }
    } else {
        test.crossed
    };
    if pair.canary.len() != pair.baseline.len() {
        let unpaired = pair.canary.len().abs_diff(pair.baseline.len());
        let note =
            format!("{unpaired} step(s) of the longer cohort have no partner and are not judged");
        result.note = Some(match result.note.take() {
            Some(before) => format!("{before}; {note}"),
            None => note,
        });
    }
    decide(&mut result, rule, crossed, |direction| match direction {
        Direction::Increase => test.mean + test.half_width <= allow_up,
        Direction::Decrease => test.mean - test.half_width >= -allow_down,
        Direction::Either => {
            test.mean + test.half_width <= allow_up && test.mean - test.half_width >= -allow_down
        }
    });
    result
}

/// Judges a count metric: the canary's events against the baseline's,
/// given each cohort's exposures.
///
/// ```
/// use shipgate_policy::judge::sequential::{self, Counts, Options};
/// use shipgate_policy::judge::{Label, MetricRule};
///
/// let rule: MetricRule = serde_json::from_str(r#"{"name": "errors", "direction": "increase"}"#).unwrap();
/// // 3 errors in the canary's first 200 requests, none in the baseline's 20 000.
/// let canary = Counts { events: 3.0, exposures: 200.0 };
/// let baseline = Counts { events: 0.0, exposures: 20_000.0 };
/// let result = sequential::classify_counts(&rule, "errors", canary, baseline, &Options::default());
/// assert_eq!(result.label, Label::High);
/// assert!(result.figures.p_value.unwrap() < 0.01);
/// ```
pub fn classify_counts(
    rule: &MetricRule,
    name: &str,
    canary: Counts,
    baseline: Counts,
    options: &Options,
) -> MetricResult {
    let pair = MetricPair {
        name: name.to_string(),
        canary: Vec::new(),
        baseline: Vec::new(),
    };
    let mut result = base_result(rule, &pair, &[], &[]);
    let rate = |c: Counts| c.events / c.exposures;
    if canary.exposures <= 0.0 || baseline.exposures <= 0.0 {
        result.label = Label::Inconclusive;
        result.reason = Some(format!("{name}: a cohort has no exposures yet"));
        return result;
    }
    let share = canary.exposures / (canary.exposures + baseline.exposures);
    let test = CountTest {
        canary: canary.events,
        baseline: baseline.events,
        share,
    };
    let ratio = if rate(baseline) > 0.0 {
        rate(canary) / rate(baseline)
    } else {
        f64::NAN
    };
    result.ratio = ratio;
    let log_e = test.log_e(share);
    let threshold = (1.0 / options.alpha).ln();
    let regression = if log_e >= threshold {
        Some(if rate(canary) > rate(baseline) {
            1.0
        } else {
            -1.0
        })
    } else {
        None
    };
    let allowed = match rule.analysis.effect_size.allowed_increase() {
        a if a > 1.0 => a,
        _ => 1.0 + options.margin,
    };
    let upper_ratio = test.upper_rate_ratio(threshold);
    result.figures = Figures {
        ci_lower: None,
        ci_upper: Some(upper_ratio),
        estimate: Some(ratio),
        bound: Some(allowed),
        effect_size: Some(ratio),
        p_value: Some((-log_e).exp().min(1.0)),
        level: Some(1.0 - options.alpha),
    };
    // No event at all is no ratio to bound: it passes once the canary has
    // had enough exposures for its absence to mean something.
    let no_events = canary.events + baseline.events == 0.0;
    let enough = canary.exposures >= options.min_exposures;
    if no_events {
        result.note = Some(format!(
            "no events in either cohort, after {} canary exposures (passes from {})",
            canary.exposures, options.min_exposures
        ));
    }
    let crossed = Crossings {
        up: regression.filter(|sign| *sign > 0.0).is_some(),
        down: regression.filter(|sign| *sign < 0.0).is_some(),
    };
    decide(&mut result, rule, crossed, |_| {
        if no_events {
            enough
        } else {
            upper_ratio <= allowed
        }
    });
    result
}

/// Scores sequential results: any regression fails, all passes pass,
/// anything else is Marginal with a score between the two thresholds, so
/// Spinnaker's stage and Argo's provider keep observing.
///
/// ```
/// use shipgate_policy::judge::sequential::{self, Options};
/// use shipgate_policy::judge::{Classification, Label, MetricPair, MetricRule, Thresholds};
///
/// let rule = |name: &str| -> MetricRule { serde_json::from_value(serde_json::json!({"name": name})).unwrap() };
/// let steps = |n: i32| -> Vec<f64> { (0..n).map(|i| 310.0 + f64::from(i % 7)).collect() };
/// // An hour of equal latency; only three steps of errors yet.
/// let latency = MetricPair { name: "latency_p99_ms".into(), canary: steps(60), baseline: steps(60) };
/// let errors = MetricPair { name: "error_rate".into(), canary: vec![0.004; 3], baseline: vec![0.004; 3] };
/// let results = vec![
///     sequential::classify_series(&rule("latency_p99_ms"), &latency, &Options::default()),
///     sequential::classify_series(&rule("error_rate"), &errors, &Options::default()),
/// ];
/// assert_eq!((results[0].label, results[1].label), (Label::Pass, Label::Inconclusive));
/// let judgement = sequential::score(results, Thresholds::default());
/// assert_eq!((judgement.score, judgement.classification), (62.5, Classification::Marginal));
/// assert_eq!(judgement.reason.as_deref(), Some("1 of 2 metric(s) not yet decided: keep observing"));
/// ```
pub fn score(metrics: Vec<MetricResult>, thresholds: super::Thresholds) -> Judgement {
    let scored: Vec<&MetricResult> = metrics.iter().filter(|m| !m.muted).collect();
    let failed = scored.iter().find(|m| m.label.is_failure());
    let (score, classification, reason) = if let Some(failure) = failed {
        (
            0.0,
            Classification::Fail,
            Some(format!(
                "Canary Failed: {}",
                failure.reason.as_deref().unwrap_or(&failure.name)
            )),
        )
    } else if !scored.is_empty() && scored.iter().all(|m| m.label == Label::Pass) {
        (100.0, Classification::Pass, None)
    } else {
        let waiting = scored.iter().filter(|m| m.label != Label::Pass).count();
        (
            keep_observing(thresholds),
            Classification::Marginal,
            Some(format!(
                "{waiting} of {} metric(s) not yet decided: keep observing",
                scored.len()
            )),
        )
    };
    Judgement {
        judge: NAME.to_string(),
        score,
        classification,
        reason,
        groups: Vec::new(),
        metrics,
    }
}

/// A score strictly between the thresholds where they leave room (Spinnaker
/// fails a score at or below marginal, Argo pauses from marginal up),
/// rounded down to two decimals so it never reaches `pass`.
fn keep_observing(thresholds: super::Thresholds) -> f64 {
    let middle = ((thresholds.pass + thresholds.marginal) / 2.0 * 100.0).floor() / 100.0;
    if middle > thresholds.marginal && middle < thresholds.pass {
        middle
    } else {
        thresholds.marginal
    }
}

fn base_result(
    rule: &MetricRule,
    pair: &MetricPair,
    canary: &[f64],
    baseline: &[f64],
) -> MetricResult {
    MetricResult {
        name: pair.name.clone(),
        groups: rule.groups.clone(),
        label: Label::Pass,
        reason: None,
        critical: false,
        muted: rule.analysis.muted,
        canary: Summary::of(canary),
        baseline: Summary::of(baseline),
        ratio: mean_ratio(canary, baseline),
        figures: Figures::default(),
        note: None,
    }
}

/// The labels from a detected regression's sign, or from whether the
/// confidence sequence sits inside the band for the metric's direction.
fn decide(
    result: &mut MetricResult,
    rule: &MetricRule,
    crossed: Crossings,
    inside: impl Fn(Direction) -> bool,
) {
    let direction = rule.analysis.direction;
    let label = if crossed.up && direction != Direction::Decrease {
        Label::High
    } else if crossed.down && direction != Direction::Increase {
        Label::Low
    } else if inside(direction) {
        Label::Pass
    } else {
        Label::Inconclusive
    };
    result.label = label;
    result.critical = rule.analysis.critical && label.is_failure();
    result.reason = Some(match label {
        Label::High | Label::Low => format!("{} was classified as {}", result.name, label.as_str()),
        Label::Pass => format!("{} is within its allowed change", result.name),
        _ => format!("{} is not yet decided: keep observing", result.name),
    });
}

/// The change still allowed up and down, in the metric's unit.
fn allowed_change(rule: &MetricRule, options: &Options, baseline_mean: f64) -> (f64, f64) {
    let effect = &rule.analysis.effect_size;
    let up = match effect.allowed_increase() {
        a if a > 1.0 => a - 1.0,
        _ => options.margin,
    };
    let down = match effect.allowed_decrease() {
        a if a < 1.0 => 1.0 - a,
        _ => options.margin,
    };
    (up * baseline_mean, down * baseline_mean)
}

/// Which ways the evidence has shown a significant change, at any prefix.
#[derive(Debug, Clone, Copy, Default)]
struct Crossings {
    up: bool,
    down: bool,
}

/// The sequential t-test over the per-step differences: the mixture
/// likelihood ratio for a normal mean with unknown variance (a normal
/// mixture over the standardized effect, variance σ² integrated out with
/// its invariant prior), which is a test martingale under "no difference"
/// whatever σ is, so its running maximum may be watched at every step.
struct MixtureTest {
    mean: f64,
    half_width: f64,
    /// The smallest 1/Λ over all prefixes (always valid).
    p_value: f64,
    autocorrelation: f64,
    /// Whether Λ reached 1/α with the mean above 0, and below, at some
    /// prefix: an early improvement must not hide a later regression.
    crossed: Crossings,
    /// Every step had the same difference: `mean` is the exact shift.
    exact: bool,
}

/// The mixture's scale: the standardized effect ~ N(0, 1), a regression of
/// about one standard deviation of a step.
const MIXTURE: f64 = 1.0;

/// ln Λ for a t statistic with `n` (effective) observations.
fn log_lambda(t: f64, n: f64) -> f64 {
    let nu = n - 1.0;
    let spread = 1.0 + n * MIXTURE;
    -0.5 * spread.ln() + (nu + 1.0) / 2.0 * ((t * t / nu).ln_1p() - (t * t / (nu * spread)).ln_1p())
}

impl MixtureTest {
    fn run(steps: &[f64], alpha: f64) -> MixtureTest {
        // Correlated steps (overlapping rate windows) carry less evidence
        // than their count: n / inflation independent ones.
        let rho = lag1(steps, describe::mean(steps));
        let inflation = (1.0 + rho) / (1.0 - rho);
        let threshold = (1.0 / alpha).ln();
        let scale = steps
            .iter()
            .fold(0.0f64, |m, d| m.max(d.abs()))
            .max(f64::MIN_POSITIVE);
        let mut p_value: f64 = 1.0;
        let mut crossed = Crossings::default();
        // Welford's running mean and sum of squared deviations.
        let (mut mean, mut deviations) = (0.0, 0.0);
        let mut last = None;
        for (k, &d) in steps.iter().enumerate() {
            let n = (k + 1) as f64;
            let delta = d - mean;
            mean += delta / n;
            deviations += delta * (d - mean);
            let effective = n / inflation;
            let variance = (deviations / (n - 1.0)).max(0.0);
            // A prefix whose differences do not vary (to rounding) has
            // nothing to test yet.
            if effective < 2.0 || variance.sqrt() <= 1e-12 * scale {
                continue;
            }
            let standard_error = (variance * inflation / n).sqrt();
            let log_l = log_lambda(mean / standard_error, effective);
            p_value = p_value.min((-log_l).exp());
            if log_l >= threshold {
                if mean > 0.0 {
                    crossed.up = true;
                } else {
                    crossed.down = true;
                }
            }
            last = Some((mean, standard_error, effective));
        }
        let exact = (deviations / (steps.len() as f64 - 1.0).max(1.0)).sqrt() <= 1e-12 * scale;
        let (mean, half_width) = match last {
            // The same difference at every step: the shift is measured
            // exactly and judged against the allowed band, not against 0
            // (integer gauges, one histogram bucket, rounding).
            _ if exact => (mean, 0.0),
            Some((mean, standard_error, effective)) => {
                (mean, critical_t(effective, threshold) * standard_error)
            }
            None => (mean, f64::INFINITY),
        };
        MixtureTest {
            mean,
            half_width,
            p_value,
            autocorrelation: rho,
            crossed,
            exact,
        }
    }
}

/// The |t| at which ln Λ reaches `threshold`: the confidence sequence's
/// half-width in standard errors.
fn critical_t(n: f64, threshold: f64) -> f64 {
    let (mut low, mut high) = (0.0, 1.0);
    while log_lambda(high, n) < threshold {
        high *= 2.0;
        if high > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if log_lambda(mid, n) < threshold {
            low = mid;
        } else {
            high = mid;
        }
    }
    high
}

/// The lag-1 autocorrelation, clamped to [0, 0.9]: negative correlation
/// would narrow the test, and near 1 it is not estimable.
fn lag1(values: &[f64], mean: f64) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (i, v) in values.iter().enumerate() {
        den += (v - mean) * (v - mean);
        if i > 0 {
            num += (v - mean) * (values[i - 1] - mean);
        }
    }
    if den == 0.0 {
        0.0
    } else {
        (num / den).clamp(0.0, 0.9)
    }
}

/// The beta-binomial mixture: each event falls in the canary with the
/// canary's share of exposures under "no difference".
struct CountTest {
    canary: f64,
    baseline: f64,
    share: f64,
}

impl CountTest {
    /// ln e-value of "the canary's share of events is `p`", mixing over a
    /// uniform prior on the share.
    fn log_e(&self, p: f64) -> f64 {
        ln_beta(self.canary + 1.0, self.baseline + 1.0)
            - self.canary * p.ln()
            - self.baseline * (1.0 - p).ln()
    }

    /// The largest canary/baseline rate ratio the evidence does not reject.
    fn upper_rate_ratio(&self, threshold: f64) -> f64 {
        let total = self.canary + self.baseline;
        if total == 0.0 {
            return f64::INFINITY;
        }
        let (mut low, mut high) = (self.canary / total, 1.0 - 1e-15);
        if self.log_e(high) < threshold {
            return f64::INFINITY;
        }
        for _ in 0..200 {
            let mid = (low + high) / 2.0;
            if self.log_e(mid) < threshold {
                low = mid;
            } else {
                high = mid;
            }
        }
        let odds = |p: f64| p / (1.0 - p);
        odds(low) / odds(self.share)
    }
}

/// ln B(a, b) from ln Γ.
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms: ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(direction: &str) -> MetricRule {
        serde_json::from_value(serde_json::json!({"name": "m", "direction": direction})).unwrap()
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn three_errors_in_200_against_none_in_20000_fail() {
        let result = classify_counts(
            &rule("increase"),
            "errors",
            Counts {
                events: 3.0,
                exposures: 200.0,
            },
            Counts {
                events: 0.0,
                exposures: 20_000.0,
            },
            &Options::default(),
        );
        assert_eq!(result.label, Label::High, "{result:?}");
        assert!(result.figures.p_value.unwrap() < 0.01);
    }

    #[test]
    fn equal_error_rates_pass_once_there_is_enough_evidence() {
        let rule = rule("increase");
        let options = Options::default();
        let few = classify_counts(
            &rule,
            "e",
            Counts {
                events: 2.0,
                exposures: 1_000.0,
            },
            Counts {
                events: 20.0,
                exposures: 10_000.0,
            },
            &options,
        );
        assert_eq!(few.label, Label::Inconclusive);
        let many = classify_counts(
            &rule,
            "e",
            Counts {
                events: 20_000.0,
                exposures: 10_000_000.0,
            },
            Counts {
                events: 200_000.0,
                exposures: 100_000_000.0,
            },
            &options,
        );
        assert_eq!(many.label, Label::Pass, "{many:?}");
    }

    #[test]
    fn a_shifted_series_is_high_and_an_equal_one_passes_within_the_margin() {
        let baseline: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 7) - 3.0).collect();
        let worse: Vec<f64> = baseline
            .iter()
            .enumerate()
            .map(|(i, b)| b + 5.0 + (i % 3) as f64)
            .collect();
        let pair = |canary: Vec<f64>| MetricPair {
            name: "m".into(),
            canary,
            baseline: baseline.clone(),
        };
        let high = classify_series(&rule("either"), &pair(worse), &Options::default());
        assert_eq!(high.label, Label::High, "{high:?}");
        let same: Vec<f64> = baseline
            .iter()
            .enumerate()
            .map(|(i, b)| b + [0.5, -0.5][i % 2])
            .collect();
        let pass = classify_series(&rule("either"), &pair(same), &Options::default());
        assert_eq!(pass.label, Label::Pass, "{pass:?}");
        let short = classify_series(
            &rule("either"),
            &MetricPair {
                name: "m".into(),
                canary: vec![1.0; 3],
                baseline: vec![1.0; 3],
            },
            &Options::default(),
        );
        assert_eq!(short.label, Label::Inconclusive);
    }

    #[test]
    fn the_score_fails_on_a_regression_and_waits_otherwise() {
        let pass = MetricResult {
            label: Label::Pass,
            ..classify_series(
                &rule("either"),
                &MetricPair {
                    name: "a".into(),
                    canary: vec![],
                    baseline: vec![],
                },
                &Options::default(),
            )
        };
        let waiting = MetricResult {
            label: Label::Inconclusive,
            ..pass.clone()
        };
        let judgement = score(
            vec![pass.clone(), waiting],
            super::super::Thresholds::default(),
        );
        assert_eq!(
            (judgement.classification, judgement.score),
            (Classification::Marginal, 62.5)
        );
        assert_eq!(
            score(vec![pass.clone()], super::super::Thresholds::default()).score,
            100.0
        );
        let high = MetricResult {
            label: Label::High,
            reason: Some("a was classified as High".into()),
            ..pass.clone()
        };
        let failed = score(
            vec![pass.clone(), high],
            super::super::Thresholds::default(),
        );
        assert_eq!(
            (failed.classification, failed.score),
            (Classification::Fail, 0.0)
        );
        // Nothing scored is nothing passed.
        let muted = MetricResult {
            muted: true,
            ..pass
        };
        let nothing = score(vec![muted], super::super::Thresholds::default());
        assert_eq!(nothing.classification, Classification::Marginal);
        // Waiting never reads as a pass, however close the thresholds.
        let close = super::super::Thresholds {
            pass: 75.0,
            marginal: 74.99,
        };
        assert_eq!(keep_observing(close), 74.99);
    }

    fn series(canary: Vec<f64>, baseline: Vec<f64>, direction: &str) -> Label {
        let pair = MetricPair {
            name: "m".into(),
            canary,
            baseline,
        };
        classify_series(&rule(direction), &pair, &Options::default()).label
    }

    #[test]
    fn the_same_shift_at_every_step_is_judged_against_the_allowed_band() {
        let baseline: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i)).collect();
        // 30 above a baseline of about 105: beyond the 10 % margin.
        let canary: Vec<f64> = baseline.iter().map(|b| b + 30.0).collect();
        assert_eq!(series(canary, baseline.clone(), "increase"), Label::High);
        // 1 above (an integer gauge's step, a bucket's width): inside it.
        let canary: Vec<f64> = baseline.iter().map(|b| b + 1.0).collect();
        assert_eq!(series(canary, baseline.clone(), "increase"), Label::Pass);
        assert_eq!(series(baseline.clone(), baseline, "increase"), Label::Pass);
    }

    #[test]
    fn an_early_improvement_does_not_hide_a_later_regression() {
        // Both ways crossed: an increase-only metric is High all the same.
        let both = Crossings {
            up: true,
            down: true,
        };
        let mut result = classify_counts(
            &rule("increase"),
            "m",
            Counts {
                events: 0.0,
                exposures: 1.0,
            },
            Counts {
                events: 0.0,
                exposures: 1.0,
            },
            &Options::default(),
        );
        decide(&mut result, &rule("increase"), both, |_| true);
        assert_eq!(result.label, Label::High);
        decide(
            &mut result,
            &rule("decrease"),
            Crossings {
                up: true,
                down: false,
            },
            |_| true,
        );
        assert_eq!(
            result.label,
            Label::Pass,
            "a rise of a decrease-only metric is fine"
        );
    }

    #[test]
    fn no_errors_pass_only_after_enough_requests() {
        let none = |exposures| {
            classify_counts(
                &rule("increase"),
                "errors",
                Counts {
                    events: 0.0,
                    exposures,
                },
                Counts {
                    events: 0.0,
                    exposures: 100_000.0,
                },
                &Options::default(),
            )
            .label
        };
        assert_eq!(none(10.0), Label::Inconclusive);
        assert_eq!(none(5_000.0), Label::Pass);
    }
}
