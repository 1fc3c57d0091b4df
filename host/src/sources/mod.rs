//! Evidence sources: in server mode a request may only name what is being
//! deployed (a [`Target`]); the gate's sources supply the metrics, and what
//! they cannot find is said, never guessed.
//!
//! A source is a [`Source`]: it validates its own gate section and collects
//! evidence for a target at a time. To add one, write its module (its
//! config type implementing [`Source`]) and list it in [`SourcesConfig`]:
//! two files. Sources know nothing of gates, decisions or HTTP servers
//! beyond the plain types they are handed.

mod assemble;
mod evidence;
mod facts;
pub(crate) mod prometheus;
mod target;
pub(crate) mod template;

use std::future::Future;
use std::pin::Pin;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use shipgate_policy::Phase;

pub(crate) use assemble::assemble;
#[cfg(test)]
pub(crate) use evidence::{Cohort, Measure, Quantile};
pub(crate) use evidence::{Evidence, Field, Missing};
pub(crate) use target::{Target, as_name};

/// A source's evidence, being collected.
pub(crate) type Collecting<'a> = Pin<Box<dyn Future<Output = Evidence> + Send + 'a>>;

/// What a source is asked for: evidence about `target` for deciding `phase`,
/// as of `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) target: &'a Target,
    pub(crate) phase: Phase,
    pub(crate) at: jiff::Timestamp,
}

/// A place evidence comes from.
pub(crate) trait Source: Send + Sync {
    /// Names the source in decisions (`source:NAME`) and messages.
    fn name(&self) -> &'static str;

    /// Checks the source's gate section; errors name the key.
    fn validate(&self) -> Result<(), String>;

    /// What the source can find that deciding the phase needs. Never
    /// fails: what it cannot find is [`Evidence::missing`], with the reason.
    fn collect<'a>(&'a self, asked: Asked<'a>) -> Collecting<'a>;
}

/// `[sources]` in a gate file: the configured sources.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourcesConfig {
    /// Metrics from a Prometheus server, by PromQL templates.
    pub(crate) prometheus: Option<prometheus::PrometheusSource>,
    /// Release facts (CI, migrations, flags, rollback plan, window) from
    /// JSON files the pipeline writes.
    pub(crate) facts: Option<facts::FactsSource>,
}

impl SourcesConfig {
    fn configured(&self) -> Vec<&dyn Source> {
        let prometheus = self.prometheus.as_ref().map(|s| s as &dyn Source);
        let facts = self.facts.as_ref().map(|s| s as &dyn Source);
        prometheus.into_iter().chain(facts).collect()
    }

    /// Checks every configured source.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.configured().iter().try_for_each(|s| s.validate())
    }

    /// Evidence for `target` from every configured source, concurrently, in
    /// the order they are listed. With no source configured, the evidence
    /// says so: a target alone is not evidence.
    pub(crate) async fn collect(&self, asked: Asked<'_>) -> Vec<Evidence> {
        let sources = self.configured();
        if sources.is_empty() {
            return vec![unconfigured()];
        }
        let collecting = sources.iter().map(|s| s.collect(asked));
        futures_util::future::join_all(collecting).await
    }
}

/// What a gate without sources can give a target-only request: nothing,
/// said plainly.
fn unconfigured() -> Evidence {
    Evidence {
        source: "gate",
        values: Vec::new(),
        missing: vec![Missing {
            what: "metrics".into(),
            query: "[sources] in the gate file".into(),
            why: "the gate configures no evidence source; send a full `snapshot`, or configure \
                  one under [sources] (prometheus, facts)"
                .into(),
        }],
    }
}
