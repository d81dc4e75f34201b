//! The search scenario at a small size: the summary-assisted last hop finds what a flood
//! of the same TTL finds, with fewer messages; searches under churn still succeed; the
//! report is the same for the same seed.

use std::time::Duration;

use highway_sim::scenario::Setup;
use highway_sim::scenario::churn::{self, ChurnScenario};
use highway_sim::scenario::search::{self, Cell, SearchParams, Strategy};
use highway_sim::scenario::search_workload::SearchWorkload;

fn small(peers: usize, seed: u64) -> SearchParams {
    let mut setup = Setup::new(peers, seed);
    setup.join_window = Duration::from_secs(20);
    let mut p = SearchParams::new(setup);
    p.settle = Duration::from_secs(20);
    p.ttls = vec![2, 4];
    p.held_by = vec![0.02, 0.1];
    p.queries = 25;
    p
}

fn cell(cells: &[Cell], strategy: Strategy, ttl: u8, held_by: f64) -> &Cell {
    cells
        .iter()
        .find(|c| c.strategy == strategy && c.ttl == ttl && c.held_by == held_by)
        .expect("every batch is reported")
}

#[test]
fn the_summary_last_hop_finds_what_flooding_finds_with_fewer_messages() {
    let p = small(200, 3);
    let (_, outcome) = search::run(&p);
    for &ttl in &p.ttls {
        for &share in &p.held_by {
            let f = cell(&outcome.cells, Strategy::LastHopFilter, ttl, share);
            let g = cell(&outcome.cells, Strategy::Flooding, ttl, share);
            assert_eq!(f.searches, p.queries);
            // A holder within TTL hops is found (one miss allowed: a query can reach a
            // peer first by a longer path, with fewer hops left).
            assert!(
                f.found_reachable + 1 >= f.reachable,
                "ttl {ttl}, {share}: found {} of {} reachable",
                f.found_reachable,
                f.reachable
            );
            assert!(f.found + 2 >= g.found, "ttl {ttl}, {share}: {f:?} vs {g:?}");
            assert!(
                f.query_messages < 0.8 * g.query_messages,
                "ttl {ttl}, {share}: {} vs {} datagrams per search",
                f.query_messages,
                g.query_messages
            );
            assert_eq!(
                f.timed_out, 0,
                "no loss, so no search waits for its timeout"
            );
        }
    }
    // Files on 10% of 200 peers are found at TTL 4 nearly always.
    let popular = cell(&outcome.cells, Strategy::LastHopFilter, 4, 0.1);
    assert!(popular.found >= p.queries - 1, "{popular:?}");
    // And more TTL reaches more.
    let rare2 = cell(&outcome.cells, Strategy::LastHopFilter, 2, 0.02);
    let rare4 = cell(&outcome.cells, Strategy::LastHopFilter, 4, 0.02);
    assert!(rare4.reachable > rare2.reachable);
}

#[test]
fn the_search_report_is_the_same_for_the_same_seed() {
    let mut p = small(80, 5);
    p.ttls = vec![3];
    p.held_by = vec![0.05];
    p.queries = 10;
    let (a, _) = search::run(&p);
    let (b, _) = search::run(&p);
    let files = |r: &highway_sim::report::Report| {
        r.files()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(a.markdown(), b.markdown());
    assert_eq!(files(&a), files(&b));
}

#[test]
fn searches_keep_succeeding_under_churn() {
    let mut setup = Setup::new(150, 7);
    setup.join_window = Duration::from_secs(20);
    let mut p = ChurnScenario::new(setup);
    // Short sessions, so a good part of the peers changes during the run.
    p.median_session = Duration::from_secs(120);
    p.duration = Duration::from_secs(180);
    let mut workload = SearchWorkload::new();
    workload.held_by = 0.05;
    let (report, outcome) = churn::run_with(&p, &mut workload);
    assert!(outcome.departures > 30, "{} departures", outcome.departures);
    assert!(report.markdown().contains("search success (%)"));
    let csv = report
        .files()
        .find(|(n, _)| *n == "timeline.csv")
        .map(|(_, c)| c.to_string())
        .expect("the time series");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| h.starts_with("search success"))
        .unwrap();
    let ended_col = header.iter().position(|h| *h == "searches ended").unwrap();
    let (mut ended, mut found) = (0.0, 0.0);
    for line in csv.lines().skip(1) {
        let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap_or(0.0)).collect();
        ended += cells[ended_col];
        found += cells[ended_col] * cells[col] / 100.0;
    }
    assert!(ended >= 100.0, "{ended} searches ended");
    assert!(
        found / ended > 0.6,
        "{found} of {ended} searches found the file"
    );
}
