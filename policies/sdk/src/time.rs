//! Time for policies. The only clock is the snapshot's `now`, so the same
//! snapshot always gets the same answer; the calendar is jiff's: weekdays,
//! IANA time zones (the tz database is built into the policy, so a rule
//! reads the same in every sandbox) and durations.
//!
//! ```
//! use shipgate_policy::{LocalWindow, Timestamp};
//! let now = Timestamp::parse("2026-11-26T17:30:00Z").unwrap();
//! // 18:30 in Berlin, a Thursday.
//! assert_eq!(now.in_zone("Europe/Berlin").unwrap().weekday(), shipgate_policy::jiff::civil::Weekday::Thursday);
//! let office_hours = LocalWindow::new("Europe/Berlin", &["mon", "tue", "wed", "thu", "fri"], "09:00", "18:00");
//! assert_eq!(office_hours.contains(now), Ok(false));
//! ```

use std::fmt;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

/// A point in time, UTC, read from RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(jiff::Timestamp);

impl Timestamp {
    /// Parses `2026-11-26T14:00:00Z`, `2026-11-26T14:00:00.250+01:00` and the
    /// like. Returns `None` for anything that is not RFC 3339: an offset is
    /// required, written `Z` or `±HH:MM`. A leap second (`:60`) reads as
    /// `:59`, as jiff reads it.
    ///
    /// ```
    /// use shipgate_policy::Timestamp;
    ///
    /// let utc = Timestamp::parse("2026-11-26T14:00:00Z").unwrap();
    /// let berlin = Timestamp::parse("2026-11-26T15:00:00+01:00").unwrap();
    /// assert_eq!(utc, berlin);
    /// // No offset: which 14:00 would it be?
    /// assert_eq!(Timestamp::parse("2026-11-26T14:00:00"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Timestamp> {
        let fields = Rfc3339::read(text)?;
        let datetime = jiff::civil::DateTime::new(
            fields.year,
            fields.month,
            fields.day,
            fields.hour,
            fields.minute,
            fields.second.min(59),
            fields.nanosecond,
        )
        .ok()?;
        let offset = jiff::tz::Offset::from_seconds(fields.offset_seconds).ok()?;
        offset.to_timestamp(datetime).ok().map(Timestamp)
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    ///
    /// ```
    /// use shipgate_policy::Timestamp;
    ///
    /// let stage_started = Timestamp::parse("2026-11-26T13:44:00Z").unwrap();
    /// let now = Timestamp::parse("2026-11-26T14:00:00Z").unwrap();
    /// assert_eq!(now.seconds_since(stage_started), 16.0 * 60.0);
    /// ```
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        self.0.duration_since(earlier.0).as_secs_f64()
    }

    /// Seconds since the Unix epoch.
    ///
    /// ```
    /// use shipgate_policy::Timestamp;
    ///
    /// let now = Timestamp::parse("2026-11-26T14:00:00.250Z").unwrap();
    /// assert_eq!(now.unix_seconds(), 1_795_701_600.25);
    /// ```
    pub fn unix_seconds(self) -> f64 {
        self.0.as_second() as f64 + f64::from(self.0.subsec_nanosecond()) / 1e9
    }

    /// The jiff timestamp, for anything else jiff does.
    ///
    /// ```
    /// use shipgate_policy::Timestamp;
    /// use shipgate_policy::jiff::Unit;
    ///
    /// let deployed = Timestamp::parse("2026-11-26T13:40:00Z").unwrap();
    /// let now = Timestamp::parse("2026-11-26T14:00:00Z").unwrap();
    /// let soaked = now.as_jiff().since((Unit::Minute, deployed.as_jiff())).unwrap();
    /// assert_eq!(soaked.get_minutes(), 20);
    /// ```
    pub fn as_jiff(self) -> jiff::Timestamp {
        self.0
    }

    /// This instant in a time zone: an IANA name (`Europe/Berlin`), `UTC`, or
    /// a fixed offset (`+05:30`).
    ///
    /// ```
    /// use shipgate_policy::Timestamp;
    ///
    /// let now = Timestamp::parse("2026-07-01T07:30:00Z").unwrap();
    /// // Berlin keeps summer time in July: UTC+2.
    /// assert_eq!(now.in_zone("Europe/Berlin").unwrap().hour(), 9);
    /// assert_eq!(now.in_zone("+05:30").unwrap().minute(), 0);
    /// assert!(now.in_zone("Mars/Olympus").is_err());
    /// ```
    pub fn in_zone(self, zone: &str) -> Result<jiff::Zoned, String> {
        Ok(self.0.to_zoned(time_zone(zone)?))
    }
}

impl From<jiff::Timestamp> for Timestamp {
    fn from(timestamp: jiff::Timestamp) -> Self {
        Timestamp(timestamp)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC: `2026-11-26T14:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The fields of `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Read by hand
/// rather than by jiff's parser: that parser reads more forms than RFC 3339
/// allows (offsets without a colon, bracketed zone names), and its zone
/// lookups would put the tz database into every policy that reads a time.
struct Rfc3339 {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nanosecond: i32,
    offset_seconds: i32,
}

impl Rfc3339 {
    fn read(text: &str) -> Option<Rfc3339> {
        let b = text.as_bytes();
        let number = |from: usize, to: usize| -> Option<i32> {
            let digits = b.get(from..to)?;
            digits
                .iter()
                .all(u8::is_ascii_digit)
                .then(|| digits.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')))
        };
        if b.len() < 20
            || (b[4], b[7], b[13], b[16]) != (b'-', b'-', b':', b':')
            || !matches!(b[10], b'T' | b't' | b' ')
        {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanosecond = 0;
        if let Some(after_dot) = rest.strip_prefix(b".") {
            let count = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
            if count == 0 {
                return None;
            }
            // Nanoseconds: the first nine digits, padded.
            nanosecond = after_dot[..count]
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(9)
                .fold(0, |n, d| n * 10 + i32::from(d - b'0'));
            rest = &after_dot[count..];
        }
        let offset_seconds = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let at = b.len() - 5;
                let (hours, minutes) = (number(at, at + 2)?, number(at + 3, at + 5)?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = hours * 3600 + minutes * 60;
                if *sign == b'-' { -seconds } else { seconds }
            }
            _ => return None,
        };
        Some(Rfc3339 {
            year: number(0, 4)?.try_into().ok()?,
            month: number(5, 7)?.try_into().ok()?,
            day: number(8, 10)?.try_into().ok()?,
            hour: number(11, 13)?.try_into().ok()?,
            minute: number(14, 16)?.try_into().ok()?,
            second: number(17, 19)?.try_into().ok()?,
            nanosecond,
            offset_seconds,
        })
    }
}

/// A time zone: an IANA name from the tz database built into the policy,
/// `UTC`, or a fixed offset such as `+05:30`.
///
/// ```
/// use shipgate_policy::{Timestamp, time_zone};
///
/// let tokyo = time_zone("Asia/Tokyo").unwrap();
/// let now = Timestamp::parse("2026-11-26T14:00:00Z").unwrap();
/// assert_eq!(now.as_jiff().to_zoned(tokyo).hour(), 23);
/// let error = time_zone("+5").unwrap_err();
/// assert_eq!(error, "time zone '+5': a fixed offset is written ±HH:MM");
/// ```
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if let Some(sign) = name.strip_prefix(['+', '-']).map(|_| &name[..1]) {
        let invalid = || format!("time zone '{name}': a fixed offset is written ±HH:MM");
        let (hours, minutes) = name[1..].split_once(':').ok_or_else(invalid)?;
        let number = |text: &str| {
            (text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<i32>().ok())
                .flatten()
                .ok_or_else(invalid)
        };
        let (hours, minutes) = (number(hours)?, number(minutes)?);
        if hours > 23 || minutes > 59 {
            return Err(invalid());
        }
        let seconds = hours * 3600 + minutes * 60;
        let seconds = if sign == "-" { -seconds } else { seconds };
        let offset = jiff::tz::Offset::from_seconds(seconds)
            .map_err(|e| format!("time zone '{name}': {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|e| format!("time zone '{name}': {e}"))
}

/// A recurring window in local time: these days of the week, from one
/// time of day until another, in a time zone. It follows daylight saving
/// time. A window whose `until` is not after `from` runs past midnight into
/// the next day. Deserialize it from a policy's config:
/// `{ zone = "Europe/Berlin", days = ["mon", "fri"], from = "09:00", until = "17:00" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "LocalWindowConfig")]
pub struct LocalWindow {
    /// IANA name, `UTC`, or a fixed offset.
    pub zone: String,
    /// Days the window opens on: `mon`..`sun` or full names. Default: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Opening time, `HH:MM` (or `HH:MM:SS`), local.
    pub from: String,
    /// Closing time, `HH:MM`, local; not included.
    pub until: String,
}

/// A window as a config writes it, checked before it becomes a
/// [`LocalWindow`]: a bad zone, day or time is a config error, refused when
/// the gate loads, not a fault at the first decision.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalWindowConfig {
    zone: String,
    #[serde(default)]
    days: Vec<String>,
    from: String,
    until: String,
}

impl TryFrom<LocalWindowConfig> for LocalWindow {
    type Error = String;

    fn try_from(c: LocalWindowConfig) -> Result<LocalWindow, String> {
        let window = LocalWindow {
            zone: c.zone,
            days: c.days,
            from: c.from,
            until: c.until,
        };
        window.check()?;
        Ok(window)
    }
}

impl LocalWindow {
    /// Checks the zone, the days and the times of day.
    ///
    /// ```
    /// use shipgate_policy::LocalWindow;
    ///
    /// let office = LocalWindow::new("Europe/Berlin", &["mon", "tue", "wed", "thu"], "09:00", "16:00");
    /// assert_eq!(office.check(), Ok(()));
    /// let typo = LocalWindow::new("Europe/Berlin", &["mon", "thurs"], "09:00", "16:00");
    /// assert_eq!(typo.check(), Err("'thurs' is not a day of the week".to_string()));
    /// ```
    pub fn check(&self) -> Result<(), String> {
        time_zone(&self.zone)?;
        self.parts().map(drop)
    }

    fn parts(&self) -> Result<(Time, Time, Vec<Weekday>), String> {
        let time_of_day = |text: &str| -> Result<Time, String> {
            text.parse()
                .map_err(|e| format!("'{text}' is not a time of day (HH:MM): {e}"))
        };
        let days = self
            .days
            .iter()
            .map(|d| weekday(d))
            .collect::<Result<Vec<Weekday>, String>>()?;
        Ok((time_of_day(&self.from)?, time_of_day(&self.until)?, days))
    }

    /// A window from its parts, unchecked: [`LocalWindow::check`] or
    /// [`LocalWindow::contains`] reports a bad zone, day or time. An empty
    /// `days` opens every day.
    ///
    /// ```
    /// use shipgate_policy::{LocalWindow, Timestamp};
    ///
    /// // Weekend nights, 22:00 to 06:00 in New York.
    /// let maintenance = LocalWindow::new("America/New_York", &["sat", "sun"], "22:00", "06:00");
    /// // Saturday 23:30 in New York.
    /// let saturday_night = Timestamp::parse("2026-11-29T04:30:00Z").unwrap();
    /// assert_eq!(maintenance.contains(saturday_night), Ok(true));
    /// ```
    pub fn new(zone: &str, days: &[&str], from: &str, until: &str) -> LocalWindow {
        LocalWindow {
            zone: zone.to_string(),
            days: days.iter().map(|d| d.to_string()).collect(),
            from: from.to_string(),
            until: until.to_string(),
        }
    }

    /// Whether `at` falls inside the window. An unknown zone, day or time of
    /// day is an error (a policy reports it as a config error).
    ///
    /// ```
    /// use shipgate_policy::{LocalWindow, Timestamp};
    ///
    /// // No deployments on Friday afternoons in London.
    /// let freeze = LocalWindow::new("Europe/London", &["friday"], "12:00", "23:59");
    /// let friday_afternoon = Timestamp::parse("2026-11-27T15:00:00Z").unwrap();
    /// let thursday_afternoon = Timestamp::parse("2026-11-26T15:00:00Z").unwrap();
    /// assert_eq!(freeze.contains(friday_afternoon), Ok(true));
    /// assert_eq!(freeze.contains(thursday_afternoon), Ok(false));
    /// ```
    pub fn contains(&self, at: Timestamp) -> Result<bool, String> {
        let local = at.in_zone(&self.zone)?;
        let (from, until, days) = self.parts()?;
        let opens_on = |day: Weekday| days.is_empty() || days.contains(&day);
        let now = local.time();
        Ok(if from < until {
            opens_on(local.weekday()) && from <= now && now < until
        } else {
            // Past midnight: either the evening part of a day the window
            // opens on, or the morning after it.
            (opens_on(local.weekday()) && now >= from)
                || (opens_on(local.weekday().previous()) && now < until)
        })
    }
}

/// `mon`, `Monday`, `monday`... as a weekday.
///
/// ```
/// use shipgate_policy::jiff::civil::Weekday;
/// use shipgate_policy::weekday;
///
/// assert_eq!(weekday("Fri"), Ok(Weekday::Friday));
/// assert_eq!(weekday("saturday"), Ok(Weekday::Saturday));
/// assert!(weekday("weekend").is_err());
/// ```
pub fn weekday(name: &str) -> Result<Weekday, String> {
    let lower = name.to_ascii_lowercase();
    const DAYS: [(&str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    DAYS.iter()
        .find(|(full, _)| lower == *full || (lower.len() == 3 && full.starts_with(&lower)))
        .map(|(_, day)| *day)
        .ok_or_else(|| format!("'{name}' is not a day of the week"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(at("1970-01-01T00:00:00Z").unix_seconds(), 0.0);
        assert_eq!(at("2026-11-26T14:00:00Z").unix_seconds(), 1_795_701_600.0);
        assert_eq!(at("2026-11-26T15:00:00+01:00"), at("2026-11-26T14:00:00Z"));
        assert_eq!(at("2024-02-29T00:00:00.5Z").unix_seconds(), 1_709_164_800.5);
        assert_eq!(at("2026-11-26t14:00:00z"), at("2026-11-26T14:00:00Z"));
        assert_eq!(
            at("2026-11-26T14:00:00+01:00").to_string(),
            "2026-11-26T13:00:00Z"
        );
        assert_eq!(
            at("2026-11-26T14:00:00.123456789123Z").to_string(),
            "2026-11-26T14:00:00.123456789Z"
        );
        assert_eq!(at("2016-12-31T23:59:60Z"), at("2016-12-31T23:59:59Z"));
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
            "2026-11-26T14:00:00+01",
            "2026-11-26T14:00:00.Z",
            "2026-11-26T14:00:00Z[Europe/Berlin]",
            "2026-11-26T25:00:00Z",
            "yesterday at noon!!",
            "２０２６-11-26T14:00:00Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn measures_intervals() {
        let (now, start) = (at("2026-11-26T14:00:00Z"), at("2026-11-26T13:44:00Z"));
        assert_eq!(now.seconds_since(start), 960.0);
        assert_eq!(start.seconds_since(now), -960.0);
    }

    #[test]
    fn local_time_follows_the_zone_and_daylight_saving() {
        // Berlin is UTC+2 in summer and UTC+1 in winter.
        let summer = at("2026-07-01T07:30:00Z").in_zone("Europe/Berlin").unwrap();
        let winter = at("2026-12-01T07:30:00Z").in_zone("Europe/Berlin").unwrap();
        assert_eq!((summer.hour(), winter.hour()), (9, 8));
        assert_eq!(
            at("2026-11-26T23:30:00Z")
                .in_zone("+05:30")
                .unwrap()
                .weekday(),
            Weekday::Friday
        );
        assert!(at("2026-11-26T14:00:00Z").in_zone("Mars/Olympus").is_err());
        assert!(at("2026-11-26T14:00:00Z").in_zone("+5").is_err());
        assert!(at("2026-11-26T14:00:00Z").in_zone("+05:99").is_err());
    }

    #[test]
    fn windows_open_on_their_days_and_hours_and_may_run_past_midnight() {
        let office = LocalWindow::new("Europe/Berlin", &["mon", "Friday"], "09:00", "17:00");
        // Monday 2026-11-30: 08:30 UTC is 09:30 in Berlin.
        assert_eq!(office.contains(at("2026-11-30T08:30:00Z")), Ok(true));
        assert_eq!(office.contains(at("2026-11-30T07:30:00Z")), Ok(false));
        assert_eq!(
            office.contains(at("2026-11-30T16:00:00Z")),
            Ok(false),
            "17:00 is closed"
        );
        assert_eq!(
            office.contains(at("2026-12-01T08:30:00Z")),
            Ok(false),
            "a Tuesday"
        );
        let night = LocalWindow::new("UTC", &["fri"], "22:00", "02:00");
        assert_eq!(
            night.contains(at("2026-11-27T23:00:00Z")),
            Ok(true),
            "Friday night"
        );
        assert_eq!(
            night.contains(at("2026-11-28T01:00:00Z")),
            Ok(true),
            "Saturday morning after"
        );
        assert_eq!(
            night.contains(at("2026-11-29T01:00:00Z")),
            Ok(false),
            "Sunday morning"
        );
        let bad = LocalWindow::new("UTC", &["someday"], "09:00", "17:00");
        assert!(
            bad.contains(at("2026-11-27T23:00:00Z"))
                .unwrap_err()
                .contains("'someday'")
        );
        let bad = LocalWindow::new("UTC", &[], "9am", "17:00");
        assert!(
            bad.contains(at("2026-11-27T23:00:00Z"))
                .unwrap_err()
                .contains("'9am'")
        );
    }

    #[test]
    fn a_window_in_a_config_is_checked_when_the_config_is_read() {
        let read =
            |json: &str| serde_json::from_str::<LocalWindow>(json).map_err(|e| e.to_string());
        assert!(
            read(
                r#"{"zone": "Europe/Berlin", "days": ["mon"], "from": "09:00", "until": "17:00"}"#
            )
            .is_ok()
        );
        assert!(
            read(r#"{"zone": "Mars/Olympus", "from": "09:00", "until": "17:00"}"#)
                .unwrap_err()
                .contains("Mars/Olympus")
        );
        assert!(
            read(r#"{"zone": "UTC", "days": ["someday"], "from": "09:00", "until": "17:00"}"#)
                .unwrap_err()
                .contains("someday")
        );
        assert!(
            read(r#"{"zone": "UTC", "from": "9am", "until": "17:00"}"#)
                .unwrap_err()
                .contains("9am")
        );
        assert!(
            read(r#"{"zone": "UTC", "from": "09:00", "until": "17:00", "extra": 1}"#)
                .unwrap_err()
                .contains("extra")
        );
    }
}
