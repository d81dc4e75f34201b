//! TCP connections between harness peers, in memory: what a runtime does with
//! `poll_conn`. Every segment takes half the handshake round trip; a connection to an
//! address nobody answers on (or across a cut, or to a dead peer) is reset after the
//! same delay. Dials are watched so tests can see how each ended.

use std::collections::HashMap;
use std::time::Instant;

use highway_core::{ConnId, ConnIo};
use highway_wire::PeerAddr;
use highway_wire::peer::handshake::{Decision, Welcome, is_established, split_frame};

use super::{Net, Outcome, Rec};

/// One end of a connection: a peer (by index and process) and its id for it.
type End = (usize, u64, ConnId);

#[derive(Debug)]
pub(super) enum Wire {
    /// The connection from `from` reaches the peer at the far end.
    Accept {
        from: End,
    },
    Bytes(Vec<u8>),
    Closed,
}

#[derive(Debug)]
pub(super) struct Segment {
    pub at: Instant,
    pub to: End,
    pub wire: Wire,
}

/// A dial being watched: where it went, and what the welcome said.
#[derive(Debug)]
struct Watch {
    addr: PeerAddr,
    decision: Option<Decision>,
}

#[derive(Debug, Default)]
pub(super) struct Pipes {
    pub segments: Vec<Segment>,
    /// Each open connection's far end.
    far: HashMap<End, End>,
    /// Writes from ends whose connection is not accepted yet.
    queued: HashMap<End, Vec<Vec<u8>>>,
    watches: HashMap<End, Watch>,
}

impl Net {
    fn end(&self, i: usize, conn: ConnId) -> End {
        (i, self.nodes[i].restarts, conn)
    }

    fn current(&self, end: End) -> bool {
        self.nodes[end.0].alive && self.nodes[end.0].restarts == end.1
    }

    fn segment(&mut self, to: End, wire: Wire) {
        let at = self.now + self.handshake_rtt / 2;
        self.pipes.segments.push(Segment { at, to, wire });
    }

    /// Does what peer `i` asked of its connections.
    pub(super) fn drain_conns(&mut self, i: usize) -> bool {
        let mut busy = false;
        while let Some(io) = self.nodes[i].peer.poll_conn() {
            busy = true;
            if self.nodes[i].alive {
                self.on_conn_io(i, io);
            }
        }
        busy
    }

    fn on_conn_io(&mut self, i: usize, io: ConnIo) {
        match io {
            ConnIo::Open { conn, to } => {
                let me = self.end(i, conn);
                let target = self.node_at_tcp(to);
                let addr = target.map_or_else(
                    || PeerAddr::new(to.ip(), to.port(), to.port()),
                    |t| self.peer(t).addr(),
                );
                self.record(i, Rec::Connect { addr });
                self.pipes.watches.insert(
                    me,
                    Watch {
                        addr,
                        decision: None,
                    },
                );
                self.pipes.queued.insert(me, Vec::new());
                match target.filter(|&t| self.reachable(i, t)) {
                    Some(t) => {
                        let far = self.end(t, ConnId(0));
                        self.segment(far, Wire::Accept { from: me });
                    }
                    None => self.segment(me, Wire::Closed),
                }
            }
            ConnIo::Write { conn, bytes } => {
                let me = self.end(i, conn);
                if let Some(&far) = self.pipes.far.get(&me) {
                    self.segment(far, Wire::Bytes(bytes));
                } else if let Some(queued) = self.pipes.queued.get_mut(&me) {
                    queued.push(bytes);
                }
            }
            ConnIo::Close { conn } => {
                let me = self.end(i, conn);
                self.settle_watch(me);
                self.pipes.queued.remove(&me);
                if let Some(far) = self.pipes.far.remove(&me) {
                    self.pipes.far.remove(&far);
                    self.segment(far, Wire::Closed);
                }
            }
            // Harness peers never ask anyone to connect back.
            ConnIo::Reverse { .. } => {}
        }
    }

    /// Delivers the next segment due now, if any.
    pub(super) fn deliver_segment(&mut self) -> bool {
        let now = self.now;
        let Some(pos) = self.pipes.segments.iter().position(|s| s.at <= now) else {
            return false;
        };
        let Segment { to, wire, .. } = self.pipes.segments.remove(pos);
        match wire {
            Wire::Accept { from } => self.accept(to.0, from),
            Wire::Bytes(bytes) => {
                if self.current(to) {
                    self.watch_bytes(to, &bytes);
                    self.nodes[to.0].peer.handle_conn_bytes(now, to.2, &bytes);
                }
            }
            Wire::Closed => {
                self.settle_watch(to);
                self.pipes.far.remove(&to);
                self.pipes.queued.remove(&to);
                if self.current(to) {
                    self.nodes[to.0].peer.handle_conn_closed(now, to.2);
                }
            }
        }
        true
    }

    fn accept(&mut self, t: usize, from: End) {
        if !self.current(from) {
            return;
        }
        let now = self.now;
        let source = self.peer(from.0).addr().tcp_addr();
        let accepted = if self.reachable(from.0, t) {
            self.nodes[t].peer.handle_accept(now, source)
        } else {
            None
        };
        let Some(conn) = accepted else {
            self.segment(from, Wire::Closed);
            return;
        };
        let me = self.end(t, conn);
        self.pipes.far.insert(me, from);
        self.pipes.far.insert(from, me);
        // What the initiator wrote while connecting arrives with the connection.
        for bytes in self.pipes.queued.remove(&from).unwrap_or_default() {
            self.nodes[t].peer.handle_conn_bytes(now, conn, &bytes);
        }
    }

    /// Notes what the responder told a watched dial, and records how it ended.
    fn watch_bytes(&mut self, to: End, bytes: &[u8]) {
        let Some(watch) = self.pipes.watches.get_mut(&to) else {
            return;
        };
        let Ok(Some((payload, _))) = split_frame(bytes) else {
            return;
        };
        let outcome = match watch.decision {
            None => {
                let Ok(welcome) = Welcome::decode(payload) else {
                    return;
                };
                watch.decision = Some(welcome.decision);
                match welcome.decision {
                    Decision::Full => Outcome::Full,
                    Decision::Reject => Outcome::Rejected,
                    Decision::Accept => return,
                }
            }
            Some(_) if is_established(payload) => Outcome::Linked,
            Some(_) => return,
        };
        let addr = watch.addr;
        self.pipes.watches.remove(&to);
        self.record(to.0, Rec::Dialled { addr, outcome });
    }

    /// A watched dial's connection ended before its outcome was recorded.
    fn settle_watch(&mut self, end: End) {
        let Some(watch) = self.pipes.watches.remove(&end) else {
            return;
        };
        if !self.current(end) {
            return;
        }
        let outcome = match watch.decision {
            Some(_) => Outcome::Rejected,
            None => Outcome::Unreachable,
        };
        self.record(
            end.0,
            Rec::Dialled {
                addr: watch.addr,
                outcome,
            },
        );
    }

    pub(super) fn next_segment(&self) -> Option<Instant> {
        self.pipes.segments.iter().map(|s| s.at).min()
    }
}
