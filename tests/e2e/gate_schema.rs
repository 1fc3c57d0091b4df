//! Editors know gate files. The gate file's JSON Schema is committed as
//! `schemas/gate.schema.json`, equal to what `shipgate schema gate` prints;
//! every gate file names it in its first line with taplo's `#:schema`
//! directive, and taplo (the TOML toolkit behind VS Code's Even Better TOML
//! and other editors' TOML support; npm `@taplo/cli`, which ./test.sh
//! installs into target/taplo) validates each one with it, as an editor does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{repo, shipgate, shipgate_in};

/// The committed schema, relative to the repository.
const SCHEMA: &str = "schemas/gate.schema.json";

/// The built-in gate (`eval` without `--gate`). Its bytes are embedded in
/// the binary and their digest is in every decision made under it (the
/// README quotes one), so it carries no directive: it is validated with
/// `--schema`.
const BUILT_IN_GATE: &str = "host/src/default-gate.toml";

/// How a committed gate file meant to be invalid is recognised: its name
/// ends with this. It still names the schema, and taplo and shipgate must
/// both refuse it, on the same line.
const INVALID_SUFFIX: &str = ".invalid.toml";

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `taplo lint` in `dir`, as ./test.sh installs it: no configuration file
/// looked for in parent directories, no colours. Without `--schema`, each
/// file is validated with the schema its `#:schema` directive names.
fn taplo_lint(dir: &Path) -> Command {
    let taplo = repo().join("target/taplo/node_modules/.bin/taplo");
    assert!(
        taplo.is_file(),
        "{} is missing: ./test.sh installs it (npm install --prefix target/taplo @taplo/cli@0.7.0)",
        taplo.display()
    );
    let mut command = Command::new(taplo);
    command
        .current_dir(dir)
        .args(["lint", "--no-auto-config", "--colors", "never"]);
    command
}

/// taplo's report: it writes its diagnostics to standard error.
fn report(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The directive a gate file at `relative` (to the repository) starts
/// with: the committed schema, by a path relative to the file, so it holds
/// in any checkout and offline.
fn directive_for(relative: &Path) -> String {
    let depth = relative.parent().map_or(0, |dir| dir.components().count());
    format!("#:schema {}{SCHEMA}", "../".repeat(depth))
}

/// Every TOML file of the repository, relative to it, found by walking the
/// tree: build output (`target/`), npm's `node_modules/` and `.git/` aside.
/// Symbolic links are not followed.
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let kind = entry.file_type().unwrap();
        let path = entry.path();
        let name = entry.file_name();
        if kind.is_dir() && !matches!(name.to_str(), Some("target" | "node_modules" | ".git")) {
            toml_files(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            out.push(path.strip_prefix(repo()).unwrap().to_path_buf());
        }
    }
}

/// A gate file is a TOML document that has a `name` and whose top-level
/// keys are all keys of the gate (the schema's top-level properties). That
/// tells gates from Cargo manifests, cargo configs and `shipgate test`
/// fixtures (`gate`, `[[case]]`) without a list to keep up to date.
fn is_gate(text: &str, gate_keys: &[String]) -> bool {
    text.parse::<toml::Table>().is_ok_and(|table| {
        table.contains_key("name") && table.keys().all(|key| gate_keys.contains(key))
    })
}

fn committed_schema() -> Value {
    serde_json::from_str(&read(SCHEMA)).expect("the committed schema is JSON")
}

#[test]
fn the_committed_gate_schema_is_what_shipgate_schema_gate_prints() {
    let output = shipgate().args(["schema", "gate"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let committed = read(SCHEMA);
    let first_difference = printed
        .lines()
        .zip(committed.lines())
        .position(|(a, b)| a != b)
        .map_or_else(
            || "one is longer".to_string(),
            |line| format!("line {}", line + 1),
        );
    assert!(
        printed == committed,
        "{SCHEMA} is not what `shipgate schema gate` prints ({first_difference} differs); \
         regenerate it with `cargo run -q -p shipgate -- schema gate > {SCHEMA}`"
    );
    // A draft taplo's validator implements; unknown keys refused as
    // shipgate refuses them, at every level of the file.
    let schema = committed_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    for (name, definition) in schema["$defs"].as_object().unwrap() {
        if definition["type"] == "object" && definition["properties"].is_object() {
            assert_eq!(
                definition["additionalProperties"], false,
                "{name}: the gate file refuses unknown keys here"
            );
        }
    }
}

/// Every gate file of the repository, found by walking it, names the
/// committed schema in its first line, and taplo validates it through that
/// line alone, as an editor would. Fixtures meant to be invalid are named
/// `*.invalid.toml`: both taplo and shipgate refuse them, on the same line.
#[test]
fn taplo_validates_every_gate_file_in_the_repository_with_its_directive() {
    let schema = committed_schema();
    let gate_keys: Vec<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut files = Vec::new();
    toml_files(&repo(), &mut files);
    let (mut gates, mut invalid, mut missing_directive) = (Vec::new(), Vec::new(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(repo().join(&file)).unwrap();
        let name = file.to_str().unwrap().to_string();
        let meant_invalid = name.ends_with(INVALID_SUFFIX);
        if !meant_invalid && !is_gate(&text, &gate_keys) {
            continue;
        }
        if name == BUILT_IN_GATE {
            continue;
        }
        if text.lines().next() != Some(directive_for(&file).as_str()) {
            missing_directive.push(format!("{name}: start it with `{}`", directive_for(&file)));
        } else if meant_invalid {
            invalid.push(name);
        } else {
            gates.push(name);
        }
    }
    assert!(
        missing_directive.is_empty(),
        "gate files without the schema directive:\n{}",
        missing_directive.join("\n")
    );
    for expected in [
        "examples/gate.toml",
        "examples/custom-policy/gate.toml",
        "examples/judge/gate-kayenta-config.toml",
        "integrations/gate.toml",
        "integrations/flagger/gate.toml",
    ] {
        assert!(
            gates.iter().any(|g| g == expected),
            "{expected} not found: {gates:?}"
        );
    }

    let output = taplo_lint(&repo()).args(&gates).output().unwrap();
    assert!(
        output.status.success(),
        "taplo refuses a gate file:\n{}",
        report(&output)
    );
    let output = taplo_lint(&repo())
        .arg("--schema")
        .arg(format!("file://{}", repo().join(SCHEMA).display()))
        .arg(BUILT_IN_GATE)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "taplo refuses the built-in gate:\n{}",
        report(&output)
    );

    assert!(
        !invalid.is_empty(),
        "tests/fixtures/gates/ has a gate meant to be invalid"
    );
    for name in invalid {
        let refused = shipgate()
            .args(["check", "--gate", &name])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(65), "shipgate accepts {name}");
        let stderr = text(&refused.stderr);
        let file_name = Path::new(&name).file_name().unwrap().to_str().unwrap();
        let at = format!("{file_name}:");
        let line: String = stderr
            [stderr.find(&at).unwrap_or_else(|| panic!("{stderr}")) + at.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(!line.is_empty(), "shipgate names no line: {stderr}");
        let output = taplo_lint(&repo()).arg(&name).output().unwrap();
        let taplo = report(&output);
        assert!(!output.status.success(), "taplo accepts {name}:\n{taplo}");
        assert!(
            taplo.contains(&format!("{file_name}:{line}:")),
            "shipgate refuses {name} on line {line} ({stderr}), taplo does not say so:\n{taplo}"
        );
    }
}

#[test]
fn a_misspelt_key_is_reported_on_its_line_by_taplo_as_by_shipgate() {
    let fixture = "tests/fixtures/gates/misspelt-key.invalid.toml";
    let output = taplo_lint(&repo()).arg(fixture).output().unwrap();
    let taplo = report(&output);
    assert!(!output.status.success(), "{taplo}");
    assert!(
        taplo.contains("misspelt-key.invalid.toml:9:1\n")
            && taplo.contains("9 │ max_eror_rate = 0.01\n")
            && taplo.contains("('max_eror_rate' was unexpected)"),
        "{taplo}"
    );
    shipgate()
        .args(["check", "--gate", fixture])
        .assert()
        .code(65)
        .stderr(format!(
            "shipgate: error: {fixture}:9:1: unknown key 'max_eror_rate' (did you mean 'max_error_rate'?)\n"
        ));

    // A misspelt phase too: the schema lists the phases.
    let dir = tempfile::tempdir().unwrap();
    let gate =
        read("examples/gate.toml").replacen("phases = [\"verify\"]", "phases = [\"verfy\"]", 1);
    let line = gate.lines().position(|l| l.contains("verfy")).unwrap() + 1;
    std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
    let output = taplo_lint(dir.path())
        .arg("--schema")
        .arg(format!("file://{}", repo().join(SCHEMA).display()))
        .arg("gate.toml")
        .output()
        .unwrap();
    let taplo = report(&output);
    assert!(!output.status.success(), "{taplo}");
    assert!(
        taplo.contains(&format!("gate.toml:{line}:")) && taplo.contains("\"verfy\""),
        "{taplo}"
    );
}

/// `shipgate new` writes the schema beside the crate's gate, which names it
/// in its first line: outside any checkout, and offline, an editor
/// validates the gate with the schema of the binary that made it.
#[test]
fn a_new_policy_crates_gate_names_the_schema_written_beside_it() {
    let scratch = tempfile::tempdir().unwrap();
    shipgate_in(scratch.path())
        .args(["new", "team-rules", "--sdk", "vendored"])
        .assert()
        .success()
        .stdout(predicates::str::contains("gate.toml, gate.schema.json,"));
    let dir = scratch.path().join("team-rules");
    let gate = std::fs::read_to_string(dir.join("gate.toml")).unwrap();
    assert!(gate.starts_with("#:schema ./gate.schema.json\n"), "{gate}");
    let written = std::fs::read_to_string(dir.join("gate.schema.json")).unwrap();
    assert!(
        written == read(SCHEMA),
        "gate.schema.json is the gate schema"
    );

    let output = taplo_lint(&dir).arg("gate.toml").output().unwrap();
    assert!(output.status.success(), "{}", report(&output));

    // The README and the crate's own say how to write the schema again:
    // the line, as written, writes the same file.
    let line = "shipgate schema gate > gate.schema.json";
    assert_eq!(
        crate::authoring::readme_block("### Completion and checking in an editor"),
        [line]
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains(&format!("`{line}`")), "{readme}");
    std::fs::remove_file(dir.join("gate.schema.json")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_shipgate")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("sh")
        .args(["-c", line])
        .current_dir(&dir)
        .env("PATH", path)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read_to_string(dir.join("gate.schema.json")).unwrap() == written);

    // A misspelt key in the new gate: taplo names its line.
    let misspelt = gate.replacen("min_stage_minutes", "min_stage_minute", 1);
    let line = misspelt
        .lines()
        .position(|l| l.starts_with("min_stage_minute "))
        .unwrap()
        + 1;
    std::fs::write(dir.join("gate.toml"), misspelt).unwrap();
    let output = taplo_lint(&dir).arg("gate.toml").output().unwrap();
    let taplo = report(&output);
    assert!(!output.status.success(), "{taplo}");
    assert!(
        taplo.contains(&format!("gate.toml:{line}:1\n"))
            && taplo.contains("('min_stage_minute' was unexpected)"),
        "{taplo}"
    );
}
