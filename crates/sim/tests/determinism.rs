//! One seed, one run: the same arguments write the same report, byte for byte, whether
//! the shards run on one thread or two; another seed writes another report.

use std::time::Duration;

use highway_sim::report::Report;
use highway_sim::scenario::{Setup, churn, join};

fn small_join(seed: u64, threads: usize) -> Report {
    let mut setup = Setup::new(60, seed);
    setup.join_window = Duration::from_secs(15);
    setup.threads = threads;
    let mut p = join::JoinParams::new(setup);
    p.duration = Duration::from_secs(30);
    join::run(&p).0
}

/// Churn with loss exercises crashes, graceful leaves, arrivals, the Gatekeeper's expiry
/// and TCP retransmissions, all drawing on the random streams.
fn small_churn(seed: u64, threads: usize) -> Report {
    let mut setup = Setup::new(40, seed);
    setup.join_window = Duration::from_secs(10);
    setup.params.loss = 0.05;
    setup.threads = threads;
    let mut p = churn::ChurnScenario::new(setup);
    p.median_session = Duration::from_secs(30);
    p.duration = Duration::from_secs(60);
    churn::run(&p).0
}

fn files(report: &Report) -> Vec<(String, String)> {
    report
        .files()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect()
}

#[test]
fn the_same_seed_writes_the_same_report_bytes() {
    assert_eq!(files(&small_join(7, 1)), files(&small_join(7, 1)));
    assert_eq!(files(&small_churn(7, 1)), files(&small_churn(7, 1)));
}

#[test]
fn two_threads_write_the_same_report_as_one() {
    assert_eq!(files(&small_join(3, 1)), files(&small_join(3, 2)));
    assert_eq!(files(&small_churn(3, 1)), files(&small_churn(3, 2)));
}

#[test]
fn another_seed_writes_another_report() {
    assert_ne!(small_join(7, 1).markdown(), small_join(8, 1).markdown());
    assert_ne!(small_churn(7, 1).markdown(), small_churn(8, 1).markdown());
}
