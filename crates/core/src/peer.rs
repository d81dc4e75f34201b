//! The peer: one state machine per process, driven by `handle_*` and drained by `poll_*`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use highway_wire::peer::datagram::{self, Datagram, MIN_LINK_LEN};
use highway_wire::peer::{NeighbourEntry, NotNeighbour, PeerMsg};
use highway_wire::{NodeId, PeerAddr};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::api::{Command, Event, NeighbourView, Stats, Transmit};
use crate::config::Config;
use crate::conns::{Conns, MAX_EARLY_DATAGRAMS};
use crate::detector::WitnessRequest;
use crate::link::Link;
use crate::overlay::Overlay;
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
#[derive(Debug)]
pub struct Peer {
    pub(crate) config: Config,
    pub(crate) key: SigningKey,
    pub(crate) id: NodeId,
    pub(crate) addr: PeerAddr,
    /// Others can dial `addr` (the Gatekeeper's verdict; false behind a NAT).
    pub(crate) dialable: bool,
    /// Some link ever carried an authenticated datagram to us.
    pub(crate) heard_on_a_link: bool,
    /// Links came up and never carried a datagram: from now on this peer's links travel
    /// over their TCP connection (see [`crate::LinkUp::stream`]).
    pub(crate) udp_blocked: bool,
    pub(crate) rng: SmallRng,
    pub(crate) phase: Phase,
    pub(crate) links: HashMap<NodeId, Link>,
    pub(crate) by_link_id: HashMap<u64, NodeId>,
    pub(crate) overlay: Overlay,
    pub(crate) incarnation: u64,
    pub(crate) summary_version: u64,
    /// A timer was set earlier without any output to show for it (see
    /// [`Peer::take_quiet_timer`]).
    pub(crate) quiet_timer: bool,
    pub(crate) next_heartbeat: Instant,
    pub(crate) witness_requests: HashMap<u64, WitnessRequest>,
    pub(crate) stranger_budget: u32,
    pub(crate) last_refute: Option<Instant>,
    pub(crate) search: SearchState,
    pub(crate) conns: Conns,
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
        let stranger_budget = config.stranger_replies_per_interval;
        Self {
            overlay: Overlay::new(&config),
            next_heartbeat: now + config.heartbeat_interval,
            config,
            key,
            id,
            addr,
            dialable: true,
            heard_on_a_link: false,
            udp_blocked: false,
            rng: SmallRng::seed_from_u64(rng_seed),
            phase: Phase::Idle,
            links: HashMap::new(),
            by_link_id: HashMap::new(),
            incarnation: 0,
            summary_version: 0,
            quiet_timer: false,
            witness_requests: HashMap::new(),
            stranger_budget,
            last_refute: None,
            search: SearchState::default(),
            conns: Conns::default(),
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

    /// Neighbours that can be dialled: what `max_degree` bounds, and what the peer
    /// announces to the Gatekeeper (against `max_degree` as its capacity). Neighbours
    /// behind NATs have `undialable_slots` of their own.
    pub fn dialable_degree(&self) -> usize {
        self.dialable_links()
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

    /// Feeds one received datagram. Anything malformed, forged or replayed is counted
    /// and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        if self.phase == Phase::Left {
            return;
        }
        let frame = match datagram::decode(bytes) {
            Ok(frame) => frame,
            Err(_) => {
                self.stats.decode_errors += 1;
                return;
            }
        };
        match frame {
            Datagram::Link(frame) => {
                let Some(&peer) = self.by_link_id.get(&frame.link_id) else {
                    if let Some(pending) = self.overlay.pending_out.get_mut(&frame.link_id) {
                        // Our dial's link is up on the other side already; ours follows
                        // in a moment (with "established"): held until then. Not a
                        // stranger: no "not your neighbour".
                        if pending.early.len() < MAX_EARLY_DATAGRAMS {
                            self.stats.early_link_datagrams += 1;
                            pending.early.push((from, bytes.to_vec()));
                        } else {
                            self.stats.early_link_dropped += 1;
                        }
                        return;
                    }
                    self.unknown_link(from, frame.link_id, bytes.len());
                    return;
                };
                let Some(link) = self.links.get_mut(&peer) else {
                    return;
                };
                let msg = match frame.open(&link.keys.recv) {
                    Ok(msg) => msg,
                    Err(highway_wire::peer::DecodeError::BadTag) => {
                        self.stats.bad_tags += 1;
                        return;
                    }
                    Err(_) => {
                        self.stats.decode_errors += 1;
                        return;
                    }
                };
                if !link.window.accept(frame.counter) {
                    self.stats.replays += 1;
                    return;
                }
                // Authenticated and fresh: the neighbour is at `from`, whatever its hello
                // said (behind a NAT this is its mapping). Replies go there from now on.
                if link.path.is_some_and(|p| p != from) {
                    self.stats.link_path_changes += 1;
                }
                link.path = Some(from);
                link.heard = true;
                self.heard_on_a_link = true;
                self.heard_from(now, peer);
                self.on_link_message(now, peer, msg);
            }
            Datagram::Probe(probe) => self.on_stranger_probe(now, from, probe),
            Datagram::ProbeAck(ack) => self.on_probe_ack(ack),
            Datagram::NotNeighbour(nn) => self.on_not_neighbour(now, nn),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        if now >= self.next_heartbeat {
            let interval = self.config.heartbeat_interval;
            // Woken late, skip the missed rounds: one catch-up round, not a burst.
            self.next_heartbeat += interval;
            if self.next_heartbeat <= now {
                self.next_heartbeat = now + interval;
            }
            self.stranger_budget = self.config.stranger_replies_per_interval;
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
                    self.next_heartbeat = now + self.config.heartbeat_interval;
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
        let mut next = self.next_heartbeat;
        for link in self.links.values() {
            next = next.min(self.link_deadline(link));
        }
        for req in self.witness_requests.values() {
            next = next.min(req.deadline);
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

    /// Spends one unit of the per-interval budget for answering strangers.
    pub(crate) fn stranger_reply_allowed(&mut self) -> bool {
        if self.stranger_budget == 0 {
            self.stats.stranger_dropped += 1;
            return false;
        }
        self.stranger_budget -= 1;
        self.stats.stranger_replies += 1;
        true
    }

    /// Link traffic for a link we do not have: tell the sender, signed, so it drops its
    /// half — but only when the datagram is at least as large as the answer.
    fn unknown_link(&mut self, from: SocketAddr, link_id: u64, len: usize) {
        self.stats.unknown_links += 1;
        if len < MIN_LINK_LEN || !self.stranger_reply_allowed() {
            return;
        }
        let nn = NotNeighbour::sign(&self.key, link_id);
        self.transmit(from, Datagram::NotNeighbour(nn).encode());
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
