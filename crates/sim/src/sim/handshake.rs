//! The TCP handshake, as the node runtime runs it (`node/src/handshake.rs`), with frames
//! that take time to travel:
//!
//! 1. The initiator connects (SYN, SYN-ACK) and writes the hello: it reaches the
//!    responder after three one-way delays, more for each lost segment (TCP retransmits
//!    after 1 s for a SYN, 200 ms for data, doubling). A crashed or cut-off responder
//!    never answers; the initiator gives up at its handshake timeout. A host whose
//!    process exited answers with a reset.
//! 2. The responder, if it serves fewer than 64 handshakes, asks its core
//!    (`answer_hello`) and writes the welcome; it closes at once unless it accepted.
//! 3. The initiator reads the welcome (`Initiator::on_welcome`): full or rejected ends
//!    the dial with the responder's neighbours; accepted sends the confirm.
//! 4. The responder verifies the confirm, hands the link to its core (`LinkUp`) and
//!    writes "established" only if the core installed it.
//! 5. The initiator reads "established" and hands its core the link.
//!
//! Each side bounds its part by its handshake timeout and tells its core how it ended
//! (`ConnectFailed` / `HandshakeAborted`). A side that closes makes the other one see the
//! close one delay later. Link datagrams that reach the initiator before step 5 are held,
//! as the runtime holds them, and handed over right after.

use std::time::Duration;

use highway_core::{Command, ConnectOutcome, LinkUp};
use highway_wire::peer::handshake::{
    Decision, Initiator, InitiatorOutcome, Responder, split_frame,
};
use highway_wire::{NodeId, PeerAddr};

use super::{Action, Sim};
use crate::HostId;
use crate::host::Life;
use crate::network::{self, TCP_PORT};
use crate::runtime::{DATA_RTO, MAX_DIALS, MAX_INBOUND_HANDSHAKES, SYN_RTO};

/// A TCP segment given up on after this much retransmitting.
const GIVE_UP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DialStep {
    /// The hello reaches the responder.
    Hello,
    /// The welcome reaches the initiator.
    Welcome,
    /// The confirm reaches the responder.
    Confirm,
    /// "Established" reaches the initiator.
    Established,
    /// The initiator sees the connection closed or reset.
    InitiatorSeesClose,
    /// The responder sees the initiator close.
    ResponderSeesClose,
    InitiatorTimeout,
    ResponderTimeout,
}

#[derive(Debug)]
enum ResponderSide {
    /// The hello has not arrived (or never will).
    NotReached,
    /// Accepted: waiting for the confirm.
    AwaitingConfirm {
        host: HostId,
        epoch: u32,
        responder: Box<Responder>,
        my_link_id: u64,
        initiator: NodeId,
        initiator_addr: PeerAddr,
    },
    Closed,
}

/// One outbound handshake in flight, both ends.
#[derive(Debug)]
pub(super) struct Dial {
    from: HostId,
    from_epoch: u32,
    my_link_id: u64,
    addr: PeerAddr,
    expected: Option<NodeId>,
    initiator: Option<Box<Initiator>>,
    hello: Vec<u8>,
    /// The initiator still waits for an outcome.
    initiator_open: bool,
    responder: ResponderSide,
    /// The responder host and process the hello reached.
    to: Option<(HostId, u32)>,
    welcome: Vec<u8>,
    confirm: Vec<u8>,
    /// The initiator's link, handed to its core when "established" arrives.
    link: Option<LinkUp>,
}

/// The payload of a frame the core built (always one whole, valid frame).
fn payload(framed: &[u8]) -> &[u8] {
    match split_frame(framed) {
        Ok(Some((payload, _))) => payload,
        _ => &[],
    }
}

impl Sim {
    /// How long one TCP segment from `from` to `to` takes, retransmissions included;
    /// `None` if it never arrives (a cut).
    fn segment(&mut self, from: HostId, to: HostId, first_rto: Duration) -> Option<Duration> {
        if self.net.cut(from, to) {
            return None;
        }
        let mut waited = Duration::ZERO;
        let mut rto = first_rto;
        while self.net.lose(&mut self.rng) {
            waited += rto;
            rto *= 2;
            if waited > GIVE_UP {
                return None;
            }
        }
        Some(waited + self.net.one_way(from, to, &mut self.rng))
    }

    fn dial_at(&mut self, id: u64, after: Option<Duration>, step: DialStep) {
        if let Some(d) = after {
            self.agenda.push(self.now + d, Action::Dial { id, step });
        }
    }

    /// The core's `Event::Connect`: open TCP to `addr` and start the handshake.
    pub(super) fn start_dial(
        &mut self,
        h: HostId,
        my_link_id: u64,
        addr: PeerAddr,
        expected: Option<NodeId>,
        initiator: Box<Initiator>,
        hello: Vec<u8>,
    ) {
        let host = &mut self.hosts[h.index()];
        if host.dials >= MAX_DIALS {
            self.stats.dials_refused_busy += 1;
            let now = self.clock.instant(self.now);
            host.peer.handle_command(
                now,
                Command::ConnectFailed {
                    my_link_id,
                    outcome: ConnectOutcome::Unreachable,
                },
            );
            return;
        }
        host.dials += 1;
        host.early.push((my_link_id, Vec::new()));
        let timeout = host.peer.config().handshake_timeout;
        let from_epoch = host.epoch;
        self.stats.dials += 1;
        let id = self.next_dial;
        self.next_dial += 1;
        self.dials.insert(
            id,
            Dial {
                from: h,
                from_epoch,
                my_link_id,
                addr,
                expected,
                initiator: Some(initiator),
                hello,
                initiator_open: true,
                responder: ResponderSide::NotReached,
                to: None,
                welcome: Vec::new(),
                confirm: Vec::new(),
                link: None,
            },
        );
        self.dial_at(id, Some(timeout), DialStep::InitiatorTimeout);
        let Some(to) =
            network::host_at(addr.tcp_addr(), TCP_PORT).filter(|to| to.index() < self.hosts.len())
        else {
            return;
        };
        match self.hosts[to.index()].life {
            // No machine: the SYN goes unanswered until the timeout.
            Life::Crashed => {}
            Life::Exited => {
                let rst = self
                    .segment(h, to, SYN_RTO)
                    .zip(self.segment(to, h, SYN_RTO))
                    .map(|(a, b)| a + b);
                self.dial_at(id, rst, DialStep::InitiatorSeesClose);
            }
            Life::Up => {
                let syn = self.segment(h, to, SYN_RTO);
                let syn_ack = self.segment(to, h, SYN_RTO);
                let hello = self.segment(h, to, DATA_RTO);
                let arrives = syn.zip(syn_ack).zip(hello).map(|((a, b), c)| a + b + c);
                self.dial_at(id, arrives, DialStep::Hello);
            }
        }
    }

    /// The initiator's core learns how its dial ended; held datagrams follow.
    fn report_to_initiator(&mut self, id: u64, cmd: Command) {
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        if !dial.initiator_open {
            return;
        }
        dial.initiator_open = false;
        let (h, epoch, my_link_id) = (dial.from, dial.from_epoch, dial.my_link_id);
        if !self.current(h, epoch) {
            return;
        }
        match &cmd {
            Command::LinkUp(_) => self.stats.dials_linked += 1,
            Command::ConnectFailed { outcome, .. } => match outcome {
                ConnectOutcome::Unreachable => self.stats.dials_unreachable += 1,
                ConnectOutcome::Full { .. } => self.stats.dials_full += 1,
                ConnectOutcome::Rejected { .. } => self.stats.dials_rejected += 1,
            },
            _ => {}
        }
        let host = &mut self.hosts[h.index()];
        host.dials = host.dials.saturating_sub(1);
        let held = host
            .early
            .iter()
            .position(|(link, _)| *link == my_link_id)
            .map(|i| host.early.swap_remove(i).1)
            .unwrap_or_default();
        let now = self.clock.instant(self.now);
        host.peer.handle_command(now, cmd);
        for (from, bytes) in held {
            host.peer.handle_datagram(now, from, &bytes);
        }
        self.flush(h);
    }

    fn unreachable(&mut self, id: u64) {
        let Some(my_link_id) = self.dials.get(&id).map(|d| d.my_link_id) else {
            return;
        };
        self.report_to_initiator(
            id,
            Command::ConnectFailed {
                my_link_id,
                outcome: ConnectOutcome::Unreachable,
            },
        );
    }

    /// The responder's task ends; an accepted handshake that did not finish gives its
    /// reserved slot back.
    fn close_responder(&mut self, id: u64, aborted: bool) {
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        let side = std::mem::replace(&mut dial.responder, ResponderSide::Closed);
        let ResponderSide::AwaitingConfirm {
            host,
            epoch,
            my_link_id,
            ..
        } = side
        else {
            return;
        };
        if !self.current(host, epoch) {
            return;
        }
        let responder = &mut self.hosts[host.index()];
        responder.inbound = responder.inbound.saturating_sub(1);
        if aborted {
            self.stats.inbound_aborted += 1;
            let now = self.clock.instant(self.now);
            responder
                .peer
                .handle_command(now, Command::HandshakeAborted { my_link_id });
            self.flush(host);
        }
    }

    /// Forgets a dial once neither end waits on it any more.
    fn tidy(&mut self, id: u64) {
        if self.dials.get(&id).is_some_and(|d| {
            !d.initiator_open && !matches!(d.responder, ResponderSide::AwaitingConfirm { .. })
        }) {
            self.dials.remove(&id);
        }
    }

    /// A one-way delay between the two ends, for a close to be seen (`None`: cut).
    fn close_delay(&mut self, from: HostId, to: HostId) -> Option<Duration> {
        self.segment(from, to, DATA_RTO)
    }

    pub(super) fn dial_step(&mut self, id: u64, step: DialStep) {
        if !self.dials.contains_key(&id) {
            return;
        }
        match step {
            DialStep::Hello => self.on_hello(id),
            DialStep::Welcome => self.on_welcome(id),
            DialStep::Confirm => self.on_confirm(id),
            DialStep::Established => {
                let link = self.dials.get_mut(&id).and_then(|d| d.link.take());
                if let Some(link) = link {
                    self.report_to_initiator(id, Command::LinkUp(link));
                }
            }
            DialStep::InitiatorSeesClose => self.unreachable(id),
            DialStep::ResponderSeesClose | DialStep::ResponderTimeout => {
                self.close_responder(id, true);
            }
            DialStep::InitiatorTimeout => {
                let was_open = self.dials.get(&id).is_some_and(|d| d.initiator_open);
                self.unreachable(id);
                // The initiator closes its end; a responder still waiting sees it.
                if let Some(dial) = self.dials.get(&id)
                    && was_open
                    && let ResponderSide::AwaitingConfirm { host, .. } = dial.responder
                {
                    let (from, from_epoch) = (dial.from, dial.from_epoch);
                    if self.current(from, from_epoch) {
                        let d = self.close_delay(from, host);
                        self.dial_at(id, d, DialStep::ResponderSeesClose);
                    }
                }
            }
        }
        self.tidy(id);
    }

    fn on_hello(&mut self, id: u64) {
        let Some(dial) = self.dials.get(&id) else {
            return;
        };
        // The initiator gave up (or died): its connection is gone.
        if !dial.initiator_open || !self.current(dial.from, dial.from_epoch) {
            return;
        }
        let from = dial.from;
        let Some(to) = network::host_at(dial.addr.tcp_addr(), TCP_PORT) else {
            return;
        };
        let responder = &self.hosts[to.index()];
        match responder.life {
            Life::Crashed => return,
            Life::Exited => {
                let d = self.close_delay(to, from);
                self.dial_at(id, d, DialStep::InitiatorSeesClose);
                return;
            }
            Life::Up => {}
        }
        if responder.inbound >= MAX_INBOUND_HANDSHAKES {
            self.stats.inbound_refused_busy += 1;
            let d = self.close_delay(to, from);
            self.dial_at(id, d, DialStep::InitiatorSeesClose);
            return;
        }
        let now = self.clock.instant(self.now);
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        let responder = &mut self.hosts[to.index()];
        // The runtime also checks that the hello's address is the connection's source;
        // simulated initiators always dial from their own address, so it always holds.
        let answer = responder.peer.answer_hello(now, payload(&dial.hello));
        let epoch = responder.epoch;
        let timeout = responder.peer.config().handshake_timeout;
        dial.to = Some((to, epoch));
        let Ok(answer) = answer else {
            // A hello the core cannot read: the connection is closed.
            self.flush(to);
            let d = self.close_delay(to, from);
            self.dial_at(id, d, DialStep::InitiatorSeesClose);
            return;
        };
        dial.welcome = answer.welcome;
        if let Some(state) = answer.responder {
            responder.inbound += 1;
            dial.responder = ResponderSide::AwaitingConfirm {
                host: to,
                epoch,
                responder: Box::new(state),
                my_link_id: answer.my_link_id,
                initiator: answer.initiator,
                initiator_addr: answer.initiator_addr,
            };
            self.dial_at(id, Some(timeout), DialStep::ResponderTimeout);
        } else {
            dial.responder = ResponderSide::Closed;
        }
        self.flush(to);
        let d = self.segment(to, from, DATA_RTO);
        self.dial_at(id, d, DialStep::Welcome);
    }

    fn on_welcome(&mut self, id: u64) {
        let Some(dial) = self.dials.get(&id) else {
            return;
        };
        let (from, to) = (dial.from, dial.to.map(|(h, _)| h));
        let initiator_alive = dial.initiator_open && self.current(dial.from, dial.from_epoch);
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        let Some(initiator) = dial.initiator.take().filter(|_| initiator_alive) else {
            // The initiator is gone. A crashed machine stays silent (the responder times
            // out); one that gave up or exited resets the connection.
            let crashed = self.hosts[from.index()].life == Life::Crashed;
            if let Some(to) = to
                && !crashed
            {
                let d = self.close_delay(from, to);
                self.dial_at(id, d, DialStep::ResponderSeesClose);
            }
            return;
        };
        let outcome = initiator.on_welcome(payload(&dial.welcome), dial.expected, dial.my_link_id);
        let my_link_id = dial.my_link_id;
        let close_responder = |sim: &mut Sim| {
            if let Some(to) = to {
                let d = sim.close_delay(from, to);
                sim.dial_at(id, d, DialStep::ResponderSeesClose);
            }
        };
        match outcome {
            Err(_) => {
                self.unreachable(id);
                close_responder(self);
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
                self.report_to_initiator(
                    id,
                    Command::ConnectFailed {
                        my_link_id,
                        outcome,
                    },
                );
            }
            Ok(InitiatorOutcome::Linked {
                responder,
                responder_link_id,
                keys,
                neighbours,
                confirm,
            }) => {
                dial.confirm = confirm;
                dial.link = Some(LinkUp {
                    my_link_id,
                    their_link_id: responder_link_id,
                    peer: responder,
                    addr: dial.addr,
                    keys,
                    their_neighbours: neighbours,
                    inbound: false,
                });
                match to {
                    Some(to) => {
                        let d = self.segment(from, to, DATA_RTO);
                        self.dial_at(id, d, DialStep::Confirm);
                    }
                    None => self.unreachable(id),
                }
            }
        }
    }

    fn on_confirm(&mut self, id: u64) {
        let Some(dial) = self.dials.get_mut(&id) else {
            return;
        };
        let from = dial.from;
        let confirm = std::mem::take(&mut dial.confirm);
        let side = std::mem::replace(&mut dial.responder, ResponderSide::Closed);
        let ResponderSide::AwaitingConfirm {
            host: to,
            epoch,
            responder,
            my_link_id,
            initiator,
            initiator_addr,
        } = side
        else {
            // The responder already gave up and closed: the initiator sees the close.
            if let Some((to, _)) = dial.to {
                let d = self.close_delay(to, from);
                self.dial_at(id, d, DialStep::InitiatorSeesClose);
            }
            return;
        };
        if !self.current(to, epoch) {
            // A crashed responder is silent (the initiator times out); an exited one
            // resets the connection.
            if self.hosts[to.index()].life != Life::Crashed {
                let d = self.close_delay(to, from);
                self.dial_at(id, d, DialStep::InitiatorSeesClose);
            }
            return;
        }
        let accepted = responder.on_confirm(payload(&confirm));
        let host = &mut self.hosts[to.index()];
        host.inbound = host.inbound.saturating_sub(1);
        let now = self.clock.instant(self.now);
        let installed = match accepted {
            Ok(accepted) => {
                host.peer.handle_command(
                    now,
                    Command::LinkUp(LinkUp {
                        my_link_id,
                        their_link_id: accepted.initiator_link_id,
                        peer: initiator,
                        addr: initiator_addr,
                        keys: accepted.keys,
                        their_neighbours: Vec::new(),
                        inbound: true,
                    }),
                );
                host.peer.has_link(my_link_id)
            }
            Err(_) => {
                self.stats.inbound_aborted += 1;
                host.peer
                    .handle_command(now, Command::HandshakeAborted { my_link_id });
                false
            }
        };
        self.flush(to);
        let d = self.segment(to, from, DATA_RTO);
        let step = if installed {
            DialStep::Established
        } else {
            DialStep::InitiatorSeesClose
        };
        self.dial_at(id, d, step);
    }
}
