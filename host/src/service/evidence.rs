//! The snapshot of a target-only request: the sources' evidence assembled
//! and validated. What the sources could not find, and what they gave that
//! a snapshot refuses (two counters scraped at different instants can give
//! more errors than requests: exactly the worst canaries), is missing
//! evidence that names the field, so a decision is still made.

use serde_json::{Map, Value};
use shipgate_policy::Phase;

use super::Refusal;
use crate::decision::EvidenceProblem;
use crate::evaluate::PreparedGate;
use crate::snapshot::{self, ValidSnapshot};
use crate::sources::{self, Evidence, Missing, Target};

/// The most fields one snapshot may lose to validation before the sources
/// are deemed broken (each refusal is one field).
const MAX_REFUSED_FIELDS: usize = 64;

/// The snapshot for `target`, and what is missing from it.
pub(super) async fn gather(
    gate: &PreparedGate,
    target: &Target,
    phase: Phase,
) -> Result<(ValidSnapshot, Vec<EvidenceProblem>), Refusal> {
    let now = jiff::Timestamp::now();
    let declared = &gate.gate().file;
    let asked = sources::Asked {
        target,
        phase,
        at: now,
    };
    let mut evidence = declared.sources.collect(asked).await;
    for found in &mut evidence {
        refuse_unknown_fields(found);
    }
    let value = sources::assemble(target, &declared.rollout, &evidence, now);
    let snapshot = validated(value, &mut evidence)?;
    let problems = evidence
        .iter()
        .flat_map(|e| e.missing.iter().map(|m| EvidenceProblem::of(e.source, m)))
        .collect();
    Ok((snapshot, problems))
}

/// A value for a place the snapshot does not have would be dropped without
/// a word when the snapshot is read: it is missing evidence that names it
/// instead (a facts file's misspelt key).
fn refuse_unknown_fields(evidence: &mut Evidence) {
    let (known, unknown): (Vec<_>, Vec<_>) = std::mem::take(&mut evidence.values)
        .into_iter()
        .partition(|(field, _)| snapshot::knows_path(&field.path()));
    evidence.values = known;
    evidence
        .missing
        .extend(unknown.into_iter().map(|(field, _)| Missing {
            what: field.path(),
            query: String::new(),
            why: "the snapshot has no such field".into(),
        }));
}

/// Parses an assembled snapshot. A field the validation refuses is taken
/// out and recorded as missing in the evidence of the source that gave it.
pub(crate) fn validated(
    mut value: Value,
    evidence: &mut [Evidence],
) -> Result<ValidSnapshot, Refusal> {
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
            what: field.clone(),
            query: String::new(),
            why: format!("refused: {} (it gave {refused})", error.message),
        };
        let gave = |e: &&mut Evidence| {
            e.values.iter().any(|(given, _)| {
                let path = given.path();
                path == field
                    || path.starts_with(&format!("{field}."))
                    || field.starts_with(&format!("{path}."))
            })
        };
        match evidence.iter_mut().find(gave) {
            Some(source) => source.missing.push(missing),
            None => {
                // The caller's own field: its mistake, not the sources'.
                return Err(Refusal::BadSnapshot(format!(
                    "{field}: not valid in a snapshot: {}",
                    error.message
                )));
            }
        }
    }
    Err(Refusal::BadEvidence(
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
    use crate::sources::{Cohort, Field, Measure, Quantile};
    use serde_json::json;

    fn evidence(values: Vec<(Field, Value)>) -> Evidence {
        Evidence {
            source: "prometheus",
            values,
            missing: vec![],
        }
    }

    fn canary(measure: Measure) -> Field {
        Field::Metric(Cohort::Canary, measure)
    }

    #[test]
    fn a_refused_field_is_missing_evidence_not_a_failed_request() {
        let value = json!({"schema_version": 1, "now": "2026-11-26T14:00:00Z",
            "metrics": {"canary": {"requests": 100.0, "errors": 120.0}}});
        let mut found = [evidence(vec![
            (canary(Measure::Requests), json!(100.0)),
            (canary(Measure::Errors), json!(120.0)),
        ])];
        let snapshot = validated(value, &mut found).unwrap();
        let canary = snapshot.to_value()["metrics"]["canary"].clone();
        assert_eq!(canary, json!({"requests": 100.0}));
        let missing = &found[0].missing[0];
        assert_eq!(missing.what, "metrics.canary.errors");
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
            Field::Fact("alerts".into()),
            json!([{"name": "a", "since": "yesterday"}]),
        )])];
        let snapshot = validated(value, &mut found).unwrap();
        assert!(snapshot.to_value().get("alerts").is_none());
        assert_eq!(found[0].missing[0].what, "alerts");
    }

    /// Every place a source can write is a field of the snapshot: a place
    /// added to `Field` without one fails here, not silently at run time.
    #[test]
    fn every_place_a_source_writes_is_in_the_snapshot() {
        let mut places = vec![
            Field::WindowSeconds,
            Field::RolloutWeight,
            Field::StageStartedAt,
        ];
        for cohort in Cohort::ALL {
            let measures = [
                Measure::Requests,
                Measure::Errors,
                Measure::Business("orders".into()),
            ]
            .into_iter()
            .chain([Quantile::P50, Quantile::P95, Quantile::P99].map(Measure::Latency));
            places.extend(measures.map(|m| Field::Metric(cohort, m)));
        }
        for place in places {
            assert!(snapshot::knows_path(&place.path()), "{place}");
        }
        for unknown in [
            "metrics.canary.erors",
            "ci.stauts",
            "nonsense",
            "metrics.canary.latency_ms.p999",
        ] {
            assert!(!snapshot::knows_path(unknown), "{unknown}");
        }
    }

    #[test]
    fn a_fact_the_snapshot_does_not_have_is_missing_evidence_that_names_it() {
        let mut found = evidence(vec![
            (Field::Fact("ci.status".into()), json!("passed")),
            (Field::Fact("ci.stauts".into()), json!("passed")),
        ]);
        refuse_unknown_fields(&mut found);
        assert_eq!(found.values.len(), 1);
        assert_eq!(found.missing[0].what, "ci.stauts");
        assert_eq!(found.missing[0].why, "the snapshot has no such field");
    }
}
