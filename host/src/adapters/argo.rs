//! Argo Rollouts, web metric provider: `POST /v1/argo/{phase}` with the
//! template's `jsonBody`.
//!
//! Argo marks a measurement whose body is not JSON *Successful* without
//! checking its conditions, and counts a non-2xx answer as an *Error* that
//! is retried before it aborts. So every decision, and every request the
//! gate refuses, is HTTP 200 with a `decision`: the shipped template reads
//! `{$.decision}`, allow succeeds, rollback fails, and deny (including "this
//! request is wrong") is *Inconclusive*, which pauses for a human. Only
//! faults of the infrastructure (auth, overload, timeout) are non-2xx.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::api::{ApiError, Body, Input, phase_in_path, read_request};
use crate::server::state::AppState;

pub async fn analyze(
    State(state): State<Arc<AppState>>,
    Path(phase): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let phase = phase_in_path(&phase)?;
        let input =
            Input::from_request(read_request(body)?).inspect_err(|e| state.rejected("argo", e))?;
        state.decide("argo", phase, input).await
    }
    .await;
    match result {
        Ok(evaluation) => Json(evaluation).into_response(),
        Err(error) if error.is_infrastructure() || matches!(error, ApiError::NotFound(_)) => {
            error.into_response()
        }
        Err(error) => Json(json!({
            "decision": "deny",
            "summary": format!("shipgate refused the request: {}", error.message()),
            "error": error.message(),
        }))
        .into_response(),
    }
}
