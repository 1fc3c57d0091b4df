//! A decision as CI systems that read results from files take it (Tekton
//! task results): `decision` and `summary`.

use crate::decision::Evaluation;
use crate::text::{Limit, clip};

/// The longest summary written as a result: Tekton keeps all of a task's
/// results in 4 KiB.
const MAX_RESULT_SUMMARY_BYTES: usize = 3072;

/// The files to write, by name.
pub(crate) fn task_results(evaluation: &Evaluation) -> [(&'static str, String); 2] {
    [
        ("decision", evaluation.decision.as_str().to_string()),
        (
            "summary",
            clip(&evaluation.summary, Limit::Bytes(MAX_RESULT_SUMMARY_BYTES)).into_owned(),
        ),
    ]
}
