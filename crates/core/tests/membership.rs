//! Links ending on purpose or by surprise: "not your neighbour" and graceful leave.

mod harness;

use harness::{Net, Rec, ms};
use highway_core::{Config, DownReason, Phase};
use highway_wire::peer::datagram::Datagram;
use highway_wire::peer::{NotNeighbour, decode};

fn with_target(target_degree: usize) -> Config {
    Config {
        target_degree,
        ..Config::test()
    }
}

/// Two linked peers, 0 and 1, after a second of heartbeats.
fn pair() -> Net {
    let mut net = Net::new(2, with_target(1));
    net.join_all();
    net.advance(ms(1000));
    assert_eq!(net.neighbours(0), vec![1]);
    net
}

/// The link id `from`'s datagrams to `to` carry (`to`'s id for the link).
fn link_id_used(net: &Net, from: usize, to: usize) -> u64 {
    net.sent
        .iter()
        .rev()
        .filter(|s| s.from == from && s.to_node == Some(to))
        .find_map(|s| match decode(&s.bytes) {
            Ok(Datagram::Link(frame)) => Some(frame.link_id),
            _ => None,
        })
        .expect("link traffic")
}

/// A crashes and restarts without its half of the link; B's next heartbeat is answered
/// with a signed "not your neighbour", and B drops its half at once.
#[test]
fn restarted_peer_answers_not_neighbour_and_the_old_neighbour_drops_the_link() {
    const A: usize = 0;
    const B: usize = 1;
    let mut net = pair();
    let restart_at = net.now;
    net.restart(A);
    net.advance(Config::test().heartbeat_interval);

    let a = net.id(A);
    let dropped = net.first_event(B, |r| {
        *r == Rec::Down {
            peer: a,
            reason: DownReason::NotNeighbour,
        }
    });
    let dropped = dropped.expect("B dropped A as not a neighbour");
    assert!(dropped - restart_at <= Config::test().heartbeat_interval);
    assert!(net.neighbours(B).is_empty());
    assert_eq!(net.peer(A).stats().unknown_links, 1);
    assert_eq!(
        net.peer(B).stats().failures,
        0,
        "not mistaken for a failure"
    );
}

/// A declares B failed while only B→A is lost; once the path is back, B's heartbeat
/// meets "not your neighbour" and B drops the half A no longer has.
#[test]
fn one_sided_link_after_a_failure_is_dropped_as_not_neighbour() {
    const A: usize = 0;
    const B: usize = 1;
    let mut net = pair();
    net.cut_one_way(B, A);
    let b = net.id(B);
    let failed = net.run_until_cond(ms(2000), |n| {
        n.first_event(A, |r| *r == Rec::ReportFailed { peer: b })
            .is_some()
    });
    assert!(failed);
    assert!(net.linked(B, A), "B still has its half");
    net.heal_one_way(B, A);
    let healed_at = net.now;
    net.advance(Config::test().heartbeat_interval);
    let a = net.id(A);
    let events = net.events_since(B, healed_at);
    assert_eq!(
        events.first(),
        Some(&Rec::Down {
            peer: a,
            reason: DownReason::NotNeighbour
        }),
        "{events:?}"
    );
    assert_eq!(net.peer(B).stats().failures, 0);
}

/// "Not your neighbour" must be signed by the neighbour it names: a forgery (wrong
/// signer, or naming the forger) changes nothing; the genuine one drops the link.
#[test]
fn forged_not_neighbour_is_ignored() {
    const A: usize = 0;
    const B: usize = 1;
    let mut net = pair();
    let link_id = link_id_used(&net, B, A);
    let a_udp = net.peer(A).addr().udp_addr();
    let forger = harness::key(99);

    let mut claims_a = NotNeighbour::sign(&forger, link_id);
    claims_a.responder = net.id(A);
    net.inject(B, a_udp, &Datagram::NotNeighbour(claims_a).encode());
    assert_eq!(
        net.neighbours(B),
        vec![A],
        "a NotNeighbour A never signed is ignored"
    );
    assert_eq!(net.peer(B).stats().bad_tags, 1, "and counted");

    let names_forger = NotNeighbour::sign(&forger, link_id);
    net.inject(B, a_udp, &Datagram::NotNeighbour(names_forger).encode());
    assert_eq!(net.neighbours(B), vec![A]);

    let wrong_link = NotNeighbour::sign(&harness::key(1), link_id ^ 1);
    net.inject(B, a_udp, &Datagram::NotNeighbour(wrong_link).encode());
    assert_eq!(
        net.neighbours(B),
        vec![A],
        "a NotNeighbour for another link is ignored"
    );
    assert!(net.count_events(B, |r| matches!(r, Rec::Down { .. })) == 0);

    // The control: A's own signature on the right link id drops the link.
    let genuine = NotNeighbour::sign(&harness::key(1), link_id);
    net.inject(B, a_udp, &Datagram::NotNeighbour(genuine).encode());
    assert!(net.neighbours(B).is_empty());
}

/// L leaves: it tells its neighbours and the Gatekeeper; each neighbour drops the link
/// with reason Left at that instant (no suspicion, no failure) and repairs through L's
/// other neighbours.
#[test]
fn graceful_leave_drops_links_at_once_and_neighbours_repair() {
    const L: usize = 0;
    const X: usize = 1;
    const Y: usize = 2;
    let mut net = Net::with_configs(vec![with_target(2), with_target(1), with_target(1)]);
    net.script(L, &[]);
    net.script(X, &[&[L]]);
    net.script(Y, &[&[L]]);
    for i in [L, X, Y] {
        net.join(i);
    }
    net.advance(ms(1000));
    assert_eq!(net.neighbours(L), vec![X, Y]);
    assert!(!net.linked(X, Y));

    let left_at = net.now;
    net.leave(L);
    assert_eq!(net.peer(L).phase(), Phase::Left);
    let l = net.id(L);
    let mine = net.events_since(L, left_at);
    assert!(mine.contains(&Rec::GatekeeperLeave), "{mine:?}");
    assert_eq!(
        mine.iter()
            .filter(|r| matches!(
                r,
                Rec::Down {
                    reason: DownReason::Leaving,
                    ..
                }
            ))
            .count(),
        2
    );
    for i in [X, Y] {
        let down = net.first_event(i, |r| {
            *r == Rec::Down {
                peer: l,
                reason: DownReason::Left,
            }
        });
        assert_eq!(down, Some(left_at), "peer {i} dropped L at once");
    }
    assert!(
        net.linked(X, Y),
        "X and Y repaired through L's neighbour list at once"
    );

    net.advance(ms(2000));
    for i in [X, Y] {
        assert!(!net.events_since(i, left_at).contains(&Rec::GatekeeperJoin));
        assert_eq!(net.peer(i).stats().suspicions, 0);
    }
    let after: Vec<_> = net
        .sent
        .iter()
        .filter(|s| s.from == L && s.at > left_at)
        .collect();
    assert!(after.is_empty(), "L sent nothing after leaving: {after:?}");
}
