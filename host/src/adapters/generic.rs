//! The generic protocol: `POST /v1/evaluate` with `{"phase", "snapshot"}`
//! (or `{"phase", target fields...}`) answers 200 and the decision record.

use serde_json::Value;
use shipgate_policy::Phase;

use super::{
    Adapter, Answer, ApiError, Authentication, Call, Endpoint, Exchange, Method, Request, Route,
    input,
};
use crate::decision::Evaluation;
use crate::service::DecisionRequest;

pub(crate) const ADAPTER: Adapter = Adapter {
    name: "generic",
    authentication: Authentication::Bearer,
    routes: &[Route {
        method: Method::Post,
        path: "/v1/evaluate",
        endpoint: Endpoint::Decide(exchange),
    }],
    opt_in: false,
};

fn exchange(call: Call) -> Result<Exchange, Answer> {
    let asked = call.body.and_then(request).map_err(Answer::refused)?;
    Ok(Exchange::Decide(asked, Box::new(answer)))
}

/// The decision a body asks for: its `phase` and the rest as the input.
pub(crate) fn request(mut body: Request) -> Result<DecisionRequest, ApiError> {
    let phase = match body.fields.remove("phase") {
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
    Ok(DecisionRequest {
        phase,
        input: input(body)?,
    })
}

/// 200 and the record, or the error's status.
pub(crate) fn answer(result: Result<Evaluation, ApiError>) -> Answer {
    match result {
        Ok(evaluation) => Answer::decision(200, evaluation),
        Err(error) => Answer::refused(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Input;

    fn parse(body: &str) -> Result<DecisionRequest, ApiError> {
        request(Request::parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn the_phase_is_required_and_named() {
        let asked = parse(r#"{"phase": "abort", "service": "checkout"}"#).unwrap();
        assert_eq!(asked.phase, Phase::Abort);
        assert!(matches!(asked.input, Input::Target(_)));
        assert_eq!(
            parse(r#"{"service": "x"}"#).unwrap_err().message(),
            "phase: missing (preflight, promotion, abort or verify)"
        );
        assert_eq!(
            parse(r#"{"phase": 3, "service": "x"}"#)
                .unwrap_err()
                .message(),
            "phase: expected a string, found 3"
        );
    }

    #[test]
    fn errors_keep_their_status() {
        let answer = answer(Err(ApiError::Overloaded));
        assert_eq!(answer.status, 503);
        assert_eq!(answer.refusal, Some(ApiError::Overloaded));
    }
}
