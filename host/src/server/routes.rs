//! The HTTP routes, made from the adapter table: every route of every
//! adapter served, each authenticated, admitted and handled; health,
//! readiness and metrics.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use axum::{Json, Router};
use serde_json::json;

use super::auth::{Guard, authenticate};
use super::extract::{Deadline, DecisionBody, admit, observe, read_body, respond};
use super::github_app;
use super::reviews;
use super::state::AppState;
use crate::adapters::{
    ADAPTERS, Adapter, Answer, ApiError, Authentication, Call, Custom, Endpoint, Exchange, Method,
    github, kayenta, spinnaker,
};

type Body = Result<DecisionBody, ApiError>;

/// The HTTP routes over a state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    let served = ADAPTERS
        .into_iter()
        .filter(|adapter| state.settings.serves(adapter) && can_authenticate(&state, adapter));
    let mut router = Router::new();
    for adapter in served {
        router = router.merge(adapter_routes(&state, adapter));
    }
    router
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

/// Whether the server has what `adapter`'s authentication checks: GitHub's
/// deliveries cannot be checked without the App's webhook secret, so
/// without the App its route is not served.
fn can_authenticate(state: &AppState, adapter: &Adapter) -> bool {
    match adapter.authentication {
        Authentication::Bearer => true,
        Authentication::GithubSignature => state.settings.github.is_some(),
    }
}

/// One adapter's routes: authenticated before anything else (a request
/// that does not authenticate never takes a place), then admitted (or
/// 503), then handled.
fn adapter_routes(state: &Arc<AppState>, adapter: &'static Adapter) -> Router<Arc<AppState>> {
    let guard = Guard {
        state: state.clone(),
        adapter,
    };
    adapter
        .routes
        .iter()
        .fold(Router::new(), |router, route| {
            let method = match route.method {
                Method::Get => MethodFilter::GET,
                Method::Post => MethodFilter::POST,
            };
            let handler = match route.endpoint {
                Endpoint::Decide(exchange) => decide_route(method, adapter.name, exchange),
                Endpoint::Custom(custom) => custom_route(method, custom),
            };
            router.route(route.path, handler)
        })
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), adapter.name),
            admit,
        ))
        .route_layer(middleware::from_fn_with_state(guard, authenticate))
}

/// The handler of an [`Endpoint::Decide`] route: the adapter's mapping,
/// the decision service, the adapter's answer.
fn decide_route(
    method: MethodFilter,
    adapter: &'static str,
    exchange: fn(Call) -> Result<Exchange, Answer>,
) -> MethodRouter<Arc<AppState>> {
    let handle = move |State(state): State<Arc<AppState>>,
                       Extension(Deadline(deadline)): Extension<Deadline>,
                       parameter: Option<Path<String>>,
                       body: Body| async move {
        let call = Call {
            parameter: parameter.map(|Path(p)| p),
            body: body.map(|DecisionBody(body)| body),
        };
        let answer = match exchange(call) {
            Ok(Exchange::Decide(request, answer)) => {
                let result = state.service.decide(adapter, request, deadline).await;
                answer(result.map_err(ApiError::from))
            }
            Ok(Exchange::Acknowledge { answer, note }) => {
                tracing::info!(adapter, "{note}");
                answer
            }
            Err(refused) => refused,
        };
        respond(adapter, answer)
    };
    on(method, handle)
}

/// The handler of a [`Custom`] endpoint.
fn custom_route(method: MethodFilter, custom: Custom) -> MethodRouter<Arc<AppState>> {
    match custom {
        Custom::SpinnakerStart => on(method, spinnaker_start),
        Custom::SpinnakerPoll => on(method, spinnaker_poll),
        Custom::GithubProtectionRule => on(method, github_protection_rule),
        Custom::KayentaJudge => on(method, kayenta_judge),
    }
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

async fn spinnaker_start(
    State(state): State<Arc<AppState>>,
    Extension(Deadline(deadline)): Extension<Deadline>,
    Path(phase): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = spinnaker::ADAPTER.name;
    let settings = &state.settings.spinnaker;
    let body = body.map(|DecisionBody(body)| body);
    let started = match spinnaker::start(settings, &phase, body, jiff::Timestamp::now()) {
        Ok(started) => started,
        Err(error) => return respond(name, Answer::refused(error)),
    };
    let evaluation = match state.service.decide(name, started.request, deadline).await {
        Ok(evaluation) => evaluation,
        Err(refusal) => return respond(name, Answer::refused(refusal.into())),
    };
    let (id, claims) = spinnaker::issue(settings, started.ticket, &evaluation);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let location = spinnaker::status_url(settings, &id, header);
    let answer = spinnaker::answer(&id, &claims, Some(location), evaluation);
    respond(name, answer)
}

async fn spinnaker_poll(
    State(state): State<Arc<AppState>>,
    Extension(Deadline(deadline)): Extension<Deadline>,
    Path(id): Path<String>,
) -> Response {
    let name = spinnaker::ADAPTER.name;
    let settings = &state.settings.spinnaker;
    let answer = match spinnaker::resume(settings, &id, jiff::Timestamp::now()) {
        Ok((claims, spinnaker::Poll::Decide(request))) => {
            match state.service.decide(name, *request, deadline).await {
                Ok(evaluation) => spinnaker::answer(&id, &claims, None, evaluation),
                Err(refusal) => Answer::refused(refusal.into()),
            }
        }
        Ok((claims, spinnaker::Poll::Decided)) => spinnaker::answer_decided(&id, &claims),
        Err(error) => Answer::refused(error),
    };
    respond(name, answer)
}

/// A deployment protection rule: acknowledged at once (GitHub waits 10
/// seconds at most), decided and reviewed in the background.
async fn github_protection_rule(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = github::ADAPTER.name;
    let Some(settings) = state.settings.github.clone() else {
        return respond(
            name,
            Answer::refused(ApiError::NotFound("GitHub is not configured".into())),
        );
    };
    let event = headers
        .get(github::EVENT_HEADER)
        .and_then(|v| v.to_str().ok());
    let delivery =
        match body.and_then(|DecisionBody(body)| github::request(&settings.routing, event, body)) {
            Ok(delivery) => delivery,
            Err(error) => return respond(name, Answer::refused(error)),
        };
    let (answer, ticket) = match &delivery {
        github::Delivery::Review(_, callback) => match state.reviews.claim(&callback.review_key) {
            reviews::Claim::Review(ticket) => (github::acknowledge(&delivery), Some(ticket)),
            reviews::Claim::Duplicate => (github::acknowledge_duplicate(callback), None),
            // GitHub marks the delivery failed; a person can redeliver it.
            reviews::Claim::Busy => return respond(name, Answer::refused(ApiError::Overloaded)),
        },
        github::Delivery::Ignored(_) => (github::acknowledge(&delivery), None),
    };
    if let (github::Delivery::Review(request, callback), Some(ticket)) = (delivery, ticket) {
        let state = state.clone();
        tokio::spawn(async move {
            // Its own time: the request that brought it is answered already.
            let deadline = tokio::time::Instant::now() + state.service.settings().request_timeout;
            let result = state
                .service
                .decide(name, *request, deadline)
                .await
                .map_err(ApiError::from);
            let review = github::review(&callback, &result);
            let outcome = github_app::report(&state.http, &settings, &callback, &review).await;
            // Only a verdict closes the run: a status report leaves it open.
            ticket.finish(outcome.is_ok() && review.state.is_some());
            state
                .service
                .metrics()
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
    respond(name, answer)
}

/// Kayenta's remote judge: the body (Kayenta's `RemoteJudgeRequest`, up
/// to `--max-judge-body-bytes`) is read only once the request has one of
/// the judgement slots, and judged by the stock judge policy.
async fn kayenta_judge(
    State(state): State<Arc<AppState>>,
    Extension(Deadline(deadline)): Extension<Deadline>,
    request: axum::extract::Request,
) -> Response {
    let name = kayenta::ADAPTER.name;
    let refused = |error: ApiError| respond(name, Answer::refused(error));
    let _slot = match state.service.admit_judgement() {
        Ok(slot) => slot,
        Err(refusal) => return refused(refusal.into()),
    };
    let read = read_body(
        request.into_body(),
        state.settings.max_judge_body_bytes,
        "--max-judge-body-bytes",
        Some(Deadline(deadline)),
    );
    let body = match read.await {
        Ok(body) => body,
        Err(error) => return refused(error),
    };
    // Megabytes of JSON: parsed off the async threads.
    let now = jiff::Timestamp::now().to_string();
    let parsed = tokio::task::spawn_blocking(move || kayenta::parse(body, &now)).await;
    let mut request = match parsed {
        Ok(Ok(request)) => request,
        Ok(Err(why)) => return refused(ApiError::BadRequest(format!("the request: {why}"))),
        Err(e) => {
            return refused(ApiError::Internal(format!(
                "reading the request failed: {e}"
            )));
        }
    };
    let (config, snapshot, sha256) = (
        std::mem::take(&mut request.config),
        std::mem::take(&mut request.snapshot),
        std::mem::take(&mut request.sha256),
    );
    let judged = state
        .service
        .judge(config, snapshot, sha256, "the request".into(), deadline)
        .await;
    match judged {
        Ok(judged) => respond(
            name,
            Answer::json(200, kayenta::result(&request, &judged.judgement)),
        ),
        Err(refusal) => refused(refusal.into()),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.service.is_ready() {
        Json(json!({"ready": true, "gate": state.service.gate().gate().file.name})).into_response()
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
        state.service.metrics().encode(),
    )
        .into_response()
}
