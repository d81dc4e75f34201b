//! The simulation: hosts running the real core, a modelled network, the in-process
//! Gatekeeper, and agendas that order everything in virtual time.
//!
//! The hosts are split between two shards (host `h` in shard `h % 2`), each with its own
//! agenda and random stream; a coordinator owns the Gatekeeper, the arrival of new peers
//! and its own random stream for scenario choices. Time advances in windows no longer
//! than the network's floor delay (see [`windows`]), so shards run side by side — on two
//! threads when [`Sim::set_threads`] allows — without ever seeing each other's work
//! early. Work is proportional to what happens, never to the number of peers per tick.
//! Randomness is seeded ChaCha8 (portable across platforms) and ties in time are broken by
//! insertion order, so a seed fixes the run bit for bit, whatever the thread count.

mod calls;
mod churn;
pub(crate) mod conns;
mod faults;
mod nat;
mod shard;
mod windows;
mod world;

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_core::{Command, Config, DownReason, Event, Peer};
use highway_gatekeeper::GatekeeperConfig;
use highway_wire::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use churn::ChurnParams;
pub(crate) use nat::Mappings;

use crate::HostId;
use crate::agenda::Agenda;
use crate::clock::{Clock, SimTime};
use crate::gatekeeper::{GatekeeperSim, GatekeeperStats, Request, Response};
use crate::host::{Host, Life, Session};
use crate::network::{self, LatencyModel, Network};
use shard::{Action, Shard, shard_of};
use world::World;

/// Shards the hosts are split into. Fixed, so a run does not depend on the machine.
pub(crate) const SHARDS: usize = 2;

/// Everything that fixes a run besides what the scenario does.
#[derive(Debug, Clone)]
pub struct SimParams {
    pub seed: u64,
    /// Every peer's protocol configuration.
    pub core: Config,
    pub gatekeeper: GatekeeperConfig,
    pub latency: LatencyModel,
    /// Probability that any one datagram (or TCP segment) is lost.
    pub loss: f64,
    /// Fraction of hosts behind a NAT (see `nat.rs`): they cannot be dialled, and take
    /// datagrams only from hosts they sent to lately.
    pub nat: f64,
    /// The maximum degree of the hosts that can be dialled, when it should differ from
    /// `core.max_degree` (each NAT'd peer takes slots only on dialable ones).
    pub public_max_degree: Option<usize>,
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            seed: 1,
            core: Config::default(),
            gatekeeper: GatekeeperConfig::default(),
            latency: LatencyModel::wan(),
            loss: 0.0,
            nat: 0.0,
            public_max_degree: None,
        }
    }
}

/// A change in one peer's view of one neighbour, recorded while
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
    /// Dropped by a NAT with no mapping toward the sender.
    pub nat_filtered: u64,
    pub sent_to_dead_hosts: u64,
    pub unroutable: u64,
    /// Link datagrams the cores held for a dial not yet established (they read them
    /// once it is).
    pub held_early: u64,
    pub wakeups: u64,
    pub dials: u64,
    pub dials_linked: u64,
    pub dials_full: u64,
    pub dials_rejected: u64,
    pub dials_unreachable: u64,
    pub inbound_refused_busy: u64,
    pub inbound_aborted: u64,
    pub inbound_hello_timeouts: u64,
    pub joins: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub leaves: u64,
    pub app_events_dropped: u64,
}

impl SimStats {
    /// Adds the connection counters of one core (they live there, as in a node).
    pub(crate) fn absorb(&mut self, core: &highway_core::Stats) {
        self.held_early += core.early_link_datagrams;
        self.dials += core.dials_started;
        self.dials_linked += core.dials_linked;
        self.dials_full += core.dials_full;
        self.dials_rejected += core.dials_rejected + core.dial_bad_welcomes;
        self.dials_unreachable += core.dials_unanswered;
        self.inbound_refused_busy += core.inbound_refused_busy + core.inbound_refused_per_ip;
        self.inbound_aborted += core.inbound_failed;
        self.inbound_hello_timeouts += core.inbound_hello_timeouts;
    }

    fn add(&mut self, o: &SimStats) {
        let pairs = [
            (&mut self.datagrams_sent, o.datagrams_sent),
            (&mut self.datagrams_delivered, o.datagrams_delivered),
            (&mut self.lost_at_random, o.lost_at_random),
            (&mut self.lost_to_cuts, o.lost_to_cuts),
            (&mut self.nat_filtered, o.nat_filtered),
            (&mut self.sent_to_dead_hosts, o.sent_to_dead_hosts),
            (&mut self.unroutable, o.unroutable),
            (&mut self.held_early, o.held_early),
            (&mut self.wakeups, o.wakeups),
            (&mut self.dials, o.dials),
            (&mut self.dials_linked, o.dials_linked),
            (&mut self.dials_full, o.dials_full),
            (&mut self.dials_rejected, o.dials_rejected),
            (&mut self.dials_unreachable, o.dials_unreachable),
            (&mut self.inbound_refused_busy, o.inbound_refused_busy),
            (&mut self.inbound_aborted, o.inbound_aborted),
            (&mut self.inbound_hello_timeouts, o.inbound_hello_timeouts),
            (&mut self.joins, o.joins),
            (&mut self.crashes, o.crashes),
            (&mut self.restarts, o.restarts),
            (&mut self.leaves, o.leaves),
            (&mut self.app_events_dropped, o.app_events_dropped),
        ];
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
    }
}

/// What the coordinator schedules for the Gatekeeper.
#[derive(Debug)]
enum GatekeeperItem {
    Request {
        host: HostId,
        epoch: u32,
        req: Box<Request>,
    },
    Sweep,
}

/// What belongs to no shard: the Gatekeeper, arrivals, scenario choices.
#[derive(Debug)]
struct Coordinator {
    rng: ChaCha8Rng,
    gatekeeper: GatekeeperSim,
    requests: Agenda<GatekeeperItem>,
    next_arrival: Option<SimTime>,
    hosts: usize,
}

impl Coordinator {
    /// Handles what reaches the Gatekeeper before `end`, in time order; answers go to
    /// the hosts' shards (a floor delay later, so after this window).
    fn run_gatekeeper(&mut self, world: &World, shards: &mut [&mut Shard; SHARDS], end: SimTime) {
        while self.requests.next_at().is_some_and(|at| at < end) {
            let Some((at, item)) = self.requests.pop() else {
                break;
            };
            match item {
                GatekeeperItem::Sweep => {
                    self.gatekeeper.sweep(at);
                    let next = at + self.gatekeeper.config.sweep_interval;
                    self.requests.push(next, GatekeeperItem::Sweep);
                }
                GatekeeperItem::Request { host, epoch, req } => {
                    let (resp, answer_at) = if world.gatekeeper_up {
                        let resp = self.gatekeeper.handle(at, *req, &mut self.rng);
                        (resp, at + world.net.to_gatekeeper(host, &mut self.rng))
                    } else {
                        // It went down while the request travelled: the client times out.
                        let resp = Response::NoAnswer(req.kind());
                        (resp, at + crate::runtime::GATEKEEPER_GIVE_UP)
                    };
                    let resp = Box::new(resp);
                    let answer = Action::GatekeeperAnswers { host, epoch, resp };
                    shards[shard_of(host)].agenda.push(answer_at, answer);
                }
            }
        }
    }

    /// Lets the peers arriving before `end` (churn) join.
    fn run_arrivals(&mut self, world: &mut World, shards: &mut [&mut Shard; SHARDS], end: SimTime) {
        while let Some(at) = self.next_arrival.filter(|&at| at < end) {
            let Some(params) = world.churn.clone() else {
                self.next_arrival = None;
                return;
            };
            self.next_arrival = Some(at + churn::next_arrival(&params, &mut self.rng));
            let h = self.new_host(world, shards, at);
            let shard = &mut shards[shard_of(h)];
            shard.agenda.push(at, Action::Join { host: h, epoch: 0 });
            let until = churn::session_end(&params, &mut self.rng, at);
            shard.schedule_departure(h, until);
        }
    }

    /// A new machine with a fresh identity and address; its peer is idle until joined.
    fn new_host(
        &mut self,
        world: &mut World,
        shards: &mut [&mut Shard; SHARDS],
        at: SimTime,
    ) -> HostId {
        let h = HostId::from_index(self.hosts);
        self.hosts += 1;
        let key_seed: [u8; 32] = self.rng.random();
        let peer_seed: u64 = self.rng.random();
        world.net.add_host(&mut self.rng);
        // Drawn only when NATs are modelled, so runs without them stay bit for bit.
        let behind_nat = world.nat > 0.0 && self.rng.random::<f64>() < world.nat;
        world.behind_nat.push(behind_nat);
        let config = if behind_nat {
            world.core.clone()
        } else {
            world.public_core.clone()
        };
        let mut peer = Peer::new(
            config,
            SigningKey::from_bytes(&key_seed),
            network::addr_of(h),
            peer_seed,
            world.clock.instant(at),
        );
        peer.set_dialable(!behind_nat);
        let shard = &mut shards[shard_of(h)];
        debug_assert_eq!(shard.hosts.len(), h.index() / SHARDS);
        shard.hosts.push(Host {
            peer,
            key_seed,
            life: Life::Up,
            epoch: 0,
            timer: None,
            last_wake: None,
            links: Vec::new(),
            conns: std::collections::HashMap::new(),
            session: Session::default(),
            started: at,
            nat: behind_nat.then(Mappings::default),
        });
        shard.up += 1;
        h
    }
}

/// A deterministic simulation of many Highway peers.
#[derive(Debug)]
pub struct Sim {
    now: SimTime,
    world: World,
    shards: Vec<Shard>,
    coord: Coordinator,
    threads: usize,
}

impl Sim {
    pub fn new(params: SimParams) -> Self {
        let mut net = Network::new(params.latency);
        net.loss = params.loss;
        let shard_rng = |i: usize| {
            let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
            rng.set_stream(1 + i as u64);
            rng
        };
        let public_core = Config {
            max_degree: params.public_max_degree.unwrap_or(params.core.max_degree),
            ..params.core.clone()
        };
        let mut requests = Agenda::new();
        requests.push(
            SimTime::ZERO + params.gatekeeper.sweep_interval,
            GatekeeperItem::Sweep,
        );
        Self {
            now: SimTime::ZERO,
            world: World {
                clock: Clock::new(),
                net,
                core: params.core,
                gatekeeper: params.gatekeeper.clone(),
                gatekeeper_up: true,
                recording: false,
                churn: None,
                public_core,
                nat: params.nat,
                behind_nat: Vec::new(),
            },
            shards: (0..SHARDS).map(|i| Shard::new(i, shard_rng(i))).collect(),
            coord: Coordinator {
                rng: ChaCha8Rng::seed_from_u64(params.seed),
                gatekeeper: GatekeeperSim::new(params.gatekeeper),
                requests,
                next_arrival: None,
                hosts: 0,
            },
            threads: 1,
        }
    }

    /// Runs the shards on this many threads (1 or 2). The run is the same either way;
    /// only its speed differs.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, SHARDS);
    }

    fn shard(&self, h: HostId) -> &Shard {
        &self.shards[shard_of(h)]
    }

    /// `h`'s shard, brought to the current instant, and the world, for a scenario's call.
    fn shard_mut(&mut self, h: HostId) -> (&mut Shard, &World) {
        let shard = &mut self.shards[shard_of(h)];
        shard.now = self.now;
        (shard, &self.world)
    }

    fn host(&self, h: HostId) -> &Host {
        self.shard(h).host(h)
    }

    // ---- Looking ----------------------------------------------------------------------

    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The `Instant` the core sees for virtual time `t`.
    pub fn instant(&self, t: SimTime) -> Instant {
        self.world.clock.instant(t)
    }

    pub fn config(&self) -> &Config {
        &self.world.core
    }

    /// Hosts ever created (up or not); ids are `0..host_count()`.
    pub fn host_count(&self) -> usize {
        self.coord.hosts
    }

    /// Hosts whose process runs.
    pub fn up_count(&self) -> usize {
        self.shards.iter().map(|s| s.up).sum()
    }

    pub fn is_up(&self, h: HostId) -> bool {
        self.host(h).is_up()
    }

    pub fn life(&self, h: HostId) -> Life {
        self.host(h).life
    }

    pub fn peer(&self, h: HostId) -> &Peer {
        &self.host(h).peer
    }

    /// When host `h`'s current process started (joined or restarted).
    pub fn started(&self, h: HostId) -> SimTime {
        self.host(h).started
    }

    /// `h`'s neighbours, as its NeighbourUp/NeighbourDown events describe them.
    pub fn neighbours(&self, h: HostId) -> &[(NodeId, HostId)] {
        &self.host(h).links
    }

    pub fn hosts_up(&self) -> impl Iterator<Item = HostId> + '_ {
        (0..self.host_count())
            .map(HostId::from_index)
            .filter(|h| self.is_up(*h))
    }

    pub fn stats(&self) -> SimStats {
        let mut total = SimStats::default();
        for s in &self.shards {
            total.add(&s.stats);
            // Processes still running: their counters are still in their cores.
            for host in s.hosts.iter().filter(|h| h.is_up()) {
                total.absorb(host.peer.stats());
            }
        }
        total
    }

    pub fn gatekeeper_stats(&self) -> &GatekeeperStats {
        &self.coord.gatekeeper.stats
    }

    /// Entries the Gatekeeper currently counts as live.
    pub fn gatekeeper_live(&self) -> u64 {
        self.coord.gatekeeper.live_count(self.now)
    }

    /// Actions waiting (datagrams in flight, timers, handshake frames, requests...).
    pub fn agenda_len(&self) -> usize {
        self.shards.iter().map(|s| s.agenda.len()).sum::<usize>() + self.coord.requests.len()
    }

    /// The scenario's random stream (which peers to crash...), so its choices too follow
    /// from the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.coord.rng
    }

    // ---- Hooks for scenarios ------------------------------------------------------------

    /// Records every change in a peer's neighbour view from now on (or stops).
    pub fn record_membership(&mut self, on: bool) {
        self.world.recording = on;
    }

    /// The changes recorded since the last call, in time order.
    pub fn drain_membership(&mut self) -> Vec<Membership> {
        let mut all: Vec<Membership> = self
            .shards
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.membership))
            .collect();
        all.sort_by_key(|m| m.at);
        all
    }

    /// Events the simulator does not act on (search hits and ends, and any variant the
    /// core adds later), in time order.
    pub fn drain_app_events(&mut self) -> Vec<AppEvent> {
        let mut all: Vec<AppEvent> = self
            .shards
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.app_events))
            .collect();
        all.sort_by_key(|e| e.at);
        all
    }

    /// Runs `f` on host `h`'s peer at the current instant, then sends what it queued, as
    /// a runtime does after any call. This is how a scenario starts a search. `None` when
    /// the host is not up.
    pub fn with_peer<R>(
        &mut self,
        h: HostId,
        f: impl FnOnce(&mut Peer, Instant) -> R,
    ) -> Option<R> {
        let (shard, world) = self.shard_mut(h);
        shard.with_peer(world, h, f)
    }

    /// Hands host `h`'s peer a command now.
    pub fn command(&mut self, h: HostId, cmd: Command) {
        let (shard, world) = self.shard_mut(h);
        shard.command(world, h, cmd);
    }

    // ---- Creating peers and running ---------------------------------------------------

    /// A new machine with a fresh identity and address; its peer is idle until joined.
    pub fn add_host(&mut self) -> HostId {
        let [s0, s1] = &mut self.shards[..] else {
            unreachable!("SHARDS is 2");
        };
        self.coord
            .new_host(&mut self.world, &mut [s0, s1], self.now)
    }

    /// Has `h` join the overlay at `at` (not before now).
    pub fn join_at(&mut self, h: HostId, at: SimTime) {
        let now = self.now;
        let (shard, _) = self.shard_mut(h);
        let epoch = shard.host(h).epoch;
        shard
            .agenda
            .push(at.max(now), Action::Join { host: h, epoch });
    }

    /// Runs everything due up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: SimTime) {
        if t < self.now {
            return;
        }
        if self.threads >= 2 {
            windows::run_parallel(&mut self.coord, &mut self.world, &mut self.shards, t);
        } else {
            windows::run_serial(&mut self.coord, &mut self.world, &mut self.shards, t);
        }
        self.now = t;
        for s in &mut self.shards {
            s.now = t;
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    // ---- Faults -----------------------------------------------------------------------

    /// The machine dies at once: no goodbye, no TCP reset; what is in flight to it is
    /// lost.
    pub fn crash(&mut self, h: HostId) {
        self.shard_mut(h).0.crash(h);
    }

    /// The peer leaves gracefully (Leave to its neighbours, leave to the Gatekeeper) and
    /// its process exits.
    pub fn leave(&mut self, h: HostId) {
        let (shard, world) = self.shard_mut(h);
        shard.leave(world, h);
    }

    /// A new process on `h`'s machine, with the same identity and address and no other
    /// state, joins at once (a running one is crashed first).
    pub fn restart(&mut self, h: HostId) {
        let seed: u64 = self.coord.rng.random();
        let (shard, world) = self.shard_mut(h);
        shard.restart(world, h, seed);
    }

    /// Probability that a datagram (or TCP segment, which is then retransmitted) is lost.
    pub fn set_loss(&mut self, loss: f64) {
        self.world.net.loss = loss;
    }

    pub fn loss(&self) -> f64 {
        self.world.net.loss
    }

    /// Puts `h` in partition group `group` (every host starts in group 0, with the
    /// Gatekeeper).
    pub fn set_group(&mut self, h: HostId, group: u16) {
        self.world.net.set_group(h, group);
    }

    /// Nothing from group `from` reaches group `to` any more (a one-way partition).
    pub fn cut_one_way(&mut self, from: u16, to: u16) {
        self.world.net.cut_groups(from, to);
    }

    /// Nothing passes between groups `a` and `b`, either way.
    pub fn cut(&mut self, a: u16, b: u16) {
        self.world.net.cut_groups(a, b);
        self.world.net.cut_groups(b, a);
    }

    /// Lifts every cut.
    pub fn heal(&mut self) {
        self.world.net.heal();
    }

    /// Takes the Gatekeeper down (calls go unanswered) or brings it back; its registry
    /// survives, as with a journaled store.
    pub fn set_gatekeeper_up(&mut self, up: bool) {
        self.world.gatekeeper_up = up;
    }

    // ---- Churn ------------------------------------------------------------------------

    /// Starts arrivals (from now) and honours sessions given with [`Sim::give_session`].
    pub fn start_churn(&mut self, params: ChurnParams) {
        let first = churn::next_arrival(&params, &mut self.coord.rng);
        self.coord.next_arrival = Some(self.now + first);
        self.world.churn = Some(params);
    }

    /// No more arrivals or departures.
    pub fn stop_churn(&mut self) {
        self.world.churn = None;
        self.coord.next_arrival = None;
    }

    /// Gives `h` a random session starting now; it departs when the session ends (while
    /// churn runs).
    pub fn give_session(&mut self, h: HostId) {
        let Some(params) = self.world.churn.clone() else {
            return;
        };
        let until = churn::session_end(&params, &mut self.coord.rng, self.now);
        self.shard_mut(h).0.schedule_departure(h, until);
    }
}
