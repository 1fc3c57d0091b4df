//! The GitHub Action (`action.yml`) and the GitLab CI/CD component
//! (`templates/shipgate.yml`), and the files in `integrations/` that use
//! them. Each is checked by the validators of its ecosystem (the schemas
//! check-jsonschema bundles, shellcheck) and its script is run the way a
//! runner runs it, with the real binary. Neither GitHub's runner nor
//! GitLab's runs here: the tests give each script the environment its
//! runner documents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use serde_yaml::{Mapping, Value as Yaml};

use crate::support::{cache_dir, cache_key_file, json_output, repo, snapshot, yaml_documents};

const ACTION: &str = "action.yml";
const WORKFLOW: &str = "integrations/github/workflow.yml";
const COMPONENT: &str = "templates/shipgate.yml";
const PIPELINE: &str = "integrations/gitlab/.gitlab-ci.yml";

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).expect("a file of the repository")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// The validators.

/// `check-jsonschema --builtin-schema vendor.SCHEMA FILE`, with the
/// check-jsonschema ./test.sh installs into target/.
fn check_jsonschema(schema: &str, file: &Path) -> Output {
    let binary = repo().join("target/check-jsonschema/bin/check-jsonschema");
    Command::new(&binary)
        .arg("--builtin-schema")
        .arg(format!("vendor.{schema}"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e}; ./test.sh installs it (PyPI check-jsonschema)",
                binary.display()
            )
        })
}

fn assert_schema_valid(schema: &str, file: &Path, what: &str) {
    let output = check_jsonschema(schema, file);
    assert!(
        output.status.success(),
        "{what} against vendor.{schema}:\n{}",
        text(&output)
    );
}

/// Writes `value` as YAML to `name` in `dir`, for a validator to read.
fn yaml_file(dir: &Path, name: &str, value: &Yaml) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(value).unwrap()).unwrap();
    path
}

/// shellcheck's findings on `script` for `shell` (bash, sh); empty when
/// it has none.
fn shellcheck(shell: &str, script: &str) -> String {
    let mut child = Command::new("shellcheck")
        .arg(format!("--shell={shell}"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running shellcheck: ./test.sh installs it (Debian package shellcheck)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        String::new()
    } else {
        format!("{}\n", text(&output))
    }
}

// The GitHub Action.

fn action() -> Yaml {
    yaml_documents(ACTION).remove(0)
}

/// The action's steps: a composite action's, each a `run:` step.
fn action_steps() -> Vec<Yaml> {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    action["runs"]["steps"].as_sequence().unwrap().clone()
}

/// What a workflow writes in `uses:` for this repository's action: the
/// owner that publishes the image (`ghcr.io/OWNER/shipgate`), the
/// repository `shipgate`, major version 1.
fn action_reference() -> String {
    let image = read("image/REFERENCE");
    let owner = image.trim().split('/').nth(1).unwrap();
    format!("{owner}/shipgate@v1")
}

fn workflow() -> Yaml {
    yaml_documents(WORKFLOW).remove(0)
}

/// The workflow's step that runs shipgate.
fn workflow_step() -> Yaml {
    workflow()["jobs"]["preflight"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "shipgate")
        .expect("a step with id shipgate")
        .clone()
}

/// The workflow step's `with:`, plus `more` (say, the binary to run).
fn workflow_inputs(more: &[(&str, &str)]) -> Mapping {
    let mut with = workflow_step()["with"].as_mapping().unwrap().clone();
    for (name, value) in more {
        with.insert((*name).into(), (*value).into());
    }
    with
}

/// The value of an input, as GitHub gives `${{ inputs.NAME }}`: what
/// `with:` says, else the input's default, else empty.
fn input_values(with: &Mapping) -> BTreeMap<String, String> {
    let action = action();
    let declared = action["inputs"].as_mapping().unwrap();
    let scalar = |value: &Yaml| match value {
        Yaml::String(text) => text.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        other => panic!("an input is a scalar, not {other:?}"),
    };
    declared_inputs("the action", declared, with)
        .into_iter()
        .map(|(name, input)| {
            let value = match with.get(name.as_str()) {
                Some(value) => scalar(value),
                None => {
                    assert_ne!(input["required"], true, "input {name} is required");
                    input.get("default").map(scalar).unwrap_or_default()
                }
            };
            (name, value)
        })
        .collect()
}

/// Every input `declared`, by name, once each input `given` is found
/// declared and each declared one described: what `what` takes.
fn declared_inputs<'a>(
    what: &str,
    declared: &'a Mapping,
    given: &Mapping,
) -> Vec<(String, &'a Yaml)> {
    for name in given.keys() {
        assert!(
            declared.contains_key(name),
            "{what} takes no input {name:?}"
        );
    }
    declared
        .iter()
        .map(|(name, input)| {
            let name = name.as_str().unwrap().to_string();
            assert!(
                !input["description"].as_str().unwrap_or("").is_empty(),
                "input {name} of {what} has a description"
            );
            (name, input)
        })
        .collect()
}

/// A GitHub runner's directories for one job: the workspace, and
/// `RUNNER_TEMP` with the files of workflow commands.
struct Runner {
    dir: tempfile::TempDir,
}

/// What a step left: its exit code and output, the lines it wrote to
/// `GITHUB_OUTPUT`, the action's outputs they make, and the step summary.
struct Step {
    output: Output,
    output_lines: Vec<String>,
    outputs: BTreeMap<String, String>,
    summary: String,
}

impl Step {
    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn stdout(&self) -> String {
        String::from_utf8(self.output.stdout.clone()).unwrap()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

impl Runner {
    fn new() -> Runner {
        let runner = Runner {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(runner.workspace()).unwrap();
        std::fs::create_dir_all(runner.temp().join("_runner_file_commands")).unwrap();
        runner
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn temp(&self) -> PathBuf {
        self.dir.path().join("_temp")
    }

    /// A copy of `from` in the workspace, as `name`.
    fn put(&self, name: &str, from: &Path) {
        std::fs::copy(from, self.workspace().join(name)).unwrap();
    }

    /// A file of the workspace.
    fn file(&self, name: &str) -> PathBuf {
        self.workspace().join(name)
    }

    /// The action's steps with these inputs, as a runner runs a composite
    /// action's `run:` steps: `bash --noprofile --norc -eo pipefail FILE`
    /// (GitHub's command for `shell: bash`) in the workspace, with the
    /// runner's variables, fresh output and summary files, and each step's
    /// `env:` evaluated. `path` comes first in `PATH`; `env` is added (the
    /// tests' module cache, a stand-in's settings).
    fn run_action(&self, with: &Mapping, path: &[&Path], env: &[(&str, &Path)]) -> Step {
        let inputs = input_values(with);
        let commands = self.temp().join("_runner_file_commands");
        let output_file = commands.join("set_output_0");
        let summary_file = commands.join("step_summary_0");
        std::fs::write(&output_file, "").unwrap();
        std::fs::write(&summary_file, "").unwrap();
        let steps = action_steps();
        assert_eq!(steps.len(), 1, "one step: its exit code is the action's");
        let step = &steps[0];
        assert_eq!(step["shell"], "bash");
        let script = step["run"].as_str().unwrap();
        let file = self.temp().join("step.sh");
        std::fs::write(&file, script).unwrap();
        let system_path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = path.iter().map(|p| p.to_path_buf()).collect();
        dirs.extend(std::env::split_paths(&system_path));
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(self.workspace())
            .env_clear()
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8")
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", self.workspace())
            .env("RUNNER_TEMP", self.temp())
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_STEP_SUMMARY", &summary_file)
            .env("SHIPGATE_CACHE_DIR", cache_dir())
            .env("SHIPGATE_CACHE_KEY_FILE", cache_key_file());
        for (name, value) in env {
            command.env(name, value);
        }
        for (name, expression) in step["env"].as_mapping().unwrap() {
            let expression = expression.as_str().unwrap();
            let input = expression
                .strip_prefix("${{ inputs.")
                .and_then(|rest| rest.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("an expression this runner does not know: {expression}"));
            command.env(name.as_str().unwrap(), &inputs[input]);
        }
        let output = command.output().unwrap();
        let output_lines: Vec<String> = std::fs::read_to_string(&output_file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let written: BTreeMap<&str, &str> = output_lines
            .iter()
            .map(|line| {
                let (name, value) = line.split_once('=').expect("NAME=VALUE");
                assert!(!name.contains("<<"), "{line}");
                (name, value)
            })
            .collect();
        let step_id = step["id"].as_str().unwrap();
        let outputs = action()["outputs"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(name, output)| {
                let name = name.as_str().unwrap().to_string();
                let expected = format!("${{{{ steps.{step_id}.outputs.{name} }}}}");
                assert_eq!(output["value"].as_str(), Some(expected.as_str()));
                let value = written.get(name.as_str()).copied().unwrap_or("");
                (name, value.to_string())
            })
            .collect();
        Step {
            output,
            output_lines,
            summary: std::fs::read_to_string(&summary_file).unwrap(),
            outputs,
        }
    }
}

/// The shipgate this test built, run in `dir`.
fn shipgate_in(dir: &Path, args: &[&str]) -> Output {
    crate::support::shipgate_in(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A workspace with the example pipeline's gate and `snapshot` as
/// snapshot.json.
fn runner_with(snapshot_name: &str) -> Runner {
    let runner = Runner::new();
    runner.put("gate.toml", &repo().join("integrations/gate.toml"));
    runner.put("snapshot.json", &snapshot(snapshot_name));
    runner
}

/// What the action must have printed and written for the decision shipgate
/// makes in `runner`'s workspace with the workflow's inputs, whichever
/// shipgate ran.
fn assert_github_step(runner: &Runner, step: &Step, code: i32, decision: &str) {
    let args = [
        "eval",
        "--phase",
        "preflight",
        "--snapshot",
        "snapshot.json",
        "--gate",
        "gate.toml",
    ];
    let record = json_output(&shipgate_in(
        &runner.workspace(),
        &[&args[..], &["--format", "json"]].concat(),
    ));
    assert_eq!(step.code(), Some(code), "{}", step.stderr());
    assert_eq!(
        step.output_lines,
        [
            format!("exit-code={code}"),
            format!("decision={decision}"),
            format!("summary={}", record["summary"].as_str().unwrap()),
        ]
    );
    assert_eq!(step.outputs["decision"], decision);
    assert_eq!(step.outputs["exit-code"], code.to_string());
    // The annotations: the decision first, then one error per failing check.
    let stdout = step.stdout();
    let first = if decision == "allow" {
        "::notice title=shipgate preflight::allow: "
    } else {
        "::error title=shipgate preflight::deny: "
    };
    assert!(stdout.starts_with(first), "{stdout}");
    let failing = record["policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|policy| policy["findings"].as_array().unwrap())
        .filter(|finding| finding["decision"] != "allow")
        .count();
    assert_eq!(
        stdout
            .matches("::error title=shipgate preflight::preflight/")
            .count(),
        failing,
        "{stdout}"
    );
    assert!(stdout.contains("::stop-commands::"), "{stdout}");
    // The step summary: what `--format markdown` prints, for the decision
    // the step printed (each evaluation has its own id).
    let markdown = shipgate_in(
        &runner.workspace(),
        &[&args[..], &["--format", "markdown"]].concat(),
    );
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    let id_line = "<sub>decision `";
    let (tables, _) = markdown.split_once(id_line).unwrap();
    let (summary_tables, id) = step.summary.split_once(id_line).expect("the decision id");
    assert_eq!(summary_tables, tables);
    let id = &id[..32];
    assert!(stdout.contains(&format!("decision {id}")), "{id}: {stdout}");
    assert!(
        step.summary
            .starts_with(&format!("### shipgate preflight: **{decision}**")),
        "{}",
        step.summary
    );
}

/// The workflow runs this repository's action, as the README shows it, on
/// the inputs the action declares; the preflight job runs when tests
/// failed (so that shipgate says why it blocks) but not in a cancelled run.
#[test]
fn the_github_workflow_uses_the_action_and_runs_preflight_unless_cancelled() {
    let workflow = workflow();
    let preflight = &workflow["jobs"]["preflight"];
    assert_eq!(preflight["if"], "${{ !cancelled() }}");
    assert_eq!(workflow["jobs"]["deploy"]["needs"], "preflight");
    let step = workflow_step();
    assert_eq!(step["uses"].as_str(), Some(action_reference().as_str()));
    let inputs = input_values(step["with"].as_mapping().unwrap());
    assert_eq!(inputs["format"], "github", "the default format");
    assert_eq!(inputs["binary"], "", "the image runs by default");
    assert_eq!(
        inputs["image"],
        read("image/REFERENCE").trim(),
        "the action runs the release's image"
    );
    // integrations/README.md shows the same step.
    let shown = readme_yaml("## The GitHub Action");
    let shown = &shown.as_sequence().expect("a list of steps")[0];
    assert_eq!(shown["uses"], step["uses"]);
    assert_eq!(shown["with"], step["with"]);
}

/// The YAML block of integrations/README.md under `heading`.
fn readme_yaml(heading: &str) -> Yaml {
    let readme = read("integrations/README.md");
    let section = &readme[readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("integrations/README.md has {heading}"))..];
    let block = &section[section.find("```yaml\n").unwrap() + "```yaml\n".len()..];
    serde_yaml::from_str(&block[..block.find("```").unwrap()]).unwrap()
}

/// The action with the workflow's inputs and shipgate on the runner: the
/// decision and each failing check as annotations, the summary table,
/// the outputs, and shipgate's exit code as the step's.
#[test]
fn the_action_annotates_summarises_and_exits_with_shipgates_code() {
    let binary = env!("CARGO_BIN_EXE_shipgate");
    for (snapshot_name, code, decision) in [
        ("preflight-blocked", 1, "deny"),
        ("preflight-ready", 0, "allow"),
    ] {
        let runner = runner_with(snapshot_name);
        let step = runner.run_action(&workflow_inputs(&[("binary", binary)]), &[], &[]);
        assert_github_step(&runner, &step, code, decision);
    }
    // No decision: an invalid snapshot exits 65, with the message and no
    // decision output, and the step fails.
    let runner = runner_with("preflight-ready");
    std::fs::write(runner.file("snapshot.json"), "{}").unwrap();
    let step = runner.run_action(&workflow_inputs(&[("binary", binary)]), &[], &[]);
    assert_eq!(step.code(), Some(65), "{}", step.stderr());
    assert_eq!(step.output_lines, ["exit-code=65", "decision=", "summary="]);
    assert!(step.stderr().contains("snapshot.json"), "{}", step.stderr());
    assert!(!step.stdout().contains("::error"), "{}", step.stdout());
    assert_eq!(step.summary, "");
}

/// Inputs are data: the policy list, an empty gate (the built-in one) and
/// another format reach shipgate as arguments, and a snapshot path with
/// shell syntax in it is a file name that does not exist, not a command.
#[test]
fn the_actions_inputs_reach_shipgate_as_arguments_never_as_code() {
    let binary = env!("CARGO_BIN_EXE_shipgate");
    let runner = runner_with("preflight-blocked");
    let inputs = |pairs: &[(&str, &str)]| -> Mapping {
        pairs
            .iter()
            .map(|(name, value)| (Yaml::from(*name), Yaml::from(*value)))
            .collect()
    };
    let step = runner.run_action(
        &inputs(&[
            ("phase", "preflight"),
            ("snapshot", "snapshot.json"),
            ("policy", "builtin:preflight\n"),
            ("format", "json"),
            ("binary", binary),
        ]),
        &[],
        &[],
    );
    assert_eq!(step.code(), Some(1), "{}", step.stderr());
    let record: Value = serde_json::from_str(&step.stdout()).unwrap();
    assert_eq!(record["gate"], "default");
    let modules: Vec<&str> = record["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["builtin:preflight"]);
    assert_eq!(step.outputs["decision"], "deny");
    assert_eq!(step.summary, "", "only --format github writes the summary");

    // A module reference is a word, never a file pattern: `*` is not
    // gate.toml and snapshot.json.
    let step = runner.run_action(
        &inputs(&[
            ("phase", "preflight"),
            ("snapshot", "snapshot.json"),
            ("policy", "*"),
            ("binary", binary),
        ]),
        &[],
        &[],
    );
    assert_eq!(step.code(), Some(66), "{}", step.stderr());
    assert!(
        step.stderr().contains("error: *: no such module file"),
        "{}",
        step.stderr()
    );

    let forged = "snapshot.json $(touch injected) `touch injected`; touch injected";
    let step = runner.run_action(
        &inputs(&[
            ("phase", "preflight"),
            ("snapshot", forged),
            ("binary", binary),
        ]),
        &[],
        &[],
    );
    assert_eq!(step.code(), Some(66), "{}", step.stderr());
    assert!(step.stderr().contains(forged), "{}", step.stderr());
    assert!(!runner.file("injected").exists());
    assert_eq!(step.output_lines, ["exit-code=66", "decision=", "summary="]);
}

/// `docker run` as far as the action uses it: runs the test's shipgate as
/// the image's, in the container's working directory through the mounts,
/// with only the environment passed with -e (and the tests' module
/// cache); every path it is handed must be mounted, as it would have to be
/// in a container. It records the image it was asked for.
const DOCKER_STAND_IN: &str = r#"#!/usr/bin/env bash
set -euo pipefail
if [ "${1-}" != run ]; then echo "docker stand-in: only run" >&2; exit 125; fi
shift
mounts=()
environment=()
workdir=/
entrypoint=
while [ $# -gt 0 ]; do
    case "$1" in
        --rm) shift ;;
        --user)
            if [ "$2" != "$(id -u):$(id -g)" ]; then echo "docker stand-in: --user $2" >&2; exit 125; fi
            shift 2 ;;
        -v) mounts+=("$2"); shift 2 ;;
        -w) workdir=$2; shift 2 ;;
        -e) environment+=("$2"); shift 2 ;;
        --entrypoint) entrypoint=$2; shift 2 ;;
        -*) echo "docker stand-in: unknown option $1" >&2; exit 125 ;;
        *) break ;;
    esac
done
image=$1
shift
printf '%s\n' "$image" >>"$STAND_IN_LOG"
if [ "$entrypoint" != shipgate ]; then echo "docker stand-in: entrypoint $entrypoint" >&2; exit 127; fi
# A path in the container, on this machine.
outside() {
    local mount host inside
    for mount in "${mounts[@]}"; do
        host=${mount%%:*}
        inside=${mount#*:}
        if [ "$1" = "$inside" ] || [[ "$1" == "$inside"/* ]]; then
            printf '%s\n' "$host${1#"$inside"}"
            return
        fi
    done
    echo "docker stand-in: $1 is not mounted" >&2
    return 1
}
args=()
for arg in "$@"; do
    if [[ "$arg" == /* ]]; then arg=$(outside "$arg"); fi
    args+=("$arg")
done
variables=()
for variable in "${environment[@]}"; do
    case "$variable" in
        *=*) variables+=("$variable") ;;
        *) value=$(outside "${!variable}"); variables+=("$variable=$value") ;;
    esac
done
dir=$(outside "$workdir")
cd "$dir"
exec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
    SHIPGATE_CACHE_DIR="$SHIPGATE_CACHE_DIR" SHIPGATE_CACHE_KEY_FILE="$SHIPGATE_CACHE_KEY_FILE" \
    "${variables[@]}" "$STAND_IN_SHIPGATE" "${args[@]}"
"#;

/// Without `binary` the action runs the image with docker: the workspace,
/// the step summary's directory and the results directory mounted, the
/// runner's user, shipgate as the entrypoint. A stand-in for docker checks
/// each of those and runs the test's binary in the image's place.
#[test]
fn the_action_runs_the_image_with_what_shipgate_reads_and_writes_mounted() {
    let tools = tempfile::tempdir().unwrap();
    crate::support::install_executable(tools.path(), "docker", DOCKER_STAND_IN);
    let log = tools.path().join("images");
    for (snapshot_name, code, decision) in [
        ("preflight-blocked", 1, "deny"),
        ("preflight-ready", 0, "allow"),
    ] {
        let runner = runner_with(snapshot_name);
        let step = runner.run_action(
            &workflow_inputs(&[]),
            &[tools.path()],
            &[
                ("STAND_IN_LOG", &log),
                (
                    "STAND_IN_SHIPGATE",
                    Path::new(env!("CARGO_BIN_EXE_shipgate")),
                ),
            ],
        );
        assert_github_step(&runner, &step, code, decision);
    }
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{0}\n{0}\n", read("image/REFERENCE").trim()),
        "the action runs the release's image"
    );

    // An image input docker would read as an option is refused with exit
    // 64, without echoing it into a workflow command and without docker.
    let runner = runner_with("preflight-ready");
    let step = runner.run_action(
        &workflow_inputs(&[("image", "-v/:/host")]),
        &[tools.path()],
        &[
            ("STAND_IN_LOG", &log),
            (
                "STAND_IN_SHIPGATE",
                Path::new(env!("CARGO_BIN_EXE_shipgate")),
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&step.output.stdout);
    assert_eq!(step.output.status.code(), Some(64), "{stdout}");
    assert!(
        stdout.contains("::error title=shipgate::the image input is not an image reference"),
        "{stdout}"
    );
    assert!(!stdout.contains("-v/:/host"), "{stdout}");
    assert_eq!(step.outputs["exit-code"], "64");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        2,
        "docker was not run"
    );
}

// The GitLab CI/CD component.

/// The component file's two documents as GitLab reads them: the header
/// (`spec:`) and the configuration after the `---` line, as text (GitLab
/// interpolates inputs into it before it is a pipeline's).
fn component_documents() -> (Yaml, String) {
    let text = read(COMPONENT);
    let (header, body) = text
        .split_once("\n---\n")
        .expect("a header, a `---` line, then the configuration");
    (serde_yaml::from_str(header).unwrap(), body.to_string())
}

/// The example pipeline's `include:` of the component.
fn component_include() -> Yaml {
    let pipeline = yaml_documents(PIPELINE).remove(0);
    let includes = pipeline["include"].as_sequence().unwrap();
    assert_eq!(includes.len(), 1);
    includes[0].clone()
}

/// The value of every input for an `include:` that gives `given`: what it
/// says, else the input's default; a given input must be declared, a value
/// one of its `options`, and an input without a default given.
fn component_inputs(given: &Mapping) -> BTreeMap<String, Yaml> {
    let (header, _) = component_documents();
    let declared = header["spec"]["inputs"].as_mapping().unwrap();
    declared_inputs("the component", declared, given)
        .into_iter()
        .map(|(name, input)| {
            let value = given
                .get(name.as_str())
                .or(input.get("default"))
                .unwrap_or_else(|| panic!("input {name} has no default and is not given"))
                .clone();
            if let Some(options) = input.get("options") {
                assert!(
                    options.as_sequence().unwrap().contains(&value),
                    "{name}: {value:?} is not one of {options:?}"
                );
            }
            // Inputs are strings unless they say otherwise.
            assert!(input.get("type").is_none() || input["type"] == "string");
            assert!(value.is_string(), "{name}: {value:?} is a string");
            (name, value)
        })
        .collect()
}

/// `value` with every `$[[ inputs.NAME ]]` replaced, as GitLab does it: in
/// keys and string values; a string that is only an interpolation becomes
/// the input's value.
fn interpolate(value: &Yaml, inputs: &BTreeMap<String, Yaml>) -> Yaml {
    match value {
        Yaml::String(text) => interpolate_text(text, inputs),
        Yaml::Sequence(items) => {
            Yaml::Sequence(items.iter().map(|v| interpolate(v, inputs)).collect())
        }
        Yaml::Mapping(mapping) => Yaml::Mapping(
            mapping
                .iter()
                .map(|(key, value)| (interpolate(key, inputs), interpolate(value, inputs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn interpolate_text(text: &str, inputs: &BTreeMap<String, Yaml>) -> Yaml {
    let mut result = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("$[[") {
        let end = rest[at..].find("]]").expect("an interpolation ends") + at;
        let expression = rest[at + 3..end].trim();
        let name = expression
            .strip_prefix("inputs.")
            .unwrap_or_else(|| panic!("an interpolation this test does not know: {expression}"));
        let value = inputs
            .get(name)
            .unwrap_or_else(|| panic!("no input {name}"));
        if at == 0 && end + 2 == rest.len() && result.is_empty() {
            return value.clone();
        }
        result.push_str(&rest[..at]);
        result.push_str(value.as_str().unwrap());
        rest = &rest[end + 2..];
    }
    result.push_str(rest);
    Yaml::String(result)
}

/// The component's configuration with these inputs.
fn component_config(given: &Mapping) -> Mapping {
    let (_, body) = component_documents();
    let body: Yaml = serde_yaml::from_str(&body).unwrap();
    let config = interpolate(&body, &component_inputs(given));
    config.as_mapping().unwrap().clone()
}

/// `local` merged into `included` as GitLab merges a file's own keys into
/// an included job of the same name: mappings key by key, anything else
/// replaced.
fn merge(included: &Yaml, local: &Yaml) -> Yaml {
    match (included, local) {
        (Yaml::Mapping(included), Yaml::Mapping(local)) => {
            let mut merged = included.clone();
            for (key, value) in local {
                let value = match included.get(key) {
                    Some(base) => merge(base, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Yaml::Mapping(merged)
        }
        (_, local) => local.clone(),
    }
}

/// The example pipeline as GitLab assembles it: its own keys and the
/// component's job with the inputs it gives, merged.
pub(crate) fn gitlab_pipeline() -> Mapping {
    let pipeline = yaml_documents(PIPELINE).remove(0);
    let include = component_include();
    let given = include["inputs"].as_mapping().unwrap();
    let mut assembled = component_config(given);
    for (key, value) in pipeline.as_mapping().unwrap() {
        if key == "include" {
            continue;
        }
        let value = match assembled.get(key) {
            Some(base) => merge(base, value),
            None => value.clone(),
        };
        assembled.insert(key.clone(), value);
    }
    assembled
}

/// The component's job, named by its `job-name` input.
fn component_job_name(given: &Mapping) -> String {
    component_inputs(given)["job-name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The GitLab pipeline includes this repository's component by the path
/// GitLab resolves (`FQDN/PROJECT/NAME@VERSION`, NAME a file in
/// `templates/`), with inputs it declares, as the README shows; the
/// assembled pipeline's `needs` and stages name jobs and stages it has.
#[test]
fn the_gitlab_pipeline_includes_the_component_with_the_inputs_it_declares() {
    let include = component_include();
    let path = include["component"].as_str().unwrap();
    let image = read("image/REFERENCE");
    let owner = image.trim().split('/').nth(1).unwrap();
    assert_eq!(path, format!("$CI_SERVER_FQDN/{owner}/shipgate/shipgate@1"));
    let name = path.rsplit_once('/').unwrap().1.split('@').next().unwrap();
    assert_eq!(format!("templates/{name}.yml"), COMPONENT);
    let given = include["inputs"].as_mapping().unwrap();
    let inputs = component_inputs(given);
    assert_eq!(
        inputs["image"].as_str().unwrap(),
        format!("{}-shell", image.trim()),
        "the job runs the release's image, with a shell"
    );
    let pipeline = gitlab_pipeline();
    let job = &pipeline[component_job_name(given).as_str()];
    assert_eq!(job["artifacts"]["when"], "always");
    assert_eq!(job["artifacts"]["reports"]["junit"], "shipgate-junit.xml");
    let stages = pipeline["stages"].as_sequence().unwrap();
    for (name, job) in &pipeline {
        let Some(job) = job.as_mapping() else {
            continue;
        };
        if let Some(stage) = job.get("stage") {
            assert!(stages.contains(stage), "{name:?}: stage {stage:?}");
        }
        for needed in job
            .get("needs")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            assert!(
                pipeline.get(needed).is_some_and(Yaml::is_mapping),
                "{name:?} needs {needed:?}, which is no job"
            );
        }
    }
    assert_eq!(
        pipeline["deploy"]["needs"][0],
        component_job_name(given).as_str(),
        "deploy waits for shipgate's job"
    );
    // integrations/README.md shows the same include.
    let shown = readme_yaml("## The GitLab CI/CD component");
    assert_eq!(shown["include"][0], include);
}

/// A GitLab job's `script` lines, one shell text.
pub(crate) fn job_script(job: &Yaml) -> String {
    let lines: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    lines.join("\n")
}

/// The component job's script run as a GitLab runner runs it in the
/// `-shell` image: with `sh` (busybox's, as in that image) under `set -e`,
/// in the checkout, with the job's variables; `shipgate` is the test's.
fn run_gitlab_job(job: &Yaml, checkout: &Path) -> Output {
    let bin = checkout.join(".bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("shipgate");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shipgate"), &link).unwrap();
    }
    let script = format!("set -e\n{}\n", job_script(job));
    let mut command = Command::new("busybox");
    command
        .args(["sh", "-c", &script])
        .current_dir(checkout)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", checkout)
        .env("LANG", "C.UTF-8")
        .env("CI", "true")
        .env("GITLAB_CI", "true")
        .env("CI_PROJECT_DIR", checkout);
    for (name, value) in job["variables"].as_mapping().unwrap() {
        command.env(name.as_str().unwrap(), value.as_str().unwrap());
    }
    // The tests' module cache: it comes before the job's XDG_CACHE_HOME.
    command
        .env("SHIPGATE_CACHE_DIR", cache_dir())
        .env("SHIPGATE_CACHE_KEY_FILE", cache_key_file());
    command
        .output()
        .expect("running busybox sh: ./test.sh installs it (Debian package busybox-static)")
}

/// A checkout with the example's gate and `snapshot_name` as snapshot.json.
fn checkout_with(snapshot_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("integrations/gate.toml"),
        dir.path().join("gate.toml"),
    )
    .unwrap();
    std::fs::copy(snapshot(snapshot_name), dir.path().join("snapshot.json")).unwrap();
    dir
}

/// The component's job, as the example pipeline includes it, leaves the
/// decision record and a JUnit report with a test case per check (the
/// failing ones as failures) and exits with shipgate's code; the policy
/// input replaces the gate's policies.
#[test]
fn the_gitlab_component_job_leaves_the_decision_and_a_junit_report_of_every_check() {
    let pipeline = gitlab_pipeline();
    let given = component_include()["inputs"].as_mapping().unwrap().clone();
    let job = &pipeline[component_job_name(&given).as_str()];
    let artifacts: Vec<&str> = job["artifacts"]["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(artifacts, ["shipgate-decision.json", "shipgate-junit.xml"]);
    for (snapshot_name, code, decision) in [
        ("preflight-blocked", 1, "deny"),
        ("preflight-ready", 0, "allow"),
    ] {
        let checkout = checkout_with(snapshot_name);
        let output = run_gitlab_job(job, checkout.path());
        assert_eq!(output.status.code(), Some(code), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout)
                .contains(&format!("shipgate exit code {code}\n")),
            "{}",
            text(&output)
        );
        let record: Value = serde_json::from_str(
            &std::fs::read_to_string(checkout.path().join(artifacts[0])).unwrap(),
        )
        .unwrap();
        assert_eq!(record["decision"], decision);
        let xml = std::fs::read_to_string(
            checkout
                .path()
                .join(job["artifacts"]["reports"]["junit"].as_str().unwrap()),
        )
        .unwrap();
        let report =
            quick_junit::Report::deserialize_from_str(&xml).expect("JUnit XML GitLab parses");
        let suite = &report.test_suites[0];
        let findings = record["policies"][0]["findings"].as_array().unwrap();
        let failing = findings.iter().filter(|f| f["decision"] != "allow").count();
        assert_eq!(suite.failures, failing, "{snapshot_name}");
        assert_eq!(suite.tests, findings.len(), "{snapshot_name}");
        assert_eq!(failing == 0, decision == "allow");
    }

    // The policy input, and no gate: the built-in gate with that policy.
    let mut given = given;
    given.insert("gate".into(), "".into());
    given.insert("policy".into(), "builtin:preflight".into());
    let config = component_config(&given);
    let job = &config[component_job_name(&given).as_str()];
    let checkout = checkout_with("preflight-blocked");
    let output = run_gitlab_job(job, checkout.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(checkout.path().join("shipgate-decision.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["gate"], "default");
    assert_eq!(record["policies"][0]["module"], "builtin:preflight");
}

/// The action, the workflow, the component and the pipeline pass the
/// schemas check-jsonschema bundles for GitHub and GitLab. check-jsonschema
/// reads one YAML document a file, and a component is two: GitLab reads the
/// header (`spec:`), then interpolates the inputs into the configuration
/// after `---`; so each is validated alone, the configuration as written
/// and with the inputs the pipeline gives, and the pipeline as GitLab
/// assembles it with the component's job.
#[test]
fn the_action_the_workflow_and_the_component_pass_their_ecosystems_schemas() {
    assert_schema_valid("github-actions", &repo().join(ACTION), ACTION);
    assert_schema_valid("github-workflows", &repo().join(WORKFLOW), WORKFLOW);
    assert_schema_valid("gitlab-ci", &repo().join(PIPELINE), PIPELINE);

    let dir = tempfile::tempdir().unwrap();
    let (header, body) = component_documents();
    let header_file = yaml_file(dir.path(), "header.yml", &header);
    assert_schema_valid("gitlab-ci", &header_file, "the component's header");
    let body_file = dir.path().join("configuration.yml");
    std::fs::write(&body_file, &body).unwrap();
    assert_schema_valid("gitlab-ci", &body_file, "the component's configuration");
    let given = component_include()["inputs"].as_mapping().unwrap().clone();
    let interpolated = yaml_file(
        dir.path(),
        "interpolated.yml",
        &Yaml::Mapping(component_config(&given)),
    );
    assert_schema_valid(
        "gitlab-ci",
        &interpolated,
        "the component's configuration with the pipeline's inputs",
    );
    let assembled = yaml_file(
        dir.path(),
        "assembled.yml",
        &Yaml::Mapping(gitlab_pipeline()),
    );
    assert_schema_valid("gitlab-ci", &assembled, "the assembled pipeline");

    // The file whole is two documents, which check-jsonschema does not
    // read: hence the split above.
    let whole = check_jsonschema("gitlab-ci", &repo().join(COMPONENT));
    assert!(!whole.status.success());
    assert!(
        text(&whole).contains("expected a single document"),
        "{}",
        text(&whole)
    );
    // The schemas are enforced: a misspelt key is refused.
    let misspelt = dir.path().join("action.yml");
    std::fs::write(
        &misspelt,
        read(ACTION).replace("    required: true\n", "    requird: true\n"),
    )
    .unwrap();
    assert!(
        !check_jsonschema("github-actions", &misspelt)
            .status
            .success()
    );
    let misspelt = dir.path().join("misspelt.yml");
    std::fs::write(&misspelt, body.replace("  artifacts:\n", "  artefacts:\n")).unwrap();
    assert!(!check_jsonschema("gitlab-ci", &misspelt).status.success());
}

/// Every script the action, the workflow, the component and the pipeline
/// run passes shellcheck (bash for GitHub's `shell: bash` and its default,
/// sh for GitLab's jobs in images with a POSIX shell); none has an input
/// written into it: the action's inputs arrive as `env:`, the component's
/// as `variables:`.
#[test]
fn every_script_passes_shellcheck_and_takes_its_inputs_as_variables() {
    let mut findings = String::new();
    for step in action_steps() {
        let script = step["run"].as_str().unwrap();
        assert!(!script.contains("${{"), "an expression in {script}");
        findings += &shellcheck("bash", script);
    }
    for (name, job) in workflow()["jobs"].as_mapping().unwrap() {
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(script) = step["run"].as_str() {
                assert!(
                    !script.contains("${{"),
                    "{name:?}: an expression in {script}"
                );
                findings += &shellcheck("bash", script);
            }
        }
    }
    let (_, body) = component_documents();
    let body: Yaml = serde_yaml::from_str(&body).unwrap();
    for (name, job) in body.as_mapping().unwrap() {
        let script = job["script"].as_sequence().unwrap();
        for line in script {
            assert!(
                !line.as_str().unwrap().contains("$[["),
                "{name:?}: an input in its script"
            );
        }
    }
    for (name, job) in gitlab_pipeline() {
        if let Some(script) = job.get("script").and_then(Yaml::as_sequence) {
            let lines: Vec<&str> = script.iter().map(|l| l.as_str().unwrap()).collect();
            let found = shellcheck("sh", &lines.join("\n"));
            if !found.is_empty() {
                findings += &format!("{name:?}:\n{found}");
            }
        }
    }
    assert!(findings.is_empty(), "{findings}");
    // shellcheck is at work: an unquoted variable is a finding.
    assert!(!shellcheck("sh", "cat $SNAPSHOT\n").is_empty());
}
