//! Descriptive statistics as Kayenta reports them (Apache Commons Math:
//! corrected two-pass mean, sample variance, R-7 percentiles).

use serde::{Deserialize, Deserializer, Serialize};

/// One cohort's summary; 0 for every field of an empty cohort, as Kayenta.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The smallest value.
    #[serde(deserialize_with = "number_or_nan")]
    pub min: f64,
    /// The largest value.
    #[serde(deserialize_with = "number_or_nan")]
    pub max: f64,
    /// The mean.
    #[serde(deserialize_with = "number_or_nan")]
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    #[serde(deserialize_with = "number_or_nan")]
    pub std: f64,
    /// How many values.
    pub count: usize,
}

impl Summary {
    /// Summarizes `values` (gaps already removed).
    ///
    /// ```
    /// use shipgate_policy::judge::stats::describe::Summary;
    ///
    /// let p99_ms = Summary::of(&[310.0, 305.0, 320.0, 298.0, 312.0]);
    /// assert_eq!((p99_ms.min, p99_ms.max, p99_ms.count), (298.0, 320.0, 5));
    /// assert_eq!(p99_ms.mean, 309.0);
    /// assert_eq!(Summary::of(&[]).count, 0);
    /// ```
    pub fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary {
                min: 0.0,
                max: 0.0,
                mean: 0.0,
                std: 0.0,
                count: 0,
            };
        }
        Summary {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean: mean(values),
            std: variance(values).sqrt(),
            count: values.len(),
        }
    }
}

/// The mean with a second pass that corrects the first's rounding; NaN for
/// no values.
///
/// ```
/// use shipgate_policy::judge::stats::describe::mean;
///
/// assert_eq!(mean(&[0.004, 0.006, 0.005]), 0.005);
/// assert!(mean(&[]).is_nan());
/// ```
pub fn mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let first = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|v| v - first).sum();
    first + correction / n
}

/// The sample variance (n − 1), 0 for one value, NaN for none.
///
/// ```
/// use shipgate_policy::judge::stats::describe::variance;
///
/// assert_eq!(variance(&[300.0, 310.0, 320.0]), 100.0);
/// assert_eq!(variance(&[310.0]), 0.0);
/// ```
pub fn variance(values: &[f64]) -> f64 {
    match values.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(values);
            let (squares, sum) = values.iter().fold((0.0, 0.0), |(squares, sum), v| {
                let d = v - m;
                (squares + d * d, sum + d)
            });
            let n = n as f64;
            (squares - sum * sum / n) / (n - 1.0)
        }
    }
}

/// mean(canary) / mean(baseline); NaN when either mean is 0.
///
/// ```
/// use shipgate_policy::judge::stats::describe::mean_ratio;
///
/// assert_eq!(mean_ratio(&[372.0, 378.0], &[310.0, 315.0]), 1.2);
/// // A baseline without errors: no ratio.
/// assert!(mean_ratio(&[0.002, 0.004], &[0.0, 0.0]).is_nan());
/// ```
pub fn mean_ratio(canary: &[f64], baseline: &[f64]) -> f64 {
    let (c, b) = (mean(canary), mean(baseline));
    if c == 0.0 || b == 0.0 {
        f64::NAN
    } else {
        c / b
    }
}

/// The values in ascending order (by `total_cmp`, under which equal values
/// are the same bits, so an unstable sort gives the one stable answer).
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    if !values.is_sorted_by(|a, b| a.total_cmp(b).is_le()) {
        super::sort::sort_total(&mut values);
    }
    values
}

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by R's type 7 (linear
/// between order statistics); NaN for no values.
///
/// ```
/// use shipgate_policy::judge::stats::describe::percentile_r7;
///
/// // `quantile(c(298, 305, 310, 312, 320), 0.75)` in R.
/// assert_eq!(percentile_r7(&[298.0, 305.0, 310.0, 312.0, 320.0], 75.0), 312.0);
/// ```
pub fn percentile_r7(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let position = p / 100.0 * (n as f64 - 1.0) + 1.0;
            if position < 1.0 {
                return sorted[0];
            }
            if position >= n as f64 {
                return sorted[n - 1];
            }
            let below = position.floor();
            let fraction = position - below;
            let lower = sorted[below as usize - 1];
            let upper = sorted[below as usize];
            lower + fraction * (upper - lower)
        }
    }
}

/// Reads back a number JSON wrote as `null` (JSON has no NaN or infinity,
/// so serde_json writes them as `null`) as NaN: a judgement read back
/// writes the same JSON.
pub(crate) fn number_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_empty_single_and_several_values() {
        assert_eq!(Summary::of(&[]).count, 0);
        assert_eq!(Summary::of(&[4.0]).std, 0.0);
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
        assert!((s.std - 1.2909944487358056).abs() < 1e-15);
    }

    #[test]
    fn percentiles_interpolate_as_r_type_7() {
        // quantile(1:10, c(.25, .75, .01, .99), type = 7) in R.
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_r7(&values, 25.0), 3.25);
        assert_eq!(percentile_r7(&values, 75.0), 7.75);
        assert!((percentile_r7(&values, 1.0) - 1.09).abs() < 1e-12);
        assert!((percentile_r7(&values, 99.0) - 9.91).abs() < 1e-12);
    }
}
