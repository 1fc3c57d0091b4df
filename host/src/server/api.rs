//! What every endpoint shares: reading a JSON body, the request's input
//! (a snapshot or a target), and errors as JSON with a status.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::sources::Target;
use shipgate_policy::Phase;

/// What a request asks to evaluate.
#[derive(Debug, Clone)]
pub enum Input {
    /// A full snapshot, as the caller's JSON text: validated and digested
    /// as sent, never re-serialized.
    Snapshot(String),
    /// What is being deployed; the gate's sources supply the evidence.
    Target(Target),
}

impl Input {
    /// A request's input: `snapshot`, or target fields, never both.
    pub fn from_request(request: Request) -> Result<Input, ApiError> {
        match request.snapshot {
            Some(snapshot) if request.fields.is_empty() => Ok(Input::Snapshot(snapshot)),
            Some(_) => {
                let keys: Vec<&str> = request.fields.keys().map(String::as_str).collect();
                Err(ApiError::BadRequest(format!(
                    "send either `snapshot` or the target fields, not both (found {})",
                    keys.join(", ")
                )))
            }
            None => Target::from_json(Value::Object(request.fields))
                .map(Input::Target)
                .map_err(ApiError::BadRequest),
        }
    }

    /// The request as JSON again: what a Spinnaker evaluation id carries.
    pub fn to_json(&self) -> Value {
        match self {
            // The text came from the JSON parser: it is JSON.
            Input::Snapshot(text) => {
                json!({ "snapshot": serde_json::from_str::<Value>(text).unwrap_or_default() })
            }
            Input::Target(target) => {
                let mut value = serde_json::to_value(target).expect("targets are JSON");
                if let Value::Object(object) = &mut value {
                    // Short ids: unset fields are left out.
                    object.retain(|_, v| !v.is_null());
                }
                value
            }
        }
    }
}

/// A request body as read by axum: within the size limit, or refused.
pub type Body = Result<Bytes, BytesRejection>;

/// A request's JSON object: its `snapshot` as text, its other fields.
#[derive(Debug, Default)]
pub struct Request {
    pub snapshot: Option<String>,
    pub fields: Map<String, Value>,
}

impl Request {
    /// A request held as a JSON value (a Spinnaker evaluation id's claims).
    pub fn from_value(value: Value) -> Request {
        let mut fields = match value {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        let snapshot = fields.remove("snapshot").map(|s| s.to_string());
        Request { snapshot, fields }
    }
}

/// Parses a request body as a JSON object, keeping `snapshot` as the
/// caller's text; errors give line and column.
pub fn read_request(body: Body) -> Result<Request, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(
            "the request body is larger than the server's --max-body-bytes".into(),
        ),
        _ => ApiError::BadRequest(rejection.body_text()),
    })?;
    let not_json = |e: serde_json::Error| {
        ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
    };
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::BadRequest(
                "the request body is empty; send a JSON object".into(),
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(not_json)?;
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
    }
    // Values stay unparsed text until we know which is the snapshot.
    let entries: BTreeMap<String, &RawValue> = serde_json::from_slice(&body).map_err(not_json)?;
    let mut request = Request::default();
    for (key, value) in entries {
        if key == "snapshot" {
            request.snapshot = Some(value.get().to_string());
        } else {
            let value = serde_json::from_str(value.get()).map_err(not_json)?;
            request.fields.insert(key, value);
        }
    }
    Ok(request)
}

/// A phase named in a URL.
pub fn phase_in_path(name: &str) -> Result<Phase, ApiError> {
    name.parse::<Phase>().map_err(|_| {
        ApiError::NotFound(format!(
            "no phase '{name}' (phases: preflight, promotion, abort, verify)"
        ))
    })
}

/// Why a request got no decision.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    BadRequest(String),
    TooLarge(String),
    Unauthorized,
    NotFound(String),
    /// Too many requests waiting: retry later.
    Overloaded,
    /// The request's time budget ran out.
    Timeout,
    /// The evidence the sources gave is not a valid snapshot.
    BadEvidence(String),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadEvidence(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The label of `shipgate_requests_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Overloaded => "overloaded",
            ApiError::Timeout => "timeout",
            ApiError::BadEvidence(_) => "bad_evidence",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::NotFound(m)
            | ApiError::BadEvidence(m)
            | ApiError::Internal(m) => m.clone(),
            ApiError::Unauthorized => {
                "missing or wrong bearer token (Authorization: Bearer TOKEN)".into()
            }
            ApiError::Overloaded => "too many requests are waiting; retry shortly".into(),
            ApiError::Timeout => "the request ran out of time before a decision".into(),
        }
    }

    /// Whether the fault is the infrastructure's (retry), not the request's.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthorized
                | ApiError::Overloaded
                | ApiError::Timeout
                | ApiError::BadEvidence(_)
                | ApiError::Internal(_)
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(json!({ "error": self.message() }))).into_response();
        if matches!(self, ApiError::Overloaded | ApiError::Timeout) {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
