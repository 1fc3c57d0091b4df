//! `change-freeze`: no deployments during a declared change freeze, and
//! (if configured) none at weekends, in the team's own time zone.
//!
//! Time comes from the snapshot's `now`, never from a clock, so the same
//! snapshot always gets the same answer; the calendar (weekdays, time
//! zones) is the SDK's, from jiff.

use serde::Deserialize;
use shipgate_policy::jiff::civil::Weekday;
use shipgate_policy::{
    Decision, Findings, Phase, Policy, PolicyInfo, Snapshot, Timestamp, Verdict,
};

/// The `config` table of this policy's `[[policy]]` entry in the gate file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Periods in which nothing ships.
    pub freezes: Vec<Freeze>,
    /// Also refuse on Saturdays and Sundays.
    pub weekends: bool,
    /// The time zone weekends are counted in: an IANA name, `UTC` or `+HH:MM`.
    /// Checked when the gate loads (`shipgate check` refuses an unknown zone).
    #[serde(default, deserialize_with = "known_zone")]
    pub zone: Option<String>,
}

fn known_zone<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let zone = String::deserialize(deserializer)?;
    shipgate_policy::time_zone(&zone).map_err(serde::de::Error::custom)?;
    Ok(Some(zone))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub from: String,
    pub until: String,
    pub reason: String,
}

pub struct ChangeFreeze;

impl Policy for ChangeFreeze {
    type Config = Config;

    fn info() -> PolicyInfo {
        PolicyInfo::new(
            "change-freeze",
            env!("CARGO_PKG_VERSION"),
            "No deployments during declared change freezes or, if configured, at weekends.",
            &[Phase::Preflight, Phase::Promotion],
        )
    }

    fn evaluate(_: Phase, snapshot: &Snapshot, config: &Config) -> Result<Verdict, String> {
        let now = snapshot.now().ok_or("snapshot has no valid `now`")?;
        let mut findings = Findings::new();
        for freeze in &config.freezes {
            let from = Timestamp::parse(&freeze.from)
                .ok_or(format!("config: bad `from` {}", freeze.from))?;
            let until = Timestamp::parse(&freeze.until)
                .ok_or(format!("config: bad `until` {}", freeze.until))?;
            let frozen = from <= now && now < until;
            findings
                .require(
                    "change-freeze",
                    !frozen,
                    format!("outside the freeze '{}'", freeze.reason),
                    format!("change freeze '{}' until {}", freeze.reason, freeze.until),
                    Decision::Deny,
                )
                .observed(snapshot.now.clone())
                .threshold(format!("not in [{}, {})", freeze.from, freeze.until));
        }
        if config.weekends {
            let zone = config.zone.as_deref().unwrap_or("UTC");
            let local = now.in_zone(zone).map_err(|e| format!("config: {e}"))?;
            let day = format!("{:?}", local.weekday());
            findings
                .require(
                    "weekend",
                    !matches!(local.weekday(), Weekday::Saturday | Weekday::Sunday),
                    format!("{day} is a working day in {zone}"),
                    format!("no deployments at weekends ({day} in {zone})"),
                    Decision::Deny,
                )
                .observed(day)
                .threshold("Monday to Friday");
        }
        Ok(findings.verdict())
    }
}

shipgate_policy::export_policy!(ChangeFreeze);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shipgate_policy::testing;

    fn at(now: &str) -> serde_json::Value {
        json!({"schema_version": 1, "now": now})
    }

    #[test]
    fn denies_inside_a_freeze_and_allows_outside() {
        let config = json!({"freezes": [{"from": "2026-12-20T00:00:00Z", "until": "2027-01-04T00:00:00Z", "reason": "holidays"}]});
        let inside = testing::evaluate::<ChangeFreeze>(
            Phase::Preflight,
            &at("2026-12-24T10:00:00Z"),
            &config,
        )
        .unwrap();
        assert_eq!(inside.decision, Decision::Deny);
        assert_eq!(
            inside.summary,
            "change freeze 'holidays' until 2027-01-04T00:00:00Z"
        );
        let outside = testing::evaluate::<ChangeFreeze>(
            Phase::Preflight,
            &at("2026-11-26T14:00:00Z"),
            &config,
        )
        .unwrap();
        assert_eq!(outside.decision, Decision::Allow);
    }

    #[test]
    fn weekends_are_refused_when_configured() {
        let config = json!({"weekends": true});
        let saturday = testing::evaluate::<ChangeFreeze>(
            Phase::Promotion,
            &at("2026-11-28T09:00:00Z"),
            &config,
        )
        .unwrap();
        let finding = saturday.finding("weekend").unwrap();
        assert_eq!(
            (finding.decision, finding.observed.as_deref()),
            (Decision::Deny, Some("Saturday"))
        );
        let thursday = testing::evaluate::<ChangeFreeze>(
            Phase::Promotion,
            &at("2026-11-26T14:00:00Z"),
            &config,
        )
        .unwrap();
        assert_eq!(thursday.decision, Decision::Allow);
    }

    #[test]
    fn weekends_are_counted_in_the_configured_zone() {
        // Friday 23:30 UTC is already Saturday in Berlin.
        let late_friday = at("2026-11-27T23:30:00Z");
        let berlin = json!({"weekends": true, "zone": "Europe/Berlin"});
        let verdict =
            testing::evaluate::<ChangeFreeze>(Phase::Promotion, &late_friday, &berlin).unwrap();
        let finding = verdict.finding("weekend").unwrap();
        assert_eq!(
            (finding.decision, finding.observed.as_deref()),
            (Decision::Deny, Some("Saturday"))
        );
        let utc = json!({"weekends": true});
        let verdict =
            testing::evaluate::<ChangeFreeze>(Phase::Promotion, &late_friday, &utc).unwrap();
        assert_eq!(verdict.decision, Decision::Allow);
        let nowhere = json!({"weekends": true, "zone": "Mars/Olympus"});
        let error = testing::evaluate::<ChangeFreeze>(Phase::Promotion, &late_friday, &nowhere)
            .unwrap_err();
        assert!(error.starts_with("config: time zone 'Mars/Olympus'"), "{error}");
    }

    #[test]
    fn config_typos_are_errors() {
        let err = testing::evaluate::<ChangeFreeze>(
            Phase::Preflight,
            &at("2026-11-26T14:00:00Z"),
            &json!({"weekend": true}),
        )
        .unwrap_err();
        assert!(err.contains("unknown field `weekend`"), "{err}");
    }
}
