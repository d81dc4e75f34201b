//! Every table and queue is bounded, and hostile or stale datagrams are counted and
//! dropped without effect.

mod harness;

use std::net::SocketAddr;
use std::time::Instant;

use harness::{Fake, drain_events, drain_transmits, heartbeat, solo};
use highway_core::{Config, MAX_EVENTS, MAX_TRANSMITS};
use highway_wire::peer::handshake::{
    Initiator, InitiatorOutcome, Purpose, is_established, split_frame,
};
use highway_wire::peer::{Datagram, PeerMsg, Probe, decode};

fn payload(framed: &[u8]) -> &[u8] {
    split_frame(framed).unwrap().unwrap().0
}

fn stranger(n: u8) -> SocketAddr {
    harness::addr(n).udp_addr()
}

/// Hellos answered before any handshake completes hold no slot: all are accepted, but
/// only `max_degree` links are installed when they confirm, and the late confirmations
/// are refused (and counted). Once full, hellos are answered "full".
#[test]
fn confirmations_beyond_max_degree_are_refused() {
    let now = Instant::now();
    let mut hub = solo(Config::test(), 1, now);
    let max = hub.config().max_degree;
    let mut accepted = Vec::new();
    for seed in 10..20u8 {
        let key = harness::key(seed);
        let (initiator, hello) =
            Initiator::start(&key, harness::addr(seed), Purpose::Link, [seed; 32]);
        let from = harness::addr(seed).tcp_addr();
        let (conn, reply) = harness::send_hello(&mut hub, now, from, &hello);
        assert!(!reply.closed, "hello {seed} accepted");
        accepted.push((seed, initiator, conn, reply.written));
    }

    // One handshake breaks off: the others still confirm.
    let (_, _, aborted, _) = accepted.pop().unwrap();
    hub.handle_conn_closed(now, aborted);

    let mut installed = 0;
    for (seed, initiator, conn, welcome) in accepted {
        let InitiatorOutcome::Linked {
            keys: _, confirm, ..
        } = initiator
            .on_welcome(payload(&welcome), Some(hub.id()), 1000 + u64::from(seed))
            .unwrap()
        else {
            panic!("accepted");
        };
        hub.handle_conn_bytes(now, conn, &confirm);
        let reply = harness::reply(&mut hub, conn);
        assert!(reply.closed, "the link lives on UDP: the connection closes");
        installed +=
            usize::from(!reply.written.is_empty() && is_established(payload(&reply.written)));
    }
    assert_eq!(installed, max);
    assert_eq!(hub.degree(), max);
    assert_eq!(hub.stats().links_refused_full, (9 - max) as u64);
    // Now full: the next hello is answered "full" with the neighbours to try instead.
    let (initiator, hello) = Initiator::start(
        &harness::key(40),
        harness::addr(40),
        Purpose::Link,
        [40; 32],
    );
    let (_, reply) = harness::send_hello(&mut hub, now, harness::addr(40).tcp_addr(), &hello);
    assert!(reply.closed, "answered and closed");
    match initiator
        .on_welcome(payload(&reply.written), Some(hub.id()), 1)
        .unwrap()
    {
        InitiatorOutcome::NotLinked { neighbours, .. } => assert_eq!(neighbours.len(), max),
        other => panic!("{other:?}"),
    }
}

/// A neighbour asking for more indirect probes than the witness table holds gets an
/// immediate "not alive" for the excess, and no probe is sent for it.
#[test]
fn witness_requests_are_bounded() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let max = peer.config().max_witness_requests;
    let mut asker = Fake::link(&mut peer, now, 50);
    drain_transmits(&mut peer);
    let requests = max + 20;
    for n in 0..requests {
        let target = harness::id_of(100 + u8::try_from(n % 100).unwrap());
        let bytes = asker.seal(&PeerMsg::PingReq {
            probe_id: n as u64,
            target,
            target_addr: harness::addr(200),
        });
        peer.handle_datagram(now, asker.udp(), &bytes);
    }
    let out = drain_transmits(&mut peer);
    let probes = out
        .iter()
        .filter(|t| matches!(decode(&t.bytes), Ok(Datagram::Probe(_))))
        .count();
    let refused: Vec<u64> = out
        .iter()
        .filter_map(|t| match asker.open(&t.bytes) {
            Some(PeerMsg::PingReqAck {
                probe_id,
                alive: false,
                ..
            }) => Some(probe_id),
            _ => None,
        })
        .collect();
    assert_eq!(probes, max, "one stranger probe per accepted request");
    assert_eq!(refused.len(), requests - max);
    assert!(
        refused.iter().all(|&id| id >= max as u64),
        "the excess was refused"
    );
    assert_eq!(peer.stats().probes_as_witness, requests as u64);

    // The table drains at the deadline: every accepted request is answered, and new
    // ones are accepted again.
    let later = now + Config::test().probe_timeout;
    peer.handle_timeout(later);
    let answered = drain_transmits(&mut peer)
        .iter()
        .filter(|t| matches!(asker.open(&t.bytes), Some(PeerMsg::PingReqAck { .. })))
        .count();
    assert_eq!(answered, max);
    let bytes = asker.seal(&PeerMsg::PingReq {
        probe_id: 5000,
        target: harness::id_of(150),
        target_addr: harness::addr(200),
    });
    peer.handle_datagram(later, asker.udp(), &bytes);
    let probes = drain_transmits(&mut peer)
        .iter()
        .filter(|t| matches!(decode(&t.bytes), Ok(Datagram::Probe(_))))
        .count();
    assert_eq!(probes, 1);
}

/// Answers to strangers (signed probe acks, not-your-neighbour) share a budget per
/// heartbeat interval.
#[test]
fn stranger_replies_are_rate_limited_per_interval() {
    let now = Instant::now();
    let config = Config::test();
    let budget = config.stranger_replies_per_interval as usize;
    let mut peer = solo(config.clone(), 1, now);
    let probe = |nonce| {
        Datagram::Probe(Probe {
            nonce,
            requester: harness::id_of(9),
            target: harness::id_of(1),
        })
        .encode()
    };
    for nonce in 0..100 {
        peer.handle_datagram(now, stranger(9), &probe(nonce));
    }
    // Link traffic for an unknown link would be answered "not your neighbour".
    let unknown = highway_wire::peer::seal(42, 1, &PeerMsg::Leave, &[7; 32]);
    peer.handle_datagram(now, stranger(9), &unknown);
    let acks = drain_transmits(&mut peer)
        .iter()
        .filter(|t| t.to == stranger(9))
        .count();
    assert_eq!(acks, budget);
    assert_eq!(peer.stats().stranger_replies, budget as u64);
    assert_eq!(peer.stats().stranger_dropped, 101 - budget as u64);

    // The next interval brings a fresh budget.
    let next = now + config.heartbeat_interval;
    peer.handle_timeout(next);
    drain_transmits(&mut peer);
    for nonce in 100..200 {
        peer.handle_datagram(next, stranger(9), &probe(nonce));
    }
    assert_eq!(drain_transmits(&mut peer).len(), budget);
}

/// A probe naming another peer is not answered at all.
#[test]
fn stranger_probe_for_someone_else_is_ignored() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let probe = Datagram::Probe(Probe {
        nonce: 1,
        requester: harness::id_of(9),
        target: harness::id_of(2),
    })
    .encode();
    peer.handle_datagram(now, stranger(9), &probe);
    assert!(drain_transmits(&mut peer).is_empty());
}

/// A host that stops draining `poll_transmit` loses datagrams past the bound, counted,
/// instead of growing memory without end.
#[test]
fn transmit_queue_is_bounded() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut fake = Fake::link(&mut peer, now, 50);
    for seq in 0..(MAX_TRANSMITS as u64 + 100) {
        let bytes = fake.seal(&heartbeat(seq));
        peer.handle_datagram(now, fake.udp(), &bytes);
    }
    assert!(peer.stats().queue_overflows >= 100);
    assert_eq!(drain_transmits(&mut peer).len(), MAX_TRANSMITS);
    assert_eq!(peer.stats().datagrams_out, MAX_TRANSMITS as u64);
}

/// A host that stops draining `poll_event` loses events past the bound, counted.
#[test]
fn event_queue_is_bounded() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut cycles = 0;
    while peer.stats().queue_overflows == 0 {
        let mut fake = Fake::link(&mut peer, now, 50);
        let leave = fake.seal(&PeerMsg::Leave);
        peer.handle_datagram(now, fake.udp(), &leave);
        assert_eq!(peer.degree(), 0);
        drain_transmits(&mut peer);
        cycles += 1;
        assert!(
            cycles <= MAX_EVENTS,
            "the event queue grew past {MAX_EVENTS}"
        );
    }
    assert_eq!(drain_events(&mut peer).len(), MAX_EVENTS);
}

/// A datagram delivered twice is acted on once.
#[test]
fn replayed_datagram_is_counted_and_ignored() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut fake = Fake::link(&mut peer, now, 50);
    drain_transmits(&mut peer);
    let bytes = fake.seal(&heartbeat(1));
    peer.handle_datagram(now, fake.udp(), &bytes);
    assert_eq!(drain_transmits(&mut peer).len(), 1, "acknowledged once");
    for _ in 0..3 {
        peer.handle_datagram(now, fake.udp(), &bytes);
    }
    assert!(
        drain_transmits(&mut peer).is_empty(),
        "replays are not acknowledged"
    );
    assert_eq!(peer.stats().replays, 3);
    // The fake's first heartbeat (sent as the link came up), and this one.
    assert_eq!(peer.stats().heartbeats_received, 2);

    // A Leave replayed into a later link with the same neighbour does nothing: it names
    // the old link.
    let leave = fake.seal(&PeerMsg::Leave);
    peer.handle_datagram(now, fake.udp(), &leave);
    assert_eq!(peer.degree(), 0);
    let _relinked = Fake::link(&mut peer, now, 50);
    peer.handle_datagram(now, fake.udp(), &leave);
    assert_eq!(peer.degree(), 1, "the new link survived");
}

/// A link datagram whose tag does not match the link key is counted and dropped.
#[test]
fn datagram_with_a_bad_tag_is_counted_and_dropped() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut fake = Fake::link(&mut peer, now, 50);
    drain_transmits(&mut peer);
    let mut leave = fake.seal(&PeerMsg::Leave);
    let last = leave.len() - 1;
    leave[last] ^= 1;
    peer.handle_datagram(now, fake.udp(), &leave);
    let mut body = fake.seal(&PeerMsg::Leave);
    body[21] ^= 0x80;
    peer.handle_datagram(now, fake.udp(), &body);
    assert_eq!(peer.stats().bad_tags, 2);
    assert_eq!(peer.degree(), 1, "the forged Leave did nothing");
    assert!(drain_transmits(&mut peer).is_empty());
    // The genuine datagram with the same counter is still accepted afterwards.
    let genuine = highway_wire::peer::seal(
        fake.their_link_id,
        fake.counter,
        &PeerMsg::Leave,
        &fake.keys.send,
    );
    peer.handle_datagram(now, fake.udp(), &genuine);
    assert_eq!(peer.degree(), 0);
}

/// Bytes that are not a datagram at all are counted as decode errors.
#[test]
fn garbage_datagrams_are_counted_as_decode_errors() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let _fake = Fake::link(&mut peer, now, 50);
    let short_probe = {
        let mut p = Datagram::Probe(Probe {
            nonce: 1,
            requester: harness::id_of(9),
            target: harness::id_of(1),
        })
        .encode();
        p.truncate(100);
        p
    };
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x48],
        b"HW".to_vec(),
        b"XX\x02\x01".to_vec(),
        b"HW\x01\x01".to_vec(),
        b"HW\x03\x01".to_vec(),
        b"HW\x02\x09".to_vec(),
        b"HW\x02\x01\0\0\0\0".to_vec(),
        [b"HW\x02\x01".as_slice(), &[0; 16]].concat(),
        vec![0xFF; 2000],
        [b"HW\x02\x01".as_slice(), &[0; 1300]].concat(),
        short_probe,
        [b"HW\x02\x03".as_slice(), &[0; 10]].concat(),
        [b"HW\x02\x04".as_slice(), &[0; 200]].concat(),
    ];
    let before = peer.stats().datagrams_in;
    for bytes in &garbage {
        peer.handle_datagram(now, stranger(9), bytes);
    }
    assert_eq!(peer.stats().decode_errors, garbage.len() as u64);
    assert_eq!(peer.stats().datagrams_in - before, garbage.len() as u64);
    assert_eq!(peer.degree(), 1);
    assert!(
        drain_transmits(&mut peer).len() <= 1,
        "only the link's first heartbeat"
    );
}

/// Probes from strangers make the peer refute (a new incarnation, heartbeats to every
/// neighbour), but at most once per quarter heartbeat interval however many arrive.
#[test]
fn refutations_are_rate_limited() {
    let now = Instant::now();
    let config = Config::test();
    let mut peer = solo(config.clone(), 1, now);
    let fake = Fake::link(&mut peer, now, 50);
    drain_transmits(&mut peer);
    let probe = |nonce| {
        Datagram::Probe(Probe {
            nonce,
            requester: harness::id_of(9),
            target: harness::id_of(1),
        })
        .encode()
    };
    let incarnations = |peer: &mut highway_core::Peer| -> Vec<u64> {
        drain_transmits(peer)
            .iter()
            .filter_map(|t| match fake.open(&t.bytes) {
                Some(PeerMsg::Heartbeat(hb)) => Some(hb.incarnation),
                _ => None,
            })
            .collect()
    };
    for nonce in 0..10 {
        peer.handle_datagram(now, stranger(9), &probe(nonce));
    }
    assert_eq!(incarnations(&mut peer), [1]);
    let soon = now + config.heartbeat_interval / 8;
    peer.handle_datagram(soon, stranger(9), &probe(10));
    assert_eq!(incarnations(&mut peer), [] as [u64; 0]);
    let later = now + config.heartbeat_interval / 4;
    peer.handle_datagram(later, stranger(9), &probe(11));
    assert_eq!(incarnations(&mut peer), [2]);
}
