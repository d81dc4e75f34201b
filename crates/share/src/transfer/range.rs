//! The `Range` request header, as far as a file server for downloaders and `curl` needs it.

/// What a request's `Range` header asks for, resolved against the file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// No range, or one in a unit we do not know (RFC 9110 says to ignore those): the whole
    /// file with `200`.
    Full,
    /// One satisfiable byte range, `start..=end`, both inside the file: `206`.
    Partial { start: u64, end: u64 },
    /// A `bytes` range that is malformed, lies outside the file, or names several ranges:
    /// `416`. Multipart responses are not served.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a file of `size` bytes.
pub(crate) fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Full;
    };
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeRequest::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeRequest::Unsatisfiable;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // `a-b` and `a-`: an end beyond the file is clipped to it.
        (Some(start), end) => {
            let end = match end {
                Some(end) if end < start => return RangeRequest::Unsatisfiable,
                Some(end) => end.min(size.saturating_sub(1)),
                None if last.is_empty() => size.saturating_sub(1),
                None => return RangeRequest::Unsatisfiable,
            };
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start, end }
            }
        }
        // `-n`: the last n bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: size - suffix.min(size),
                    end: size - 1,
                }
            }
        }
        _ => RangeRequest::Unsatisfiable,
    }
}

/// A decimal u64 made of ASCII digits only (no sign, no spaces, no overflow).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn single_ranges_resolve_like_rfc_9110_says() {
        let p = |h: &str| parse(Some(h), 1000);
        assert_eq!(parse(None, 1000), Full);
        assert_eq!(p("bytes=0-99"), Partial { start: 0, end: 99 });
        assert_eq!(
            p("bytes=100-"),
            Partial {
                start: 100,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-50"),
            Partial {
                start: 950,
                end: 999
            }
        );
        assert_eq!(p("bytes=-5000"), Partial { start: 0, end: 999 });
        assert_eq!(
            p("bytes=990-5000"),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=999-999"),
            Partial {
                start: 999,
                end: 999
            }
        );
        assert_eq!(p(" Bytes = 1 - 2 "), Partial { start: 1, end: 2 });
        assert_eq!(p("items=0-5"), Full);
    }

    #[test]
    fn unsatisfiable_malformed_and_multiple_ranges_are_refused() {
        let p = |h: &str| parse(Some(h), 1000);
        for h in [
            "bytes=1000-",
            "bytes=1000-1001",
            "bytes=-0",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "bytes=abc",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=99999999999999999999999-",
            "bytes",
        ] {
            assert_eq!(p(h), Unsatisfiable, "{h}");
        }
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-1"), 0), Unsatisfiable);
    }

    /// Replays fuzz/corpus/range on every test run, checking what the `range` fuzz target
    /// checks (fuzz/fuzz_targets/range.rs decodes its inputs the same way).
    #[test]
    fn the_fuzz_corpus_resolves_inside_the_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/range");
        let mut inputs = 0;
        for entry in std::fs::read_dir(dir).expect("fuzz/corpus/range exists") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
            let Some((size, header)) = bytes.split_first_chunk::<8>() else {
                continue;
            };
            let size = match u64::from_le_bytes(*size) {
                s if s & 1 == 0 => s % 4096,
                s => s,
            };
            let Ok(header) = std::str::from_utf8(header) else {
                continue;
            };
            if let Partial { start, end } = parse(Some(header), size) {
                assert!(start <= end && end < size, "{header:?} on {size}");
            }
            inputs += 1;
        }
        assert!(
            inputs >= 10,
            "the range corpus is missing ({inputs} inputs)"
        );
    }
}
