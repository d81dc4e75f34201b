//! The peer: one state machine per process, driven by `handle_*` and drained by `poll_*`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use highway_wire::peer::{NeighbourEntry, PeerMsg};
use highway_wire::{NodeId, PeerAddr};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::api::{Command, Event, NeighbourView, Stats, Transmit};
use crate::config::Config;
use crate::conns::Conns;
use crate::detector::Detector;
use crate::link::Link;
use crate::overlay::Overlay;
use crate::reachability::Reach;
use crate::search::SearchState;

/// Most datagrams waiting in [`Peer::poll_transmit`]'s queue; past it new ones are dropped
/// (and counted in [`Stats::queue_overflows`]).
pub const MAX_TRANSMITS: usize = 4096;
/// Most events waiting in [`Peer::poll_event`]'s queue; past it new ones are dropped (and
/// counted in [`Stats::queue_overflows`]).
pub const MAX_EVENTS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created; waiting for [`Command::Join`].
    Idle,
    Running,
    /// Left the overlay; everything further is ignored.
    Left,
}

/// A Highway peer's protocol logic. It never reads a clock, opens a socket or spawns a
/// task: time comes in as `now`, randomness from the seed it was built with.
///
/// Its parts own their state — the overlay (joining, repair), the detector (heartbeats,
/// suspicion, witnesses), search, the connections (dialing), and what the peer knows of
/// its own reachability — and share the identity, the links, the counters and the output
/// queues kept here. `dispatch.rs` hands each input to the part it concerns.
#[derive(Debug)]
pub struct Peer {
    pub(crate) config: Config,
    pub(crate) key: SigningKey,
    pub(crate) id: NodeId,
    pub(crate) addr: PeerAddr,
    /// Others can dial `addr` (the Gatekeeper's verdict; false behind a NAT).
    pub(crate) dialable: bool,
    pub(crate) rng: SmallRng,
    pub(crate) phase: Phase,
    pub(crate) links: HashMap<NodeId, Link>,
    pub(crate) by_link_id: HashMap<u64, NodeId>,
    /// The share summary version announced in heartbeats.
    pub(crate) summary_version: u64,
    /// A timer was set earlier without any output to show for it (see
    /// [`Peer::take_quiet_timer`]).
    pub(crate) quiet_timer: bool,
    pub(crate) overlay: Overlay,
    pub(crate) detector: Detector,
    pub(crate) search: SearchState,
    pub(crate) conns: Conns,
    pub(crate) reach: Reach,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

impl Peer {
    /// A peer with identity `key`, reachable at `addr`. Call
    /// [`Peer::handle_command`]`(`[`Command::Join`]`)` to start.
    pub fn new(
        config: Config,
        key: SigningKey,
        addr: PeerAddr,
        rng_seed: u64,
        now: Instant,
    ) -> Self {
        let id = NodeId::from_key(&key.verifying_key());
        Self {
            overlay: Overlay::new(&config),
            detector: Detector::new(&config, now),
            config,
            key,
            id,
            addr,
            dialable: true,
            rng: SmallRng::seed_from_u64(rng_seed),
            phase: Phase::Idle,
            links: HashMap::new(),
            by_link_id: HashMap::new(),
            summary_version: 0,
            quiet_timer: false,
            search: SearchState::default(),
            conns: Conns::default(),
            reach: Reach::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn addr(&self) -> PeerAddr {
        self.addr
    }

    /// Whether others can dial this peer at [`Peer::addr`]. A peer behind a NAT says so
    /// in its hellos; it then links only by dialling out, and others never dial it.
    pub fn set_dialable(&mut self, dialable: bool) {
        self.dialable = dialable;
    }

    pub fn dialable(&self) -> bool {
        self.dialable
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn degree(&self) -> usize {
        self.links.len()
    }

    /// Neighbours that can be dialled (all of them, for a peer behind a NAT): what
    /// `max_degree` bounds, and what the peer announces to the Gatekeeper (against
    /// `max_degree` as its capacity). Neighbours behind NATs have `undialable_slots` of
    /// their own.
    pub fn dialable_degree(&self) -> usize {
        self.links.values().filter(|l| l.dialable).count()
    }

    /// The most neighbours this peer takes: `max_degree` that can be dialled, plus
    /// `undialable_slots` behind NATs.
    pub fn capacity(&self) -> usize {
        self.config.max_degree + self.config.undialable_slots
    }

    /// Sets the share summary version announced in heartbeats (0: no summary).
    pub fn set_summary_version(&mut self, version: u64) {
        self.summary_version = version;
    }

    /// The current neighbours, for status displays and the Gatekeeper.
    pub fn neighbours(&self, now: Instant) -> Vec<NeighbourView> {
        let mut out: Vec<NeighbourView> = self
            .links
            .values()
            .map(|l| NeighbourView {
                id: l.id,
                addr: l.addr,
                udp_path: l.path,
                dialable: l.dialable,
                over_tcp: l.conn.is_some(),
                observed_me: l.observed_me,
                state: l.state.name(),
                inbound: !l.initiated_by_me,
                linked_for: now.saturating_duration_since(l.since),
                last_heard_ago: now.saturating_duration_since(l.last_heard),
                sent_seq: l.sent_seq,
                last_acked_seq: l.last_acked_seq,
                incarnation: l.their_incarnation,
                summary_version: l.their_summary_version,
                their_neighbours: l.their_neighbours.iter().map(|e| e.id).collect(),
            })
            .collect();
        out.sort_by_key(|n| n.id);
        out
    }

    /// Our id for the link with `peer` and its keys: for tests and tools that read a
    /// link's traffic. Running a peer never needs them.
    pub fn link_keys(
        &self,
        peer: &NodeId,
    ) -> Option<(u64, &highway_wire::peer::handshake::LinkKeys)> {
        self.links.get(peer).map(|l| (l.my_link_id, &l.keys))
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        if self.detector.round_due(&self.config, now) {
            self.refill_summary_budgets();
            self.refill_reverse_budgets();
            self.send_heartbeats();
        }
        self.expire_routes(now);
        self.check_neighbours(now);
        self.expire_witness_requests(now);
        self.expire_conns(now);
        self.expire_handshakes(now);
        self.maintain(now);
    }

    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Join => {
                if self.phase == Phase::Idle {
                    self.phase = Phase::Running;
                    self.detector.next_heartbeat = now + self.config.heartbeat_interval;
                    self.maintain(now);
                }
            }
            Command::Candidates(candidates) => self.on_candidates(now, candidates),
            Command::GatekeeperFailed => self.on_gatekeeper_failed(now),
            Command::Leave => self.leave(),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(t)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True (once) when, since the last call, the peer moved its next wake-up earlier
    /// while handling input that produced no datagram and no event. A runtime that reads
    /// [`Peer::poll_timeout`] after every input never needs this; one that skips it after
    /// silent input (the simulator) must ask. Today only a route entering its closing
    /// grace does it.
    pub fn take_quiet_timer(&mut self) -> bool {
        std::mem::take(&mut self.quiet_timer)
    }

    /// The next instant [`Peer::handle_timeout`] has work to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Running {
            return None;
        }
        let mut next = self.detector.next_wakeup();
        for link in self.links.values() {
            next = next.min(self.link_deadline(link));
        }
        if let Some(at) = self.overlay.next_wakeup(&self.config) {
            next = next.min(at);
        }
        if let Some(at) = self.next_route_deadline() {
            next = next.min(at);
        }
        if let Some(at) = self.conns.next_deadline() {
            next = next.min(at);
        }
        Some(next)
    }

    pub(crate) fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.queue_overflows += 1;
            return;
        }
        self.events.push_back(event);
    }

    pub(crate) fn transmit(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.queue_overflows += 1;
            return;
        }
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// Seals and queues `msg` to linked neighbour `peer`.
    pub(crate) fn send(&mut self, peer: &NodeId, msg: &PeerMsg) {
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        let Some(to) = link.path else {
            self.stats.sends_without_path += 1;
            return;
        };
        let bytes = link.seal(msg);
        match link.conn {
            Some(conn) => self.write_carried(conn, &bytes),
            None => self.transmit(to, bytes),
        }
    }

    /// Our other neighbours, for a heartbeat to `except`.
    pub(crate) fn neighbour_entries(&self, except: Option<&NodeId>) -> Vec<NeighbourEntry> {
        let mut out: Vec<NeighbourEntry> = self
            .links
            .values()
            .filter(|l| Some(&l.id) != except)
            .map(|l| NeighbourEntry {
                id: l.id,
                addr: l.addr,
                dialable: l.dialable,
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }

    /// Our neighbours in id order: iterating `links` directly would follow the
    /// `HashMap`'s random order and make the output differ from run to run.
    pub(crate) fn link_peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self.links.keys().copied().collect();
        peers.sort_unstable();
        peers
    }

    pub(crate) fn fresh_id(&mut self) -> u64 {
        loop {
            let id: u64 = self.rng.random();
            if id != 0 && !self.by_link_id.contains_key(&id) && !self.overlay.uses_link_id(id) {
                return id;
            }
        }
    }
}
