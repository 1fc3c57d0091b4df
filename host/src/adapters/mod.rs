//! Adapters: each CD system's protocol as pure mappings, testable without
//! HTTP. A CD system's request becomes a [`DecisionRequest`] (a phase and a
//! snapshot or a target); a decision becomes that system's [`Answer`]
//! (status, body, and what the status means to it). The server routes
//! requests to them; they know nothing of HTTP servers, gates or policies.
//!
//! To add an adapter, write its module here (request → [`DecisionRequest`],
//! decision → [`Answer`], and its [`Authentication`]), declare it below,
//! and give it a route in `server/routes.rs`: three files.

pub(crate) mod argo;
mod error;
pub(crate) mod flagger;
pub(crate) mod generic;
pub(crate) mod github;
mod request;
pub(crate) mod spinnaker;

use serde::Serialize;
use serde_json::{Value, json};

use crate::decision::Evaluation;

pub(crate) use error::ApiError;
pub(crate) use request::{DecisionRequest, Input, Request, phase_in_path};

/// How a CD system proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authentication {
    /// `Authorization: Bearer TOKEN`, when the server has a token.
    Bearer,
    /// GitHub's `X-Hub-Signature-256`: HMAC-SHA256 of the body with the
    /// webhook secret.
    GithubSignature,
}

/// What a CD system receives.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// An absolute URL to poll (`Location`), for systems that poll.
    pub(crate) location: Option<String>,
    pub(crate) body: Body,
    /// Set when the request got no decision: the server counts and logs
    /// every refusal, whatever status the system's protocol answers it with.
    pub(crate) refusal: Option<ApiError>,
}

/// An answer's JSON body.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Body {
    /// The decision record itself.
    Decision(Box<Evaluation>),
    /// Anything else the protocol wants.
    Json(Value),
}

impl Answer {
    /// `status` with the decision record as the body.
    pub(crate) fn decision(status: u16, evaluation: Evaluation) -> Answer {
        Answer {
            status,
            location: None,
            body: Body::Decision(Box::new(evaluation)),
            refusal: None,
        }
    }

    /// `status` with a JSON body.
    pub(crate) fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            location: None,
            body: Body::Json(body),
            refusal: None,
        }
    }

    /// The error's own status, with `{"error": message}`.
    pub(crate) fn refused(error: ApiError) -> Answer {
        Answer {
            refusal: Some(error.clone()),
            ..Answer::json(error.status(), json!({ "error": error.message() }))
        }
    }
}
