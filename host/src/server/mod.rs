//! `shipgate serve`: the adapters over HTTP (axum on tokio), with health,
//! readiness and metrics, a bearer token, bounded work, graceful shutdown
//! on SIGTERM and gate reload on SIGHUP.

pub mod api;
pub mod metrics;
pub mod options;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::adapters::{argo, flagger, generic, spinnaker};
use crate::error::Error;
use crate::runtime::{Runtime, RuntimeConfig};
use api::ApiError;
use state::{AppState, Settings, load_gate};

/// The HTTP routes over a state.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    let decisions = Router::new()
        .route("/v1/evaluate", post(generic::evaluate))
        .route("/v1/argo/{phase}", post(argo::analyze))
        .route("/v1/spinnaker/{phase}", post(spinnaker::create))
        .route("/v1/spinnaker/evaluations/{id}", get(spinnaker::status))
        .route("/v1/flagger/{hook}", post(flagger::hook))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .merge(decisions)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see the README's server section".into())
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Refuses `/v1/*` requests without the configured bearer token.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.settings.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            let error = ApiError::Unauthorized;
            state.rejected("auth", &error);
            return error.into_response();
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        Json(json!({"ready": true, "gate": state.gate().gate().file.name})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "why": "shutting down"})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Runs the server until SIGTERM or SIGINT. The gate is loaded (and every
/// policy checked) before the port opens, so a bad gate never serves.
pub fn run(settings: Settings, listen: SocketAddr) -> Result<(), Error> {
    let runtime = Arc::new(Runtime::new(&RuntimeConfig {
        max_concurrent_instances: settings.max_evaluating as u32,
        ..RuntimeConfig::default()
    })?);
    let gate = load_gate(&runtime, &settings.gate_path)?;
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
        let state = Arc::new(AppState::new(settings, runtime, gate));
        // Warned once the gate has loaded, so a bad gate's error comes alone.
        if state.settings.token.is_none() {
            tracing::warn!(
                "no bearer token configured: anyone who can reach the port can ask for decisions"
            );
        }
        if state.settings.evaluation_key_is_random {
            tracing::warn!(
                "no evaluation key ({} or --key-file): Spinnaker status URLs work on this \
                 process only",
                options::KEY_ENV
            );
        }
        tracing::info!(
            address = %address,
            gate = %state.gate().gate().origin.label(),
            "listening"
        );
        tokio::spawn(reload_on_hangup(state.clone(), signals.hangup));
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(shutdown_signal(state, signals.terminate))
            .await
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("serving HTTP")))?;
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

/// Resolves on SIGTERM or SIGINT; readiness fails from then on while the
/// requests in flight finish.
async fn shutdown_signal(state: Arc<AppState>, mut terminate: Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    state.begin_shutdown();
    tracing::info!("shutting down: finishing requests in flight");
}

/// Reloads the gate on every SIGHUP. Loading runs off the async threads;
/// requests keep the gate they started with, and a bad gate file leaves
/// the old one serving.
async fn reload_on_hangup(state: Arc<AppState>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        let reloading = state.clone();
        let result = tokio::task::spawn_blocking(move || reloading.reload()).await;
        match result {
            Ok(Ok(())) => tracing::info!(
                gate = %state.gate().gate().origin.label(),
                sha256 = %state.gate().gate().sha256,
                "gate reloaded"
            ),
            Ok(Err(error)) => tracing::error!(
                error = %error,
                "gate reload failed; the previous gate keeps serving"
            ),
            Err(error) => tracing::error!(error = %error, "gate reload task failed"),
        }
    }
}

/// JSON lines on stderr; `SHIPGATE_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIPGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
