//! The snapshot of a target-only request: the sources' evidence assembled
//! and validated. What the sources could not find, and what they gave that
//! a snapshot refuses (two counters scraped at different instants can give
//! more errors than requests: exactly the worst canaries), is missing
//! evidence that names the field, so a decision is still made.

use serde_json::{Map, Value};
use shipgate_policy::Phase;

use crate::adapters::ApiError;
use crate::decision::PolicyOutcome;
use crate::evaluate::PreparedGate;
use crate::snapshot::{self, ValidSnapshot};
use crate::sources::{self, Evidence, Missing, Target};

/// The most fields one snapshot may lose to validation before the sources
/// are deemed broken (each refusal is one field).
const MAX_REFUSED_FIELDS: usize = 64;

/// The snapshot for `target`, and what is missing from it as denying
/// outcomes.
pub(super) async fn gather(
    gate: &PreparedGate,
    target: &Target,
    phase: Phase,
) -> Result<(ValidSnapshot, Vec<PolicyOutcome>), ApiError> {
    let now = jiff::Timestamp::now();
    let declared = &gate.gate().file;
    let asked = sources::Asked {
        target,
        phase,
        at: now,
    };
    let mut evidence = declared.sources.collect(asked).await;
    let value = sources::assemble(target, &declared.rollout, &evidence, now);
    let snapshot = validated(value, &mut evidence)?;
    let missing = evidence.iter().filter_map(PolicyOutcome::missing_evidence);
    Ok((snapshot, missing.collect()))
}

/// Parses an assembled snapshot. A field the validation refuses is taken
/// out and recorded as missing in the evidence of the source that gave it.
pub(crate) fn validated(
    mut value: Value,
    evidence: &mut [Evidence],
) -> Result<ValidSnapshot, ApiError> {
    for _ in 0..MAX_REFUSED_FIELDS {
        let error = match snapshot::parse(value.to_string().as_bytes()) {
            Ok(snapshot) => return Ok(snapshot),
            Err(error) => error,
        };
        let field = removable(&error.path);
        let Some(refused) = remove(&mut value, &field) else {
            break;
        };
        let missing = Missing {
            field: field.clone(),
            query: String::new(),
            why: format!("refused: {} (it gave {refused})", error.message),
        };
        let gave = |e: &&mut Evidence| {
            e.values.iter().any(|(path, _)| {
                path == &field
                    || path.starts_with(&format!("{field}."))
                    || field.starts_with(&format!("{path}."))
            })
        };
        match evidence.iter_mut().find(gave) {
            Some(source) => source.missing.push(missing),
            None => {
                // The caller's own field: its mistake, not the sources'.
                return Err(ApiError::BadRequest(format!(
                    "{field}: not valid in a snapshot: {}",
                    error.message
                )));
            }
        }
    }
    Err(ApiError::BadEvidence(
        "the sources' evidence is not a valid snapshot".into(),
    ))
}

/// The field to take out for a problem at `path`: an array's element cannot
/// be taken out alone, so the whole array goes (`alerts[0].since` →
/// `alerts`).
fn removable(path: &str) -> String {
    let mut kept = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, _)) => {
                kept.push(name);
                break;
            }
            None => kept.push(part),
        }
    }
    kept.join(".")
}

/// Removes a dotted field, returning what it held.
fn remove(value: &mut Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return None;
    }
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut object: &mut Map<String, Value> = value.as_object_mut()?;
    for key in parents.into_iter().flat_map(|p| p.split('.')) {
        object = object.get_mut(key)?.as_object_mut()?;
    }
    object.remove(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evidence(values: Vec<(&str, Value)>) -> Evidence {
        Evidence {
            source: "prometheus",
            values: values
                .into_iter()
                .map(|(f, v)| (f.to_string(), v))
                .collect(),
            missing: vec![],
        }
    }

    #[test]
    fn a_refused_field_is_missing_evidence_not_a_failed_request() {
        let value = json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z",
            "metrics": {"canary": {"requests": 100.0, "errors": 120.0}}});
        let mut found = [evidence(vec![
            ("metrics.canary.requests", json!(100.0)),
            ("metrics.canary.errors", json!(120.0)),
        ])];
        let snapshot = validated(value, &mut found).unwrap();
        let canary = snapshot.to_value()["metrics"]["canary"].clone();
        assert_eq!(canary, json!({"requests": 100.0}));
        let missing = &found[0].missing[0];
        assert_eq!(missing.field, "metrics.canary.errors");
        assert!(
            missing.why.contains("errors cannot exceed requests"),
            "{}",
            missing.why
        );
        assert!(missing.why.ends_with("(it gave 120.0)"), "{}", missing.why);
    }

    #[test]
    fn a_refused_element_takes_its_array_with_it() {
        assert_eq!(removable("alerts[0].since"), "alerts");
        assert_eq!(removable("metrics.canary.errors"), "metrics.canary.errors");
        let value = json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z",
            "alerts": [{"name": "a", "since": "yesterday"}]});
        let mut found = [evidence(vec![(
            "alerts",
            json!([{"name": "a", "since": "yesterday"}]),
        )])];
        let snapshot = validated(value, &mut found).unwrap();
        assert!(snapshot.to_value().get("alerts").is_none());
        assert_eq!(found[0].missing[0].field, "alerts");
    }
}
