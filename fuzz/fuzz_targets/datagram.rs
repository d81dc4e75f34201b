//! Datagram decoding must never panic, whatever arrives on the UDP socket.
#![no_main]

use highway_wire::peer::{Datagram, PeerMsg, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Datagram::Link(frame)) = decode(bytes) {
        // A wrong key must fail cleanly; the message decoder must survive any body.
        let _ = frame.open(&[0u8; 32]);
    }
    let _ = PeerMsg::decode(bytes);
    let _ = PeerMsg::decode_padded(bytes);
});
