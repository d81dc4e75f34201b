//! The failure scenario's guarantees at CI size: survivors of a large crash find each
//! other again quickly, every dead neighbour is detected within the detector's bound, and
//! moderate loss declares nobody dead.

use std::time::Duration;

use highway_sim::graph::Graph;
use highway_sim::scenario::Setup;
use highway_sim::scenario::failure::{FailureParams, crash_run, loss_run};

fn params(peers: usize) -> FailureParams {
    let mut setup = Setup::new(peers, 11);
    setup.join_window = Duration::from_secs(30);
    let mut p = FailureParams::new(setup);
    p.settle = Duration::from_secs(30);
    p.after = Duration::from_secs(60);
    p
}

#[test]
fn survivors_of_a_30_percent_crash_are_one_component_again_within_15_seconds() {
    let p = params(200);
    let (c, sim) = crash_run(&p, 0.3);
    assert_eq!(c.crashed, 60);
    assert_eq!(
        c.components_before, 1,
        "the overlay was whole before the crash"
    );
    let whole = c
        .stable_from
        .expect("the survivors became one component for good");
    assert!(
        whole <= Duration::from_secs(15),
        "one component only after {whole:?}"
    );
    assert_eq!(c.undetected, 0, "every link to a crashed peer was dropped");
    assert_eq!(c.false_failures, 0, "no survivor was declared dead");
    // FAILED comes at suspect + probe timeout after the last datagram heard, which was
    // at most one heartbeat (plus a delay) before the crash: 5–6 intervals by default.
    let worst = c.link_failure.iter().copied().fold(0.0, f64::max);
    assert!(worst <= 6.5, "a link took {worst} intervals to fail");
    assert!(c.link_failure.len() == c.links_to_crashed);
    // A minute later the survivors have repaired: nobody is left without links, and
    // nearly everyone is back at the target degree.
    let g = Graph::of(&sim);
    assert_eq!(g.len(), 140);
    let degrees: Vec<usize> = (0..g.len()).map(|i| g.degree(i)).collect();
    assert!(degrees.iter().all(|&d| d >= 1), "{degrees:?}");
    let at_target = degrees.iter().filter(|&&d| d >= 3).count();
    assert!(at_target * 100 >= 95 * g.len(), "{degrees:?}");
}

#[test]
fn no_false_failures_at_5_percent_loss_for_10_minutes() {
    let mut p = params(100);
    p.loss_duration = Duration::from_secs(600);
    let (l, _) = loss_run(&p, 0.05);
    assert!(
        l.link_hours > 20.0,
        "the overlay was measured ({} link-hours)",
        l.link_hours
    );
    assert_eq!(
        l.false_failures, 0,
        "{} live peers declared dead",
        l.false_failures
    );
    assert_eq!(l.components_at_end, 1);
}
