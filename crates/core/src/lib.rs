//! Highway's peer protocol logic as a sans-IO state machine.
//!
//! Like quinn-proto, it contains no networking code and reads no clock: the runtime (or
//! the simulator) feeds it datagrams, command results and the current time through
//! `handle_*`, and drains datagrams to send, events and the next wake-up time through
//! `poll_*`. Randomness comes from a seeded RNG. Every table and queue is bounded.
//!
//! It implements joining (Gatekeeper candidates, then a bounded breadth-first search past
//! full peers), the neighbour handshake decisions, heartbeats carrying neighbour lists and
//! the share-summary version, what neighbours observe of our address (NAT class), SWIM-style failure detection with indirect probes and
//! refutation, "not your neighbour", repair, and graceful leave.

mod api;
mod config;
mod conns;
mod detector;
mod dials;
mod dispatch;
mod link;
mod overlay;
mod peer;
mod reachability;
mod reverse;
mod search;

pub use api::{Command, DownReason, Event, NeighbourView, Stats, Transmit};
pub use config::{Config, ConfigError};
pub use conns::{ConnId, ConnIo, MAX_CONN_IO, MAX_EARLY_DATAGRAMS};
pub use dials::source_bucket;
pub use link::{LinkState, ReplayWindow};
pub use peer::{MAX_EVENTS, MAX_TRANSMITS, Peer, Phase};
pub use reachability::{NatClass, Observation, Reachability, classify};
pub use reverse::ReverseError;
pub use search::{Catalog, LocalFile, SearchError, SearchRequest};
