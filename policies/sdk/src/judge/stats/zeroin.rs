//! Brent's root finder as R's `uniroot` (`R_zeroin2`) and Kayenta's
//! `BrentSolver` run it: the same steps in the same order, so a root found
//! with the same tolerance is the same number.

/// A root, and whether the solver met its tolerance (R and Kayenta return
/// the last iterate either way; shipgate says when it did not converge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Root {
    /// The root (the last iterate when the solver did not converge).
    pub x: f64,
    /// Whether the solver met its tolerance.
    pub converged: bool,
}

/// The root of `f` in `[a, b]`, given `fa = f(a)` and `fb = f(b)` of
/// opposite signs, to within `tol`, in at most `max_iter` steps.
///
/// ```
/// use shipgate_policy::judge::stats::normal::upper_tail;
/// use shipgate_policy::judge::stats::zeroin::zeroin;
///
/// // The z beyond which 1% of a standard normal lies.
/// let f = |z: f64| upper_tail(z) - 0.01;
/// let root = zeroin(f, (0.0, 5.0), (f(0.0), f(5.0)), 1e-10, 1000);
/// assert!(root.converged);
/// assert!((root.x - 2.326347874).abs() < 1e-9);
/// ```
pub fn zeroin(
    mut f: impl FnMut(f64) -> f64,
    (ax, bx): (f64, f64),
    (fa, fb): (f64, f64),
    tol: f64,
    max_iter: u32,
) -> Root {
    let (mut a, mut b, mut fa, mut fb) = (ax, bx, fa, fb);
    let (mut c, mut fc) = (a, fa);
    if fa == 0.0 {
        return Root {
            x: a,
            converged: true,
        };
    }
    if fb == 0.0 {
        return Root {
            x: b,
            converged: true,
        };
    }
    for _ in 0..=max_iter {
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            // b is the best approximation so far.
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * f64::EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || fb == 0.0 {
            return Root {
                x: b,
                converged: true,
            };
        }
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            // Interpolation may be tried: linear with two distinct points,
            // inverse quadratic with three.
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                let qa = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * qa * (qa - t1) - (b - a) * (t1 - 1.0));
                q = (qa - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b);
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    Root {
        x: b,
        converged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_square_root_within_the_tolerance() {
        let f = |x: f64| x * x - 2.0;
        let root = zeroin(f, (0.0, 2.0), (f(0.0), f(2.0)), 1e-10, 1000);
        assert!(root.converged);
        assert!((root.x - std::f64::consts::SQRT_2).abs() < 1e-10);
    }

    #[test]
    fn a_root_at_an_end_is_that_end_and_too_few_steps_say_so() {
        let f = |x: f64| x - 1.0;
        assert_eq!(zeroin(f, (1.0, 3.0), (0.0, 2.0), 1e-4, 10).x, 1.0);
        let g = |x: f64| (x - 0.3).powi(3);
        let root = zeroin(g, (0.0, 1.0), (g(0.0), g(1.0)), 1e-300, 3);
        assert!(!root.converged);
    }
}
