//! Keywords: how file names and queries become tokens, and when a query token matches.
//!
//! One function, [`tokens`], serves both sides, so a file name and a query typed the same
//! way always agree:
//!
//! 1. NFKC-normalise (full-width "ＡＢＣ" becomes "abc", the ligature "ﬁ" becomes "fi");
//! 2. lowercase with Unicode rules (`str::to_lowercase`), then NFKC again so the result is
//!    stable under a second pass;
//! 3. split on every character that is neither alphanumeric (`char::is_alphanumeric`) nor a
//!    combining mark (so a letter followed by an accent that has no precomposed form stays
//!    one token); punctuation, spaces, symbols and emoji are separators;
//! 4. drop tokens that contain no alphanumeric character or are longer than
//!    [`MAX_TOKEN_CHARS`] characters, and keep the first occurrence of each token.
//!
//! A file name is tokenised whole, so its extension is a token of its own:
//! `"My_Song (Live).FLAC"` gives `["my", "song", "live", "flac"]`. Scripts written without
//! spaces (Chinese, Japanese) give one token per run: `"東京タワー.jpg"` gives
//! `["東京タワー", "jpg"]`.
//!
//! **Matching** ([`token_matches`]): a query token matches a file token when they are equal,
//! or when the query token is a prefix of the file token and at least
//! [`min_prefix_chars`] characters long (3, or 2 for CJK scripts, whose words are short).
//! So "son" finds "songs" but "so" does not, and "東京" finds "東京タワー". A query matches
//! a file when **every** query token matches some token of the file's name.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest token kept, in characters; longer runs are dropped rather than truncated, since
/// nobody types them and they would only bloat the index.
pub const MAX_TOKEN_CHARS: usize = 64;

/// Shortest query token that matches as a prefix, outside CJK scripts.
pub const MIN_PREFIX_CHARS: usize = 3;

/// Shortest query token that matches as a prefix when it starts with a CJK character.
pub const MIN_CJK_PREFIX_CHARS: usize = 2;

/// The tokens of `text` (a file name or a query), normalised, in order of first occurrence.
pub fn tokens(text: &str) -> Vec<String> {
    let folded: String = text
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    let mut out: Vec<String> = Vec::new();
    for run in folded.split(|c: char| !is_token_char(c)) {
        if run.is_empty() || !run.chars().any(char::is_alphanumeric) {
            continue;
        }
        if run.chars().count() > MAX_TOKEN_CHARS {
            continue;
        }
        if !out.iter().any(|t| t == run) {
            out.push(run.to_owned());
        }
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// The shortest prefix of a token (in characters) that may match on its own: depends only
/// on the token's first character, so a token and all of its prefixes agree.
pub fn min_prefix_chars(token: &str) -> usize {
    match token.chars().next() {
        Some(c) if is_cjk(c) => MIN_CJK_PREFIX_CHARS,
        _ => MIN_PREFIX_CHARS,
    }
}

/// Whether the normalised query token `query` matches the file-name token `file_token`:
/// equal, or a prefix of at least [`min_prefix_chars`] characters.
pub fn token_matches(query: &str, file_token: &str) -> bool {
    if query == file_token {
        return true;
    }
    file_token.starts_with(query) && query.chars().count() >= min_prefix_chars(query)
}

/// Whether a file whose name has the tokens `file_tokens` answers a query with the tokens
/// `query`: every query token matches one of the file's ([`token_matches`]), and the
/// query has at least one.
pub fn all_tokens_match<Q: AsRef<str>, T: AsRef<str>>(query: &[Q], file_tokens: &[T]) -> bool {
    !query.is_empty()
        && query.iter().all(|q| {
            file_tokens
                .iter()
                .any(|t| token_matches(q.as_ref(), t.as_ref()))
        })
}

/// Every string a query token must equal for it to match `token`: the token itself and its
/// prefixes of at least [`min_prefix_chars`] characters, shortest first. The share summary
/// sets a bit for each, which is what makes it free of false negatives.
pub fn matchable_prefixes(token: &str) -> impl Iterator<Item = &str> {
    let min = min_prefix_chars(token);
    token
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .enumerate()
        .filter(move |&(n, end)| n + 1 >= min || end == token.len())
        .map(move |(_, end)| &token[..end])
}

/// Han ideographs, kana and Hangul: scripts whose words are one or two characters long.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF        // Hangul Jamo
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3130..=0x318F      // Hangul Compatibility Jamo
        | 0x31F0..=0x31FF      // Katakana Phonetic Extensions
        | 0x3400..=0x4DBF      // CJK Extension A
        | 0x4E00..=0x9FFF      // CJK Unified Ideographs
        | 0xAC00..=0xD7AF      // Hangul Syllables
        | 0xF900..=0xFAFF      // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF    // CJK Extensions B and later
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(text: &str) -> Vec<String> {
        tokens(text)
    }

    #[test]
    fn file_name_splits_on_punctuation_and_keeps_extension() {
        assert_eq!(t("My_Song (Live).FLAC"), ["my", "song", "live", "flac"]);
        assert_eq!(t("a-b.c,d;e'f"), ["a", "b", "c", "d", "e", "f"]);
    }

    #[test]
    fn lowercases_unicode_and_keeps_accents() {
        assert_eq!(t("Ünïcödé Straße.txt"), ["ünïcödé", "straße", "txt"]);
        assert_eq!(t("ΣΊΣΥΦΟΣ"), t("σίσυφος"));
    }

    #[test]
    fn nfkc_folds_compatibility_forms_and_decomposed_accents() {
        // Full-width letters and digits, the "ﬁ" ligature, a decomposed "é".
        assert_eq!(t("ＡＢＣ１２３"), ["abc123"]);
        assert_eq!(t("ﬁle"), ["file"]);
        assert_eq!(t("cafe\u{301}"), t("café"));
    }

    #[test]
    fn combining_mark_without_precomposed_form_stays_in_the_token() {
        // "q̃" has no precomposed form; it must not split the word.
        assert_eq!(t("aq\u{303}b"), ["aq\u{303}b"]);
    }

    #[test]
    fn cjk_runs_are_single_tokens() {
        assert_eq!(t("東京タワー.jpg"), ["東京タワー", "jpg"]);
        assert_eq!(t("한국어 노래.mp3"), ["한국어", "노래", "mp3"]);
    }

    #[test]
    fn emoji_and_symbols_separate_tokens() {
        assert_eq!(t("🎵music🎵 ★ best♥of.ogg"), ["music", "best", "of", "ogg"]);
        assert!(t("🎵🎶 — ★").is_empty());
    }

    #[test]
    fn duplicates_are_removed_in_order_of_first_occurrence() {
        assert_eq!(t("Live live LIVE at Live.live"), ["live", "at"]);
    }

    #[test]
    fn overlong_tokens_are_dropped_not_truncated() {
        let long = "x".repeat(MAX_TOKEN_CHARS + 1);
        let exact = "y".repeat(MAX_TOKEN_CHARS);
        assert_eq!(t(&format!("{long} {exact} z")), [exact.as_str(), "z"]);
    }

    #[test]
    fn empty_and_separator_only_text_has_no_tokens() {
        assert!(t("").is_empty());
        assert!(t(" ._-()[] ").is_empty());
    }

    #[test]
    fn a_file_matches_when_every_query_token_matches_one_of_its_tokens() {
        let file = tokens("Blue Monday (New Order).flac");
        assert!(all_tokens_match(&tokens("blue mon"), &file));
        assert!(all_tokens_match(&tokens("order BLUE"), &file));
        assert!(!all_tokens_match(&tokens("blue tuesday"), &file));
        assert!(
            !all_tokens_match(&tokens("!!"), &file),
            "no query tokens, no match"
        );
    }

    #[test]
    fn prefix_matching_needs_three_chars_or_two_in_cjk() {
        assert!(token_matches("song", "song"));
        assert!(token_matches("son", "songs"));
        assert!(!token_matches("so", "songs"));
        assert!(token_matches("so", "so"));
        assert!(!token_matches("songs", "song"));
        assert!(token_matches("東京", "東京タワー"));
        assert!(!token_matches("東", "東京タワー"));
        assert!(token_matches("東", "東"));
    }

    #[test]
    fn matchable_prefixes_are_exactly_the_matching_query_tokens() {
        assert_eq!(
            matchable_prefixes("songs").collect::<Vec<_>>(),
            ["son", "song", "songs"]
        );
        assert_eq!(matchable_prefixes("ab").collect::<Vec<_>>(), ["ab"]);
        assert_eq!(
            matchable_prefixes("東京タ").collect::<Vec<_>>(),
            ["東京", "東京タ"]
        );
        assert_eq!(matchable_prefixes("ü").collect::<Vec<_>>(), ["ü"]);
    }

    proptest! {
        #[test]
        fn tokenising_is_idempotent(text in "\\PC{0,40}") {
            let once = tokens(&text);
            let again = tokens(&once.join(" "));
            prop_assert_eq!(once, again);
        }

        #[test]
        fn tokens_are_bounded_unique_and_alphanumeric(text in "\\PC{0,80}") {
            let toks = tokens(&text);
            for (i, tok) in toks.iter().enumerate() {
                prop_assert!(!tok.is_empty());
                prop_assert!(tok.chars().count() <= MAX_TOKEN_CHARS);
                prop_assert!(tok.chars().all(is_token_char));
                prop_assert!(!toks[..i].contains(tok));
            }
        }

        #[test]
        fn a_query_token_matches_iff_it_is_a_matchable_prefix(
            token in "[a-zé東京]{1,8}",
            query in "[a-zé東京]{1,8}",
        ) {
            let listed = matchable_prefixes(&token).any(|p| p == query);
            prop_assert_eq!(token_matches(&query, &token), listed);
        }
    }
}
