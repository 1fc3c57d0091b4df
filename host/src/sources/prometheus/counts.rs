//! Event counts for the judge's count test (`[sources.prometheus.counts.NAME]`):
//! events out of exposures per cohort, each an instant query over `{range}`,
//! the span from the stage's start (or the window) to now, placed in
//! `metrics.counts.NAME`. Counters count whole events, so `increase()`'s
//! extrapolated fractions are rounded, and events a hair above exposures
//! (both extrapolated) are capped at them; events clearly above exposures
//! mean the two queries do not count the same requests, which is missing
//! evidence that names them, as is a query without a value.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::InstantQuery;
use super::series::{Asking, Since, check_name};
use crate::sources::Target;
use crate::sources::evidence::{Cohort, Field, Missing};
use crate::sources::template::{PLACEHOLDERS, check_known, fill_cohort};

/// One metric's count queries.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountQuery {
    /// PromQL for the events (errors) of each cohort since the start, e.g.
    /// `sum(increase(http_requests_total{pod_template_hash="{hash}",code=~"5.."}[{range}])) or vector(0)`.
    pub(crate) events: String,
    /// PromQL for the exposures (requests) the events are out of.
    pub(crate) exposures: String,
    /// Where counting starts: `stage` (the current stage's start, the
    /// default) or `window` (the source's `window_seconds` before now).
    #[serde(default)]
    pub(crate) since: Since,
}

/// How far events may exceed exposures before the two queries are taken
/// to count different things: a share, plus one event.
const EXTRAPOLATION_SLACK: f64 = 0.05;

impl CountQuery {
    /// Errors name the key under `at` (`sources.prometheus.counts.NAME`).
    pub(crate) fn validate(&self, at: &str, name: &str) -> Result<(), String> {
        check_name(at, name)?;
        let mut known = PLACEHOLDERS.to_vec();
        known.retain(|p| *p != "window");
        known.push("range");
        for (key, query) in [("events", &self.events), ("exposures", &self.exposures)] {
            if query.trim().is_empty() {
                return Err(format!("{at}.{key}: the query is empty"));
            }
            check_known(query, &known).map_err(|why| format!("{at}.{key}: {why}"))?;
        }
        Ok(())
    }

    /// The counting span in whole seconds, from where `since` says to now.
    fn range(&self, asking: &Asking<'_>) -> Result<u64, String> {
        let start = match self.since {
            Since::Stage => asking
                .stage_started
                .ok_or("the stage's start is unknown (rollout.stage_started_at)")?,
            Since::Window => asking.now - asking.window_seconds as f64,
        };
        let seconds = (asking.now - start).floor();
        if seconds < 1.0 {
            return Err("the stage has just started: nothing to count yet".into());
        }
        Ok(seconds as u64)
    }
}

/// Collects one metric's counts (both cohorts) for `target`: the value for
/// `metrics.counts.NAME`, or why it is missing.
pub(super) async fn collect(
    name: &str,
    query: &CountQuery,
    target: &Target,
    asking: &Asking<'_>,
) -> Result<(Field, Value), Missing> {
    let field = Field::Counts(name.to_string());
    let missing = |query: &str, why: String| Missing {
        what: field.path(),
        query: query.to_string(),
        why,
    };
    let range = query
        .range(asking)
        .map_err(|why| missing(&query.events, why))?;
    let range = format!("{range}s");
    let mut asked = Vec::new();
    for cohort in Cohort::ALL {
        for template in [&query.events, &query.exposures] {
            let text = fill_cohort(template, target, cohort, &[("range", &range)])
                .map_err(|why| missing(template, why))?;
            asked.push((cohort, text));
        }
    }
    let values = futures_util::future::join_all(asked.iter().map(|(cohort, text)| {
        let offset = asking.offset(*cohort);
        let instant = InstantQuery {
            client: asking.client,
            base: asking.base,
            credentials: asking.credentials,
            query: text,
            time: asking.now - offset,
        };
        async move { instant.value(asking.budget).await }
    }))
    .await;
    let mut counts = serde_json::Map::new();
    // In the order asked: each cohort's events, then its exposures.
    for (asked, values) in asked.chunks(2).zip(values.chunks(2)) {
        let [(cohort, events_text), (_, exposures_text)] = asked else {
            unreachable!("two queries per cohort")
        };
        let events = values[0].clone().map_err(|why| missing(events_text, why))?;
        let exposures = values[1]
            .clone()
            .map_err(|why| missing(exposures_text, why))?;
        let (events, exposures) = whole(events, exposures).map_err(|why| {
            missing(
                &format!("{events_text} out of {exposures_text}"),
                format!("the {}: {why}", cohort.as_str()),
            )
        })?;
        counts.insert(
            cohort.as_str().into(),
            json!({"events": events, "exposures": exposures}),
        );
    }
    Ok((field, Value::Object(counts)))
}

/// Events and exposures as whole counts, events never above exposures.
fn whole(events: f64, exposures: f64) -> Result<(f64, f64), String> {
    let (events, exposures) = (events.round(), exposures.round());
    for (what, value) in [("events", events), ("exposures", exposures)] {
        if value < 0.0 {
            return Err(format!("{value} {what}: a count cannot be negative"));
        }
    }
    if events > exposures * (1.0 + EXTRAPOLATION_SLACK) + 1.0 {
        return Err(format!(
            "{events} events out of {exposures} exposures: the events query must count a \
             subset of what the exposures query counts"
        ));
    }
    Ok((events.min(exposures), exposures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_and_events_never_exceed_exposures() {
        assert_eq!(whole(2.4, 199.6), Ok((2.0, 200.0)));
        // Both extrapolated over a canary failing every request.
        assert_eq!(whole(101.2, 100.4), Ok((100.0, 100.0)));
        let different = whole(300.0, 100.0).unwrap_err();
        assert!(different.contains("must count a subset"), "{different}");
        let negative = whole(-3.0, 10.0).unwrap_err();
        assert!(negative.contains("cannot be negative"), "{negative}");
    }

    #[test]
    fn names_and_placeholders_are_checked() {
        let at = "sources.prometheus.counts.errors";
        let query = |events: &str| CountQuery {
            events: events.into(),
            exposures: "sum(increase(requests[{range}]))".into(),
            since: Since::Stage,
        };
        assert!(
            query("sum(increase(errors[{range}]))")
                .validate(at, "errors")
                .is_ok()
        );
        let windowed = query("errors[{window}]")
            .validate(at, "errors")
            .unwrap_err();
        assert!(
            windowed.starts_with(&format!("{at}.events: unknown placeholder {{window}}")),
            "{windowed}"
        );
        assert!(
            query(" ")
                .validate(at, "errors")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            query("x")
                .validate(at, "a-b")
                .unwrap_err()
                .contains("not a")
        );
    }
}
