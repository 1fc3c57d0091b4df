//! The snapshot of a target: its identity from the request, its metrics
//! from the sources' evidence, and its stage from the declared plan.

use serde_json::{Map, Value, json};
use shipgate_policy::snapshot::{RolloutPlan, SCHEMA_VERSION};

use super::{Evidence, Target};

/// The snapshot for `target` at `now`, with the evidence found. What the
/// request says wins over what a query says, and the first source to give
/// a field wins over later ones. The stage index, when the request gives
/// only a weight, is that weight's place in the declared plan.
pub(crate) fn assemble(
    target: &Target,
    plan: &RolloutPlan,
    evidence: &[Evidence],
    now: jiff::Timestamp,
) -> Value {
    let mut snapshot = json!({"schema_version": SCHEMA_VERSION, "now": now.to_string()});
    let deployment_id = target.deployment_id.clone().or_else(|| {
        let service = target.service.as_deref()?;
        let namespace = target.namespace.as_deref().unwrap_or("default");
        Some(match &target.canary_hash {
            Some(hash) => format!("{namespace}/{service}@{hash}"),
            None => format!("{namespace}/{service}"),
        })
    });
    let identity = [
        ("deployment.id", deployment_id.map(Value::from)),
        (
            "deployment.service",
            target.service.clone().map(Value::from),
        ),
        ("deployment.commit", target.commit.clone().map(Value::from)),
        (
            "deployment.environment",
            target.environment.clone().map(Value::from),
        ),
        ("rollout.weight", target.weight.map(Value::from)),
        (
            "rollout.stage_started_at",
            target.stage_started_at.clone().map(Value::from),
        ),
    ];
    for (field, value) in identity {
        put(&mut snapshot, field, value);
    }
    for (field, value) in evidence.iter().flat_map(|e| &e.values) {
        let path = field.path();
        if lookup(&snapshot, &path).is_none() {
            put(&mut snapshot, &path, Some(value.clone()));
        }
    }
    let stage_index = target.stage_index.or_else(|| {
        let weight = lookup(&snapshot, "rollout.weight")?.as_f64()?;
        let position = plan.stages.iter().position(|s| *s == weight)?;
        Some(position as f64)
    });
    // Validated as a whole number below 1000.
    let stage_index = stage_index.map(|i| Value::from(i as u64));
    put(&mut snapshot, "rollout.stage_index", stage_index);
    snapshot
}

fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// Sets `path` (dotted) in `value`, creating objects on the way; `None`
/// leaves the snapshot without the field.
fn put(value: &mut Value, path: &str, field: Option<Value>) {
    let Some(field) = field else { return };
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("a path has a key");
    let mut object = value;
    for key in keys {
        object = object
            .as_object_mut()
            .expect("snapshot paths go through objects")
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    object
        .as_object_mut()
        .expect("snapshot paths go through objects")
        .insert(last.to_string(), field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{Cohort, Field, Measure};

    #[test]
    fn assembled_snapshots_place_evidence_and_derive_the_stage() {
        let plan = RolloutPlan {
            stages: vec![5.0, 10.0, 25.0, 50.0, 100.0],
            ..Default::default()
        };
        let target = Target {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            canary_hash: Some("bbb".into()),
            weight: Some(25.0),
            ..Default::default()
        };
        let evidence = Evidence {
            source: "test",
            values: vec![
                (Field::Metric(Cohort::Canary, Measure::Errors), 3.0.into()),
                (Field::StageStartedAt, "2025-11-26T14:00:00Z".into()),
                (Field::RolloutWeight, 50.0.into()),
            ],
            missing: vec![],
        };
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let snapshot = assemble(&target, &plan, &[evidence], now);
        assert_eq!(snapshot["schema_version"], SCHEMA_VERSION);
        assert_eq!(snapshot["deployment"]["id"], "shop/checkout@bbb");
        assert_eq!(snapshot["metrics"]["canary"]["errors"], 3.0);
        // The request's weight wins over the query's.
        assert_eq!(snapshot["rollout"]["weight"], 25.0);
        assert_eq!(snapshot["rollout"]["stage_index"], 2);
        assert_eq!(
            snapshot["rollout"]["stage_started_at"],
            "2025-11-26T14:00:00Z"
        );
        assert_eq!(snapshot["now"], "2026-11-26T14:00:00Z");
    }
}
