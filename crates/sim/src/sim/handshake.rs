//! The TCP handshake, as the node runtime runs it (`node/src/handshake.rs`), with frames
//! that take time to travel. Each end keeps its own half ([`Outbound`] at the initiator,
//! [`Inbound`] at the responder) and they talk only through frames, so the two ends may
//! live in different shards.
//!
//! 1. The initiator connects (SYN, SYN-ACK) and writes the hello: it reaches the
//!    responder after three one-way delays, more for each lost segment (TCP retransmits
//!    after 1 s for a SYN, 200 ms for data, doubling). Across a cut it never arrives.
//! 2. The responder's machine answers as it is when the hello arrives: crashed, nothing
//!    (the initiator times out); process exited, a reset. A running responder serving 64
//!    handshakes closes the connection at once; otherwise its core decides
//!    (`answer_hello`, given the initiator's address as the connection's source) and the
//!    welcome goes back. It keeps a half only if it accepted. A hello that needs longer
//!    than the runtime's 2 s hello deadline after the connection is up is never read:
//!    the responder closes. (The runtime's cap of 4 handshakes per source address never
//!    binds here: a simulated host dials a given peer once at a time.)
//! 3. The initiator reads the welcome (`Initiator::on_welcome`): full or rejected ends
//!    the dial with the responder's neighbours; accepted sends the confirm.
//! 4. The responder verifies the confirm, hands the link to its core (`LinkUp`) and
//!    writes "established" only if the core installed it, else closes.
//! 5. The initiator reads "established" and hands its core the link, then the link
//!    datagrams it held meanwhile. A close instead (the responder had no room left when
//!    the confirm came) ends the dial as rejected, with the welcome's neighbours.
//!
//! Each end bounds its half by its handshake timeout and tells its core how it ended
//! (`ConnectFailed` / `HandshakeAborted`); an end that gives up closes, and the other
//! sees the close one delay later (unless its machine crashed: crashed machines say
//! nothing).

use std::time::Duration;

use highway_core::{Command, ConnectOutcome, LinkUp};
use highway_wire::peer::handshake::{
    Decision, Initiator, InitiatorOutcome, Responder, split_frame,
};
use highway_wire::{NodeId, PeerAddr};

use super::SHARDS;
use super::shard::{Action, Shard};
use super::world::World;
use crate::HostId;
use crate::host::Life;
use crate::network::{self, TCP_PORT};
use crate::runtime::{DATA_RTO, HELLO_TIMEOUT, MAX_DIALS, MAX_INBOUND_HANDSHAKES, SYN_RTO};

/// A TCP segment given up on after this much retransmitting.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What travels between the two ends of a dial.
#[derive(Debug)]
pub(crate) enum Frame {
    Hello {
        from: HostId,
        hello: Vec<u8>,
    },
    Welcome(Vec<u8>),
    Confirm(Vec<u8>),
    Established,
    /// The other end closed or reset the connection.
    Closed,
}

/// The initiator's half of a dial.
#[derive(Debug)]
pub(crate) struct Outbound {
    host: HostId,
    epoch: u32,
    my_link_id: u64,
    addr: PeerAddr,
    expected: Option<NodeId>,
    initiator: Option<Box<Initiator>>,
    /// The responder's machine, when the address is a simulated host.
    target: Option<HostId>,
    /// The link, waiting for "established".
    link: Option<LinkUp>,
}

/// The responder's half of an accepted dial, waiting for the confirm.
#[derive(Debug)]
pub(crate) struct Inbound {
    host: HostId,
    epoch: u32,
    initiator_host: HostId,
    responder: Box<Responder>,
    my_link_id: u64,
    initiator: NodeId,
    initiator_addr: PeerAddr,
    initiator_dialable: bool,
}

/// The payload of a frame the core built (always one whole, valid frame).
fn payload(framed: &[u8]) -> &[u8] {
    match split_frame(framed) {
        Ok(Some((payload, _))) => payload,
        _ => &[],
    }
}

impl Shard {
    /// How long one TCP segment from `from` to `to` takes, retransmissions included;
    /// `None` if it never arrives.
    fn segment(
        &mut self,
        world: &World,
        from: HostId,
        to: HostId,
        first_rto: Duration,
    ) -> Option<Duration> {
        if world.net.cut(from, to) {
            return None;
        }
        let mut waited = Duration::ZERO;
        let mut rto = first_rto;
        while world.net.lose(&mut self.rng) {
            waited += rto;
            rto *= 2;
            if waited > GIVE_UP {
                return None;
            }
        }
        Some(waited + world.net.one_way(from, to, &mut self.rng))
    }

    /// Sends `frame` of `dial` from `from` to `to`, if it gets there.
    fn frame_to(
        &mut self,
        world: &World,
        from: HostId,
        to: HostId,
        dial: u64,
        frame: Frame,
        rto: Duration,
    ) {
        if let Some(d) = self.segment(world, from, to, rto) {
            let at = self.now + d;
            self.send_to(at, to, Action::Frame { to, dial, frame });
        }
    }

    /// The core's `Event::Connect`: open TCP to `addr` and start the handshake.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_dial(
        &mut self,
        world: &World,
        h: HostId,
        my_link_id: u64,
        addr: PeerAddr,
        expected: Option<NodeId>,
        initiator: Box<Initiator>,
        hello: Vec<u8>,
    ) {
        let now = world.clock.instant(self.now);
        let host = self.host_mut(h);
        if host.dials >= MAX_DIALS {
            host.peer.handle_command(
                now,
                Command::ConnectFailed {
                    my_link_id,
                    outcome: ConnectOutcome::NotStarted,
                },
            );
            self.stats.dials_refused_busy += 1;
            return;
        }
        host.dials += 1;
        host.early.push((my_link_id, Vec::new()));
        let epoch = host.epoch;
        let timeout = world.core.handshake_timeout;
        self.stats.dials += 1;
        // Unique across shards: the shard's own counter, tagged with the shard.
        let dial = self.next_dial * SHARDS as u64 + self.index as u64;
        self.next_dial += 1;
        // A host behind a NAT cannot be dialled: the connection attempt goes nowhere.
        let target = network::host_at(addr.tcp_addr(), TCP_PORT)
            .filter(|t| world.net.knows(*t) && !world.is_behind_nat(*t));
        self.outbound.insert(
            dial,
            Outbound {
                host: h,
                epoch,
                my_link_id,
                addr,
                expected,
                initiator: Some(initiator),
                target,
                link: None,
            },
        );
        self.agenda
            .push(self.now + timeout, Action::InitiatorTimeout { dial });
        let Some(to) = target else {
            return;
        };
        let syn = self.segment(world, h, to, SYN_RTO);
        let syn_ack = self.segment(world, to, h, SYN_RTO);
        let data = self.segment(world, h, to, DATA_RTO);
        let Some(((a, b), c)) = syn.zip(syn_ack).zip(data) else {
            return;
        };
        if c > HELLO_TIMEOUT {
            // The responder accepted the connection but closes it before the hello
            // (retransmitted again and again) arrives; the close takes as long as the
            // SYN-ACK did.
            self.stats.inbound_hello_timeouts += 1;
            let at = self.now + a + b + HELLO_TIMEOUT + b;
            let frame = Frame::Closed;
            self.send_to(at, h, Action::Frame { to: h, dial, frame });
            return;
        }
        let frame = Frame::Hello { from: h, hello };
        self.send_to(self.now + a + b + c, to, Action::Frame { to, dial, frame });
    }

    pub(super) fn on_frame(&mut self, world: &World, to: HostId, dial: u64, frame: Frame) {
        match frame {
            Frame::Hello { from, hello } => self.on_hello(world, to, from, dial, &hello),
            Frame::Welcome(welcome) => self.on_welcome(world, dial, &welcome),
            Frame::Confirm(confirm) => self.on_confirm(world, to, dial, &confirm),
            Frame::Established => {
                let link = self.outbound.get_mut(&dial).and_then(|o| o.link.take());
                if let Some(link) = link {
                    self.finish_dial(world, dial, Command::LinkUp(link));
                }
            }
            Frame::Closed => {
                // Both ends may live in this shard: the frame is for the initiator if
                // it is addressed to the initiator's host.
                if self.outbound.get(&dial).is_some_and(|o| o.host == to) {
                    self.dial_unreachable(world, dial);
                } else {
                    self.abort_inbound(world, dial);
                }
            }
        }
    }

    /// Ends the initiator's half: its core learns how the dial ended, then gets the
    /// datagrams held meanwhile.
    fn finish_dial(&mut self, world: &World, dial: u64, cmd: Command) {
        let Some(out) = self.outbound.remove(&dial) else {
            return;
        };
        if !self.current(out.host, out.epoch) {
            return;
        }
        match &cmd {
            Command::LinkUp(_) => self.stats.dials_linked += 1,
            Command::ConnectFailed { outcome, .. } => match outcome {
                ConnectOutcome::Unreachable => self.stats.dials_unreachable += 1,
                // Reported from `start_dial` directly, never through here.
                ConnectOutcome::NotStarted => self.stats.dials_refused_busy += 1,
                ConnectOutcome::Full { .. } => self.stats.dials_full += 1,
                ConnectOutcome::Rejected { .. } => self.stats.dials_rejected += 1,
            },
            _ => {}
        }
        let now = world.clock.instant(self.now);
        let host = self.host_mut(out.host);
        host.dials = host.dials.saturating_sub(1);
        let held = host
            .early
            .iter()
            .position(|(link, _)| *link == out.my_link_id)
            .map(|i| host.early.swap_remove(i).1)
            .unwrap_or_default();
        host.peer.handle_command(now, cmd);
        for (from, bytes) in held {
            host.peer.handle_datagram(now, from, &bytes);
        }
        self.flush(world, out.host);
    }

    /// The dial ends without a link. After an "accept" welcome the responder answered,
    /// so, as the runtime does, that is a refusal with the welcome's neighbours (it had
    /// no room left when we confirmed), not an address to back off from.
    fn dial_unreachable(&mut self, world: &World, dial: u64) {
        let Some(out) = self.outbound.get_mut(&dial) else {
            return;
        };
        let my_link_id = out.my_link_id;
        let outcome = match out.link.take() {
            Some(link) => ConnectOutcome::Rejected {
                neighbours: link.their_neighbours,
            },
            None => ConnectOutcome::Unreachable,
        };
        self.finish_dial(
            world,
            dial,
            Command::ConnectFailed {
                my_link_id,
                outcome,
            },
        );
    }

    /// The responder's half ends without a link: its core gets the reserved slot back.
    fn abort_inbound(&mut self, world: &World, dial: u64) {
        let Some(inb) = self.inbound.remove(&dial) else {
            return;
        };
        if !self.current(inb.host, inb.epoch) {
            return;
        }
        self.stats.inbound_aborted += 1;
        let host = self.host_mut(inb.host);
        host.inbound = host.inbound.saturating_sub(1);
        let cmd = Command::HandshakeAborted {
            my_link_id: inb.my_link_id,
        };
        self.command(world, inb.host, cmd);
    }

    /// An end closes: the other sees it one delay later, unless this machine crashed.
    fn close_towards(&mut self, world: &World, from: HostId, to: HostId, dial: u64) {
        if self.host(from).life != Life::Crashed {
            self.frame_to(world, from, to, dial, Frame::Closed, DATA_RTO);
        }
    }

    pub(super) fn initiator_timeout(&mut self, world: &World, dial: u64) {
        let Some(out) = self.outbound.get(&dial) else {
            return;
        };
        let (host, target) = (out.host, out.target);
        self.dial_unreachable(world, dial);
        if let Some(to) = target {
            self.close_towards(world, host, to, dial);
        }
    }

    pub(super) fn responder_timeout(&mut self, world: &World, dial: u64) {
        if let Some(inb) = self.inbound.get(&dial) {
            let (host, to) = (inb.host, inb.initiator_host);
            self.abort_inbound(world, dial);
            self.close_towards(world, host, to, dial);
        }
    }

    fn on_hello(&mut self, world: &World, me: HostId, from: HostId, dial: u64, hello: &[u8]) {
        match self.host(me).life {
            Life::Crashed => return,
            Life::Exited => {
                self.frame_to(world, me, from, dial, Frame::Closed, DATA_RTO);
                return;
            }
            Life::Up => {}
        }
        if self.host(me).inbound >= MAX_INBOUND_HANDSHAKES {
            self.stats.inbound_refused_busy += 1;
            self.frame_to(world, me, from, dial, Frame::Closed, DATA_RTO);
            return;
        }
        let now = world.clock.instant(self.now);
        // The runtime also checks that the hello's address is the connection's source;
        // simulated initiators always dial from their own address, so it always holds.
        let source = network::addr_of(from).ip;
        let answer = self
            .host_mut(me)
            .peer
            .answer_hello(now, source, payload(hello));
        let Ok(answer) = answer else {
            self.flush(world, me);
            self.frame_to(world, me, from, dial, Frame::Closed, DATA_RTO);
            return;
        };
        if let Some(responder) = answer.responder {
            let host = self.host_mut(me);
            host.inbound += 1;
            let epoch = host.epoch;
            self.inbound.insert(
                dial,
                Inbound {
                    host: me,
                    epoch,
                    initiator_host: from,
                    responder: Box::new(responder),
                    my_link_id: answer.my_link_id,
                    initiator: answer.initiator,
                    initiator_addr: answer.initiator_addr,
                    initiator_dialable: answer.initiator_dialable,
                },
            );
            let at = self.now + world.core.handshake_timeout;
            self.agenda.push(at, Action::ResponderTimeout { dial });
        }
        self.flush(world, me);
        let welcome = Frame::Welcome(answer.welcome);
        self.frame_to(world, me, from, dial, welcome, DATA_RTO);
    }

    fn on_welcome(&mut self, world: &World, dial: u64, welcome: &[u8]) {
        let Some(out) = self.outbound.get_mut(&dial) else {
            return;
        };
        let (me, epoch, target) = (out.host, out.epoch, out.target);
        let Some(initiator) = out.initiator.take() else {
            return;
        };
        let outcome = initiator.on_welcome(payload(welcome), out.expected, out.my_link_id);
        let my_link_id = out.my_link_id;
        let addr = out.addr;
        if !self.current(me, epoch) {
            return;
        }
        match outcome {
            Err(_) => {
                self.dial_unreachable(world, dial);
                if let Some(to) = target {
                    self.close_towards(world, me, to, dial);
                }
            }
            Ok(InitiatorOutcome::NotLinked {
                decision,
                neighbours,
                ..
            }) => {
                let outcome = match decision {
                    Decision::Full => ConnectOutcome::Full { neighbours },
                    // An "accept" without a link happens only for a query.
                    Decision::Reject | Decision::Accept => ConnectOutcome::Rejected { neighbours },
                };
                let cmd = Command::ConnectFailed {
                    my_link_id,
                    outcome,
                };
                self.finish_dial(world, dial, cmd);
            }
            Ok(InitiatorOutcome::Linked {
                responder,
                responder_link_id,
                keys,
                neighbours,
                confirm,
            }) => {
                if let Some(out) = self.outbound.get_mut(&dial) {
                    out.link = Some(LinkUp {
                        my_link_id,
                        their_link_id: responder_link_id,
                        peer: responder,
                        addr,
                        keys,
                        their_neighbours: neighbours,
                        inbound: false,
                        dialable: true,
                        stream: None,
                    });
                }
                if let Some(to) = target {
                    self.frame_to(world, me, to, dial, Frame::Confirm(confirm), DATA_RTO);
                }
            }
        }
    }

    fn on_confirm(&mut self, world: &World, me: HostId, dial: u64, confirm: &[u8]) {
        let Some(inb) = self.inbound.remove(&dial) else {
            // This end already gave up and closed.
            return;
        };
        let from = inb.initiator_host;
        if !self.current(inb.host, inb.epoch) {
            return;
        }
        let now = world.clock.instant(self.now);
        let host = self.host_mut(me);
        host.inbound = host.inbound.saturating_sub(1);
        let installed = match inb.responder.on_confirm(payload(confirm)) {
            Ok(accepted) => {
                let up = LinkUp {
                    my_link_id: inb.my_link_id,
                    their_link_id: accepted.initiator_link_id,
                    peer: inb.initiator,
                    addr: inb.initiator_addr,
                    keys: accepted.keys,
                    their_neighbours: Vec::new(),
                    inbound: true,
                    dialable: inb.initiator_dialable,
                    stream: None,
                };
                host.peer.handle_command(now, Command::LinkUp(up));
                host.peer.has_link(inb.my_link_id)
            }
            Err(_) => {
                let cmd = Command::HandshakeAborted {
                    my_link_id: inb.my_link_id,
                };
                host.peer.handle_command(now, cmd);
                self.stats.inbound_aborted += 1;
                false
            }
        };
        self.flush(world, me);
        let frame = if installed {
            Frame::Established
        } else {
            Frame::Closed
        };
        self.frame_to(world, me, from, dial, frame, DATA_RTO);
    }
}
