//! RFC 3339 timestamps, without a clock: time inside a policy comes only from
//! the snapshot's `now`.

use std::fmt;

/// A point in time, in seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// Parses `2026-11-26T14:00:00Z`, `2026-11-26T14:00:00.250+01:00` and the
    /// like. Returns `None` for anything that is not RFC 3339.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |from, to| num_in(text, from, to);
        let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
        let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut fraction = 0.0;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            fraction = format!("0.{}", &after_dot[..digits]).parse().ok()?;
            rest = &after_dot[digits..];
        }
        let offset_seconds = match rest {
            "Z" | "z" => 0,
            _ => {
                let ob = rest.as_bytes();
                if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                    return None;
                }
                let (oh, om) = (num_in(rest, 1, 3)?, num_in(rest, 4, 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let sign = if ob[0] == b'-' { -1 } else { 1 };
                sign * (oh * 3600 + om * 60)
            }
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        Some(Timestamp(seconds as f64 + fraction))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        self.0 - earlier.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s since epoch", self.0)
    }
}

fn num_in(text: &str, from: usize, to: usize) -> Option<i64> {
    let digits = text.get(from..to)?;
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z"),
            Some(Timestamp(0.0))
        );
        assert_eq!(
            Timestamp::parse("2026-11-26T14:00:00Z"),
            Some(Timestamp(1_795_701_600.0))
        );
        assert_eq!(
            Timestamp::parse("2026-11-26T15:00:00+01:00"),
            Timestamp::parse("2026-11-26T14:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00.5Z"),
            Some(Timestamp(1_709_164_800.5))
        );
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-11-26",
            "2026-11-26 14:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-26T14:00:00",
            "2026-11-26T14:00:00+0100",
            "2026-11-26T14:00:00.Z",
            "yesterday at noon!!",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn measures_intervals() {
        let now = Timestamp::parse("2026-11-26T14:00:00Z").unwrap();
        let start = Timestamp::parse("2026-11-26T13:44:00Z").unwrap();
        assert_eq!(now.seconds_since(start), 960.0);
    }
}
