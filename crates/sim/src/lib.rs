//! A deterministic discrete-event simulator of Highway overlays.
//!
//! It runs the real `highway_core::Peer` state machine — not a model of it — for thousands
//! of peers over a modelled network, in virtual time, so we can measure what the protocol
//! does at scale and under faults.
//!
//! Goals:
//! - the same code as production: the core, the handshake crypto of `highway_wire`, the
//!   Gatekeeper's registry (`highway_gatekeeper`'s embedded store), and what the node
//!   runtime does around them (timers, held datagrams, handshake and dial limits, the
//!   status loop), mirrored step by step;
//! - determinism: one seed fixes the run bit for bit (ChaCha8 streams derived from it, ties
//!   broken by insertion order, nothing iterated in hash order), on one thread or two;
//! - speed: work proportional to events, never a scan of every peer per tick, and two
//!   shards run side by side, so 10,000 peers run ten virtual minutes in about 1½ minutes
//!   on two cores (docs/SCALE.md).
//!
//! Non-goals: real sockets, wall-clock time, bandwidth or CPU limits, NAT.
//!
//! The flow of a run:
//! 1. a scenario builds a [`Sim`] from [`SimParams`] (seed, core and Gatekeeper
//!    configuration, latency model, loss) and adds hosts ([`Sim::add_host`]);
//! 2. it schedules joins and faults and advances time with [`Sim::run_until`], which
//!    pops actions in time order and feeds them to the peers they concern;
//! 3. between steps it reads the overlay ([`graph::Graph`], [`Sim::drain_membership`],
//!    [`Sim::drain_app_events`]) and writes a [`report::Report`].
//!
//! The scenarios behind `highway sim` live in [`scenario`].

mod agenda;
pub mod clock;
mod gatekeeper;
pub mod graph;
mod host;
pub mod network;
pub mod report;
mod runtime;
pub mod scenario;
mod sim;

pub use clock::SimTime;
pub use gatekeeper::GatekeeperStats;
pub use host::Life;
pub use network::LatencyModel;
pub use sim::{AppEvent, Change, ChurnParams, Membership, Sim, SimParams, SimStats};

/// One simulated machine. Its address (10.0.0.0 + id + 1) and identity stay the same
/// across restarts; a new peer arriving later gets a new host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub u32);

impl HostId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn from_index(i: usize) -> Self {
        Self(u32::try_from(i).expect("fewer than 2^32 hosts"))
    }
}
