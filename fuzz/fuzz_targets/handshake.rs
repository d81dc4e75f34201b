//! Handshake frame parsing must never panic, whatever a TCP peer sends.
#![no_main]

use highway_wire::peer::handshake::{Confirm, Hello, Welcome, split_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Some((payload, _))) = split_frame(bytes) {
        let _ = Hello::decode(payload);
        let _ = Welcome::decode(payload);
        let _ = Confirm::decode(payload);
    }
    let _ = Hello::decode(bytes);
    let _ = Welcome::decode(bytes);
    let _ = Confirm::decode(bytes);
});
