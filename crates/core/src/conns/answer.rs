//! The other side of a handshake: read the hello, answer it, verify the confirm, install
//! the link, and only then write "established".

use std::time::Instant;

use highway_wire::peer::handshake::established_frame;
use highway_wire::peer::reverse::ReverseHello;

use super::{Answered, Conn, ConnId, ConnIo, Stage};
use crate::api::LinkUp;
use crate::peer::Peer;

impl Peer {
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        id: ConnId,
        mut conn: Conn,
        payload: Vec<u8>,
    ) -> Option<Conn> {
        if ReverseHello::is_reverse(&payload) {
            // A holder behind a NAT connecting back: HTTP follows, so nothing may have
            // been sent past the frame (the holder waits for the request).
            if conn.buf.is_empty() {
                self.stats.reverse_hellos += 1;
                self.conns.push(ConnIo::Reverse {
                    conn: id,
                    hello: payload,
                });
            } else {
                self.stats.reverse_hellos_refused += 1;
                self.conns.push(ConnIo::Close { conn: id });
            }
            return None;
        }
        let answer = match self.answer_hello(now, conn.remote.ip(), &payload) {
            Ok(answer) => answer,
            Err(_) => {
                self.stats.inbound_failed += 1;
                self.conns.push(ConnIo::Close { conn: id });
                return None;
            }
        };
        self.conns.push(ConnIo::Write {
            conn: id,
            bytes: answer.welcome,
        });
        let Some(responder) = answer.responder else {
            self.conns.push(ConnIo::Close { conn: id });
            return None;
        };
        conn.deadline = Some(conn.opened + self.config.handshake_timeout);
        conn.stage = Stage::Confirm(Box::new(Answered {
            responder,
            my_link_id: answer.my_link_id,
            initiator_addr: answer.initiator_addr,
            initiator_dialable: answer.initiator_dialable,
            stream: answer.stream,
        }));
        Some(conn)
    }

    pub(super) fn on_confirm(
        &mut self,
        now: Instant,
        id: ConnId,
        mut conn: Conn,
        answered: Answered,
        payload: &[u8],
    ) -> Option<Conn> {
        let accepted = match answered.responder.on_confirm(payload) {
            Ok(accepted) => accepted,
            Err(_) => {
                self.stats.inbound_failed += 1;
                self.overlay.pending_in.remove(&answered.my_link_id);
                self.conns.push(ConnIo::Close { conn: id });
                return None;
            }
        };
        let peer = accepted.initiator;
        self.on_link_up(
            now,
            LinkUp {
                my_link_id: answered.my_link_id,
                their_link_id: accepted.initiator_link_id,
                peer,
                addr: answered.initiator_addr,
                keys: accepted.keys,
                their_neighbours: Vec::new(),
                inbound: true,
                // Judged against the connection's source by `answer_hello`: a peer naming
                // another address (behind a NAT) is neither sent to before it speaks nor
                // handed on as dialable.
                dialable: answered.initiator_dialable,
                // The initiator's UDP does not get through: this connection carries the link.
                carrier: answered.stream.then_some((id, conn.remote)),
            },
        );
        if !self.has_link(answered.my_link_id) {
            // No room left when it confirmed: closing without "established" refuses it.
            self.conns.push(ConnIo::Close { conn: id });
            return None;
        }
        self.stats.inbound_linked += 1;
        self.conns.push(ConnIo::Write {
            conn: id,
            bytes: established_frame(),
        });
        if !answered.stream {
            self.conns.push(ConnIo::Close { conn: id });
            return None;
        }
        conn.deadline = None;
        conn.stage = Stage::Carrying { peer };
        Some(conn)
    }
}
