//! The standard normal distribution: its quantile (Wichura's AS 241, the
//! algorithm R's `qnorm` uses, so intervals match R to the last bit) and its
//! upper tail (for p-values).

// The coefficients are written as Wichura published them (and R carries
// them), not rounded to what an f64 holds.
#![allow(clippy::excessive_precision)]

/// The `p` quantile of the standard normal distribution (lower tail):
/// `qnorm(p)` in R. `p` outside (0, 1) gives ±∞ at the ends and NaN beyond.
///
/// ```
/// use shipgate_policy::judge::stats::normal::quantile;
///
/// // The z of a two-sided 98% interval, Kayenta's level.
/// assert!((quantile(0.99) - 2.326347874040841).abs() < 1e-15);
/// assert_eq!(quantile(0.5), 0.0);
/// ```
pub fn quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q
            * (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r
                + 67265.770927008700853)
                * r
                + 45921.953931549871457)
                * r
                + 13731.693765509461125)
                * r
                + 1971.5909503065514427)
                * r
                + 133.14166789178437745)
                * r
                + 3.387132872796366608)
            / (((((((r * 5226.495278852854561 + 28729.085735721942674) * r
                + 39307.89580009271061)
                * r
                + 21213.794301586595867)
                * r
                + 5394.1960214247511077)
                * r
                + 687.1870074920579083)
                * r
                + 42.313330701600911252)
                * r
                + 1.0);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let mut r = (-tail.ln()).sqrt();
    let value = if r <= 5.0 {
        r -= 1.6;
        (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r
            + 0.24178072517745061177)
            * r
            + 1.27045825245236838258)
            * r
            + 3.64784832476320460504)
            * r
            + 5.7694972214606914055)
            * r
            + 4.6303378461565452959)
            * r
            + 1.42343711074968357734)
            / (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r
                + 0.0151986665636164571966)
                * r
                + 0.14810397642748007459)
                * r
                + 0.68976733498510000455)
                * r
                + 1.6763848301838038494)
                * r
                + 2.05319162663775882187)
                * r
                + 1.0)
    } else {
        r -= 5.0;
        (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r
            + 0.0012426609473880784386)
            * r
            + 0.026532189526576123093)
            * r
            + 0.29656057182850489123)
            * r
            + 1.7848265399172913358)
            * r
            + 5.4637849111641143699)
            * r
            + 6.6579046435011037772)
            / (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r
                + 1.8463183175100546818e-5)
                * r
                + 7.868691311456132591e-4)
                * r
                + 0.0148753612908506148525)
                * r
                + 0.13692988092273580531)
                * r
                + 0.59983220655588793769)
                * r
                + 1.0)
    };
    if q < 0.0 { -value } else { value }
}

/// P(Z > x) for a standard normal Z, accurate to about 1e-14 relative over
/// the range p-values are read in.
///
/// ```
/// use shipgate_policy::judge::stats::normal::upper_tail;
///
/// assert_eq!(upper_tail(0.0), 0.5);
/// assert!((upper_tail(1.959963984540054) - 0.025).abs() < 1e-15);
/// ```
pub fn upper_tail(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 1.0 - upper_tail(-x);
    }
    let density = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    if x < 3.0 {
        // Φ(x) − ½ = φ(x) · Σ x^(2k+1) / (1·3·…·(2k+1)): every term is
        // positive, so the sum loses nothing to cancellation.
        let (mut term, mut sum, mut k) = (x, x, 1.0);
        while term > sum * 1e-17 {
            term *= x * x / (2.0 * k + 1.0);
            sum += term;
            k += 1.0;
        }
        0.5 - density * sum
    } else {
        // Laplace's continued fraction, evaluated from a depth where it has
        // converged for x ≥ 3.
        let mut fraction = x;
        for k in (1..=200).rev() {
            fraction = x + f64::from(k) / fraction;
        }
        density / fraction
    }
}

/// Two-sided p-value of a standard normal statistic.
///
/// ```
/// use shipgate_policy::judge::stats::normal::two_sided_p;
///
/// assert!((two_sided_p(-1.959963984540054) - 0.05).abs() < 1e-15);
/// assert_eq!(two_sided_p(0.0), 1.0);
/// ```
pub fn two_sided_p(z: f64) -> f64 {
    (2.0 * upper_tail(z.abs())).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_symmetric_and_known_at_the_usual_levels() {
        // Textbook values of the normal table.
        assert!((quantile(0.975) - 1.959963984540054).abs() < 1e-15);
        assert!((quantile(0.01) + 2.326347874040841).abs() < 1e-15);
        assert_eq!(quantile(0.3), -quantile(0.7));
        assert_eq!(quantile(0.0), f64::NEG_INFINITY);
        assert!(quantile(1.5).is_nan());
    }

    #[test]
    fn the_tail_inverts_the_quantile() {
        for p in [0.4, 0.1, 0.01, 1e-3, 1e-6, 1e-10] {
            let tail = upper_tail(-quantile(p));
            assert!(((tail - p) / p).abs() < 1e-12, "{p}: {tail}");
        }
        assert_eq!(two_sided_p(0.0), 1.0);
    }
}
