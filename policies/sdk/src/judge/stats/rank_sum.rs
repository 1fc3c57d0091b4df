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
    /// Kayenta's estimate, with the continuity correction.
    Kayenta,
    /// R's `$estimate`, without it.
    R,
}

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSum {
    /// The interval for `canary − baseline` at the requested level.
    pub lower: f64,
    /// Its upper end.
    pub upper: f64,
    /// The point estimate of the shift.
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
    /// A cohort has no values.
    EmptyCohort,
    /// A value, or a difference of two, is infinite or NaN.
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
///
/// ```
/// use shipgate_policy::judge::stats::{Estimate, RankSumError, rank_sum};
///
/// let canary: Vec<f64> = (0..30).map(|i| 372.0 + f64::from(i % 7)).collect();
/// let baseline: Vec<f64> = (0..30).map(|i| 310.0 + f64::from(i % 5)).collect();
/// let test = rank_sum(&canary, &baseline, 0.98, Estimate::R).unwrap();
/// // The canary is some 60 ms slower, and the interval says so.
/// assert!(test.lower > 55.0 && test.upper < 70.0, "{test:?}");
/// assert!(test.p_value < 1e-9 && test.level_reached && test.converged);
/// assert_eq!(rank_sum(&[], &baseline, 0.98, Estimate::R), Err(RankSumError::EmptyCohort));
/// ```
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
    let p_value = normal::two_sided_p(statistic.standardized(statistic.ranks(0.0), 0.0, true)?);
    let alpha = 1.0 - level;
    let z = normal::quantile(alpha / 2.0);
    let (min_shift, max_shift) = statistic.shift_range();
    if !(min_shift.is_finite() && max_shift.is_finite()) {
        // Finite values whose differences overflow.
        return Err(RankSumError::NotFinite);
    }
    // Every root is sought between the same two ends: rank there once.
    let (at_min, at_max) = (statistic.ranks(min_shift), statistic.ranks(max_shift));
    let mut converged = true;
    let mut level_reached = true;
    let mut root = |zq: f64| -> Result<f64, RankSumError> {
        let f_lower = statistic.standardized(at_min, zq, true)?;
        let f_upper = statistic.standardized(at_max, zq, true)?;
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
        statistic.standardized(at_min, 0.0, correct)?,
        statistic.standardized(at_max, 0.0, correct)?,
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
/// as a function of the shift `d`, which the root finder asks for some
/// twenty-five times per metric. Both samples are kept sorted and run-length
/// encoded (each distinct value with its count). Shifting the canary keeps
/// its order, so when the shift falls each canary value's place among the
/// baseline's is at least where the previous shift put it and at least its
/// left neighbour's new place (when it rises, at most either, from the
/// right): the search starts from the tighter of the two bounds, looks
/// at the next few values without branching (the place mostly moves by
/// none or one), and only beyond them searches in doubling steps.
struct Statistic {
    canary: Runs,
    baseline: Runs,
    /// `below[k]`: how many baseline values the runs before run `k` hold.
    below: Vec<u64>,
    /// Σ (t³ − t) over each sample's own groups of ties (in u128: t³
    /// leaves u64 at some 2.6 million tied values).
    canary_ties: u128,
    baseline_ties: u128,
    /// Each canary run's place (a baseline run index) at the last shift,
    /// and that shift.
    places: std::cell::RefCell<(Vec<usize>, f64)>,
}

/// A sorted sample as its distinct values and how often each occurs.
#[derive(Debug, Clone, Default)]
struct Runs {
    values: Vec<f64>,
    counts: Vec<u64>,
    /// Σ counts, asked for at every shift.
    total: u64,
}

impl Runs {
    /// Runs of `sorted`, equal values (as `==` sees them) counted together.
    fn of(sorted: impl IntoIterator<Item = f64>) -> Runs {
        let mut runs = Runs::default();
        for value in sorted {
            runs.total += 1;
            match runs.values.last() {
                Some(&last) if last == value => *runs.counts.last_mut().expect("a run") += 1,
                _ => {
                    runs.values.push(value);
                    runs.counts.push(1);
                }
            }
        }
        runs
    }

    fn len(&self) -> u64 {
        self.total
    }

    /// Σ (t³ − t) over the runs.
    fn ties(&self) -> u128 {
        self.counts
            .iter()
            // A value without a tie adds 0 (and in wasm a 128-bit product
            // is a call).
            .filter(|&&t| t > 1)
            .map(|&t| u128::from(t))
            .map(|t| t * t * t - t)
            .sum()
    }
}

impl Statistic {
    fn new(canary: &[f64], baseline: &[f64]) -> Statistic {
        let canary = Runs::of(sorted(canary));
        let baseline = Runs::of(sorted(baseline));
        let below = std::iter::once(0)
            .chain(baseline.counts.iter().scan(0, |sum, &count| {
                *sum += count;
                Some(*sum)
            }))
            .collect();
        Statistic {
            canary_ties: canary.ties(),
            baseline_ties: baseline.ties(),
            places: std::cell::RefCell::new((vec![0; canary.values.len()], f64::INFINITY)),
            below,
            canary,
            baseline,
        }
    }

    /// R's `mumin`, `mumax`: the smallest and largest pairwise difference.
    fn shift_range(&self) -> (f64, f64) {
        let (c, b) = (&self.canary.values, &self.baseline.values);
        (c[0] - b[b.len() - 1], c[c.len() - 1] - b[0])
    }

    /// `(dz − correction) / σ − zq`, with R's and Kayenta's operations in
    /// their order.
    fn at(&self, d: f64, zq: f64, correct: bool) -> Result<f64, RankSumError> {
        self.standardized(self.ranks(d), zq, correct)
    }

    /// [`Statistic::at`] from the shift's [`Statistic::ranks`].
    fn standardized(
        &self,
        (canary_rank_sum, ties): (f64, f64),
        zq: f64,
        correct: bool,
    ) -> Result<f64, RankSumError> {
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
    /// `baseline`, and Σ (t³ − t) over groups of t tied values. Both are
    /// computed in integers (twice the rank sum, which is a multiple of ½),
    /// so they are the exact numbers a rank-by-rank sum gives.
    fn ranks(&self, d: f64) -> (f64, f64) {
        let values = &self.baseline.values;
        let mut cache = self.places.borrow_mut();
        let (places, last_shift) = &mut *cache;
        let canary = self.canary.values.iter().zip(&self.canary.counts);
        let mut tally = Tally::new(self);
        if d <= *last_shift {
            // The shifted values grew (or stayed): places move right, and
            // no place is left of the one before it.
            let mut floor = 0;
            for (place, (&value, &count)) in places.iter_mut().zip(canary) {
                let shifted = value - d;
                floor = place_at_or_after(values, shifted, (*place).max(floor));
                *place = floor;
                tally.add(shifted, count, floor);
            }
        } else {
            // They shrank: places move left, none right of the one after.
            let mut ceiling = values.len();
            for (place, (&value, &count)) in places.iter_mut().zip(canary).rev() {
                let shifted = value - d;
                ceiling = place_at_or_before(values, shifted, (*place).min(ceiling));
                *place = ceiling;
                tally.add(shifted, count, ceiling);
            }
        }
        *last_shift = d;
        if d.is_nan() {
            // No order to keep: the next shift starts from bounds that hold.
            places.fill(0);
            *last_shift = f64::INFINITY;
        }
        tally.finish()
    }
}

/// The rank sum and ties of one shift, tallied canary run by canary run in
/// either direction (a group of tied runs is the same from either end).
struct Tally<'a> {
    statistic: &'a Statistic,
    /// Twice the canary's rank sum beyond its own ranks 1..=nx: each canary
    /// value counts the baseline values below it twice and those equal to
    /// it once.
    twice_above_own: u64,
    /// Ties across the samples, and canary values that the subtraction made
    /// equal (rounding keeps the order but may merge neighbours), beyond
    /// the groups' own t³ − t.
    extra_ties: u128,
    /// The group of canary runs that shift to one value: its size, value,
    /// and how many baseline values equal it.
    group: u64,
    group_value: f64,
    group_equal: u64,
}

impl<'a> Tally<'a> {
    fn new(statistic: &'a Statistic) -> Tally<'a> {
        Tally {
            statistic,
            twice_above_own: 0,
            extra_ties: 0,
            group: 0,
            group_value: f64::NAN,
            group_equal: 0,
        }
    }

    /// A canary run of `count` values, shifted to `shifted`, with `place`
    /// baseline runs below it.
    #[inline(always)]
    fn add(&mut self, shifted: f64, count: u64, place: usize) {
        let baseline = &self.statistic.baseline;
        let equal = match baseline.values.get(place) {
            Some(&v) if v == shifted => baseline.counts[place],
            _ => 0,
        };
        self.twice_above_own += count * (2 * self.statistic.below[place] + equal);
        if shifted == self.group_value {
            self.extra_ties += shared_ties(self.group, count);
            self.group += count;
        } else {
            self.extra_ties += shared_ties(self.group, self.group_equal);
            (self.group, self.group_value, self.group_equal) = (count, shifted, equal);
        }
    }

    fn finish(self) -> (f64, f64) {
        let statistic = self.statistic;
        let extra_ties = self.extra_ties + shared_ties(self.group, self.group_equal);
        let nx = statistic.canary.len();
        let rank_sum = (nx * (nx + 1) + self.twice_above_own) as f64 / 2.0;
        let ties = statistic.canary_ties + statistic.baseline_ties + extra_ties;
        (rank_sum, ties as f64)
    }
}

/// (a + b)³ − (a + b) − (a³ − a) − (b³ − b) = 3ab(a + b): what joining
/// groups of a and b tied values adds to Σ (t³ − t).
#[inline(always)]
fn shared_ties(a: u64, b: u64) -> u128 {
    if a == 0 || b == 0 {
        // The usual case, and in wasm a 128-bit product is a call.
        return 0;
    }
    let (a, b) = (u128::from(a), u128::from(b));
    3 * a * b * (a + b)
}

/// How far the branch-free look around a known bound reaches.
const NEAR: usize = 4;

/// How many of the ascending `values` are below `x`, knowing that at
/// least `start` are. The next [`NEAR`] values are compared without
/// branching: a mispredicted branch per canary value was most of the
/// statistic's cost.
#[inline(always)]
fn place_at_or_after(values: &[f64], x: f64, start: usize) -> usize {
    match values.get(start..start + NEAR) {
        Some(near) => {
            let below = near.iter().map(|&v| usize::from(v < x)).sum::<usize>();
            if below < NEAR {
                start + below
            } else {
                place_of(values, x, start + NEAR)
            }
        }
        None => place_of(values, x, start),
    }
}

/// How many of the ascending `values` are below `x`, knowing that at most
/// `start` are: [`place_at_or_after`] from the other side.
#[inline(always)]
fn place_at_or_before(values: &[f64], x: f64, start: usize) -> usize {
    match start
        .checked_sub(NEAR)
        .and_then(|from| values.get(from..start))
    {
        Some(near) => {
            let not_below = near.iter().map(|&v| usize::from(v >= x)).sum::<usize>();
            if not_below < NEAR {
                start - not_below
            } else {
                place_of(values, x, start - NEAR)
            }
        }
        None => place_of(values, x, start),
    }
}

/// How many of the ascending `values` are below `x`, searched for from
/// `start` outwards in doubling steps, then by halving: one comparison or
/// two when `x` has not moved past a value, O(log distance) when it has.
#[inline(always)]
fn place_of(values: &[f64], x: f64, start: usize) -> usize {
    let start = start.min(values.len());
    if start < values.len() && values[start] < x {
        // Right: values[start] is below x.
        let (mut known_below, mut step) = (start, 1);
        let end = loop {
            let probe = known_below + step;
            if probe >= values.len() || values[probe] >= x {
                break probe.min(values.len());
            }
            known_below = probe;
            step *= 2;
        };
        known_below + 1 + values[known_below + 1..end].partition_point(|&v| v < x)
    } else if start > 0 && values[start - 1] >= x {
        // Left: values[start - 1] is not below x.
        let (mut not_below, mut step) = (start - 1, 1);
        let begin = loop {
            if step > not_below || values[not_below - step] < x {
                break not_below.saturating_sub(step);
            }
            not_below -= step;
            step *= 2;
        };
        begin + values[begin..not_below].partition_point(|&v| v < x)
    } else {
        start
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

    /// Ranks as R's `rank` gives them (each value's average position among
    /// all), one by one: what the merge must equal exactly.
    fn naive_ranks(canary: &[f64], baseline: &[f64], d: f64) -> (f64, f64) {
        let shifted: Vec<f64> = canary.iter().map(|x| x - d).collect();
        let all: Vec<f64> = shifted.iter().chain(baseline).copied().collect();
        let rank = |v: f64| {
            let below = all.iter().filter(|&&w| w < v).count() as f64;
            let equal = all.iter().filter(|&&w| w == v).count() as f64;
            below + (equal + 1.0) / 2.0
        };
        let rank_sum = shifted.iter().map(|&v| rank(v)).sum();
        let mut distinct = all.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup_by(|a, b| a == b);
        let ties = distinct
            .iter()
            .map(|&v| all.iter().filter(|&&w| w == v).count() as f64)
            .map(|t| t * t * t - t)
            .sum();
        (rank_sum, ties)
    }

    #[test]
    fn the_merge_ranks_exactly_as_ranking_one_by_one() {
        let mut state = 7u64;
        let mut next = |levels: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % levels) as f64 * 0.5
        };
        for round in 0..200u64 {
            // Now and then long samples, where the search takes long
            // strides, half of them of distinct values as measurements are.
            let long = if round % 25 == 0 { 300 } else { 0 };
            let levels = if round % 50 == 25 {
                1 << 30
            } else {
                2 + round % 40
            };
            let canary: Vec<f64> = (0..(1 + round % 23 + long)).map(|_| next(levels)).collect();
            let baseline: Vec<f64> = (0..(1 + round % 17 + long)).map(|_| next(levels)).collect();
            let statistic = Statistic::new(&canary, &baseline);
            // In an order that jumps both ways, as a root finder's first steps do.
            for d in [
                0.0,
                0.5,
                -1.0,
                0.25,
                next(levels) - 3.0,
                1e-17,
                f64::MAX,
                -9.5,
                4.0,
                0.0,
                // Then closing in on one shift from both sides, as its last
                // steps do, after a shift that is no number at all.
                f64::NAN,
                0.3,
                0.3 + 1e-3,
                0.3 - 1e-4,
                0.3 + 1e-5,
                0.3 - 1e-6,
                0.3,
            ] {
                if d.is_nan() {
                    statistic.ranks(d);
                    continue;
                }
                assert_eq!(
                    statistic.ranks(d),
                    naive_ranks(&canary, &baseline, d),
                    "{canary:?} {baseline:?} shifted by {d}"
                );
            }
        }
    }

    #[test]
    fn the_search_from_a_bound_finds_the_place_from_every_bound() {
        for len in 0..10i32 {
            let values: Vec<f64> = (0..len).map(f64::from).collect();
            for x in (-1..=2 * len + 1).map(|half| f64::from(half) / 2.0) {
                let place = values.partition_point(|&v| v < x);
                for start in 0..=place {
                    assert_eq!(
                        place_at_or_after(&values, x, start),
                        place,
                        "{len} {x} {start}"
                    );
                }
                for start in place..=len as usize {
                    assert_eq!(
                        place_at_or_before(&values, x, start),
                        place,
                        "{len} {x} {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_infinite_and_all_tied_cohorts_are_errors() {
        let r = |c: &[f64], b: &[f64]| rank_sum(c, b, 0.98, Estimate::Kayenta);
        assert_eq!(r(&[], &[1.0]), Err(RankSumError::EmptyCohort));
        assert_eq!(r(&[f64::INFINITY], &[1.0]), Err(RankSumError::NotFinite));
        assert_eq!(r(&[1.0, 1.0], &[1.0]), Err(RankSumError::AllTied));
    }
}
