//! Kayenta's canary config as the stock judge policy's config: the mapping
//! both ways in share, `kayenta_config = "FILE.json"` in a gate (read when
//! the gate loads) and the `canaryConfig` of a Kayenta remote-judge request.
//! The policy checks the settings themselves (unknown keys, flags that are
//! not booleans) when the gate is prepared.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::file::PolicyEntry;
use crate::modules::reference::ModuleKind;

/// The config key naming the file.
const KEY: &str = "kayenta_config";
/// Canary configs are a few kilobytes; a file beyond this is not one.
const MAX_BYTES: u64 = 4 << 20;

pub(crate) const KAYENTA: &str = "NetflixACAJudge-v1.0";
/// The name Kayenta's configs carry when Kayenta routes them to a remote
/// judge; here it means Kayenta's judge.
pub(crate) const REMOTE: &str = "RemoteJudge-v1.0";
pub(crate) const SEQUENTIAL: &str = "shipgate-sequential-v1";

/// The judge policy's config from a canary config: the judge its
/// `judge.name` picks (with `judgeConfigurations` for the sequential one),
/// the classifier's group weights and score thresholds, and each metric's
/// `analysisConfigurations.canary` beside its name and groups. Kayenta
/// sends a config to a remote judge only under the name `RemoteJudge-v1.0`
/// (it refuses names it does not know), so for that name
/// `judgeConfigurations.judge` picks shipgate's judge (Kayenta's by
/// default). Errors name the field after `at` (`canaryConfig.`, or `FILE: `).
pub(crate) fn judge_config(canary_config: &Value, at: &str) -> Result<Map<String, Value>, String> {
    let configurations = canary_config
        .pointer("/judge/judgeConfigurations")
        .and_then(Value::as_object);
    let named = canary_config.pointer("/judge/name").and_then(Value::as_str);
    let (field, name) = match named {
        Some(REMOTE) => match configurations.and_then(|c| c.get("judge")) {
            None | Some(Value::Null) => ("judge.name", Some(KAYENTA)),
            Some(Value::String(name)) => ("judge.judgeConfigurations.judge", Some(name.as_str())),
            Some(other) => {
                return Err(format!(
                    "{at}judge.judgeConfigurations.judge: {other} is not a judge's name"
                ));
            }
        },
        other => ("judge.name", other),
    };
    let (judge, options) = match name {
        None | Some(KAYENTA) => (KAYENTA, None),
        Some(SEQUENTIAL) => {
            let mut options = configurations.cloned().unwrap_or_default();
            options.remove("judge");
            (SEQUENTIAL, Some(Value::Object(options)))
        }
        Some(other) => {
            return Err(format!(
                "{at}{field}: `{other}` is not a judge shipgate runs; use {KAYENTA} or \
                 {SEQUENTIAL} (Kayenta itself sends {REMOTE}, with `judgeConfigurations.judge` \
                 naming one of the two)"
            ));
        }
    };
    let metrics = canary_config
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{at}metrics: a canary config lists its metrics"))?;
    let mut rules = Vec::new();
    for (i, metric) in metrics.iter().enumerate() {
        let name = metric
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}metrics[{i}].name: missing"))?;
        let mut rule = metric
            .pointer("/analysisConfigurations/canary")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let Some(fields) = rule.as_object_mut() else {
            return Err(format!(
                "{at}metrics[{i}].analysisConfigurations.canary: not an object"
            ));
        };
        fields.insert("name".into(), name.into());
        fields.insert(
            "groups".into(),
            metric.get("groups").cloned().unwrap_or_else(|| json!([])),
        );
        rules.push(without_nulls(rule));
    }
    let mut config = Map::new();
    config.insert("judge".into(), judge.into());
    let weights = canary_config.pointer("/classifier/groupWeights");
    config.insert(
        "group_weights".into(),
        weights
            .filter(|w| !w.is_null())
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    if let Some(thresholds) = canary_config
        .pointer("/classifier/scoreThresholds")
        .filter(|t| !t.is_null())
    {
        config.insert("thresholds".into(), without_nulls(thresholds.clone()));
    }
    config.insert("metrics".into(), rules.into());
    if let Some(options) = options.filter(|o| o.as_object().is_some_and(|o| !o.is_empty())) {
        config.insert("sequential".into(), without_nulls(options));
    }
    Ok(config)
}

/// TOML has no null: a key set to null in Kayenta's JSON is a key not set.
pub(crate) fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

/// Replaces `kayenta_config = "FILE.json"` in a `builtin:judge` policy's
/// config by what the file says, the gate's own keys winning: `judge`,
/// `thresholds` and `sequential` written in the gate override the file's;
/// `metrics` and `group_weights` come from one place only. The file is
/// relative to the gate's directory (`base`) or absolute. Returns the file
/// read and its bytes, for reloads to watch and the gate's digest to cover.
pub(super) fn inline(
    policy: &mut PolicyEntry,
    base: &Path,
) -> Result<Option<(PathBuf, Vec<u8>)>, String> {
    let is_judge = matches!(policy.module.kind(), ModuleKind::Builtin(name) if name == "judge");
    let Some(config) = policy.config.as_mut().filter(|_| is_judge) else {
        return Ok(None);
    };
    let Some(named) = config.remove(KEY) else {
        return Ok(None);
    };
    let at = format!("policy '{}': {KEY}", policy.name);
    let file = named
        .as_str()
        .ok_or_else(|| format!("{at}: a file name, the canary config's JSON"))?;
    for key in ["metrics", "group_weights"] {
        if config.contains_key(key) {
            return Err(format!(
                "{at}: `{key}` is written in the gate too; it comes from the canary config \
                 or from the gate, not both"
            ));
        }
    }
    let path = base.join(file);
    let read = |path: &Path| -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        if !file.metadata().map_err(|e| e.to_string())?.is_file() {
            return Err("not a regular file".into());
        }
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(format!(
                "more than a canary config's limit of {MAX_BYTES} bytes"
            ));
        }
        Ok(bytes)
    };
    let shown = path.display().to_string();
    let bytes = read(&path).map_err(|why| format!("{at}: {shown}: {why}"))?;
    let canary_config: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{at}: {shown}: not JSON: {e}"))?;
    let mapped = judge_config(&canary_config, &format!("{shown}: "))
        .map_err(|why| format!("{at}: {why}"))?;
    for (key, value) in mapped {
        if config.contains_key(&key) {
            continue;
        }
        let value = toml::Value::try_from(value).map_err(|e| format!("{at}: {shown}: {e}"))?;
        config.insert(key, value);
    }
    Ok(Some((path, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(config: &str) -> PolicyEntry {
        let text = format!(
            "name = \"judge\"\nmodule = \"builtin:judge\"\nphases = [\"abort\"]\n[config]\n{config}"
        );
        toml::from_str(&text).unwrap()
    }

    fn canary_config() -> Value {
        json!({
            "name": "checkout",
            "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
            "metrics": [{
                "name": "latency",
                "query": {"type": "prometheus", "metricName": "latency"},
                "analysisConfigurations": {"canary": {"direction": "increase", "effectSize": null}},
                "groups": ["latency"],
                "scopeName": "default"
            }],
            "classifier": {"groupWeights": {"latency": 100}, "scoreThresholds": {"pass": 80, "marginal": 60}}
        })
    }

    #[test]
    fn the_file_fills_the_config_and_the_gate_wins_where_it_speaks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("canary.json"), canary_config().to_string()).unwrap();
        let mut policy =
            entry("kayenta_config = \"canary.json\"\nthresholds = { pass = 90, marginal = 70 }");
        let (read, bytes) = inline(&mut policy, dir.path()).unwrap().unwrap();
        assert_eq!(read, dir.path().join("canary.json"));
        assert_eq!(bytes, canary_config().to_string().into_bytes());
        let config: Value = serde_json::from_str(&policy.config_json()).unwrap();
        assert_eq!(
            config,
            json!({
                "judge": "NetflixACAJudge-v1.0",
                "thresholds": {"pass": 90, "marginal": 70},
                "group_weights": {"latency": 100},
                "metrics": [{"name": "latency", "groups": ["latency"], "direction": "increase"}]
            })
        );
    }

    #[test]
    fn mistakes_name_the_policy_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = canary_config();
        config["metrics"][0].as_object_mut().unwrap().remove("name");
        std::fs::write(dir.path().join("nameless.json"), config.to_string()).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{\"metrics\": [").unwrap();
        let error = |config: &str| inline(&mut entry(config), dir.path()).unwrap_err();

        let nameless = dir.path().join("nameless.json").display().to_string();
        assert_eq!(
            error("kayenta_config = \"nameless.json\""),
            format!("policy 'judge': kayenta_config: {nameless}: metrics[0].name: missing")
        );
        let broken = error("kayenta_config = \"broken.json\"");
        assert!(
            broken.contains("broken.json: not JSON: EOF while parsing a list at line 1 column 13"),
            "{broken}"
        );
        let missing = error("kayenta_config = \"missing.json\"");
        assert!(missing.contains("missing.json: No such file"), "{missing}");
        assert_eq!(
            error("kayenta_config = 3"),
            "policy 'judge': kayenta_config: a file name, the canary config's JSON"
        );
        let both = error("kayenta_config = \"nameless.json\"\nmetrics = []");
        assert!(
            both.contains("`metrics` is written in the gate too"),
            "{both}"
        );
    }

    #[test]
    fn other_policies_keep_the_key_for_their_own_check() {
        let text = "name = \"mine\"\nmodule = \"builtin:canary\"\nphases = [\"abort\"]\n[config]\nkayenta_config = \"x.json\"";
        let mut policy: PolicyEntry = toml::from_str(text).unwrap();
        assert_eq!(inline(&mut policy, Path::new("/nonexistent")), Ok(None));
        assert!(policy.config_json().contains("kayenta_config"));
    }
}
