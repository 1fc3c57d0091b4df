//! Authentication per adapter: each says what its CD system can send.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::extract::respond;
use super::state::AppState;
use crate::adapters::{Answer, ApiError, Authentication};

/// What a route's authentication layer holds.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: Arc<AppState>,
    pub(crate) adapter: &'static str,
    pub(crate) authentication: Authentication,
}

/// Refuses a request that does not authenticate as its adapter requires.
pub(crate) async fn authenticate(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = match guard.authentication {
        Authentication::Bearer => bearer_ok(guard.state.settings.token.as_deref(), &request),
    };
    if allowed {
        next.run(request).await
    } else {
        respond(guard.adapter, Answer::refused(ApiError::Unauthorized))
    }
}

/// Whether the request carries the server's bearer token (compared in
/// constant time); any request passes when no token is configured.
fn bearer_ok(expected: Option<&str>, request: &Request) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}
