//! The generic endpoint: `POST /v1/evaluate` with `{"phase", "snapshot"}`
//! (or `{"phase", target fields...}`) answers the decision record.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use shipgate_policy::Phase;

use crate::server::api::{ApiError, Body, Input, read_request};
use crate::server::state::AppState;
use crate::verdict::Evaluation;

pub async fn evaluate(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Evaluation>, ApiError> {
    let request = async {
        let mut request = read_request(body)?;
        let phase = match request.fields.remove("phase") {
            Some(Value::String(name)) => name.parse::<Phase>().map_err(ApiError::BadRequest)?,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "phase: expected a string, found {other}"
                )));
            }
            None => {
                return Err(ApiError::BadRequest(
                    "phase: missing (preflight, promotion, abort or verify)".into(),
                ));
            }
        };
        Ok((phase, Input::from_request(request)?))
    };
    let (phase, input) = request
        .await
        .inspect_err(|e| state.rejected("generic", e))?;
    state.decide("generic", phase, input).await.map(Json)
}
