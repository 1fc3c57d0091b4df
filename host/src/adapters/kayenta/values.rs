//! The values of a request's series, which are most of its bytes. The
//! request's parse keeps each cohort's array as raw JSON; here the arrays
//! are read, split over two threads for a large request, with serde_json's
//! exact float parser, one value at a time as Kayenta sent it.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The cohorts Kayenta sends in a pair's `values`: baseline and canary.
pub(super) const COHORTS: [&str; 2] = ["control", "experiment"];

/// A pair's `values`: the last copy of each of [`COHORTS`] as raw JSON,
/// read afterwards. Every other entry (another key, or a copy that a
/// later one replaces) is checked as it is met, stored nowhere, so a
/// request is refused for a bad value anywhere, as a map of arrays of
/// points refuses it, without holding what it will not judge.
pub(super) struct RawCohorts<'a>(pub(super) [Option<&'a RawValue>; 2]);

impl<'de: 'a, 'a> Deserialize<'de> for RawCohorts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawCohortsVisitor(std::marker::PhantomData))
    }
}

struct RawCohortsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for RawCohortsVisitor<'a> {
    type Value = RawCohorts<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A map's own word: the typed parse names a refusal in its words.
        f.write_str("a map")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut cohorts = [None; 2];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match COHORTS.iter().position(|cohort| *cohort == key) {
                Some(i) => {
                    let raw: &'a RawValue = map.next_value()?;
                    if let Some(replaced) = cohorts[i].replace(raw) {
                        check(replaced).map_err(serde::de::Error::custom)?;
                    }
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(RawCohorts(cohorts))
    }
}

/// An array of points, checked and dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Checked, S::Error> {
        while seq.next_element::<Point>()?.is_some() {}
        Ok(Checked)
    }
}

fn check(raw: &RawValue) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(raw.get()).map(|_| ())
}

/// One cohort's array, as raw JSON, and its path in the request
/// (`metricSetPairList[3].values.control`).
pub(super) type RawArray<'a> = (String, &'a RawValue);

/// One cohort's values: a number, or `None` for a gap.
pub(super) type Values = Vec<Option<f64>>;

/// Below this many bytes of values a second thread costs more than it
/// saves (starting one is tens of microseconds; reading a megabyte of
/// values, a few milliseconds).
const MIN_BYTES_TO_SPLIT: usize = 256 * 1024;

/// Reads `arrays` in order, and runs `beside` meanwhile: when they are
/// large, in two shares on two threads, `beside` with the second, counted
/// as the reading of `beside_bytes` bytes (and all on this thread if no
/// thread can be started). `Err` when an array does not read as points:
/// the message names the array, with serde_json's words and a position
/// within it; the caller names the problem in the request's terms.
pub(super) fn read<T: Send>(
    arrays: &[RawArray<'_>],
    beside: impl Fn() -> T + Sync,
    beside_bytes: usize,
) -> (Result<Vec<Values>, String>, T) {
    let bytes: Vec<usize> = arrays.iter().map(|(_, raw)| raw.get().len()).collect();
    let total: usize = bytes.iter().sum();
    if total < MIN_BYTES_TO_SPLIT || arrays.len() < 2 {
        return (read_share(arrays), beside());
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
        .map_or(arrays.len(), |last| last + 1);
    let (first, second) = arrays.split_at(split);
    std::thread::scope(|scope| {
        let beside = &beside;
        let other = std::thread::Builder::new()
            .name("kayenta-values".into())
            .spawn_scoped(scope, move || (read_share(second), beside()));
        let first = read_share(first);
        let (second, beside) = match other {
            Ok(other) => other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => (read_share(second), beside()),
        };
        let all = first.and_then(|mut first| {
            first.extend(second?);
            Ok(first)
        });
        (all, beside)
    })
}

/// Reads `arrays` in order, stopping at the first error.
fn read_share(arrays: &[RawArray<'_>]) -> Result<Vec<Values>, String> {
    arrays
        .iter()
        .map(|(at, raw)| {
            serde_json::from_str::<Vec<Point>>(raw.get())
                .map(|points| points.into_iter().map(|point| point.0).collect())
                .map_err(|error| format!("{at}: {error}"))
        })
        .collect()
}

/// A value Kayenta sent: a number, `null`, or Jackson's `"NaN"` (a gap); an
/// infinity is refused (no judge can rank it).
pub(super) struct Point(Option<f64>);

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

    /// `arrays` cohorts of `points` values each, some gaps among them,
    /// and `bad` values (cohort, index, text) in place of numbers.
    fn request_text(arrays: usize, points: usize, bad: &[(usize, usize, &str)]) -> String {
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

    fn read_text(text: &str) -> (Result<Vec<Values>, String>, usize) {
        let map: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(text).unwrap();
        let arrays: Vec<RawArray> = map.into_iter().collect();
        let mut arrays = arrays;
        arrays.sort_by_key(|(at, _)| at[1..].parse::<usize>().unwrap());
        read(&arrays, || 7, 0)
    }

    #[test]
    fn a_large_request_read_in_two_shares_reads_every_value_as_one_thread_does() {
        let text = request_text(40, 1000, &[]);
        assert!(text.len() > 2 * MIN_BYTES_TO_SPLIT, "the test must split");
        let (values, beside) = read_text(&text);
        let values = values.unwrap();
        assert_eq!(beside, 7);
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        assert_eq!(values.len(), 40);
        for (a, cohort) in values.iter().enumerate() {
            let expected = &parsed[&format!("c{a}")];
            assert_eq!(cohort.len(), 1000);
            for (p, value) in cohort.iter().enumerate() {
                match &expected[p] {
                    serde_json::Value::Number(n) => assert_eq!(*value, n.as_f64(), "c{a}[{p}]"),
                    _ => assert_eq!(*value, None, "c{a}[{p}]"),
                }
            }
        }
    }

    #[test]
    fn the_error_is_the_first_array_s_in_either_share() {
        let text = request_text(40, 1000, &[(3, 5, "\"-Infinity\""), (38, 2, "true")]);
        let error = read_text(&text).0.unwrap_err();
        assert!(
            error.starts_with("c3: -Infinity is not a measurement"),
            "{error}"
        );
        let text = request_text(40, 1000, &[(38, 2, "true")]);
        let error = read_text(&text).0.unwrap_err();
        assert!(
            error.starts_with("c38: invalid type: boolean `true`"),
            "{error}"
        );
    }

    #[test]
    fn the_last_copy_of_a_cohort_is_kept_and_every_other_entry_checked() {
        let cohorts: RawCohorts = serde_json::from_str(
            r#"{"control": [0], "extra": [1, null, "NaN"], "experiment": [2], "control": [3]}"#,
        )
        .unwrap();
        let raw = cohorts.0.map(|raw| raw.map(RawValue::get));
        assert_eq!(raw, [Some("[3]"), Some("[2]")]);
        for refused in [
            r#"{"control": ["x"], "control": [1]}"#,
            r#"{"control": [1], "extra": [true]}"#,
            r#"{"extra": 5}"#,
        ] {
            assert!(
                serde_json::from_str::<RawCohorts>(refused).is_err(),
                "{refused}"
            );
        }
    }
}
