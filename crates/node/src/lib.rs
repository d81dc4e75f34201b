//! Highway's node runtime: the tokio tasks around the sans-IO core.
//!
//! One node has one UDP socket and one TCP listener on its bind address (so dozens of
//! peers fit on the 127.0.0.x addresses of one machine), a persistent identity key in its
//! data directory, a Gatekeeper client, and a local control API on a loopback address.
//!
//! Tasks, each owning its state and talking through bounded channels:
//! - the **owner** (`owner.rs`) owns the core `Peer`: UDP datagrams, the core's timer
//!   and messages from the other tasks go in; datagrams go out on the socket and events
//!   become work for the tasks below;
//! - **connections** (`conns.rs`): an accept loop for inbound TCP connections and one
//!   task per connection, moving the bytes the core's handshakes and TCP-carried links
//!   read and write;
//! - **Gatekeeper** calls (`gatekeeper.rs`): joins when the core asks, failure reports,
//!   a status every interval, and the leave;
//! - the **control API** ([`control`]): `GET /v1/status`, `GET /v1/neighbors`,
//!   `POST /v1/leave`, shares, searches, downloads (`downloads/`, with their queue across
//!   restarts) and tickets; every call needs the bearer token
//!   the node writes for its OS user at start ([`token`]).
//!
//! Start one with [`start`] (tests run several in one process), or with [`run`] until a
//! shutdown future completes.

pub mod config;
pub mod confine;
mod conns;
pub mod control;
mod control_auth;
mod control_share;
mod downloads;
mod gatekeeper;
pub mod identity;
mod metric_help;
pub mod metrics;
mod node;
pub mod out_name;
mod owner;
pub mod reach_view;
pub mod relay;
mod relay_http;
mod reverse_serve;
mod searches;
mod sharing;
mod sources;
mod tickets;
pub mod token;
pub mod views;

pub use config::NodeConfig;
pub use control::{LeaveView, NeighbourJson, RuntimeStats, StatsView, StatusView};
pub use node::{NodeError, NodeEvent, NodeHandle, run, start};
