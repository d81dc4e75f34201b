//! One neighbour link: its keys, counters, and what we know about the neighbour.

use std::net::SocketAddr;
use std::time::Instant;

use highway_wire::peer::handshake::LinkKeys;
use highway_wire::peer::{NeighbourEntry, PeerMsg, seal};
use highway_wire::{NodeId, PeerAddr};

/// The failure detector's view of a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Okay,
    /// Nothing heard within the suspect timeout; probes `probe_id` are out until `deadline`.
    Warning {
        probe_id: u64,
        since: Instant,
        deadline: Instant,
    },
}

impl LinkState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Okay => "okay",
            Self::Warning { .. } => "warning",
        }
    }
}

/// Accepts each counter value once, tolerating reordering within a 64-wide window.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// True (and remembered) when `counter` was not seen before and is not too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let age = self.highest - counter;
        if age >= 64 || self.seen & (1 << age) != 0 {
            return false;
        }
        self.seen |= 1 << age;
        true
    }
}

#[derive(Debug, Clone)]
pub struct Link {
    pub id: NodeId,
    /// The address the neighbour published (in its hello, or the one we dialled).
    pub addr: PeerAddr,
    /// The neighbour can be dialled at `addr` (it is not behind a NAT).
    pub dialable: bool,
    /// Where datagrams to the neighbour go: the source of its last authenticated
    /// datagram, else (a link we dialled) its published UDP address. Traffic is only ever
    /// aimed where the neighbour proved it is: an inbound link has no path until the
    /// initiator speaks, so a hello cannot point our heartbeats at a third party.
    pub path: Option<SocketAddr>,
    /// An authenticated datagram arrived on this link.
    pub heard: bool,
    /// The TCP connection its datagrams travel over (`path` is its remote address);
    /// `None`: over UDP.
    pub conn: Option<crate::ConnId>,
    /// How the neighbour sees our UDP socket (echoed in its heartbeat acks).
    pub observed_me: Option<SocketAddr>,
    /// Reverse requests it may still make this heartbeat interval.
    pub reverse_budget: u32,
    /// Our id for this link: datagrams to us carry it.
    pub my_link_id: u64,
    /// The neighbour's id for this link: datagrams we send carry it.
    pub their_link_id: u64,
    pub keys: LinkKeys,
    pub initiated_by_me: bool,
    pub send_counter: u64,
    pub window: ReplayWindow,
    pub state: LinkState,
    pub since: Instant,
    pub last_heard: Instant,
    pub sent_seq: u64,
    pub last_acked_seq: u64,
    pub last_acked_at: Option<Instant>,
    pub their_neighbours: Vec<NeighbourEntry>,
    pub their_incarnation: u64,
    pub their_summary_version: u64,
    /// The neighbour's share summary and query budget.
    pub(crate) search: crate::search::LinkSearch,
}

impl Link {
    /// Seals `msg` for this link, advancing the send counter.
    pub fn seal(&mut self, msg: &PeerMsg) -> Vec<u8> {
        self.send_counter += 1;
        seal(self.their_link_id, self.send_counter, msg, &self.keys.send)
    }

    /// Which peer's handshake made this link: when two links to one peer exist, both
    /// sides keep the one the smaller id initiated.
    pub fn initiator(&self, me: &NodeId) -> NodeId {
        if self.initiated_by_me { *me } else { self.id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_accepts_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(5));
        assert!(w.accept(3), "reordered within the window");
        assert!(!w.accept(3));
        assert!(w.accept(100));
        assert!(!w.accept(36), "too old");
        assert!(w.accept(37));
        assert!(!w.accept(5));
    }
}
