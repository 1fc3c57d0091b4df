//! `shipgate new`: a policy crate that builds and passes its own tests as
//! generated, from templates embedded in the binary.

use std::path::{Path, PathBuf};

use shipgate_policy::Phase;

use super::sdk::{self, SdkSource};
use crate::error::Error;

/// What `shipgate new` is asked for.
pub(crate) struct NewPolicy<'a> {
    /// The policy's name: the crate's, and the one decisions report.
    pub(crate) name: &'a str,
    /// Where to create the crate (default: `./NAME`).
    pub(crate) path: Option<&'a Path>,
    /// The phases the policy evaluates.
    pub(crate) phases: &'a [Phase],
    /// Where the SDK comes from.
    pub(crate) sdk: &'a SdkSource,
}

/// What `shipgate new` made.
pub(crate) struct Created {
    pub(crate) dir: PathBuf,
    /// The crate's own files, relative to `dir` (not the vendored SDK's).
    pub(crate) files: Vec<&'static str>,
    /// Which SDK the crate depends on, in words.
    pub(crate) sdk: String,
}

const DESCRIPTION: &str = "holds or rolls back a canary whose error rate exceeds its budget";

/// Creates the crate.
pub(crate) fn create(request: &NewPolicy<'_>) -> Result<Created, Error> {
    check_name(request.name)?;
    if request.phases.is_empty() {
        return Err(Error::Usage("--phases: name at least one phase".into()));
    }
    let dir = request
        .path
        .map_or_else(|| PathBuf::from(request.name), Path::to_path_buf);
    let taken = || {
        Error::Usage(format!(
            "{}: already exists; shipgate new never overwrites (choose another --path)",
            dir.display()
        ))
    };
    // Asked before the registry is (up to 20 s); create_dir below decides.
    match dir.try_exists() {
        Ok(true) => return Err(taken()),
        Ok(false) => {}
        Err(e) => return Err(Error::reading(&dir, e)),
    }
    let sdk = sdk::resolve(request.sdk)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Internal(anyhow::Error::new(e).context(format!("creating {}", parent.display())))
        })?;
    }
    // Created here, atomically: an existing directory is never written into.
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => taken(),
        _ => Error::Internal(anyhow::Error::new(e).context(format!("creating {}", dir.display()))),
    })?;
    let files = render(request.name, request.phases, &sdk.dependency);
    let mut all: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.as_str()))
        .collect();
    all.extend(sdk.files());
    let written = all.into_iter().try_for_each(|(relative, text)| {
        let path = dir.join(relative);
        let parent = path.parent().expect("a template path has a directory");
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| {
                Error::Internal(
                    anyhow::Error::new(e).context(format!("writing {}", path.display())),
                )
            })
    });
    if let Err(error) = written {
        // Half a crate is worse than none: the directory did not exist.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(Created {
        dir,
        files: files.into_iter().map(|(path, _)| path).collect(),
        sdk: sdk.described,
    })
}

/// Names the generated crate cannot take: Rust keywords and crates cargo
/// refuses, and the names the template's own code already uses.
const TAKEN_NAMES: [&str; 62] = [
    "as", "async", "await", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self",
    "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized",
    "use", "virtual", "where", "while", "yield", "abstract", "become", "test", "std", "core",
    "alloc", "config", "policy", "snapshot", "decision", "findings", "phase", "verdict",
];

/// Crate names cargo accepts and a gate can quote: lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter.
fn check_name(name: &str) -> Result<(), Error> {
    let type_name = name.replace(['-', '_'], "");
    if TAKEN_NAMES.contains(&name)
        || ["unit", "policyinfo", "tests", "deserialize"].contains(&type_name.as_str())
    {
        return Err(Error::Usage(format!(
            "'{name}' is taken (a Rust keyword, a crate cargo refuses, or a name the generated \
             code uses): choose another name"
        )));
    }
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "'{name}' is not a policy name: use lowercase letters, digits, '-' and '_', \
             starting with a letter (at most 64 characters)"
        )))
    }
}

/// Every file of the crate, relative path and text.
fn render(name: &str, phases: &[Phase], sdk_dependency: &str) -> Vec<(&'static str, String)> {
    let lib_name = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let variant = |phase: &Phase| {
        let name = phase.as_str();
        name[..1].to_ascii_uppercase() + &name[1..]
    };
    let phase_variants: Vec<String> = phases
        .iter()
        .map(|p| format!("Phase::{}", variant(p)))
        .collect();
    let phase_list: Vec<String> = phases.iter().map(|p| format!("\"{p}\"")).collect();
    let phase_words: Vec<&str> = phases.iter().map(|p| p.as_str()).collect();
    // Blocks first: they hold placeholders of their own.
    let vars = [
        ("phase_tests", unit_tests(phases)),
        ("cases", fixture_cases(phases)),
        ("name", name.to_string()),
        ("lib_name", lib_name),
        ("type_name", type_name),
        ("description", DESCRIPTION.to_string()),
        ("sdk_dependency", sdk_dependency.to_string()),
        ("rustflags", super::builder::RUSTFLAGS.to_string()),
        ("phase_variants", phase_variants.join(", ")),
        ("phase_list", phase_list.join(", ")),
        ("phase_words", phase_words.join(", ")),
        ("first_phase", variant(&phases[0])),
    ];
    let fill = |template: &str| fill(template, &vars);
    vec![
        ("Cargo.toml", fill(include_str!("template/Cargo.toml.in"))),
        (".gitignore", fill(include_str!("template/gitignore.in"))),
        (
            ".cargo/config.toml",
            fill(include_str!("template/cargo-config.toml.in")),
        ),
        ("README.md", fill(include_str!("template/README.md.in"))),
        ("gate.toml", fill(include_str!("template/gate.toml.in"))),
        // Beside the gate, which names it in its first line: editors
        // complete and check the gate offline, with this binary's schema.
        ("gate.schema.json", gate_schema()),
        ("src/lib.rs", fill(include_str!("template/lib.rs.in"))),
        (
            "tests/snapshots/healthy.json",
            include_str!("template/healthy.json").to_string(),
        ),
        (
            "tests/policy/checks.toml",
            fill(include_str!("template/fixtures.toml.in")),
        ),
    ]
}

/// `gate.schema.json`: what `shipgate schema gate` prints.
fn gate_schema() -> String {
    let mut text = serde_json::to_string_pretty(&crate::gate::schema()).expect("a schema is JSON");
    text.push('\n');
    text
}

/// Replaces every `{{key}}` of `vars` in `template`.
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// The phase in which the error budget is tested, and what a breach does
/// there: abort rolls back, the others hold.
fn budget_phase(phases: &[Phase]) -> Option<(Phase, &'static str)> {
    [Phase::Abort, Phase::Promotion, Phase::Verify]
        .into_iter()
        .find(|p| phases.contains(p))
        .map(|p| {
            (
                p,
                if p == Phase::Abort {
                    "rollback"
                } else {
                    "deny"
                },
            )
        })
}

/// Unit tests for the checks the chosen phases run (still with `{{type_name}}`).
fn unit_tests(phases: &[Phase]) -> String {
    let mut tests = String::new();
    if let Some((phase, decision)) = budget_phase(phases) {
        let name = phase.as_str();
        let (verb, variant) = match decision {
            "rollback" => ("rolled_back", "Rollback"),
            _ => ("held", "Deny"),
        };
        tests += &fill(
            include_str!("template/error_budget_tests.rs.in"),
            &[
                ("budget_phase", name[..1].to_ascii_uppercase() + &name[1..]),
                ("breach_verb", verb.to_string()),
                ("breach_decision", variant.to_string()),
            ],
        );
    }
    if phases.contains(&Phase::Preflight) {
        tests += include_str!("template/preflight_tests.rs.in");
    }
    tests
}

/// A passing and a failing fixture case for each check the phases run.
fn fixture_cases(phases: &[Phase]) -> String {
    let mut cases = String::new();
    let mut case = |name: &str, phase: Phase, patch: Option<&str>, expect: &str, check: &str| {
        cases += &format!(
            "\n[[case]]\nname = \"{name}\"\nphase = \"{phase}\"\nsnapshot = \"../snapshots/healthy.json\"\n"
        );
        if let Some(patch) = patch {
            cases += &format!("patch = {patch}\n");
        }
        cases += &format!("expect = \"{expect}\"\nfindings = {{ {check} = \"{expect}\" }}\n");
    };
    if let Some((phase, decision)) = budget_phase(phases) {
        case(
            "a canary within its error budget passes",
            phase,
            None,
            "allow",
            "error-budget",
        );
        case(
            "a canary over its error budget is stopped",
            phase,
            Some("{ metrics = { canary = { errors = 300 } } }"),
            decision,
            "error-budget",
        );
    }
    if phases.contains(&Phase::Preflight) {
        case(
            "a deploy from CI passes preflight",
            Phase::Preflight,
            None,
            "allow",
            "pipeline-deploy",
        );
        case(
            "a deploy started by hand is denied",
            Phase::Preflight,
            Some("{ deployment = { triggered_by = \"alice\" } }"),
            "deny",
            "pipeline-deploy",
        );
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phases `shipgate new` chooses unless told otherwise.
    const DEFAULT_PHASES: [Phase; 2] = [Phase::Promotion, Phase::Abort];

    #[test]
    fn names_must_be_crate_names() {
        for bad in [
            "",
            "Rules",
            "9lives",
            "a b",
            "x/y",
            "ünï",
            "fn",
            "test",
            "config",
            "policy-info",
            "unit",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["rules", "team-rules", "team_rules2"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn every_placeholder_is_filled_for_any_choice_of_phases() {
        for phases in [
            &[Phase::Preflight][..],
            &[Phase::Verify],
            &DEFAULT_PHASES,
            &Phase::ALL,
        ] {
            for (path, text) in render("team-rules", phases, "shipgate-policy = \"0.1.0\"") {
                assert!(!text.contains("{{"), "{path} for {phases:?}:\n{text}");
            }
        }
    }

    #[test]
    fn the_type_is_named_after_the_policy() {
        let files = render("team-rules_v2", &DEFAULT_PHASES, "");
        let lib = &files.iter().find(|(p, _)| *p == "src/lib.rs").unwrap().1;
        assert!(lib.contains("pub struct TeamRulesV2;"), "{lib}");
        assert!(lib.contains("&[Phase::Promotion, Phase::Abort]"), "{lib}");
    }
}
