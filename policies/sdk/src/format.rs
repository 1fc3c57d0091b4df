//! Formatting of observed values and thresholds for people, and the small
//! arithmetic helpers policies need (rates, ratios, durations).

/// How a number is shown in a finding, and what its numbers measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// A fraction shown as a percentage: 0.041 → "4.1%".
    Percent,
    /// Milliseconds: 401.0 → "401 ms".
    #[serde(rename = "ms")]
    Millis,
    /// A multiple of a baseline: 1.32 → "1.32x".
    Ratio,
    /// A plain count: 500.0 → "500".
    Count,
    /// Seconds, shown as a duration: 540.0 → "9m 0s".
    Seconds,
    /// Events per request (a business metric's rate): 0.0312 → "0.0312/req".
    PerRequest,
}

impl Unit {
    /// `value` as a finding shows it: at most a few decimals, trailing
    /// zeros dropped, "n/a" for NaN and "∞" for an infinity.
    ///
    /// ```
    /// use shipgate_policy::Unit;
    ///
    /// assert_eq!(Unit::Percent.format(0.041), "4.1%");
    /// assert_eq!(Unit::Percent.format(0.01), "1.0%");
    /// assert_eq!(Unit::Millis.format(1240.0), "1240 ms");
    /// assert_eq!(Unit::Ratio.format(1.32), "1.32x");
    /// assert_eq!(Unit::Count.format(13000.0), "13000");
    /// assert_eq!(Unit::Seconds.format(540.0), "9m 0s");
    /// assert_eq!(Unit::PerRequest.format(0.0312), "0.0312/req");
    /// ```
    pub fn format(self, value: f64) -> String {
        let with_suffix = |mut text: String, suffix: &str| {
            text.push_str(suffix);
            text
        };
        match self {
            Unit::Percent => with_suffix(trim(value * 100.0, 2, true), "%"),
            Unit::Millis => with_suffix(trim(value, 1, false), " ms"),
            Unit::Ratio => with_suffix(trim(value, 2, true), "x"),
            Unit::Count => trim(value, 2, false),
            Unit::Seconds => duration(value),
            Unit::PerRequest => with_suffix(trim(value, 4, false), "/req"),
        }
    }
}

/// A number with at most `decimals` decimals and trailing zeros removed.
/// `keep_one` keeps one decimal on whole rates and ratios, so "1.0%" and
/// "2.0x" do not read like counts.
fn trim(value: f64, decimals: usize, keep_one: bool) -> String {
    if !value.is_finite() {
        return if value.is_nan() { "n/a" } else { "∞" }.to_string();
    }
    let text = fixed(value, decimals);
    if !text.contains('.') {
        return text;
    }
    let text = text.trim_end_matches('0');
    if text.ends_with('.') {
        if keep_one && value != 0.0 {
            return format!("{text}0");
        }
        return text.trim_end_matches('.').to_string();
    }
    text.to_string()
}

/// `value` with exactly `decimals` decimals, the same text as
/// `format!("{value:.decimals$}")`. Findings format a dozen numbers per
/// decision, and the exact float formatter (bignum arithmetic) was the
/// largest cost of a policy compiled to wasm; scaling to an integer is
/// exact unless the scaled value lies near a rounding tie or beyond what
/// an f64 holds exactly, and those cases keep the exact formatter.
pub(crate) fn fixed(value: f64, decimals: usize) -> String {
    const SCALES: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
    let Some(&scale) = SCALES.get(decimals) else {
        return format!("{value:.decimals$}");
    };
    let scaled = value.abs() * scale;
    let fraction = scaled - scaled.trunc();
    if !(scaled < 1e12 && (fraction - 0.5).abs() > 1e-3) {
        return format!("{value:.decimals$}");
    }
    let units = scaled.round() as u64;
    let scale = scale as u64;
    let mut text = String::with_capacity(24);
    if value.is_sign_negative() {
        text.push('-');
    }
    push_digits(&mut text, units / scale, 1);
    if decimals > 0 {
        text.push('.');
        push_digits(&mut text, units % scale, decimals);
    }
    text
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(text: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    text.extend(digits[start..].iter().map(|&d| d as char));
}

/// A duration in whole seconds for people: "1h 5m", "9m 30s", "42s".
///
/// ```
/// use shipgate_policy::duration;
///
/// // A 15-minute stage, 6 minutes in.
/// assert_eq!(duration(15.0 * 60.0 - 360.0), "9m 0s");
/// assert_eq!(duration(3900.0), "1h 5m");
/// assert_eq!(duration(42.4), "42s");
/// ```
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return trim(seconds, 0, false);
    }
    let negative = seconds < 0.0;
    let total = seconds.abs().round() as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let body = if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    };
    if negative { format!("-{body}") } else { body }
}

/// `part / whole`, or `None` when `whole` is zero.
///
/// ```
/// use shipgate_policy::ratio;
///
/// // 533 errors in 13 000 canary requests.
/// assert_eq!(ratio(533.0, 13000.0), Some(0.041));
/// // No traffic yet: no rate, rather than NaN.
/// assert_eq!(ratio(0.0, 0.0), None);
/// ```
pub fn ratio(part: f64, whole: f64) -> Option<f64> {
    if whole == 0.0 {
        None
    } else {
        Some(part / whole)
    }
}

/// The `q`-th percentile (0–100) of `samples`, interpolating linearly
/// between the closest ranks; `None` for no samples or a `q` outside 0–100.
/// For policies that receive raw samples rather than precomputed quantiles.
///
/// ```
/// use shipgate_policy::percentile;
///
/// let latencies_ms = [41.0, 44.0, 39.0, 52.0, 310.0, 47.0, 43.0, 45.0, 40.0, 48.0];
/// assert_eq!(percentile(&latencies_ms, 50.0), Some(44.5));
/// assert_eq!(percentile(&latencies_ms, 0.0), Some(39.0));
/// assert_eq!(percentile(&[], 99.0), None);
/// ```
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_each_unit() {
        assert_eq!(Unit::Percent.format(0.041), "4.1%");
        assert_eq!(Unit::Percent.format(0.01), "1.0%");
        assert_eq!(Unit::Percent.format(0.0), "0%");
        assert_eq!(Unit::Percent.format(0.000846), "0.08%");
        assert_eq!(Unit::Millis.format(401.0), "401 ms");
        assert_eq!(Unit::Millis.format(12.26), "12.3 ms");
        assert_eq!(Unit::Ratio.format(1.5), "1.5x");
        assert_eq!(Unit::Ratio.format(1.0), "1.0x");
        assert_eq!(Unit::Ratio.format(f64::INFINITY), "∞x");
        assert_eq!(Unit::Count.format(500.0), "500");
        assert_eq!(Unit::Count.format(50.0), "50");
        assert_eq!(Unit::Percent.format(0.1), "10.0%");
        assert_eq!(Unit::Seconds.format(540.0), "9m 0s");
    }

    #[test]
    fn fixed_decimals_match_the_exact_formatter() {
        // Dense grids of tenths, hundredths and thousandths (many are
        // rounding ties or just off one), both signs, and assorted magnitudes.
        let grids = (0..20_000).flat_map(|i| {
            let i = f64::from(i);
            [
                i / 10.0,
                i / 100.0,
                i / 1000.0,
                -i / 1000.0,
                i * 0.37,
                i * 1234.5678,
            ]
        });
        let specials = [
            0.0,
            -0.0,
            0.125,
            0.375,
            2.5,
            1.005,
            0.045,
            1e11,
            9.99e11,
            1e12,
            1e15,
            1e300,
            5e-324,
            0.004999,
            99.995,
            4.1000000000000005,
        ];
        for value in grids.chain(specials) {
            for decimals in 0..=5 {
                assert_eq!(
                    fixed(value, decimals),
                    format!("{value:.decimals$}"),
                    "{value} with {decimals} decimals"
                );
            }
        }
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let samples = [40.0, 10.0, 30.0, 20.0, 50.0];
        assert_eq!(percentile(&samples, 50.0), Some(30.0));
        assert_eq!(percentile(&samples, 0.0), Some(10.0));
        assert_eq!(percentile(&samples, 100.0), Some(50.0));
        assert_eq!(percentile(&samples, 95.0), Some(48.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&samples, 101.0), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(570.0), "9m 30s");
        assert_eq!(duration(3900.0), "1h 5m");
        assert_eq!(duration(-60.0), "-1m 0s");
    }
}
