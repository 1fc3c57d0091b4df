//! The same canary abort rules in the engines users would otherwise pick:
//! Rego (regorus, an OPA-compatible engine) and CEL (the `cel` crate).

use anyhow::{Context, Result, bail};

/// An OPA user's setup: the policy compiled once, the input parsed per call.
pub(crate) struct Rego {
    engine: regorus::Engine,
}

impl Rego {
    pub(crate) fn new() -> Result<Self> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(
                "canary.rego".to_string(),
                include_str!("../rules/canary.rego").to_string(),
            )
            .context("compiling canary.rego")?;
        Ok(Rego { engine })
    }

    /// The decision for an input JSON text (snapshot + gate).
    pub(crate) fn decide(&mut self, input_json: &str) -> Result<String> {
        self.engine
            .set_input_json(input_json)
            .context("Rego input")?;
        let value = self
            .engine
            .eval_rule("data.shipgate.canary.decision".to_string())
            .context("evaluating canary.rego")?;
        match value.as_string() {
            Ok(decision) => Ok(decision.to_string()),
            Err(_) => bail!("canary.rego gave no decision: {value}"),
        }
    }
}

/// A Kubernetes user's setup: the expression compiled once, the input
/// parsed into a CEL value per call.
pub(crate) struct Cel {
    program: cel::Program,
}

impl Cel {
    pub(crate) fn new() -> Result<Self> {
        let program = cel::Program::compile(include_str!("../rules/canary.cel"))
            .map_err(|e| anyhow::anyhow!("compiling canary.cel: {e}"))?;
        Ok(Cel { program })
    }

    pub(crate) fn decide(&self, input_json: &str) -> Result<String> {
        let input: serde_json::Value = serde_json::from_str(input_json)?;
        let mut context = cel::Context::default();
        context
            .add_variable("input", input)
            .map_err(|e| anyhow::anyhow!("CEL input: {e}"))?;
        match self.program.execute(&context) {
            Ok(cel::Value::String(decision)) => Ok(decision.to_string()),
            Ok(other) => bail!("canary.cel gave {other:?}, not a decision"),
            Err(e) => bail!("evaluating canary.cel: {e}"),
        }
    }
}
