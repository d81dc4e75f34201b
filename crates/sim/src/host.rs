//! One simulated machine: the core `Peer` and the runtime state a node keeps around it
//! (timer, TCP connections, the Gatekeeper client's lease).

use highway_wire::NodeId;

use crate::HostId;
use crate::clock::SimTime;
use crate::gatekeeper::HeldLease;

/// Whether the peer's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Up,
    /// The machine is gone: it answers nothing, not even a TCP reset.
    Crashed,
    /// The process left and exited; the machine still refuses TCP connections at once.
    Exited,
}

/// What the Gatekeeper client of one process holds.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub lease: Option<HeldLease>,
    /// Last signed timestamp used (the client never reuses one).
    pub last_ts_ms: u64,
    /// The status loop runs (it starts with the first successful join).
    pub status_loop: bool,
}

#[derive(Debug)]
pub(crate) struct Host {
    pub peer: highway_core::Peer,
    /// The identity key's seed: a restart keeps the identity.
    pub key_seed: [u8; 32],
    pub life: Life,
    /// Bumped at every crash, exit and restart, so what was scheduled for an earlier
    /// process of this host is recognised and ignored.
    pub epoch: u32,
    /// The earliest wake-up on the agenda for this process.
    pub timer: Option<SimTime>,
    pub last_wake: Option<SimTime>,
    /// Neighbours as the peer's NeighbourUp/NeighbourDown events describe them.
    pub links: Vec<(NodeId, HostId)>,
    /// The core's TCP connections (handshakes, TCP-carried links).
    pub conns: std::collections::HashMap<highway_core::ConnId, crate::sim::conns::SimConn>,
    pub session: Session,
    /// When this process started (joined or restarted).
    pub started: SimTime,
    /// Its NAT's mappings, when it is behind one.
    pub nat: Option<crate::sim::Mappings>,
}

impl Host {
    pub fn is_up(&self) -> bool {
        self.life == Life::Up
    }
}
