//! Our side of a handshake: read the welcome, confirm, wait for "established", then hand
//! the link to the overlay along with the datagrams that beat "established" here.

use std::time::Instant;

use highway_wire::peer::handshake::{Decision, InitiatorOutcome, is_established};

use super::{Conn, ConnId, ConnIo, Dialing, Stage};
use crate::api::{ConnectOutcome, LinkUp};
use crate::peer::Peer;

impl Peer {
    pub(super) fn on_welcome(
        &mut self,
        now: Instant,
        id: ConnId,
        mut conn: Conn,
        dialing: Dialing,
        payload: &[u8],
    ) -> Option<Conn> {
        let outcome = dialing
            .initiator
            .on_welcome(payload, dialing.expected, dialing.my_link_id);
        let (responder, responder_link_id, keys, neighbours, confirm) = match outcome {
            Ok(InitiatorOutcome::Linked {
                responder,
                responder_link_id,
                keys,
                neighbours,
                confirm,
            }) => (responder, responder_link_id, keys, neighbours, confirm),
            Ok(InitiatorOutcome::NotLinked {
                decision,
                neighbours,
                ..
            }) => {
                self.conns.push(ConnIo::Close { conn: id });
                let outcome = match decision {
                    Decision::Full => ConnectOutcome::Full { neighbours },
                    // An "accept" without a link only answers a query, which we never send.
                    Decision::Reject | Decision::Accept => ConnectOutcome::Rejected { neighbours },
                };
                self.dial_ended(now, dialing.my_link_id, outcome);
                return None;
            }
            Err(_) => {
                // Not the peer we meant, or not a peer at all.
                self.stats.dial_bad_welcomes += 1;
                self.conns.push(ConnIo::Close { conn: id });
                self.dial_ended(now, dialing.my_link_id, ConnectOutcome::Unreachable);
                return None;
            }
        };
        self.conns.push(ConnIo::Write {
            conn: id,
            bytes: confirm,
        });
        conn.stage = Stage::Confirming(Box::new(LinkUp {
            my_link_id: dialing.my_link_id,
            their_link_id: responder_link_id,
            peer: responder,
            addr: dialing.addr,
            keys,
            their_neighbours: neighbours,
            inbound: false,
            dialable: true,
            carrier: dialing.stream.then_some((id, conn.remote)),
        }));
        Some(conn)
    }

    pub(super) fn on_established(
        &mut self,
        now: Instant,
        id: ConnId,
        mut conn: Conn,
        up: LinkUp,
        payload: &[u8],
    ) -> Option<Conn> {
        if !is_established(payload) {
            self.conns.push(ConnIo::Close { conn: id });
            let outcome = ConnectOutcome::Rejected {
                neighbours: up.their_neighbours,
            };
            self.dial_ended(now, up.my_link_id, outcome);
            return None;
        }
        let peer = up.peer;
        let carried = up.carrier.is_some();
        self.dial_linked(now, up);
        if carried && self.links.get(&peer).is_some_and(|l| l.conn == Some(id)) {
            conn.deadline = None;
            conn.stage = Stage::Carrying { peer };
            return Some(conn);
        }
        self.conns.push(ConnIo::Close { conn: id });
        None
    }

    /// Our dial `my_link_id` made a link: the overlay installs it, then reads the link
    /// datagrams that arrived before "established" did.
    fn dial_linked(&mut self, now: Instant, up: LinkUp) {
        self.stats.dials_linked += 1;
        let early = self
            .overlay
            .pending_out
            .get_mut(&up.my_link_id)
            .map(|p| std::mem::take(&mut p.early))
            .unwrap_or_default();
        self.on_link_up(now, up);
        for (from, bytes) in early {
            self.handle_datagram(now, from, &bytes);
        }
    }

    /// Our dial `my_link_id` ended without a link.
    pub(crate) fn dial_ended(&mut self, now: Instant, my_link_id: u64, outcome: ConnectOutcome) {
        match &outcome {
            // Counted in `dials_unanswered` by the overlay.
            ConnectOutcome::Unreachable => {}
            ConnectOutcome::Full { .. } => self.stats.dials_full += 1,
            ConnectOutcome::Rejected { .. } => self.stats.dials_rejected += 1,
        }
        self.on_connect_failed(now, my_link_id, outcome);
    }
}
