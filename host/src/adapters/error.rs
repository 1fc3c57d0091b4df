//! Why a request got no decision, in terms every adapter maps to its CD
//! system's answer.

use crate::service::Refusal;

/// Why a request got no decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    BadRequest(String),
    TooLarge(String),
    Unauthorized,
    /// A webhook whose signature is missing or wrong.
    BadSignature(&'static str),
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
    /// The HTTP status this error is answered with, unless an adapter's
    /// protocol says otherwise.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::TooLarge(_) => 413,
            ApiError::Unauthorized | ApiError::BadSignature(_) => 401,
            ApiError::NotFound(_) => 404,
            ApiError::Overloaded | ApiError::Timeout => 503,
            ApiError::BadEvidence(_) => 502,
            ApiError::Internal(_) => 500,
        }
    }

    /// The label of `shipgate_requests_rejected_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::NotFound(_) => "not_found",
            ApiError::Overloaded => "overloaded",
            ApiError::Timeout => "timeout",
            ApiError::BadEvidence(_) => "bad_evidence",
            ApiError::Internal(_) => "internal",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::NotFound(m)
            | ApiError::BadEvidence(m)
            | ApiError::Internal(m) => m.clone(),
            ApiError::Unauthorized => {
                "missing or wrong bearer token (Authorization: Bearer TOKEN)".into()
            }
            ApiError::BadSignature(header) => {
                format!(
                    "missing or wrong {header} (HMAC-SHA256 of the body with the webhook secret)"
                )
            }
            ApiError::Overloaded => "too many requests are waiting; retry shortly".into(),
            ApiError::Timeout => "the request ran out of time before a decision".into(),
        }
    }

    /// Whether the fault is the infrastructure's (retry), not the request's.
    pub(crate) fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthorized
                | ApiError::BadSignature(_)
                | ApiError::Overloaded
                | ApiError::Timeout
                | ApiError::BadEvidence(_)
                | ApiError::Internal(_)
        )
    }

    /// Whether the caller should retry after a short wait.
    pub(crate) fn retry_later(&self) -> bool {
        matches!(self, ApiError::Overloaded | ApiError::Timeout)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::BadSnapshot(why) => ApiError::BadRequest(why),
            Refusal::Overloaded => ApiError::Overloaded,
            Refusal::Timeout => ApiError::Timeout,
            Refusal::BadEvidence(why) => ApiError::BadEvidence(why),
            Refusal::Internal(why) => ApiError::Internal(why),
        }
    }
}
