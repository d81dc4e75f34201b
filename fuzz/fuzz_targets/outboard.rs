//! The downloader's check of what a holder serves: the outboard (validated against the
//! content id before use) and the file's bytes (verified group by group). A holder is
//! hostile: an honest outboard must verify, a flipped bit anywhere must be caught, and
//! arbitrary bytes must never panic. The checks live beside the verifier
//! (`check_fuzz_input`), which also replays this target's corpus in its tests.
#![no_main]

// The verifier is a self-contained module of highway-share; compiling it here keeps the
// fuzz build free of the file server's dependencies (axum, tokio, ...).
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/share/src/transfer/verify.rs"]
mod verify;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    verify::check_fuzz_input(bytes);
});
