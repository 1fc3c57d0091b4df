//! Kayenta's remote judge as a service: a canary config (the stock judge
//! policy's config, as the Kayenta adapter maps it) and a snapshot of series
//! go through `builtin:judge` in the runtime, the same code a gate runs. Used
//! by `shipgate judge` and by the server's `/v1/kayenta/judge`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use shipgate_policy::judge::{self, JUDGEMENT_LOG_PREFIX, Judgement, Thresholds};
use shipgate_policy::{Phase, Snapshot};

use crate::error::Error;
use crate::evaluate::{Budget, PreparedGate};
use crate::gate::{Gate, Origin, without_nulls};
use crate::helpers;
use crate::runtime::{Cancel, HostFault, Runtime};
use crate::snapshot::ValidSnapshot;

use super::Refusal;

/// What a judgement may take: Kayenta's requests carry up to 7 days of
/// per-minute points per cohort and metric, so the guest gets more room
/// and time than a gate's defaults, still well within the host's caps.
const JUDGE_MEMORY_MIB: u64 = 512;
const JUDGE_TIMEOUT_MS: u64 = 30_000;

/// The judge's answer.
#[derive(Debug)]
pub(crate) struct Judged {
    /// The judgement as the policy printed it (`shipgate_policy::judge::Judgement`).
    pub(crate) judgement: Value,
    /// Each metric's sentence (`check`, `message`), as its finding says it.
    pub(crate) sentences: Vec<(String, String)>,
}

/// Why there is no judgement.
#[derive(Debug)]
pub(crate) enum JudgeError {
    /// The config or the series cannot be judged (the caller's mistake).
    Invalid(String),
    /// The host could not run the judge (no slot, stopped): retry.
    Host(HostFault),
    /// The judge ran but gave no judgement: a fault of shipgate's.
    Internal(String),
}

impl From<JudgeError> for Error {
    fn from(error: JudgeError) -> Error {
        match error {
            JudgeError::Invalid(why) => Error::InvalidInput(why),
            JudgeError::Host(fault) => Error::Internal(anyhow::anyhow!("no judgement: {fault}")),
            JudgeError::Internal(why) => Error::Internal(anyhow::anyhow!(why)),
        }
    }
}

/// Below this many points a request is judged in one instance: a second
/// costs a thread and its own check of the config, about a millisecond.
const MIN_POINTS_TO_SPLIT: usize = 16_384;

/// Judges `snapshot`'s series with the judge policy configured by
/// `config`; `label` names the request in errors (`<stdin>`, a file, an
/// HTTP request). `cancel` lets a caller that stops waiting stop the work.
/// A large request is judged in up to `instances` guest instances at once
/// ([`instances_for`]), each judging a share of the metrics (the guest has
/// one thread); their judgements are joined into exactly the one a single
/// instance gives.
pub(crate) fn judge(
    runtime: &Arc<Runtime>,
    config: &Value,
    snapshot: ValidSnapshot,
    label: &str,
    cancel: Option<Cancel>,
    instances: usize,
) -> Result<Judged, JudgeError> {
    let parts: Vec<(Value, ValidSnapshot)> = match plan(config, snapshot.typed(), instances) {
        None => vec![(config.clone(), snapshot)],
        Some(plan) => {
            let snapshots = snapshot.split_metrics(
                plan.parts,
                |key| plan.part_of_series(key),
                |key| plan.part_of_count(key),
            );
            plan.configs(config).into_iter().zip(snapshots).collect()
        }
    };
    let mut parts = parts.into_iter();
    // The first part is prepared before the others start, so the judge's
    // module is loaded (compiled, on a cold cache) once, not by each.
    let first = match parts.next() {
        Some((config, snapshot)) => Some((prepare_part(runtime, &config, label)?, snapshot)),
        None => None,
    };
    // The other parts go to helper threads already waiting: a thread
    // started now would wait milliseconds for a core (crate::helpers).
    let others: Vec<helpers::Offered<Result<Part, JudgeError>>> = parts
        .map(|(config, snapshot)| {
            let (runtime, label, cancel) = (runtime.clone(), label.to_string(), cancel.clone());
            helpers::offer(move || {
                let prepared = prepare_part(&runtime, &config, &label)?;
                run_part(&prepared, &snapshot, &label, cancel)
            })
        })
        .collect();
    let first =
        first.map(|(prepared, snapshot)| run_part(&prepared, &snapshot, label, cancel.clone()));
    if let Some(Err(error)) = first {
        // No judgement without this part: the others are stopped, dropped
        // if no helper has them yet, and waited for if one has (so none
        // outlives the caller's evaluation slots), not done here for nothing.
        if let Some(cancel) = &cancel {
            cancel.cancel();
        }
        others.into_iter().for_each(helpers::Offered::abandon);
        return Err(error);
    }
    let judged: Vec<Result<Part, JudgeError>> = first
        .into_iter()
        .chain(others.into_iter().map(|other| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| other.join())).unwrap_or_else(
                |_| {
                    Err(JudgeError::Internal(
                        "a part of the judgement panicked".into(),
                    ))
                },
            )
        }))
        .collect();
    let mut judgements = Vec::new();
    let mut sentences = Vec::new();
    for part in judged {
        let part = part?;
        judgements.push(part.judgement);
        sentences.extend(part.sentences);
    }
    let (weights, thresholds) =
        scoring(config).map_err(|e| JudgeError::Invalid(format!("{label}: {e}")))?;
    let joined = judge::join(judgements, &weights, thresholds).map_err(JudgeError::Internal)?;
    let json =
        judge::printable(&joined).map_err(|e| JudgeError::Invalid(format!("{label}: {e}")))?;
    let judgement = serde_json::from_str(&json)
        .map_err(|e| JudgeError::Internal(format!("the joined judgement: {e}")))?;
    Ok(Judged {
        judgement,
        sentences,
    })
}

/// How many instances to judge a request in when `available` could run
/// it: two when it is worth splitting and this process has two cores (more
/// instances than cores would only take turns), else one.
pub(crate) fn instances_for(config: &Value, snapshot: &Snapshot, available: u32) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let split = available >= 2 && cores >= 2 && plan(config, snapshot, 2).is_some();
    if split { 2 } else { 1 }
}

/// One instance's judgement of a share of the metrics.
struct Part {
    judgement: Judgement,
    sentences: Vec<(String, String)>,
}

/// The judge policy with `config`, ready to judge.
fn prepare_part(
    runtime: &Arc<Runtime>,
    config: &Value,
    label: &str,
) -> Result<PreparedGate, JudgeError> {
    // Errors in the config name the request, as a gate file's name it.
    let origin = Origin::File(format!("{label}: canaryConfig").into());
    let gate =
        Gate::parse(&gate_text(config)?, origin).map_err(|e| JudgeError::Invalid(e.to_string()))?;
    PreparedGate::prepare(runtime.clone(), gate, &[Phase::Promotion]).map_err(|e| match e {
        Error::Internal(_) => JudgeError::Internal(e.to_string()),
        other => JudgeError::Invalid(other.to_string()),
    })
}

fn run_part(
    prepared: &PreparedGate,
    snapshot: &ValidSnapshot,
    label: &str,
    cancel: Option<Cancel>,
) -> Result<Part, JudgeError> {
    let budget = Budget {
        cancel,
        beside: None,
    };
    let evaluation = prepared
        .evaluate_with(Phase::Promotion, snapshot, Vec::new(), &budget)
        .map_err(JudgeError::Host)?;
    let outcome = evaluation
        .policies
        .first()
        .ok_or_else(|| JudgeError::Internal("the judge policy did not run".into()))?;
    let printed = outcome
        .log
        .iter()
        .find_map(|line| line.strip_prefix(JUDGEMENT_LOG_PREFIX));
    let judgement = printed
        .map(|json| {
            serde_json::from_str::<Judgement>(json)
                .map_err(|e| JudgeError::Internal(format!("the judge's judgement: {e}")))
        })
        .transpose()?
        .ok_or_else(|| match outcome.error.as_deref() {
            // The request's size, not a fault of shipgate's.
            Some(error)
                if error.contains("a policy may print") || error.contains("output limit") =>
            {
                JudgeError::Invalid(format!("{label}: {error}"))
            }
            error => JudgeError::Internal(format!(
                "the judge gave no judgement: {}",
                error.unwrap_or("its log has none")
            )),
        })?;
    let sentences = outcome
        .findings
        .iter()
        .filter(|f| f.check != "score")
        .map(|f| (f.check.clone(), f.message.clone()))
        .collect();
    Ok(Part {
        judgement,
        sentences,
    })
}

/// The config's group weights and thresholds, for scoring the joined
/// metrics as the policy scores them (it has checked them: a config it
/// refused gave no judgement to join).
fn scoring(config: &Value) -> Result<(BTreeMap<String, f64>, Thresholds), String> {
    Ok((
        field(config, "group_weights")?,
        field(config, "thresholds")?,
    ))
}

/// A key of the config, its default when absent or null.
fn field<T: serde::de::DeserializeOwned + Default>(config: &Value, key: &str) -> Result<T, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => serde_json::from_value(without_nulls(value.clone()))
            .map_err(|e| format!("canaryConfig: {key}: {e}")),
    }
}

/// How a request's metrics are shared among instances: contiguous runs of
/// the config's metrics, of about equal points, so the joined metrics keep
/// the config's order.
struct Plan {
    parts: usize,
    /// Each configured metric's part, by name.
    part_by_metric: HashMap<String, usize>,
    /// Each part's metrics (indices into the config's `metrics`).
    rules: Vec<Vec<usize>>,
}

impl Plan {
    /// A series key's part: its metric's (keys carry tag sets).
    fn part_of_series(&self, key: &str) -> Option<usize> {
        self.part_by_metric.get(judge::metric_of(key)).copied()
    }

    /// A count's part: the metric of its exact name, as the policy looks
    /// counts up.
    fn part_of_count(&self, key: &str) -> Option<usize> {
        self.part_by_metric.get(key).copied()
    }

    /// The config of each part: the whole config with its share of the
    /// metrics.
    fn configs(&self, config: &Value) -> Vec<Value> {
        let metrics = config["metrics"].as_array().cloned().unwrap_or_default();
        self.rules
            .iter()
            .map(|rules| {
                let mut part = config.clone();
                part["metrics"] = rules.iter().map(|&i| metrics[i].clone()).collect();
                part
            })
            .collect()
    }
}

/// A plan for judging in up to `instances` instances, or `None` to judge in
/// one: one instance asked for, too few points to be worth it, or a config
/// the policy will refuse (it then says why).
fn plan(config: &Value, snapshot: &Snapshot, instances: usize) -> Option<Plan> {
    if instances < 2 {
        return None;
    }
    let names: Vec<&str> = config
        .get("metrics")?
        .as_array()?
        .iter()
        .map(|rule| rule.get("name")?.as_str())
        .collect::<Option<_>>()?;
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    if index.len() != names.len() || names.len() < 2 {
        return None;
    }
    // Each metric's work: its points, and one for the metric itself.
    let mut points = vec![1usize; names.len()];
    let metrics = snapshot.metrics.as_ref();
    for (key, pair) in metrics
        .and_then(|m| m.series.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(&i) = index.get(judge::metric_of(key)) {
            points[i] += pair.baseline.len() + pair.canary.len();
        }
    }
    let total: usize = points.iter().sum();
    if total < MIN_POINTS_TO_SPLIT {
        return None;
    }
    // A metric goes to the part its middle point falls in.
    let mut rules: Vec<Vec<usize>> = vec![Vec::new(); instances];
    let mut before = 0;
    for (i, &work) in points.iter().enumerate() {
        let part = ((2 * before + work) * instances / (2 * total)).min(instances - 1);
        rules[part].push(i);
        before += work;
    }
    rules.retain(|part| !part.is_empty());
    if rules.len() < 2 {
        return None;
    }
    let names = &names;
    let part_by_metric = rules
        .iter()
        .enumerate()
        .flat_map(|(part, members)| members.iter().map(move |&i| (names[i].to_string(), part)))
        .collect();
    Some(Plan {
        parts: rules.len(),
        part_by_metric,
        rules,
    })
}

/// A gate of one policy, the stock judge with `config`, printing its
/// judgement into the decision's log.
fn gate_text(config: &Value) -> Result<String, JudgeError> {
    let mut config = config.clone();
    config["log_judgement"] = true.into();
    let table = toml::Value::try_from(without_nulls(config))
        .map_err(|e| JudgeError::Invalid(format!("canaryConfig: {e}")))?;
    let mut limits = toml::Table::new();
    limits.insert("memory_mib".into(), (JUDGE_MEMORY_MIB as i64).into());
    limits.insert("timeout_ms".into(), (JUDGE_TIMEOUT_MS as i64).into());
    let mut policy = toml::Table::new();
    policy.insert("name".into(), "judge".into());
    policy.insert("module".into(), "builtin:judge".into());
    policy.insert(
        "phases".into(),
        toml::Value::Array(vec!["promotion".into()]),
    );
    policy.insert("config".into(), table);
    let mut gate = toml::Table::new();
    gate.insert("name".into(), "kayenta-remote-judge".into());
    gate.insert("limits".into(), limits.into());
    gate.insert("policy".into(), toml::Value::Array(vec![policy.into()]));
    toml::to_string(&gate).map_err(|e| JudgeError::Internal(format!("the judge's gate: {e}")))
}

impl super::Service {
    /// Lets one more Kayenta request in before its body is read, unless
    /// `--max-judging` are in: each holds a body of up to
    /// `--max-judge-body-bytes` and a guest's memory, so they are bounded
    /// far below the `--max-pending` every request also counts in, and
    /// take at most twice that many of the evaluation slots (a large one
    /// may take two, [`Self::judge`]).
    pub(crate) fn admit_judgement(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        self.judging
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded)
    }

    /// One Kayenta judgement before `deadline`: the snapshot of series
    /// checked, the judge run with an evaluation slot (two when a second is
    /// free) on the blocking pool (it is seconds of work at Kayenta's
    /// largest), and stopped when the deadline passes.
    pub(crate) async fn judge(
        &self,
        config: Value,
        snapshot: Snapshot,
        sha256: String,
        label: String,
        deadline: tokio::time::Instant,
    ) -> Result<Judged, Refusal> {
        let started = std::time::Instant::now();
        let _in_flight = self.metrics.in_flight();
        let evaluating = tokio::time::timeout_at(deadline, self.evaluating.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::Timeout)?
            .map_err(|_| Refusal::Internal("the server is shutting down".into()))?;
        // A request worth splitting takes a second slot if two are free now
        // (taken at once, one given back: the last free slot is left to the
        // gate's decisions) and judges half its metrics on the other core,
        // a helper's when one is free; waiting for one would only delay the
        // answer.
        let second = (instances_for(&config, &snapshot, 2) == 2)
            .then(|| self.evaluating.clone().try_acquire_many_owned(2).ok())
            .flatten()
            .and_then(|mut two| two.split(1));
        let instances = 1 + usize::from(second.is_some());
        let runtime = self.runtime.clone();
        let cancel = Cancel::default();
        let _stop_if_dropped = super::CancelOnDrop(cancel.clone());
        let stop = cancel.clone();
        let work = tokio::task::spawn_blocking(move || {
            let _permits = (evaluating, second);
            let snapshot = crate::snapshot::from_typed(snapshot, sha256)
                .map_err(|e| Refusal::BadSnapshot(format!("{label}: {e}")))?;
            judge(&runtime, &config, snapshot, &label, Some(stop), instances).map_err(|e| match e {
                JudgeError::Invalid(why) => Refusal::BadSnapshot(why),
                JudgeError::Host(fault) => super::host_fault(fault),
                JudgeError::Internal(why) => Refusal::Internal(why),
            })
        });
        let judged = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Refusal::Timeout)?
            .map_err(|e| Refusal::Internal(format!("the judgement task failed: {e}")))??;
        let classification = judged.judgement["classification"]
            .as_str()
            .unwrap_or("Fail");
        self.metrics
            .judged(classification, started.elapsed().as_secs_f64());
        Ok(judged)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Five series of two cohorts: just over `MIN_POINTS_TO_SPLIT`.
    const POINTS: usize = 1700;

    fn runtime() -> Arc<Runtime> {
        crate::runtime::test_runtime(2)
    }

    /// `POINTS` values around `level`, deterministic, every one distinct.
    fn series(level: f64, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..POINTS)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                level * (1.0 + (state >> 40) as f64 / (1u64 << 24) as f64 / 10.0) + i as f64 * 1e-9
            })
            .collect()
    }

    /// Metrics that pass, regress, have no data, carry tags, are constant
    /// and critical: every kind of result a join must keep.
    fn request(judge: &str) -> (Value, ValidSnapshot) {
        let pair = |canary: Vec<f64>, baseline: Vec<f64>| json!({"step_seconds": 60, "start": "2026-12-06T00:00:00Z", "canary": canary, "baseline": baseline});
        let snapshot = json!({
            "schema_version": 2,
            "now": "2026-12-07T02:00:00Z",
            "metrics": {
                "series": {
                    "errors": pair(series(1.0, 1), series(1.0, 2)),
                    "latency{pod=\"a\"}": pair(series(300.0, 3), series(300.0, 4)),
                    "latency{pod=\"b\"}": pair(series(420.0, 5), series(300.0, 6)),
                    "cpu": pair(vec![0.5; POINTS], vec![0.5; POINTS]),
                    "orders": pair(series(90.0, 7), series(100.0, 8)),
                },
                "counts": {
                    "errors": {"canary": {"events": 3, "exposures": 200},
                               "baseline": {"events": 0, "exposures": 20000}}
                }
            }
        });
        let config = json!({
            "judge": judge,
            "thresholds": {"pass": 80.0, "marginal": 40.0},
            "group_weights": {"errors": 40.0, "latency": 40.0},
            "metrics": [
                {"name": "errors", "groups": ["errors"], "direction": "increase", "critical": true},
                {"name": "latency", "groups": ["latency"], "direction": "increase"},
                {"name": "missing", "groups": ["latency"], "direction": "increase"},
                {"name": "cpu", "groups": ["saturation"], "direction": "either"},
                {"name": "orders", "groups": ["business"], "direction": "decrease"},
            ],
        });
        let snapshot = crate::snapshot::parse(snapshot.to_string().as_bytes()).unwrap();
        (config, snapshot)
    }

    #[test]
    fn a_request_judged_in_two_instances_gets_the_judgement_of_one() {
        let runtime = runtime();
        for name in ["NetflixACAJudge-v1.0", "shipgate-sequential-v1"] {
            let (config, snapshot) = request(name);
            let plan = plan(&config, snapshot.typed(), 2).expect("worth splitting");
            assert_eq!(plan.parts, 2, "{name}");
            let one = judge(&runtime, &config, snapshot.clone(), "test", None, 1).unwrap();
            let two = judge(&runtime, &config, snapshot, "test", None, 2).unwrap();
            assert_eq!(one.judgement, two.judgement, "{name}");
            assert_eq!(one.sentences, two.sentences, "{name}");
            let labels: Vec<&str> = one.judgement["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["label"].as_str().unwrap())
                .collect();
            // Both tag sets of latency, in the config's order.
            assert_eq!(labels.len(), 6, "{name}: {labels:?}");
            assert_eq!(labels[2], "High", "{name}: {labels:?}");
            assert_eq!(labels[5], "Low", "{name}: {labels:?}");
        }
        // Kayenta's score joins groups from both parts: errors 100 × 0.4,
        // latency (one of two tag sets passed; no data is not scored)
        // 50 × 0.4, and the two groups without a weight share the 20 left:
        // saturation 100 × 0.1, business 0 × 0.1.
        let (config, snapshot) = request("NetflixACAJudge-v1.0");
        let two = judge(&runtime, &config, snapshot, "test", None, 2).unwrap();
        assert_eq!(two.judgement["score"], 70.0);
        assert_eq!(two.judgement["classification"], "Marginal");
    }

    #[test]
    fn metrics_are_shared_in_config_order_by_their_points() {
        let (config, snapshot) = request("NetflixACAJudge-v1.0");
        let shared = plan(&config, snapshot.typed(), 2).unwrap();
        // errors and latency's two tag sets hold 3 of the 5 series.
        assert_eq!(shared.rules, vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(shared.part_of_series("latency{pod=\"b\"}"), Some(0));
        assert_eq!(shared.part_of_series("orders"), Some(1));
        assert_eq!(shared.part_of_series("not-configured"), None);
        // Counts are looked up by the metric's exact name.
        assert_eq!(shared.part_of_count("errors"), Some(0));
        assert_eq!(shared.part_of_count("latency{pod=\"b\"}"), None);
        assert!(plan(&config, snapshot.typed(), 1).is_none());
        // A small request is judged in one instance.
        let small =
            crate::snapshot::parse(br#"{"schema_version": 2, "now": "2026-12-07T02:00:00Z"}"#)
                .unwrap();
        assert!(plan(&config, small.typed(), 2).is_none());
    }
}
