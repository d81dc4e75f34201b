//! Highway's shared vocabulary: identifiers, peer addresses and the messages that cross
//! process boundaries.
//!
//! This crate does no I/O and never panics on input: every parser returns a typed error.
//! The Gatekeeper's HTTP/JSON API types live in [`gatekeeper`]; the peer-to-peer datagram
//! codec joins them when the overlay is built.

pub mod addr;
pub mod gatekeeper;
pub mod id;
pub mod peer;
pub mod summary;
pub mod tokenize;

pub use addr::{AddrError, PeerAddr, check_dialable_ip};
pub use id::{ContentId, IdParseError, NodeId};
