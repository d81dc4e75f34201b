//! Share summaries arrive from neighbours as chunks: neither the payload decoder nor the
//! assembler may panic, and whatever decodes must survive a re-encode unchanged.
#![no_main]

#[path = "../checks/summary.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| checks::summary_input(bytes));
