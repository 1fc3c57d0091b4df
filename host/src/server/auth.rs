//! Authentication per adapter: each says what its CD system can send.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::extract::{Deadline, read_body, respond};
use super::listener::Peer;
use super::state::AppState;
use crate::adapters::{Adapter, Answer, ApiError, Authentication, github};

/// How long a webhook's body may take to arrive before its signature is
/// checked (GitHub sends a delivery at once, and waits 10 s in all).
const WEBHOOK_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a route's authentication layer holds.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) state: Arc<AppState>,
    pub(crate) adapter: &'static Adapter,
}

/// Refuses a request that does not authenticate as its adapter requires.
pub(crate) async fn authenticate(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let refuse = |error| respond(guard.adapter.name, Answer::refused(error));
    match guard.adapter.authentication {
        Authentication::Bearer => {
            if !bearer_ok(guard.state.settings.token.as_deref(), &request) {
                return refuse(ApiError::Unauthorized);
            }
            next.run(request).await
        }
        Authentication::GithubSignature => {
            let Some(settings) = &guard.state.settings.github else {
                return refuse(ApiError::NotFound("GitHub is not configured".into()));
            };
            // The signature covers the body: read it, check it, and hand
            // the same bytes on. It comes from anyone until it is checked:
            // read with a bound of its own (a few at once, briefly), never
            // in a place of the decisions'.
            let state = &guard.state;
            let from_peer = match request.extensions().get::<Peer>() {
                Some(Peer(address)) => {
                    let share = super::state::WEBHOOK_READS_PER_PEER;
                    match state.webhook_readers.clone().admit(*address, share) {
                        Some(counted) => Some(counted),
                        None => return refuse(ApiError::Overloaded),
                    }
                }
                None => None,
            };
            let Ok(reading) = state.webhook_reads.clone().try_acquire_owned() else {
                return refuse(ApiError::Overloaded);
            };
            let (parts, body) = request.into_parts();
            let limit = guard.state.settings.max_body_bytes;
            let deadline = Deadline(tokio::time::Instant::now() + WEBHOOK_READ_TIMEOUT);
            let read = read_body(body, limit, "--max-body-bytes", Some(deadline)).await;
            drop((reading, from_peer));
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(error) => return refuse(error),
            };
            let signature = parts
                .headers
                .get(github::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            if !github::signature_ok(&settings.webhook_secret, &bytes, signature) {
                return refuse(ApiError::BadSignature("X-Hub-Signature-256"));
            }
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
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
