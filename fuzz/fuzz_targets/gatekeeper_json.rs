//! Gatekeeper JSON bodies: requests arrive from anyone, answers from a Gatekeeper that may
//! be hostile or an impostor. Parsing and validating must never panic, and whatever
//! parses must serialise and parse back to the same value.
#![no_main]

#[path = "../checks/gatekeeper_json.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    checks::json_input(bytes);
});
