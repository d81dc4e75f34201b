//! The thin dispatcher: what arrives goes to the part that owns it — link datagrams
//! (after their keys and replay window) to the detector, the overlay, search or reverse
//! connections by message; stranger datagrams to the detector and the overlay.

use std::net::SocketAddr;
use std::time::Instant;

use highway_wire::NodeId;
use highway_wire::peer::datagram::{self, Datagram, MIN_LINK_LEN};
use highway_wire::peer::{NotNeighbour, PeerMsg};

use crate::conns::MAX_EARLY_DATAGRAMS;
use crate::peer::{Peer, Phase};

impl Peer {
    /// Feeds one received datagram. Anything malformed, forged or replayed is counted
    /// and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        if self.phase == Phase::Left {
            return;
        }
        let frame = match datagram::decode(bytes) {
            Ok(frame) => frame,
            Err(_) => {
                self.stats.decode_errors += 1;
                return;
            }
        };
        match frame {
            Datagram::Link(frame) => {
                let Some(&peer) = self.by_link_id.get(&frame.link_id) else {
                    self.early_or_unknown(from, frame.link_id, bytes);
                    return;
                };
                let Some(link) = self.links.get_mut(&peer) else {
                    return;
                };
                let msg = match frame.open(&link.keys.recv) {
                    Ok(msg) => msg,
                    Err(highway_wire::peer::DecodeError::BadTag) => {
                        self.stats.bad_tags += 1;
                        return;
                    }
                    Err(_) => {
                        self.stats.decode_errors += 1;
                        return;
                    }
                };
                if !link.window.accept(frame.counter) {
                    self.stats.replays += 1;
                    return;
                }
                // Authenticated and fresh: the neighbour is at `from`, whatever its hello
                // said (behind a NAT this is its mapping). Replies go there from now on.
                if link.path.is_some_and(|p| p != from) {
                    self.stats.link_path_changes += 1;
                }
                link.path = Some(from);
                link.heard = true;
                self.reach.heard_on_a_link = true;
                self.heard_from(now, peer);
                self.on_link_message(now, peer, msg);
            }
            Datagram::Probe(probe) => self.on_stranger_probe(now, from, probe),
            Datagram::ProbeAck(ack) => self.on_probe_ack(ack),
            Datagram::NotNeighbour(nn) => self.on_not_neighbour(now, nn),
        }
    }

    /// A link datagram for a link id we have no link for.
    fn early_or_unknown(&mut self, from: SocketAddr, link_id: u64, bytes: &[u8]) {
        if let Some(pending) = self.overlay.pending_out.get_mut(&link_id) {
            // Our dial's link is up on the other side already; ours follows in a moment
            // (with "established"): held until then. Not a stranger: no "not your
            // neighbour".
            if pending.early.len() < MAX_EARLY_DATAGRAMS {
                self.stats.early_link_datagrams += 1;
                pending.early.push((from, bytes.to_vec()));
            } else {
                self.stats.early_link_dropped += 1;
            }
            return;
        }
        // Tell the sender, signed, so it drops its half — but only when the datagram is
        // at least as large as the answer.
        self.stats.unknown_links += 1;
        if bytes.len() < MIN_LINK_LEN || !self.stranger_reply_allowed() {
            return;
        }
        let nn = NotNeighbour::sign(&self.key, link_id);
        self.transmit(from, Datagram::NotNeighbour(nn).encode());
    }

    /// One authenticated message from neighbour `peer`.
    fn on_link_message(&mut self, now: Instant, peer: NodeId, msg: PeerMsg) {
        match msg {
            PeerMsg::Heartbeat(hb) => self.on_heartbeat(peer, hb),
            PeerMsg::HeartbeatAck { seq, observed } => {
                self.on_heartbeat_ack(now, peer, seq, observed);
            }
            PeerMsg::PingReq {
                probe_id,
                target,
                target_addr,
            } => self.act_as_witness(now, peer, probe_id, target, target_addr),
            PeerMsg::PingReqAck {
                probe_id,
                target,
                alive,
            } => self.on_ping_req_ack(now, probe_id, target, alive),
            PeerMsg::WitnessProbe {
                probe_id,
                suspecter,
            } => self.on_witness_probe(now, peer, probe_id, suspecter),
            PeerMsg::WitnessProbeAck { probe_id } => self.on_witness_probe_ack(peer, probe_id),
            PeerMsg::Leave => self.on_peer_left(now, &peer),
            PeerMsg::SummaryRequest { version, chunk } => {
                self.on_summary_request(peer, version, chunk);
            }
            PeerMsg::SummaryChunk {
                version,
                chunk,
                chunks,
                data,
            } => self.on_summary_chunk(peer, version, chunk, chunks, &data),
            PeerMsg::Query {
                id,
                ttl,
                hops,
                target,
            } => self.on_query(now, peer, id, ttl, hops, target),
            PeerMsg::QueryHits { id, hits } => self.on_query_hits(peer, id, hits),
            PeerMsg::QueryDone { id } => self.on_query_done(now, peer, id),
            PeerMsg::Reverse { token, to } => self.on_reverse(peer, token, to),
        }
    }
}
