//! The core's TCP connections (issue 11, item 6): the runtime only moves bytes, so the
//! handshake's order, its deadlines, the caps on connections, the datagrams that beat
//! "established", links carried over TCP and reverse hellos are all decided here.

mod harness;

use std::net::SocketAddr;
use std::time::Instant;

use harness::{answer_dial, dial_out, drain_transmits, heartbeat, ms, reply, send_hello, solo};
use highway_core::{Config, ConnIo};
use highway_wire::peer::handshake::{
    Decision, Initiator, InitiatorOutcome, Purpose, established_frame, frame, is_established,
    split_frame,
};
use highway_wire::peer::reverse::ReverseHello;
use highway_wire::peer::seal;

fn payload(framed: &[u8]) -> &[u8] {
    split_frame(framed).unwrap().unwrap().0
}

fn from(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A connection that never delivers its hello is closed at the hello deadline, and its
/// slot comes back.
#[test]
fn a_connection_without_a_hello_is_closed_at_the_hello_deadline() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let conn = peer.handle_accept(now, from("192.0.2.7:40000")).unwrap();
    let deadline = now + peer.config().hello_timeout;
    assert!(peer.poll_timeout().unwrap() <= deadline);
    peer.handle_timeout(deadline - ms(1));
    assert!(!reply(&mut peer, conn).closed, "not before its deadline");
    peer.handle_timeout(deadline);
    assert!(reply(&mut peer, conn).closed);
    assert_eq!(peer.stats().inbound_hello_timeouts, 1);
}

/// Handshake connections are capped per source (an IPv6 /64 as one) and in total; a
/// refused one is counted and the runtime closes it at once.
#[test]
fn handshake_connections_are_capped_per_source_and_in_total() {
    let config = Config {
        max_inbound_handshakes: 6,
        max_inbound_handshakes_per_ip: 2,
        ..Config::test()
    };
    let now = Instant::now();
    let mut peer = solo(config, 1, now);
    assert!(
        peer.handle_accept(now, from("[2001:db8:1:1::1]:1"))
            .is_some()
    );
    assert!(
        peer.handle_accept(now, from("[2001:db8:1:1::2]:1"))
            .is_some()
    );
    assert!(
        peer.handle_accept(now, from("[2001:db8:1:1:ffff::3]:1"))
            .is_none(),
        "a third from the same /64"
    );
    assert_eq!(peer.stats().inbound_refused_per_ip, 1);
    for n in 1..=4 {
        assert!(
            peer.handle_accept(now, from(&format!("192.0.2.{n}:1")))
                .is_some()
        );
    }
    assert!(
        peer.handle_accept(now, from("192.0.2.99:1")).is_none(),
        "six in all"
    );
    assert_eq!(peer.stats().inbound_refused_busy, 1);
}

/// A frame declaring more than the largest frame is refused before anything is
/// buffered: the connection closes and nothing else happens.
#[test]
fn an_oversized_frame_closes_the_connection() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let conn = peer.handle_accept(now, from("192.0.2.7:40000")).unwrap();
    peer.handle_conn_bytes(now, conn, &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
    assert!(reply(&mut peer, conn).closed);
    assert_eq!(peer.stats().conn_frame_errors, 1);
    // Whatever follows on it is ignored.
    peer.handle_conn_bytes(now, conn, &[0; 64]);
    assert!(peer.poll_conn().is_none());
}

/// A hello arriving a byte at a time is answered once it is whole.
#[test]
fn a_hello_split_across_reads_is_answered_when_whole() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let addr = harness::addr(30);
    let (initiator, hello) = Initiator::start(&harness::key(30), addr, Purpose::Link, [30; 32]);
    let conn = peer.handle_accept(now, addr.tcp_addr()).unwrap();
    for byte in &hello[..hello.len() - 1] {
        peer.handle_conn_bytes(now, conn, std::slice::from_ref(byte));
        assert!(
            peer.poll_conn().is_none(),
            "nothing before the hello is whole"
        );
    }
    peer.handle_conn_bytes(now, conn, &hello[hello.len() - 1..]);
    let welcome = reply(&mut peer, conn);
    assert!(!welcome.closed, "accepted");
    let outcome = initiator
        .on_welcome(payload(&welcome.written), Some(peer.id()), 5)
        .unwrap();
    assert!(matches!(outcome, InitiatorOutcome::Linked { .. }));
}

/// A reverse hello (a holder behind a NAT connecting back) hands the connection to the
/// runtime, frame and all; one with bytes after it is refused.
#[test]
fn a_reverse_hello_hands_the_connection_to_the_runtime() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let hello = ReverseHello::sign(&harness::key(40), [7; 16]).encode_framed();
    let conn = peer.handle_accept(now, from("198.51.100.4:5555")).unwrap();
    peer.handle_conn_bytes(now, conn, &hello);
    assert_eq!(
        peer.poll_conn(),
        Some(ConnIo::Reverse {
            conn,
            hello: payload(&hello).to_vec()
        })
    );
    assert_eq!(peer.stats().reverse_hellos, 1);

    let conn = peer.handle_accept(now, from("198.51.100.4:5556")).unwrap();
    let mut trailing = hello.clone();
    trailing.extend_from_slice(b"GET /");
    peer.handle_conn_bytes(now, conn, &trailing);
    assert_eq!(peer.poll_conn(), Some(ConnIo::Close { conn }));
    assert_eq!(peer.stats().reverse_hellos_refused, 1);
}

/// Finding of issue 11, item 6: the responder installs its link and speaks on it before
/// "established" reaches the initiator. Both runtimes held those datagrams themselves;
/// now the core holds them (bounded) and reads them once the link is up, instead of
/// answering "not your neighbour" and tearing the new link down.
#[test]
fn datagrams_that_beat_established_are_held_and_read_once_linked() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let (conn, hello) = dial_out(&mut peer, now, 20);
    let responder = answer_dial(&mut peer, now, conn, &hello, 20, Decision::Accept, 900);
    let confirm = reply(&mut peer, conn).written;
    let accepted = responder
        .unwrap()
        .on_confirm(payload(&confirm))
        .expect("a genuine confirm");
    // The responder's first heartbeat overtakes its "established".
    let early = seal(
        accepted.initiator_link_id,
        1,
        &heartbeat(1),
        &accepted.keys.send,
    );
    let responder_udp = harness::addr(20).udp_addr();
    peer.handle_datagram(now, responder_udp, &early);
    assert_eq!(peer.stats().early_link_datagrams, 1);
    assert_eq!(peer.stats().unknown_links, 0, "not a stranger");
    assert!(
        drain_transmits(&mut peer).is_empty(),
        "no not-your-neighbour"
    );

    peer.handle_conn_bytes(now, conn, &established_frame());
    assert_eq!(peer.degree(), 1);
    assert!(reply(&mut peer, conn).closed, "the link lives on UDP");
    assert_eq!(peer.stats().heartbeats_received, 1, "read once linked");
    assert_eq!(peer.stats().dials_linked, 1);
}

/// A closed connection before the welcome is an unanswered dial; after an accepting
/// welcome, a refusal (the responder answered).
#[test]
fn how_a_dial_ends_follows_from_where_its_connection_closed() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let (conn, _) = dial_out(&mut peer, now, 21);
    peer.handle_conn_closed(now, conn);
    assert_eq!(peer.stats().dials_unanswered, 1);

    let later = now + ms(5000);
    let (conn, hello) = dial_out(&mut peer, later, 22);
    answer_dial(&mut peer, later, conn, &hello, 22, Decision::Accept, 901);
    peer.handle_conn_closed(later, conn);
    assert_eq!(peer.stats().dials_rejected, 1);
    assert_eq!(peer.stats().dials_unanswered, 1);
    assert_eq!(peer.degree(), 0);
}

/// A peer whose UDP is blocked asks to keep the handshake's connection: the link's
/// datagrams then travel over it both ways, framed, and its close takes the link's path
/// away.
#[test]
fn a_link_carried_over_tcp_sends_and_reads_on_its_connection() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let key = harness::key(50);
    let addr = harness::addr(50);
    let (initiator, hello) = Initiator::start_with(&key, addr, true, true, Purpose::Link, [50; 32]);
    let source = from("203.0.113.50:41000");
    let (conn, welcome) = send_hello(&mut peer, now, source, &hello);
    let InitiatorOutcome::Linked {
        responder_link_id,
        keys,
        confirm,
        ..
    } = initiator
        .on_welcome(payload(&welcome.written), Some(peer.id()), 0xC0)
        .unwrap()
    else {
        panic!("accepted");
    };
    peer.handle_conn_bytes(now, conn, &confirm);
    let done = reply(&mut peer, conn);
    assert!(is_established(payload(&done.written)));
    assert!(!done.closed, "kept for the link");
    let view = &peer.neighbours(now)[0];
    assert!(view.over_tcp);
    assert_eq!(view.udp_path, Some(source));

    // A heartbeat over the connection is answered over it, never over UDP.
    let hb = seal(responder_link_id, 1, &heartbeat(1), &keys.send);
    peer.handle_conn_bytes(now, conn, &frame(&hb));
    assert_eq!(peer.stats().heartbeats_received, 1);
    assert!(drain_transmits(&mut peer).is_empty());
    let carried = reply(&mut peer, conn).written;
    assert!(!carried.is_empty(), "the ack went over TCP");
    assert_eq!(peer.stats().carried_datagrams_in, 1);
    assert!(peer.stats().carried_datagrams_out >= 1);

    peer.handle_conn_closed(now, conn);
    let view = &peer.neighbours(now)[0];
    assert!(!view.over_tcp);
    assert_eq!(view.udp_path, None, "nowhere to send any more");
}
