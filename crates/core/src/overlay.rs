//! Joining and keeping the overlay: candidates from the Gatekeeper, a bounded breadth-first
//! search past full peers, handshake bookkeeping, and repair after a neighbour is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use highway_wire::peer::NeighbourEntry;
use highway_wire::peer::handshake::{
    Decision, HandshakeError, Hello, Initiator, Purpose, Responder,
};
use highway_wire::{NodeId, PeerAddr};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::api::{ConnectOutcome, DownReason, Event, LinkUp};
use crate::config::Config;
use crate::dials::{DialBackoff, source_bucket};
use crate::link::{Link, LinkState, ReplayWindow};
use crate::peer::{Peer, Phase};

/// Most peers kept out of reach after failing.
const MAX_QUARANTINE: usize = 64;
/// Most entries waiting in the search frontier.
const MAX_FRONTIER: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct PendingOut {
    pub expected: Option<NodeId>,
    /// Where we dialled: backs off if the dial goes unanswered.
    pub addr: PeerAddr,
    pub since: Instant,
    /// Link datagrams that arrived before "established" (source, bytes), read once the
    /// link is installed; at most [`crate::MAX_EARLY_DATAGRAMS`].
    pub early: Vec<(std::net::SocketAddr, Vec<u8>)>,
}

/// An inbound handshake we accepted, waiting for the initiator's confirm.
#[derive(Debug, Clone)]
pub(crate) struct PendingIn {
    pub since: Instant,
    /// The connection's source, as [`source_bucket`] counts it.
    pub source: IpAddr,
}

/// Join and repair state: what we are trying, and what to try next.
#[derive(Debug)]
pub(crate) struct Overlay {
    pub pending_out: HashMap<u64, PendingOut>,
    /// Inbound handshakes we accepted, by our link id. They hold no slot: a link counts
    /// toward `max_degree` only once confirmed (see [`Peer::answer_hello`]).
    pub pending_in: HashMap<u64, PendingIn>,
    /// The search frontier: peers to try, nearest first.
    pub frontier: VecDeque<NeighbourEntry>,
    /// Peers tried since the Gatekeeper was last asked (bounded by `bfs_limit`).
    pub tried: HashSet<NodeId>,
    pub gatekeeper_pending: bool,
    pub next_gatekeeper_at: Option<Instant>,
    pub backoff: Duration,
    pub quarantine: VecDeque<(NodeId, Instant)>,
    /// When to look for one more neighbour (see [`Config::refresh_interval`]).
    pub next_refresh: Option<Instant>,
    /// The Gatekeeper was asked for that one more neighbour.
    pub refreshing: bool,
    /// Addresses whose dial went unanswered, backing off.
    pub dial_backoff: DialBackoff,
}

impl Overlay {
    pub fn new(config: &Config) -> Self {
        Self {
            pending_out: HashMap::new(),
            pending_in: HashMap::new(),
            frontier: VecDeque::new(),
            tried: HashSet::new(),
            gatekeeper_pending: false,
            next_gatekeeper_at: None,
            backoff: config.join_backoff_min,
            quarantine: VecDeque::new(),
            next_refresh: None,
            refreshing: false,
            dial_backoff: DialBackoff::new(
                config.max_dial_failures,
                config.dial_backoff_min,
                config.dial_backoff_max,
            ),
        }
    }

    pub fn uses_link_id(&self, id: u64) -> bool {
        self.pending_out.contains_key(&id) || self.pending_in.contains_key(&id)
    }

    pub fn next_wakeup(&self, config: &Config) -> Option<Instant> {
        // Only while the search is idle: with dials in flight or candidates queued,
        // `maintain` does not ask, and a past instant here would make the host spin.
        let idle = self.frontier.is_empty() && self.pending_out.is_empty();
        let gatekeeper = self
            .next_gatekeeper_at
            .filter(|_| idle && !self.gatekeeper_pending);
        let handshakes = self
            .pending_out
            .values()
            .map(|p| p.since + config.handshake_timeout * 2)
            .chain(
                self.pending_in
                    .values()
                    .map(|p| p.since + config.handshake_timeout),
            );
        gatekeeper.into_iter().chain(handshakes).min()
    }

    fn quarantined(&self, id: &NodeId) -> bool {
        self.quarantine.iter().any(|(q, _)| q == id)
    }
}

/// How we answer a peer that opened a handshake with us.
#[derive(Debug)]
pub(crate) struct InboundAnswer {
    /// Present when a link was accepted: finish it with the initiator's confirm.
    pub responder: Option<Responder>,
    /// The framed welcome to write.
    pub welcome: Vec<u8>,
    pub my_link_id: u64,
    pub initiator_addr: PeerAddr,
    /// The initiator said it can be dialled and connected from the address it names
    /// (pass on in [`crate::LinkUp::dialable`]).
    pub initiator_dialable: bool,
    /// The initiator asks to carry the link over this connection (keep it open).
    pub stream: bool,
}

impl Peer {
    fn worth_dialling(&self, id: &NodeId) -> bool {
        *id != self.id
            && !self.links.contains_key(id)
            && !self
                .overlay
                .pending_out
                .values()
                .any(|p| p.expected.as_ref() == Some(id))
            && !self.overlay.quarantined(id)
    }

    /// True when `addr` may be dialled now: it names a dialable address and is not
    /// backing off after an unanswered dial. Counts the refusals.
    fn address_dialable(&mut self, now: Instant, addr: &PeerAddr) -> bool {
        if addr.validate().is_err() {
            self.stats.dials_refused_address += 1;
            return false;
        }
        if self.overlay.dial_backoff.blocked(now, addr.tcp_addr()) {
            self.stats.dials_skipped_backoff += 1;
            return false;
        }
        true
    }

    /// Adds search candidates at the back (breadth-first) or front (repair first).
    /// Repair candidates skip the search bound and the "tried" set: a peer tried during
    /// the join (full, or not yet running then) is exactly who to try after a loss.
    fn enqueue(&mut self, now: Instant, entries: Vec<NeighbourEntry>, front: bool) {
        for entry in entries {
            if !entry.dialable {
                // Behind a NAT: it links by dialling out; a dial to it cannot arrive.
                self.stats.dials_skipped_undialable += 1;
                continue;
            }
            if !self.worth_dialling(&entry.id) || !self.address_dialable(now, &entry.addr) {
                continue;
            }
            if front {
                self.overlay.frontier.retain(|e| e.id != entry.id);
                self.overlay.tried.insert(entry.id);
            } else if self.overlay.frontier.iter().any(|e| e.id == entry.id)
                || self.overlay.tried.len() >= self.config.bfs_limit
                || !self.overlay.tried.insert(entry.id)
            {
                continue;
            }
            if self.overlay.frontier.len() >= MAX_FRONTIER {
                self.overlay.frontier.pop_back();
            }
            if front {
                self.overlay.frontier.push_front(entry);
            } else {
                self.overlay.frontier.push_back(entry);
            }
        }
    }

    /// Dials from the frontier while below the target degree; asks the Gatekeeper when
    /// the frontier is exhausted.
    pub(crate) fn maintain(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        while self
            .overlay
            .quarantine
            .front()
            .is_some_and(|&(_, until)| until <= now)
        {
            self.overlay.quarantine.pop_front();
        }
        // Neighbours behind NATs do not count: a dialable peer keeps linking with other
        // dialable peers, which hold the overlay together.
        let target = self.config.target_degree;
        if self.dialable_degree() >= target {
            self.overlay.backoff = self.config.join_backoff_min;
            self.overlay.next_gatekeeper_at = None;
            self.refresh(now);
            return;
        }
        while self.dialable_degree() + self.overlay.pending_out.len() < target
            && self.overlay.pending_out.len() < self.config.max_pending_links
        {
            let Some(entry) = self.overlay.frontier.pop_front() else {
                break;
            };
            // Checked again: the address may have failed since it was queued.
            if self.worth_dialling(&entry.id) && self.address_dialable(now, &entry.addr) {
                self.connect(now, entry.addr, Some(entry.id));
            }
        }
        let idle = self.overlay.frontier.is_empty() && self.overlay.pending_out.is_empty();
        let due = self.overlay.next_gatekeeper_at.is_none_or(|at| now >= at);
        if idle && due && !self.overlay.gatekeeper_pending {
            self.overlay.gatekeeper_pending = true;
            self.emit(Event::GatekeeperJoin);
        }
    }

    /// Every refresh interval, a peer at its target degree with two or more free slots
    /// asks the Gatekeeper for candidates and dials one. Checked on every `maintain`,
    /// which runs at least once per heartbeat interval while the peer has neighbours.
    fn refresh(&mut self, now: Instant) {
        let interval = self.config.refresh_interval;
        let Some(due) = self.overlay.next_refresh else {
            self.overlay.next_refresh =
                Some(now + interval.mul_f64(self.rng.random_range(0.5..1.5)));
            return;
        };
        if now < due {
            return;
        }
        self.overlay.next_refresh = Some(now + interval.mul_f64(self.rng.random_range(0.5..1.5)));
        let room =
            self.dialable_degree() + self.overlay.pending_out.len() + 1 < self.config.max_degree;
        if room && !self.overlay.gatekeeper_pending {
            self.overlay.refreshing = true;
            self.overlay.gatekeeper_pending = true;
            self.emit(Event::GatekeeperJoin);
        }
    }

    fn back_off(&mut self, now: Instant) {
        self.overlay.next_gatekeeper_at = Some(now + self.overlay.backoff);
        self.overlay.backoff = (self.overlay.backoff * 2).min(self.config.join_backoff_max);
    }

    pub(crate) fn on_candidates(&mut self, now: Instant, candidates: Vec<NeighbourEntry>) {
        self.overlay.gatekeeper_pending = false;
        self.overlay.tried.clear();
        self.back_off(now);
        let refreshing = std::mem::take(&mut self.overlay.refreshing);
        if refreshing && self.dialable_degree() >= self.config.target_degree {
            // One more neighbour, the first the Gatekeeper offers (the least loaded,
            // random among equals): not necessarily one our neighbours know.
            if self.dialable_degree() + self.overlay.pending_out.len() + 1 < self.config.max_degree
                && let Some(entry) = candidates.into_iter().find(|e| {
                    e.dialable && self.worth_dialling(&e.id) && self.address_dialable(now, &e.addr)
                })
            {
                self.connect(now, entry.addr, Some(entry.id));
            }
        } else {
            self.enqueue(now, candidates, false);
        }
        self.maintain(now);
    }

    pub(crate) fn on_gatekeeper_failed(&mut self, now: Instant) {
        self.overlay.gatekeeper_pending = false;
        self.overlay.refreshing = false;
        self.back_off(now);
    }

    fn connect(&mut self, now: Instant, addr: PeerAddr, expected: Option<NodeId>) {
        let my_link_id = self.fresh_id();
        let seed: [u8; 32] = self.rng.random();
        let stream = self.reach.udp_blocked;
        let (initiator, hello) = Initiator::start_with(
            &self.key,
            self.addr,
            self.dialable,
            stream,
            Purpose::Link,
            seed,
        );
        let dialing = crate::conns::Dialing {
            my_link_id,
            initiator,
            expected,
            addr,
            stream,
        };
        self.open_conn(now, addr.tcp_addr(), dialing, hello);
        self.overlay.pending_out.insert(
            my_link_id,
            PendingOut {
                expected,
                addr,
                since: now,
                early: Vec::new(),
            },
        );
    }

    /// Decides on an inbound handshake that arrived from `from` (the connection's source
    /// address): accept while a slot is free, else answer "full" with our neighbours so
    /// the initiator can search on.
    ///
    /// An accepted handshake holds no slot until it is confirmed ([`Command::LinkUp`]):
    /// hellos that never confirm cannot make us answer "full". They are bounded on their
    /// own, `max_pending_inbound` at once and `max_pending_inbound_per_ip` per source;
    /// past either the hello is answered "full" too.
    ///
    /// [`Command::LinkUp`]: crate::Command::LinkUp
    pub(crate) fn answer_hello(
        &mut self,
        now: Instant,
        from: IpAddr,
        hello_payload: &[u8],
    ) -> Result<InboundAnswer, HandshakeError> {
        let hello = Hello::decode(hello_payload)?;
        let source = source_bucket(from);
        // Handed on as dialable (and sent to before it speaks) only when the connection
        // came from the address it names: behind a NAT it did not.
        let initiator_dialable = hello.initiator_dialable && hello.initiator_addr.ip == from;
        let decision = if self.phase != Phase::Running
            || hello.initiator == self.id
            || self.links.contains_key(&hello.initiator)
        {
            Decision::Reject
        } else if hello.initiator_addr.validate().is_err() {
            // We would send heartbeats there: never to a broadcast or link-local address.
            self.stats.hellos_refused_address += 1;
            Decision::Reject
        } else if initiator_dialable
            && self.dialable_degree() + self.overlay.pending_out.len() >= self.config.max_degree
        {
            // Our own dials in flight count: otherwise inbound links could fill every slot
            // and our dial's link would be refused here after the other side installed it.
            Decision::Full
        } else if !initiator_dialable && self.undialable_links() >= self.config.undialable_slots {
            self.stats.hellos_refused_undialable += 1;
            Decision::Full
        } else if self.overlay.pending_in.len() >= self.config.max_pending_inbound {
            self.stats.hellos_refused_pending += 1;
            Decision::Full
        } else if self
            .overlay
            .pending_in
            .values()
            .filter(|p| p.source == source)
            .count()
            >= self.config.max_pending_inbound_per_ip
        {
            self.stats.hellos_refused_per_ip += 1;
            Decision::Full
        } else {
            Decision::Accept
        };
        let my_link_id = self.fresh_id();
        let seed: [u8; 32] = self.rng.random();
        let neighbours = self.neighbour_entries(None);
        let (responder, welcome) = Responder::answer(
            &self.key,
            hello_payload,
            &hello,
            decision,
            my_link_id,
            neighbours,
            seed,
        );
        if responder.is_some() {
            self.overlay
                .pending_in
                .insert(my_link_id, PendingIn { since: now, source });
        }
        Ok(InboundAnswer {
            responder,
            welcome,
            my_link_id,
            initiator_addr: hello.initiator_addr,
            initiator_dialable,
            stream: hello.stream,
        })
    }

    /// Neighbours behind NATs (they dialled us), which `undialable_slots` bounds.
    pub(crate) fn undialable_links(&self) -> usize {
        self.links.len() - self.dialable_degree()
    }

    /// True when link `up` finds its pool full. Checked on the hello and again on the
    /// confirm: hellos accepted together could otherwise all confirm past it.
    fn pool_full(&self, up: &LinkUp) -> bool {
        if up.inbound && !up.dialable {
            self.undialable_links() >= self.config.undialable_slots
        } else {
            self.dialable_degree() >= self.config.max_degree
        }
    }

    /// True when our link id `my_link_id` belongs to an installed link.
    pub fn has_link(&self, my_link_id: u64) -> bool {
        self.by_link_id.contains_key(&my_link_id)
    }

    pub(crate) fn on_link_up(&mut self, now: Instant, up: LinkUp) {
        let was_pending = if up.inbound {
            self.overlay.pending_in.remove(&up.my_link_id).is_some()
        } else {
            self.overlay.pending_out.remove(&up.my_link_id).is_some()
        };
        if !was_pending || self.phase != Phase::Running || up.peer == self.id {
            return;
        }
        // It answered (or, inbound, reached us): whatever failed before, it is alive.
        self.overlay.dial_backoff.answered(up.addr.tcp_addr());
        let initiator = if up.inbound { up.peer } else { self.id };
        if let Some(existing) = self.links.get(&up.peer) {
            // Both sides keep the link the smaller id initiated, so they agree.
            if existing.initiator(&self.id) <= initiator {
                self.maintain(now);
                return;
            }
            self.drop_link(&up.peer, DownReason::Replaced);
        } else if self.pool_full(&up) {
            // Accepted handshakes hold no slot, so more may confirm than fit: the late
            // one is refused (no "established"). Our own dials in flight are not held
            // back for: refusing inbound links for them starved repair in the simulator
            // (dials to crashed peers hold their slot for the whole handshake timeout).
            // The rare dial of ours that completes into a full peer leaves a half-link
            // on the other side, which our "not your neighbour" clears.
            if up.inbound && !up.dialable {
                self.stats.hellos_refused_undialable += 1;
            } else if up.inbound {
                self.stats.links_refused_full += 1;
            }
            self.maintain(now);
            return;
        }
        let link = Link {
            id: up.peer,
            addr: up.addr,
            dialable: up.dialable || !up.inbound,
            // Over a kept TCP connection: there. Else: we dialled it, or it dialled us from
            // the address it publishes: send there. Otherwise (behind a NAT) wait until it
            // speaks: its first heartbeat follows our "established" at once, from its
            // mapping.
            path: up
                .carrier
                .map(|(_, remote)| remote)
                .or_else(|| (!up.inbound || up.dialable).then(|| up.addr.udp_addr())),
            conn: up.carrier.map(|(conn, _)| conn),
            heard: false,
            observed_me: None,
            reverse_budget: self.config.reverse_per_interval,
            my_link_id: up.my_link_id,
            their_link_id: up.their_link_id,
            keys: up.keys,
            initiated_by_me: !up.inbound,
            send_counter: 0,
            window: ReplayWindow::default(),
            state: LinkState::Okay,
            since: now,
            last_heard: now,
            sent_seq: 0,
            last_acked_seq: 0,
            last_acked_at: None,
            their_neighbours: up
                .their_neighbours
                .into_iter()
                .filter(|e| e.id != self.id)
                .collect(),
            their_incarnation: 0,
            their_summary_version: 0,
            search: crate::search::LinkSearch::with_budget(
                self.config.summary_requests_per_interval,
            ),
        };
        self.by_link_id.insert(up.my_link_id, up.peer);
        self.links.insert(up.peer, link);
        self.emit(Event::NeighbourUp {
            id: up.peer,
            addr: up.addr,
        });
        // The initiator speaks first: it installs the link only after our "established"
        // frame, so a heartbeat from us now could arrive before it knows the link.
        if !up.inbound {
            self.send_heartbeat(&up.peer);
        }
        self.maintain(now);
    }

    pub(crate) fn on_connect_failed(
        &mut self,
        now: Instant,
        my_link_id: u64,
        outcome: ConnectOutcome,
    ) {
        let Some(pending) = self.overlay.pending_out.remove(&my_link_id) else {
            return;
        };
        let tcp = pending.addr.tcp_addr();
        match outcome {
            ConnectOutcome::Full { neighbours } | ConnectOutcome::Rejected { neighbours } => {
                self.overlay.dial_backoff.answered(tcp);
                self.enqueue(now, neighbours, false);
            }
            ConnectOutcome::Unreachable => {
                self.stats.dials_unanswered += 1;
                self.overlay.dial_backoff.failed(now, tcp);
            }
        }
        self.maintain(now);
    }

    pub(crate) fn expire_handshakes(&mut self, now: Instant) {
        let timeout = self.config.handshake_timeout;
        self.overlay
            .pending_out
            .retain(|_, p| now < p.since + timeout * 2);
        self.overlay
            .pending_in
            .retain(|_, p| now < p.since + timeout);
    }

    pub(crate) fn drop_link(&mut self, peer: &NodeId, reason: DownReason) -> Option<Link> {
        let link = self.links.remove(peer)?;
        if reason == DownReason::Silent {
            self.stats.links_lost_unheard += 1;
            // Link after link came up over TCP and never carried a datagram: UDP does not
            // get through from here. Later links ask to travel over their TCP connection.
            if !self.reach.heard_on_a_link
                && self.stats.links_lost_unheard >= crate::reachability::UNHEARD_LINKS_FOR_BLOCKED
            {
                self.reach.udp_blocked = true;
            }
        }
        self.by_link_id.remove(&link.my_link_id);
        if let Some(conn) = link.conn {
            self.close_conn(conn);
        }
        self.emit(Event::NeighbourDown { id: *peer, reason });
        self.search_link_down(peer);
        Some(link)
    }

    /// Replaces a lost neighbour: its cached neighbours first, the Gatekeeper after.
    fn repair_from(&mut self, now: Instant, lost: Link) {
        let mut candidates = lost.their_neighbours;
        candidates.shuffle(&mut self.rng);
        self.enqueue(now, candidates, true);
        self.maintain(now);
    }

    /// Only links that spoke get here: one that never did is dropped as silent first
    /// (`check_neighbours`), so a peer whose UDP is blocked accuses and shuns no one.
    pub(crate) fn fail(&mut self, now: Instant, peer: &NodeId) {
        let Some(link) = self.drop_link(peer, DownReason::Failed) else {
            return;
        };
        self.stats.failures += 1;
        self.emit(Event::ReportFailed { id: *peer });
        if self.overlay.quarantine.len() >= MAX_QUARANTINE {
            self.overlay.quarantine.pop_front();
        }
        self.overlay
            .quarantine
            .push_back((*peer, now + self.config.failed_quarantine));
        self.repair_from(now, link);
    }

    pub(crate) fn on_peer_left(&mut self, now: Instant, peer: &NodeId) {
        if let Some(link) = self.drop_link(peer, DownReason::Left) {
            self.repair_from(now, link);
        }
    }

    pub(crate) fn on_not_neighbour(&mut self, now: Instant, nn: highway_wire::peer::NotNeighbour) {
        let Some(peer) = self
            .links
            .values()
            .find(|l| l.id == nn.responder && l.their_link_id == nn.link_id)
            .map(|l| l.id)
        else {
            return;
        };
        if !nn.verify() {
            self.stats.bad_tags += 1;
            return;
        }
        if let Some(link) = self.drop_link(&peer, DownReason::NotNeighbour) {
            self.repair_from(now, link);
        }
    }

    pub(crate) fn leave(&mut self) {
        if self.phase == Phase::Left {
            return;
        }
        let peers = self.link_peers();
        for peer in &peers {
            self.send(peer, &highway_wire::peer::PeerMsg::Leave);
        }
        for peer in &peers {
            self.drop_link(peer, DownReason::Leaving);
        }
        self.overlay.frontier.clear();
        self.overlay.pending_out.clear();
        self.overlay.pending_in.clear();
        self.close_all_conns();
        if self.phase == Phase::Running {
            self.emit(Event::GatekeeperLeave);
        }
        self.phase = Phase::Left;
    }
}
