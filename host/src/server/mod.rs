//! `shipgate serve`: the adapters over HTTP (axum on tokio), with health,
//! readiness and metrics, a bearer token, bounded work, graceful shutdown
//! on SIGTERM, and gate reload on SIGHUP or when its files change.

mod auth;
mod extract;
mod github_app;
mod listener;
mod log_lines;
mod reload;
mod reviews;
mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::decision_log::ship;
use crate::error::Error;
use crate::service::Service;

pub(crate) use listener::ConnectionLimits;
use state::AppState;
pub(crate) use state::Settings;

/// Runs the server until SIGTERM or SIGINT. The gate is loaded (and every
/// policy checked) before the port opens, so a bad gate never serves.
pub(crate) fn run(settings: Settings, listen: SocketAddr) -> Result<(), Error> {
    let service = Service::start(settings.service.clone())?;
    let workers = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("starting tokio")))?;
    workers.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Usage(format!("--listen {listen}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.into()))?;
        // Handlers go in before the port is announced: until then SIGHUP
        // and SIGTERM would kill the process outright.
        let signals = Signals::install()?;
        let state = Arc::new(AppState::new(settings, service));
        // Warned once the gate has loaded, so a bad gate's error comes alone.
        if state.settings.token.is_none() {
            tracing::warn!(
                "no bearer token configured: anyone who can reach the port can ask for decisions"
            );
        }
        if state.settings.spinnaker.key_is_random {
            tracing::warn!(
                "no evaluation key (SHIPGATE_EVALUATION_KEY or --key-file): Spinnaker status \
                 URLs work on this process only"
            );
        }
        let operations = match state.settings.operations_listen {
            Some(at) => {
                let bound = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| Error::Usage(format!("--metrics-listen {at}: {e}")))?;
                let local = bound.local_addr().map_err(|e| Error::Internal(e.into()))?;
                tracing::info!(address = %local, "metrics and probes listening");
                Some(bound)
            }
            None => None,
        };
        tracing::info!(
            address = %address,
            gate = %state.service.gate().gate().origin.label(),
            "listening"
        );
        let shipping = state
            .service
            .shipper()
            .map(|shipper| tokio::spawn(shipper.run()));
        tokio::spawn(reload::on_hangup(state.clone(), signals.hangup));
        if let Some(interval) = state.settings.watch_interval {
            tokio::spawn(reload::on_change(state.clone(), interval));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let limits = state.settings.connections;
        let side = operations.map(|bound| {
            let routes = routes::operations(state.clone());
            tokio::spawn(listener::serve(bound, routes, stopped.clone(), limits))
        });
        let app = routes::router(state.clone());
        let reviews = state.reviews.clone();
        let shipper = state.service.shipper();
        tokio::spawn(async move {
            shutdown_signal(state, signals.terminate).await;
            let _ = stop.send(true);
        });
        // Deliveries answered 202 are reviewed while the connections drain,
        // or said to be lost: their rules stay pending until redelivered.
        let mut stopping = stopped.clone();
        let reviewed = async move {
            let _ = stopping.wait_for(|stopped| *stopped).await;
            let budget = reviews::FINISH_AT_SHUTDOWN.min(limits.drain_timeout);
            reviews.finish(budget).await
        };
        let ((), dropped) =
            tokio::join!(listener::serve(listener, app, stopped, limits), reviewed);
        if let Some(side) = side {
            let _ = side.await;
        }
        if dropped > 0 {
            tracing::error!(
                reviews = dropped,
                "github reviews dropped at shutdown; their rules stay pending until the webhooks are redelivered"
            );
        }
        // Every decision is answered: the collector gets the last records,
        // within the shipper's final flush.
        if let (Some(shipper), Some(mut shipping)) = (shipper, shipping) {
            shipper.close();
            let budget = ship::FINAL_FLUSH + Duration::from_secs(1);
            if tokio::time::timeout(budget, &mut shipping).await.is_err() {
                // Stopped, and known to be stopped, before what it holds is
                // counted: nothing is counted twice.
                shipping.abort();
                let _ = shipping.await;
                shipper.abandon();
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// The signals the server acts on.
struct Signals {
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> Result<Signals, Error> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| {
                Error::Internal(
                    anyhow::Error::new(e).context(format!("installing a {name} handler")),
                )
            })
        };
        Ok(Signals {
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// Resolves when the port should close: after SIGTERM (or SIGINT),
/// readiness fails at once, and requests keep being served for the shutdown
/// delay, while load balancers take the pod out of rotation (a connection
/// refused would fail a Spinnaker stage or count against an Argo or Flagger
/// analysis); a second signal ends the delay. Then the requests in flight
/// finish and the process exits.
async fn shutdown_signal(state: Arc<AppState>, mut terminate: Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    state.service.begin_shutdown();
    let delay = state.settings.shutdown_delay;
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "shutting down: /readyz fails, still serving until the delay ends"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("closing the port: finishing requests in flight");
}

/// JSON lines on stderr, written in batches until the returned guard is
/// dropped; `SHIPGATE_LOG` filters (default `info`).
pub(crate) fn init_logging() -> log_lines::Flush {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIPGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (lines, flush) = log_lines::LogLines::start();
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(lines)
        .with_env_filter(filter)
        .try_init();
    flush
}
