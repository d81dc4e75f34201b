//! The simulator's fault machinery, checked on small overlays: partitions both ways and
//! one way, restarts on the same address, the Gatekeeper's expiry and an outage.

use std::time::Duration;

use highway_sim::graph::Graph;
use highway_sim::scenario::Setup;
use highway_sim::{HostId, Sim, SimTime};

/// `n` peers joined over 20 s and settled until 40 s.
fn overlay(n: usize, seed: u64) -> (Sim, Vec<HostId>) {
    let mut setup = Setup::new(n, seed);
    setup.join_window = Duration::from_secs(20);
    let (mut sim, hosts) = setup.start();
    sim.run_until(SimTime::from_secs(40));
    assert_eq!(Graph::of(&sim).components().count, 1, "formed one overlay");
    (sim, hosts)
}

/// Links (as either end lists them) between the first `split` hosts and the rest.
fn links_across(sim: &Sim, hosts: &[HostId], split: usize) -> usize {
    let left = |h: HostId| hosts[..split].contains(&h);
    hosts
        .iter()
        .filter(|&&h| sim.is_up(h))
        .map(|&h| {
            sim.neighbours(h)
                .iter()
                .filter(|(_, n)| left(*n) != left(h))
                .count()
        })
        .sum()
}

#[test]
fn a_partition_ends_every_link_across_it_and_the_cut_side_expires_at_the_gatekeeper() {
    let (mut sim, hosts) = overlay(80, 1);
    assert!(links_across(&sim, &hosts, 40) > 0);
    for &h in &hosts[..40] {
        sim.set_group(h, 1);
    }
    sim.cut(0, 1);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(links_across(&sim, &hosts, 40), 0);
    // Group 1 cannot reach the Gatekeeper (group 0): its entries expire.
    assert_eq!(sim.gatekeeper_live(), 40);
    sim.heal();
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.gatekeeper_live(), 80, "statuses resume after healing");
}

#[test]
fn a_one_way_cut_ends_every_link_across_it_on_both_sides() {
    let (mut sim, hosts) = overlay(80, 2);
    for &h in &hosts[..40] {
        sim.set_group(h, 1);
    }
    sim.cut_one_way(1, 0);
    sim.run_for(Duration::from_secs(30));
    // Neither side keeps a half-link: the side that still hears the other gets a "not
    // your neighbour" once the other side has dropped the link.
    assert_eq!(links_across(&sim, &hosts, 40), 0);
}

#[test]
fn a_restarted_peer_rejoins_and_no_stale_half_link_to_it_remains() {
    let (mut sim, hosts) = overlay(60, 3);
    let h = hosts[7];
    let before = sim.neighbours(h).len();
    assert!(before >= 3);
    sim.restart(h);
    sim.run_for(Duration::from_secs(30));
    assert!(sim.neighbours(h).len() >= 3, "relinked");
    for &n in &hosts {
        if sim.neighbours(n).iter().any(|(_, m)| *m == h) {
            assert!(
                sim.neighbours(h).iter().any(|(_, m)| *m == n),
                "{n:?} still holds a link to the old process of {h:?}"
            );
        }
    }
    assert_eq!(sim.stats().restarts, 1);
}

#[test]
fn the_gatekeeper_forgets_crashed_peers_within_its_expiry() {
    let (mut sim, hosts) = overlay(60, 4);
    for &h in &hosts[..15] {
        sim.crash(h);
    }
    // Expiry after three missed 5 s statuses, purged by the next sweep (reports from
    // neighbours shorten it further).
    sim.run_for(Duration::from_secs(17));
    assert_eq!(sim.gatekeeper_live(), 45);
    assert_eq!(sim.up_count(), 45);
}

#[test]
fn peers_joining_during_a_gatekeeper_outage_form_the_overlay_once_it_returns() {
    let mut setup = Setup::new(40, 5);
    setup.join_window = Duration::from_secs(5);
    let (mut sim, _) = setup.start();
    sim.set_gatekeeper_up(false);
    sim.run_until(SimTime::from_secs(20));
    assert_eq!(
        Graph::of(&sim).links(),
        0,
        "nobody found a neighbour without it"
    );
    sim.set_gatekeeper_up(true);
    // The core retries with a backoff (0.5 s doubling, at most 30 s).
    sim.run_until(SimTime::from_secs(80));
    let g = Graph::of(&sim);
    assert_eq!(g.len(), 40);
    assert_eq!(g.components().count, 1);
}

#[test]
fn an_overlay_split_by_a_partition_is_one_again_after_it_heals() {
    use highway_sim::scenario::partition::{PartitionParams, run};
    let mut setup = Setup::new(120, 6);
    setup.join_window = Duration::from_secs(20);
    let mut p = PartitionParams::new(setup);
    p.settle = Duration::from_secs(20);
    p.split_for = Duration::from_secs(30);
    p.after = Duration::from_secs(120);
    let (_, o) = run(&p);
    assert!(o.components_split >= 2, "the cut split the overlay");
    // Peers with free slots look for one more neighbour every 30–90 s (the refresh
    // interval), through the Gatekeeper, which knows both sides again.
    let whole = o.whole_after_heal.expect("one component again");
    assert!(
        whole <= Duration::from_secs(90),
        "whole only {whole:?} after healing"
    );
    assert_eq!(o.components_at_end, 1);
    assert!(o.links_across_at_end > 0);
}
