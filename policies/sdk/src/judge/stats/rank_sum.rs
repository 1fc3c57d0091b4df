//! The two-sample Wilcoxon rank-sum (Mann–Whitney) test with its confidence
//! interval for the shift `canary − baseline`, computed as R's
//! `wilcox.test(canary, baseline, conf.int = TRUE, exact = FALSE,
//! correct = TRUE)` computes it (normal approximation, tie and continuity
//! corrections, `uniroot` with tolerance 1e-4), which is also what Kayenta's
//! `MannWhitney.scala` computes.

use super::describe::sorted;
use super::normal;
use super::zeroin::zeroin;

/// The root finder's tolerance in R (`tol.root`) and in Kayenta.
const TOLERANCE: f64 = 1e-4;
/// R's `uniroot` default, Kayenta's `BrentSolver` limit.
const MAX_ITERATIONS: u32 = 1000;

/// Which point estimate: R solves the statistic without the continuity
/// correction, Kayenta keeps it (and so reports another number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    Kayenta,
    R,
}

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSum {
    /// The interval for `canary − baseline` at the requested level.
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
    /// Two-sided p-value of "no shift" (R's `$p.value`).
    pub p_value: f64,
    /// False when the samples are too small for the level: the interval is
    /// then the range of differences (R and Kayenta say nothing).
    pub level_reached: bool,
    /// False when a root was not found within the iteration limit.
    pub converged: bool,
}

/// Why there is no interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankSumError {
    EmptyCohort,
    NotFinite,
    /// Every value ties with every other (R and Kayenta stop here).
    AllTied,
}

impl std::fmt::Display for RankSumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RankSumError::EmptyCohort => "a cohort has no values",
            RankSumError::NotFinite => "a value, or a difference of two, is infinite or NaN",
            RankSumError::AllTied => {
                "cannot compute a confidence interval when all observations are tied"
            }
        })
    }
}

/// The rank-sum test of `canary` against `baseline` at confidence `level`
/// (two-sided, e.g. 0.98 as Kayenta).
pub fn rank_sum(
    canary: &[f64],
    baseline: &[f64],
    level: f64,
    estimate: Estimate,
) -> Result<RankSum, RankSumError> {
    if canary.is_empty() || baseline.is_empty() {
        return Err(RankSumError::EmptyCohort);
    }
    if canary.iter().chain(baseline).any(|v| !v.is_finite()) {
        return Err(RankSumError::NotFinite);
    }
    let statistic = Statistic::new(canary, baseline);
    let p_value = normal::two_sided_p(statistic.at(0.0, 0.0, true)?);
    let alpha = 1.0 - level;
    let z = normal::quantile(alpha / 2.0);
    let (min_shift, max_shift) = statistic.shift_range();
    if !(min_shift.is_finite() && max_shift.is_finite()) {
        // Finite values whose differences overflow.
        return Err(RankSumError::NotFinite);
    }
    let mut converged = true;
    let mut level_reached = true;
    let mut root = |zq: f64| -> Result<f64, RankSumError> {
        let f_lower = statistic.at(min_shift, zq, true)?;
        let f_upper = statistic.at(max_shift, zq, true)?;
        if f_lower <= 0.0 {
            level_reached = false;
            return Ok(min_shift);
        }
        if f_upper >= 0.0 {
            level_reached = false;
            return Ok(max_shift);
        }
        let found = solve(
            &statistic,
            (min_shift, max_shift),
            zq,
            true,
            (f_lower, f_upper),
        )?;
        converged &= found.converged;
        Ok(found.x)
    };
    let lower = root(-z)?;
    let upper = root(z)?;
    let correct = estimate == Estimate::Kayenta;
    let ends = (
        statistic.at(min_shift, 0.0, correct)?,
        statistic.at(max_shift, 0.0, correct)?,
    );
    let found = solve(&statistic, (min_shift, max_shift), 0.0, correct, ends)?;
    Ok(RankSum {
        lower,
        upper,
        estimate: found.x,
        p_value,
        level_reached,
        converged: converged && found.converged,
    })
}

fn solve(
    statistic: &Statistic,
    range: (f64, f64),
    zq: f64,
    correct: bool,
    ends: (f64, f64),
) -> Result<super::zeroin::Root, RankSumError> {
    let mut failed = None;
    let root = zeroin(
        |d| {
            statistic.at(d, zq, correct).unwrap_or_else(|error| {
                failed = Some(error);
                0.0
            })
        },
        range,
        ends,
        TOLERANCE,
        MAX_ITERATIONS,
    );
    match failed {
        Some(error) => Err(error),
        None => Ok(root),
    }
}

/// The standardized rank-sum statistic of `canary − d` against `baseline`,
/// as a function of the shift `d`. Both samples are kept sorted: shifting
/// one keeps its order, so ranking is a merge instead of a sort.
struct Statistic {
    canary: Vec<f64>,
    baseline: Vec<f64>,
}

impl Statistic {
    fn new(canary: &[f64], baseline: &[f64]) -> Statistic {
        Statistic {
            canary: sorted(canary),
            baseline: sorted(baseline),
        }
    }

    /// R's `mumin`, `mumax`: the smallest and largest pairwise difference.
    fn shift_range(&self) -> (f64, f64) {
        let (c, b) = (&self.canary, &self.baseline);
        (c[0] - b[b.len() - 1], c[c.len() - 1] - b[0])
    }

    /// `(dz − correction) / σ − zq`, with R's and Kayenta's operations in
    /// their order.
    fn at(&self, d: f64, zq: f64, correct: bool) -> Result<f64, RankSumError> {
        let (canary_rank_sum, ties) = self.ranks(d);
        let nx = self.canary.len() as f64;
        let ny = self.baseline.len() as f64;
        let dz = canary_rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
        let correction = if correct { signum(dz) * 0.5 } else { 0.0 };
        let sigma =
            ((nx * ny / 12.0) * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
        if sigma == 0.0 {
            return Err(RankSumError::AllTied);
        }
        Ok((dz - correction) / sigma - zq)
    }

    /// The sum of the canary's average ranks among `canary − d` and
    /// `baseline`, and Σ (t³ − t) over groups of t tied values.
    fn ranks(&self, d: f64) -> (f64, f64) {
        let (canary, baseline) = (&self.canary, &self.baseline);
        let (mut i, mut j) = (0, 0);
        let mut rank_sum = 0.0;
        let mut ties = 0.0;
        let mut placed = 0usize;
        while i < canary.len() || j < baseline.len() {
            let next = match (canary.get(i), baseline.get(j)) {
                (Some(&x), Some(&y)) => (x - d).min(y),
                (Some(&x), None) => x - d,
                (None, Some(&y)) => y,
                (None, None) => unreachable!("the loop runs while values remain"),
            };
            let mut from_canary = 0usize;
            while i < canary.len() && canary[i] - d == next {
                from_canary += 1;
                i += 1;
            }
            let mut from_baseline = 0usize;
            while j < baseline.len() && baseline[j] == next {
                from_baseline += 1;
                j += 1;
            }
            let group = from_canary + from_baseline;
            if group == 0 {
                // A NaN shift matches nothing; never loop on it.
                break;
            }
            // Ranks placed+1 … placed+group share their average.
            let average = placed as f64 + (group as f64 + 1.0) / 2.0;
            rank_sum += average * from_canary as f64;
            let t = group as f64;
            ties += t * t * t - t;
            placed += group;
        }
        (rank_sum, ties)
    }
}

/// R's `sign`: 0 for 0.
fn signum(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties_across_both_samples() {
        let statistic = Statistic::new(&[1.0, 2.0, 2.0], &[2.0, 3.0]);
        // Ranks: 1 → 1, the three 2s → 3, 3 → 5; canary: 1 + 3 + 3.
        assert_eq!(statistic.ranks(0.0), (7.0, 24.0));
    }

    #[test]
    fn empty_infinite_and_all_tied_cohorts_are_errors() {
        let r = |c: &[f64], b: &[f64]| rank_sum(c, b, 0.98, Estimate::Kayenta);
        assert_eq!(r(&[], &[1.0]), Err(RankSumError::EmptyCohort));
        assert_eq!(r(&[f64::INFINITY], &[1.0]), Err(RankSumError::NotFinite));
        assert_eq!(r(&[1.0, 1.0], &[1.0]), Err(RankSumError::AllTied));
    }
}
