use highway_sim::scenario::{Setup, Snapshot};
use highway_sim::{HostId, SimTime};
use std::time::Duration;

#[test]
fn scratch2() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut setup = Setup::new(n, 1);
    setup.join_window = Duration::from_secs(30);
    let (mut sim, hosts) = setup.start();
    sim.run_until(SimTime::from_secs(60));
    eprintln!("before: {:?}", Snapshot::take(&sim).0);
    // two-way partition: half in group 1 (cut from group 0, where the gatekeeper is)
    for h in &hosts[..n / 2] {
        sim.set_group(*h, 1);
    }
    let oneway = std::env::var("ONEWAY").is_ok();
    if oneway {
        sim.cut_one_way(1, 0);
    } else {
        sim.cut(0, 1);
    }
    for s in [65, 70, 80, 100, 120] {
        sim.run_until(SimTime::from_secs(s));
        let g = highway_sim::graph::Graph::of(&sim);
        let across = hosts
            .iter()
            .filter(|&&h| sim.is_up(h))
            .map(|&h| {
                sim.neighbours(h)
                    .iter()
                    .filter(|(_, m)| (m.0 < (n / 2) as u32) != (h.0 < (n / 2) as u32))
                    .count()
            })
            .sum::<usize>();
        eprintln!(
            "t={s} comps={} across-half-links={across} {:?}",
            g.components().count,
            Snapshot::take(&sim).0
        );
    }
    sim.heal();
    for s in [125, 130, 140, 160, 200, 300, 600] {
        sim.run_until(SimTime::from_secs(s));
        eprintln!("healed t={s} {:?}", Snapshot::take(&sim).0);
    }
    let _ = HostId(0);
    eprintln!("{:?} {:?}", sim.stats(), sim.gatekeeper_stats());
}
