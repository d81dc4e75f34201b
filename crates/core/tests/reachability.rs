//! Peers behind NATs (issue 11): a link's datagrams go where the neighbour's
//! authenticated datagrams come from, never where a hello points; undialable peers are
//! never dialled and cannot fill a dialable peer's slots; heartbeat acks tell a peer how
//! the outside sees it.

mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use harness::{dial_out, drain_events, drain_transmits, solo};
use highway_core::{Command, Config, ConnId, ConnIo, Event, NatClass, Peer};
use highway_wire::peer::datagram::{Datagram, decode};
use highway_wire::peer::handshake::{
    Decision, Hello, Initiator, InitiatorOutcome, LinkKeys, Purpose, established_frame,
    is_established, split_frame,
};
use highway_wire::peer::{Heartbeat, NeighbourEntry, PeerMsg, seal};
use highway_wire::{NodeId, PeerAddr};

fn payload(framed: &[u8]) -> &[u8] {
    split_frame(framed).unwrap().unwrap().0
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The initiator's end of an inbound link, as a test drives it.
struct Remote {
    id: NodeId,
    keys: LinkKeys,
    my_link_id: u64,
    their_link_id: u64,
    counter: u64,
}

impl Remote {
    fn seal(&mut self, msg: &PeerMsg) -> Vec<u8> {
        self.counter += 1;
        seal(self.their_link_id, self.counter, msg, &self.keys.send)
    }

    fn open(&self, bytes: &[u8]) -> Option<PeerMsg> {
        match decode(bytes) {
            Ok(Datagram::Link(f)) if f.link_id == self.my_link_id => f.open(&self.keys.recv).ok(),
            _ => None,
        }
    }

    fn heartbeat(&mut self, seq: u64) -> Vec<u8> {
        self.seal(&PeerMsg::Heartbeat(Heartbeat {
            seq,
            incarnation: 0,
            summary_version: 0,
            neighbours: Vec::new(),
        }))
    }
}

/// Peer `seed` dials `peer` over TCP from `source`, naming `named` in its hello and
/// saying whether it can be dialled. Returns the remote end once `peer` installed the
/// link, or `None` when `peer` did not accept.
fn dial_in(
    peer: &mut Peer,
    now: Instant,
    seed: u8,
    named: PeerAddr,
    source: IpAddr,
    dialable: bool,
) -> Option<Remote> {
    let key = harness::key(seed);
    let (initiator, hello) =
        Initiator::start_from(&key, named, dialable, Purpose::Link, [seed; 32]);
    let (conn, welcome) = harness::send_hello(peer, now, SocketAddr::new(source, 50_000), &hello);
    let my_link_id = 0xAB00 + u64::from(seed);
    let InitiatorOutcome::Linked {
        responder_link_id,
        keys,
        confirm,
        ..
    } = initiator
        .on_welcome(payload(&welcome.written), Some(peer.id()), my_link_id)
        .unwrap()
    else {
        return None;
    };
    peer.handle_conn_bytes(now, conn, &confirm);
    let established = harness::reply(peer, conn);
    if established.written.is_empty() || !is_established(payload(&established.written)) {
        return None;
    }
    let id = NodeId::from_key(&key.verifying_key());
    let view = peer.neighbours(now);
    let linked = view.iter().find(|n| n.id == id).expect("installed");
    assert_eq!(linked.dialable, dialable, "handed on as dialable or not");
    Some(Remote {
        id,
        keys,
        my_link_id,
        their_link_id: responder_link_id,
        counter: 0,
    })
}

fn asks_stream(hello: &[u8]) -> bool {
    Hello::decode(payload(hello)).unwrap().stream
}

/// Peer `seed` accepts that dial over TCP; the link never carries a datagram.
fn link_up_over_tcp_only(peer: &mut Peer, t: Instant, conn: ConnId, hello: &[u8], seed: u8) {
    let responder = harness::answer_dial(peer, t, conn, hello, seed, Decision::Accept, 7);
    let confirm = harness::reply(peer, conn).written;
    responder
        .expect("accepted")
        .on_confirm(payload(&confirm))
        .expect("a genuine confirm");
    peer.handle_conn_bytes(t, conn, &established_frame());
    assert!(
        peer.neighbours(t)
            .iter()
            .any(|n| n.id == harness::id_of(seed))
    );
}

/// `events` dropped a link as silent, and reported no failure to the Gatekeeper.
fn dropped_silent_unreported(events: &[Event]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            Event::NeighbourDown {
                reason: highway_core::DownReason::Silent,
                ..
            }
        )
    }) && !events
        .iter()
        .any(|e| matches!(e, Event::ReportFailed { .. }))
}

/// Finding of issue 11: a hello could name any address, so the responder refused hellos
/// whose IP was not the TCP source, and peers behind NATs never linked. Now the hello's
/// address aims nothing: the link has no path until the initiator's first authenticated
/// datagram, whose source (the NAT's mapping) becomes the path.
#[test]
fn inbound_link_datagrams_go_where_the_initiator_speaks_from() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let lan = PeerAddr::new("192.0.2.10".parse().unwrap(), 4000, 4001);
    let mut remote = dial_in(
        &mut peer,
        now,
        40,
        lan,
        "203.0.113.7".parse().unwrap(),
        false,
    )
    .expect("a peer behind a NAT is accepted");
    drain_events(&mut peer);

    // Nothing is sent anywhere before the initiator speaks, however the peer is prodded.
    peer.handle_timeout(now + peer.config().heartbeat_interval);
    assert!(drain_transmits(&mut peer).is_empty());
    assert!(peer.stats().sends_without_path > 0);

    let mapping = sock("203.0.113.7:61001");
    let hb = remote.heartbeat(1);
    peer.handle_datagram(now, mapping, &hb);
    let out = drain_transmits(&mut peer);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].to, mapping,
        "answered at the mapping, not the hello's address"
    );
    match remote.open(&out[0].bytes) {
        Some(PeerMsg::HeartbeatAck { seq: 1, observed }) => assert_eq!(observed, mapping),
        other => panic!("expected an ack echoing the mapping, got {other:?}"),
    }

    // A forged datagram from elsewhere (no valid tag) moves nothing; the NAT rebinding
    // to a new port, authenticated, does.
    let mut forged = remote.heartbeat(2);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    peer.handle_datagram(now, sock("198.51.100.66:9"), &forged);
    assert!(drain_transmits(&mut peer).is_empty());
    let rebound = sock("203.0.113.7:62002");
    let hb = remote.heartbeat(3);
    peer.handle_datagram(now, rebound, &hb);
    let out = drain_transmits(&mut peer);
    assert_eq!(out[0].to, rebound);
    assert_eq!(peer.stats().link_path_changes, 1);

    // It is listed as undialable, so no one is sent to dial its LAN address.
    let view = peer.neighbours(now);
    assert_eq!(view[0].udp_path, Some(rebound));
    assert!(!view[0].dialable);
}

/// A replayed datagram from a new source moves the path no more than it is acted on.
#[test]
fn a_replayed_datagram_cannot_redirect_a_link() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let lan = PeerAddr::new("192.0.2.10".parse().unwrap(), 4000, 4001);
    let mut remote = dial_in(
        &mut peer,
        now,
        41,
        lan,
        "203.0.113.7".parse().unwrap(),
        false,
    )
    .unwrap();
    let mapping = sock("203.0.113.7:61001");
    let hb = remote.heartbeat(1);
    peer.handle_datagram(now, mapping, &hb);
    drain_transmits(&mut peer);
    peer.handle_datagram(now, sock("198.51.100.66:9"), &hb);
    assert_eq!(peer.stats().replays, 1);
    assert_eq!(peer.neighbours(now)[0].udp_path, Some(mapping));
}

/// Peers behind NATs have their own slots, on top of `max_degree`: as many as
/// `undialable_slots` link, the next is answered "full", and every one of the
/// `max_degree` slots is still there for peers that can be dialled, which keep the
/// overlay's dialable core connected. A peer with only undialable neighbours still looks
/// for dialable ones.
#[test]
fn undialable_peers_have_their_own_slots() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let max = peer.config().max_degree;
    let pool = peer.config().undialable_slots;
    assert!(pool >= 1);
    let mut linked = 0;
    for seed in 20..(20 + pool as u8 + 2) {
        let lan = PeerAddr::new("192.0.2.20".parse().unwrap(), 4000, u16::from(seed));
        let source: IpAddr = format!("203.0.113.{seed}").parse().unwrap();
        if dial_in(&mut peer, now, seed, lan, source, false).is_some() {
            linked += 1;
        }
    }
    assert_eq!(linked, pool);
    assert_eq!(peer.stats().hellos_refused_undialable, 2);
    // Still short of dialable neighbours: it dials the next candidate (the dial then
    // goes unanswered).
    let candidate = NeighbourEntry::dialable(harness::id_of(90), harness::addr(90));
    peer.handle_command(now, Command::Candidates(vec![candidate]));
    let dial = std::iter::from_fn(|| peer.poll_conn()).find_map(|io| match io {
        ConnIo::Open { conn, .. } => Some(conn),
        _ => None,
    });
    let dial = dial.expect("undialable neighbours do not count toward the target degree");
    peer.handle_conn_closed(now, dial);
    for seed in 100..(100 + max as u8) {
        let public = PeerAddr::new(format!("198.51.100.{seed}").parse().unwrap(), 4000, 4001);
        assert!(
            dial_in(&mut peer, now, seed, public, public.ip, true).is_some(),
            "dialable peer {seed} still finds a slot"
        );
    }
    assert_eq!(peer.degree(), max + pool);
    assert_eq!(peer.degree(), peer.capacity());
}

/// Candidates and neighbour-list entries marked undialable are never dialled.
#[test]
fn undialable_candidates_are_never_dialled() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let entry = |seed: u8, dialable: bool| NeighbourEntry {
        id: harness::id_of(seed),
        addr: harness::addr(seed),
        dialable,
    };
    peer.handle_command(
        now,
        Command::Candidates(vec![entry(30, false), entry(31, false), entry(32, true)]),
    );
    let dialled: Vec<SocketAddr> = std::iter::from_fn(|| peer.poll_conn())
        .filter_map(|io| match io {
            ConnIo::Open { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, [harness::addr(32).tcp_addr()]);
    assert_eq!(peer.stats().dials_skipped_undialable, 2);
}

/// A peer's own hellos say whether it can be dialled.
#[test]
fn hellos_carry_the_peers_own_dialability() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    peer.set_dialable(false);
    let target = NeighbourEntry::dialable(harness::id_of(33), harness::addr(33));
    peer.handle_command(now, Command::Candidates(vec![target]));
    let hello = harness::written(&mut peer).concat();
    let decoded = highway_wire::peer::handshake::Hello::decode(payload(&hello)).unwrap();
    assert!(!decoded.initiator_dialable);
}

/// Two neighbours at different addresses echo one mapping: a NAT with one mapping for
/// all destinations. Different mappings: one per destination (symmetric).
#[test]
fn heartbeat_acks_classify_the_nat() {
    for (second, want) in [
        ("203.0.113.50:7000", NatClass::NatStablePort),
        ("203.0.113.50:7999", NatClass::NatPerDestination),
    ] {
        let now = Instant::now();
        let mut peer = solo(Config::test(), 1, now);
        assert_eq!(peer.reachability().class, NatClass::Unknown);
        let mut observers = Vec::new();
        for (seed, from) in [(60u8, "198.51.100.1:5000"), (61, "198.51.100.2:5000")] {
            let addr = PeerAddr::new(sock(from).ip(), 5000, 5001);
            let mut remote = dial_in(&mut peer, now, seed, addr, addr.ip, true).unwrap();
            let hb = remote.heartbeat(1);
            peer.handle_datagram(now, sock(from), &hb);
            observers.push((remote, sock(from)));
        }
        drain_transmits(&mut peer);
        for (i, (remote, from)) in observers.iter_mut().enumerate() {
            let observed = sock(if i == 0 { "203.0.113.50:7000" } else { second });
            let ack = remote.seal(&PeerMsg::HeartbeatAck { seq: 1, observed });
            peer.handle_datagram(now, *from, &ack);
        }
        let r = peer.reachability();
        assert_eq!(r.class, want, "second observer sees {second}");
        assert_eq!(r.observations.len(), 2);
        assert!(
            r.observations
                .iter()
                .all(|o| observers.iter().any(|(x, _)| x.id == o.observer))
        );
    }
}

/// An inbound link from behind a NAT whose initiator never speaks had no path, so the
/// failure detector cannot tell "dead" from "never worked": it is dropped as `silent`,
/// not failed, and the Gatekeeper is not told.
#[test]
fn a_silent_inbound_link_is_dropped_without_a_failure_report() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let lan = PeerAddr::new("192.0.2.10".parse().unwrap(), 4000, 4001);
    dial_in(
        &mut peer,
        now,
        42,
        lan,
        "203.0.113.7".parse().unwrap(),
        false,
    )
    .unwrap();
    drain_events(&mut peer);
    let c = peer.config().clone();
    let mut t = now;
    while t < now + (c.suspect_timeout + c.probe_timeout) * 2 {
        t += c.heartbeat_interval / 2;
        peer.handle_timeout(t);
    }
    assert_eq!(peer.degree(), 0);
    assert!(dropped_silent_unreported(&drain_events(&mut peer)));
    assert_eq!(peer.stats().failures, 0);
    assert_eq!(peer.stats().links_lost_unheard, 1);
}

/// A peer whose UDP never gets through: links come up over TCP and die silent. After two
/// it accuses nobody (it reported no failure) and asks, in its next hellos, to carry links
/// over their TCP connection; its class reads `udp-blocked`.
#[test]
fn links_that_never_hear_a_datagram_switch_a_peer_to_tcp_carried_links() {
    let now = Instant::now();
    let config = Config::test();
    let mut peer = solo(config.clone(), 1, now);
    let mut t = now;
    for seed in [40u8, 41] {
        let (conn, hello) = dial_out(&mut peer, t, seed);
        assert!(!asks_stream(&hello), "UDP is tried first");
        link_up_over_tcp_only(&mut peer, t, conn, &hello, seed);
        // Our heartbeats go out; nothing ever comes back.
        let end = t + (config.suspect_timeout + config.probe_timeout) * 2;
        while t < end {
            t += config.heartbeat_interval / 2;
            peer.handle_timeout(t);
            drain_transmits(&mut peer);
        }
        assert!(
            dropped_silent_unreported(&drain_events(&mut peer)),
            "a peer that never heard anything accuses no one"
        );
        assert_eq!(peer.degree(), 0);
    }
    assert_eq!(peer.stats().links_lost_unheard, 2);
    assert_eq!(peer.reachability().class, NatClass::UdpBlocked);
    t += config.failed_quarantine;
    let (_, hello) = dial_out(&mut peer, t, 42);
    assert!(
        asks_stream(&hello),
        "the next link asks to travel over its TCP connection"
    );
}

/// A link that never carried a datagram is useless even when witnesses vouch that the peer
/// lives (it may, over other links): it is dropped as silent at the detector's deadline.
/// Found with real processes: a UDP-blocked peer's UDP link stayed "okay" on witnesses'
/// word, and every search waited for the branch behind it.
#[test]
fn a_link_that_never_spoke_is_dropped_even_when_witnesses_vouch_for_the_peer() {
    let now = Instant::now();
    let config = Config::test();
    let mut peer = solo(config.clone(), 1, now);
    let mut witness = harness::Fake::link(&mut peer, now, 50);
    let silent = harness::id_of(60);
    let (conn, hello) = dial_out(&mut peer, now, 60);
    link_up_over_tcp_only(&mut peer, now, conn, &hello, 60);
    let mut t = now;
    let mut vouched = 0;
    let deadline = now + config.suspect_timeout + config.probe_timeout;
    while t < deadline + config.heartbeat_interval {
        t += config.heartbeat_interval / 4;
        // The witness keeps its own link alive and vouches for the silent peer whenever
        // asked.
        let hb = witness.seal(&PeerMsg::Heartbeat(Heartbeat {
            seq: 1,
            incarnation: 0,
            summary_version: 0,
            neighbours: Vec::new(),
        }));
        peer.handle_datagram(t, witness.udp(), &hb);
        peer.handle_timeout(t);
        for out in drain_transmits(&mut peer) {
            if let Some(PeerMsg::PingReq {
                probe_id, target, ..
            }) = witness.open(&out.bytes)
            {
                let ack = witness.seal(&PeerMsg::PingReqAck {
                    probe_id,
                    target,
                    alive: true,
                });
                peer.handle_datagram(t, witness.udp(), &ack);
                vouched += 1;
            }
        }
        if t < deadline {
            assert!(
                peer.neighbours(t).iter().any(|n| n.id == silent),
                "dropped before its deadline"
            );
        }
    }
    assert!(vouched >= 1, "the witness was asked and vouched");
    assert!(
        !peer.neighbours(t).iter().any(|n| n.id == silent),
        "a link that never spoke outlived its deadline on a witness's word"
    );
    assert!(dropped_silent_unreported(&drain_events(&mut peer)));
    assert_eq!(peer.degree(), 1, "the witness's own link stays");
}
