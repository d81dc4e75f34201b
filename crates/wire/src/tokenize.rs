//! Keywords: how file names and queries become tokens, and when a query token matches.
//!
//! One function, [`tokens`], serves both sides, so a file name and a query typed the same
//! way always agree. docs/PROTOCOL.md ("Keywords") is the normative text; in order:
//!
//! 1. NFKC-normalise (full-width "ＡＢＣ" becomes "ABC", the ligature "ﬁ" becomes "fi");
//! 2. lowercase with Unicode rules (`str::to_lowercase`: "İ" becomes "i" + U+0307, a final
//!    "Σ" becomes "ς");
//! 3. NFKD-decompose, so every accent is a separate combining mark ("é" is "e" + U+0301);
//! 4. drop every code point in [`FOLDED_MARKS`]: the script-neutral diacritics Latin,
//!    Greek and Cyrillic letters decompose into, the Cyrillic combining marks and the
//!    variation selectors. This is what makes "cafe", "Café" and "CAFÉ" one token, and
//!    "İstanbul" the same as "istanbul". Marks of other scripts (Devanagari vowel signs and
//!    virama, the kana voicing marks, Hebrew and Arabic points, Thai vowels) are kept:
//!    there they are part of the spelling, and folding them would change the word;
//! 5. NFC-recompose (Hangul syllables and kana with voicing marks come back whole);
//! 6. split on every character that is neither alphanumeric (`char::is_alphanumeric`) nor
//!    a combining mark (General_Category M), so a letter followed by a kept mark stays one
//!    token; punctuation, spaces, symbols and emoji are separators;
//! 7. drop tokens that contain no alphanumeric character or are longer than
//!    [`MAX_TOKEN_CHARS`] characters (after folding), and keep the first occurrence of
//!    each token.
//!
//! A file name is tokenised whole, so its extension is a token of its own:
//! `"My_Song (Live).FLAC"` gives `["my", "song", "live", "flac"]`. Scripts written without
//! spaces (Chinese, Japanese) give one token per run: `"東京タワー.jpg"` gives
//! `["東京タワー", "jpg"]`.
//!
//! **Matching** ([`token_matches`]): a query token matches a file token when they are equal,
//! or when the query token is a prefix of the file token and at least
//! [`min_prefix_chars`] characters long (3, or 2 when the query token starts with a CJK
//! character, whose words are short). So "son" finds "songs" but "so" does not, and
//! "東京" finds "東京タワー". A query matches a file when **every** query token matches
//! some token of the file's name.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Code points removed after decomposition (step 4), whether assigned or not, so the rule
/// does not depend on the Unicode version: combining diacritical marks (and their
/// extended, supplement, symbol and half-mark blocks), Cyrillic combining marks and
/// variation selectors (invisible presentation hints, as in "1️⃣").
pub const FOLDED_MARKS: [(char, char); 8] = [
    ('\u{0300}', '\u{036F}'),
    ('\u{0483}', '\u{0489}'),
    ('\u{1AB0}', '\u{1AFF}'),
    ('\u{1DC0}', '\u{1DFF}'),
    ('\u{20D0}', '\u{20FF}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FE20}', '\u{FE2F}'),
    ('\u{E0100}', '\u{E01EF}'),
];

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
        .nfkd()
        .filter(|&c| !is_folded_mark(c))
        .nfc()
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

/// Whether `c` is one of the [`FOLDED_MARKS`] that tokenising drops.
pub fn is_folded_mark(c: char) -> bool {
    FOLDED_MARKS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
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
    fn lowercases_unicode_and_folds_accents() {
        assert_eq!(t("Ünïcödé Straße.txt"), ["unicode", "straße", "txt"]);
        assert_eq!(t("ΣΊΣΥΦΟΣ"), t("σίσυφος"));
        assert_eq!(t("ΣΊΣΥΦΟΣ"), ["σισυφος"]);
        assert_eq!(t("Ёлка й"), ["елка", "и"]);
    }

    #[test]
    fn cafe_finds_cafe_with_or_without_accents_in_any_case() {
        // The promise of `highway search --help`: case and accents are ignored.
        for name in ["Café", "CAFÉ", "cafe", "CAFE", "cafe\u{301}", "Cafe\u{301}"] {
            assert_eq!(t(name), ["cafe"], "{name:?}");
        }
        let file = tokens("Café del Mar.mp3");
        assert!(all_tokens_match(&tokens("cafe"), &file));
        assert!(all_tokens_match(&tokens("CAFÉ"), &file));
        assert!(all_tokens_match(&tokens("caf"), &file));
    }

    #[test]
    fn dotted_capital_i_folds_to_plain_i() {
        // "İ" lowercases to "i" + U+0307; the dot is a folded mark.
        assert_eq!(t("İstanbul"), ["istanbul"]);
        assert_eq!(t("ISTANBUL"), ["istanbul"]);
        // Dotless ı has no decomposition: a different letter, kept.
        assert_eq!(t("ıstanbul"), ["ıstanbul"]);
    }

    #[test]
    fn nfkc_folds_compatibility_forms_and_decomposed_accents() {
        // Full-width letters and digits, the "ﬁ" ligature, a decomposed "é".
        assert_eq!(t("ＡＢＣ１２３"), ["abc123"]);
        assert_eq!(t("ﬁle"), ["file"]);
        assert_eq!(t("cafe\u{301}"), t("café"));
    }

    #[test]
    fn diacritics_without_precomposed_form_are_folded_too() {
        // "q̃" has no precomposed form; its tilde is a folded mark like any other.
        assert_eq!(t("aq\u{303}b"), ["aqb"]);
        // A keycap emoji is a digit with a variation selector and an enclosing mark.
        assert_eq!(t("1\u{fe0f}\u{20e3} step"), ["1", "step"]);
    }

    #[test]
    fn marks_of_other_scripts_are_kept_and_do_not_split() {
        // Devanagari vowel signs and virama are spelling: "हिन्दी" keeps all of them.
        assert_eq!(t("हिन्दी गाना.mp3"), ["हिन्दी", "गाना", "mp3"]);
        assert_ne!(t("कि"), t("क"));
        // Kana voicing marks survive decomposition and are recomposed.
        assert_eq!(t("ガイド"), ["ガイド"]);
        assert_ne!(t("ガイド"), t("カイド"));
        // Hebrew points are kept (and so do not split the word).
        assert_eq!(t("שָׁלוֹם"), ["שָׁלוֹם"]);
    }

    #[test]
    fn hangul_syllables_come_back_whole() {
        let toks = t("한국어");
        assert_eq!(toks, ["한국어"]);
        assert_eq!(toks[0].chars().count(), 3);
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
        // Counted after folding: 64 accented letters are 64 plain ones.
        let accented = "é".repeat(MAX_TOKEN_CHARS);
        assert_eq!(t(&accented), ["e".repeat(MAX_TOKEN_CHARS)]);
        let decomposed = "e\u{301}".repeat(MAX_TOKEN_CHARS);
        assert_eq!(t(&decomposed), ["e".repeat(MAX_TOKEN_CHARS)]);
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
                prop_assert!(!tok.chars().any(is_folded_mark));
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
