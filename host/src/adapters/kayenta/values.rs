//! The values of a request's series, which are most of its bytes. The
//! request's parse keeps each cohort's array as raw JSON; here the arrays
//! are read, split over two threads for a large request, with serde_json's
//! exact float parser, one value at a time as Kayenta sent it.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One cohort's array, and where it is in the request.
pub(super) struct Cohort<'a> {
    /// Its JSON path (`metricSetPairList[3].values.control`).
    pub(super) at: String,
    pub(super) raw: &'a RawValue,
}

/// One cohort's values: a number, or `None` for a gap.
pub(super) type Values = Vec<Option<f64>>;

/// Below this many bytes of values a second thread costs more than it
/// saves (starting one is tens of microseconds; reading a megabyte of
/// values, a few milliseconds).
const MIN_BYTES_TO_SPLIT: usize = 256 * 1024;

/// Reads every cohort of `body` (the text the cohorts borrow from), and
/// runs `beside` meanwhile: a large request's cohorts are read in two
/// shares on two threads, `beside` with the second, counted as the reading
/// of `beside_bytes` bytes. The error is the first in the document, with
/// the value's path, line and column.
pub(super) fn read<T: Send>(
    body: &[u8],
    cohorts: &[Cohort<'_>],
    beside: impl FnOnce() -> T + Send,
    beside_bytes: usize,
) -> (Result<Vec<Values>, String>, T) {
    let bytes: Vec<usize> = cohorts.iter().map(|c| c.raw.get().len()).collect();
    let total: usize = bytes.iter().sum();
    if total < MIN_BYTES_TO_SPLIT {
        return (read_share(body, cohorts), beside());
    }
    // The first thread reads until it holds half of all the work.
    let half = (total + beside_bytes) / 2;
    let split = bytes
        .iter()
        .scan(0, |read, &b| {
            *read += b;
            Some(*read)
        })
        .position(|read| read >= half)
        .map_or(cohorts.len(), |last| last + 1);
    let (first, second) = cohorts.split_at(split);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| (read_share(body, second), beside()));
        let first = read_share(body, first);
        let (second, beside) = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let all = first.and_then(|mut first| {
            first.extend(second?);
            Ok(first)
        });
        (all, beside)
    })
}

/// Reads `cohorts` in order, stopping at the first error.
fn read_share(body: &[u8], cohorts: &[Cohort<'_>]) -> Result<Vec<Values>, String> {
    cohorts
        .iter()
        .map(|cohort| read_one(body, cohort))
        .collect()
}

fn read_one(body: &[u8], cohort: &Cohort<'_>) -> Result<Values, String> {
    let text = cohort.raw.get();
    match serde_json::from_str::<Vec<Point>>(text) {
        Ok(points) => Ok(points.into_iter().map(|point| point.0).collect()),
        // Read again to learn which value: errors are rare, and tracking
        // the path of every value is a fifth of the reading's cost.
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let error = serde_path_to_error::deserialize::<_, Vec<Point>>(&mut deserializer)
                .err()
                .expect("the same text fails again");
            let index = match error.path().to_string().as_str() {
                "." => String::new(),
                path => path.to_string(),
            };
            let error = error.into_inner();
            let (line, column) = position_in(body, text, error.line(), error.column());
            let message = error.to_string();
            let message = message
                .strip_suffix(&format!(
                    " at line {} column {}",
                    error.line(),
                    error.column()
                ))
                .unwrap_or(&message);
            Err(format!(
                "{}{index}: {message} at line {line} column {column}",
                cohort.at
            ))
        }
    }
}

/// Where line `line`, column `column` of `part` (a slice of `body`) is in
/// `body`.
fn position_in(body: &[u8], part: &str, line: usize, column: usize) -> (usize, usize) {
    let offset = (part.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    let before = &body[..offset.min(body.len())];
    let start_line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let start_column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    if line <= 1 {
        (start_line, start_column + column.saturating_sub(1))
    } else {
        (start_line + line - 1, column)
    }
}

/// A value Kayenta sent: a number, `null`, or Jackson's `"NaN"` (a gap); an
/// infinity is refused (no judge can rank it).
struct Point(Option<f64>);

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Point, D::Error> {
        deserializer.deserialize_any(PointVisitor)
    }
}

struct PointVisitor;

impl serde::de::Visitor<'_> for PointVisitor {
    type Value = Point;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number, null or \"NaN\"")
    }

    fn visit_f64<E>(self, v: f64) -> Result<Point, E> {
        Ok(Point(Some(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Point, E> {
        Ok(Point(Some(v as f64)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Point, E> {
        Ok(Point(Some(v as f64)))
    }

    fn visit_unit<E>(self) -> Result<Point, E> {
        Ok(Point(None))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Point, E> {
        match s {
            "NaN" => Ok(Point(None)),
            s if s.ends_with("Infinity") => Err(E::custom(format!(
                "{s} is not a measurement; drop or cap it at the source"
            ))),
            s => Err(E::custom(format!("{s:?} is not a number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request-like text with `arrays` cohorts of `points` values each,
    /// one per line, and the cohorts as the request's parse finds them.
    fn body(arrays: usize, points: usize, bad: &[(usize, usize, &str)]) -> String {
        let cohort = |a: usize| -> String {
            let values: Vec<String> = (0..points)
                .map(
                    |p| match bad.iter().find(|(ba, bp, _)| (*ba, *bp) == (a, p)) {
                        Some((_, _, text)) => text.to_string(),
                        None if p % 97 == 0 => "null".into(),
                        None if p % 89 == 0 => "\"NaN\"".into(),
                        None => format!("{}", (a * points + p) as f64 * 0.1 + 1e-9),
                    },
                )
                .collect();
            format!("[{}]", values.join(","))
        };
        let arrays: Vec<String> = (0..arrays)
            .map(|a| format!("\"c{a}\": {}", cohort(a)))
            .collect();
        format!("{{\n{}\n}}", arrays.join(",\n"))
    }

    fn read_body(text: &str) -> (Result<Vec<Values>, String>, usize) {
        let map: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(text).unwrap();
        let mut cohorts: Vec<Cohort> = map
            .into_iter()
            .map(|(name, raw)| Cohort { at: name, raw })
            .collect();
        cohorts.sort_by_key(|c| c.raw.get().as_ptr() as usize);
        read(text.as_bytes(), &cohorts, || 7, 0)
    }

    #[test]
    fn a_large_request_read_in_two_shares_reads_every_value_as_one_thread_does() {
        let text = body(40, 1000, &[]);
        assert!(text.len() > 2 * MIN_BYTES_TO_SPLIT, "the test must split");
        let (values, beside) = read_body(&text);
        let values = values.unwrap();
        assert_eq!(beside, 7);
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        assert_eq!(values.len(), 40);
        for (a, cohort) in values.iter().enumerate() {
            let expected = &parsed[&format!("c{a}")];
            for (p, value) in cohort.iter().enumerate() {
                match &expected[p] {
                    serde_json::Value::Number(n) => assert_eq!(*value, n.as_f64(), "c{a}[{p}]"),
                    _ => assert_eq!(*value, None, "c{a}[{p}]"),
                }
            }
        }
    }

    #[test]
    fn the_error_is_the_first_in_the_document_with_its_line_and_column() {
        // Errors in both shares: the first cohort's is reported.
        let text = body(40, 1000, &[(3, 5, "\"-Infinity\""), (38, 2, "true")]);
        let error = read_body(&text).0.unwrap_err();
        // Line 5 holds c3; the column is the value's last character's, as
        // serde_json reports it.
        let line = text.lines().nth(4).unwrap();
        let column = line.find("\"-Infinity\"").unwrap() + "\"-Infinity\"".len();
        assert_eq!(
            error,
            format!(
                "c3[5]: -Infinity is not a measurement; drop or cap it at the source \
                 at line 5 column {column}"
            )
        );
        let text = body(40, 1000, &[(38, 2, "true")]);
        let error = read_body(&text).0.unwrap_err();
        assert!(
            error.starts_with("c38[2]: invalid type: boolean `true`, expected a number, null or \"NaN\" at line 40 column "),
            "{error}"
        );
        // A small request, read on one thread, says the same.
        let text = body(2, 10, &[(1, 4, "\"x\"")]);
        let error = read_body(&text).0.unwrap_err();
        assert!(
            error.starts_with("c1[4]: \"x\" is not a number at line 3 column "),
            "{error}"
        );
    }
}
