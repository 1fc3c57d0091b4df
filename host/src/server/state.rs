//! What the HTTP server holds: the decision service it serves, and the
//! settings of the HTTP edge (authentication, the adapters served, limits on
//! bodies and connections, shutdown).

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{Adapter, github, spinnaker};
use crate::service::{Service, ServiceSettings};

/// How the server was started; fixed for its lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) service: ServiceSettings,
    /// Required bearer token on the routes of bearer adapters, when set.
    pub(crate) token: Option<String>,
    pub(crate) spinnaker: spinnaker::Settings,
    /// The GitHub App, when deployment protection rules are served.
    pub(crate) github: Option<github::Settings>,
    pub(crate) max_body_bytes: usize,
    /// Largest Kayenta remote-judge request accepted (its series).
    pub(crate) max_judge_body_bytes: usize,
    /// How long to keep serving after SIGTERM before the port closes.
    pub(crate) shutdown_delay: Duration,
    /// How often to look for changed gate or module files; `None`: never.
    pub(crate) watch_interval: Option<Duration>,
    /// The adapters this instance serves.
    pub(crate) adapters: Vec<&'static Adapter>,
    /// Where probes and `/metrics` are served instead of the main port.
    pub(crate) operations_listen: Option<std::net::SocketAddr>,
    pub(crate) connections: super::listener::ConnectionLimits,
}

impl Settings {
    /// Whether this instance serves `adapter`.
    pub(crate) fn serves(&self, adapter: &Adapter) -> bool {
        self.adapters.iter().any(|a| a.name == adapter.name)
    }
}

/// Webhook bodies read at once before their signatures are checked.
const WEBHOOK_READS: usize = 16;
/// Of those, how many one address may have (an outsider's share).
pub(crate) const WEBHOOK_READS_PER_PEER: usize = 2;

pub(crate) struct AppState {
    pub(crate) settings: Settings,
    pub(crate) service: Service,
    /// Outbound HTTP to GitHub's API (the App's token and reviews).
    pub(crate) http: reqwest::Client,
    /// The GitHub reviews made after their deliveries were answered.
    pub(crate) reviews: Arc<super::reviews::Reviews>,
    /// Webhook bodies being read before their signatures are checked.
    pub(crate) webhook_reads: Arc<tokio::sync::Semaphore>,
    /// The same, by address: no one address holds more than its share.
    pub(crate) webhook_readers: Arc<super::listener::Peers>,
}

impl AppState {
    pub(crate) fn new(settings: Settings, service: Service) -> AppState {
        AppState {
            settings,
            service,
            http: reqwest::Client::new(),
            reviews: Arc::default(),
            webhook_reads: Arc::new(tokio::sync::Semaphore::new(WEBHOOK_READS)),
            webhook_readers: Arc::default(),
        }
    }
}
