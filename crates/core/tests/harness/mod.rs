//! A deterministic network of [`Peer`]s on a virtual clock, in the manner of quinn's test
//! `Pair` and foca's `AccumulatingRuntime`: no sockets, no threads, no sleeps.
//!
//! The [`Net`] plays the runtime for every peer. It routes each datagram from
//! `poll_transmit` to the peer whose UDP address it names (unless a cut, random loss or a
//! dead peer swallows it), answers `GatekeeperJoin` from a script or from a registry of
//! the running peers, carries their TCP connections in memory (so handshakes run exactly
//! as the core drives them for the node), and records every event and datagram for
//! assertions. Time moves only through
//! [`Net::run_until`], which wakes each peer at its own `poll_timeout()` in index order.
//!
//! After every step it checks invariants that hold in any scenario: a peer never exceeds
//! its maximum degree, never asks to be woken at or before the instant it was just woken
//! for (that would make a runtime spin), and its `NeighbourUp`/`NeighbourDown` events
//! always describe its actual neighbour set.
//!
//! [`Fake`] is a hand-driven neighbour for single-peer tests: it links to a real peer with
//! the real handshake and then seals and opens link datagrams itself.

#![allow(dead_code)]

mod pipes;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_core::{Command, Config, ConnIo, DownReason, Event, Peer, Phase};
use highway_wire::peer::handshake::{
    Initiator, InitiatorOutcome, LinkKeys, Purpose, is_established, split_frame,
};
use highway_wire::peer::{Datagram, Hit, NeighbourEntry, PeerMsg, QueryId, decode, seal};
use highway_wire::{NodeId, PeerAddr};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub const UDP_PORT: u16 = 7000;
pub const TCP_PORT: u16 = 7001;

/// The identity key of the peer built from `seed`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn id_of(seed: u8) -> NodeId {
    NodeId::from_key(&key(seed).verifying_key())
}

/// 127.0.0.`n`, with fixed ports.
pub fn addr(n: u8) -> PeerAddr {
    PeerAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), UDP_PORT, TCP_PORT)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The payload of a handshake frame the harness built itself (always whole and valid).
fn payload(framed: &[u8]) -> &[u8] {
    split_frame(framed)
        .expect("well-formed frame")
        .expect("whole frame")
        .0
}

/// How the fake Gatekeeper answers a peer's `GatekeeperJoin`.
#[derive(Debug, Clone)]
pub enum Gatekeeper {
    /// Every other running, live peer: those with free slots first, then by fewest
    /// neighbours, then by index.
    Registry,
    /// One list of peer indices per request; an empty list once the script runs out.
    Script(VecDeque<Vec<usize>>),
    /// Answers `GatekeeperFailed`.
    Failing,
    /// Never answers.
    Silent,
}

/// An event a peer emitted (or a handshake result the harness reported to it), in a form
/// tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    GatekeeperJoin,
    /// The peer opened a connection to dial `addr`.
    Connect {
        addr: PeerAddr,
    },
    /// How a dial ended, as its connection showed it.
    Dialled {
        addr: PeerAddr,
        outcome: Outcome,
    },
    Up {
        peer: NodeId,
        addr: PeerAddr,
    },
    Down {
        peer: NodeId,
        reason: DownReason,
    },
    State {
        peer: NodeId,
        state: &'static str,
    },
    ReportFailed {
        peer: NodeId,
    },
    GatekeeperLeave,
    /// Hits for one of this peer's searches.
    Hits {
        id: QueryId,
        hits: Vec<Hit>,
    },
    SearchDone {
        id: QueryId,
        timed_out: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Linked,
    Full,
    Rejected,
    Unreachable,
}

/// One line of the whole network's history, for determinism checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Event {
        at: Duration,
        node: usize,
        rec: Rec,
    },
    Sent {
        at: Duration,
        node: usize,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// A datagram some peer asked to send.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub from: usize,
    pub to: SocketAddr,
    /// The peer the address belongs to, if any.
    pub to_node: Option<usize>,
    pub bytes: Vec<u8>,
    pub delivered: bool,
}

#[derive(Debug)]
pub struct Node {
    pub peer: Peer,
    pub seed: u8,
    /// A dead peer receives nothing, sends nothing and is never woken.
    pub alive: bool,
    pub gatekeeper: Gatekeeper,
    pub events: Vec<(Instant, Rec)>,
    /// Neighbours according to the Up/Down events seen so far.
    up: BTreeSet<NodeId>,
    /// The last instant the peer was woken, for spin detection.
    last_wake: Option<Instant>,
    restarts: u64,
}

#[derive(Debug)]
pub struct Net {
    pub base: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    /// Directed cuts: datagrams and handshakes from `.0` to `.1` are lost.
    cuts: BTreeSet<(usize, usize)>,
    /// Random loss of datagrams, with its own seeded RNG.
    loss: Option<(f64, SmallRng)>,
    /// Round-trip time of a TCP handshake (hello out, welcome back).
    pub handshake_rtt: Duration,
    wire: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    pipes: pipes::Pipes,
    /// Link keys by (receiving node, its link id), to read any link datagram.
    keys: HashMap<(usize, u64), LinkKeys>,
    pub sent: Vec<Sent>,
    pub log: Vec<Line>,
}

impl Net {
    /// `n` idle peers with the same configuration, answered by the registry Gatekeeper.
    pub fn new(n: usize, config: Config) -> Self {
        Self::with_configs(vec![config; n])
    }

    /// One idle peer per configuration; peer `i` has key seed and address `i + 1`.
    pub fn with_configs(configs: Vec<Config>) -> Self {
        let base = Instant::now();
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                let seed = u8::try_from(i + 1).expect("fewer than 255 peers");
                Node {
                    peer: Peer::new(config, key(seed), addr(seed), u64::from(seed), base),
                    seed,
                    alive: true,
                    gatekeeper: Gatekeeper::Registry,
                    events: Vec::new(),
                    up: BTreeSet::new(),
                    last_wake: None,
                    restarts: 0,
                }
            })
            .collect();
        Self {
            base,
            now: base,
            nodes,
            cuts: BTreeSet::new(),
            loss: None,
            handshake_rtt: Duration::ZERO,
            wire: VecDeque::new(),
            pipes: pipes::Pipes::default(),
            keys: HashMap::new(),
            sent: Vec::new(),
            log: Vec::new(),
        }
    }

    // ---- Looking at the network -------------------------------------------------------

    pub fn peer(&self, i: usize) -> &Peer {
        &self.nodes[i].peer
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].peer.id()
    }

    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer.id() == *id)
    }

    pub fn entry(&self, i: usize) -> NeighbourEntry {
        NeighbourEntry {
            id: self.id(i),
            addr: self.peer(i).addr(),
            dialable: true,
        }
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Indices of `i`'s neighbours, sorted.
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .peer(i)
            .neighbours(self.now)
            .iter()
            .map(|n| self.index_of(&n.id).expect("neighbours are harness peers"))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.neighbours(a).contains(&b)
    }

    /// The failure detector's state of `j` as `i` sees it, if they are linked.
    pub fn state(&self, i: usize, j: usize) -> Option<&'static str> {
        let id = self.id(j);
        self.peer(i)
            .neighbours(self.now)
            .into_iter()
            .find(|n| n.id == id)
            .map(|n| n.state)
    }

    /// The neighbours `j` last told `i` it has (from heartbeats or the welcome).
    pub fn cached_neighbours(&self, i: usize, j: usize) -> Vec<usize> {
        let id = self.id(j);
        let view = self
            .peer(i)
            .neighbours(self.now)
            .into_iter()
            .find(|n| n.id == id)
            .expect("linked");
        let mut out: Vec<usize> = view
            .their_neighbours
            .iter()
            .filter_map(|id| self.index_of(id))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn events(&self, i: usize) -> &[(Instant, Rec)] {
        &self.nodes[i].events
    }

    /// `i`'s events from instant `since` on.
    pub fn events_since(&self, i: usize, since: Instant) -> Vec<Rec> {
        self.nodes[i]
            .events
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// When `i` first recorded an event matching `f`.
    pub fn first_event(&self, i: usize, f: impl Fn(&Rec) -> bool) -> Option<Instant> {
        self.nodes[i]
            .events
            .iter()
            .find(|(_, r)| f(r))
            .map(|(at, _)| *at)
    }

    pub fn count_events(&self, i: usize, f: impl Fn(&Rec) -> bool) -> usize {
        self.nodes[i].events.iter().filter(|(_, r)| f(r)).count()
    }

    /// Opens a link datagram addressed to node `to` with the keys the harness saw
    /// negotiated; `None` for anything else.
    pub fn open(&self, to: usize, bytes: &[u8]) -> Option<PeerMsg> {
        let Ok(Datagram::Link(frame)) = decode(bytes) else {
            return None;
        };
        let keys = self.keys.get(&(to, frame.link_id))?;
        frame.open(&keys.recv).ok()
    }

    /// Every link message `from` sent to `to` (delivered or not), with its instant.
    pub fn messages(&self, from: usize, to: usize) -> Vec<(Instant, PeerMsg)> {
        self.sent
            .iter()
            .filter(|s| s.from == from && s.to_node == Some(to))
            .filter_map(|s| self.open(to, &s.bytes).map(|m| (s.at, m)))
            .collect()
    }

    // ---- Changing the network ---------------------------------------------------------

    pub fn set_gatekeeper(&mut self, i: usize, gatekeeper: Gatekeeper) {
        self.nodes[i].gatekeeper = gatekeeper;
    }

    /// Scripts `i`'s Gatekeeper answers, one list of peer indices per request.
    pub fn script(&mut self, i: usize, answers: &[&[usize]]) {
        self.nodes[i].gatekeeper = Gatekeeper::Script(answers.iter().map(|a| a.to_vec()).collect());
    }

    pub fn set_loss(&mut self, rate: f64, seed: u64) {
        self.loss = Some((rate, SmallRng::seed_from_u64(seed)));
    }

    pub fn loss_off(&mut self) {
        self.loss = None;
    }

    /// Loses everything between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a, b));
        self.cuts.insert((b, a));
    }

    /// Loses everything from `from` to `to`.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cuts.insert((from, to));
    }

    pub fn heal(&mut self, a: usize, b: usize) {
        self.cuts.remove(&(a, b));
        self.cuts.remove(&(b, a));
    }

    pub fn heal_one_way(&mut self, from: usize, to: usize) {
        self.cuts.remove(&(from, to));
    }

    /// The peer stops: it receives nothing, sends nothing, is never woken.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    /// The peer crashes and comes back with the same key and address but no state (and
    /// a fresh RNG seed, as a new process would have: the same seed would hand out the
    /// same link ids as before).
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let config = node.peer.config().clone();
        node.restarts += 1;
        node.peer = Peer::new(
            config,
            key(node.seed),
            addr(node.seed),
            u64::from(node.seed) + 1000 * node.restarts,
            self.now,
        );
        node.alive = true;
        node.up.clear();
        node.last_wake = None;
    }

    /// Hands `i` a command; a dead peer cannot take one.
    pub fn command(&mut self, i: usize, cmd: Command) {
        if !self.nodes[i].alive {
            return;
        }
        let now = self.now;
        self.nodes[i].peer.handle_command(now, cmd);
        self.pump();
    }

    /// Node `i` for direct calls (catalog, summary); call [`Net::pump`] after anything
    /// that makes it send.
    pub fn peer_mut(&mut self, i: usize) -> &mut Peer {
        &mut self.nodes[i].peer
    }

    /// Starts a search on `i` and delivers what it sent.
    pub fn search(
        &mut self,
        i: usize,
        request: highway_core::SearchRequest,
    ) -> Result<QueryId, highway_core::SearchError> {
        let now = self.now;
        let id = self.nodes[i].peer.start_search(now, request);
        self.pump();
        id
    }

    /// Every hit search `id` of node `i` delivered, and whether (and how) it ended.
    pub fn search_results(&self, i: usize, id: QueryId) -> (Vec<Hit>, Option<bool>) {
        let mut hits = Vec::new();
        let mut done = None;
        for (_, rec) in &self.nodes[i].events {
            match rec {
                Rec::Hits { id: got, hits: h } if *got == id => hits.extend(h.iter().cloned()),
                Rec::SearchDone { id: got, timed_out } if *got == id => done = Some(*timed_out),
                _ => {}
            }
        }
        (hits, done)
    }

    pub fn join(&mut self, i: usize) {
        self.command(i, Command::Join);
    }

    pub fn join_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.join(i);
        }
    }

    pub fn leave(&mut self, i: usize) {
        self.command(i, Command::Leave);
    }

    /// Hands node `to` a datagram as if it came from `from`.
    /// The datagrams `from` sent to `to` so far, delivered or not, as raw bytes.
    pub fn sent_bytes(&self, from: usize, to: usize) -> Vec<Vec<u8>> {
        self.sent
            .iter()
            .filter(|s| s.from == from && s.to_node == Some(to))
            .map(|s| s.bytes.clone())
            .collect()
    }

    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[to].peer.handle_datagram(now, from, bytes);
        self.pump();
    }

    // ---- Time -------------------------------------------------------------------------

    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs every timer due up to `t` in order, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        self.pump();
        while let Some(next) = self.next_wakeup().filter(|&n| n <= t) {
            self.now = self.now.max(next);
            self.wake_due();
            self.pump();
        }
        self.now = self.now.max(t);
    }

    /// Runs until `f` holds (checked after each step) or `limit` passes; true if it held.
    pub fn run_until_cond(&mut self, limit: Duration, mut f: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        self.pump();
        if f(self) {
            return true;
        }
        while let Some(next) = self.next_wakeup().filter(|&n| n <= end) {
            self.now = self.now.max(next);
            self.wake_due();
            self.pump();
            if f(self) {
                return true;
            }
        }
        self.now = end;
        f(self)
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let peers = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.peer.poll_timeout());
        peers.chain(self.next_segment()).min()
    }

    fn wake_due(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if !node.alive || node.peer.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            assert!(
                node.last_wake != Some(now),
                "peer {i} asked to be woken again at {:?}, the instant it was just woken \
                 for: a runtime would spin",
                now - self.base
            );
            node.peer.handle_timeout(now);
            node.last_wake = Some(now);
            self.pump();
        }
    }

    // ---- The runtime's work -----------------------------------------------------------

    /// Drains every peer's outputs and delivers datagrams and handshake steps due now,
    /// until nothing is left to do at this instant.
    pub fn pump(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                busy |= self.drain(i);
            }
            if let Some((from, to, bytes)) = self.wire.pop_front() {
                self.deliver(from, to, bytes);
                busy = true;
            }
            busy |= self.deliver_segment();
            if !busy {
                break;
            }
        }
        for i in 0..self.nodes.len() {
            self.check(i);
        }
    }

    fn drain(&mut self, i: usize) -> bool {
        // Events first: those a step emitted come before the connections it opened.
        let mut busy = false;
        while let Some(ev) = self.nodes[i].peer.poll_event() {
            busy = true;
            if self.nodes[i].alive {
                self.on_event(i, ev);
            }
        }
        while let Some(t) = self.nodes[i].peer.poll_transmit() {
            busy = true;
            if !self.nodes[i].alive {
                continue;
            }
            let to_node = self.node_at_udp(t.to);
            self.log.push(Line::Sent {
                at: self.elapsed(),
                node: i,
                to: t.to,
                bytes: t.bytes.clone(),
            });
            let lost = match to_node {
                Some(j) => self.cuts.contains(&(i, j)) || !self.nodes[j].alive,
                None => true,
            } || self.lose();
            self.sent.push(Sent {
                at: self.now,
                from: i,
                to: t.to,
                to_node,
                bytes: t.bytes.clone(),
                delivered: !lost,
            });
            if !lost {
                self.wire.push_back((i, t.to, t.bytes));
            }
        }
        busy |= self.drain_conns(i);
        busy
    }

    fn lose(&mut self) -> bool {
        match &mut self.loss {
            Some((rate, rng)) => rng.random_bool(*rate),
            None => false,
        }
    }

    fn node_at_udp(&self, to: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.peer.addr().udp_addr() == to)
    }

    fn node_at_tcp(&self, to: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.peer.addr().tcp_addr() == to)
    }

    fn deliver(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        let Some(j) = self.node_at_udp(to) else {
            return;
        };
        if !self.nodes[j].alive {
            return;
        }
        let from_addr = self.nodes[from].peer.addr().udp_addr();
        let now = self.now;
        self.nodes[j].peer.handle_datagram(now, from_addr, &bytes);
    }

    fn record(&mut self, i: usize, rec: Rec) {
        self.log.push(Line::Event {
            at: self.elapsed(),
            node: i,
            rec: rec.clone(),
        });
        self.nodes[i].events.push((self.now, rec));
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        match ev {
            // Every harness peer can be dialled: nobody asks for reverse connections.
            Event::ReverseConnect { .. } => {}
            Event::GatekeeperJoin => {
                self.record(i, Rec::GatekeeperJoin);
                self.answer_gatekeeper(i);
            }
            Event::NeighbourUp { id, addr } => {
                assert!(
                    self.nodes[i].up.insert(id),
                    "peer {i}: NeighbourUp for {:?}, which was already up",
                    self.index_of(&id)
                );
                // Kept past the link's end, to read what was sent on it.
                if let Some((my_link_id, keys)) = self.nodes[i].peer.link_keys(&id) {
                    self.keys.insert((i, my_link_id), keys.clone());
                }
                self.record(i, Rec::Up { peer: id, addr });
            }
            Event::NeighbourDown { id, reason } => {
                assert!(
                    self.nodes[i].up.remove(&id),
                    "peer {i}: NeighbourDown for {:?}, which was not up",
                    self.index_of(&id)
                );
                self.record(i, Rec::Down { peer: id, reason });
            }
            Event::StateChanged { id, state } => self.record(i, Rec::State { peer: id, state }),
            Event::ReportFailed { id } => self.record(i, Rec::ReportFailed { peer: id }),
            Event::GatekeeperLeave => self.record(i, Rec::GatekeeperLeave),
            Event::SearchHits { id, hits } => self.record(i, Rec::Hits { id, hits }),
            Event::SearchDone { id, timed_out } => {
                self.record(i, Rec::SearchDone { id, timed_out });
            }
        }
    }

    fn answer_gatekeeper(&mut self, i: usize) {
        let now = self.now;
        let cmd = match &mut self.nodes[i].gatekeeper {
            Gatekeeper::Registry => {
                // As the real Gatekeeper orders them: free slots first, then fewest
                // neighbours (index order stands in for its random tie-break).
                let mut running: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| {
                        j != i && self.nodes[j].alive && self.peer(j).phase() == Phase::Running
                    })
                    .collect();
                running.sort_by_key(|&j| {
                    let p = self.peer(j);
                    (p.degree() >= p.config().max_degree, p.degree(), j)
                });
                Command::Candidates(running.into_iter().map(|j| self.entry(j)).collect())
            }
            Gatekeeper::Script(answers) => {
                let next = answers.pop_front().unwrap_or_default();
                Command::Candidates(next.into_iter().map(|j| self.entry(j)).collect())
            }
            Gatekeeper::Failing => Command::GatekeeperFailed,
            Gatekeeper::Silent => return,
        };
        self.nodes[i].peer.handle_command(now, cmd);
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].alive
            && self.nodes[b].alive
            && !self.cuts.contains(&(a, b))
            && !self.cuts.contains(&(b, a))
    }

    // ---- Invariants -------------------------------------------------------------------

    fn check(&self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        let peer = self.peer(i);
        let dialable = peer
            .neighbours(self.now)
            .iter()
            .filter(|n| n.dialable)
            .count();
        assert!(
            dialable <= peer.config().max_degree && peer.degree() <= peer.capacity(),
            "peer {i} has {} neighbours ({dialable} dialable), above its maximum {} ({})",
            peer.degree(),
            peer.capacity(),
            peer.config().max_degree
        );
        let actual: BTreeSet<NodeId> = peer.neighbours(self.now).iter().map(|n| n.id).collect();
        assert_eq!(
            actual, self.nodes[i].up,
            "peer {i}: NeighbourUp/NeighbourDown events disagree with its neighbour set"
        );
    }
}

/// A neighbour driven by hand: linked to a real peer through the real handshake (as the
/// initiator), it seals and opens link datagrams with the negotiated keys.
#[derive(Debug)]
pub struct Fake {
    pub key: SigningKey,
    pub id: NodeId,
    pub addr: PeerAddr,
    pub keys: LinkKeys,
    /// Our id for the link: the peer's datagrams to us carry it.
    pub my_link_id: u64,
    /// The peer's id for the link: our datagrams carry it.
    pub their_link_id: u64,
    pub counter: u64,
}

impl Fake {
    /// Links a fake neighbour (key and address from `seed`) to `peer`, which must be
    /// running and have a free slot.
    pub fn link(peer: &mut Peer, now: Instant, seed: u8) -> Self {
        let key = key(seed);
        let id = NodeId::from_key(&key.verifying_key());
        let addr = addr(seed);
        let my_link_id = 0xF00D_0000 + u64::from(seed);
        let (initiator, hello) = Initiator::start(&key, addr, Purpose::Link, [seed; 32]);
        let conn = peer
            .handle_accept(now, addr.tcp_addr())
            .expect("a free handshake slot");
        peer.handle_conn_bytes(now, conn, &hello);
        let welcome = written(peer).concat();
        let InitiatorOutcome::Linked {
            responder_link_id,
            keys,
            confirm,
            ..
        } = initiator
            .on_welcome(payload(&welcome), Some(peer.id()), my_link_id)
            .expect("genuine welcome")
        else {
            panic!("the peer did not accept the fake neighbour");
        };
        peer.handle_conn_bytes(now, conn, &confirm);
        let established = written(peer).concat();
        assert!(
            is_established(payload(&established)),
            "the peer installed the link"
        );
        let mut fake = Self {
            key,
            id,
            addr,
            keys,
            my_link_id,
            their_link_id: responder_link_id,
            counter: 0,
        };
        // As a real initiator does right after "established": its first heartbeat tells
        // the peer where to send (an inbound link has no path until the initiator speaks).
        let hello = fake.seal(&PeerMsg::Heartbeat(highway_wire::peer::Heartbeat {
            seq: 0,
            incarnation: 0,
            summary_version: 0,
            neighbours: Vec::new(),
        }));
        peer.handle_datagram(now, fake.udp(), &hello);
        fake
    }

    pub fn udp(&self) -> SocketAddr {
        self.addr.udp_addr()
    }

    /// Seals `msg` with the next counter.
    pub fn seal(&mut self, msg: &PeerMsg) -> Vec<u8> {
        self.counter += 1;
        seal(self.their_link_id, self.counter, msg, &self.keys.send)
    }

    /// Opens a datagram the peer sent to us.
    pub fn open(&self, bytes: &[u8]) -> Option<PeerMsg> {
        match decode(bytes) {
            Ok(Datagram::Link(frame)) if frame.link_id == self.my_link_id => {
                frame.open(&self.keys.recv).ok()
            }
            _ => None,
        }
    }
}

/// A running peer on its own (seed `seed`, address 127.0.0.`seed`), with its first
/// events drained.
pub fn solo(config: Config, seed: u8, now: Instant) -> Peer {
    let mut peer = Peer::new(config, key(seed), addr(seed), u64::from(seed), now);
    peer.handle_command(now, Command::Join);
    drain_events(&mut peer);
    peer
}

/// What a peer did with one connection: the bytes it wrote, and whether it closed it.
#[derive(Debug, Default)]
pub struct Reply {
    pub written: Vec<u8>,
    pub closed: bool,
}

/// Drains `peer`'s connection work, keeping what concerns `conn`.
pub fn reply(peer: &mut Peer, conn: highway_core::ConnId) -> Reply {
    let mut out = Reply::default();
    while let Some(io) = peer.poll_conn() {
        match io {
            ConnIo::Write { conn: c, bytes } if c == conn => out.written.extend(bytes),
            ConnIo::Close { conn: c } if c == conn => out.closed = true,
            _ => {}
        }
    }
    out
}

/// A connection from `from` (a TCP address) that writes `hello`: the peer's connection
/// id and its reply.
pub fn send_hello(
    peer: &mut Peer,
    now: Instant,
    from: SocketAddr,
    hello: &[u8],
) -> (highway_core::ConnId, Reply) {
    let conn = peer
        .handle_accept(now, from)
        .expect("a free handshake slot");
    peer.handle_conn_bytes(now, conn, hello);
    (conn, reply(peer, conn))
}

/// A heartbeat with sequence number `seq` and nothing else in it.
pub fn heartbeat(seq: u64) -> PeerMsg {
    PeerMsg::Heartbeat(highway_wire::peer::Heartbeat {
        seq,
        incarnation: 0,
        summary_version: 0,
        neighbours: Vec::new(),
    })
}

/// Has `peer` dial the dialable peer `seed` (its only candidate): the connection it
/// opened, and the framed hello it wrote first.
pub fn dial_out(peer: &mut Peer, now: Instant, seed: u8) -> (highway_core::ConnId, Vec<u8>) {
    let target = NeighbourEntry::dialable(id_of(seed), addr(seed));
    peer.handle_command(now, Command::Candidates(vec![target]));
    let mut opened = None;
    let mut hello = None;
    while let Some(io) = peer.poll_conn() {
        match io {
            ConnIo::Open { conn, to } => {
                assert_eq!(to, addr(seed).tcp_addr(), "it dials the candidate");
                opened = Some(conn);
            }
            ConnIo::Write { conn, bytes } if Some(conn) == opened => hello = Some(bytes),
            _ => {}
        }
    }
    (opened.expect("it dials"), hello.expect("it wrote a hello"))
}

/// Peer `seed` answers that dial with `decision` (its link id `link_id`), as its
/// responder would: the welcome goes to `peer`. Returns the responder's state when it
/// accepted, to verify the confirm with.
pub fn answer_dial(
    peer: &mut Peer,
    now: Instant,
    conn: highway_core::ConnId,
    hello: &[u8],
    seed: u8,
    decision: highway_wire::peer::handshake::Decision,
    link_id: u64,
) -> Option<highway_wire::peer::handshake::Responder> {
    let decoded = highway_wire::peer::handshake::Hello::decode(payload(hello)).expect("a hello");
    let (responder, welcome) = highway_wire::peer::handshake::Responder::answer(
        &key(seed),
        payload(hello),
        &decoded,
        decision,
        link_id,
        Vec::new(),
        [seed; 32],
    );
    peer.handle_conn_bytes(now, conn, &welcome);
    responder
}

/// The bytes `peer` wrote to its connections since this was last asked (opens and
/// closes dropped).
pub fn written(peer: &mut Peer) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| peer.poll_conn())
        .filter_map(|io| match io {
            ConnIo::Write { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect()
}

pub fn drain_events(peer: &mut Peer) -> Vec<Event> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

pub fn drain_transmits(peer: &mut Peer) -> Vec<highway_core::Transmit> {
    std::iter::from_fn(|| peer.poll_transmit()).collect()
}
