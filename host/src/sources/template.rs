//! Query templates any metrics source can use: `{placeholder}`s filled from
//! a request's target, planned once per cohort (the stable version as the
//! baseline, the canary) and once for the rollout itself.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Target;
use super::evidence::{Cohort, Field, Measure, Missing, Quantile};

/// The placeholders a template may use.
pub(crate) const PLACEHOLDERS: [&str; 6] = [
    "service",
    "namespace",
    "environment",
    "hash",
    "cohort",
    "window",
];

/// Per-cohort queries: each runs for the baseline and for the canary.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CohortQueries {
    pub(crate) requests: Option<String>,
    pub(crate) errors: Option<String>,
    pub(crate) latency_p50_ms: Option<String>,
    pub(crate) latency_p95_ms: Option<String>,
    pub(crate) latency_p99_ms: Option<String>,
}

/// Queries about the rollout itself, run once (with `{hash}` the canary
/// hash), and only for what the request does not say.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutQueries {
    /// The canary's traffic weight in percent.
    pub(crate) weight: Option<String>,
    /// When the current stage started, in Unix seconds.
    pub(crate) stage_started_at: Option<String>,
}

/// One query to run: where its value goes in the snapshot and its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) field: Field,
    pub(crate) text: String,
    /// Whether it measures the baseline (a source may ask it at another time).
    pub(crate) baseline: bool,
}

/// A source's templates, as its gate section holds them.
pub(crate) struct Templates<'a> {
    pub(crate) cohort: &'a CohortQueries,
    /// Business counters by name, run per cohort.
    pub(crate) business: &'a BTreeMap<String, String>,
    pub(crate) rollout: &'a RolloutQueries,
}

impl Templates<'_> {
    /// Checks every template's placeholders; errors name the key under `at`
    /// (`sources.prometheus`).
    pub(crate) fn validate(&self, at: &str) -> Result<(), String> {
        let cohort = self.cohort_templates().into_iter().map(|(measure, t)| {
            let key = match measure {
                Measure::Business(name) => format!("business.{name}"),
                Measure::Latency(q) => format!("queries.latency_{}_ms", q.as_str()),
                other => format!("queries.{}", other.path()),
            };
            (key, t)
        });
        let rollout = self.rollout_templates().into_iter().map(|(field, t)| {
            let key = match field {
                Field::RolloutWeight => "rollout.weight",
                _ => "rollout.stage_started_at",
            };
            (key.to_string(), t)
        });
        for (key, template) in cohort.chain(rollout) {
            check_placeholders(template).map_err(|why| format!("{at}.{key}: {why}"))?;
        }
        Ok(())
    }

    /// Cohort templates with what each measures.
    fn cohort_templates(&self) -> Vec<(Measure, &str)> {
        let q = self.cohort;
        let latency = |quantile| Measure::Latency(quantile);
        let fixed = [
            (Measure::Requests, &q.requests),
            (Measure::Errors, &q.errors),
            (latency(Quantile::P50), &q.latency_p50_ms),
            (latency(Quantile::P95), &q.latency_p95_ms),
            (latency(Quantile::P99), &q.latency_p99_ms),
        ];
        let fixed = fixed
            .into_iter()
            .filter_map(|(measure, t)| t.as_deref().map(|t| (measure, t)));
        let business = self
            .business
            .iter()
            .map(|(name, t)| (Measure::Business(name.clone()), t.as_str()));
        fixed.chain(business).collect()
    }

    fn rollout_templates(&self) -> Vec<(Field, &str)> {
        let r = self.rollout;
        [
            (Field::RolloutWeight, &r.weight),
            (Field::StageStartedAt, &r.stage_started_at),
        ]
        .into_iter()
        .filter_map(|(field, t)| t.as_deref().map(|t| (field, t)))
        .collect()
    }

    /// The per-cohort queries for `target`, with every placeholder filled
    /// (`window` as the source writes durations, e.g. `900s`). A cohort
    /// whose hash the target does not give is missing: its templates would
    /// match the wrong pods. A canary without traffic is not queried at all:
    /// at 0 % it has nothing to measure, so nothing is missing.
    pub(crate) fn plan_cohorts(
        &self,
        target: &Target,
        window: &str,
        canary_has_traffic: bool,
    ) -> (Vec<Query>, Vec<Missing>) {
        let mut planned = Planned::default();
        let measured = Cohort::ALL
            .into_iter()
            .filter(|cohort| canary_has_traffic || *cohort != Cohort::Canary);
        for cohort in measured {
            let hash = match cohort {
                Cohort::Baseline => target.stable_hash.as_deref(),
                Cohort::Canary => target.canary_hash.as_deref(),
            };
            let values = Values {
                target,
                hash,
                cohort,
                window,
            };
            for (measure, template) in self.cohort_templates() {
                planned.add(Field::Metric(cohort, measure), template, &values);
            }
        }
        (planned.queries, planned.missing)
    }

    /// The queries about the rollout that the request does not answer
    /// itself; `{hash}` is the canary hash, since the rollout is the
    /// canary's.
    pub(crate) fn plan_rollout(&self, target: &Target, window: &str) -> (Vec<Query>, Vec<Missing>) {
        let mut planned = Planned::default();
        let values = Values {
            target,
            hash: target.canary_hash.as_deref(),
            cohort: Cohort::Canary,
            window,
        };
        for (field, template) in self.rollout_templates() {
            let given = match field {
                Field::RolloutWeight => target.weight.is_some(),
                _ => target.stage_started_at.is_some(),
            };
            if !given {
                planned.add(field, template, &values);
            }
        }
        (planned.queries, planned.missing)
    }
}

/// `template` filled for one cohort of `target`, with `extra` placeholders
/// (a source's own, such as a range query's `{step}`) beside the common ones.
pub(crate) fn fill_cohort(
    template: &str,
    target: &Target,
    cohort: Cohort,
    extra: &[(&str, &str)],
) -> Result<String, String> {
    let values = Values {
        target,
        hash: match cohort {
            Cohort::Baseline => target.stable_hash.as_deref(),
            Cohort::Canary => target.canary_hash.as_deref(),
        },
        cohort,
        window: "",
    };
    fill(template, |name| {
        match extra.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => Ok(value.to_string()),
            None => values.get(name),
        }
    })
}

/// Queries being planned, and what could not be.
#[derive(Default)]
struct Planned {
    queries: Vec<Query>,
    missing: Vec<Missing>,
}

impl Planned {
    fn add(&mut self, field: Field, template: &str, values: &Values) {
        match fill(template, |name| values.get(name)) {
            Ok(text) => self.queries.push(Query {
                field,
                text,
                baseline: values.hash.is_some() && values.cohort == Cohort::Baseline,
            }),
            Err(why) => self.missing.push(Missing {
                what: field.path(),
                query: template.to_string(),
                why,
            }),
        }
    }
}

/// What placeholders are filled with for one query.
struct Values<'a> {
    target: &'a Target,
    hash: Option<&'a str>,
    cohort: Cohort,
    window: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Result<String, String> {
        let value = match name {
            "service" => self.target.service.as_deref(),
            "namespace" => self.target.namespace.as_deref(),
            "environment" => self.target.environment.as_deref(),
            "hash" => self.hash,
            "cohort" => Some(self.cohort.as_str()),
            "window" => Some(self.window),
            _ => None,
        };
        let field = match name {
            "hash" if self.cohort == Cohort::Baseline => "stable_hash",
            "hash" => "canary_hash",
            other => other,
        };
        value
            .map(str::to_string)
            .ok_or_else(|| format!("the request gives no {field} for {{{name}}}"))
    }
}

/// Names of `{placeholder}`s in a template. PromQL's own braces hold label
/// matchers (`{job="x"}`), never a bare identifier, so they do not clash.
fn placeholders(template: &str) -> impl Iterator<Item = (usize, &str)> {
    template.match_indices('{').filter_map(move |(start, _)| {
        let rest = &template[start + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        let is_identifier =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        is_identifier.then_some((start, name))
    })
}

fn check_placeholders(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the query is empty".into());
    }
    check_known(template, &PLACEHOLDERS)
}

/// Refuses a `{placeholder}` not in `known`.
pub(crate) fn check_known(template: &str, known: &[&str]) -> Result<(), String> {
    match placeholders(template).find(|(_, name)| !known.contains(name)) {
        Some((_, name)) => Err(format!(
            "unknown placeholder {{{name}}} (known: {})",
            known
                .iter()
                .map(|p| format!("{{{p}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(()),
    }
}

/// `template` with each `{placeholder}` replaced by `value(name)`. Inside
/// a PromQL regex matcher's string (`=~"…"`, `!~"…"`) the value is
/// regex-escaped: a name like `a.b` must match itself, not `aXb`.
pub(crate) fn fill(
    template: &str,
    value: impl Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut copied = 0;
    for (start, name) in placeholders(template) {
        out.push_str(&template[copied..start]);
        let filled = value(name)?;
        match regex_string_at(template, start) {
            Some(quote) => out.push_str(&regex_escaped(&filled, quote)),
            None => out.push_str(&filled),
        }
        copied = start + name.len() + 2;
    }
    out.push_str(&template[copied..]);
    Ok(out)
}

/// The quote of the string of a regex matcher (`=~"…"`, `!~'…'`, ``=~`…` ``,
/// white space allowed before the quote) that byte `at` of a PromQL text
/// lies inside, if any.
fn regex_string_at(text: &str, at: usize) -> Option<u8> {
    let bytes = text.as_bytes();
    let (mut quote, mut regex, mut i) = (None, false, 0);
    while i < at {
        match (quote, bytes[i]) {
            // Backtick strings are raw: no escapes.
            (Some(q), b'\\') if q != b'`' => i += 1,
            (Some(q), b) if b == q => quote = None,
            (None, b @ (b'"' | b'\'' | b'`')) => {
                quote = Some(b);
                let before = text[..i].trim_end();
                regex = before.ends_with("=~") || before.ends_with("!~");
            }
            _ => {}
        }
        i += 1;
    }
    quote.filter(|_| regex)
}

/// `value` as a literal inside a PromQL regex string quoted with `quote`:
/// each regex metacharacter behind a backslash, itself escaped for the
/// string unless the string is raw (backticks).
fn regex_escaped(value: &str, quote: u8) -> String {
    let backslash = if quote == b'`' { "\\" } else { "\\\\" };
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str(backslash);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort(requests: &str) -> CohortQueries {
        CohortQueries {
            requests: Some(requests.into()),
            ..Default::default()
        }
    }

    fn templates(cohort: &CohortQueries) -> Templates<'_> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        static ROLLOUT: RolloutQueries = RolloutQueries {
            weight: None,
            stage_started_at: None,
        };
        Templates {
            cohort,
            business: &NONE,
            rollout: &ROLLOUT,
        }
    }

    fn target() -> Target {
        Target {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            stable_hash: Some("aaa".into()),
            canary_hash: Some("bbb".into()),
            ..Default::default()
        }
    }

    #[test]
    fn placeholders_are_filled_per_cohort_and_label_matchers_are_left_alone() {
        let queries = cohort(
            r#"sum(increase(http_requests_total{app="{service}",ns="{namespace}",hash="{hash}"}[{window}]))"#,
        );
        let (queries, missing) = templates(&queries).plan_cohorts(&target(), "600s", true);
        assert!(missing.is_empty());
        assert_eq!(
            queries,
            [
                Query {
                    field: Field::Metric(Cohort::Baseline, Measure::Requests),
                    text: r#"sum(increase(http_requests_total{app="checkout",ns="shop",hash="aaa"}[600s]))"#.into(),
                    baseline: true,
                },
                Query {
                    field: Field::Metric(Cohort::Canary, Measure::Requests),
                    text: r#"sum(increase(http_requests_total{app="checkout",ns="shop",hash="bbb"}[600s]))"#.into(),
                    baseline: false,
                },
            ]
        );
    }

    #[test]
    fn a_placeholder_the_request_does_not_fill_is_missing_evidence() {
        let queries = cohort(r#"sum(up{hash="{hash}"})"#);
        let mut t = target();
        t.canary_hash = None;
        let (queries, missing) = templates(&queries).plan_cohorts(&t, "600s", true);
        assert_eq!(queries.len(), 1);
        assert_eq!(missing[0].what, "metrics.canary.requests");
        assert_eq!(
            missing[0].why,
            "the request gives no canary_hash for {hash}"
        );
    }

    #[test]
    fn values_inside_regex_matchers_are_escaped_and_only_there() {
        let text = |template: &str| fill(template, |_| Ok("my.app".to_string())).unwrap();
        assert_eq!(
            text(r#"up{pod=~"{service}-.+"}"#),
            r#"up{pod=~"my\\.app-.+"}"#
        );
        assert_eq!(
            text(r#"up{pod !~ "{service}"}"#),
            r#"up{pod !~ "my\\.app"}"#
        );
        assert_eq!(text(r#"up{app="{service}"}"#), r#"up{app="my.app"}"#);
        assert_eq!(
            text(r#"up{a=~"x\"y", b="{service}"}"#),
            r#"up{a=~"x\"y", b="my.app"}"#,
            "an escaped quote does not end the regex string early"
        );
        assert_eq!(
            text(r#"up{pod=~'{service}-.+'}"#),
            r#"up{pod=~'my\\.app-.+'}"#
        );
        assert_eq!(
            text(r#"up{pod=~`{service}-.+`}"#),
            r#"up{pod=~`my\.app-.+`}"#,
            "backtick strings are raw: one backslash"
        );
    }

    #[test]
    fn a_canary_without_traffic_is_not_measured() {
        let queries = cohort(r#"sum(up{hash="{hash}"})"#);
        let (queries, missing) = templates(&queries).plan_cohorts(&target(), "600s", false);
        assert!(missing.is_empty());
        let fields: Vec<String> = queries.iter().map(|q| q.field.path()).collect();
        assert_eq!(fields, ["metrics.baseline.requests"]);
    }

    #[test]
    fn unknown_placeholders_are_refused_by_name() {
        let queries = cohort(r#"sum(up{app="{servce}"})"#);
        let error = templates(&queries)
            .validate("sources.prometheus")
            .unwrap_err();
        assert!(
            error.starts_with("sources.prometheus.queries.requests: unknown placeholder {servce}"),
            "{error}"
        );
    }
}
