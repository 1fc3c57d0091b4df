//! End-to-end tests of shipgate: the real binary, real wasm modules built
//! from this repository's crates, real files.

mod server;
mod support;

/// The server's adapters, as Argo Rollouts, Spinnaker and Flagger call them.
mod adapters;
/// The policy author's workflow: new, build, test.
mod authoring;
/// Bad input: clear errors, the right exit codes, never a panic.
mod bad_input;
/// docs/PERFORMANCE.md's benchmark commands, as written.
mod benchmark;
/// The GitHub Action and the GitLab CI/CD component: their ecosystems'
/// schemas, shellcheck, and their scripts run as a runner runs them.
mod ci_integrations;
/// `policies`, `inspect`, `schema`.
mod commands;
/// `--version`, completions, the man page, environment options, plain output.
mod conventions;
/// A custom policy crate, built and loaded by path with a sha256 pin.
mod custom_policy;
/// Decision logs to standard output and to a collector, with its faults.
mod decision_logs;
/// Same inputs, byte-identical verdicts; decision log and replay.
mod determinism;
/// `shipgate eval` over the bundled examples: every phase and outcome.
mod eval;
/// A whole Flagger canary, hook by hook as Flagger's scheduler calls them.
mod flagger;
/// Output formats: text for people, JSON, GitHub Actions.
mod formats;
/// Every fuzz target, briefly (long runs: `fuzz/`).
mod fuzz;
/// Gate files in editors: the committed schema, taplo's `#:schema`
/// directive in every gate file, validated with taplo.
mod gate_schema;
/// GitHub deployment protection rules, against a stand-in for GitHub's API.
mod github;
/// No false rollback, no lost decision: host limits, timeouts, shadows.
mod hardening;
/// Policies that misbehave: each fails closed, the host keeps working.
mod hostile;
/// The container image, built with buildah and run from its own files.
mod image;
/// The files in integrations/ agree with shipgate.
mod integrations;
/// `builtin:judge` and `shipgate judge`: the README's commands, Kayenta's
/// remote-judge requests and their mistakes, the simulation docs/JUDGEMENT.md reports.
mod judge;
/// Running the server: signals, reload, limits.
mod operations;
/// Evidence from a real Prometheus server.
pub mod prometheus;
/// Policies from a real OCI registry: push, pull, sign, verify.
mod registry;
/// Rollout reports (HTML, in a real browser), the incident report, and the
/// Mermaid charts of Markdown output.
mod report;
/// The policy SDK as `cargo package` makes it: no warning, the contract in,
/// the test fixtures out.
mod sdk_package;
