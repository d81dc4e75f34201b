//! Failure detection in SWIM's terms: suspicion, direct and indirect probes, refutation,
//! failure, and repair after a failure.

mod harness;

use harness::{Fake, Net, Rec, ms};
use highway_core::{Config, DownReason};
use highway_wire::peer::{Datagram, PeerMsg, Probe};

fn with_target(target_degree: usize) -> Config {
    Config {
        target_degree,
        ..Config::test()
    }
}

/// When `i` last heard from `j`.
fn last_heard(net: &Net, i: usize, j: usize) -> std::time::Instant {
    let id = net.id(j);
    let view = net
        .peer(i)
        .neighbours(net.now)
        .into_iter()
        .find(|n| n.id == id)
        .expect("linked");
    net.now - view.last_heard_ago
}

#[test]
fn silent_neighbour_becomes_warning_after_the_suspect_timeout() {
    let mut net = Net::new(2, Config::test());
    net.join_all();
    net.advance(ms(1000));
    assert_eq!(net.state(0, 1), Some("okay"));
    net.kill(1);
    let heard = last_heard(&net, 0, 1);
    let suspect_at = heard + Config::test().suspect_timeout;

    net.run_until(suspect_at - ms(1));
    assert_eq!(net.state(0, 1), Some("okay"), "not suspected early");
    net.run_until(suspect_at);
    assert_eq!(net.state(0, 1), Some("warning"));
    let warned = net.first_event(0, |r| {
        *r == Rec::State {
            peer: net.id(1),
            state: "warning",
        }
    });
    assert_eq!(warned, Some(suspect_at));
    let probed = net
        .messages(0, 1)
        .iter()
        .any(|(at, m)| *at == suspect_at && matches!(m, PeerMsg::WitnessProbe { .. }));
    assert!(probed, "the suspect was probed directly when suspected");
    assert_eq!(net.peer(0).stats().suspicions, 1);
}

/// The direct path between A and B is lost both ways, but B answers witness C: A's
/// indirect probes keep B OKAY, so the link is never declared failed.
#[test]
fn indirect_probe_answered_through_a_witness_keeps_the_neighbour() {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    let mut net = Net::new(3, with_target(2));
    net.join_all();
    net.advance(ms(1000));
    assert_eq!(net.neighbours(A), vec![B, C]);
    assert_eq!(net.neighbours(B), vec![A, C]);
    let cut_at = net.now;
    net.cut(A, B);
    net.advance(ms(5000));

    let b = net.id(B);
    let warnings = net.count_events(A, |r| {
        *r == Rec::State {
            peer: b,
            state: "warning",
        }
    });
    let recoveries = net.count_events(A, |r| {
        *r == Rec::State {
            peer: b,
            state: "okay",
        }
    });
    assert!(warnings >= 3, "A suspected B repeatedly ({warnings} times)");
    assert!(
        recoveries >= warnings - 1,
        "each suspicion was lifted: {warnings} / {recoveries}"
    );
    assert!(net.linked(A, B) && net.linked(B, A), "the link survived");
    for i in [A, B] {
        let downs = net.count_events(i, |r| matches!(r, Rec::Down { .. }));
        assert_eq!(
            downs,
            0,
            "peer {i} dropped a neighbour: {:?}",
            net.events_since(i, cut_at)
        );
        assert_eq!(net.peer(i).stats().failures, 0);
    }
    let asked = net
        .messages(A, C)
        .iter()
        .any(|(_, m)| matches!(m, PeerMsg::PingReq { target, .. } if *target == b));
    assert!(asked, "A asked C to probe B");
    assert!(net.peer(C).stats().probes_as_witness >= 3);
}

/// B dies. A suspects it, asks witness C (which has no link to B and gets no answer to
/// its stranger probe), declares B failed after the probe timeout, reports it, and dials
/// the neighbour B had advertised instead of asking the Gatekeeper.
#[test]
fn unanswered_indirect_probe_fails_the_neighbour_and_repairs_through_its_neighbours() {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    const D: usize = 3;
    let config = Config::test();
    let mut net = Net::with_configs(vec![
        with_target(2),
        with_target(2),
        with_target(1),
        with_target(1),
    ]);
    net.script(C, &[]);
    net.script(D, &[]);
    net.script(B, &[&[D]]);
    net.script(A, &[&[B, C]]);
    for i in [C, D, B, A] {
        net.join(i);
    }
    net.advance(ms(1000));
    assert_eq!(net.neighbours(A), vec![B, C]);
    assert_eq!(net.neighbours(B), vec![A, D]);
    assert_eq!(
        net.cached_neighbours(A, B),
        vec![D],
        "A knows B's other neighbour"
    );

    net.kill(B);
    let heard = last_heard(&net, A, B);
    let b = net.id(B);
    net.run_until(heard + config.suspect_timeout + config.probe_timeout);

    let warned = net.first_event(A, |r| {
        *r == Rec::State {
            peer: b,
            state: "warning",
        }
    });
    assert_eq!(warned, Some(heard + config.suspect_timeout));
    let asked_c = net
        .messages(A, C)
        .iter()
        .any(|(_, m)| matches!(m, PeerMsg::PingReq { target, .. } if *target == b));
    assert!(asked_c, "A asked C to probe B");
    let c_probed_b = net.sent.iter().any(|s| {
        s.from == C
            && s.to_node == Some(B)
            && matches!(highway_wire::peer::decode(&s.bytes), Ok(Datagram::Probe(p)) if p.target == b)
    });
    assert!(c_probed_b, "C, not linked to B, sent it a stranger probe");

    let failed_at = heard + config.suspect_timeout + config.probe_timeout;
    let events = net.events_since(A, failed_at);
    assert_eq!(
        events[..2],
        [
            Rec::Down {
                peer: b,
                reason: DownReason::Failed
            },
            Rec::ReportFailed { peer: b }
        ],
        "A failed B at the probe deadline: {events:?}"
    );
    let d_addr = net.peer(D).addr();
    let first_dial = events.iter().find(|r| matches!(r, Rec::Connect { .. }));
    assert_eq!(
        first_dial,
        Some(&Rec::Connect { addr: d_addr }),
        "A's repair dialled B's neighbour D: {events:?}"
    );
    assert!(
        !events.contains(&Rec::GatekeeperJoin),
        "no Gatekeeper needed: {events:?}"
    );
    assert_eq!(net.neighbours(A), vec![C, D]);
    assert_eq!(net.peer(A).stats().failures, 1);
}

/// A peer that was tried during the join (it was not running yet) and is later the only
/// neighbour a failed peer advertised: repair must still dial it.
#[test]
fn repair_dials_a_cached_neighbour_that_was_tried_during_the_join() {
    const A: usize = 0;
    const B: usize = 1;
    const D: usize = 2;
    let mut net = Net::with_configs(vec![with_target(1), with_target(2), with_target(1)]);
    net.script(B, &[]);
    net.script(A, &[&[D, B]]);
    net.script(D, &[&[B]]);
    net.join(B);
    net.join(A); // D is not running yet: it rejects A, and A links to B.
    net.join(D);
    net.advance(ms(1000));
    assert_eq!(net.neighbours(A), vec![B]);
    assert_eq!(net.neighbours(B), vec![A, D]);
    assert_eq!(net.cached_neighbours(A, B), vec![D]);

    let cut_at = net.now;
    net.cut(A, B);
    net.advance(ms(1500));
    let events = net.events_since(A, cut_at);
    let failed = events
        .iter()
        .position(|r| *r == Rec::ReportFailed { peer: net.id(B) })
        .expect("A declared B failed");
    assert_eq!(
        events[failed..]
            .iter()
            .find(|r| matches!(r, Rec::Connect { .. } | Rec::GatekeeperJoin)),
        Some(&Rec::Connect {
            addr: net.peer(D).addr()
        }),
        "A's repair went to D first: {events:?}"
    );
    assert_eq!(net.neighbours(A), vec![D]);
}

/// A suspect that learns from a witness's probe that A suspects it raises its
/// incarnation and heartbeats A at once; that heartbeat alone makes A see it OKAY.
#[test]
fn suspect_refutes_a_witness_probe_with_a_higher_incarnation() {
    const A: usize = 0;
    const B: usize = 1;
    let mut net = Net::new(2, with_target(1));
    net.join_all();
    net.advance(ms(1000));
    net.cut_one_way(B, A);
    let b = net.id(B);
    let suspected = net.run_until_cond(ms(2000), |n| n.state(A, B) == Some("warning"));
    assert!(suspected);
    let incarnation = |net: &Net| {
        net.peer(A)
            .neighbours(net.now)
            .into_iter()
            .find(|n| n.id == b)
            .map(|n| n.incarnation)
    };
    assert_eq!(incarnation(&net), Some(0));

    // The way back opens; a witness (a fake third neighbour of B) probes B on A's behalf.
    net.heal_one_way(B, A);
    let mut witness = Fake::link(&mut net.nodes[B].peer, net.now, 60);
    let probe = witness.seal(&PeerMsg::WitnessProbe {
        probe_id: 7,
        suspecter: net.id(A),
    });
    let sent_before = net.sent.len();
    net.inject(B, witness.udp(), &probe);

    assert_eq!(
        net.state(A, B),
        Some("okay"),
        "B's refutation reached A at once"
    );
    assert_eq!(incarnation(&net), Some(1));
    let refutation = net.sent[sent_before..]
        .iter()
        .filter(|s| s.from == B && s.to_node == Some(A))
        .filter_map(|s| net.open(A, &s.bytes))
        .find_map(|m| match m {
            PeerMsg::Heartbeat(hb) => Some(hb.incarnation),
            _ => None,
        });
    assert_eq!(refutation, Some(1), "B heartbeated A under incarnation 1");
    let acked = net.sent[sent_before..]
        .iter()
        .filter(|s| s.from == B && s.to == witness.udp())
        .any(|s| {
            matches!(
                witness.open(&s.bytes),
                Some(PeerMsg::WitnessProbeAck { probe_id: 7 })
            )
        });
    assert!(acked, "B answered the witness");
}

/// The same through a stranger probe from a witness with no link to the suspect: the
/// suspect answers it signed and heartbeats all its neighbours under a new incarnation.
#[test]
fn suspect_refutes_a_stranger_probe_with_a_higher_incarnation() {
    const A: usize = 0;
    const B: usize = 1;
    let mut net = Net::new(2, with_target(1));
    net.join_all();
    net.advance(ms(1000));
    net.cut_one_way(B, A);
    assert!(net.run_until_cond(ms(2000), |n| n.state(A, B) == Some("warning")));
    net.heal_one_way(B, A);

    let witness = harness::addr(70).udp_addr();
    let probe = Datagram::Probe(Probe {
        nonce: 99,
        requester: harness::id_of(70),
        target: net.id(B),
    })
    .encode();
    let sent_before = net.sent.len();
    net.inject(B, witness, &probe);

    assert_eq!(net.state(A, B), Some("okay"));
    let ack = net.sent[sent_before..]
        .iter()
        .filter(|s| s.from == B && s.to == witness)
        .find_map(|s| match highway_wire::peer::decode(&s.bytes) {
            Ok(Datagram::ProbeAck(ack)) => Some(ack),
            _ => None,
        })
        .expect("B answered the stranger probe");
    assert!(
        ack.verify(&harness::id_of(70)),
        "signed by B for the witness"
    );
    assert_eq!((ack.nonce, ack.responder), (99, net.id(B)));
    let view = net.peer(A).neighbours(net.now);
    assert_eq!(view[0].incarnation, 1);
}

/// A witness's "alive" counts only for the probe it answers: an answer to an earlier
/// suspicion does not lift a new one.
#[test]
fn stale_witness_answer_does_not_lift_a_new_suspicion() {
    let t0 = std::time::Instant::now();
    let config = Config::test();
    let mut peer = harness::solo(config.clone(), 1, t0);
    let mut witness = Fake::link(&mut peer, t0, 50);
    let suspect = Fake::link(&mut peer, t0, 51);
    harness::drain_transmits(&mut peer);
    harness::drain_events(&mut peer);
    let state = |peer: &highway_core::Peer, now| {
        peer.neighbours(now)
            .into_iter()
            .find(|n| n.id == suspect.id)
            .map(|n| n.state)
    };

    // Suspects the silent neighbour, keeping the witness heard from; returns the probe
    // id of the ping-req the witness got.
    let suspect_at = |peer: &mut highway_core::Peer, witness: &mut Fake, at| {
        let hb = witness.seal(&PeerMsg::HeartbeatAck {
            seq: 0,
            observed: "127.0.0.9:4000".parse().unwrap(),
        });
        peer.handle_datagram(at - ms(100), witness.udp(), &hb);
        peer.handle_timeout(at);
        harness::drain_transmits(peer)
            .iter()
            .find_map(|t| match witness.open(&t.bytes) {
                Some(PeerMsg::PingReq {
                    probe_id, target, ..
                }) if target == suspect.id => Some(probe_id),
                _ => None,
            })
            .expect("the witness was asked")
    };
    let answer = |witness: &mut Fake, probe_id| {
        witness.seal(&PeerMsg::PingReqAck {
            probe_id,
            target: suspect.id,
            alive: true,
        })
    };

    let first = t0 + config.suspect_timeout;
    let p1 = suspect_at(&mut peer, &mut witness, first);
    assert_eq!(state(&peer, first), Some("warning"));
    let vouch = answer(&mut witness, p1);
    peer.handle_datagram(first, witness.udp(), &vouch);
    assert_eq!(state(&peer, first), Some("okay"), "the witness vouched");

    let second = first + config.suspect_timeout;
    let p2 = suspect_at(&mut peer, &mut witness, second);
    assert_ne!(p1, p2);
    assert_eq!(state(&peer, second), Some("warning"));
    let stale = answer(&mut witness, p1);
    peer.handle_datagram(second, witness.udp(), &stale);
    assert_eq!(
        state(&peer, second),
        Some("warning"),
        "a stale answer changes nothing"
    );
    let not_alive = witness.seal(&PeerMsg::PingReqAck {
        probe_id: p2,
        target: suspect.id,
        alive: false,
    });
    peer.handle_datagram(second, witness.udp(), &not_alive);
    assert_eq!(state(&peer, second), Some("warning"));
    let fresh = answer(&mut witness, p2);
    peer.handle_datagram(second, witness.udp(), &fresh);
    assert_eq!(state(&peer, second), Some("okay"));
}

/// As a witness with no link to the target, a peer vouches for it only on a probe ack
/// the target signed for this very probe.
#[test]
fn witness_vouches_only_for_a_correctly_signed_probe_ack() {
    use highway_wire::peer::ProbeAck;
    let now = std::time::Instant::now();
    let mut peer = harness::solo(Config::test(), 1, now);
    let mut requester = Fake::link(&mut peer, now, 50);
    harness::drain_transmits(&mut peer);
    let target = harness::id_of(60);
    let ask = requester.seal(&PeerMsg::PingReq {
        probe_id: 11,
        target,
        target_addr: harness::addr(60),
    });
    peer.handle_datagram(now, requester.udp(), &ask);
    let probe = harness::drain_transmits(&mut peer)
        .iter()
        .find_map(|t| match highway_wire::peer::decode(&t.bytes) {
            Ok(Datagram::Probe(p)) if t.to == harness::addr(60).udp_addr() => Some(p),
            _ => None,
        })
        .expect("a stranger probe to the target");
    assert_eq!((probe.requester, probe.target), (peer.id(), target));

    let from = harness::addr(60).udp_addr();
    let mut forged = ProbeAck::sign(&harness::key(61), &probe);
    forged.responder = target;
    let someone_else = ProbeAck::sign(&harness::key(61), &probe);
    let other_nonce = ProbeAck::sign(
        &harness::key(60),
        &Probe {
            nonce: probe.nonce ^ 1,
            ..probe
        },
    );
    for ack in [forged, someone_else, other_nonce] {
        peer.handle_datagram(now, from, &Datagram::ProbeAck(ack).encode());
    }
    assert!(
        harness::drain_transmits(&mut peer).is_empty(),
        "no verdict yet"
    );

    let genuine = Datagram::ProbeAck(ProbeAck::sign(&harness::key(60), &probe)).encode();
    peer.handle_datagram(now, from, &genuine);
    let verdicts: Vec<PeerMsg> = harness::drain_transmits(&mut peer)
        .iter()
        .filter_map(|t| requester.open(&t.bytes))
        .collect();
    assert_eq!(
        verdicts,
        vec![PeerMsg::PingReqAck {
            probe_id: 11,
            target,
            alive: true
        }]
    );
    peer.handle_datagram(now, from, &genuine);
    assert!(
        harness::drain_transmits(&mut peer).is_empty(),
        "answered once"
    );
}

/// A neighbour declared failed is not dialled again until its quarantine ends, even
/// when the Gatekeeper keeps offering it.
#[test]
fn failed_peer_is_not_redialled_during_quarantine() {
    let config = with_target(1);
    let mut net = Net::new(2, config.clone());
    net.join_all();
    net.advance(ms(1000));
    net.cut(0, 1);
    let b = net.id(1);
    assert!(net.run_until_cond(ms(2000), |n| {
        n.first_event(0, |r| *r == Rec::ReportFailed { peer: b })
            .is_some()
    }));
    let failed_at = net.now;
    net.heal(0, 1);
    net.advance(config.failed_quarantine + ms(2500));
    let b_addr = net.peer(1).addr();
    let redial = net.nodes[0]
        .events
        .iter()
        .find(|(at, r)| {
            *at >= failed_at && matches!(r, Rec::Connect { addr, .. } if *addr == b_addr)
        })
        .map(|(at, _)| *at)
        .expect("B was dialled again");
    assert!(
        redial >= failed_at + config.failed_quarantine,
        "redialled {:?} after the failure",
        redial - failed_at
    );
    assert!(
        net.count_events(0, |r| *r == Rec::GatekeeperJoin) >= 3,
        "it kept asking"
    );
    assert_eq!(
        net.neighbours(0),
        vec![1],
        "linked again after the quarantine"
    );
}
