//! The simulation: hosts running the real core, a modelled network, the in-process
//! Gatekeeper, and one agenda that orders everything in virtual time.
//!
//! The loop pops the earliest action (a datagram arriving, a peer's wake-up, a handshake
//! frame arriving, a Gatekeeper answer, a churn arrival...), feeds it to the peer it
//! concerns as the node runtime would, then drains that peer's outputs exactly like the
//! runtime's `flush`: datagrams go onto the agenda with a delay (or are lost), events
//! become work (handshakes, Gatekeeper calls), and the peer's next deadline goes on the
//! agenda if it moved earlier. Work is proportional to what happens, never to the number
//! of peers per tick. All randomness comes from one seeded ChaCha8 stream (portable across
//! platforms), and ties in time are broken by insertion order, so a seed fixes the run.

mod calls;
mod churn;
mod faults;
mod handshake;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_core::{Command, Config, DownReason, Event, Peer};
use highway_gatekeeper::GatekeeperConfig;
use highway_wire::NodeId;
use highway_wire::peer::MAX_DATAGRAM;
use highway_wire::peer::datagram::{self, Datagram};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use churn::ChurnParams;

use crate::HostId;
use crate::agenda::Agenda;
use crate::clock::{Clock, SimTime};
use crate::gatekeeper::{GatekeeperSim, GatekeeperStats, Request, Response};
use crate::host::{Host, Life, Session};
use crate::network::{self, LatencyModel, Network, UDP_PORT};
use crate::runtime::{MAX_EARLY_DATAGRAMS, MIN_TIMER_GAP};
use handshake::{Dial, DialStep};

/// Most unhandled (application) events kept for [`Sim::drain_app_events`].
const MAX_APP_EVENTS: usize = 1 << 20;

/// Everything that fixes a run besides what the scenario does.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub seed: u64,
    /// Every peer's protocol configuration.
    pub core: Config,
    pub gatekeeper: GatekeeperConfig,
    pub latency: LatencyModel,
    /// Probability that any one datagram is lost.
    pub loss: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            seed: 1,
            core: Config::default(),
            gatekeeper: GatekeeperConfig::default(),
            latency: LatencyModel::wan(),
            loss: 0.0,
        }
    }
}

/// A change in one peer's view of one neighbour, recorded when
/// [`Sim::record_membership`] is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub at: SimTime,
    /// The peer whose view changed.
    pub host: HostId,
    pub neighbour: NodeId,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Up,
    /// The failure detector moved it to WARNING.
    Suspected,
    /// Back to OKAY after a suspicion.
    Cleared,
    Down(DownReason),
}

/// An event the simulator does not act on itself (search results, for one), kept for
/// the scenario to read.
#[derive(Debug)]
pub struct AppEvent {
    pub at: SimTime,
    pub host: HostId,
    pub event: Event,
}

/// Counters of what the simulated network and runtimes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub datagrams_sent: u64,
    pub datagrams_delivered: u64,
    pub lost_at_random: u64,
    pub lost_to_cuts: u64,
    pub sent_to_dead_hosts: u64,
    pub unroutable: u64,
    pub held_early: u64,
    pub wakeups: u64,
    pub dials: u64,
    pub dials_linked: u64,
    pub dials_full: u64,
    pub dials_rejected: u64,
    pub dials_unreachable: u64,
    pub dials_refused_busy: u64,
    pub inbound_refused_busy: u64,
    pub inbound_aborted: u64,
    pub joins: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub leaves: u64,
    pub app_events_dropped: u64,
}

#[derive(Debug)]
enum Action {
    Wake {
        host: HostId,
        epoch: u32,
    },
    Deliver {
        to: HostId,
        from: HostId,
        bytes: Vec<u8>,
    },
    Join {
        host: HostId,
        epoch: u32,
    },
    Dial {
        id: u64,
        step: DialStep,
    },
    GatekeeperGets {
        host: HostId,
        epoch: u32,
        req: Box<Request>,
    },
    GatekeeperAnswers {
        host: HostId,
        epoch: u32,
        resp: Box<Response>,
    },
    StatusTick {
        host: HostId,
        epoch: u32,
    },
    Sweep,
    Arrival,
    Departure {
        host: HostId,
        epoch: u32,
    },
}

/// A deterministic simulation of many Highway peers.
#[derive(Debug)]
pub struct Sim {
    clock: Clock,
    now: SimTime,
    rng: ChaCha8Rng,
    agenda: Agenda<Action>,
    hosts: Vec<Host>,
    net: Network,
    gatekeeper: GatekeeperSim,
    dials: HashMap<u64, Dial>,
    next_dial: u64,
    core: Config,
    stats: SimStats,
    up: usize,
    recording: bool,
    membership: Vec<Membership>,
    app_events: Vec<AppEvent>,
    churn: Option<ChurnParams>,
}

impl Sim {
    pub fn new(params: SimParams) -> Self {
        let mut net = Network::new(params.latency);
        net.loss = params.loss;
        let sweep_every = params.gatekeeper.sweep_interval;
        let mut sim = Self {
            clock: Clock::new(),
            now: SimTime::ZERO,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            agenda: Agenda::new(),
            hosts: Vec::new(),
            net,
            gatekeeper: GatekeeperSim::new(params.gatekeeper),
            dials: HashMap::new(),
            next_dial: 0,
            core: params.core,
            stats: SimStats::default(),
            up: 0,
            recording: false,
            membership: Vec::new(),
            app_events: Vec::new(),
            churn: None,
        };
        sim.agenda.push(SimTime::ZERO + sweep_every, Action::Sweep);
        sim
    }

    // ---- Looking ----------------------------------------------------------------------

    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The `Instant` the core sees for virtual time `t`.
    pub fn instant(&self, t: SimTime) -> Instant {
        self.clock.instant(t)
    }

    pub fn config(&self) -> &Config {
        &self.core
    }

    /// Hosts ever created (up or not); ids are `0..host_count()`.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts whose process runs.
    pub fn up_count(&self) -> usize {
        self.up
    }

    pub fn is_up(&self, h: HostId) -> bool {
        self.hosts[h.index()].is_up()
    }

    pub fn life(&self, h: HostId) -> Life {
        self.hosts[h.index()].life
    }

    pub fn peer(&self, h: HostId) -> &Peer {
        &self.hosts[h.index()].peer
    }

    /// When host `h`'s current process started.
    pub fn started(&self, h: HostId) -> SimTime {
        self.hosts[h.index()].started
    }

    /// `h`'s neighbours, as its NeighbourUp/NeighbourDown events describe them.
    pub fn neighbours(&self, h: HostId) -> &[(NodeId, HostId)] {
        &self.hosts[h.index()].links
    }

    pub fn hosts_up(&self) -> impl Iterator<Item = HostId> + '_ {
        (0..self.hosts.len())
            .map(HostId::from_index)
            .filter(|h| self.is_up(*h))
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    pub fn gatekeeper_stats(&self) -> &GatekeeperStats {
        &self.gatekeeper.stats
    }

    /// Entries the Gatekeeper currently counts as live.
    pub fn gatekeeper_live(&self) -> u64 {
        self.gatekeeper.live_count(self.now)
    }

    /// Actions waiting on the agenda (datagrams in flight, timers, handshake frames...).
    pub fn agenda_len(&self) -> usize {
        self.agenda.len()
    }

    /// The run's random stream, for scenario choices (which peers to crash...), so they
    /// too follow from the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    // ---- Hooks for scenarios ------------------------------------------------------------

    /// Records every change in a peer's neighbour view from now on (or stops).
    pub fn record_membership(&mut self, on: bool) {
        self.recording = on;
    }

    pub fn drain_membership(&mut self) -> Vec<Membership> {
        std::mem::take(&mut self.membership)
    }

    /// Events the simulator does not act on (search hits and ends, and any variant the
    /// core adds later), oldest first.
    pub fn drain_app_events(&mut self) -> Vec<AppEvent> {
        std::mem::take(&mut self.app_events)
    }

    /// Runs `f` on host `h`'s peer at the current instant, then sends what it queued, as
    /// a runtime does after any call. This is how a scenario starts a search.
    /// `None` when the host is not up.
    pub fn with_peer<R>(
        &mut self,
        h: HostId,
        f: impl FnOnce(&mut Peer, Instant) -> R,
    ) -> Option<R> {
        if !self.is_up(h) {
            return None;
        }
        let now = self.clock.instant(self.now);
        let out = f(&mut self.hosts[h.index()].peer, now);
        self.flush(h);
        Some(out)
    }

    /// Hands host `h`'s peer a command now.
    pub fn command(&mut self, h: HostId, cmd: Command) {
        self.with_peer(h, |peer, now| peer.handle_command(now, cmd));
    }

    // ---- Creating peers ---------------------------------------------------------------

    /// A new machine with a fresh identity and address; its peer is idle until joined.
    pub fn add_host(&mut self) -> HostId {
        let h = HostId::from_index(self.hosts.len());
        let key_seed: [u8; 32] = self.rng.random();
        let peer_seed: u64 = self.rng.random();
        self.net.add_host(&mut self.rng);
        let peer = Peer::new(
            self.core.clone(),
            SigningKey::from_bytes(&key_seed),
            network::addr_of(h),
            peer_seed,
            self.clock.instant(self.now),
        );
        self.hosts.push(Host {
            peer,
            key_seed,
            life: Life::Up,
            epoch: 0,
            timer: None,
            last_wake: None,
            links: Vec::new(),
            early: Vec::new(),
            dials: 0,
            inbound: 0,
            session: Session::default(),
            started: self.now,
        });
        self.up += 1;
        h
    }

    /// Has `h` join the overlay at `at` (not before now).
    pub fn join_at(&mut self, h: HostId, at: SimTime) {
        let epoch = self.hosts[h.index()].epoch;
        self.agenda
            .push(at.max(self.now), Action::Join { host: h, epoch });
    }

    // ---- Running ----------------------------------------------------------------------

    /// Runs everything due up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: SimTime) {
        while self.agenda.next_at().is_some_and(|at| at <= t) {
            let Some((at, action)) = self.agenda.pop() else {
                break;
            };
            self.now = at;
            self.dispatch(at, action);
        }
        self.now = self.now.max(t);
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    fn dispatch(&mut self, at: SimTime, action: Action) {
        match action {
            Action::Wake { host, epoch } => self.wake(at, host, epoch),
            Action::Deliver { to, from, bytes } => self.deliver(to, from, bytes),
            Action::Join { host, epoch } => {
                if self.current(host, epoch) {
                    self.stats.joins += 1;
                    self.hosts[host.index()].started = at;
                    self.command(host, Command::Join);
                }
            }
            Action::Dial { id, step } => self.dial_step(id, step),
            Action::GatekeeperGets { host, epoch, req } => self.gatekeeper_gets(host, epoch, *req),
            Action::GatekeeperAnswers { host, epoch, resp } => {
                self.gatekeeper_answers(host, epoch, *resp);
            }
            Action::StatusTick { host, epoch } => self.status_tick(host, epoch),
            Action::Sweep => {
                self.gatekeeper.sweep(at);
                let next = at + self.gatekeeper.config.sweep_interval;
                self.agenda.push(next, Action::Sweep);
            }
            Action::Arrival => self.churn_arrival(),
            Action::Departure { host, epoch } => self.churn_departure(host, epoch),
        }
    }

    /// True when `h` is up and still the process `epoch` refers to.
    fn current(&self, h: HostId, epoch: u32) -> bool {
        let host = &self.hosts[h.index()];
        host.is_up() && host.epoch == epoch
    }

    fn wake(&mut self, at: SimTime, h: HostId, epoch: u32) {
        let host = &mut self.hosts[h.index()];
        // Only the wake-up the host is waiting for: an earlier process's, or one
        // superseded by an earlier deadline that already ran, is stale.
        if !host.is_up() || host.epoch != epoch || host.timer != Some(at) {
            return;
        }
        host.timer = None;
        host.last_wake = Some(at);
        self.stats.wakeups += 1;
        let now = self.clock.instant(at);
        host.peer.handle_timeout(now);
        self.flush(h);
    }

    /// Puts `h`'s next deadline on the agenda if it is earlier than the one already
    /// there, never sooner than the runtime's minimum gap after the last wake-up. A later
    /// deadline leaves the earlier wake-up in place: waking early is harmless, and it
    /// saves a heap entry per datagram.
    fn reschedule(&mut self, h: HostId) {
        if !self.is_up(h) {
            return;
        }
        let Some(at) = self.next_wake(h) else {
            return;
        };
        let host = &mut self.hosts[h.index()];
        if host.timer.is_none_or(|t| at < t) {
            host.timer = Some(at);
            let epoch = host.epoch;
            self.agenda.push(at, Action::Wake { host: h, epoch });
        }
    }

    /// Sends what `h`'s peer queued and acts on its events until both queues are empty,
    /// like the runtime's `flush`, then schedules its next wake-up.
    fn flush(&mut self, h: HostId) {
        self.drain_outputs(h);
        self.reschedule(h);
    }

    /// The runtime's `flush` without the rescheduling; true when the peer had output.
    fn drain_outputs(&mut self, h: HostId) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(t) = self.hosts[h.index()].peer.poll_transmit() {
                progressed = true;
                self.send(h, t.to, t.bytes);
            }
            while let Some(event) = self.hosts[h.index()].peer.poll_event() {
                progressed = true;
                self.on_event(h, event);
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    /// After a datagram: a peer that sent nothing and said nothing scheduled nothing new
    /// (any new timer in the core comes with a datagram or an event), so the wake-up on
    /// the agenda still stands and asking again (`poll_timeout`, ~10% of a large run)
    /// can be skipped. Debug builds check that premise every time.
    fn flush_after_datagram(&mut self, h: HostId) {
        if self.drain_outputs(h) || self.hosts[h.index()].timer.is_none() {
            self.reschedule(h);
            return;
        }
        debug_assert!(
            self.next_wake(h)
                .zip(self.hosts[h.index()].timer)
                .is_none_or(|(next, timer)| next >= timer),
            "host {h:?}: a datagram without output moved its deadline earlier"
        );
    }

    /// When `h` wants to be woken: its core's deadline, never in the past nor sooner than
    /// the runtime's minimum gap after the last wake-up.
    fn next_wake(&self, h: HostId) -> Option<SimTime> {
        let host = &self.hosts[h.index()];
        let at = host.peer.poll_timeout()?;
        let mut at = self.clock.sim_time(at).max(self.now);
        if let Some(last) = host.last_wake {
            at = at.max(last + MIN_TIMER_GAP);
        }
        Some(at)
    }

    fn send(&mut self, from: HostId, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        let Some(dest) = network::host_at(to, UDP_PORT).filter(|d| d.index() < self.hosts.len())
        else {
            self.stats.unroutable += 1;
            return;
        };
        if self.net.cut(from, dest) {
            self.stats.lost_to_cuts += 1;
            return;
        }
        if self.net.lose(&mut self.rng) {
            self.stats.lost_at_random += 1;
            return;
        }
        let delay = self.net.one_way(from, dest, &mut self.rng);
        self.agenda.push(
            self.now + delay,
            Action::Deliver {
                to: dest,
                from,
                bytes,
            },
        );
    }

    fn deliver(&mut self, to: HostId, from: HostId, bytes: Vec<u8>) {
        let from = network::addr_of(from).udp_addr();
        let host = &mut self.hosts[to.index()];
        if !host.is_up() {
            self.stats.sent_to_dead_hosts += 1;
            return;
        }
        // As the runtime does: link traffic for a handshake we dialled that has not
        // reported yet is held, or the core would answer "not your neighbour".
        if !host.early.is_empty()
            && bytes.len() <= MAX_DATAGRAM
            && let Ok(Datagram::Link(frame)) = datagram::decode(&bytes)
            && let Some((_, held)) = host.early.iter_mut().find(|(id, _)| *id == frame.link_id)
        {
            self.stats.held_early += 1;
            if held.len() < MAX_EARLY_DATAGRAMS {
                held.push((from, bytes));
            }
            return;
        }
        self.stats.datagrams_delivered += 1;
        let now = self.clock.instant(self.now);
        host.peer.handle_datagram(now, from, &bytes);
        self.flush_after_datagram(to);
    }

    fn record(&mut self, host: HostId, neighbour: NodeId, change: Change) {
        if self.recording {
            self.membership.push(Membership {
                at: self.now,
                host,
                neighbour,
                change,
            });
        }
    }

    fn on_event(&mut self, h: HostId, event: Event) {
        match event {
            Event::GatekeeperJoin => self.gatekeeper_join(h),
            Event::Connect {
                my_link_id,
                addr,
                expected,
                initiator,
                hello,
            } => self.start_dial(h, my_link_id, addr, expected, initiator, hello),
            Event::NeighbourUp { id, addr } => {
                if let Some(n) = network::host_at(addr.udp_addr(), UDP_PORT) {
                    self.hosts[h.index()].links.push((id, n));
                }
                self.record(h, id, Change::Up);
            }
            Event::NeighbourDown { id, reason } => {
                self.hosts[h.index()].links.retain(|(n, _)| *n != id);
                self.record(h, id, Change::Down(reason));
            }
            Event::StateChanged { id, state } => {
                let change = if state == "warning" {
                    Change::Suspected
                } else {
                    Change::Cleared
                };
                self.record(h, id, change);
            }
            Event::ReportFailed { id } => self.gatekeeper_report(h, id),
            Event::GatekeeperLeave => self.gatekeeper_leave(h),
            // Search results and whatever the core adds later: the scenario's business.
            #[allow(unreachable_patterns)]
            event => {
                if self.app_events.len() >= MAX_APP_EVENTS {
                    self.stats.app_events_dropped += 1;
                } else {
                    self.app_events.push(AppEvent {
                        at: self.now,
                        host: h,
                        event,
                    });
                }
            }
        }
    }
}
