//! docs/vectors/tokens.json: names → tokens → summary strings, bits and bytes; the match
//! rule on query/name pairs.

use highway_wire::summary::{Summary, bit_index};
use highway_wire::tokenize::{all_tokens_match, matchable_prefixes, tokens};
use serde::{Deserialize, Serialize};

use super::common::{load, render, unhex};

#[derive(Serialize, Deserialize)]
pub struct File {
    about: String,
    /// Unicode versions of the tables the reference implementation used.
    unicode: Unicode,
    names: Vec<Name>,
    matches: Vec<Match>,
}

#[derive(Serialize, Deserialize)]
struct Unicode {
    character_properties: String,
    normalization: String,
}

#[derive(Serialize, Deserialize)]
struct Name {
    name: String,
    /// The name's characters as code points, so invisible marks are visible.
    code_points: Vec<String>,
    tokens: Vec<String>,
    /// Every string whose bit the name sets in a summary: each token's matchable prefixes.
    strings: Vec<StringBit>,
    /// The summary of this name alone, encoded (tag byte and body).
    summary_hex: String,
}

#[derive(Serialize, Deserialize)]
struct StringBit {
    string: String,
    bit: u16,
}

#[derive(Serialize, Deserialize)]
struct Match {
    query: String,
    name: String,
    query_tokens: Vec<String>,
    matches: bool,
}

const NAMES: &[&str] = &[
    "Café del Mar.mp3",
    "CAFÉ",
    "cafe",
    "Cafe\u{301} Noir (decomposed).ogg",
    "İstanbul Nights.flac",
    "ISTANBUL",
    "ıstanbul (dotless).txt",
    "aq\u{303}b",
    "Ünïcödé Straße.txt",
    "ΣΊΣΥΦΟΣ",
    "Ёлка й",
    "Tiếng Việt.doc",
    "हिन्दी गाना.mp3",
    "क़िला",
    "東京タワー.jpg",
    "한국어 노래.mp3",
    "ガイドブック.pdf",
    "ｶﾞｲﾄﾞ",
    "ＡＢＣ１２３",
    "ﬁle",
    "مُوسِيقَى",
    "שָׁלוֹם",
    "เพลงไทย",
    "🎵music🎵 ★ best♥of.ogg",
    "1\u{fe0f}\u{20e3} step",
    "My_Song (Live).FLAC",
    "Live live LIVE at Live.live",
    "Mötley Crüe – Live@Wembley_1989 (Ünïcödé) [FLAC].zip",
    "",
    " ._-()[] ",
];

/// Tokens over 64 characters are dropped, counted after accents are folded.
fn long_names() -> Vec<String> {
    vec![
        format!("{} kept", "y".repeat(64)),
        format!("{} dropped", "x".repeat(65)),
        format!("{} kept", "é".repeat(64)),
        format!("{} kept", "e\u{301}".repeat(64)),
        format!("{} dropped", "é".repeat(65)),
    ]
}

const MATCHES: &[(&str, &str)] = &[
    ("cafe", "Café del Mar.mp3"),
    ("CAFÉ", "Café del Mar.mp3"),
    ("café", "cafe"),
    ("caf", "Café del Mar.mp3"),
    ("ca", "Café del Mar.mp3"),
    ("cafe mar", "Café del Mar.mp3"),
    ("cafe noir", "Café del Mar.mp3"),
    ("istanbul", "İstanbul Nights.flac"),
    ("İSTANBUL", "ISTANBUL"),
    ("istanbul", "ıstanbul (dotless).txt"),
    ("aqb", "aq\u{303}b"),
    ("unicode strasse", "Ünïcödé Straße.txt"),
    ("unicode straße", "Ünïcödé Straße.txt"),
    ("σισυφος", "ΣΊΣΥΦΟΣ"),
    ("елка", "Ёлка й"),
    ("tieng viet", "Tiếng Việt.doc"),
    ("हिन्दी", "हिन्दी गाना.mp3"),
    ("हिन", "हिन्दी गाना.mp3"),
    ("हन्दी", "हिन्दी गाना.mp3"),
    ("東京", "東京タワー.jpg"),
    ("東", "東京タワー.jpg"),
    ("한국", "한국어 노래.mp3"),
    ("ガイド", "ガイドブック.pdf"),
    ("カイド", "ガイドブック.pdf"),
    ("ガイド", "ｶﾞｲﾄﾞ"),
    ("abc", "ＡＢＣ１２３"),
    ("file", "ﬁle"),
    ("music", "🎵music🎵 ★ best♥of.ogg"),
    ("1", "1\u{fe0f}\u{20e3} step"),
    ("son", "My_Song (Live).FLAC"),
    ("so", "My_Song (Live).FLAC"),
    ("songs", "My_Song (Live).FLAC"),
    ("live flac", "My_Song (Live).FLAC"),
    ("live mp3", "My_Song (Live).FLAC"),
    ("!!", "My_Song (Live).FLAC"),
];

fn name_vector(name: &str) -> Name {
    let toks = tokens(name);
    let strings = toks
        .iter()
        .flat_map(|t| matchable_prefixes(t))
        .map(|s| StringBit {
            string: s.to_owned(),
            bit: bit_index(s),
        })
        .collect();
    let summary = Summary::from_keywords(1, toks.iter().map(String::as_str));
    Name {
        name: name.to_owned(),
        code_points: name
            .chars()
            .map(|c| format!("U+{:04X}", u32::from(c)))
            .collect(),
        tokens: toks,
        strings,
        summary_hex: hex::encode(summary.encode()),
    }
}

fn build() -> File {
    let (major, minor, patch) = char::UNICODE_VERSION;
    let (n_major, n_minor, n_patch) = unicode_normalization::UNICODE_VERSION;
    let mut names: Vec<Name> = NAMES.iter().map(|n| name_vector(n)).collect();
    names.extend(long_names().iter().map(|n| name_vector(n)));
    let matches = MATCHES
        .iter()
        .map(|&(query, name)| {
            let query_tokens = tokens(query);
            Match {
                query: query.to_owned(),
                name: name.to_owned(),
                matches: all_tokens_match(&query_tokens, &tokens(name)),
                query_tokens,
            }
        })
        .collect();
    File {
        about: "Tokenizer and match-rule vectors, docs/PROTOCOL.md \"Keywords\". Each name: its \
                tokens, every string it sets a summary bit for (its tokens' matchable \
                prefixes) with that bit, and the encoded summary of that name alone. Each \
                match: whether a file of that name answers the query."
            .into(),
        unicode: Unicode {
            character_properties: format!("{major}.{minor}.{patch}"),
            normalization: format!("{n_major}.{n_minor}.{n_patch}"),
        },
        names,
        matches,
    }
}

pub fn generate() -> String {
    render(&build())
}

#[test]
fn names_give_the_listed_tokens_bits_and_summaries() {
    let file: File = load("tokens.json");
    assert!(file.names.len() >= NAMES.len());
    for n in &file.names {
        assert_eq!(tokens(&n.name), n.tokens, "{:?}", n.name);
        let code_points: Vec<String> = n
            .name
            .chars()
            .map(|c| format!("U+{:04X}", u32::from(c)))
            .collect();
        assert_eq!(code_points, n.code_points);
        // The bit of a string is the first two bytes of its BLAKE3 hash, little-endian.
        for sb in &n.strings {
            let d = blake3::hash(sb.string.as_bytes());
            assert_eq!(
                sb.bit,
                u16::from_le_bytes([d.as_bytes()[0], d.as_bytes()[1]])
            );
        }
        let summary = Summary::decode(1, &unhex(&n.summary_hex)).expect("summary decodes");
        let mut bits: Vec<u16> = n.strings.iter().map(|sb| sb.bit).collect();
        bits.sort_unstable();
        bits.dedup();
        let set: Vec<u16> = (0..=u16::MAX).filter(|&i| summary.bit(i)).collect();
        assert_eq!(
            set, bits,
            "{:?}: the summary has exactly the strings' bits",
            n.name
        );
    }
}

#[test]
fn the_match_rule_gives_the_listed_answers() {
    let file: File = load("tokens.json");
    for m in &file.matches {
        assert_eq!(tokens(&m.query), m.query_tokens, "{:?}", m.query);
        assert_eq!(
            all_tokens_match(&m.query_tokens, &tokens(&m.name)),
            m.matches,
            "{:?} in {:?}",
            m.query,
            m.name
        );
    }
    // The vectors cover both answers, and the example.
    assert!(file.matches.iter().any(|m| m.matches));
    assert!(file.matches.iter().any(|m| !m.matches));
    assert!(
        file.matches
            .iter()
            .any(|m| m.query == "cafe" && m.name.starts_with("Café") && m.matches)
    );
}
