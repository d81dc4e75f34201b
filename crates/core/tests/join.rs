//! Joining the overlay: Gatekeeper candidates, the search past full peers, handshake
//! slots, and links dialled from both ends at once.

mod harness;

use harness::{Net, Outcome, Rec, ms};
use highway_core::{Config, DownReason};

fn with_target(target_degree: usize) -> Config {
    Config {
        target_degree,
        ..Config::test()
    }
}

#[test]
fn peers_link_to_gatekeeper_candidates_up_to_the_target_degree() {
    let mut net = Net::new(6, Config::test());
    net.join_all();
    net.advance(ms(2000));
    for i in 0..6 {
        let degree = net.peer(i).degree();
        assert!(
            (3..=5).contains(&degree),
            "peer {i} has {degree} neighbours: {:?}",
            net.neighbours(i)
        );
        for j in net.neighbours(i) {
            assert!(net.linked(j, i), "link {i}-{j} is one-sided");
            assert_eq!(net.state(i, j), Some("okay"));
        }
    }
}

/// A candidate at its maximum degree answers "full" with its neighbours, and the joiner
/// links to one of them instead.
#[test]
fn join_searches_past_a_full_candidate_to_its_neighbours() {
    const FULL: usize = 0;
    const JOINER: usize = 6;
    let mut configs = vec![Config::test()];
    configs.extend(std::iter::repeat_n(with_target(1), 6));
    let mut net = Net::with_configs(configs);
    net.script(FULL, &[]);
    for i in 1..=JOINER {
        net.script(i, &[&[FULL]]);
    }
    net.join(FULL);
    for i in 1..JOINER {
        net.join(i);
    }
    net.advance(ms(300));
    assert_eq!(
        net.neighbours(FULL),
        vec![1, 2, 3, 4, 5],
        "the candidate is full"
    );

    let start = net.now;
    net.join(JOINER);
    net.advance(ms(500));

    let full_addr = net.peer(FULL).addr();
    let events = net.events_since(JOINER, start);
    let answered_full = events.iter().position(|r| {
        *r == Rec::Dialled {
            addr: full_addr,
            outcome: Outcome::Full,
        }
    });
    assert!(
        answered_full.is_some(),
        "the full candidate answered full: {events:?}"
    );
    let neighbours = net.neighbours(JOINER);
    assert_eq!(
        neighbours.len(),
        1,
        "the joiner reached its target: {events:?}"
    );
    assert!(
        (1..=5).contains(&neighbours[0]),
        "the joiner linked to a neighbour of the full candidate, not {neighbours:?}"
    );
    assert_eq!(
        net.peer(FULL).degree(),
        5,
        "the full candidate stayed at its maximum"
    );
    assert_eq!(
        net.count_events(JOINER, |r| *r == Rec::GatekeeperJoin),
        1,
        "the search did not need the Gatekeeper again"
    );
}

/// Many peers dialling one peer at once, with handshakes overlapping in time: it links
/// only as many as it has slots for (the harness checks the maximum after every step),
/// and the rest find room elsewhere. Accepted handshakes hold no slot, so the late ones
/// are either answered "full" or refused when they confirm.
#[test]
fn many_peers_dialling_one_never_push_it_past_max_degree() {
    const HUB: usize = 0;
    let mut net = Net::new(13, with_target(2));
    net.handshake_rtt = ms(40);
    net.join(HUB);
    for i in 1..13 {
        net.script(i, &[&[HUB]]);
    }
    for i in 1..13 {
        net.join(i);
    }
    net.advance(ms(100));
    assert_eq!(net.peer(HUB).degree(), 5, "the hub filled up");
    let hub_addr = net.peer(HUB).addr();
    let turned_away: usize = (1..13)
        .map(|i| {
            net.count_events(i, |r| {
                matches!(r, Rec::Dialled { addr, outcome: Outcome::Full | Outcome::Rejected }
                    if *addr == hub_addr)
            })
        })
        .sum();
    assert_eq!(
        turned_away, 7,
        "every dial past the fifth was answered full or refused on its confirm"
    );
    let hub = net.peer(HUB).stats();
    assert_eq!(
        hub.links_refused_full, 7,
        "all twelve were accepted, five fit"
    );
    // Let them all find neighbours through the registry.
    for i in 1..13 {
        net.set_gatekeeper(i, harness::Gatekeeper::Registry);
    }
    net.advance(ms(5000));
    for i in 0..13 {
        assert!(
            net.peer(i).degree() >= 2,
            "peer {i} is stuck at {:?}",
            net.neighbours(i)
        );
    }
}

/// Two peers dial each other at the same moment and both accept: both keep the link
/// the smaller id initiated, say so with `Replaced`, and traffic flows on it.
#[test]
fn simultaneous_dials_converge_on_one_link() {
    let mut replaced = 0;
    for first in [0, 1] {
        let second = 1 - first;
        let mut net = Net::new(2, with_target(1));
        net.handshake_rtt = ms(40);
        net.script(first, &[&[second]]);
        net.script(second, &[&[first]]);
        net.join(first);
        net.join(second);
        net.advance(ms(500));
        let settled: Vec<_> = (0..2).map(|i| net.peer(i).stats().clone()).collect();
        net.advance(ms(1500));
        assert_eq!(net.neighbours(0), vec![1]);
        assert_eq!(net.neighbours(1), vec![0]);
        for i in [0, 1] {
            for (_, rec) in net.events(i) {
                if let Rec::Down { reason, .. } = rec {
                    assert_eq!(*reason, DownReason::Replaced, "peer {i}: {rec:?}");
                    replaced += 1;
                }
            }
            // Datagrams already in flight on a replaced link may meet "unknown link";
            // once settled, both sides use the same link.
            let stats = net.peer(i).stats();
            assert_eq!(stats.unknown_links, settled[i].unknown_links, "peer {i}");
            assert_eq!(stats.bad_tags, 0);
            assert!(
                stats.heartbeats_received >= settled[i].heartbeats_received + 14,
                "peer {i}: {stats:?}"
            );
            assert_eq!(stats.suspicions, 0);
        }
    }
    assert!(replaced > 0, "one of the two orders replaced a link");
}

/// The Gatekeeper's backoff expires while a handshake is still in flight: the peer must
/// not ask to be woken at an instant it has nothing to do (the harness panics on that).
#[test]
fn handshake_slower_than_the_gatekeeper_backoff_does_not_spin() {
    let mut net = Net::new(2, Config::test());
    // Four one-way trips of 350 ms: longer than the first backoffs, within the timeout.
    net.handshake_rtt = ms(700);
    net.join(0);
    net.join(1);
    net.advance(ms(1500));
    assert_eq!(net.neighbours(1), vec![0]);
}

/// A host that wakes the peer late gets one round of heartbeats and a wake-up time in
/// the future, not a burst of catch-up rounds.
#[test]
fn late_wake_up_sends_one_round_of_heartbeats() {
    let base = std::time::Instant::now();
    let mut peer = harness::solo(Config::test(), 1, base);
    let fake = harness::Fake::link(&mut peer, base, 50);
    harness::drain_transmits(&mut peer);
    harness::drain_events(&mut peer);
    let late = base + ms(350);
    peer.handle_timeout(late);
    let next = peer.poll_timeout().expect("running");
    assert!(
        next > late,
        "asked to be woken at {:?}, not after the late wake at {:?}",
        next - base,
        late - base
    );
    peer.handle_timeout(late);
    let heartbeats = harness::drain_transmits(&mut peer)
        .iter()
        .filter(|t| {
            matches!(
                fake.open(&t.bytes),
                Some(highway_wire::peer::PeerMsg::Heartbeat(_))
            )
        })
        .count();
    assert_eq!(heartbeats, 1);
}

/// The Gatekeeper failing again and again is asked with exponential backoff, capped.
#[test]
fn gatekeeper_failures_back_off_exponentially_up_to_the_maximum() {
    let config = Config::test();
    let mut net = Net::new(1, config.clone());
    net.set_gatekeeper(0, harness::Gatekeeper::Failing);
    net.join(0);
    net.advance(ms(10_000));
    let asks: Vec<_> = net
        .events(0)
        .iter()
        .filter(|(_, r)| *r == Rec::GatekeeperJoin)
        .map(|(at, _)| *at)
        .collect();
    let gaps: Vec<u64> = asks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(gaps, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    assert!(config.join_backoff_max == ms(2000));
}
