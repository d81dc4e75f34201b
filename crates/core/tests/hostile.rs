//! Property: whatever bytes arrive — random garbage, or valid datagrams with bits
//! flipped, cut short or extended — a linked peer never panics and keeps its neighbours.

mod harness;

use std::time::Instant;

use harness::{Fake, drain_events, drain_transmits, solo};
use highway_core::{Config, Peer};
use highway_wire::NodeId;
use highway_wire::peer::{Datagram, Heartbeat, NotNeighbour, PeerMsg, Probe, ProbeAck};
use proptest::prelude::*;

/// A running peer linked to two fake neighbours, and valid datagrams of every kind
/// (any of which, delivered intact, the peer would accept).
fn linked_peer() -> (Peer, Vec<Vec<u8>>, Instant) {
    let now = Instant::now();
    let mut peer = solo(Config::test(), 1, now);
    let mut a = Fake::link(&mut peer, now, 50);
    let b = Fake::link(&mut peer, now, 51);
    drain_transmits(&mut peer);
    drain_events(&mut peer);
    let messages = [
        PeerMsg::Heartbeat(Heartbeat {
            seq: 1,
            incarnation: 3,
            summary_version: 9,
            neighbours: vec![highway_wire::peer::NeighbourEntry {
                id: b.id,
                addr: b.addr,
                dialable: true,
            }],
        }),
        PeerMsg::HeartbeatAck {
            seq: 1,
            observed: "127.0.0.1:1".parse().unwrap(),
        },
        PeerMsg::PingReq {
            probe_id: 5,
            target: b.id,
            target_addr: b.addr,
        },
        PeerMsg::PingReqAck {
            probe_id: 5,
            target: b.id,
            alive: true,
        },
        PeerMsg::WitnessProbe {
            probe_id: 6,
            suspecter: b.id,
        },
        PeerMsg::WitnessProbeAck { probe_id: 6 },
        PeerMsg::Leave,
        PeerMsg::SummaryRequest {
            version: 1,
            chunk: 0,
        },
        PeerMsg::SummaryChunk {
            version: 1,
            chunk: 0,
            chunks: 2,
            data: vec![1, 2, 3],
        },
    ];
    let mut valid: Vec<Vec<u8>> = messages.iter().map(|m| a.seal(m)).collect();
    let probe = Probe {
        nonce: 1,
        requester: b.id,
        target: peer.id(),
    };
    valid.push(Datagram::Probe(probe).encode());
    valid.push(Datagram::ProbeAck(ProbeAck::sign(&b.key, &probe)).encode());
    valid.push(Datagram::NotNeighbour(NotNeighbour::sign(&b.key, b.my_link_id)).encode());
    (peer, valid, now)
}

fn neighbour_ids(peer: &Peer, now: Instant) -> Vec<NodeId> {
    peer.neighbours(now).iter().map(|n| n.id).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte (at an index taken modulo the length) with a non-zero mask.
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
    ]
}

/// Applies `mutations`; the result always differs from `bytes`.
fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        match m {
            Mutation::Flip(i, mask) if !out.is_empty() => {
                let i = i % out.len();
                out[i] ^= mask;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(n) => out.truncate(n % out.len().max(1)),
            Mutation::Extend(tail) => out.extend_from_slice(tail),
        }
    }
    if out == bytes {
        out.push(0);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_garbage_never_panics_or_changes_neighbours(
        datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1300), 1..8),
    ) {
        let (mut peer, _, now) = linked_peer();
        let before = neighbour_ids(&peer, now);
        let received = peer.stats().datagrams_in;
        for bytes in &datagrams {
            peer.handle_datagram(now, harness::addr(9).udp_addr(), bytes);
        }
        peer.handle_timeout(now);
        prop_assert_eq!(neighbour_ids(&peer, now), before);
        prop_assert_eq!(peer.stats().datagrams_in - received, datagrams.len() as u64);
    }

    #[test]
    fn mutated_valid_datagrams_never_panic_or_change_neighbours(
        picks in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::collection::vec(mutation(), 1..4)),
            1..8,
        ),
    ) {
        let (mut peer, valid, now) = linked_peer();
        let before = neighbour_ids(&peer, now);
        for (pick, mutations) in &picks {
            let original = &valid[pick.index(valid.len())];
            let bytes = mutate(original, mutations);
            peer.handle_datagram(now, harness::addr(50).udp_addr(), &bytes);
        }
        peer.handle_timeout(now);
        prop_assert_eq!(neighbour_ids(&peer, now), before);
        let events = drain_events(&mut peer);
        prop_assert!(events.is_empty(), "no neighbour came or went: {:?}", events);
    }
}

/// A hello whose frames arrive cut into the given pieces (sizes taken modulo what is
/// left), from a fresh connection to `peer`.
fn feed_in_pieces(peer: &mut Peer, now: Instant, bytes: &[u8], cuts: &[usize]) {
    let conn = peer
        .handle_accept(now, harness::addr(77).tcp_addr())
        .expect("a free handshake slot");
    let mut rest = bytes;
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at(1 + cut % rest.len());
        peer.handle_conn_bytes(now, conn, piece);
        rest = after;
    }
    peer.handle_conn_bytes(now, conn, rest);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives on a handshake connection, in whatever pieces — garbage, or a
    /// valid hello and confirm with bytes flipped, cut or added — the peer never panics,
    /// never installs a link it did not verify, and at its deadline the connection is
    /// gone.
    #[test]
    fn hostile_connection_bytes_never_panic_or_link(
        garbage in prop::collection::vec(any::<u8>(), 0..5000),
        mutations in prop::collection::vec(mutation(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let now = Instant::now();
        let mut peer = solo(Config::test(), 1, now);
        feed_in_pieces(&mut peer, now, &garbage, &cuts);
        let (_, hello) = highway_wire::peer::handshake::Initiator::start(
            &harness::key(77),
            harness::addr(77),
            highway_wire::peer::handshake::Purpose::Link,
            [77; 32],
        );
        feed_in_pieces(&mut peer, now, &mutate(&hello, &mutations), &cuts);
        prop_assert_eq!(peer.degree(), 0);
        let later = now + peer.config().handshake_timeout;
        peer.handle_timeout(later);
        let _ = std::iter::from_fn(|| peer.poll_conn()).count();
        // Both connections are gone: the per-source cap has room for a full set again.
        for _ in 0..peer.config().max_inbound_handshakes_per_ip {
            prop_assert!(peer.handle_accept(later, harness::addr(77).tcp_addr()).is_some());
        }
    }
}

/// The property's control: the same datagrams intact do change the neighbour set (the
/// Leave drops one fake neighbour, the NotNeighbour the other), so the property can fail.
#[test]
fn intact_valid_datagrams_do_drop_neighbours() {
    let (mut peer, valid, now) = linked_peer();
    for bytes in &valid {
        peer.handle_datagram(now, harness::addr(50).udp_addr(), bytes);
    }
    assert_eq!(peer.degree(), 0);
}
