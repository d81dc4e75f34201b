//! What the node runtime (`crates/node`) does around the core, mirrored here so a simulated
//! peer behaves like a deployed one. These figures are the node's; keep them in step.

use std::time::Duration;

/// Candidates asked for in a join (`node/src/gatekeeper.rs`, `WANT_CANDIDATES`).
pub const WANT_CANDIDATES: u16 = 8;
/// Shortest gap between two timer wake-ups (`node/src/owner.rs`, `MIN_TIMER_GAP`).
pub const MIN_TIMER_GAP: Duration = Duration::from_millis(5);
/// A Gatekeeper call that gets no answer fails after the client's 2 s timeout, a 100 ms
/// backoff and one more 2 s attempt (`node/src/gatekeeper.rs`, `client_config`).
pub const GATEKEEPER_GIVE_UP: Duration = Duration::from_millis(4_100);
/// First retransmission timeout of a TCP SYN (RFC 6298); doubles on each loss.
pub const SYN_RTO: Duration = Duration::from_secs(1);
/// Retransmission timeout of a handshake frame (Linux's minimum RTO); doubles on each loss.
pub const DATA_RTO: Duration = Duration::from_millis(200);
