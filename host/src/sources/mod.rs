//! Building a snapshot in server mode: the request names what is being
//! deployed (a [`Target`]), and the gate's sources supply the evidence.

pub mod prometheus;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use shipgate_policy::{Decision, Finding};

use crate::gate::{Gate, Mode};
use crate::verdict::{EVIDENCE_MODULE_PREFIX, PolicyOutcome};
use prometheus::{Evidence, Missing};

/// What a request says is being deployed. CD systems send their arguments
/// as strings (Argo args, Flagger metadata), so numbers may be strings too.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub service: Option<String>,
    pub namespace: Option<String>,
    pub environment: Option<String>,
    pub deployment_id: Option<String>,
    /// Pod-template hash (or workload name) of the stable version.
    pub stable_hash: Option<String>,
    /// Pod-template hash (or workload name) of the canary.
    pub canary_hash: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub weight: Option<f64>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub stage_index: Option<f64>,
    /// RFC 3339.
    pub stage_started_at: Option<String>,
}

/// The one source a snapshot's evidence is named after in decisions.
pub const EVIDENCE_POLICY: &str = "evidence";

impl Target {
    /// Reads a target from a JSON object; errors name the field.
    pub fn from_json(value: Value) -> Result<Target, String> {
        let target: Target = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })?;
        target.validate()?;
        Ok(target)
    }

    /// Identity values end up inside PromQL label matchers and log lines:
    /// only the characters Kubernetes names and hashes use are accepted.
    fn validate(&self) -> Result<(), String> {
        let texts = [
            ("service", &self.service),
            ("namespace", &self.namespace),
            ("environment", &self.environment),
            ("deployment_id", &self.deployment_id),
            ("stable_hash", &self.stable_hash),
            ("canary_hash", &self.canary_hash),
        ];
        for (field, value) in texts {
            if let Some(value) = value
                && !is_name(value)
            {
                return Err(format!(
                    "{field}: '{}' is not a name (1-253 of A-Z a-z 0-9 . _ - : /)",
                    value.escape_debug()
                ));
            }
        }
        if self.service.is_none() {
            return Err("service: missing (or send a full `snapshot`)".into());
        }
        if let Some(w) = self.weight
            && !(0.0..=100.0).contains(&w)
        {
            return Err(format!("weight: {w} is not a percentage in [0, 100]"));
        }
        if let Some(i) = self.stage_index
            && !(i >= 0.0 && i.fract() == 0.0 && i < 1000.0)
        {
            return Err(format!("stage_index: {i} is not a stage number"));
        }
        if let Some(at) = &self.stage_started_at
            && at.parse::<jiff::Timestamp>().is_err()
        {
            return Err(format!(
                "stage_started_at: '{}' is not an RFC 3339 time",
                at.escape_debug()
            ));
        }
        Ok(())
    }
}

fn is_name(value: &str) -> bool {
    (1..=253).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Raw::Text(t)) => t
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{t}' is not a number"))),
    }
}

/// The snapshot for `target` at `now`, with the evidence found. The stage
/// index, when the request gives only a weight, is that weight's place in
/// the gate's declared plan.
pub fn assemble(target: &Target, gate: &Gate, evidence: &Evidence, now: jiff::Timestamp) -> Value {
    let mut snapshot = json!({"schema_version": 1, "now": now.to_string()});
    let deployment_id = target.deployment_id.clone().or_else(|| {
        let service = target.service.as_deref()?;
        let namespace = target.namespace.as_deref().unwrap_or("default");
        Some(match &target.canary_hash {
            Some(hash) => format!("{namespace}/{service}@{hash}"),
            None => format!("{namespace}/{service}"),
        })
    });
    put(
        &mut snapshot,
        "deployment.id",
        deployment_id.map(Value::from),
    );
    put(
        &mut snapshot,
        "deployment.service",
        target.service.clone().map(Value::from),
    );
    put(
        &mut snapshot,
        "deployment.environment",
        target.environment.clone().map(Value::from),
    );
    put(
        &mut snapshot,
        "rollout.weight",
        target.weight.map(Value::from),
    );
    put(
        &mut snapshot,
        "rollout.stage_started_at",
        target.stage_started_at.clone().map(Value::from),
    );
    for (field, value) in &evidence.values {
        let value = match field.as_str() {
            // Prometheus answers times in Unix seconds; snapshots use RFC 3339.
            "rollout.stage_started_at" => jiff::Timestamp::from_second(*value as i64)
                .map(|t| Value::from(t.to_string()))
                .ok(),
            _ => Some(Value::from(*value)),
        };
        // What the request says wins over what a query says.
        if lookup(&snapshot, field).is_none() {
            put(&mut snapshot, field, value);
        }
    }
    if let Some(prometheus) = &gate.file.sources.prometheus {
        put(
            &mut snapshot,
            "metrics.window_seconds",
            Some(Value::from(prometheus.window_seconds)),
        );
    }
    let stage_index = target.stage_index.or_else(|| {
        let weight = lookup(&snapshot, "rollout.weight")?.as_f64()?;
        let stages = &gate.file.rollout.stages;
        stages.iter().position(|s| *s == weight).map(|i| i as f64)
    });
    // Validated as a whole number below 1000.
    let stage_index = stage_index.map(|i| Value::from(i as u64));
    put(&mut snapshot, "rollout.stage_index", stage_index);
    snapshot
}

/// Missing evidence as an enforcing outcome that denies and names each
/// query, so a decision without evidence says why instead of passing.
pub fn evidence_outcome(missing: &[Missing]) -> Option<PolicyOutcome> {
    let first = missing.first()?;
    let findings = missing
        .iter()
        .map(|m| Finding {
            check: format!("source:{}", m.field),
            decision: Decision::Deny,
            message: format!("{}: {}", m.field, m.why),
            observed: Some(m.why.clone()),
            threshold: Some(format!("a value from `{}`", m.promql)),
        })
        .collect();
    let more = match missing.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Some(PolicyOutcome {
        name: EVIDENCE_POLICY.into(),
        module: format!("{EVIDENCE_MODULE_PREFIX}prometheus"),
        module_sha256: None,
        mode: Mode::Enforce,
        decision: Decision::Deny,
        summary: format!("missing evidence: {}: {}{more}", first.field, first.why),
        findings,
        duration_us: 0,
        error: None,
        log: Vec::new(),
    })
}

/// The evidence a gate without a Prometheus source can give a target-only
/// request: none, said plainly.
pub fn no_source() -> Evidence {
    Evidence {
        values: Vec::new(),
        missing: vec![Missing {
            field: "metrics".into(),
            promql: "[sources.prometheus] in the gate file".into(),
            why: "the gate has no metrics source; send a full `snapshot` or configure \
                  [sources.prometheus]"
                .into(),
        }],
    }
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

    #[test]
    fn argo_style_string_arguments_are_numbers() {
        let target = Target::from_json(json!({
            "service": "checkout", "weight": "10", "stage_index": "1", "stable_hash": "6f7d8c"
        }))
        .unwrap();
        assert_eq!(target.weight, Some(10.0));
        assert_eq!(target.stage_index, Some(1.0));
    }

    #[test]
    fn bad_targets_name_the_field() {
        let error = |v: Value| Target::from_json(v).unwrap_err();
        assert_eq!(
            error(json!({"service": "checkout", "weight": "ten"})),
            "weight: 'ten' is not a number"
        );
        assert!(error(json!({"service": "a\"}) or vector(1"})).starts_with("service: "));
        assert!(error(json!({"servce": "x"})).contains("unknown field `servce`"));
        assert_eq!(
            error(json!({"namespace": "shop"})),
            "service: missing (or send a full `snapshot`)"
        );
    }

    #[test]
    fn assembled_snapshots_place_evidence_and_derive_the_stage() {
        let gate = Gate::default_gate();
        let target = Target {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            canary_hash: Some("bbb".into()),
            weight: Some(25.0),
            ..Default::default()
        };
        let evidence = Evidence {
            values: vec![
                ("metrics.canary.errors".into(), 3.0),
                ("rollout.stage_started_at".into(), 1_764_165_600.0),
            ],
            missing: vec![],
        };
        let now: jiff::Timestamp = "2026-11-26T14:00:00Z".parse().unwrap();
        let snapshot = assemble(&target, &gate, &evidence, now);
        assert_eq!(snapshot["deployment"]["id"], "shop/checkout@bbb");
        assert_eq!(snapshot["metrics"]["canary"]["errors"], 3.0);
        assert_eq!(snapshot["rollout"]["stage_index"], 2);
        assert_eq!(
            snapshot["rollout"]["stage_started_at"],
            "2025-11-26T14:00:00Z"
        );
        assert_eq!(snapshot["now"], "2026-11-26T14:00:00Z");
    }
}
