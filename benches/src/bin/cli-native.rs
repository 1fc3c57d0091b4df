//! The floor for a whole gate process: read the snapshot, add the gate,
//! parse, run builtin:canary's rules compiled natively, print the verdict
//! as JSON, exit with the decision's code. No wasm, no sandbox.

use shipgate_policy::{Decision, Phase, Policy, Snapshot};
use shipgate_policy_canary::{Canary, Config};

fn main() {
    let path = std::env::args().nth(1).expect("usage: cli-native SNAPSHOT");
    let text = std::fs::read_to_string(&path).expect("reading the snapshot");
    let mut snapshot: serde_json::Value = serde_json::from_str(&text).expect("snapshot JSON");
    snapshot["gate"] = shipgate_policy::testing::default_gate();
    let snapshot: Snapshot = serde_json::from_value(snapshot).expect("a snapshot");
    let verdict = Canary::evaluate(Phase::Abort, &snapshot, &Config::default()).expect("evaluates");
    println!("{}", serde_json::to_string(&verdict).expect("JSON"));
    std::process::exit(match verdict.decision {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::Rollback => 2,
    });
}
