//! Cheap attacks on joining, refused: hellos that never confirm, dials to addresses that
//! never answer, and addresses that name no peer (in candidates, hellos and search hits).

mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use harness::Reply;
use harness::{Fake, drain_events, drain_transmits, ms, solo};
use highway_core::{Command, Config, ConnId, ConnIo, Event, Peer, SearchRequest};
use highway_wire::peer::handshake::{
    Decision, Hello, Initiator, InitiatorOutcome, Purpose, Responder, is_established, split_frame,
};
use highway_wire::peer::{Hit, NeighbourEntry, PeerMsg, QueryTarget};
use highway_wire::{ContentId, NodeId, PeerAddr};

fn payload(framed: &[u8]) -> &[u8] {
    split_frame(framed).unwrap().unwrap().0
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A hello from the peer with key seed `seed`, naming (and sent from) `at`.
fn hello(peer: &mut Peer, now: Instant, seed: u8, at: IpAddr) -> (Initiator, ConnId, Reply) {
    let addr = PeerAddr::new(at, 7000, 7001);
    let (initiator, hello) = Initiator::start(&harness::key(seed), addr, Purpose::Link, [seed; 32]);
    let (conn, reply) = harness::send_hello(peer, now, addr.tcp_addr(), &hello);
    (initiator, conn, reply)
}

/// Finishes an accepted handshake: the initiator confirms and the peer installs the
/// link (says "established").
fn confirm(
    peer: &mut Peer,
    now: Instant,
    initiator: Initiator,
    conn: ConnId,
    welcome: &Reply,
) -> bool {
    let InitiatorOutcome::Linked { confirm, .. } = initiator
        .on_welcome(payload(&welcome.written), Some(peer.id()), 77)
        .unwrap()
    else {
        panic!("not accepted");
    };
    peer.handle_conn_bytes(now, conn, &confirm);
    let reply = harness::reply(peer, conn);
    !reply.written.is_empty() && is_established(payload(&reply.written))
}

/// Finding 4 of issue 10: three accepted-but-never-confirmed hellos made a peer with two
/// neighbours answer "full" to everyone for the handshake timeout. Pending handshakes no
/// longer count toward the maximum degree.
#[test]
fn hellos_that_never_confirm_do_not_make_a_peer_full() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    Fake::link(&mut peer, now, 50);
    Fake::link(&mut peer, now, 51);
    assert_eq!(peer.config().max_degree, 5);
    for seed in 60..63u8 {
        let (_, _, reply) = hello(&mut peer, now, seed, ip(&format!("192.0.2.{seed}")));
        assert!(!reply.closed, "the attacker's hello is accepted");
    }
    let (initiator, conn, reply) = hello(&mut peer, now, 70, ip("198.51.100.7"));
    assert!(
        !reply.closed,
        "a legitimate hello is accepted while three others never confirm"
    );
    assert!(
        confirm(&mut peer, now, initiator, conn, &reply),
        "and it links"
    );
    assert_eq!(peer.degree(), 3);
}

/// Pending handshakes are bounded on their own: per source address (an IPv6 /64 as one)
/// and overall. Refusals are "full" answers, counted; expiry frees the room.
#[test]
fn pending_handshakes_are_capped_per_source_and_overall() {
    let config = Config {
        max_pending_inbound: 4,
        max_pending_inbound_per_ip: 2,
        ..Config::test()
    };
    let now = Instant::now();
    let mut peer = solo(config, 1, now);
    let attacker = ip("2001:db8:7:7::1");
    let mut seed = 10;
    let mut next = |peer: &mut Peer, at: IpAddr| {
        seed += 1;
        !hello(peer, now, seed, at).2.closed
    };
    assert!(next(&mut peer, attacker));
    assert!(next(&mut peer, ip("2001:db8:7:7::2")), "same /64, second");
    assert!(
        !next(&mut peer, ip("2001:db8:7:7:ffff::3")),
        "same /64, third"
    );
    assert!(!next(&mut peer, attacker));
    assert_eq!(peer.stats().hellos_refused_per_ip, 2);
    assert!(next(&mut peer, ip("192.0.2.1")));
    assert!(next(&mut peer, ip("192.0.2.2")));
    assert!(!next(&mut peer, ip("192.0.2.3")), "four pending in all");
    assert_eq!(peer.stats().hellos_refused_pending, 1);

    // The handshake timeout releases them.
    let later = now + peer.config().handshake_timeout;
    peer.handle_timeout(later);
    let (initiator, conn, reply) = hello(&mut peer, later, 99, attacker);
    assert!(!reply.closed);
    assert!(confirm(&mut peer, later, initiator, conn, &reply));
}

/// A hello naming an address no peer could have is rejected: we would send heartbeats
/// there.
#[test]
fn hellos_naming_undialable_addresses_are_rejected() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    for (n, bad) in ["255.255.255.255", "169.254.169.254", "0.0.0.0", "224.0.0.1"]
        .iter()
        .enumerate()
    {
        let (_, _, reply) = hello(&mut peer, now, 20 + n as u8, ip(bad));
        assert!(reply.closed, "{bad}");
    }
    assert_eq!(peer.stats().hellos_refused_address, 4);
}

/// How a dialled address answers in [`drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Nothing answers: the connection fails.
    Unreachable,
    /// The candidate answers "full" (with no neighbours to try).
    Full,
}

/// What a runtime does for a peer that keeps searching: every `GatekeeperJoin` is
/// answered with `candidates`, every dial ends as `answer` says for its address (a
/// "full" welcome signed by the candidate's key). Returns the addresses dialled, in
/// order, over `span` of virtual time in 10 ms steps.
fn drive(
    peer: &mut Peer,
    start: Instant,
    span: Duration,
    candidates: &[NeighbourEntry],
    answer: impl Fn(&PeerAddr) -> Answer,
) -> Vec<(Duration, PeerAddr)> {
    let mut dialled = Vec::new();
    let mut now = start;
    // `solo` drained the first `GatekeeperJoin`: answer it.
    peer.handle_command(now, Command::Candidates(candidates.to_vec()));
    while now < start + span {
        if now > start {
            peer.handle_timeout(now);
        }
        while let Some(event) = peer.poll_event() {
            if let Event::GatekeeperJoin = event {
                peer.handle_command(now, Command::Candidates(candidates.to_vec()));
            }
        }
        let mut opened = Vec::new();
        let work: Vec<ConnIo> = std::iter::from_fn(|| peer.poll_conn()).collect();
        for io in work {
            match io {
                ConnIo::Open { conn, to } => {
                    let addr = PeerAddr::new(to.ip(), to.port(), to.port());
                    dialled.push((now - start, addr));
                    match answer(&addr) {
                        Answer::Unreachable => peer.handle_conn_closed(now, conn),
                        Answer::Full => opened.push((conn, addr)),
                    }
                }
                ConnIo::Write { conn, bytes } => {
                    let Some(&(_, addr)) = opened.iter().find(|(c, _)| *c == conn) else {
                        continue;
                    };
                    let candidate = candidates.iter().find(|e| e.addr == addr).unwrap();
                    let seed = (0..=255u8)
                        .find(|s| harness::id_of(*s) == candidate.id)
                        .unwrap();
                    let hello = payload(&bytes);
                    let decoded = Hello::decode(hello).unwrap();
                    let (_, welcome) = Responder::answer(
                        &harness::key(seed),
                        hello,
                        &decoded,
                        Decision::Full,
                        1,
                        Vec::new(),
                        [seed; 32],
                    );
                    peer.handle_conn_bytes(now, conn, &welcome);
                }
                _ => {}
            }
        }
        drain_transmits(peer);
        now += ms(10);
    }
    dialled
}

fn entry(seed: u8, addr: &str) -> NeighbourEntry {
    let addr: SocketAddr = addr.parse().unwrap();
    NeighbourEntry {
        id: harness::id_of(seed),
        addr: PeerAddr::new(addr.ip(), addr.port(), addr.port()),
        dialable: true,
    }
}

/// Finding 6 of issue 10: peers dialled a bystander the Gatekeeper named 48 times in
/// 40 s. An address whose dial went unanswered now backs off (1 s, doubling), while
/// other candidates are still dialled as before.
#[test]
fn an_address_that_never_answers_is_dialled_with_exponential_backoff() {
    let config = Config {
        // A peer that asks the Gatekeeper every 100 ms: the worst case.
        join_backoff_min: ms(100),
        join_backoff_max: ms(100),
        dial_backoff_min: Duration::from_secs(1),
        dial_backoff_max: Duration::from_secs(8),
        ..Config::test()
    };
    let start = Instant::now();
    let mut peer = solo(config, 1, start);
    let bystander = entry(2, "192.0.2.80:80");
    let full = entry(3, "198.51.100.3:7001");
    let dialled = drive(
        &mut peer,
        start,
        Duration::from_secs(40),
        &[bystander, full],
        |addr| {
            if *addr == bystander.addr {
                Answer::Unreachable
            } else {
                Answer::Full
            }
        },
    );
    let to_bystander: Vec<Duration> = dialled
        .iter()
        .filter(|(_, a)| *a == bystander.addr)
        .map(|(at, _)| *at)
        .collect();
    let to_full = dialled.iter().filter(|(_, a)| *a == full.addr).count();
    // 0, 1, 3, 7, 15, 23, 31, 39 s (each a Gatekeeper answer after the wait ends).
    assert_eq!(to_bystander.len(), 8, "{to_bystander:?}");
    for pair in to_bystander.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(1),
            "{to_bystander:?}"
        );
    }
    assert!(
        to_full > 100,
        "the answering candidate is still tried: {to_full}"
    );
    let stats = peer.stats();
    assert_eq!(stats.dials_unanswered, 8);
    assert!(
        stats.dials_skipped_backoff > 100,
        "{}",
        stats.dials_skipped_backoff
    );

    // Once it answers (a link, or here "full"), it is dialled as often as any other.
    let later = start + Duration::from_secs(50);
    let dialled = drive(
        &mut peer,
        later,
        Duration::from_secs(5),
        std::slice::from_ref(&bystander),
        |_| Answer::Full,
    );
    assert!(dialled.len() > 20, "{}", dialled.len());
}

/// Candidates naming an address no peer could have are never dialled: broadcast,
/// link-local (the cloud metadata service), unspecified, multicast, port 0.
#[test]
fn undialable_candidates_are_never_dialled() {
    let start = Instant::now();
    let mut peer = solo(Config::test(), 1, start);
    let bad = [
        entry(2, "255.255.255.255:7001"),
        entry(3, "169.254.169.254:80"),
        entry(4, "0.0.0.0:7001"),
        entry(5, "224.0.0.1:7001"),
        entry(6, "[fe80::1]:7001"),
        entry(7, "192.0.2.1:0"),
    ];
    let dialled = drive(&mut peer, start, Duration::from_secs(2), &bad, |_| {
        Answer::Unreachable
    });
    assert!(dialled.is_empty(), "{dialled:?}");
    assert!(peer.stats().dials_refused_address >= bad.len() as u64);
}

/// "Forged hits make a downloader connect anywhere": hits whose file server address
/// could name no peer are dropped and counted; the searcher sees only the others.
#[test]
fn forged_hits_with_undialable_servers_never_reach_the_searcher() {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut fake = Fake::link(&mut peer, now, 9);
    drain_transmits(&mut peer);
    drain_events(&mut peer);
    let search = peer
        .start_search(
            now,
            SearchRequest {
                target: QueryTarget::Keywords("report".into()),
                ttl: Some(2),
                timeout: Duration::from_secs(10),
                max_results: 100,
            },
        )
        .unwrap();
    let id = drain_transmits(&mut peer)
        .iter()
        .find_map(|t| match fake.open(&t.bytes) {
            Some(PeerMsg::Query { id, .. }) => Some(id),
            _ => None,
        })
        .expect("the query went to the neighbour");
    let hit = |server: &str, n: u8| Hit {
        content: ContentId::of(&[n]),
        size: 1,
        holder: NodeId::from_key(&harness::key(n).verifying_key()),
        server: server.parse().unwrap(),
        hops: 1,
        name: format!("report-{n}.txt"),
        dialable: true,
        relays: Vec::new(),
    };
    let hits = vec![
        hit("255.255.255.255:8080", 1),
        hit("169.254.169.254:80", 2),
        hit("0.0.0.0:8080", 3),
        hit("[ff02::1]:8080", 4),
        hit("192.0.2.5:0", 5),
        hit("192.0.2.6:8080", 6),
    ];
    let bytes = fake.seal(&PeerMsg::QueryHits { id, hits });
    peer.handle_datagram(now, fake.udp(), &bytes);
    assert_eq!(peer.stats().hits_refused_address, 5);
    let seen: Vec<SocketAddr> = drain_events(&mut peer)
        .into_iter()
        .filter_map(|e| match e {
            Event::SearchHits { id, hits } if id == search => Some(hits),
            _ => None,
        })
        .flatten()
        .map(|h| h.server)
        .collect();
    assert_eq!(seen, vec!["192.0.2.6:8080".parse::<SocketAddr>().unwrap()]);
}
