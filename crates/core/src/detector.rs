//! Heartbeats and failure detection, in SWIM's terms.
//!
//! A neighbour not heard from within the suspect timeout becomes WARNING: we probe it
//! directly over our link and ask up to k witnesses — our other neighbours, those the
//! suspect lists as its own neighbours first — to probe it too (a ping-req). A witness
//! linked to the suspect probes over that link; otherwise it sends a padded stranger probe
//! whose answer the suspect signs. Any authenticated word from the suspect, or a witness's
//! "alive", makes it OKAY again; silence until the probe timeout makes it FAILED. A suspect
//! that learns it is suspected refutes at once with a heartbeat under a higher
//! incarnation.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use highway_wire::peer::datagram::Datagram;
use highway_wire::peer::{Heartbeat, PeerMsg, Probe, ProbeAck};
use highway_wire::{NodeId, PeerAddr};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::api::Event;
use crate::config::Config;
use crate::link::{Link, LinkState};
use crate::peer::Peer;

/// The failure detector's own state; the links it watches live in the peer.
#[derive(Debug)]
pub(crate) struct Detector {
    /// Raised to refute a suspicion: a heartbeat with a higher one clears it.
    pub incarnation: u64,
    pub next_heartbeat: Instant,
    /// Probes this peer runs as a witness for its neighbours, by our probe id.
    pub witness_requests: HashMap<u64, WitnessRequest>,
    /// Answers to strangers (probe acks, not-your-neighbour) left this interval.
    pub stranger_budget: u32,
    pub last_refute: Option<Instant>,
}

impl Detector {
    pub fn new(config: &Config, now: Instant) -> Self {
        Self {
            incarnation: 0,
            next_heartbeat: now + config.heartbeat_interval,
            witness_requests: HashMap::new(),
            stranger_budget: config.stranger_replies_per_interval,
            last_refute: None,
        }
    }

    /// True when a heartbeat round is due; moves the next one on (woken late, it skips
    /// the missed rounds: one catch-up round, not a burst) and refills the budgets.
    pub fn round_due(&mut self, config: &Config, now: Instant) -> bool {
        if now < self.next_heartbeat {
            return false;
        }
        let interval = config.heartbeat_interval;
        self.next_heartbeat += interval;
        if self.next_heartbeat <= now {
            self.next_heartbeat = now + interval;
        }
        self.stranger_budget = config.stranger_replies_per_interval;
        true
    }

    /// The next instant the detector has work: a heartbeat round or a witness deadline.
    pub fn next_wakeup(&self) -> Instant {
        self.witness_requests
            .values()
            .map(|r| r.deadline)
            .fold(self.next_heartbeat, Instant::min)
    }
}

/// A probe this peer runs on behalf of a neighbour (as its witness).
#[derive(Debug, Clone)]
pub(crate) struct WitnessRequest {
    pub requester: NodeId,
    pub requester_probe_id: u64,
    pub target: NodeId,
    pub deadline: Instant,
}

impl Peer {
    pub(crate) fn link_deadline(&self, link: &Link) -> Instant {
        match link.state {
            LinkState::Okay => link.last_heard + self.config.suspect_timeout,
            LinkState::Warning { deadline, .. } => deadline,
        }
    }

    pub(crate) fn send_heartbeat(&mut self, peer: &NodeId) {
        let neighbours = self.neighbour_entries(Some(peer));
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.sent_seq += 1;
        let msg = PeerMsg::Heartbeat(Heartbeat {
            seq: link.sent_seq,
            incarnation: self.detector.incarnation,
            summary_version: self.summary_version,
            neighbours,
        });
        self.stats.heartbeats_sent += 1;
        self.send(peer, &msg);
    }

    pub(crate) fn send_heartbeats(&mut self) {
        let peers = self.link_peers();
        for peer in &peers {
            self.send_heartbeat(peer);
        }
    }

    /// Any authenticated datagram from `peer` proves it alive.
    pub(crate) fn heard_from(&mut self, now: Instant, peer: NodeId) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.last_heard = now;
        if matches!(link.state, LinkState::Warning { .. }) {
            link.state = LinkState::Okay;
            self.stats.refuted += 1;
            self.emit(Event::StateChanged {
                id: peer,
                state: "okay",
            });
        }
    }

    pub(crate) fn check_neighbours(&mut self, now: Instant) {
        let mut suspects = Vec::new();
        let mut failed = Vec::new();
        let mut silent = Vec::new();
        let never_spoke = self.config.suspect_timeout + self.config.probe_timeout;
        for link in self.links.values() {
            // Witnesses can vouch that the peer is alive while the link itself never
            // carried a datagram (UDP blocked at one end): such a link is useless, and
            // queries sent over it would only wait for their timeout. Dropped as silent.
            if !link.heard && now >= link.since + never_spoke {
                silent.push(link.id);
                continue;
            }
            match link.state {
                LinkState::Okay if now >= link.last_heard + self.config.suspect_timeout => {
                    suspects.push(link.id);
                }
                LinkState::Warning { deadline, .. } if now >= deadline => failed.push(link.id),
                _ => {}
            }
        }
        failed.sort();
        suspects.sort();
        silent.sort();
        for peer in &silent {
            self.drop_link(peer, crate::api::DownReason::Silent);
        }
        if !silent.is_empty() {
            self.maintain(now);
        }
        for peer in &failed {
            self.fail(now, peer);
        }
        for peer in &suspects {
            self.suspect(now, peer);
        }
    }

    fn suspect(&mut self, now: Instant, peer: &NodeId) {
        let probe_id: u64 = self.rng.random();
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.state = LinkState::Warning {
            probe_id,
            since: now,
            deadline: now + self.config.probe_timeout,
        };
        // Where the suspect's datagrams came from, not what it published: behind a NAT
        // only that mapping reaches it, and it is an address the suspect proved.
        let target_addr = match link.path {
            Some(path) => PeerAddr::new(path.ip(), path.port(), link.addr.tcp),
            None => link.addr,
        };
        let listed: HashSet<NodeId> = link.their_neighbours.iter().map(|e| e.id).collect();
        self.stats.suspicions += 1;
        self.emit(Event::StateChanged {
            id: *peer,
            state: "warning",
        });
        self.send(
            peer,
            &PeerMsg::WitnessProbe {
                probe_id,
                suspecter: self.id,
            },
        );
        let mut witnesses: Vec<NodeId> = self
            .links
            .values()
            .filter(|l| l.id != *peer && l.state == LinkState::Okay)
            .map(|l| l.id)
            .collect();
        witnesses.sort();
        witnesses.shuffle(&mut self.rng);
        // The suspect's own neighbours first: they have a link to it.
        witnesses.sort_by_key(|w| !listed.contains(w));
        for witness in witnesses.iter().take(self.config.witnesses) {
            self.send(
                witness,
                &PeerMsg::PingReq {
                    probe_id,
                    target: *peer,
                    target_addr,
                },
            );
        }
    }

    pub(crate) fn on_heartbeat(&mut self, peer: NodeId, hb: Heartbeat) {
        self.stats.heartbeats_received += 1;
        let me = self.id;
        if let Some(link) = self.links.get_mut(&peer) {
            link.their_neighbours = hb.neighbours.into_iter().filter(|e| e.id != me).collect();
            link.their_summary_version = hb.summary_version;
            link.their_incarnation = link.their_incarnation.max(hb.incarnation);
        }
        self.on_summary_version(peer, hb.summary_version);
        // The heartbeat's source was just made this link's path.
        if let Some(observed) = self.links.get(&peer).and_then(|l| l.path) {
            self.send(
                &peer,
                &PeerMsg::HeartbeatAck {
                    seq: hb.seq,
                    observed,
                },
            );
        }
    }

    pub(crate) fn on_heartbeat_ack(
        &mut self,
        now: Instant,
        peer: NodeId,
        seq: u64,
        observed: SocketAddr,
    ) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.last_acked_seq = link.last_acked_seq.max(seq);
            link.last_acked_at = Some(now);
            link.observed_me = Some(observed);
        }
    }

    /// A witness answers our ping-req about `target`.
    pub(crate) fn on_ping_req_ack(
        &mut self,
        now: Instant,
        probe_id: u64,
        target: NodeId,
        alive: bool,
    ) {
        let vouched = self.links.get(&target).is_some_and(
            |l| matches!(l.state, LinkState::Warning { probe_id: p, .. } if p == probe_id),
        );
        if alive && vouched {
            self.heard_from(now, target);
        }
    }

    /// `peer` probes us for `suspecter` (or for itself): answer, and refute if a
    /// neighbour suspects us.
    pub(crate) fn on_witness_probe(
        &mut self,
        now: Instant,
        peer: NodeId,
        probe_id: u64,
        suspecter: NodeId,
    ) {
        self.send(&peer, &PeerMsg::WitnessProbeAck { probe_id });
        if suspecter != peer && self.links.contains_key(&suspecter) {
            self.refute(now, Some(suspecter));
        }
    }

    pub(crate) fn on_witness_probe_ack(&mut self, peer: NodeId, probe_id: u64) {
        if self
            .detector
            .witness_requests
            .get(&probe_id)
            .is_some_and(|r| r.target == peer)
        {
            self.answer_witness_request(probe_id, true);
        }
    }

    pub(crate) fn act_as_witness(
        &mut self,
        now: Instant,
        requester: NodeId,
        probe_id: u64,
        target: NodeId,
        target_addr: PeerAddr,
    ) {
        self.stats.probes_as_witness += 1;
        if target == self.id
            || self.detector.witness_requests.len() >= self.config.max_witness_requests
        {
            let alive = target == self.id;
            self.send(
                &requester,
                &PeerMsg::PingReqAck {
                    probe_id,
                    target,
                    alive,
                },
            );
            return;
        }
        let my_probe: u64 = self.rng.random();
        self.detector.witness_requests.insert(
            my_probe,
            WitnessRequest {
                requester,
                requester_probe_id: probe_id,
                target,
                deadline: now + self.config.probe_timeout / 2,
            },
        );
        if self.links.contains_key(&target) {
            self.send(
                &target,
                &PeerMsg::WitnessProbe {
                    probe_id: my_probe,
                    suspecter: requester,
                },
            );
        } else {
            let probe = Probe {
                nonce: my_probe,
                requester: self.id,
                target,
            };
            self.transmit(target_addr.udp_addr(), Datagram::Probe(probe).encode());
        }
    }

    fn answer_witness_request(&mut self, my_probe: u64, alive: bool) {
        let Some(req) = self.detector.witness_requests.remove(&my_probe) else {
            return;
        };
        let msg = PeerMsg::PingReqAck {
            probe_id: req.requester_probe_id,
            target: req.target,
            alive,
        };
        self.send(&req.requester, &msg);
    }

    pub(crate) fn expire_witness_requests(&mut self, now: Instant) {
        let mut expired: Vec<u64> = self
            .detector
            .witness_requests
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(&id, _)| id)
            .collect();
        expired.sort();
        for id in expired {
            self.answer_witness_request(id, false);
        }
    }

    pub(crate) fn on_stranger_probe(&mut self, now: Instant, from: SocketAddr, probe: Probe) {
        if probe.target != self.id || !self.stranger_reply_allowed() {
            return;
        }
        let ack = ProbeAck::sign(&self.key, &probe);
        self.transmit(from, Datagram::ProbeAck(ack).encode());
        // Someone is checking on us: our neighbours may suspect us.
        self.refute(now, None);
    }

    pub(crate) fn on_probe_ack(&mut self, ack: ProbeAck) {
        let matches = self
            .detector
            .witness_requests
            .get(&ack.nonce)
            .is_some_and(|r| r.target == ack.responder);
        if matches && ack.verify(&self.id) {
            self.answer_witness_request(ack.nonce, true);
        }
    }

    /// Spends one unit of the per-interval budget for answering strangers.
    pub(crate) fn stranger_reply_allowed(&mut self) -> bool {
        if self.detector.stranger_budget == 0 {
            self.stats.stranger_dropped += 1;
            return false;
        }
        self.detector.stranger_budget -= 1;
        self.stats.stranger_replies += 1;
        true
    }

    /// Raises our incarnation and heartbeats at once, to `to` or to everyone; at most
    /// four times per heartbeat interval.
    fn refute(&mut self, now: Instant, to: Option<NodeId>) {
        if self
            .detector
            .last_refute
            .is_some_and(|at| now < at + self.config.heartbeat_interval / 4)
        {
            return;
        }
        self.detector.last_refute = Some(now);
        self.detector.incarnation += 1;
        match to {
            Some(peer) => self.send_heartbeat(&peer),
            None => self.send_heartbeats(),
        }
    }
}
