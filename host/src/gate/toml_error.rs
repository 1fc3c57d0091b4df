//! TOML parse errors as people read them: `file:line:column: what`, and
//! "did you mean" for a misspelt key.

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" becomes
/// "unknown key 'x' (did you mean 'a'?)" when one candidate is close.
pub(crate) fn explain(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let closest = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(unknown, c), *c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, name)) => format!("unknown key '{unknown}' (did you mean '{name}'?)"),
        None => format!(
            "unknown key '{unknown}' (expected one of: {})",
            candidates.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncé", 6), (2, 3));
    }

    #[test]
    fn a_close_key_is_suggested_and_a_far_one_lists_the_keys() {
        assert_eq!(
            explain("unknown field `nmae`, expected one of `name`, `rollout`"),
            "unknown key 'nmae' (did you mean 'name'?)"
        );
        assert_eq!(
            explain("unknown field `zzz`, expected `name` or `rollout`"),
            "unknown key 'zzz' (expected one of: name, rollout)"
        );
        assert_eq!(explain("invalid type"), "invalid type");
    }
}
