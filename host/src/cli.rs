//! The command line: argument definitions (clap derive) and what each
//! command does. `main.rs` only parses and maps the outcome to an exit code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use shipgate_policy::Phase;

use crate::authoring;
use crate::decision_log;
use crate::error::{Error, exit};
use crate::evaluate::PreparedGate;
use crate::gate::Gate;
use crate::history;
use crate::inspect;
use crate::report::{self, Format, Style};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::server::ServeArgs;
use crate::snapshot::{self, ValidSnapshot};

const EXIT_CODES: &str = "\
Exit codes:
  0   allow        the gate lets the deployment go ahead
  1   deny         block / hold / not verified yet
  2   rollback     roll back now
  64  usage error  (a mistyped flag never reads as rollback)
  65  invalid input: snapshot, gate file or policy config
  66  an input file does not exist
  70  internal error";

/// `shipgate --version`: this binary, the policy contract it runs, and the
/// wasmtime it runs them with (both from the build: wit/ and Cargo.lock).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\npolicy contract: ",
    env!("SHIPGATE_CONTRACT"),
    "\nwasmtime: ",
    env!("SHIPGATE_WASMTIME_VERSION"),
);

/// A deployment gate: evaluates WebAssembly policies over a deployment
/// snapshot and answers allow, deny or rollback, with the reasons.
#[derive(Debug, Parser)]
#[command(name = "shipgate", version, long_version = LONG_VERSION, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Evaluate a phase of a deployment: the gate step of a pipeline.
    #[command(after_help = EXIT_CODES)]
    Eval(EvalArgs),
    /// List the stock policies and the phases they evaluate.
    Policies,
    /// Show what a policy module is: name, version, phases, sha256, size, imports.
    Inspect(InspectArgs),
    /// Print the JSON Schema of a snapshot or a gate file.
    Schema {
        #[arg(value_enum)]
        what: SchemaKind,
    },
    /// Re-evaluate every decision in a decision log and report any that differ.
    Replay(ReplayArgs),
    /// Check a whole gate before a rollout: load every policy of every phase,
    /// verify pins and phases, and have each policy validate its config.
    Check {
        /// The gate file (default: the built-in gate).
        #[arg(long, value_name = "FILE")]
        gate: Option<PathBuf>,
        /// Output format: text, or Markdown with the rollout plan as a
        /// Mermaid gantt, for review in a pull request.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Draw a rollout from its decision log: a self-contained HTML page of
    /// its stages, decisions and metrics against their limits (--html), or
    /// the incident report of a rollback (--incident).
    Report(ReportArgs),
    /// Create a policy crate that builds and passes its own tests as
    /// generated: the policy, unit tests, fixtures, a gate and a README.
    New(NewArgs),
    /// Build a policy crate for wasm32-wasip2 with the stock policies'
    /// settings, check the component, and pin it in the crate's gate.toml.
    Build(BuildArgs),
    /// Run fixture cases (`tests/policy/*.toml`) through the real runtime:
    /// exit 0 when every case passes, 1 when any fails.
    Test(TestArgs),
    /// Publish a policy module to an OCI registry as a Wasm artifact; print
    /// its reference pinned to the digest, for a gate's `module`.
    Push(PushArgs),
    /// Fetch a module (and its cosign signatures) from a registry into the
    /// module store, e.g. in an init container before `serve --store`.
    Pull(PullArgs),
    /// Sign a module in a registry with a key, in cosign's format.
    Sign(SignArgs),
    /// Serve decisions over HTTP to Argo Rollouts, Spinnaker, Flagger and
    /// any client (see integrations/README.md).
    Serve(Box<ServeArgs>),
    /// Print a shell completion script: `shipgate completions bash >
    /// /etc/bash_completion.d/shipgate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `shipgate man | man -l -`; with --dir,
    /// write a page for every command into DIR instead.
    Man {
        /// Write shipgate.1, shipgate-eval.1, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// The phase to decide: preflight, promotion, abort or verify.
    #[arg(long, value_parser = parse_phase)]
    pub(crate) phase: Phase,
    /// The deployment snapshot (JSON, schema v1 or v2); `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) snapshot: PathBuf,
    /// The gate file (TOML). Default: the built-in gate (stock policies,
    /// stages 5/10/25/50/100, 15 minutes a stage).
    #[arg(long, value_name = "FILE")]
    pub(crate) gate: Option<PathBuf>,
    /// Evaluate these modules (`builtin:NAME` or a .wasm path) instead of
    /// the gate's policies, under the gate's plan, thresholds and limits.
    #[arg(long = "policy", value_name = "MODULE")]
    pub(crate) policies: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// List every check, passed ones too (text and github formats).
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Append the decision, with its snapshot, to this JSON-lines log
    /// (flushed to disk before the decision is printed; a file: standard
    /// output carries the decision).
    #[arg(long, value_name = "FILE")]
    pub(crate) decision_log: Option<PathBuf>,
    /// Also write the decision and its summary as the files `decision` and
    /// `summary` in this directory (Tekton task results: /tekton/results).
    #[arg(long, value_name = "DIR")]
    pub(crate) results_dir: Option<PathBuf>,
    /// Also write the decision as JUnit XML to this file, a test case per
    /// check (GitLab: `artifacts:reports:junit`).
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// A .wasm policy component, `builtin:NAME`, or
    /// `oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST`.
    pub(crate) module: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also verify the module's cosign signature with this public key (PEM)
    /// and show the signer; a module that is not signed by it is an error.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// A decision log written by `eval --decision-log`.
    pub(crate) log: PathBuf,
    /// The gate the decisions were made with (default: the built-in gate).
    #[arg(long, value_name = "FILE")]
    pub(crate) gate: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    Text,
    Markdown,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("report").required(true).args(["html", "incident"])))]
pub(crate) struct ReportArgs {
    /// A decision log written by `eval --decision-log` or `serve` (gzipped
    /// or not).
    pub(crate) log: PathBuf,
    /// The deployment to draw (its `deployment.id`); needed when the log
    /// holds decisions about several.
    #[arg(long, value_name = "ID")]
    pub(crate) deployment: Option<String>,
    /// Write the rollout as one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Draft the incident report (Markdown) of this rollback decision
    /// (`last`: the deployment's last rollback), to standard output or
    /// --output.
    #[arg(long, value_name = "DECISION_ID|last", conflicts_with = "html")]
    pub(crate) incident: Option<String>,
    /// Write the incident report to FILE instead of standard output.
    #[arg(long, value_name = "FILE", requires = "incident")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The policy's name: lowercase letters, digits, '-' and '_'.
    pub(crate) name: String,
    /// Create the crate here instead of ./NAME (must not exist).
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
    /// The phases the policy evaluates, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_phase,
          default_value = "promotion,abort")]
    pub(crate) phases: Vec<Phase>,
    /// Depend on the SDK crate in this directory (e.g. `policies/sdk` of a
    /// shipgate checkout) instead of the released `shipgate-policy`.
    #[arg(long, value_name = "DIR")]
    pub(crate) sdk_path: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// The policy crate's directory.
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BuildFormat::Text)]
    pub(crate) format: BuildFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BuildFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Fixture files, or directories searched for *.toml.
    #[arg(value_name = "PATH", default_value = "tests/policy")]
    pub(crate) paths: Vec<PathBuf>,
    /// The gate for fixtures that name none (default: the built-in gate).
    #[arg(long, value_name = "FILE")]
    pub(crate) gate: Option<PathBuf>,
    /// Evaluate these modules (`builtin:NAME` or a .wasm path) instead of
    /// the gate's policies in every case.
    #[arg(long = "policy", value_name = "MODULE")]
    pub(crate) policies: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = authoring::TestFormat::Text)]
    pub(crate) format: authoring::TestFormat,
    /// Write the report to FILE; the text report still goes to standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Also report, per policy, each check and the decisions the cases saw
    /// it make, flagging checks never seen to deny or roll back.
    #[arg(long)]
    pub(crate) coverage: bool,
}

/// How to reach a registry.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RegistryArgs {
    /// Reach this registry (`host:port`) over plain HTTP; loopback
    /// registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub(crate) insecure_registries: Vec<String>,
    /// Log in with this user (the password from standard input); default:
    /// the Docker config's credentials for the registry.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub(crate) username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub(crate) password_stdin: bool,
}

impl RegistryArgs {
    pub(crate) fn options(&self) -> Result<crate::registry::ClientOptions, Error> {
        let password = if self.password_stdin {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .map_err(|e| {
                    Error::Internal(anyhow::Error::new(e).context("reading the password"))
                })?;
            Some(password.trim_end_matches(['\r', '\n']).to_string())
        } else {
            None
        };
        Ok(crate::registry::ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            username: self.username.clone(),
            password,
            docker_config: None,
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The module: a .wasm policy component.
    pub(crate) module: PathBuf,
    /// Where: oci://REGISTRY/REPOSITORY:TAG.
    pub(crate) reference: String,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// The module: oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST.
    pub(crate) reference: String,
    /// The module store (default: $SHIPGATE_STORE, else
    /// ~/.local/share/shipgate/store).
    #[arg(long, value_name = "DIR")]
    pub(crate) store: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    /// The signing key: an ECDSA P-256 private key, PKCS#8 PEM.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The module: oci://REGISTRY/REPOSITORY@sha256:DIGEST.
    pub(crate) reference: String,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SchemaKind {
    /// The deployment snapshot (v1).
    Snapshot,
    /// The gate file.
    Gate,
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    text.parse()
}

/// The whole program: parse the process's arguments, run, and return the
/// exit code (see [`crate::exit`]). Errors are printed to stderr.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap's own usage code is 2, which a pipeline would read as
            // "rollback": usage errors are 64.
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::ALLOW,
                _ => exit::USAGE,
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shipgate: error: {error}");
            error.exit_code()
        }
    }
}

/// Runs a parsed command and returns its exit code.
pub(crate) fn run(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Eval(args) => eval(&args),
        Command::Policies => policies(),
        Command::Inspect(args) => {
            if args.module.starts_with(crate::registry::SCHEME) {
                reference(&args.module)?;
            }
            let mut inspection = inspect::inspect(&runtime()?, &args.module)?;
            if let Some(key) = &args.key {
                let signer = crate::modules::verify_reference(
                    &crate::gate::ModuleBase::WorkingDir,
                    &crate::registry::Remote::from_env(),
                    &args.module,
                    &key.display().to_string(),
                )
                .map_err(|why| Error::InvalidInput(format!("{}: signature: {why}", args.module)))?;
                inspection.signed_by = Some(signer);
            }
            print(&if args.json {
                report::json(&inspection)
            } else {
                report::inspection(&inspection)
            });
            Ok(0)
        }
        Command::Schema { what } => {
            let schema = match what {
                SchemaKind::Snapshot => snapshot::schema(),
                SchemaKind::Gate => crate::gate::schema(),
            };
            print(&report::json(&schema));
            Ok(0)
        }
        Command::Check { gate, format } => check(gate.as_deref(), format),
        Command::Report(args) => rollout_report(&args),
        Command::New(args) => new_policy(&args),
        Command::Build(args) => build(&args),
        Command::Test(args) => test(&args),
        Command::Push(args) => push(&args),
        Command::Pull(args) => pull(&args),
        Command::Sign(args) => sign(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shipgate", &mut script);
            print(&String::from_utf8_lossy(&script));
            Ok(0)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Serve(args) => {
            let _written_at_exit = crate::server::init_logging();
            crate::server::run(args.settings()?, args.listen)?;
            Ok(0)
        }
        Command::Replay(args) => {
            let gate = load_gate(args.gate.as_deref())?;
            let replayed = decision_log::replay(Arc::new(runtime()?), gate, &args.log)?;
            print(&report::replay(&replayed));
            Ok(if replayed.differing.is_empty() { 0 } else { 1 })
        }
    }
}

/// A command evaluates one policy at a time: a small instance pool keeps
/// start-up short (every pool slot costs set-up system calls).
fn runtime() -> Result<Runtime, Error> {
    let config = RuntimeConfig {
        max_concurrent_instances: 2,
        ..RuntimeConfig::default()
    };
    Ok(Runtime::new(&config)?)
}

fn load_gate(path: Option<&Path>) -> Result<Gate, Error> {
    match path {
        Some(path) => Gate::read(path),
        None => Ok(Gate::default_gate()),
    }
}

fn eval(args: &EvalArgs) -> Result<i32, Error> {
    if args.decision_log.as_deref() == Some(Path::new("-")) {
        return Err(Error::Usage(
            "--decision-log -: standard output carries the decision here; name a file \
             (serve writes its decision log to standard output with -)"
                .into(),
        ));
    }
    // Inputs first: a bad snapshot or gate is reported before any module loads.
    let snapshot = read_snapshot(&args.snapshot)?;
    let mut gate = load_gate(args.gate.as_deref())?;
    if !args.policies.is_empty() {
        gate = gate.with_modules(&args.policies, args.phase)?;
    }
    for policy in gate.unpinned_references() {
        eprintln!(
            "shipgate: warning: policy '{}': {} names no digest, so what runs can change \
             under the gate; pin it (oci://…@sha256:…, as `shipgate push` prints)",
            policy.name, policy.module
        );
    }
    let prepared = PreparedGate::prepare(Arc::new(runtime()?), gate, &[args.phase])?;
    let evaluation = prepared
        .evaluate(args.phase, &snapshot)
        .map_err(|fault| Error::Internal(anyhow::anyhow!("no decision: {fault}")))?;
    if let Some(log) = &args.decision_log {
        decision_log::append(log, &evaluation, &snapshot)?;
    }
    if let Some(dir) = &args.results_dir {
        write_results(dir, &evaluation)?;
    }
    if let Some(path) = &args.junit {
        write_file(path, &report::junit(&evaluation))?;
    }
    print(&report::render(
        &evaluation,
        args.format,
        Style::from_env(args.verbose),
    ));
    if args.format == Format::Github
        && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty())
    {
        // The decision is made and printed: a summary that cannot be written
        // must not change the exit code a pipeline acts on.
        if let Err(error) = append_file(Path::new(&summary), &report::markdown(&evaluation)) {
            eprintln!("shipgate: warning: GITHUB_STEP_SUMMARY: {error}");
        }
    }
    Ok(report::exit_code(evaluation.decision))
}

/// Reads and validates the snapshot; errors are prefixed with the file.
pub(crate) fn read_snapshot(path: &Path) -> Result<ValidSnapshot, Error> {
    let (label, bytes) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
            Error::Internal(
                anyhow::Error::new(e).context("reading the snapshot from standard input"),
            )
        })?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e))?;
        (path.display().to_string(), bytes)
    };
    snapshot::parse(&bytes).map_err(|e| Error::InvalidInput(format!("{label}: {e}")))
}

/// Prepares every phase of a gate; any policy that would fail closed is an
/// error, named with its fault.
fn check(path: Option<&Path>, format: CheckFormat) -> Result<i32, Error> {
    let gate = load_gate(path)?;
    let label = gate.origin.label();
    let prepared = PreparedGate::prepare(Arc::new(runtime()?), gate, &Phase::ALL)?;
    let policies = prepared.policies();
    let gate = prepared.gate();
    match format {
        CheckFormat::Text => print(&report::check(&policies, Style::from_env(false))),
        CheckFormat::Markdown => print(&report::check_markdown(gate, &policies)),
    }
    for (policy, _) in &policies {
        // A signature that does not verify is the policy's fault, listed above.
        if let Some(Ok(key)) = crate::modules::signer(&gate.module_base, &gate.remote, policy) {
            print(&format!("policy '{}': signed by key {key}\n", policy.name));
        }
    }
    let faults: Vec<String> = policies
        .iter()
        .filter_map(|(policy, module)| {
            let fault = module.as_ref().err()?;
            Some(format!("policy '{}': {fault}", policy.name))
        })
        .collect();
    match faults.len() {
        0 => Ok(exit::ALLOW),
        _ => Err(Error::InvalidInput(format!(
            "{label}: {}",
            faults.join("; ")
        ))),
    }
}

fn rollout_report(args: &ReportArgs) -> Result<i32, Error> {
    let rollout = history::read(&args.log, args.deployment.as_deref())?;
    if let Some(line) = rollout.torn {
        eprintln!(
            "shipgate: warning: {}:{line}: the last record is cut short (a crash while writing); \
             skipped",
            args.log.display()
        );
    }
    if let Some(path) = &args.html {
        write_file(path, &history::html::page(&rollout))?;
        eprintln!(
            "shipgate: wrote the report of {} decisions to {}",
            rollout.points.len(),
            path.display()
        );
    }
    if let Some(decision) = &args.incident {
        let report = history::incident::report(&rollout, decision)?;
        match &args.output {
            Some(path) => write_file(path, &report)?,
            None => print(&report),
        }
    }
    Ok(exit::ALLOW)
}

fn new_policy(args: &NewArgs) -> Result<i32, Error> {
    let (dir, files) = authoring::create(&authoring::NewPolicy {
        name: &args.name,
        path: args.path.as_deref(),
        phases: &args.phases,
        sdk_path: args.sdk_path.as_deref(),
    })?;
    if args.sdk_path.is_none() {
        eprintln!(
            "shipgate: note: the crate depends on shipgate-policy {} from crates.io; where that \
             is not reachable or not published yet, create it again with --sdk-path DIR \
             (policies/sdk of a shipgate checkout)",
            env!("CARGO_PKG_VERSION")
        );
    }
    let dir = dir.display();
    print(&format!(
        "created policy '{}' in {dir}: {}\n\nnext:\n  cd {dir}\n  cargo test       \
         # unit tests, natively\n  shipgate build   # the wasm component, pinned in gate.toml\n  \
         shipgate test    # tests/policy/*.toml through the real runtime\n",
        args.name,
        files.join(", ")
    ));
    Ok(exit::ALLOW)
}

fn build(args: &BuildArgs) -> Result<i32, Error> {
    let built = match authoring::build(&runtime()?, &args.dir)? {
        authoring::BuildOutcome::CargoFailed => return Ok(exit::DENY),
        authoring::BuildOutcome::Built(built) => built,
    };
    print(&match args.format {
        BuildFormat::Json => report::json(&built),
        BuildFormat::Text => build_text(&built),
    });
    Ok(exit::ALLOW)
}

/// What `shipgate build` prints: the module and the gate lines to paste.
fn build_text(built: &authoring::Built) -> String {
    let words: Vec<&str> = built.phases.iter().map(|p| p.as_str()).collect();
    let quoted: Vec<String> = words.iter().map(|p| format!("\"{p}\"")).collect();
    let file_name = built
        .module
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let pinned = built
        .pinned
        .as_ref()
        .map_or_else(String::new, |gate| format!("pinned  {}\n", gate.display()));
    format!(
        "built   {}\npolicy  {} {} (phases: {})\nsize    {} bytes\nsha256  {}\n{pinned}\n\
         # for your gate file (module paths are relative to it):\n\
         [[policy]]\nname = \"{}\"\nmodule = \"{file_name}\"\nsha256 = \"{}\"\nphases = [{}]\n",
        built.module.display(),
        built.name,
        built.version,
        words.join(", "),
        built.size,
        built.sha256,
        built.name,
        built.sha256,
        quoted.join(", "),
    )
}

fn test(args: &TestArgs) -> Result<i32, Error> {
    let setup = authoring::TestSetup {
        gate: args.gate.as_deref(),
        policies: &args.policies,
    };
    let run = authoring::run_tests(runtime()?, &args.paths, &setup)?;
    let rendered = authoring::render_test_run(&run, args.format, args.coverage);
    match &args.output {
        Some(path) => {
            write_file(path, &rendered)?;
            print(&authoring::render_test_run(
                &run,
                authoring::TestFormat::Text,
                args.coverage,
            ));
        }
        None => print(&rendered),
    }
    Ok(if run.failed == 0 {
        exit::ALLOW
    } else {
        exit::DENY
    })
}

fn reference(text: &str) -> Result<crate::registry::Reference, Error> {
    crate::registry::Reference::parse(text).map_err(Error::Usage)
}

/// A registry's refusal or absence: no input of ours was wrong.
fn registry_error(why: String) -> Error {
    Error::Internal(anyhow::anyhow!(why))
}

fn push(args: &PushArgs) -> Result<i32, Error> {
    let target = reference(&args.reference)?;
    if target.tag.is_none() || target.digest.is_some() {
        return Err(Error::Usage(format!(
            "{target}: push to a tag (oci://REGISTRY/REPOSITORY:TAG); the digest is the registry's to say"
        )));
    }
    let label = args.module.display().to_string();
    // Only a policy of this contract is published.
    let inspection = inspect::inspect(&runtime()?, &label)?;
    let bytes = std::fs::read(&args.module).map_err(|e| Error::reading(&args.module, e))?;
    // What is pushed is what was checked.
    if crate::registry::digest(&bytes) != inspection.sha256 {
        return Err(Error::InvalidInput(format!(
            "{label}: the file changed while it was being checked"
        )));
    }
    let title = args.module.file_name().map_or_else(
        || "policy.wasm".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let pinned = crate::registry::push(&args.registry.options()?, &bytes, &title, &target)
        .map_err(registry_error)?;
    print(&format!(
        "pushed {} {} ({} bytes, sha256 {})\n{pinned}\n",
        inspection.name, inspection.version, inspection.size, inspection.sha256
    ));
    Ok(exit::ALLOW)
}

fn pull(args: &PullArgs) -> Result<i32, Error> {
    let source = reference(&args.reference)?;
    let mut remote = crate::registry::Remote::from_env();
    remote.client = args.registry.options()?;
    if let Some(store) = &args.store {
        remote.store = Some(store.clone());
    }
    let fetched = crate::registry::pull(&remote, &source, crate::modules::DEFAULT_MAX_MODULE_BYTES)
        .map_err(registry_error)?;
    let store = remote
        .store_root()
        .map_or_else(String::new, |s| s.display().to_string());
    print(&format!(
        "pulled {}\nmodule sha256 {} ({} bytes) into {store}\n",
        fetched.reference,
        fetched.module_hex,
        fetched.bytes.len()
    ));
    Ok(exit::ALLOW)
}

fn sign(args: &SignArgs) -> Result<i32, Error> {
    let target = reference(&args.reference)?;
    if target.digest.is_none() {
        return Err(Error::Usage(format!(
            "{target}: sign a module by digest (oci://REGISTRY/REPOSITORY@sha256:DIGEST): a tag can move"
        )));
    }
    let text = std::fs::read_to_string(&args.key).map_err(|e| Error::reading(&args.key, e))?;
    let key = crate::registry::SigningKey::from_pem(&text)
        .map_err(|why| Error::InvalidInput(format!("{}: {why}", args.key.display())))?;
    crate::registry::sign(&args.registry.options()?, &target, &key).map_err(registry_error)?;
    let public = crate::registry::PublicKey::from_pem(&key.public_key_pem())
        .map_err(|why| Error::Internal(anyhow::anyhow!(why)))?;
    print(&format!(
        "signed {target} with key {}\n",
        public.fingerprint
    ));
    Ok(exit::ALLOW)
}

/// The manual: the top page on stdout, or every command's page into `dir`.
fn man(dir: Option<&Path>) -> Result<i32, Error> {
    let writing = |what: &Path, e: std::io::Error| {
        Error::Internal(anyhow::Error::new(e).context(format!("writing {}", what.display())))
    };
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| writing(dir, e))?;
            clap_mangen::generate_to(Cli::command(), dir).map_err(|e| writing(dir, e))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| writing(Path::new("<stdout>"), e))?;
            print(&String::from_utf8_lossy(&page));
        }
    }
    Ok(0)
}

fn policies() -> Result<i32, Error> {
    let runtime = runtime()?;
    let stock = crate::builtins::BUILTINS
        .iter()
        .map(|builtin| {
            let module = format!("{}{}", crate::builtins::PREFIX, builtin.name);
            inspect::inspect(&runtime, &module)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    print(&report::policies(&stock));
    Ok(0)
}

/// The longest summary written as a result: Tekton keeps all of a task's
/// results in 4 KiB.
const MAX_RESULT_SUMMARY_BYTES: usize = 3072;

/// `decision` and `summary` files for CI systems that read results from
/// files.
fn write_results(dir: &Path, evaluation: &crate::decision::Evaluation) -> Result<(), Error> {
    let mut summary = evaluation.summary.as_str();
    if summary.len() > MAX_RESULT_SUMMARY_BYTES {
        let mut end = MAX_RESULT_SUMMARY_BYTES;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary = &summary[..end];
    }
    for (name, text) in [
        ("decision", evaluation.decision.as_str()),
        ("summary", summary),
    ] {
        write_file(&dir.join(name), text)?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| {
        Error::Internal(anyhow::Error::new(e).context(format!("writing {}", path.display())))
    })
}

fn append_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::reading(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| {
        Error::Internal(anyhow::Error::new(e).context(format!("writing {}", path.display())))
    })
}

/// Prints to stdout; a closed pipe (`shipgate ... | head`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shipgate").chain(args.iter().copied()))
    }

    #[test]
    fn eval_takes_phase_snapshot_gate_policies_and_format() {
        let cli = parse(&[
            "eval",
            "--phase",
            "abort",
            "--snapshot",
            "-",
            "--gate",
            "g.toml",
            "--policy",
            "builtin:canary",
            "--policy",
            "x.wasm",
            "--format",
            "github",
        ])
        .unwrap();
        let Command::Eval(args) = cli.command else {
            panic!("not eval")
        };
        assert_eq!(args.phase, Phase::Abort);
        assert_eq!(args.policies, ["builtin:canary", "x.wasm"]);
        assert_eq!(args.format, Format::Github);
    }

    #[test]
    fn an_unknown_phase_is_a_usage_error_that_lists_the_phases() {
        let err = parse(&["eval", "--phase", "canary", "--snapshot", "s.json"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected preflight, promotion, abort or verify"),
            "{err}"
        );
    }

    #[test]
    fn schema_takes_snapshot_or_gate() {
        assert!(parse(&["schema", "gate"]).is_ok());
        assert!(parse(&["schema", "verdict"]).is_err());
    }
}
