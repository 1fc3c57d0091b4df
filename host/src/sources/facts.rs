//! The facts source: what a release's pipeline knows and Prometheus does
//! not (CI on the exact commit, migrations, feature flags, the rollback
//! plan, the deployment window, stakeholders), read from a JSON file the
//! pipeline writes (for example into a ConfigMap) per service. It lets a
//! caller that can only name its target (Flagger's preflight hooks, a
//! GitHub deployment protection rule) be judged on the whole checklist.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::{check_known, fill};
use super::{Asked, Collecting, Evidence, Field, Missing, Source, Target};

/// The most a facts file may hold.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The placeholders a facts path may use.
const PATH_PLACEHOLDERS: [&str; 3] = ["service", "namespace", "environment"];

/// Snapshot fields a facts file may not set: the host sets the time, the
/// gate its own declarations, and the schema version is the host's.
const RESERVED: [&str; 3] = ["schema_version", "now", "gate"];

/// `[sources.facts]` in a gate file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FactsSource {
    /// Where a release's facts are: an absolute path whose `{service}`,
    /// `{namespace}` and `{environment}` come from the request, e.g.
    /// `/etc/shipgate/facts/{namespace}/{service}.json`. The file holds
    /// snapshot fields as JSON (`{"ci": {...}, "migrations": [...]}`);
    /// what the request says wins over it.
    pub(crate) path: String,
}

impl FactsSource {
    /// The file for `target`, or why there is none.
    fn file_for(&self, target: &Target) -> Result<String, String> {
        fill(&self.path, |name| {
            let (field, value) = match name {
                "service" => ("service", target.service.as_deref()),
                "namespace" => ("namespace", target.namespace.as_deref()),
                _ => ("environment", target.environment.as_deref()),
            };
            let value =
                value.ok_or_else(|| format!("the request gives no {field} for {{{name}}}"))?;
            // One path component: a request cannot climb out of the directory.
            if value.starts_with('.') || value.contains(['/', '\\']) {
                return Err(format!("{field} '{value}' cannot name a file"));
            }
            Ok(value.to_string())
        })
    }

    async fn read(&self, target: &Target) -> Evidence {
        let mut evidence = Evidence {
            source: self.name(),
            ..Evidence::default()
        };
        let missing = |query: String, why: String| Missing {
            what: "facts".into(),
            query,
            why,
        };
        let path = match self.file_for(target) {
            Ok(path) => path,
            Err(why) => {
                evidence.missing.push(missing(self.path.clone(), why));
                return evidence;
            }
        };
        match read_facts(&path).await {
            Ok(facts) => flatten("", facts, &mut evidence.values),
            Err(why) => evidence.missing.push(missing(path, why)),
        }
        evidence
    }
}

impl Source for FactsSource {
    fn name(&self) -> &'static str {
        "facts"
    }

    fn validate(&self) -> Result<(), String> {
        let at = "sources.facts.path";
        if !self.path.starts_with('/') {
            return Err(format!("{at}: '{}' is not an absolute path", self.path));
        }
        check_known(&self.path, &PATH_PLACEHOLDERS).map_err(|why| format!("{at}: {why}"))
    }

    /// Facts matter to every phase (preflight's checklist, verify's smoke
    /// tests and alerts), so the file is read whatever is asked.
    fn collect<'a>(&'a self, asked: Asked<'a>) -> Collecting<'a> {
        Box::pin(self.read(asked.target))
    }
}

/// A facts file's object, refusing what is not one or is too large.
async fn read_facts(path: &str) -> Result<Map<String, Value>, String> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        })?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than the limit of {} KiB",
            metadata.len(),
            MAX_FILE_BYTES >> 10
        ));
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(facts)) => match facts.keys().find(|k| RESERVED.contains(&k.as_str())) {
            Some(key) => Err(format!("`{key}` is the host's to set, not a fact")),
            None => Ok(facts),
        },
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// Objects become one value per leaf path (`deployment.commit`), so facts
/// fill in around what the request already set; arrays and scalars are
/// values as they are.
fn flatten(prefix: &str, object: Map<String, Value>, out: &mut Vec<(Field, Value)>) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&path, inner, out),
            leaf => out.push((Field::Fact(path), leaf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target {
            service: Some("checkout".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        }
    }

    fn source(dir: &std::path::Path) -> FactsSource {
        FactsSource {
            path: format!("{}/{{namespace}}/{{service}}.json", dir.display()),
        }
    }

    #[tokio::test]
    async fn a_facts_file_fills_the_snapshot_around_the_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shop")).unwrap();
        let facts = json!({"deployment": {"commit": "abc"}, "ci": {"status": "passed"},
                           "migrations": [{"id": "m1"}], "stakeholders_notified": true});
        std::fs::write(dir.path().join("shop/checkout.json"), facts.to_string()).unwrap();
        let evidence = source(dir.path()).read(&target()).await;
        assert!(evidence.missing.is_empty(), "{:?}", evidence.missing);
        let fields: Vec<String> = evidence.values.iter().map(|(f, _)| f.path()).collect();
        assert_eq!(
            fields,
            [
                "ci.status",
                "deployment.commit",
                "migrations",
                "stakeholders_notified"
            ]
        );
    }

    #[tokio::test]
    async fn what_cannot_be_read_is_missing_evidence_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = source(dir.path()).read(&target()).await.missing;
        assert_eq!(missing[0].why, "no such file");
        std::fs::create_dir(dir.path().join("shop")).unwrap();
        std::fs::write(dir.path().join("shop/checkout.json"), r#"{"now": "x"}"#).unwrap();
        let missing = source(dir.path()).read(&target()).await.missing;
        assert_eq!(missing[0].why, "`now` is the host's to set, not a fact");
        let climbing = Target {
            service: Some("..".into()),
            ..target()
        };
        let missing = source(dir.path()).read(&climbing).await.missing;
        assert_eq!(missing[0].why, "service '..' cannot name a file");
    }

    #[test]
    fn paths_are_absolute_and_use_known_placeholders() {
        let relative = FactsSource {
            path: "facts/{service}.json".into(),
        };
        assert!(
            relative
                .validate()
                .unwrap_err()
                .contains("not an absolute path")
        );
        let unknown = FactsSource {
            path: "/facts/{hash}.json".into(),
        };
        assert!(
            unknown
                .validate()
                .unwrap_err()
                .contains("unknown placeholder {hash}")
        );
    }
}
