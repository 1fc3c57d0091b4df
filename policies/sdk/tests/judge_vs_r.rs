//! The judge's statistics against R, not against themselves: every interval,
//! estimate and p-value is computed again by R's own `wilcox.test` (and
//! Kayenta's estimate by `uniroot` on its continuity-corrected statistic),
//! on Kayenta's test vectors and a few hundred generated pairs with ties,
//! zeros and small samples. Needs `Rscript` (Debian `r-base-core`, which
//! `./test.sh` installs).

use std::io::Write;
use std::process::Command;

use shipgate_policy::judge::stats::{Estimate, rank_sum};

/// Relative agreement required: both sides run the same zeroin with
/// tolerance 1e-4 on the same statistic, so they agree far better.
const RELATIVE: f64 = 1e-9;

struct Case {
    name: String,
    level: f64,
    canary: Vec<f64>,
    baseline: Vec<f64>,
}

/// R's answers for one case, or why R refused.
struct RAnswer {
    lower: f64,
    upper: f64,
    estimate_r: f64,
    estimate_kayenta: f64,
    p_value: f64,
}

const R_SCRIPT: &str = r#"
kayenta_estimate <- function(x, y) {
  nx <- as.double(length(x)); ny <- as.double(length(y))
  W <- function(d) {
    r <- rank(c(x - d, y)); t <- table(r)
    dz <- sum(r[seq_along(x)]) - nx * (nx + 1) / 2 - nx * ny / 2
    (dz - sign(dz) * 0.5) /
      sqrt((nx * ny / 12) * ((nx + ny + 1) - sum(t^3 - t) / ((nx + ny) * (nx + ny - 1))))
  }
  uniroot(W, c(min(x) - max(y), max(x) - min(y)), tol = 1e-4)$root
}
for (line in readLines(file("stdin"))) {
  parts <- strsplit(line, ";", fixed = TRUE)[[1]]
  level <- as.numeric(parts[1])
  x <- as.numeric(strsplit(parts[2], ",", fixed = TRUE)[[1]])
  y <- as.numeric(strsplit(parts[3], ",", fixed = TRUE)[[1]])
  w <- suppressWarnings(wilcox.test(x, y, conf.int = TRUE, conf.level = level,
                                    exact = FALSE, correct = TRUE))
  k <- kayenta_estimate(x, y)
  cat(sprintf("%.17g %.17g %.17g %.17g %.17g\n", w$conf.int[1], w$conf.int[2],
              w$estimate, k, w$p.value))
}
"#;

/// Exactly the double, as R reads it (hexadecimal: no decimal rounding on
/// either side).
fn hex(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0x0p+0"
        } else {
            "0x0p+0"
        }
        .into();
    }
    let bits = value.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exponent = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = bits & ((1 << 52) - 1);
    if exponent == 0 {
        format!("{sign}0x0.{mantissa:013x}p-1022")
    } else {
        format!("{sign}0x1.{mantissa:013x}p{}", exponent - 1023)
    }
}

fn ask_r(cases: &[Case]) -> Vec<RAnswer> {
    let mut input = String::new();
    for case in cases {
        let join = |values: &[f64]| values.iter().map(|&v| hex(v)).collect::<Vec<_>>().join(",");
        input.push_str(&format!(
            "{};{};{}\n",
            case.level,
            join(&case.canary),
            join(&case.baseline)
        ));
    }
    let dir = std::env::temp_dir().join(format!("shipgate-judge-vs-r-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("wilcox.R");
    std::fs::write(&script, R_SCRIPT).unwrap();
    let mut child = Command::new("Rscript")
        .arg("--vanilla")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Rscript runs (Debian r-base-core; ./test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success(),
        "R failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<RAnswer> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            RAnswer {
                lower: v[0],
                upper: v[1],
                estimate_r: v[2],
                estimate_kayenta: v[3],
                p_value: v[4],
            }
        })
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

fn close(ours: f64, theirs: f64) -> bool {
    ours == theirs || (ours - theirs).abs() <= RELATIVE * ours.abs().max(theirs.abs())
}

/// A small deterministic generator (SplitMix64): the same pairs every run.
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
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Pairs of the kinds canary data has: continuous, rounded (ties),
/// zero-inflated error counts, shifted, small samples.
fn generated() -> Vec<Case> {
    let mut rng = Rng(20261206);
    let mut cases = Vec::new();
    for i in 0..300 {
        let kind = i % 5;
        let (nx, ny) = match kind {
            4 => (1 + rng.below(6) as usize, 1 + rng.below(6) as usize),
            _ => (5 + rng.below(80) as usize, 5 + rng.below(80) as usize),
        };
        let shift = [0.0, 0.3, 1.0, 3.0][rng.below(4) as usize];
        let draw = |n: usize, offset: f64, rng: &mut Rng| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    let u = rng.uniform() + rng.uniform() + rng.uniform() - 1.5;
                    match kind {
                        0 | 4 => 100.0 + offset + 10.0 * u,
                        1 => (10.0 + offset + 3.0 * u).round(),
                        2 => {
                            if rng.uniform() < 0.7 {
                                0.0
                            } else {
                                (offset + 2.0 * u).abs().round()
                            }
                        }
                        _ => (0.01 * (1.0 + offset) * (1.0 + u)).max(0.0),
                    }
                })
                .collect()
        };
        let canary = draw(nx, shift, &mut rng);
        let baseline = draw(ny, 0.0, &mut rng);
        let constant = |v: &[f64]| v.iter().all(|&x| x == v[0]);
        if constant(&canary) && constant(&baseline) {
            continue; // R stops there; the judge decides it without a test
        }
        let level = if i % 3 == 0 { 0.95 } else { 0.98 };
        cases.push(Case {
            name: format!("generated #{i} (kind {kind})"),
            level,
            canary,
            baseline,
        });
    }
    cases
}

fn kayenta_cases() -> Vec<(Case, Option<serde_json::Value>)> {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kayenta-mannwhitney.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            (
                Case {
                    name: case["title"].as_str().unwrap().to_string(),
                    level: case["level"].as_f64().unwrap(),
                    canary: numbers(&case["canary"]),
                    baseline: numbers(&case["baseline"]),
                },
                Some(case["kayenta"].clone()).filter(|k| !k.is_null()),
            )
        })
        .collect()
}

/// The cases of the research note's table, where Kayenta's behaviour was
/// reported in its users' issues.
fn issue_cases() -> Vec<Case> {
    let case = |name: &str, canary: Vec<f64>, baseline: Vec<f64>| Case {
        name: name.into(),
        level: 0.98,
        canary,
        baseline,
    };
    let mut b = vec![100.0; 7];
    b.extend([1.0; 3]);
    vec![
        case("spinnaker#6278", b, vec![1.0; 10]),
        case(
            "kayenta#426",
            vec![0.0, 1.0, 2.0, 1.0, 0.0, 0.0],
            vec![0.0; 6],
        ),
        case("small samples", vec![5.0, 6.0], vec![1.0, 2.0]),
    ]
}

#[test]
fn intervals_estimates_and_p_values_equal_rs() {
    let mut cases: Vec<Case> = kayenta_cases().into_iter().map(|(case, _)| case).collect();
    cases.extend(issue_cases());
    cases.extend(generated());
    assert!(cases.len() > 250, "{} cases", cases.len());
    let answers = ask_r(&cases);
    let mut failures = Vec::new();
    for (case, r) in cases.iter().zip(&answers) {
        let kayenta =
            rank_sum(&case.canary, &case.baseline, case.level, Estimate::Kayenta).unwrap();
        let plain = rank_sum(&case.canary, &case.baseline, case.level, Estimate::R).unwrap();
        for (what, ours, theirs) in [
            ("lower", kayenta.lower, r.lower),
            ("upper", kayenta.upper, r.upper),
            ("estimate (R)", plain.estimate, r.estimate_r),
            ("estimate (Kayenta)", kayenta.estimate, r.estimate_kayenta),
            ("p-value", kayenta.p_value, r.p_value),
        ] {
            if !close(ours, theirs) {
                failures.push(format!("{}: {what} {ours:e}, R {theirs:e}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn kayentas_own_suite_expectations_hold() {
    for (case, expected) in kayenta_cases() {
        let Some(expected) = expected else { continue };
        let result = rank_sum(&case.canary, &case.baseline, case.level, Estimate::Kayenta).unwrap();
        let near = |ours: f64, key: &str, tolerance: f64| {
            let theirs = expected[key].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= tolerance,
                "{}: {key} {ours:e}, Kayenta's suite {theirs:e}",
                case.name
            );
        };
        near(result.lower, "ci_lower", 1e-6);
        near(result.upper, "ci_upper", 1e-6);
        near(
            result.estimate,
            "estimate",
            expected["estimate_tolerance"].as_f64().unwrap(),
        );
    }
}
