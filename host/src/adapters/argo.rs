//! Argo Rollouts, web metric provider: `POST /v1/argo/{phase}` with the
//! template's `jsonBody`.
//!
//! Argo marks a measurement whose body is not JSON *Successful* without
//! checking its conditions, and counts a non-2xx answer as an *Error* that
//! is retried before it aborts. So every decision, and every request the
//! gate refuses, is HTTP 200 with a `decision`: the shipped template reads
//! `{$.decision}`, allow succeeds, rollback fails, and deny (including "this
//! request is wrong") is *Inconclusive*, which pauses for a human. Only
//! faults of the infrastructure (auth, overload, timeout) and an unknown
//! URL are non-2xx.

use serde_json::json;

use super::{
    Adapter, Answer, ApiError, Authentication, Call, Endpoint, Exchange, Method, Request, Route,
    input, phase_in_path,
};
use crate::decision::Evaluation;
use crate::service::DecisionRequest;

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "argo",
    authentication: Authentication::Bearer,
    routes: &[Route {
        method: Method::Post,
        path: "/v1/argo/{phase}",
        endpoint: Endpoint::Decide(exchange),
    }],
    opt_in: false,
};

/// A measurement: decide its phase, answer as Argo reads it.
fn exchange(call: Call) -> Result<Exchange, Answer> {
    let asked = request(call.parameter.as_deref().unwrap_or_default(), call.body)
        .map_err(|error| answer(Err(error)))?;
    Ok(Exchange::Decide(asked, Box::new(answer)))
}

/// The decision asked for by a measurement of `phase` (from the URL).
pub(crate) fn request(
    phase: &str,
    body: Result<Request, ApiError>,
) -> Result<DecisionRequest, ApiError> {
    let phase = phase_in_path(phase)?;
    Ok(DecisionRequest {
        phase,
        input: input(body?)?,
    })
}

/// Always 200 and a `decision` Argo's conditions can read, except for
/// faults Argo should retry.
pub(crate) fn answer(result: Result<Evaluation, ApiError>) -> Answer {
    match result {
        Ok(evaluation) => Answer::decision(200, evaluation),
        Err(error) if error.is_infrastructure() || matches!(error, ApiError::NotFound(_)) => {
            Answer::refused(error)
        }
        Err(error) => Answer {
            refusal: Some(error.clone()),
            ..Answer::json(
                200,
                json!({
                    "decision": "deny",
                    "summary": format!("shipgate refused the request: {}", error.message()),
                    "error": error.message(),
                }),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Body;

    #[test]
    fn a_request_argo_cannot_fix_by_retrying_pauses_the_rollout() {
        let body = Err(ApiError::BadRequest("not JSON".into()));
        let error = request("abort", body).unwrap_err();
        let answer = answer(Err(error));
        assert_eq!(answer.status, 200);
        let Body::Json(json) = &answer.body else {
            panic!("JSON")
        };
        assert_eq!(json["decision"], "deny");
        assert_eq!(json["summary"], "shipgate refused the request: not JSON");
        assert!(answer.refusal.is_some());
    }

    #[test]
    fn infrastructure_faults_and_unknown_phases_are_errors_argo_retries() {
        assert_eq!(answer(Err(ApiError::Timeout)).status, 503);
        let unknown = request("canary", Ok(Request::default())).unwrap_err();
        assert_eq!(answer(Err(unknown)).status, 404);
    }

    #[test]
    fn the_phase_comes_from_the_url() {
        let body = Request::parse(br#"{"service": "checkout"}"#).unwrap();
        let asked = request("promotion", Ok(body)).unwrap();
        assert_eq!(asked.phase, shipgate_policy::Phase::Promotion);
    }
}
