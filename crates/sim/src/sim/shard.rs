//! A shard: a share of the hosts with its own agenda and random stream. Within a window
//! it only touches its own hosts and reads the [`World`]; anything for another shard or
//! the Gatekeeper goes to its outbox, delivered between windows. That is what lets two
//! shards run at once and still give the same run whatever thread runs them.
//!
//! Feeding an action to a peer follows the node runtime: call the core with the current
//! instant, then drain its outputs like the runtime's `flush` — datagrams onto the
//! network (lost, cut, or delivered after a delay), events turned into work (handshakes,
//! Gatekeeper calls) — and put its next deadline on the agenda if it moved earlier.

use std::net::SocketAddr;

use highway_core::{Command, Event, Peer};
use highway_wire::NodeId;
use rand_chacha::ChaCha8Rng;

use super::conns::{End, Segment};
use super::world::World;
use super::{AppEvent, Change, Membership, SHARDS, SimStats};
use crate::HostId;
use crate::agenda::Agenda;
use crate::clock::SimTime;
use crate::gatekeeper::{Request, Response};
use crate::host::Host;
use crate::network::{self, UDP_PORT};
use crate::runtime::MIN_TIMER_GAP;

/// Most unhandled (application) events a shard keeps for the scenario.
const MAX_APP_EVENTS: usize = 1 << 19;

/// What happens to a host of this shard at an instant.
#[derive(Debug)]
pub(crate) enum Action {
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
    /// A TCP segment reaches host `to`: end `dest` of its connection (none for a SYN).
    Segment {
        to: HostId,
        dest: Option<End>,
        segment: Segment,
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
    Departure {
        host: HostId,
        epoch: u32,
    },
}

/// Something that leaves a shard: an action for a host of another shard, or a request
/// for the Gatekeeper.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Host(HostId, Action),
    Gatekeeper {
        host: HostId,
        epoch: u32,
        req: Box<Request>,
    },
}

#[derive(Debug)]
pub(crate) struct Shard {
    pub index: usize,
    pub now: SimTime,
    pub rng: ChaCha8Rng,
    pub agenda: Agenda<Action>,
    /// Host `h` of this shard is `hosts[h / SHARDS]`.
    pub hosts: Vec<Host>,
    pub stats: SimStats,
    pub up: usize,
    pub outbox: Vec<(SimTime, Outgoing)>,
    pub membership: Vec<Membership>,
    pub app_events: Vec<AppEvent>,
}

/// The shard that owns host `h`.
pub(crate) fn shard_of(h: HostId) -> usize {
    h.index() % SHARDS
}

impl Shard {
    pub fn new(index: usize, rng: ChaCha8Rng) -> Self {
        Self {
            index,
            now: SimTime::ZERO,
            rng,
            agenda: Agenda::new(),
            hosts: Vec::new(),
            stats: SimStats::default(),
            up: 0,
            outbox: Vec::new(),
            membership: Vec::new(),
            app_events: Vec::new(),
        }
    }

    pub fn host(&self, h: HostId) -> &Host {
        &self.hosts[h.index() / SHARDS]
    }

    pub fn host_mut(&mut self, h: HostId) -> &mut Host {
        &mut self.hosts[h.index() / SHARDS]
    }

    /// True when `h` is up and still the process `epoch` refers to.
    pub fn current(&self, h: HostId, epoch: u32) -> bool {
        let host = self.host(h);
        host.is_up() && host.epoch == epoch
    }

    /// Puts `action` on the agenda of whichever shard owns `to`.
    pub fn send_to(&mut self, at: SimTime, to: HostId, action: Action) {
        if shard_of(to) == self.index {
            self.agenda.push(at, action);
        } else {
            self.outbox.push((at, Outgoing::Host(to, action)));
        }
    }

    /// Runs every action due before `end`.
    pub fn run_window(&mut self, world: &World, end: SimTime) {
        while self.agenda.next_at().is_some_and(|at| at < end) {
            let Some((at, action)) = self.agenda.pop() else {
                break;
            };
            self.now = at;
            self.dispatch(world, at, action);
        }
    }

    fn dispatch(&mut self, world: &World, at: SimTime, action: Action) {
        match action {
            Action::Wake { host, epoch } => self.wake(world, at, host, epoch),
            Action::Deliver { to, from, bytes } => self.deliver(world, to, from, bytes),
            Action::Join { host, epoch } => {
                if self.current(host, epoch) {
                    self.stats.joins += 1;
                    self.host_mut(host).started = at;
                    self.command(world, host, Command::Join);
                }
            }
            Action::Segment { to, dest, segment } => self.on_segment(world, to, dest, segment),
            Action::GatekeeperAnswers { host, epoch, resp } => {
                self.gatekeeper_answers(world, host, epoch, *resp);
            }
            Action::StatusTick { host, epoch } => self.status_tick(world, host, epoch),
            Action::Departure { host, epoch } => self.departure(world, host, epoch),
        }
    }

    /// Hands `h`'s peer a command now and sends what it queued.
    pub fn command(&mut self, world: &World, h: HostId, cmd: Command) {
        if !self.host(h).is_up() {
            return;
        }
        let now = world.clock.instant(self.now);
        self.host_mut(h).peer.handle_command(now, cmd);
        self.flush(world, h);
    }

    /// Runs `f` on `h`'s peer now, then sends what it queued.
    pub fn with_peer<R>(
        &mut self,
        world: &World,
        h: HostId,
        f: impl FnOnce(&mut Peer, std::time::Instant) -> R,
    ) -> Option<R> {
        if !self.host(h).is_up() {
            return None;
        }
        let now = world.clock.instant(self.now);
        let out = f(&mut self.host_mut(h).peer, now);
        self.flush(world, h);
        Some(out)
    }

    fn wake(&mut self, world: &World, at: SimTime, h: HostId, epoch: u32) {
        let host = self.host_mut(h);
        // Only the wake-up the host is waiting for: an earlier process's, or one
        // superseded by an earlier deadline that already ran, is stale.
        if !host.is_up() || host.epoch != epoch || host.timer != Some(at) {
            return;
        }
        host.timer = None;
        host.last_wake = Some(at);
        host.peer.handle_timeout(world.clock.instant(at));
        self.stats.wakeups += 1;
        self.flush(world, h);
    }

    /// When `h` wants to be woken: its core's deadline, never in the past nor sooner than
    /// the runtime's minimum gap after the last wake-up.
    fn next_wake(&self, world: &World, h: HostId) -> Option<SimTime> {
        let host = self.host(h);
        let at = host.peer.poll_timeout()?;
        let mut at = world.clock.sim_time(at).max(self.now);
        if let Some(last) = host.last_wake {
            at = at.max(last + MIN_TIMER_GAP);
        }
        Some(at)
    }

    /// Puts `h`'s next deadline on the agenda if it is earlier than the one already
    /// there. A later deadline leaves the earlier wake-up in place: waking early is
    /// harmless, and it saves a heap entry per datagram.
    fn reschedule(&mut self, world: &World, h: HostId) {
        if !self.host(h).is_up() {
            return;
        }
        let Some(at) = self.next_wake(world, h) else {
            return;
        };
        let host = self.host_mut(h);
        if host.timer.is_none_or(|t| at < t) {
            host.timer = Some(at);
            let epoch = host.epoch;
            self.agenda.push(at, Action::Wake { host: h, epoch });
        }
    }

    /// Sends what `h`'s peer queued and acts on its events, like the runtime's `flush`,
    /// then schedules its next wake-up.
    pub fn flush(&mut self, world: &World, h: HostId) {
        self.drain_outputs(world, h);
        self.reschedule(world, h);
    }

    /// The runtime's `flush` without the rescheduling; true when the peer had output.
    fn drain_outputs(&mut self, world: &World, h: HostId) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(t) = self.host_mut(h).peer.poll_transmit() {
                progressed = true;
                self.send_datagram(world, h, t.to, t.bytes);
            }
            while let Some(io) = self.host_mut(h).peer.poll_conn() {
                progressed = true;
                self.on_conn_io(world, h, io);
            }
            while let Some(event) = self.host_mut(h).peer.poll_event() {
                progressed = true;
                self.on_event(world, h, event);
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    /// After a datagram: a peer that sent nothing and said nothing scheduled nothing new
    /// (a new timer in the core comes with a datagram or an event, or the core says so
    /// with `take_quiet_timer`), so the wake-up on the agenda still stands and asking
    /// again (`poll_timeout`, a tenth of a large run) can be skipped. Debug builds check
    /// that premise every time.
    fn flush_after_datagram(&mut self, world: &World, h: HostId) {
        let output = self.drain_outputs(world, h);
        let quiet_timer = self.host_mut(h).peer.take_quiet_timer();
        if output || quiet_timer || self.host(h).timer.is_none() {
            self.reschedule(world, h);
            return;
        }
        debug_assert!(
            self.next_wake(world, h)
                .zip(self.host(h).timer)
                .is_none_or(|(next, timer)| next >= timer),
            "host {h:?}: a datagram without output moved its deadline earlier"
        );
    }

    fn send_datagram(&mut self, world: &World, from: HostId, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        let Some(dest) = network::host_at(to, UDP_PORT).filter(|d| world.net.knows(*d)) else {
            self.stats.unroutable += 1;
            return;
        };
        if world.net.cut(from, dest) {
            self.stats.lost_to_cuts += 1;
            return;
        }
        // A NAT'd sender opens (or refreshes) its mapping toward the destination.
        let now = self.now;
        if let Some(nat) = self.host_mut(from).nat.as_mut() {
            nat.sent(dest, now);
        }
        if world.net.lose(&mut self.rng) {
            self.stats.lost_at_random += 1;
            return;
        }
        let at = self.now + world.net.one_way(from, dest, &mut self.rng);
        let deliver = Action::Deliver {
            to: dest,
            from,
            bytes,
        };
        self.send_to(at, dest, deliver);
    }

    fn deliver(&mut self, world: &World, to: HostId, from: HostId, bytes: Vec<u8>) {
        let sim_now = self.now;
        if self.hosts[to.index() / SHARDS]
            .nat
            .as_ref()
            .is_some_and(|nat| !nat.admits(from, sim_now))
        {
            // The NAT has no mapping toward the sender: the datagram is dropped.
            self.stats.nat_filtered += 1;
            return;
        }
        let from = network::addr_of(from).udp_addr();
        let now = world.clock.instant(self.now);
        let host = &mut self.hosts[to.index() / SHARDS];
        if !host.is_up() {
            self.stats.sent_to_dead_hosts += 1;
            return;
        }
        self.stats.datagrams_delivered += 1;
        host.peer.handle_datagram(now, from, &bytes);
        self.flush_after_datagram(world, to);
    }

    fn record(&mut self, world: &World, host: HostId, neighbour: NodeId, change: Change) {
        if world.recording {
            self.membership.push(Membership {
                at: self.now,
                host,
                neighbour,
                change,
            });
        }
    }

    fn on_event(&mut self, world: &World, h: HostId, event: Event) {
        match event {
            Event::GatekeeperJoin => self.gatekeeper_join(world, h),
            Event::NeighbourUp { id, addr } => {
                if let Some(n) = network::host_at(addr.udp_addr(), UDP_PORT) {
                    self.host_mut(h).links.push((id, n));
                }
                self.record(world, h, id, Change::Up);
            }
            Event::NeighbourDown { id, reason } => {
                self.host_mut(h).links.retain(|(n, _)| *n != id);
                self.record(world, h, id, Change::Down(reason));
            }
            Event::StateChanged { id, state } => {
                let change = if state == "warning" {
                    Change::Suspected
                } else {
                    Change::Cleared
                };
                self.record(world, h, id, change);
            }
            Event::ReportFailed { id } => self.gatekeeper_report(world, h, id),
            Event::GatekeeperLeave => self.gatekeeper_leave(world, h),
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
