//! JSON limits both sides enforce. The gateway checks a body before any SQL sees it (PostgreSQL's
//! own parser would fail a 20,000-deep array with "stack depth limit exceeded", an internal error,
//! and fail every send batched with it); the extension checks the values SQL callers hand it.

/// The default of `hatchat.max_json_depth`: far deeper than any real message, far shallower than
/// what strains a parser's stack.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// How deeply arrays and objects nest in `text` (a scalar is 0, `[1]` is 1, `{"a": [1]}` is 2),
/// counting no deeper than `limit + 1`: a caller only needs to know whether the limit is passed,
/// and a hostile body of a million `[` costs one short scan. Brackets inside strings do not count.
/// Meant for valid JSON; for anything else the answer is some number, never a panic.
pub fn depth_up_to(text: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The message for a value nested deeper than `limit`: the same words from both sides.
pub fn too_deep_message(limit: usize) -> String {
    format!("JSON nests deeper than the limit of {limit} levels (hatchat.max_json_depth)")
}

/// `Err(message)` when `text` nests deeper than `limit`.
pub fn check_depth(text: &[u8], limit: usize) -> Result<(), String> {
    if depth_up_to(text, limit) > limit {
        Err(too_deep_message(limit))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_nesting_not_brackets_in_strings() {
        for (text, depth) in [
            ("1", 0),
            ("\"[[[\"", 0),
            ("[]", 1),
            ("[1, [2, {\"a\": [3]}]]", 4),
            ("{\"a\": \"]]]\", \"b\": {\"c\": \"\\\"[\"}}", 2),
            ("[[], [], [[]]]", 3),
        ] {
            assert_eq!(depth_up_to(text.as_bytes(), 100), depth, "{text}");
        }
    }

    #[test]
    fn stops_counting_past_the_limit() {
        let deep = "[".repeat(1_000_000);
        assert_eq!(depth_up_to(deep.as_bytes(), 64), 65);
        let at_limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_depth(at_limit.as_bytes(), 64).is_ok());
        let over = format!("[{at_limit}]");
        let message = check_depth(over.as_bytes(), 64).unwrap_err();
        assert!(message.contains("64") && message.contains("hatchat.max_json_depth"), "{message}");
    }

    proptest! {
        /// Any bytes: no panic, and never a depth above what was asked for plus one.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), limit in 0usize..80) {
            prop_assert!(depth_up_to(&bytes, limit) <= limit + 1);
        }

        /// For valid JSON the scan agrees with a real parser's view of the nesting.
        #[test]
        fn agrees_with_the_nesting_of_generated_json(depth in 0usize..100, inner in "[a-z\\[\\]{}\"]{0,8}") {
            let string = serde_like_quote(&inner);
            let text = format!("{}{}{}", "[".repeat(depth), string, "]".repeat(depth));
            prop_assert_eq!(depth_up_to(text.as_bytes(), 200), depth);
        }
    }

    /// A JSON string literal for `s` (quotes and backslashes escaped).
    fn serde_like_quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
