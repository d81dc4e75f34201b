//! Strings from the network made safe to print on a terminal.
//!
//! A file name in a search hit, an error text a node relays, a path a peer chose: any of
//! them may carry escape sequences (ESC, BEL, CSI) that clear the screen, set the window
//! title, or fake output, or bidirectional overrides that make a name read as another one.
//! Everything the text forms print that did not come from this process goes through
//! [`safe`] first. JSON output is left alone: serde already escapes control characters.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

/// `text` with every control and invisible formatting character replaced by a visible
/// `\u{..}` escape; borrowed unchanged when there is none (the usual case).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path printed safely (lossy for bytes that are not UTF-8, as `display` is).
pub fn safe_path(path: &Path) -> String {
    safe(&path.to_string_lossy()).into_owned()
}

/// C0 and C1 controls, DEL, and the format characters that reorder or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                  // Arabic letter mark
            | '\u{200b}'..='\u{200f}'   // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // bidi isolates
            | '\u{feff}' // zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        let hostile = "song\u{1b}]0;pwned\u{7}\u{1b}[2J.mp3";
        let shown = safe(hostile);
        assert_eq!(shown, "song\\u{1b}]0;pwned\\u{7}\\u{1b}[2J.mp3");
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn c1_controls_del_newlines_and_bidi_overrides_are_escaped() {
        assert_eq!(safe("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(safe("a\u{7f}b"), "a\\u{7f}b");
        assert_eq!(safe("two\nlines\r"), "two\\u{a}lines\\u{d}");
        assert_eq!(safe("evil\u{202e}fdp.exe"), "evil\\u{202e}fdp.exe");
    }

    #[test]
    fn ordinary_names_are_borrowed_unchanged() {
        for name in ["Café.mp3", "東京の夜.flac", "aq̃b", "नमस्ते", "a b\\c"] {
            assert!(matches!(safe(name), Cow::Borrowed(s) if s == name));
        }
    }
}
