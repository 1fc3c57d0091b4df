//! The one way a route reads a request body and the one way anything it
//! refuses is answered, so that every refusal is counted and logged in one
//! place ([`observe`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::adapters::{self, Answer, ApiError};

/// When an admitted request must be answered: set by [`admit`], read by
/// handlers (`Extension<Deadline>`) and by whatever reads the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(pub(crate) tokio::time::Instant);

/// A decision request's body: a JSON object within the size limit, its
/// `snapshot` kept as the caller's text.
pub(crate) struct DecisionBody(pub adapters::Request);

impl<S: Send + Sync> FromRequest<S> for DecisionBody {
    type Rejection = ApiError;

    /// Reads the body within the request's time: a client that sends it
    /// slowly gets 503, and holds its admission no longer.
    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let deadline = request.extensions().get::<Deadline>().copied();
        let bytes = within(deadline, Bytes::from_request(request, state))
            .await?
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(
                    "the request body is larger than the server's --max-body-bytes".into(),
                ),
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
        adapters::Request::parse(&bytes).map(DecisionBody)
    }
}

/// Runs `read` (of a body) before `deadline`: a client that sends its body
/// slowly gets 503, and holds its admission no longer.
pub(crate) async fn within<T>(
    deadline: Option<Deadline>,
    read: impl Future<Output = T>,
) -> Result<T, ApiError> {
    match deadline {
        Some(Deadline(at)) => tokio::time::timeout_at(at, read)
            .await
            .map_err(|_| ApiError::Timeout),
        None => Ok(read.await),
    }
}

/// A request body read whole within `deadline`, at most `limit` bytes:
/// beyond it, 413 naming `flag`, the option that sets the limit.
pub(crate) async fn read_body(
    body: axum::body::Body,
    limit: usize,
    flag: &str,
    deadline: Option<Deadline>,
) -> Result<Bytes, ApiError> {
    let error = match within(deadline, axum::body::to_bytes(body, limit)).await? {
        Ok(bytes) => return Ok(bytes),
        Err(error) => error,
    };
    if error.into_inner().is::<http_body_util::LengthLimitError>() {
        Err(ApiError::TooLarge(format!(
            "the request body is larger than the server's {flag} ({limit})"
        )))
    } else {
        Err(ApiError::BadRequest(
            "the request body could not be read".into(),
        ))
    }
}

/// Admission, after authentication and before the body is read: a request
/// beyond its adapter's `--max-pending` is answered 503 at once (never an
/// unbounded queue); an admitted one runs
/// with its [`Deadline`], `--request-timeout` from now, for its body, its
/// evidence and its evaluation.
pub(crate) async fn admit(
    State((state, adapter)): State<(Arc<AppState>, &'static str)>,
    mut request: Request,
    next: Next,
) -> Response {
    let admission = match state.service.admit(adapter) {
        Ok(admission) => admission,
        Err(refusal) => return respond(adapter, Answer::refused(refusal.into())),
    };
    request
        .extensions_mut()
        .insert(Deadline(admission.deadline));
    next.run(request).await
}

/// A refusal on its way out: which adapter refused what. [`observe`]
/// counts it.
#[derive(Debug, Clone)]
struct Refused {
    adapter: &'static str,
    error: ApiError,
}

/// An adapter's answer as an HTTP response. A refusal (whatever its status)
/// is marked for [`observe`]; overload and timeouts ask to retry later.
pub(crate) fn respond(adapter: &'static str, answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(answer.body)).into_response();
    if let Some(location) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(error) = answer.refusal {
        if error.retry_later() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(Refused { adapter, error });
    }
    response
}

/// Counts and logs every request answered without a decision: the one
/// place refusals are recorded, whichever layer or adapter refused.
pub(crate) async fn observe(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(Refused { adapter, error }) = response.extensions().get::<Refused>() {
        state.service.metrics().rejected(error.reason());
        tracing::warn!(
            adapter,
            status = response.status().as_u16(),
            error = %error.message(),
            "no decision"
        );
    }
    response
}

/// A refusal outside any adapter's protocol (an unknown URL).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        respond("http", Answer::refused(self))
    }
}
