//! TCP connections, as the core sees them: the handshakes that make links, links whose
//! datagrams travel over TCP, and reverse connections arriving for the runtime.
//!
//! The runtime opens, accepts, reads, writes and closes sockets and nothing else. It
//! reports what happened through `handle_accept`, `handle_conn_bytes` and
//! `handle_conn_closed`, and does what [`Peer::poll_conn`] says. Framing, the handshake's
//! order, its deadlines, the caps on connections (in total and per source) and what a
//! closed connection means all live here, once, for the node and the simulator alike.

mod answer;
mod dial;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use highway_wire::peer::handshake::{Initiator, Responder, frame, split_frame};
use highway_wire::{NodeId, PeerAddr};

use crate::api::LinkUp;
use crate::dials::source_bucket;
use crate::peer::{Peer, Phase};

/// Most entries waiting in [`Peer::poll_conn`]'s queue before datagrams for TCP-carried
/// links are dropped (handshake frames, opens and closes are never dropped: they are
/// bounded by the connection caps).
pub const MAX_CONN_IO: usize = 4096;
/// Link datagrams held for one of our dials whose link is up on the other side before
/// "established" reached us; past it they are dropped.
pub const MAX_EARLY_DATAGRAMS: usize = 8;

/// The core's name for one TCP connection, unique for the peer's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the runtime is to do with a connection. Act on them in order: writes to one
/// connection must reach it in the order they were queued, before its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnIo {
    /// Open a TCP connection to `to` (from the address the peer publishes). If it
    /// cannot be opened, report [`Peer::handle_conn_closed`].
    Open { conn: ConnId, to: SocketAddr },
    /// Write these bytes (queued until the connection is open).
    Write { conn: ConnId, bytes: Vec<u8> },
    /// Close the connection after the writes queued before this; report nothing more.
    Close { conn: ConnId },
    /// A peer we asked to connect back ([`crate::Event::ReverseConnect`] on its side)
    /// presented a reverse hello (`hello`, the frame's payload): the connection is the
    /// runtime's from now on, to match the token and speak HTTP over. Nothing followed
    /// the frame yet.
    Reverse { conn: ConnId, hello: Vec<u8> },
}

/// Where one connection stands.
#[derive(Debug)]
pub(crate) enum Stage {
    /// Our dial: the hello is written, the welcome awaited.
    Dialing(Box<Dialing>),
    /// Our dial: the confirm is written, "established" awaited.
    Confirming(Box<LinkUp>),
    /// Theirs: the hello (or a reverse hello) awaited.
    Hello,
    /// Theirs: we accepted; the confirm awaited.
    Confirm(Box<Answered>),
    /// Carries the datagrams of the link with `peer`.
    Carrying { peer: NodeId },
}

#[derive(Debug)]
pub(crate) struct Dialing {
    pub my_link_id: u64,
    pub initiator: Initiator,
    pub expected: Option<NodeId>,
    pub addr: PeerAddr,
    /// The hello asked to keep this connection for the link's datagrams.
    pub stream: bool,
}

#[derive(Debug)]
pub(crate) struct Answered {
    pub responder: Responder,
    pub my_link_id: u64,
    pub initiator_addr: PeerAddr,
    pub initiator_dialable: bool,
    pub stream: bool,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub remote: SocketAddr,
    /// The source bucket of an inbound connection ([`source_bucket`]).
    pub source: Option<IpAddr>,
    pub opened: Instant,
    /// Given up on at this instant (none while it carries a link).
    pub deadline: Option<Instant>,
    /// Bytes read and not yet a whole frame (less than one frame: whole ones are taken
    /// out at once).
    pub buf: Vec<u8>,
    pub stage: Stage,
}

impl Conn {
    fn handshaking_inbound(&self) -> bool {
        matches!(self.stage, Stage::Hello | Stage::Confirm(_))
    }
}

/// The connections and the runtime's work queue for them.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    /// Ordered, so deadlines expire in the same order on every run.
    map: BTreeMap<ConnId, Conn>,
    next: u64,
    io: VecDeque<ConnIo>,
}

impl Conns {
    pub fn insert(&mut self, conn: Conn) -> ConnId {
        self.next += 1;
        let id = ConnId(self.next);
        self.map.insert(id, conn);
        id
    }

    pub fn push(&mut self, io: ConnIo) {
        self.io.push_back(io);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.map.values().filter_map(|c| c.deadline).min()
    }
}

impl Peer {
    /// A TCP connection arrived from `from`. `None`: refused (too many handshakes in
    /// progress, in total or from that source); close it. Otherwise feed what it sends
    /// to [`Peer::handle_conn_bytes`] under the returned id.
    pub fn handle_accept(&mut self, now: Instant, from: SocketAddr) -> Option<ConnId> {
        if self.phase == Phase::Left {
            return None;
        }
        let source = source_bucket(from.ip());
        let inbound = self.conns.map.values().filter(|c| c.handshaking_inbound());
        let (mut total, mut same) = (0, 0);
        for c in inbound {
            total += 1;
            same += usize::from(c.source == Some(source));
        }
        // Checked first: a flood from one address is refused without taking the slots
        // everyone else needs.
        if same >= self.config.max_inbound_handshakes_per_ip {
            self.stats.inbound_refused_per_ip += 1;
            return None;
        }
        if total >= self.config.max_inbound_handshakes {
            self.stats.inbound_refused_busy += 1;
            return None;
        }
        let hello_by = self.config.hello_timeout.min(self.config.handshake_timeout);
        Some(self.conns.insert(Conn {
            remote: from,
            source: Some(source),
            opened: now,
            deadline: Some(now + hello_by),
            buf: Vec::new(),
            stage: Stage::Hello,
        }))
    }

    /// Bytes read from connection `conn`.
    pub fn handle_conn_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.map.get_mut(&conn) else {
            return;
        };
        c.buf.extend_from_slice(bytes);
        loop {
            let Some(c) = self.conns.map.get_mut(&conn) else {
                return;
            };
            let payload = match split_frame(&c.buf) {
                Ok(Some((payload, used))) => {
                    let payload = payload.to_vec();
                    c.buf.drain(..used);
                    payload
                }
                Ok(None) => return,
                Err(_) => {
                    self.stats.conn_frame_errors += 1;
                    self.conn_lost(now, conn, true);
                    return;
                }
            };
            if let Stage::Carrying { .. } = c.stage {
                let from = c.remote;
                self.stats.carried_datagrams_in += 1;
                self.handle_datagram(now, from, &payload);
                continue;
            }
            let Some(c) = self.conns.map.remove(&conn) else {
                return;
            };
            if let Some(kept) = self.on_conn_frame(now, conn, c, payload) {
                self.conns.map.insert(conn, kept);
            }
        }
    }

    /// Connection `conn` closed, was reset, could not be opened, or the runtime took it
    /// (an HTTP request on the handshake port): the core forgets it.
    pub fn handle_conn_closed(&mut self, now: Instant, conn: ConnId) {
        self.conn_lost(now, conn, false);
    }

    /// The next thing to do with a connection, if any.
    pub fn poll_conn(&mut self) -> Option<ConnIo> {
        self.conns.io.pop_front()
    }

    /// One whole frame on a handshaking connection (taken out of the table); returns it
    /// when it stays open.
    fn on_conn_frame(
        &mut self,
        now: Instant,
        id: ConnId,
        mut conn: Conn,
        payload: Vec<u8>,
    ) -> Option<Conn> {
        let stage = std::mem::replace(&mut conn.stage, Stage::Hello);
        match stage {
            Stage::Dialing(dialing) => self.on_welcome(now, id, conn, *dialing, &payload),
            Stage::Confirming(up) => self.on_established(now, id, conn, *up, &payload),
            Stage::Hello => self.on_hello(now, id, conn, payload),
            Stage::Confirm(answered) => self.on_confirm(now, id, conn, *answered, &payload),
            // Handled in place by `handle_conn_bytes`.
            Stage::Carrying { peer } => {
                conn.stage = Stage::Carrying { peer };
                Some(conn)
            }
        }
    }

    /// Ends connection `conn` (closed by the other side, broken, or given up on): what it
    /// was doing fails, and (unless the runtime reported the close) the runtime closes it.
    fn conn_lost(&mut self, now: Instant, conn: ConnId, close: bool) {
        let Some(c) = self.conns.map.remove(&conn) else {
            return;
        };
        if close {
            self.conns.push(ConnIo::Close { conn });
        }
        match c.stage {
            Stage::Dialing(dialing) => self.dial_ended(
                now,
                dialing.my_link_id,
                crate::api::ConnectOutcome::Unreachable,
            ),
            // It answered: a close now is a refusal (it accepted more handshakes than it
            // had room for when they confirmed), not an address to back off from.
            Stage::Confirming(up) => self.dial_ended(
                now,
                up.my_link_id,
                crate::api::ConnectOutcome::Rejected {
                    neighbours: up.their_neighbours,
                },
            ),
            Stage::Hello => self.stats.inbound_failed += 1,
            Stage::Confirm(answered) => {
                self.stats.inbound_failed += 1;
                self.overlay.pending_in.remove(&answered.my_link_id);
            }
            Stage::Carrying { peer } => {
                // The link's only path is gone: its datagrams have nowhere to go, and the
                // failure detector finds it silent.
                if let Some(link) = self.links.get_mut(&peer)
                    && link.conn == Some(conn)
                {
                    link.conn = None;
                    link.path = None;
                }
            }
        }
    }

    /// Gives up on connections past their deadline.
    pub(crate) fn expire_conns(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .conns
            .map
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in due {
            if self
                .conns
                .map
                .get(&conn)
                .is_some_and(|c| matches!(c.stage, Stage::Hello))
            {
                self.stats.inbound_hello_timeouts += 1;
            }
            self.conn_lost(now, conn, true);
        }
    }

    /// Closes `conn` without consequences (its link is gone, or we leave).
    pub(crate) fn close_conn(&mut self, conn: ConnId) {
        if self.conns.map.remove(&conn).is_some() {
            self.conns.push(ConnIo::Close { conn });
        }
    }

    /// Closes every connection (we leave).
    pub(crate) fn close_all_conns(&mut self) {
        let all: Vec<ConnId> = self.conns.map.keys().copied().collect();
        for conn in all {
            self.close_conn(conn);
        }
    }

    /// Queues one link datagram on the connection that carries the link.
    pub(crate) fn write_carried(&mut self, conn: ConnId, datagram: &[u8]) {
        if self.conns.io.len() >= MAX_CONN_IO {
            self.stats.queue_overflows += 1;
            return;
        }
        self.stats.carried_datagrams_out += 1;
        self.conns.push(ConnIo::Write {
            conn,
            bytes: frame(datagram),
        });
    }

    /// Starts a dial: the runtime opens the connection and writes `hello` first.
    pub(crate) fn open_conn(
        &mut self,
        now: Instant,
        to: SocketAddr,
        dialing: Dialing,
        hello: Vec<u8>,
    ) {
        self.stats.dials_started += 1;
        let conn = self.conns.insert(Conn {
            remote: to,
            source: None,
            opened: now,
            deadline: Some(now + self.config.handshake_timeout),
            buf: Vec::new(),
            stage: Stage::Dialing(Box::new(dialing)),
        });
        self.conns.push(ConnIo::Open { conn, to });
        self.conns.push(ConnIo::Write { conn, bytes: hello });
    }
}
