//! Text helpers every layer uses: cutting text to a limit without
//! splitting a character, and saying that it was cut.

use std::borrow::Cow;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Bytes of UTF-8 (a field stored or sent with a byte limit).
    Bytes(usize),
    /// Characters (a limit people read, or an API counts in characters).
    Chars(usize),
}

/// `text` within `limit`: as it is when it fits, else cut at a character
/// boundary and ended with `…`, the ellipsis counted in the limit.
pub(crate) fn clip(text: &str, limit: Limit) -> Cow<'_, str> {
    const ELLIPSIS: char = '…';
    let end = match limit {
        Limit::Bytes(max) if text.len() <= max => return Cow::Borrowed(text),
        Limit::Bytes(max) => {
            let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            end
        }
        Limit::Chars(max) => match text.char_indices().nth(max) {
            None => return Cow::Borrowed(text),
            Some(_) => text
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(at, _)| at),
        },
    };
    Cow::Owned(format!("{}{ELLIPSIS}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_kept_and_text_that_does_not_is_cut_with_an_ellipsis() {
        assert_eq!(clip("abc", Limit::Bytes(3)), "abc");
        assert!(matches!(clip("abc", Limit::Chars(3)), Cow::Borrowed(_)));
        assert_eq!(clip("abcdef", Limit::Bytes(5)), "ab…");
        assert_eq!(clip("abcdef", Limit::Chars(4)), "abc…");
        // Never inside a character: é is two bytes.
        assert_eq!(clip("aéé", Limit::Bytes(4)), "a…");
        assert_eq!(clip("ééé", Limit::Chars(2)), "é…");
        for max in 3..20 {
            let cut = clip("😀😀😀 text", Limit::Bytes(max));
            assert!(cut.len() <= max, "{max}: {cut}");
        }
        for max in 1..20 {
            let cut = clip("héllo wörld", Limit::Chars(max));
            assert!(cut.chars().count() <= max, "{max}: {cut}");
        }
    }
}
