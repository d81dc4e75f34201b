//! The file server's `Range` header parser: any header value and file size must give one
//! of the three answers, and a partial one must lie inside the file.
#![no_main]

// The parser is a self-contained module of highway-share; compiling it here keeps the
// fuzz build free of the file server's dependencies (axum, tokio, ...).
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/share/src/transfer/range.rs"]
mod range;

use libfuzzer_sys::fuzz_target;
use range::RangeRequest;

fuzz_target!(|bytes: &[u8]| {
    // First 8 bytes: the file size (small sizes are the interesting ones, so often cut);
    // the rest: the header value, as the server gets it (visible ASCII or UTF-8).
    let Some((size, header)) = bytes.split_first_chunk::<8>() else {
        return;
    };
    let size = match u64::from_le_bytes(*size) {
        s if s & 1 == 0 => s % 4096,
        s => s,
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    for value in [Some(header), None] {
        match range::parse(value, size) {
            RangeRequest::Partial { start, end } => {
                assert!(start <= end, "{value:?} on {size}: {start}..={end}");
                assert!(end < size, "{value:?} on {size}: {start}..={end}");
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }
});
