//! `highway sim` trusts ids (skips the curve-point check of every id it decodes) to run
//! four times faster. Among simulated, honest peers that must change nothing but speed.
//! Its own test binary: the switch is process-wide and cannot be undone.

use std::time::Duration;

use highway_sim::scenario::{Setup, churn};

fn run() -> Vec<(String, String)> {
    let mut setup = Setup::new(40, 5);
    setup.join_window = Duration::from_secs(10);
    setup.params.loss = 0.05;
    let mut p = churn::ChurnScenario::new(setup);
    p.median_session = Duration::from_secs(30);
    p.duration = Duration::from_secs(60);
    let report = churn::run(&p).0;
    report
        .files()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect()
}

#[test]
fn trusting_ids_changes_nothing_in_a_run() {
    let checked = run();
    highway_wire::id::trust_ids_in_this_process();
    assert_eq!(run(), checked);
}
