//! TCP connections between simulated hosts: what the node runtime's connection tasks do
//! (`node/src/conns.rs`), with segments that take time to travel. Everything else about
//! a connection — the handshake, its deadlines, the caps on connections, links carried
//! over TCP, datagrams that beat "established" — is the core's, exactly as in a node.
//!
//! - A connection attempt (SYN) reaches the target after one delay, more for each lost
//!   SYN (retransmitted after 1 s, doubling). Across a cut, to a host behind a NAT or to
//!   an address nobody has, it never arrives: the dialling core gives up at its deadline.
//! - The target's machine answers as it is then: crashed, nothing; process exited, a
//!   reset; running, its core admits the connection or refuses it (a reset).
//! - The SYN-ACK takes one delay back; what the initiator wrote meanwhile leaves then.
//! - Every write is a segment: a lost one is retransmitted (200 ms, doubling), and no
//!   segment overtakes an earlier one of its connection. A close follows the data.
//! - A crashed machine's connections say nothing more; the other ends find out by their
//!   deadlines or their links' silence.

use std::time::Duration;

use highway_core::{ConnId, ConnIo};

use super::shard::{Action, Shard};
use super::world::World;
use crate::HostId;
use crate::clock::SimTime;
use crate::host::Life;
use crate::network::{self, TCP_PORT};
use crate::runtime::{DATA_RTO, SYN_RTO};

/// A TCP segment given up on after this much retransmitting.
const GIVE_UP: Duration = Duration::from_secs(60);

/// One end of a connection: a host's process (by epoch) and its core's id for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub host: HostId,
    pub epoch: u32,
    pub conn: ConnId,
}

/// A connection as one host's runtime holds it.
#[derive(Debug)]
pub(crate) struct SimConn {
    /// The other end, once the SYN-ACK (or, at the responder, the SYN) arrived.
    far: Option<End>,
    /// Writes made before the connection was up.
    queued: Vec<Vec<u8>>,
    /// When our last segment reaches the other end: later ones never arrive earlier.
    last_arrival: SimTime,
}

/// What travels between the two ends of a connection.
#[derive(Debug)]
pub(crate) enum Segment {
    /// The SYN: the connection from `from` reaches its target.
    Syn {
        from: End,
    },
    /// The SYN-ACK: the target (`far`) took the connection.
    SynAck {
        far: End,
    },
    Data(Vec<u8>),
    /// The other end closed it, reset it, or never took it.
    Closed,
}

impl Shard {
    /// How long one TCP segment from `from` to `to` takes, retransmissions included;
    /// `None` if it never arrives.
    fn segment_delay(
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

    /// Sends `segment` from host `from` to end `to` (the target host for a SYN), after
    /// `at_least` and its own delay, if it gets there.
    fn send_segment(
        &mut self,
        world: &World,
        from: HostId,
        to: HostId,
        dest: Option<End>,
        segment: Segment,
        at_least: SimTime,
    ) -> Option<SimTime> {
        let rto = match segment {
            Segment::Syn { .. } | Segment::SynAck { .. } => SYN_RTO,
            Segment::Data(_) | Segment::Closed => DATA_RTO,
        };
        let at = (self.now + self.segment_delay(world, from, to, rto)?).max(at_least);
        self.send_to(at, to, Action::Segment { to, dest, segment });
        Some(at)
    }

    /// Does what `h`'s core wants done with a connection.
    pub(super) fn on_conn_io(&mut self, world: &World, h: HostId, io: ConnIo) {
        match io {
            ConnIo::Open { conn, to } => {
                let now = self.now;
                let epoch = self.host(h).epoch;
                self.host_mut(h).conns.insert(
                    conn,
                    SimConn {
                        far: None,
                        queued: Vec::new(),
                        last_arrival: now,
                    },
                );
                let target = network::host_at(to, TCP_PORT)
                    .filter(|t| world.net.knows(*t) && !world.is_behind_nat(*t));
                if let Some(t) = target {
                    let from = End {
                        host: h,
                        epoch,
                        conn,
                    };
                    self.send_segment(world, h, t, None, Segment::Syn { from }, now);
                }
            }
            ConnIo::Write { conn, bytes } => {
                let Some(c) = self.host_mut(h).conns.get_mut(&conn) else {
                    return;
                };
                match c.far {
                    Some(far) => self.write(world, h, conn, far, bytes),
                    None => c.queued.push(bytes),
                }
            }
            // The simulator runs no relay hub: a reverse connection is closed.
            ConnIo::Close { conn } | ConnIo::Reverse { conn, .. } => {
                let Some(c) = self.host_mut(h).conns.remove(&conn) else {
                    return;
                };
                if let Some(far) = c.far {
                    self.send_segment(
                        world,
                        h,
                        far.host,
                        Some(far),
                        Segment::Closed,
                        c.last_arrival,
                    );
                }
            }
        }
    }

    fn write(&mut self, world: &World, h: HostId, conn: ConnId, far: End, bytes: Vec<u8>) {
        let after = self
            .host(h)
            .conns
            .get(&conn)
            .map_or(self.now, |c| c.last_arrival);
        let sent = self.send_segment(world, h, far.host, Some(far), Segment::Data(bytes), after);
        if let (Some(at), Some(c)) = (sent, self.host_mut(h).conns.get_mut(&conn)) {
            c.last_arrival = at;
        }
    }

    /// A segment reaches host `to` (end `dest` of its connection; none for a SYN).
    pub(super) fn on_segment(
        &mut self,
        world: &World,
        to: HostId,
        dest: Option<End>,
        segment: Segment,
    ) {
        match (segment, dest) {
            (Segment::Syn { from }, _) => self.on_syn(world, to, from),
            (Segment::SynAck { far }, Some(me)) => self.on_syn_ack(world, me, far),
            (Segment::Data(bytes), Some(me))
                if self.current(me.host, me.epoch)
                    && self.host(me.host).conns.contains_key(&me.conn) =>
            {
                let now = world.clock.instant(self.now);
                self.host_mut(me.host)
                    .peer
                    .handle_conn_bytes(now, me.conn, &bytes);
                self.flush(world, me.host);
            }
            (Segment::Closed, Some(me))
                if self.current(me.host, me.epoch)
                    && self.host(me.host).conns.contains_key(&me.conn) =>
            {
                self.host_mut(me.host).conns.remove(&me.conn);
                let now = world.clock.instant(self.now);
                self.host_mut(me.host).peer.handle_conn_closed(now, me.conn);
                self.flush(world, me.host);
            }
            // Stale: for a process or a connection that is gone.
            _ => {}
        }
    }

    fn on_syn(&mut self, world: &World, to: HostId, from: End) {
        match self.host(to).life {
            Life::Crashed => return,
            Life::Exited => {
                self.send_segment(world, to, from.host, Some(from), Segment::Closed, self.now);
                return;
            }
            Life::Up => {}
        }
        let now = world.clock.instant(self.now);
        let source = network::addr_of(from.host).tcp_addr();
        let admitted = self.host_mut(to).peer.handle_accept(now, source);
        let Some(conn) = admitted else {
            self.send_segment(world, to, from.host, Some(from), Segment::Closed, self.now);
            return;
        };
        let last_arrival = self.now;
        self.host_mut(to).conns.insert(
            conn,
            SimConn {
                far: Some(from),
                queued: Vec::new(),
                last_arrival,
            },
        );
        let far = End {
            host: to,
            epoch: self.host(to).epoch,
            conn,
        };
        let at = self.send_segment(
            world,
            to,
            from.host,
            Some(from),
            Segment::SynAck { far },
            self.now,
        );
        if let (Some(at), Some(c)) = (at, self.host_mut(to).conns.get_mut(&conn)) {
            c.last_arrival = at;
        }
        self.flush(world, to);
    }

    fn on_syn_ack(&mut self, world: &World, me: End, far: End) {
        let waiting = self.current(me.host, me.epoch)
            && self
                .host(me.host)
                .conns
                .get(&me.conn)
                .is_some_and(|c| c.far.is_none());
        if !waiting {
            // The dialling core gave up meanwhile (or its process is gone): a reset.
            if self.host(me.host).life != Life::Crashed {
                self.send_segment(
                    world,
                    me.host,
                    far.host,
                    Some(far),
                    Segment::Closed,
                    self.now,
                );
            }
            return;
        }
        let Some(c) = self.host_mut(me.host).conns.get_mut(&me.conn) else {
            return;
        };
        c.far = Some(far);
        let queued = std::mem::take(&mut c.queued);
        for bytes in queued {
            self.write(world, me.host, me.conn, far, bytes);
        }
    }
}
