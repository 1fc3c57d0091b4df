//! What a request says is being deployed, when it sends no snapshot: the
//! identity sources fill their queries with.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use shipgate_policy::Timestamp;

/// What a request says is being deployed. CD systems send their arguments
/// as strings (Argo args, Flagger metadata), so numbers may be strings too.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Target {
    pub(crate) service: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) deployment_id: Option<String>,
    /// Pod-template hash (or workload name) of the stable version.
    pub(crate) stable_hash: Option<String>,
    /// Pod-template hash (or workload name) of the canary.
    pub(crate) canary_hash: Option<String>,
    /// The commit being deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) commit: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub(crate) weight: Option<f64>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub(crate) stage_index: Option<f64>,
    /// RFC 3339.
    pub(crate) stage_started_at: Option<String>,
    /// Measure the baseline this many seconds in the past: after a
    /// blue-green switch the previous version serves no traffic, and its
    /// baseline is its window before the switch.
    #[serde(
        default,
        deserialize_with = "number_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) baseline_offset_seconds: Option<f64>,
}

impl Target {
    /// Reads a target from a JSON object; errors name the field.
    pub(crate) fn from_json(value: Value) -> Result<Target, String> {
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

    /// Identity values end up inside query label matchers and log lines:
    /// only the characters Kubernetes names and hashes use are accepted.
    /// Times are read by the SDK's parser, the one policies use, so a time
    /// accepted here is one the snapshot accepts too.
    fn validate(&self) -> Result<(), String> {
        let texts = [
            ("service", &self.service),
            ("namespace", &self.namespace),
            ("environment", &self.environment),
            ("deployment_id", &self.deployment_id),
            ("stable_hash", &self.stable_hash),
            ("canary_hash", &self.canary_hash),
            ("commit", &self.commit),
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
        if let Some(offset) = self.baseline_offset_seconds
            && !(0.0..=MAX_BASELINE_OFFSET_SECONDS).contains(&offset)
        {
            return Err(format!(
                "baseline_offset_seconds: {offset} is not between 0 and {MAX_BASELINE_OFFSET_SECONDS} (a week)"
            ));
        }
        if let Some(at) = &self.stage_started_at
            && Timestamp::parse(at).is_none()
        {
            return Err(format!(
                "stage_started_at: '{}' is not an RFC 3339 time",
                at.escape_debug()
            ));
        }
        Ok(())
    }
}

/// A week: any baseline further back is not the version just replaced.
const MAX_BASELINE_OFFSET_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// `text` in the characters a target's names may hold, every other
/// character written as `-` (GitHub's environment `Production EU` is the
/// target's `Production-EU`), at most 253 bytes.
pub(crate) fn as_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-:/".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    if name.is_empty() { "-".into() } else { name }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// A time the snapshot would refuse is a bad request here, not a
    /// snapshot the server builds and then cannot parse.
    #[test]
    fn stage_start_times_are_read_as_snapshots_read_them() {
        let target = |at: &str| Target::from_json(json!({"service": "s", "stage_started_at": at}));
        assert!(target("2026-11-26T14:00:00Z").is_ok());
        assert!(target("2026-11-26T14:00:00+02:00").is_ok());
        assert_eq!(
            target("2026-11-26T14:00:00-04").unwrap_err(),
            "stage_started_at: '2026-11-26T14:00:00-04' is not an RFC 3339 time"
        );
    }
}
