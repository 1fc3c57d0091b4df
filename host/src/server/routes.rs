//! The HTTP routes: one short handler per adapter endpoint (read, map,
//! decide, answer), health, readiness and metrics.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::auth::{Guard, authenticate};
use super::extract::{DecisionBody, admit, observe, respond};
use super::github_app;
use super::state::AppState;
use crate::adapters::{
    Answer, ApiError, DecisionRequest, argo, flagger, generic, github, spinnaker,
};
use crate::decision::Evaluation;

type Body = Result<DecisionBody, ApiError>;

/// The HTTP routes over a state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    // An adapter's routes, when this instance serves it: admitted (or 503)
    // before anything else, then authenticated, then handled.
    let adapter = |name, authentication, routes: Vec<(&str, MethodRouter<Arc<AppState>>)>| {
        if !state.settings.serves(name) {
            return Router::new();
        }
        let guard = Guard {
            state: state.clone(),
            adapter: name,
            authentication,
        };
        routes
            .into_iter()
            .fold(Router::new(), |router, (path, route)| {
                router.route(path, route)
            })
            .route_layer(middleware::from_fn_with_state(guard, authenticate))
            .route_layer(middleware::from_fn_with_state((state.clone(), name), admit))
    };
    let github = match state.settings.github {
        Some(_) => adapter(
            "github",
            github::AUTHENTICATION,
            vec![(
                "/v1/github/deployment-protection",
                post(github_protection_rule),
            )],
        ),
        None => Router::new(),
    };
    Router::new()
        .merge(github)
        .merge(adapter(
            "generic",
            generic::AUTHENTICATION,
            vec![("/v1/evaluate", post(evaluate))],
        ))
        .merge(adapter(
            "argo",
            argo::AUTHENTICATION,
            vec![("/v1/argo/{phase}", post(argo_measurement))],
        ))
        .merge(adapter(
            "spinnaker",
            spinnaker::AUTHENTICATION,
            vec![
                ("/v1/spinnaker/{phase}", post(spinnaker_start)),
                ("/v1/spinnaker/evaluations/{id}", get(spinnaker_poll)),
            ],
        ))
        .merge(adapter(
            "flagger",
            flagger::AUTHENTICATION,
            vec![("/v1/flagger/{hook}", post(flagger_hook))],
        ))
        .merge(match state.settings.operations_listen {
            Some(_) => Router::new(),
            None => operation_routes(),
        })
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see the README's server section".into())
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The probes and `/metrics`, on a listener of their own (`--metrics-listen`).
pub(crate) fn operations(state: Arc<AppState>) -> Router {
    operation_routes().with_state(state)
}

fn operation_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The decision a request asked for, or why it got none.
async fn decide(
    state: &AppState,
    adapter: &'static str,
    asked: Result<DecisionRequest, ApiError>,
) -> Result<Evaluation, ApiError> {
    state.decide(adapter, asked?).await
}

async fn evaluate(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let asked = body.and_then(|DecisionBody(body)| generic::request(body));
    let result = decide(&state, "generic", asked).await;
    respond("generic", generic::answer(result))
}

async fn argo_measurement(
    State(state): State<Arc<AppState>>,
    Path(phase): Path<String>,
    body: Body,
) -> Response {
    let asked = argo::request(&phase, body.map(|DecisionBody(body)| body));
    let result = decide(&state, "argo", asked).await;
    respond("argo", argo::answer(result))
}

async fn spinnaker_start(
    State(state): State<Arc<AppState>>,
    Path(phase): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let settings = &state.settings.spinnaker;
    let body = body.map(|DecisionBody(body)| body);
    let started = match spinnaker::start(settings, &phase, body, jiff::Timestamp::now()) {
        Ok(started) => started,
        Err(error) => return respond("spinnaker", Answer::refused(error)),
    };
    let evaluation = match state.decide("spinnaker", started.request).await {
        Ok(evaluation) => evaluation,
        Err(error) => return respond("spinnaker", Answer::refused(error)),
    };
    let (id, claims) = spinnaker::issue(settings, started.ticket, &evaluation);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let location = spinnaker::status_url(settings, &id, header);
    let answer = spinnaker::answer(&id, &claims, Some(location), evaluation);
    respond("spinnaker", answer)
}

async fn spinnaker_poll(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let settings = &state.settings.spinnaker;
    let answer = match spinnaker::resume(settings, &id, jiff::Timestamp::now()) {
        Ok((claims, spinnaker::Poll::Decide(request))) => {
            match state.decide("spinnaker", *request).await {
                Ok(evaluation) => spinnaker::answer(&id, &claims, None, evaluation),
                Err(error) => Answer::refused(error),
            }
        }
        Ok((claims, spinnaker::Poll::Decided)) => spinnaker::answer_decided(&id, &claims),
        Err(error) => Answer::refused(error),
    };
    respond("spinnaker", answer)
}

async fn flagger_hook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let asked = flagger::Hook::from_name(&name).and_then(|hook| {
        let call = flagger::request(hook, body?.0)?;
        Ok((hook, call))
    });
    let (hook, result) = match asked {
        Ok((hook, flagger::Call::Decide(request))) => {
            (hook, state.decide("flagger", request).await.map(Some))
        }
        Ok((hook, flagger::Call::Event { canary, message })) => {
            tracing::info!(canary, message, "flagger event");
            (hook, Ok(None))
        }
        Err(error) => return respond("flagger", Answer::refused(error)),
    };
    respond("flagger", flagger::answer(hook, result))
}

/// A deployment protection rule: acknowledged at once (GitHub waits 10
/// seconds at most), decided and reviewed in the background.
async fn github_protection_rule(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(settings) = state.settings.github.clone() else {
        return respond(
            "github",
            Answer::refused(ApiError::NotFound("GitHub is not configured".into())),
        );
    };
    let event = headers
        .get(github::EVENT_HEADER)
        .and_then(|v| v.to_str().ok());
    let delivery =
        match body.and_then(|DecisionBody(body)| github::request(&settings.routing, event, body)) {
            Ok(delivery) => delivery,
            Err(error) => return respond("github", Answer::refused(error)),
        };
    let answer = github::acknowledge(&delivery);
    if let github::Delivery::Review(request, callback) = delivery {
        let state = state.clone();
        tokio::spawn(async move {
            let result = state.decide("github", *request).await;
            let review = github::review(&callback, &result);
            let outcome = github_app::report(&state.http, &settings, &callback, &review).await;
            state
                .metrics
                .reviewed(review.state.unwrap_or("pending"), outcome.is_ok());
            match outcome {
                Ok(()) => tracing::info!(
                    environment = %callback.environment,
                    state = review.state.unwrap_or("pending"),
                    "github review posted"
                ),
                Err(error) => tracing::error!(
                    environment = %callback.environment,
                    error = %error,
                    "github review not posted; the rule stays pending until the webhook is redelivered"
                ),
            }
        });
    }
    respond("github", answer)
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
