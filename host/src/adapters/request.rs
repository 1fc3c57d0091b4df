//! What every adapter reads from a request body: a JSON object whose
//! `snapshot` is kept as the caller's text, and the input it asks about.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use shipgate_policy::Phase;

use super::ApiError;
use crate::service::Input;
use crate::sources::Target;

/// A request's input: `snapshot`, or target fields, never both.
pub(crate) fn input(request: Request) -> Result<Input, ApiError> {
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

/// A request's JSON object: its `snapshot` as text, its other fields.
#[derive(Debug, Default)]
pub(crate) struct Request {
    pub(crate) snapshot: Option<String>,
    pub(crate) fields: Map<String, Value>,
}

impl Request {
    /// A request held as a JSON value (a Spinnaker evaluation id's claims).
    pub(crate) fn from_value(value: Value) -> Request {
        let mut fields = match value {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        let snapshot = fields.remove("snapshot").map(|s| s.to_string());
        Request { snapshot, fields }
    }

    /// Parses a request body as a JSON object, keeping `snapshot` as the
    /// caller's text; errors give line and column.
    pub(crate) fn parse(body: &[u8]) -> Result<Request, ApiError> {
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
                serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_json)?;
                return Err(ApiError::BadRequest(
                    "the request body must be a JSON object".into(),
                ));
            }
        }
        // Values stay unparsed text until we know which is the snapshot.
        let entries: BTreeMap<String, &RawValue> =
            serde_json::from_slice(body).map_err(not_json)?;
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
}

/// A phase named in a URL.
pub(crate) fn phase_in_path(name: &str) -> Result<Phase, ApiError> {
    name.parse::<Phase>().map_err(|_| {
        ApiError::NotFound(format!(
            "no phase '{name}' (phases: preflight, promotion, abort, verify)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_json_objects_with_the_snapshot_kept_as_sent() {
        let request = Request::parse(br#"{"phase": "abort", "snapshot": {"now" :  1}}"#).unwrap();
        assert_eq!(request.snapshot.as_deref(), Some(r#"{"now" :  1}"#));
        assert_eq!(request.fields["phase"], "abort");
        let error = |body: &[u8]| Request::parse(body).unwrap_err().message();
        assert_eq!(
            error(b"  "),
            "the request body is empty; send a JSON object"
        );
        assert_eq!(error(b"[1]"), "the request body must be a JSON object");
        assert!(error(b"{\"a\": }").starts_with("the request body is not valid JSON: "));
    }

    #[test]
    fn a_request_sends_a_snapshot_or_a_target_never_both() {
        let both = Request::parse(br#"{"snapshot": {}, "service": "x"}"#).unwrap();
        assert_eq!(
            input(both).unwrap_err(),
            ApiError::BadRequest(
                "send either `snapshot` or the target fields, not both (found service)".into()
            )
        );
        let target = Request::parse(br#"{"service": "checkout", "weight": "25"}"#).unwrap();
        let Input::Target(target) = input(target).unwrap() else {
            panic!("a target")
        };
        assert_eq!(target.weight, Some(25.0));
        assert_eq!(
            Input::Target(target).to_json(),
            json!({"service": "checkout", "weight": 25.0})
        );
    }
}
