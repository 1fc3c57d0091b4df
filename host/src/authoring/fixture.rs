//! Fixture files for `shipgate test`: TOML files of `[[case]]` tables, each
//! a phase, a snapshot (a file or an inline table) with an optional JSON
//! merge patch, and the decisions expected. Every problem is reported as
//! `file:line:column: what`, like a gate file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use shipgate_policy::{Decision, Phase};
use toml::Spanned;

use crate::error::Error;
use crate::gate::toml_error;
use crate::snapshot::{self, ValidSnapshot};

/// A fixture file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    /// The gate the cases run in, relative to this file.
    gate: Option<Spanned<String>>,
    #[serde(default, rename = "case")]
    cases: Vec<Spanned<CaseFile>>,
}

/// One `[[case]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: String,
    phase: Phase,
    snapshot: Spanned<toml::Value>,
    patch: Option<Spanned<toml::Value>>,
    expect: Decision,
    #[serde(default)]
    findings: BTreeMap<String, Decision>,
}

/// A fixture file, read and checked: every snapshot is valid.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// The file as the user named it.
    pub(crate) path: PathBuf,
    /// The gate file it names, resolved from its directory.
    pub(crate) gate: Option<PathBuf>,
    pub(crate) cases: Vec<Case>,
}

#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: String,
    /// The line of the case's `[[case]]` header.
    pub(crate) line: usize,
    pub(crate) phase: Phase,
    pub(crate) snapshot: ValidSnapshot,
    pub(crate) expect: Decision,
    /// Check id (or `policy/check`) → the decision expected of it.
    pub(crate) findings: BTreeMap<String, Decision>,
}

/// Reads and checks one fixture file.
pub(crate) fn read(path: &Path) -> Result<Fixture, Error> {
    let text = String::from_utf8(read_input(path)?)
        .map_err(|_| Error::InvalidInput(format!("{}: not UTF-8 text", path.display())))?;
    parse(&text, path)
}

/// Checks fixture text read from `path` (snapshot and gate files are
/// resolved from its directory).
pub(crate) fn parse(text: &str, path: &Path) -> Result<Fixture, Error> {
    let text = text.to_string();
    let at = |offset: usize| {
        let (line, column) = toml_error::line_column(&text, offset);
        format!("{}:{line}:{column}", path.display())
    };
    let file: FixtureFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map_or_else(|| path.display().to_string(), |s| at(s.start));
        Error::InvalidInput(format!("{at}: {}", toml_error::explain(e.message())))
    })?;
    if file.cases.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no [[case]] tables: a fixture file holds at least one case",
            path.display()
        )));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let gate = match &file.gate {
        Some(gate) => {
            let resolved = dir.join(gate.get_ref());
            if !resolved.is_file() {
                return Err(Error::MissingInput(format!(
                    "{}: gate {}: no such file",
                    at(gate.span().start),
                    resolved.display()
                )));
            }
            Some(resolved)
        }
        None => None,
    };
    let mut cases = Vec::with_capacity(file.cases.len());
    for case in file.cases {
        let line = toml_error::line_column(&text, case.span().start).0;
        let case = case.into_inner();
        let snapshot = snapshot_of(dir, &case, &at)?;
        cases.push(Case {
            name: case.name,
            line,
            phase: case.phase,
            snapshot,
            expect: case.expect,
            findings: case.findings,
        });
    }
    Ok(Fixture {
        path: path.to_path_buf(),
        gate,
        cases,
    })
}

/// The case's snapshot: the file or table, patched, then validated as any
/// snapshot a CD system sends.
fn snapshot_of(
    dir: &Path,
    case: &CaseFile,
    at: &impl Fn(usize) -> String,
) -> Result<ValidSnapshot, Error> {
    let here = at(case.snapshot.span().start);
    let mut source = String::new();
    let mut json = match case.snapshot.get_ref() {
        toml::Value::String(relative) => {
            let file = dir.join(relative);
            let bytes = read_input(&file).map_err(|e| match e {
                Error::MissingInput(why) => Error::MissingInput(format!("{here}: snapshot {why}")),
                Error::InvalidInput(why) => Error::InvalidInput(format!("{here}: snapshot {why}")),
                other => other,
            })?;
            source = format!(" {}", file.display());
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidInput(format!("{here}: snapshot {}: {e}", file.display()))
            })?
        }
        toml::Value::Table(table) => json_of(&toml::Value::Table(table.clone())),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{here}: snapshot: expected a file path or an inline table"
            )));
        }
    };
    if let Some(patch) = &case.patch {
        let patch_at = at(patch.span().start);
        let patch = match patch.get_ref() {
            // A JSON string can say what TOML cannot: `null` removes a key.
            toml::Value::String(text) => serde_json::from_str(text)
                .map_err(|e| Error::InvalidInput(format!("{patch_at}: patch: not JSON: {e}")))?,
            toml::Value::Table(_) => json_of(patch.get_ref()),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{patch_at}: patch: expected a table or a JSON merge patch string"
                )));
            }
        };
        // RFC 7386: objects merge key by key, `null` removes, the rest replaces.
        json_patch::merge(&mut json, &patch);
    }
    let patched = if case.patch.is_some() {
        ", patched,"
    } else {
        ""
    };
    let bytes = serde_json::to_vec(&json).expect("JSON values serialize");
    snapshot::parse(&bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "{here}: snapshot{source}{patched} is not valid: {e}"
        ))
    })
}

/// TOML as JSON; a TOML date-time becomes its RFC 3339 text.
fn json_of(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), json_of(value)))
                .collect(),
        ),
    }
}

/// A file's bytes; a file that is missing is a missing input (66), one that
/// cannot be read as a file (a directory, a loop of links) invalid (65).
fn read_input(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            Error::reading(path, e)
        }
        _ if path.is_dir() => {
            Error::InvalidInput(format!("{}: a directory, not a file", path.display()))
        }
        _ => Error::InvalidInput(format!("{}: cannot be read: {e}", path.display())),
    })
}

/// The fixture files under `paths`: files as given, directories searched
/// for `*.toml` (sorted, so runs are in a stable order).
pub(crate) fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            collect_toml(path, &mut files)?;
            if files.len() == before {
                return Err(Error::MissingInput(format!(
                    "{}: no fixture files (*.toml) in this directory",
                    path.display()
                )));
            }
        } else if path.is_file() {
            if !files.contains(path) {
                files.push(path.clone());
            }
        } else {
            return Err(Error::MissingInput(format!(
                "{}: no such fixture file or directory",
                path.display()
            )));
        }
    }
    Ok(files)
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    // Linked directories are not followed: a loop of links cannot hang the run.
    let mut entries: Vec<(PathBuf, bool)> = std::fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?.is_dir()))))
                .collect()
        })
        .map_err(|e| Error::reading(dir, e))?;
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") && !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a case's `patch` does to its snapshot: the examples of RFC 7386,
    /// appendix A, a few of them.
    #[test]
    fn patches_follow_rfc_7386() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!(["a", "b"]), json!({"a": "b"}), json!({"a": "b"})),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            json_patch::merge(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn toml_dates_become_rfc_3339_text() {
        let value: toml::Value = toml::from_str("now = 2026-11-26T14:00:00Z").unwrap();
        assert_eq!(json_of(&value), json!({"now": "2026-11-26T14:00:00Z"}));
    }

    fn fixture(text: &str) -> Result<Fixture, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        read(&path).map_err(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "D")
        })
    }

    const SNAPSHOT: &str = "snapshot = { schema_version = 1, now = \"2026-11-26T14:00:00Z\" }";

    #[test]
    fn a_case_reads_an_inline_snapshot_and_applies_its_patch() {
        let fixture = fixture(&format!(
            "[[case]]\nname = \"n\"\nphase = \"abort\"\n{SNAPSHOT}\n\
             patch = '{{\"now\": \"2026-11-27T00:00:00Z\"}}'\nexpect = \"deny\"\nfindings = {{ error-rate = \"deny\" }}\n"
        ))
        .unwrap();
        let case = &fixture.cases[0];
        assert_eq!(
            (case.line, case.phase, case.expect),
            (1, Phase::Abort, Decision::Deny)
        );
        assert_eq!(case.findings["error-rate"], Decision::Deny);
        assert_eq!(case.snapshot.typed().now, "2026-11-27T00:00:00Z");
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let cases = [
            (
                format!("[[case]]\nname = \"n\"\nphase = \"canary\"\n{SNAPSHOT}\nexpect = \"deny\"\n"),
                "D/f.toml:3:9: unknown variant `canary`",
            ),
            (
                format!("[[case]]\nname = \"n\"\nphase = \"abort\"\n{SNAPSHOT}\nexpect = \"hold\"\n"),
                "D/f.toml:5:10: unknown variant `hold`",
            ),
            (
                format!("[[case]]\nname = \"n\"\nphase = \"abort\"\n{SNAPSHOT}\nexpect = \"deny\"\nexpct = 1\n"),
                "D/f.toml:6:1: unknown key 'expct' (did you mean 'expect'?)",
            ),
            (
                "[[case]]\nname = \"n\"\nphase = \"abort\"\nsnapshot = 3\nexpect = \"deny\"\n".to_string(),
                "D/f.toml:4:12: snapshot: expected a file path or an inline table",
            ),
            (
                "[[case]]\nname = \"n\"\nphase = \"abort\"\nsnapshot = { now = \"x\" }\nexpect = \"deny\"\n".to_string(),
                "D/f.toml:4:12: snapshot is not valid: ",
            ),
            ("gate = \"g.toml\"\n".to_string(), "D/f.toml: no [[case]] tables"),
        ];
        for (text, expected) in cases {
            let error = fixture(&text).unwrap_err();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }

    #[test]
    fn a_missing_snapshot_file_is_a_missing_input_at_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            "[[case]]\nname = \"n\"\nphase = \"abort\"\nsnapshot = \"gone.json\"\nexpect = \"deny\"\n",
        )
        .unwrap();
        let error = read(&path).unwrap_err();
        assert!(matches!(error, Error::MissingInput(_)), "{error:?}");
        assert!(
            error.to_string().contains("f.toml:4:12: snapshot "),
            "{error}"
        );
    }
}
