//! The peer-to-peer protocol's bytes: UDP datagrams between neighbours (and the few
//! accepted from strangers), and the TCP handshake that links two peers.
//! docs/PROTOCOL.md describes the same layouts in prose.

pub mod codec;
pub mod datagram;
pub mod handshake;
pub mod message;
pub mod reverse;
pub mod search;
pub mod ticket;

pub use codec::DecodeError;
pub use datagram::{Datagram, LinkKey, MAX_DATAGRAM, NotNeighbour, Probe, ProbeAck, decode, seal};
pub use message::{Heartbeat, NeighbourEntry, PeerMsg};
pub use search::{Hit, QueryId, QueryTarget, Relay};

#[cfg(test)]
mod tests;
