//! Adapters: each CD system's protocol as pure mappings, testable without
//! HTTP. A CD system's request becomes a [`DecisionRequest`] (a phase and a
//! snapshot or a target); a decision becomes that system's [`Answer`]
//! (status, body, and what the status means to it). The server routes
//! requests to them; they know nothing of HTTP servers, gates or policies.
//!
//! [`ADAPTERS`] is the one list of them: the server mounts each one's
//! routes from it, `--adapters` names them from it, the fuzzers and the
//! tests walk it. To add an adapter, write its module here (its [`Adapter`]
//! constant: name, [`Authentication`], routes whose [`Endpoint::Decide`]
//! maps a request to a decision and the decision to an [`Answer`]), and
//! add one line to [`ADAPTERS`]. An endpoint the server must handle itself
//! ([`Custom`]) is a variant the compiler then asks the server and the
//! fuzzers to handle.

pub(crate) mod argo;
mod error;
pub(crate) mod flagger;
pub(crate) mod generic;
pub(crate) mod github;
pub(crate) mod kayenta;
mod request;
pub(crate) mod spinnaker;

use serde::Serialize;
use serde_json::{Value, json};

use crate::decision::Evaluation;

pub(crate) use error::ApiError;
pub(crate) use request::{Request, input, phase_in_path};

use crate::service::DecisionRequest;

/// Every adapter shipgate serves, in the order `--adapters` lists them.
pub(crate) const ADAPTERS: [&Adapter; 6] = [
    &generic::ADAPTER,
    &argo::ADAPTER,
    &spinnaker::ADAPTER,
    &flagger::ADAPTER,
    &github::ADAPTER,
    &kayenta::ADAPTER,
];

/// The adapter named `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static Adapter> {
    ADAPTERS.into_iter().find(|a| a.name == name)
}

/// A CD system's protocol: what it is called, how it proves who it is,
/// and the routes it calls.
#[derive(Debug)]
pub(crate) struct Adapter {
    /// Its name in `--adapters`, metrics and logs.
    pub(crate) name: &'static str,
    pub(crate) authentication: Authentication,
    pub(crate) routes: &'static [Route],
    /// Served only when `--adapters` names it.
    pub(crate) opt_in: bool,
}

/// One route: a method, an axum path (`/v1/argo/{phase}`, at most one
/// `{parameter}`), and what answers it.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) endpoint: Endpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// What answers a route.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    /// A request mapped to a decision and the decision to an answer, which
    /// the server runs the same way for every adapter. A request the adapter
    /// refuses is answered in its protocol's terms (the `Err` answer).
    Decide(fn(Call) -> Result<Exchange, Answer>),
    /// An endpoint the server handles itself.
    Custom(Custom),
}

/// Endpoints that need more than a request and a decision: settings, the
/// request's headers, polling, calls back to the CD system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Custom {
    /// Spinnaker's first call: decide, and answer where to poll.
    SpinnakerStart,
    /// Spinnaker polling an evaluation's status URL.
    SpinnakerPoll,
    /// A GitHub deployment protection rule: acknowledged at once, reviewed
    /// through GitHub's API afterwards.
    GithubProtectionRule,
    /// Kayenta's remote judge: a canary config and series, judged by the
    /// stock judge policy (not the served gate), answered as Kayenta's
    /// `CanaryJudgeResult`.
    KayentaJudge,
}

/// What a route was called with.
pub(crate) struct Call {
    /// The route's `{parameter}`, if it has one.
    pub(crate) parameter: Option<String>,
    /// The body, read and parsed, or why it could not be.
    pub(crate) body: Result<Request, ApiError>,
}

/// What an adapter makes of a call.
pub(crate) enum Exchange {
    /// Decide this, then answer with the function.
    Decide(
        DecisionRequest,
        Box<dyn FnOnce(Result<Evaluation, ApiError>) -> Answer + Send>,
    ),
    /// Answer at once without a decision; the note is logged.
    Acknowledge { answer: Answer, note: String },
}

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
