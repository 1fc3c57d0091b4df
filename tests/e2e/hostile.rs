//! Each hostile policy fails closed with its fault named, within its time
//! budget, and the same runtime evaluates correctly right after.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use shipgate::decision::Evaluation;
use shipgate::evaluate::PreparedGate;
use shipgate::gate::{Gate, Origin};
use shipgate::runtime::{Runtime, RuntimeConfig};
use shipgate::snapshot;
use shipgate::{Decision, Phase};

use crate::support::{cache_dir, fixture, snapshot as example_snapshot};

const TIMEOUT_MS: u64 = 250;
/// Slack for instantiation and the epoch tick on a busy 2-core machine.
const MARGIN: Duration = Duration::from_millis(750);

/// One runtime for the whole test process, as a server would have.
fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let config = RuntimeConfig {
                cache_dir: Some(cache_dir()),
                cache_key_file: Some(crate::support::cache_key_file()),
                ..RuntimeConfig::default()
            };
            Arc::new(Runtime::new(&config).unwrap())
        })
        .clone()
}

fn gate_in(dir: &Path, policies: &str) -> Gate {
    gate_with_timeout(dir, TIMEOUT_MS, policies)
}

fn gate_with_timeout(dir: &Path, timeout_ms: u64, policies: &str) -> Gate {
    let text = format!(
        "name = \"hostile\"\n[limits]\ntimeout_ms = {timeout_ms}\nmemory_mib = 64\n{policies}"
    );
    Gate::parse(&text, Origin::File(dir.join("gate.toml"))).unwrap()
}

fn hostile_policy(behaviour: &str, extra: &str) -> String {
    format!(
        "[[policy]]\nname = \"{behaviour}\"\nmodule = \"hostile.wasm\"\nphases = [\"abort\", \"promotion\"]\n\
         config = {{ behaviour = \"{behaviour}\" }}\n{extra}\n"
    )
}

fn evaluate(gate: Gate, phase: Phase) -> (Evaluation, Duration) {
    let prepared = PreparedGate::prepare(runtime(), gate, &[phase]).unwrap();
    let bytes = std::fs::read(example_snapshot("abort-allow")).unwrap();
    let snapshot = snapshot::parse(&bytes).unwrap();
    let started = Instant::now();
    let evaluation = prepared.evaluate(phase, &snapshot).unwrap();
    (evaluation, started.elapsed())
}

/// After any fault, the same runtime still gives a correct verdict.
fn assert_runtime_still_works() {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let (evaluation, _) = evaluate(gate_in(&dir, &hostile_policy("allow", "")), Phase::Abort);
    assert_eq!(evaluation.decision, Decision::Allow, "{evaluation:#?}");
}

/// Runs a behaviour in the abort phase; returns the fault text.
fn fails_closed(behaviour: &str) -> String {
    fails_closed_within(behaviour, TIMEOUT_MS)
}

fn fails_closed_within(behaviour: &str, timeout_ms: u64) -> String {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let gate = gate_with_timeout(&dir, timeout_ms, &hostile_policy(behaviour, ""));
    let (evaluation, elapsed) = evaluate(gate, Phase::Abort);
    assert_eq!(
        evaluation.decision,
        Decision::Rollback,
        "{behaviour}: {evaluation:#?}"
    );
    assert!(
        elapsed < Duration::from_millis(timeout_ms) + MARGIN,
        "{behaviour} took {elapsed:?}, budget {timeout_ms} ms"
    );
    let policy = &evaluation.policies[0];
    assert!(policy.failed_closed());
    assert!(
        evaluation
            .summary
            .starts_with(&format!("policy '{behaviour}' failed closed (rollback): "))
    );
    assert_runtime_still_works();
    policy.error.clone().unwrap()
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    assert_eq!(
        fails_closed("infinite-loop"),
        format!("policy ran past its time limit of {TIMEOUT_MS} ms and was stopped")
    );
}

#[test]
fn memory_bomb_hits_its_memory_limit() {
    // Filling 64 MiB of fresh pages takes milliseconds, but on a machine
    // busy with a release build it has taken more than the 250 ms the other
    // behaviours get: the memory limit, not the deadline, is what this
    // test is about, so the deadline is far away.
    assert_eq!(
        fails_closed_within("memory-bomb", 5_000),
        "policy tried to use more than its memory limit of 64 MiB"
    );
}

#[test]
fn deep_recursion_is_stopped() {
    let error = fails_closed("deep-recursion");
    assert!(
        error.starts_with("policy crashed: ") && error.contains("recursion"),
        "{error}"
    );
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let error = fails_closed("panic");
    assert!(
        error.starts_with("policy crashed: wasm trap: wasm `unreachable` instruction executed"),
        "{error}"
    );
    assert!(
        error.ends_with("it printed: hostile policy panics on purpose"),
        "{error}"
    );
}

#[test]
fn an_err_result_is_a_fault() {
    assert_eq!(
        fails_closed("err"),
        "policy returned an error: the policy refuses to decide"
    );
}

#[test]
fn a_million_findings_cannot_exhaust_the_host() {
    // Either the guest runs out of its own memory building them, or the
    // host refuses the verdict: both fail closed. The time limit is
    // generous, so that a loaded machine cannot stop it first.
    let error = fails_closed_within("million-findings", 10_000);
    assert!(
        error == "policy tried to use more than its memory limit of 64 MiB"
            || error
                .starts_with("policy returned a malformed verdict: it hands the host more than")
            || error.starts_with("policy returned a malformed verdict: 1000000 findings"),
        "{error}"
    );
}

#[test]
fn more_than_the_host_lifts_at_once_is_refused() {
    assert_eq!(
        fails_closed_within("lift-flood", 10_000),
        "policy returned a malformed verdict: it hands the host more than the 32 MiB \
         it takes from a policy at once"
    );
}

#[test]
fn a_gigabyte_of_randomness_is_refused_not_allocated() {
    let error = fails_closed("random-flood");
    assert!(error.contains("exceeds limit 65536"), "{error}");
}

#[test]
fn a_100_mb_string_cannot_exhaust_the_host() {
    assert_eq!(
        fails_closed("huge-string"),
        "policy tried to use more than its memory limit of 64 MiB"
    );
}

#[test]
fn too_many_findings_are_refused_by_the_host() {
    assert_eq!(
        fails_closed("too-many-findings"),
        "policy returned a malformed verdict: 5000 findings, more than the limit of 1000"
    );
}

#[test]
fn a_verdict_more_lenient_than_its_findings_is_refused() {
    assert_eq!(
        fails_closed("lenient"),
        "policy returned a malformed verdict: its decision is allow but check 'error-rate' says rollback"
    );
}

#[test]
fn flooding_stdout_is_stopped() {
    assert_eq!(
        fails_closed("print-flood"),
        "policy crashed: printed more than its output limit of 64 KiB"
    );
}

#[test]
fn sleeping_is_refused_at_once() {
    // Time is frozen; a blocking host call would be beyond the deadline.
    let error = fails_closed("sleep");
    assert!(
        error.starts_with("policy crashed: policies may not sleep or wait: time is frozen"),
        "{error}"
    );
}

#[test]
fn a_shadow_policy_with_a_bad_config_does_not_stop_the_gate() {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let shadow = "[[policy]]\nname = \"typo\"\nmodule = \"hostile.wasm\"\nphases = [\"abort\"]\n\
                  mode = \"shadow\"\nconfig = { behavior = \"allow\" }\n";
    let policies = format!("{}{shadow}", hostile_policy("allow", ""));
    let (evaluation, _) = evaluate(gate_in(&dir, &policies), Phase::Abort);
    assert_eq!(evaluation.decision, Decision::Allow);
    let error = evaluation.policies[1].error.clone().unwrap();
    assert!(error.contains("unknown field `behavior`"), "{error}");
}

#[test]
fn on_error_overrides_the_fail_closed_decision() {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let gate = gate_in(&dir, &hostile_policy("err", "on_error = \"deny\""));
    let (evaluation, _) = evaluate(gate, Phase::Abort);
    assert_eq!(evaluation.decision, Decision::Deny);
}

#[test]
fn promotion_fails_closed_to_deny() {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let (evaluation, _) = evaluate(
        gate_in(&dir, &hostile_policy("panic", "")),
        Phase::Promotion,
    );
    assert_eq!(evaluation.decision, Decision::Deny);
}

#[test]
fn a_faulting_shadow_policy_does_not_change_the_decision() {
    let dir = fixture("hostile").parent().unwrap().to_path_buf();
    let policies = format!(
        "{}{}",
        hostile_policy("allow", ""),
        hostile_policy("panic", "mode = \"shadow\"")
    );
    let (evaluation, _) = evaluate(gate_in(&dir, &policies), Phase::Abort);
    assert_eq!(evaluation.decision, Decision::Allow);
    assert_eq!(evaluation.policies[1].decision, Decision::Rollback);
    assert!(evaluation.policies[1].failed_closed());
}

/// Modules that are not policies: refused at load, named, failing closed.
fn load_fault(file_name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file_name), bytes).unwrap();
    let policy =
        format!("[[policy]]\nname = \"bad\"\nmodule = \"{file_name}\"\nphases = [\"abort\"]\n");
    let (evaluation, _) = evaluate(gate_in(dir.path(), &policy), Phase::Abort);
    assert_eq!(evaluation.decision, Decision::Rollback);
    assert_runtime_still_works();
    evaluation.policies[0].error.clone().unwrap()
}

#[test]
fn a_component_of_the_wrong_world_is_refused() {
    let error = load_fault(
        "wrong.wasm",
        &std::fs::read(fixture("wrong_world")).unwrap(),
    );
    assert!(
        error.starts_with("policy could not be loaded: module 'wrong.wasm': it does not implement the shipgate:policy/policy world"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    assert_eq!(
        load_fault("notes.wasm", b"these are not the bytes you are looking for"),
        "policy could not be loaded: module 'notes.wasm': not a WebAssembly file (no \\0asm header)"
    );
}

#[test]
fn a_core_module_is_refused_with_a_hint() {
    // The smallest valid core module: magic and version 1.
    let error = load_fault("core.wasm", b"\0asm\x01\0\0\0");
    assert!(error.ends_with("this is a core module, not a component; build it with the shipgate-policy SDK for wasm32-wasip2"), "{error}");
}

#[test]
fn the_cli_survives_a_hostile_policy_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).unwrap();
    std::fs::write(
        dir.path().join("gate.toml"),
        format!("name = \"h\"\n{}", hostile_policy("memory-bomb", "")),
    )
    .unwrap();
    let output = crate::support::shipgate_in(dir.path())
        .args([
            "eval",
            "--phase",
            "promotion",
            "--gate",
            "gate.toml",
            "--snapshot",
        ])
        .arg(example_snapshot("promotion-allow"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("DENY  promotion · gate h\npolicy 'memory-bomb' failed closed (deny): policy tried to use more than its memory limit of 64 MiB\n"), "{stdout}");
}
