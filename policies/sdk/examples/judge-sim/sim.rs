//! A/A and power simulation of the two judges: how often each fails a
//! canary that is as good as its baseline, and how soon each catches one
//! that is worse, when a CD system asks at every interval of a growing
//! window (Spinnaker's canary stage with `lookback`, Argo's `interval`).

use shipgate_policy::judge::MetricPair;
use shipgate_policy::judge::MetricRule;
use shipgate_policy::judge::kayenta;
use shipgate_policy::judge::sequential::{self, Options};

/// How the two cohorts' series are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Independent normal points.
    Independent,
    /// Both cohorts follow one load (AR(1), φ 0.8) plus their own noise.
    CommonLoad,
    /// Each cohort its own AR(1) with φ 0.8: what per-minute samples of a
    /// five-minute `rate()` look like.
    Autocorrelated,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 3] = [
        Scenario::Independent,
        Scenario::CommonLoad,
        Scenario::Autocorrelated,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Independent => "i.i.d.",
            Scenario::CommonLoad => "common load",
            Scenario::Autocorrelated => "AR(1) φ 0.8",
        }
    }
}

/// Points per cohort at the first look: a CD system starts judging after
/// a warm-up, never on one or two points.
const FIRST_LOOK: usize = 10;

/// One simulation's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    pub(crate) scenario: Scenario,
    /// Points per cohort by the last look.
    pub(crate) points: usize,
    pub(crate) looks: usize,
    pub(crate) runs: usize,
    /// The canary's shift, in standard deviations of a point.
    pub(crate) shift: f64,
    pub(crate) alpha: f64,
    pub(crate) seed: u64,
}

/// What the runs showed, per judge.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Share of runs failed at some look.
    pub(crate) failed: f64,
    /// Median look (1-based) of the first failure among runs that failed.
    pub(crate) median_look: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Comparison {
    pub(crate) kayenta: Outcome,
    pub(crate) sequential: Outcome,
}

/// A small deterministic generator (SplitMix64) with normal draws.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// An AR(1) series with stationary standard deviation `sd`.
fn ar1(rng: &mut Rng, n: usize, phi: f64, sd: f64) -> Vec<f64> {
    let innovation = sd * (1.0 - phi * phi).sqrt();
    let mut x = sd * rng.normal();
    (0..n)
        .map(|_| {
            let value = x;
            x = phi * x + innovation * rng.normal();
            value
        })
        .collect()
}

/// Canary and baseline series; a point's standard deviation is 10 in every
/// scenario, so `shift` is in the same unit everywhere.
fn series(rng: &mut Rng, scenario: Scenario, n: usize, shift: f64) -> (Vec<f64>, Vec<f64>) {
    const SD: f64 = 10.0;
    let (canary, baseline) = match scenario {
        Scenario::Independent => (
            (0..n).map(|_| SD * rng.normal()).collect::<Vec<_>>(),
            (0..n).map(|_| SD * rng.normal()).collect::<Vec<_>>(),
        ),
        Scenario::CommonLoad => {
            // Load carries 80 % of the variance, each cohort's noise 20 %.
            let load = ar1(rng, n, 0.8, SD * 0.8f64.sqrt());
            let own = SD * 0.2f64.sqrt();
            let canary = load.iter().map(|l| l + own * rng.normal()).collect();
            let baseline = load.iter().map(|l| l + own * rng.normal()).collect();
            (canary, baseline)
        }
        Scenario::Autocorrelated => (ar1(rng, n, 0.8, SD), ar1(rng, n, 0.8, SD)),
    };
    let canary = canary
        .into_iter()
        .map(|v: f64| 100.0 + v + shift * SD)
        .collect();
    let baseline = baseline.into_iter().map(|v: f64| 100.0 + v).collect();
    (canary, baseline)
}

/// Runs both judges on the same data, asking at each of `looks` growing
/// windows, and reports how often and how soon each failed the canary.
pub(crate) fn simulate(setup: &Setup) -> Comparison {
    let rule: MetricRule = serde_json::from_value(serde_json::json!({"name": "m"})).unwrap();
    let options = Options {
        alpha: setup.alpha,
        ..Options::default()
    };
    let mut rng = Rng(setup.seed);
    let mut kayenta_looks = Vec::new();
    let mut sequential_looks = Vec::new();
    for _ in 0..setup.runs {
        let (canary, baseline) = series(&mut rng, setup.scenario, setup.points, setup.shift);
        let mut kayenta_first = None;
        let mut sequential_first = None;
        for look in 1..=setup.looks {
            let end = if setup.looks == 1 {
                setup.points
            } else {
                FIRST_LOOK + (setup.points - FIRST_LOOK) * (look - 1) / (setup.looks - 1)
            };
            let pair = MetricPair {
                name: "m".into(),
                canary: canary[..end].to_vec(),
                baseline: baseline[..end].to_vec(),
            };
            if kayenta_first.is_none() && kayenta::classify(&rule, &pair).label.is_failure() {
                kayenta_first = Some(look);
            }
            if sequential_first.is_none()
                && sequential::classify_series(&rule, &pair, &options)
                    .label
                    .is_failure()
            {
                sequential_first = Some(look);
            }
        }
        kayenta_looks.extend(kayenta_first);
        sequential_looks.extend(sequential_first);
    }
    let outcome = |mut looks: Vec<usize>| {
        looks.sort_unstable();
        Outcome {
            failed: looks.len() as f64 / setup.runs as f64,
            median_look: looks.get(looks.len().saturating_sub(1) / 2).copied(),
        }
    };
    Comparison {
        kayenta: outcome(kayenta_looks),
        sequential: outcome(sequential_looks),
    }
}
