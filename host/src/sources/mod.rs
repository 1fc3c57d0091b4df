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
pub(crate) mod prometheus;
mod target;
pub(crate) mod template;

use std::future::Future;
use std::pin::Pin;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use assemble::assemble;
pub(crate) use evidence::{Evidence, Missing};
pub(crate) use target::Target;

/// A source's evidence, being collected.
pub(crate) type Collecting<'a> = Pin<Box<dyn Future<Output = Evidence> + Send + 'a>>;

/// A place evidence comes from.
pub(crate) trait Source: Send + Sync {
    /// Names the source in decisions (`source:NAME`) and messages.
    fn name(&self) -> &'static str;

    /// Checks the source's gate section; errors name the key.
    fn validate(&self) -> Result<(), String>;

    /// Everything the source can find about `target` as of `at`. Never
    /// fails: what it cannot find is [`Evidence::missing`], with the reason.
    fn collect<'a>(
        &'a self,
        client: &'a reqwest::Client,
        target: &'a Target,
        at: jiff::Timestamp,
    ) -> Collecting<'a>;
}

/// `[sources]` in a gate file: the configured sources.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourcesConfig {
    /// Metrics from a Prometheus server, by PromQL templates.
    pub(crate) prometheus: Option<prometheus::PrometheusSource>,
}

impl SourcesConfig {
    fn configured(&self) -> Vec<&dyn Source> {
        let prometheus = self.prometheus.as_ref().map(|s| s as &dyn Source);
        prometheus.into_iter().collect()
    }

    /// Checks every configured source.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.configured().iter().try_for_each(|s| s.validate())
    }

    /// Evidence for `target` from every configured source, concurrently, in
    /// the order they are listed. With no source configured, the evidence
    /// says so: a target alone is not evidence.
    pub(crate) async fn collect(
        &self,
        client: &reqwest::Client,
        target: &Target,
        at: jiff::Timestamp,
    ) -> Vec<Evidence> {
        let sources = self.configured();
        if sources.is_empty() {
            return vec![unconfigured()];
        }
        let collecting = sources.iter().map(|s| s.collect(client, target, at));
        futures_util::future::join_all(collecting).await
    }
}

/// What a gate without sources can give a target-only request: nothing, said
/// plainly (and named after the source that would supply it).
fn unconfigured() -> Evidence {
    Evidence {
        source: "prometheus",
        values: Vec::new(),
        missing: vec![Missing {
            field: "metrics".into(),
            query: "[sources.prometheus] in the gate file".into(),
            why: "the gate has no metrics source; send a full `snapshot` or configure \
                  [sources.prometheus]"
                .into(),
        }],
    }
}
