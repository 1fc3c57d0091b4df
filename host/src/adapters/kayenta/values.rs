//! The values of a request's series, which are most of its bytes: what a
//! value may be, and an array of them read with serde_json's exact float
//! parser.

use serde::Deserialize;

/// The cohorts Kayenta sends in a pair's `values`: baseline and canary.
pub(super) const COHORTS: [&str; 2] = ["control", "experiment"];

/// An array of points, checked and dropped.
pub(super) struct Checked;

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

/// Checks that `array` is an array of points.
pub(super) fn check(array: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(array).map(|_| ())
}

/// One cohort's values: a number, or `None` for a gap.
pub(super) type Values = Vec<Option<f64>>;

/// Reads `array`, one value at a time as Kayenta sent it.
pub(super) fn read_array(array: &[u8]) -> Result<Values, serde_json::Error> {
    serde_json::from_slice::<Vec<Point>>(array)
        .map(|points| points.into_iter().map(|point| point.0).collect())
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

    #[test]
    fn an_array_reads_numbers_and_gaps_and_refuses_the_rest() {
        let read = read_array(br#"[1, -0, 2.5e-3, null, "NaN", 18446744073709551616]"#).unwrap();
        let expected = [
            Some(1.0),
            Some(-0.0),
            Some(0.0025),
            None,
            None,
            Some(2f64.powi(64)),
        ];
        assert_eq!(read.len(), expected.len());
        for (read, expected) in read.iter().zip(expected) {
            assert_eq!(read.map(f64::to_bits), expected.map(f64::to_bits));
        }
        for (refused, why) in [
            (r#"["Infinity"]"#, "Infinity is not a measurement"),
            (r#"[true]"#, "invalid type: boolean `true`"),
            (r#"[1e400]"#, "number out of range"),
            (r#"{"a": 1}"#, "invalid type: map"),
        ] {
            let error = read_array(refused.as_bytes()).unwrap_err().to_string();
            assert!(error.starts_with(why), "{refused}: {error}");
            assert!(check(refused).is_err(), "{refused}");
        }
    }
}
