# builtin:canary's abort rules in Rego, as an OPA user would write them.
# Input: the snapshot with the host's `gate` object, as the wasm policy gets it.
package shipgate.canary

import rego.v1

canary := input.metrics.canary

baseline := input.metrics.baseline

limits := input.gate.rollout.abort

enough if canary.requests >= limits.min_requests

error_rate := canary.errors / canary.requests

breaches contains "error-rate" if error_rate > limits.max_error_rate

breaches contains "error-rate-ratio" if {
	baseline.errors > 0
	error_rate / (baseline.errors / baseline.requests) > limits.max_error_rate_ratio
}

breaches contains sprintf("latency-ratio-%s", [q]) if {
	some q in ["p50", "p95", "p99"]
	canary.latency_ms[q] / baseline.latency_ms[q] > limits.max_latency_ratio
}

breaches contains sprintf("business-%s", [name]) if {
	some name, count in baseline.business
	drop := 1 - (canary.business[name] / canary.requests) / (count / baseline.requests)
	drop > limits.max_business_drop
}

decision := "rollback" if {
	enough
	count(breaches) > 0
} else := "deny" if {
	not enough
} else := "allow"
