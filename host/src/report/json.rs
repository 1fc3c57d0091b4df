//! JSON for programs: the same records the decision log and the server use.

use serde::Serialize;

/// `value` pretty-printed, with a final newline.
pub(crate) fn json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("records are JSON");
    text.push('\n');
    text
}
