//! Entry points for fuzzers, one per boundary where untrusted bytes enter:
//! a snapshot, a gate file, the contract's encoding as a policy decodes it,
//! the request bodies of every adapter, the verdict a policy returns, a
//! module's registry reference and a fixture file.
//! Each takes arbitrary bytes and panics only when an invariant breaks,
//! never on bad input: bad input must get an error.
//!
//! `fuzz/` runs them under libFuzzer (nightly) for long runs;
//! `tests/e2e/fuzz.rs` runs each briefly on every `cargo test`. Not part of
//! the supported API.

use std::sync::{Arc, OnceLock};

use serde_json::json;
use shipgate_policy::snapshot::RolloutPlan;
use shipgate_policy::wire::EncodedGate;
use shipgate_policy::{Decision, Finding, Phase, Verdict, wire};

use crate::adapters::{
    self, ApiError, Call, Custom, Endpoint, Exchange, Request, github, kayenta, spinnaker,
};
use crate::gate::{Gate, Origin};
use crate::runtime::{
    self, Determinism, Fault, Limits, LoadedModule, MAX_FINDINGS, MAX_TEXT_BYTES, Runtime,
    RuntimeConfig,
};
use crate::service::{DecisionRequest, Input};
use crate::snapshot;

/// A snapshot as a CD system sends it: refused with a message, or accepted
/// and encoded for policies (with the gate spliced in, as every decision
/// does) so that they decode exactly what was accepted.
pub fn snapshot(data: &[u8]) {
    static GATE: OnceLock<(EncodedGate, serde_json::Value)> = OnceLock::new();
    let (gate, gate_value) = GATE.get_or_init(|| {
        let gate = Gate::default_gate().snapshot_gate();
        let value = serde_json::to_value(&gate).expect("a gate is JSON");
        (EncodedGate::new(&gate), value)
    });
    match snapshot::parse(data) {
        Ok(valid) => {
            let accepted = serde_json::to_value(valid.typed()).expect("a snapshot is JSON");
            let received =
                wire::decode(&valid.encode_with_gate(gate)).expect("the host's encoding decodes");
            let mut received = serde_json::to_value(&received).expect("a snapshot is JSON");
            assert_eq!(received["gate"], *gate_value, "the gate arrived changed");
            received["gate"] = serde_json::Value::Null;
            assert_eq!(received, accepted, "policies receive another snapshot");
        }
        Err(error) => assert!(!error.message.is_empty(), "an error without a message"),
    }
}

/// A gate file: refused with `file:line:column` or `file:`, or accepted and
/// usable for every phase.
pub fn gate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Gate::parse(text, Origin::File("fuzz/gate.toml".into())) {
        Ok(gate) => {
            let _ = gate.snapshot_gate();
            let _ = gate.limits();
            let _ = gate.module_files();
            for phase in Phase::ALL {
                let _ = gate.policies_for(phase).count();
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with("fuzz/gate.toml"),
                "an error that does not name the file: {message}"
            );
        }
    }
}

/// The contract's encoding as a policy receives it: refused with a
/// message, or decoded into a snapshot whose own encoding decodes and
/// encodes to the same bytes again (decoding is stable).
pub fn wire(data: &[u8]) {
    match wire::decode(data) {
        Ok(snapshot) => {
            let encoded = wire::encode(&snapshot);
            let decoded = wire::decode(&encoded).expect("the host's encoding decodes");
            assert_eq!(
                wire::encode(&decoded),
                encoded,
                "decoding changed the snapshot"
            );
        }
        Err(message) => assert!(!message.is_empty(), "an error without a message"),
    }
}

/// What a route's `{parameter}` is made of: every phase and Flagger hook,
/// and names that are none.
const PARAMETERS: [&str; 14] = [
    "preflight",
    "promotion",
    "abort",
    "verify",
    "confirm-rollout",
    "pre-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "rollout",
    "rollback",
    "post-rollout",
    "event",
    "no-such-hook",
    "",
];

/// A request body sent to one route of the adapter table (the first byte
/// picks the route, the second its `{parameter}`): refused with a 4xx that
/// says why, or read into a decision request whose snapshot is then
/// validated as the server would. A Spinnaker evaluation id issued for a
/// request resumes to the same request; an id made up is not found.
pub fn adapter_request(data: &[u8]) {
    let [route, variant, body @ ..] = data else {
        return;
    };
    let routes: Vec<_> = adapters::ADAPTERS
        .iter()
        .flat_map(|adapter| adapter.routes)
        .collect();
    let route = routes[usize::from(*route) % routes.len()];
    let parameter = PARAMETERS[usize::from(*variant) % PARAMETERS.len()];
    let parsed = Request::parse(body);
    let asked = match route.endpoint {
        Endpoint::Decide(exchange) => exchange(Call {
            parameter: route.path.contains('{').then(|| parameter.to_string()),
            body: parsed,
        })
        .map(|exchange| match exchange {
            Exchange::Decide(request, _) => Some(request),
            Exchange::Acknowledge { .. } => None,
        })
        .map_err(|refused| refused.refusal.expect("a refused answer says why")),
        Endpoint::Custom(Custom::SpinnakerStart) => spinnaker_round_trip(parameter, parsed, body),
        Endpoint::Custom(Custom::SpinnakerPoll) => {
            let made_up = std::str::from_utf8(body).unwrap_or(parameter);
            spinnaker::resume(&spinnaker_settings(), made_up, fuzzing_clock()).map(|_| None)
        }
        Endpoint::Custom(Custom::KayentaJudge) => kayenta_request(body),
        Endpoint::Custom(Custom::GithubProtectionRule) => parsed
            .and_then(|body| {
                github::request(&github_routing(), Some("deployment_protection_rule"), body)
            })
            .map(|delivery| match delivery {
                github::Delivery::Review(request, _) => Some(*request),
                github::Delivery::Ignored(_) => None,
            }),
    };
    match asked {
        Ok(Some(request)) => snapshot_of(request),
        Ok(None) => {}
        Err(error) => assert_refused(&error),
    }
}

/// A Kayenta remote-judge body: refused with a reason, or mapped to a
/// config and a snapshot of series that the host's validation takes or
/// refuses with a reason (never a panic).
fn kayenta_request(body: &[u8]) -> Result<Option<DecisionRequest>, ApiError> {
    let request = kayenta::parse(Arc::<[u8]>::from(body), &fuzzing_clock().to_string())
        .map_err(ApiError::BadRequest)?;
    if let Err(error) = snapshot::from_typed(request.snapshot, request.sha256) {
        assert!(!error.to_string().is_empty());
    }
    Ok(None)
}

fn github_routing() -> github::Routing {
    github::Routing {
        api_url: "https://api.github.com".into(),
        environments: [("canary".to_string(), Phase::Verify)].into(),
        default_phase: Phase::Preflight,
    }
}

/// The fixed "now" of fuzzed requests.
fn fuzzing_clock() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("a valid time")
}

/// A client's mistake is a 4xx with a message, never a fault of ours.
fn assert_refused(error: &ApiError) {
    assert!(
        (400..500).contains(&error.status()) && !error.message().is_empty(),
        "bad input answered as {}: {error:?}",
        error.status()
    );
}

/// The snapshot the server would evaluate: the one sent, or a target's
/// snapshot assembled without evidence.
fn snapshot_of(request: DecisionRequest) {
    match request.input {
        Input::Snapshot(text) => snapshot(text.as_bytes()),
        Input::Target(target) => {
            let now = fuzzing_clock();
            let value = crate::sources::assemble(&target, &RolloutPlan::default(), &[], now);
            if let Err(refusal) = crate::service::validated(value, &mut []) {
                assert_refused(&refusal.into());
            }
        }
    }
}

fn spinnaker_settings() -> spinnaker::Settings {
    spinnaker::Settings {
        key: b"fuzzing key".to_vec(),
        key_is_random: false,
        ttl: std::time::Duration::from_secs(3600),
        public_url: None,
        trust_forwarded: false,
    }
}

/// Starts a Spinnaker evaluation, issues its id and resumes it: a target
/// comes back as it went in. `body`, taken as an id, is not found.
fn spinnaker_round_trip(
    phase: &str,
    parsed: Result<Request, ApiError>,
    body: &[u8],
) -> Result<Option<DecisionRequest>, ApiError> {
    let settings = spinnaker_settings();
    let now = fuzzing_clock();
    if let Ok(id) = std::str::from_utf8(body) {
        let made_up = spinnaker::resume(&settings, id, now);
        assert!(matches!(made_up, Err(ApiError::NotFound(_))), "{made_up:?}");
    }
    let started = spinnaker::start(&settings, phase, parsed, now)?;
    let first = crate::decision::Evaluation {
        record_version: crate::decision::RECORD_VERSION,
        evidence: vec![],
        decision_id: "fuzz".into(),
        phase: started.request.phase,
        decision: Decision::Deny,
        summary: "held".into(),
        policies: vec![],
        snapshot_sha256: String::new(),
        gate: "fuzz".into(),
        gate_sha256: String::new(),
        evaluated_at: now.to_string(),
    };
    let (id, _) = spinnaker::issue(&settings, started.ticket, &first);
    let (_, poll) = spinnaker::resume(&settings, &id, now).expect("an issued id resumes");
    if let (Input::Target(sent), spinnaker::Poll::Decide(again)) = (&started.request.input, poll) {
        match &again.input {
            Input::Target(resumed) => assert_eq!(sent, resumed, "the id changed the target"),
            Input::Snapshot(_) => panic!("a target resumed as a snapshot"),
        }
    }
    Ok(Some(started.request))
}

/// A verdict made up from the bytes, as the host checks it: accepted
/// unchanged when it keeps the contract's rules, refused as malformed when
/// it breaks one, never anything else.
pub fn verdict(data: &[u8]) {
    let made_up = arbitrary_verdict(data);
    assert_checked(&made_up, runtime::check_verdict(made_up.clone()));
}

fn assert_checked(made_up: &Verdict, checked: Result<Verdict, Fault>) {
    match (checked, breaks_a_rule(made_up)) {
        (Ok(verdict), false) => assert_eq!(&verdict, made_up, "the host changed the verdict"),
        (Err(Fault::MalformedVerdict(_)), true) => {}
        (Ok(_), _) => panic!("the host accepted a verdict that breaks a rule"),
        (Err(fault), broken) => {
            panic!("the host refused a verdict (rule broken: {broken}): {fault}")
        }
    }
}

/// The contract's rules on a verdict, stated on their own (wit/policy.wit).
fn breaks_a_rule(verdict: &Verdict) -> bool {
    let long = |text: &str| text.len() > MAX_TEXT_BYTES;
    verdict.findings.len() > MAX_FINDINGS
        || long(&verdict.summary)
        || verdict.findings.iter().any(|f| {
            f.check.is_empty()
                || f.decision > verdict.decision
                || long(&f.check)
                || long(&f.message)
                || f.observed.as_deref().is_some_and(long)
                || f.threshold.as_deref().is_some_and(long)
        })
}

/// A verdict returned by a real policy component (the `echo` behaviour of
/// the hostile test policy, `tests/fixtures/hostile`): the host must take
/// it exactly as [`verdict`] does, after the contract's lifting.
pub struct GuestVerdict {
    runtime: Runtime,
    module: Arc<LoadedModule>,
    snapshot: Vec<u8>,
}

impl GuestVerdict {
    /// Loads the echoing policy from its component's bytes.
    pub fn new(echo_component: &[u8]) -> Result<GuestVerdict, String> {
        let runtime = Runtime::new(&RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let module = runtime.load(echo_component).map_err(|e| e.to_string())?;
        let snapshot = wire::encode(&shipgate_policy::Snapshot::default());
        Ok(GuestVerdict {
            runtime,
            module,
            snapshot,
        })
    }

    pub fn run(&self, data: &[u8]) {
        let made_up = arbitrary_verdict(data);
        let config = json!({ "behaviour": "echo", "verdict": made_up }).to_string();
        let limits = Limits {
            timeout_ms: 10_000,
            memory_mib: 256,
        };
        let called = self.runtime.evaluate(
            &self.module,
            Phase::Abort,
            &self.snapshot,
            &config,
            limits,
            Determinism::FIXED,
            None,
        );
        assert_checked(&made_up, called.result);
    }
}

/// The most text bytes one made-up verdict holds: enough to cross every
/// limit, small enough to stay fast.
const TEXT_BUDGET: usize = 256 << 10;

/// A verdict described by the bytes; running out of bytes reads zeros.
fn arbitrary_verdict(data: &[u8]) -> Verdict {
    let mut bytes = Reader {
        data,
        text_budget: TEXT_BUDGET,
    };
    let decision = bytes.decision();
    let summary = bytes.text();
    // Counts up to 1 100 reach past the limit of 1 000 findings.
    let count = usize::from(bytes.u16()) % 1100;
    let findings = (0..count)
        .map(|_| {
            let mut finding = Finding::new(bytes.text(), bytes.decision(), bytes.text());
            finding.observed = bytes.flag().then(|| bytes.text());
            finding.threshold = bytes.flag().then(|| bytes.text());
            finding.observed_value = bytes.flag().then(|| bytes.number());
            finding
        })
        .collect();
    Verdict {
        decision,
        summary,
        findings,
    }
}

struct Reader<'a> {
    data: &'a [u8],
    text_budget: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A finite number (the echo policy's verdict travels as JSON, which
    /// has no NaN or infinities).
    fn number(&mut self) -> f64 {
        f64::from(self.u16() as i16) / 16.0
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn decision(&mut self) -> Decision {
        match self.byte() % 3 {
            0 => Decision::Allow,
            1 => Decision::Deny,
            _ => Decision::Rollback,
        }
    }

    /// Up to 31 bytes of text, repeated when the length byte's high bit is
    /// set (so texts past the host's limit take few input bytes).
    fn text(&mut self) -> String {
        let head = self.byte();
        let len = usize::from(head & 31).min(self.data.len());
        let (piece, rest) = self.data.split_at(len);
        self.data = rest;
        let piece = String::from_utf8_lossy(piece);
        let times = if head & 0x80 != 0 {
            usize::from(self.u16())
        } else {
            1
        };
        let times = times.min(self.text_budget / piece.len().max(1));
        let text = piece.repeat(times);
        self.text_budget -= text.len();
        text
    }
}

/// A module reference from a registry (`oci://…`): refused with a message,
/// or read into parts that print back to a reference reading the same, with
/// no path component that could climb out of anything.
pub fn module_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::registry::Reference::parse(text) {
        Ok(reference) => {
            let again = crate::registry::Reference::parse(&reference.to_string())
                .expect("a reference prints as one");
            assert_eq!(again, reference, "a reference changed when printed");
            assert!(
                reference
                    .repository
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != ".."),
                "a repository that climbs: {reference}"
            );
            let _ = (reference.is_loopback(), reference.manifest_reference());
        }
        Err(message) => assert!(!message.is_empty(), "an error without a message"),
    }
}

/// A fixture file for `shipgate test`: refused with an error that names the
/// file, or read into cases with valid snapshots.
pub fn fixture(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz/tests/policy/fixture.toml");
    match crate::authoring::parse_fixture(text, path) {
        Ok(fixture) => assert!(!fixture.cases.is_empty(), "a fixture without cases"),
        Err(error) => assert!(
            error.to_string().contains("fuzz/tests/policy/fixture.toml")
                || error.to_string().contains("fuzz/tests/"),
            "an error that does not name the file: {error}"
        ),
    }
}
