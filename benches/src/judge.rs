//! The statistical judge at Kayenta's scale: 50 metrics, each with a
//! baseline and a canary of 1 440 points (a day at one minute), judged by
//! Kayenta's `NetflixACAJudge-v1.0` as shipgate reproduces it.
//!
//! - `judge_native`: the stock judge policy compiled natively, JSON parse
//!   included (the floor);
//! - `judge_wasm`: the same policy in the runtime through a gate, the
//!   snapshot parsed, validated and encoded by the host;
//! - `judge_http`: Kayenta's `RemoteJudgeRequest` posted to a real
//!   `shipgate serve` at `/v1/kayenta/judge`, the whole round trip.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use shipgate::evaluate::PreparedGate;
use shipgate::gate::{Gate, Origin};
use shipgate::runtime::Runtime;
use shipgate::snapshot;
use shipgate_bench::load::{Connection, Server, post, start_server};
use shipgate_policy::Phase;
use shipgate_policy_judge::Judge;

const METRICS: usize = 50;
const POINTS: usize = 1440;
const NOW: &str = "2026-12-06T00:00:00Z";
const START: &str = "2026-12-05T00:00:00Z";

/// One judgement's inputs in each engine's form, and the classification
/// every engine must reach.
pub(crate) struct JudgeBench {
    /// The snapshot as the host receives it.
    snapshot: Vec<u8>,
    /// The snapshot with its gate object, as the native policy parses it.
    snapshot_with_gate: String,
    config: String,
    gate: PreparedGate,
    /// Kayenta's request, as HTTP bytes for the server.
    http_request: Vec<u8>,
    server: Server,
    client: tokio::runtime::Runtime,
    connection: Option<Connection>,
    expected: String,
}

impl JudgeBench {
    pub(crate) fn new(runtime: Arc<Runtime>, cache: &std::path::Path) -> Result<JudgeBench> {
        let metrics: Vec<(String, Vec<f64>, Vec<f64>)> = (0..METRICS)
            .map(|m| {
                let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (m as u64 + 1));
                let mean = 10.0 * (m as f64 + 1.0);
                let baseline = (0..POINTS)
                    .map(|_| noise.normal(mean, mean / 10.0))
                    .collect();
                let canary = (0..POINTS)
                    .map(|_| noise.normal(mean, mean / 10.0))
                    .collect();
                (format!("metric-{m:02}"), baseline, canary)
            })
            .collect();
        let config = json!({
            "judge": "NetflixACAJudge-v1.0",
            "thresholds": {"pass": 75.0, "marginal": 50.0},
            "metrics": metrics.iter().enumerate().map(|(m, (name, _, _))| json!({
                "name": name, "direction": "either", "groups": [format!("group-{}", m % 5)],
            })).collect::<Vec<_>>(),
        });
        let series: serde_json::Map<String, Value> = metrics
            .iter()
            .map(|(name, baseline, canary)| {
                let pair = json!({"step_seconds": 60, "start": START, "baseline": baseline, "canary": canary});
                (name.clone(), pair)
            })
            .collect();
        let snapshot = json!({"schema_version": 2, "now": NOW, "metrics": {"series": series}});
        let gate = Gate::parse(&gate_text(&config)?, Origin::BuiltIn)?;
        let gate = PreparedGate::prepare(runtime, gate, &[Phase::Promotion])?;
        let mut with_gate = snapshot.clone();
        with_gate["gate"] = serde_json::to_value(gate.gate().snapshot_gate())?;
        // The same series as Kayenta sends them.
        let kayenta = json!({
            "canaryConfig": {
                "name": "bench",
                "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
                "metrics": metrics.iter().enumerate().map(|(m, (name, _, _))| json!({
                    "name": name, "groups": [format!("group-{}", m % 5)],
                    "analysisConfigurations": {"canary": {"direction": "either"}},
                })).collect::<Vec<_>>(),
                "classifier": {"groupWeights": {}},
            },
            "scoreThresholds": {"pass": 75.0, "marginal": 50.0},
            "metricSetPairList": metrics.iter().map(|(name, baseline, canary)| json!({
                "name": name, "id": name, "tags": {},
                "values": {"control": baseline, "experiment": canary},
                "scopes": {"control": {"startTimeIso": START, "stepMillis": 60_000}},
            })).collect::<Vec<_>>(),
        });
        let server = start_server("warn", cache, &["--adapters", "kayenta"])?;
        let http_request = post(&server.address, "/v1/kayenta/judge", &kayenta.to_string());
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut bench = JudgeBench {
            snapshot: snapshot.to_string().into_bytes(),
            snapshot_with_gate: with_gate.to_string(),
            config: config.to_string(),
            gate,
            http_request,
            server,
            client,
            connection: None,
            expected: String::new(),
        };
        bench.expected = bench.native()?;
        Ok(bench)
    }

    pub(crate) fn native(&self) -> Result<String> {
        let verdict = shipgate_policy::evaluate_json::<Judge>(
            Phase::Promotion,
            &self.snapshot_with_gate,
            &self.config,
        )
        .map_err(anyhow::Error::msg)?;
        Ok(verdict.decision.as_str().to_string())
    }

    pub(crate) fn check_native(&self) -> Result<()> {
        self.check("judge_native", &self.native()?)
    }

    pub(crate) fn wasm(&self) -> Result<()> {
        let evaluation = self
            .gate
            .evaluate(Phase::Promotion, &snapshot::parse(&self.snapshot)?)?;
        self.check("judge_wasm", evaluation.decision.as_str())
    }

    pub(crate) fn http(&mut self) -> Result<()> {
        let expected = match self.expected.as_str() {
            "allow" => &b"\"score\":{\"classification\":\"Pass\""[..],
            "deny" => b"\"score\":{\"classification\":\"Marginal\"",
            _ => b"\"score\":{\"classification\":\"Fail\"",
        };
        let (address, request) = (&self.server.address, &self.http_request);
        let connection = &mut self.connection;
        let (status, classified) = self.client.block_on(async {
            if connection.is_none() {
                *connection = Some(Connection::open(address).await?);
            }
            let open = connection.as_mut().expect("opened above");
            open.exchange(request, expected).await
        })?;
        ensure!(status == 200, "judge_http answered {status}");
        ensure!(
            classified,
            "judge_http judged otherwise than the native judge"
        );
        Ok(())
    }

    fn check(&self, engine: &str, decision: &str) -> Result<()> {
        ensure!(
            decision == self.expected,
            "{engine} decided {decision}, the native judge {}",
            self.expected
        );
        Ok(())
    }
}

/// The served judge's gate: the stock judge with `config`, and limits for
/// Kayenta's scale (as the server's own judge gate has them).
fn gate_text(config: &Value) -> Result<String> {
    let config = toml::Value::try_from(config).context("the judge's config as TOML")?;
    Ok(format!(
        "name = \"bench-judge\"\n\n[limits]\nmemory_mib = 512\ntimeout_ms = 30000\n\n\
         [[policy]]\nname = \"judge\"\nmodule = \"builtin:judge\"\nphases = [\"promotion\"]\n\
         config = {config}\n"
    ))
}

/// A deterministic source of normal noise (xorshift64*, Box–Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        // Full doubles, as Prometheus answers and Kayenta passes them on
        // (about 2.8 MB of JSON for the request): every value distinct.
        mean + sd * z
    }
}
