//! Peers behind NATs in the simulator (issue 11): with 70% of peers that cannot be dialled
//! and take datagrams only from peers they sent to, and the default degrees, the overlay
//! is still one component,
//! every peer behind a NAT has neighbours, all of them dialable, and nothing ever dialled
//! a peer behind a NAT.

use std::time::Duration;

use highway_sim::graph::Graph;
use highway_sim::scenario::{NatLoad, Setup};
use highway_sim::{Sim, SimTime};

fn nat_overlay(peers: usize, nat: f64, seed: u64) -> Sim {
    let mut setup = Setup::new(peers, seed);
    setup.join_window = Duration::from_secs(20);
    setup.params.nat = nat;
    let (mut sim, _) = setup.start();
    sim.run_until(SimTime::from_secs(60));
    sim
}

#[test]
fn seventy_percent_behind_nats_still_form_one_overlay_through_the_dialable_peers() {
    let sim = nat_overlay(300, 0.7, 5);
    let load = NatLoad::of(&sim);
    assert!(
        (180..=240).contains(&load.behind_nat),
        "about 70% behind NATs: {load:?}"
    );
    assert_eq!(Graph::of(&sim).components().count, 1, "{load:?}");
    assert_eq!(load.nat_isolated, 0, "{load:?}");
    assert!(load.nat_mean_degree >= 2.0, "{load:?}");
    let now = sim.instant(sim.now());
    for h in sim.hosts_up() {
        let peer = sim.peer(h);
        if !peer.dialable() {
            // Its links all go to dialable peers: it can only dial out, and the only
            // datagrams that reach it come from peers it sent to.
            assert!(
                peer.neighbours(now).iter().all(|n| n.dialable),
                "a peer behind a NAT linked with another"
            );
        }
        let dialable = peer.neighbours(now).iter().filter(|n| n.dialable).count();
        assert!(
            dialable <= peer.config().max_degree && peer.degree() <= peer.capacity(),
            "over its maximum degree"
        );
    }
    // No crash, no loss: a dial that goes unanswered could only be a dial to a peer
    // behind a NAT, which nobody should ever make.
    assert_eq!(sim.stats().dials_unreachable, 0);
    assert!(
        load.relayed_max <= highway_core::Config::default().undialable_slots,
        "peers behind NATs stay within their own slots"
    );
}

#[test]
fn without_nats_a_run_is_unchanged_and_every_peer_is_dialable() {
    let sim = nat_overlay(100, 0.0, 5);
    let load = NatLoad::of(&sim);
    assert_eq!(load.behind_nat, 0);
    assert_eq!(sim.stats().nat_filtered, 0);
}
