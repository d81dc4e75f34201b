//! **search**: keyword search on a settled overlay. For every TTL and every popularity
//! (files held by 0.1%, 1%, 10% of the peers), a batch of searches, each for a file of
//! its own (so no hit cache answers for another); run twice from the same seed, once with
//! the summary-assisted last hop (the default) and once with plain flooding.
//!
//! Measured per batch: the share of searches that found at least one holder, the time
//! (virtual ms) and hops of the first hit, searches that ended only at their timeout, and
//! the query datagrams and hit records sent per search (summed over all peers).

use std::collections::HashMap;
use std::time::Duration;

use highway_core::{Event, SearchRequest, Stats};
use highway_wire::peer::{QueryId, QueryTarget};
use rand::Rng;
use rand::seq::index::sample;

use crate::graph::Graph;
use crate::report::plot::{LineChart, Series};
use crate::report::{Report, fixed, percent};
use crate::scenario::shelves::{Shelves, keyword};
use crate::scenario::{Setup, Snapshot, Summary, counters, running};
use crate::{AppEvent, HostId, Sim, SimTime};

#[derive(Debug, Clone)]
pub struct SearchParams {
    pub setup: Setup,
    pub ttls: Vec<u8>,
    /// Popularities: the share of peers holding each searched file.
    pub held_by: Vec<f64>,
    /// Searches per (TTL, popularity).
    pub queries: usize,
    /// Time after the join window before files are placed.
    pub settle: Duration,
    /// Between two searches of a batch (well under the per-neighbour query rate limit).
    pub spacing: Duration,
    /// Each search's own timeout.
    pub timeout: Duration,
}

impl SearchParams {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            ttls: (1..=7).collect(),
            held_by: vec![0.001, 0.01, 0.1],
            queries: 40,
            settle: Duration::from_secs(60),
            spacing: Duration::from_millis(100),
            timeout: Duration::from_secs(15),
        }
    }
}

/// How the last hop is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only to neighbours whose keyword summary might match (the default).
    LastHopFilter,
    /// To every other neighbour, like every hop before it.
    Flooding,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LastHopFilter => "summary last hop",
            Strategy::Flooding => "flooding",
        }
    }
}

/// One batch: the searches of one strategy, TTL and popularity.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub strategy: Strategy,
    pub ttl: u8,
    pub held_by: f64,
    /// Peers holding each file of the batch.
    pub holders: usize,
    pub searches: usize,
    /// Searches with at least one hit.
    pub found: usize,
    /// Searches with a holder at most TTL hops away in the overlay when they started
    /// (what a perfect flood would find), and how many of those found one.
    pub reachable: usize,
    pub found_reachable: usize,
    /// Searches that ended only at their timeout.
    pub timed_out: usize,
    pub first_hit_ms: Summary,
    pub first_hit_hops: Summary,
    /// Hits (distinct holders) per search.
    pub hits: Summary,
    /// Query datagrams sent per search, over all peers (resends included).
    pub query_messages: f64,
    /// Of those, resends to branches still open after `query_resend`.
    pub resent: f64,
    /// Hit records sent per search, over all peers (every relay counts).
    pub hit_records: f64,
}

impl Cell {
    pub fn success(&self) -> f64 {
        self.found as f64 / self.searches.max(1) as f64
    }
}

/// What a search run found, besides the report.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    pub cells: Vec<Cell>,
    /// Virtual time simulated, both runs together.
    pub simulated: Duration,
}

pub fn run(p: &SearchParams) -> (Report, SearchOutcome) {
    let mut cells = Vec::new();
    let mut overlay = None;
    let mut nat = None;
    let mut report_counters = None;
    let mut simulated = Duration::ZERO;
    for strategy in [Strategy::LastHopFilter, Strategy::Flooding] {
        let (sim, found) = run_strategy(p, strategy);
        simulated += sim.now().since_start();
        cells.extend(found);
        if overlay.is_none() {
            overlay = Some(Snapshot::take(&sim).0);
            nat = (p.setup.params.nat > 0.0).then(|| super::NatLoad::of(&sim));
            report_counters = Some((sim.stats(), sim.gatekeeper_stats().clone()));
        }
    }
    let mut report = Report::new("Simulation: search");
    report.text(&format!(
        "{} peers join over {} s and run {} s more; then files are placed (each on its own \
         random set of peers) and, after 10 s for the keyword summaries to spread, {} \
         searches per TTL and popularity start from random peers that do not hold the \
         file, {} ms apart, each for a file of its own, with a {} s timeout. The same run \
         (same seed, same overlay, same files, same searchers) is made with the \
         summary-assisted last hop and with plain flooding.",
        p.setup.peers,
        p.setup.join_window.as_secs(),
        p.settle.as_secs(),
        p.queries,
        p.spacing.as_millis(),
        p.timeout.as_secs()
    ));
    p.setup.describe(&mut report);
    if let Some(o) = overlay {
        report.text(&format!(
            "Overlay when the searches ended: {} running peers, {} component(s), mean \
             degree {}.",
            o.running,
            o.components,
            fixed(o.mean_degree, 2)
        ));
    }
    if let Some(nat) = nat {
        report.text(&nat.describe());
    }
    results_section(&mut report, &cells);
    comparison_section(&mut report, &cells);
    plots(&mut report, &cells, &p.held_by);
    if let Some((s, g)) = report_counters {
        report.heading("Counters (summary last hop run)");
        counters(&mut report, &s, &g);
    }
    (report, SearchOutcome { cells, simulated })
}

/// A search of a batch, as it goes.
#[derive(Debug, Clone, Default)]
struct Track {
    started: SimTime,
    /// A holder was within TTL hops of the searcher at the start.
    reachable: bool,
    first: Option<(SimTime, u8)>,
    hits: usize,
    ended: Option<bool>,
}

fn run_strategy(p: &SearchParams, strategy: Strategy) -> (Sim, Vec<Cell>) {
    let mut setup = p.setup.clone();
    setup.params.core.last_hop_filter = strategy == Strategy::LastHopFilter;
    let (mut sim, hosts) = setup.start();
    sim.run_until(SimTime::at(setup.join_window + p.settle));
    setup.progress(
        &sim,
        &format!("search ({}): overlay settled", strategy.name()),
    );
    let up: Vec<HostId> = hosts.into_iter().filter(|&h| running(&sim, h)).collect();

    // Files and searchers for every batch, drawn before anything depends on the strategy,
    // so both runs place the same files and search from the same peers.
    let mut shelves = Shelves::default();
    let mut batches = Vec::new();
    let mut file = 0;
    for &ttl in &p.ttls {
        for &share in &p.held_by {
            let holders = ((share * up.len() as f64).round() as usize).clamp(1, up.len() - 1);
            let mut searches = Vec::new();
            for _ in 0..p.queries {
                let chosen = sample(sim.rng(), up.len(), holders);
                let word = keyword(file);
                file += 1;
                let mut holds = vec![false; up.len()];
                for i in chosen.iter() {
                    holds[i] = true;
                    shelves.add(up[i], &word);
                }
                let searcher = loop {
                    let i = sim.rng().random_range(0..up.len());
                    if !holds[i] {
                        break up[i];
                    }
                };
                let holders = chosen.iter().map(|i| up[i]).collect();
                searches.push(Planned {
                    word,
                    searcher,
                    holders,
                });
            }
            batches.push((ttl, share, holders, searches));
        }
    }
    for &h in &up {
        shelves.publish(&mut sim, h);
    }
    sim.run_for(Duration::from_secs(10));

    let mut cells = Vec::new();
    for (ttl, share, holders, searches) in batches {
        let before = totals(&sim);
        let tracks = run_batch(p, &mut sim, ttl, &searches);
        let after = totals(&sim);
        let n = tracks.len().max(1) as f64;
        let per = |i: usize| (after[i] - before[i]) as f64 / n;
        let first_ms: Vec<f64> = tracks
            .iter()
            .filter_map(|t| {
                t.first
                    .map(|(at, _)| at.since(t.started).as_secs_f64() * 1e3)
            })
            .collect();
        let first_hops: Vec<f64> = tracks
            .iter()
            .filter_map(|t| t.first.map(|(_, hops)| f64::from(hops)))
            .collect();
        let hits: Vec<f64> = tracks.iter().map(|t| t.hits as f64).collect();
        cells.push(Cell {
            strategy,
            ttl,
            held_by: share,
            holders,
            searches: tracks.len(),
            found: tracks.iter().filter(|t| t.first.is_some()).count(),
            reachable: tracks.iter().filter(|t| t.reachable).count(),
            found_reachable: tracks
                .iter()
                .filter(|t| t.reachable && t.first.is_some())
                .count(),
            timed_out: tracks.iter().filter(|t| t.ended != Some(false)).count(),
            first_hit_ms: Summary::of(&first_ms),
            first_hit_hops: Summary::of(&first_hops),
            hits: Summary::of(&hits),
            query_messages: per(0),
            resent: per(1),
            hit_records: per(2),
        });
        setup.progress(
            &sim,
            &format!(
                "search ({}): ttl {ttl}, held by {}",
                strategy.name(),
                percent(share)
            ),
        );
    }
    (sim, cells)
}

/// Starts the searches of a batch, `spacing` apart, and runs until all have ended.
/// A search of a batch, drawn in advance.
#[derive(Debug, Clone)]
struct Planned {
    word: String,
    searcher: HostId,
    holders: Vec<HostId>,
}

/// Whether one of `holders` is at most `ttl` hops from `searcher` in `graph`.
fn within_reach(graph: &Graph, searcher: HostId, holders: &[HostId], ttl: u8) -> bool {
    let Some(source) = graph.index_of(searcher) else {
        return false;
    };
    let dist = graph.distances(source);
    holders
        .iter()
        .any(|&h| graph.index_of(h).is_some_and(|j| dist[j] <= u32::from(ttl)))
}

fn run_batch(p: &SearchParams, sim: &mut Sim, ttl: u8, searches: &[Planned]) -> Vec<Track> {
    let mut tracks = vec![Track::default(); searches.len()];
    let mut live: HashMap<(HostId, QueryId), usize> = HashMap::new();
    let graph = Graph::of(sim);
    for (i, planned) in searches.iter().enumerate() {
        let searcher = &planned.searcher;
        tracks[i].reachable = within_reach(&graph, *searcher, &planned.holders, ttl);
        let request = SearchRequest {
            target: QueryTarget::Keywords(planned.word.clone()),
            ttl: Some(ttl),
            timeout: p.timeout,
            max_results: 200,
        };
        tracks[i].started = sim.now();
        match sim.with_peer(*searcher, |peer, now| peer.start_search(now, request)) {
            Some(Ok(id)) => {
                live.insert((*searcher, id), i);
            }
            // Not running, or refused: a search that found nothing.
            _ => tracks[i].ended = Some(true),
        }
        sim.run_for(p.spacing);
        absorb(sim.drain_app_events(), &live, &mut tracks);
    }
    let give_up = sim.now() + p.timeout + Duration::from_secs(2);
    while tracks.iter().any(|t| t.ended.is_none()) && sim.now() < give_up {
        sim.run_for(Duration::from_millis(250));
        absorb(sim.drain_app_events(), &live, &mut tracks);
    }
    // Let the relays' routes close before the next batch counts messages.
    sim.run_for(Duration::from_secs(2));
    absorb(sim.drain_app_events(), &live, &mut tracks);
    tracks
}

fn absorb(events: Vec<AppEvent>, live: &HashMap<(HostId, QueryId), usize>, tracks: &mut [Track]) {
    for e in events {
        let (id, hits, done) = match &e.event {
            Event::SearchHits { id, hits } => (id, Some(hits), None),
            Event::SearchDone { id, timed_out } => (id, None, Some(*timed_out)),
            _ => continue,
        };
        let Some(&i) = live.get(&(e.host, *id)) else {
            continue;
        };
        let track = &mut tracks[i];
        if let Some(hits) = hits {
            track.hits += hits.len();
            if track.first.is_none()
                && let Some(hops) = hits.iter().map(|h| h.hops).min()
            {
                track.first = Some((e.at, hops));
            }
        }
        if let Some(timed_out) = done {
            track.ended.get_or_insert(timed_out);
        }
    }
}

/// Query datagrams, resends and hit records sent, over all peers.
fn totals(sim: &Sim) -> [u64; 3] {
    let mut t = [0; 3];
    for i in 0..sim.host_count() {
        let s: &Stats = sim.peer(HostId::from_index(i)).stats();
        t[0] += s.queries_forwarded;
        t[1] += s.queries_resent;
        t[2] += s.hits_sent;
    }
    t
}

fn results_section(report: &mut Report, cells: &[Cell]) {
    report.heading("Results");
    report.text(
        "Found: searches with at least one hit. First hit: virtual time from the start of \
         the search, and the hit's hops. Messages: query datagrams sent by all peers per \
         search (resends included; resent counts those alone), and hit records sent per \
         search (a hit relayed over three hops counts three).",
    );
    let headers = [
        "last hop",
        "TTL",
        "held by",
        "holders",
        "found",
        "found, holder within TTL",
        "first hit ms (median / p90)",
        "first hit hops (median)",
        "hits per search (mean)",
        "ended at timeout",
        "query datagrams / search",
        "resent / search",
        "hit records / search",
    ];
    let rows: Vec<Vec<String>> = cells
        .iter()
        .map(|c| {
            vec![
                c.strategy.name().to_string(),
                c.ttl.to_string(),
                percent(c.held_by),
                c.holders.to_string(),
                format!("{}/{} ({})", c.found, c.searches, percent(c.success())),
                format!("{}/{}", c.found_reachable, c.reachable),
                format!(
                    "{} / {}",
                    fixed(c.first_hit_ms.median, 0),
                    fixed(c.first_hit_ms.p90, 0)
                ),
                fixed(c.first_hit_hops.median, 0),
                fixed(c.hits.mean, 1),
                c.timed_out.to_string(),
                fixed(c.query_messages, 0),
                fixed(c.resent, 1),
                fixed(c.hit_records, 0),
            ]
        })
        .collect();
    report.table(&headers, &rows);
    let csv: Vec<Vec<String>> = cells
        .iter()
        .map(|c| {
            vec![
                c.strategy.name().replace(' ', "_"),
                c.ttl.to_string(),
                fixed(c.held_by, 4),
                c.holders.to_string(),
                c.searches.to_string(),
                c.found.to_string(),
                c.reachable.to_string(),
                c.found_reachable.to_string(),
                c.timed_out.to_string(),
                fixed(c.first_hit_ms.median, 1),
                fixed(c.first_hit_ms.p90, 1),
                fixed(c.first_hit_hops.median, 1),
                fixed(c.hits.mean, 2),
                fixed(c.query_messages, 1),
                fixed(c.resent, 2),
                fixed(c.hit_records, 1),
            ]
        })
        .collect();
    report.csv(
        "search.csv",
        &[
            "last_hop",
            "ttl",
            "held_by",
            "holders",
            "searches",
            "found",
            "holder_within_ttl",
            "found_holder_within_ttl",
            "timed_out",
            "first_hit_ms_median",
            "first_hit_ms_p90",
            "first_hit_hops_median",
            "hits_mean",
            "query_datagrams_per_search",
            "resent_per_search",
            "hit_records_per_search",
        ],
        &csv,
    );
}

fn comparison_section(report: &mut Report, cells: &[Cell]) {
    report.subheading("Summary-assisted last hop against flooding");
    let mut rows = Vec::new();
    for f in cells
        .iter()
        .filter(|c| c.strategy == Strategy::LastHopFilter)
    {
        let Some(g) = cells
            .iter()
            .find(|g| g.strategy == Strategy::Flooding && g.ttl == f.ttl && g.held_by == f.held_by)
        else {
            continue;
        };
        let saved = if g.query_messages > 0.0 {
            1.0 - f.query_messages / g.query_messages
        } else {
            0.0
        };
        rows.push(vec![
            f.ttl.to_string(),
            percent(f.held_by),
            percent(f.success()),
            percent(g.success()),
            fixed(f.query_messages, 0),
            fixed(g.query_messages, 0),
            percent(saved),
        ]);
    }
    report.table(
        &[
            "TTL",
            "held by",
            "found (summary)",
            "found (flooding)",
            "datagrams (summary)",
            "datagrams (flooding)",
            "saved",
        ],
        &rows,
    );
}

fn plots(report: &mut Report, cells: &[Cell], held_by: &[f64]) {
    let series = |strategy: Strategy, share: f64, f: &dyn Fn(&Cell) -> f64| {
        let points = cells
            .iter()
            .filter(|c| c.strategy == strategy && c.held_by == share)
            .map(|c| (f64::from(c.ttl), f(c)))
            .collect();
        Series::new(
            format!("{} held, {}", percent(share), strategy.name()),
            points,
        )
    };
    let mut success =
        LineChart::new("Searches that found the file", "TTL", "found (%)").y_range(0.0, 100.0);
    let mut messages = LineChart::new("Query datagrams per search", "TTL", "datagrams");
    let mut latency = LineChart::new(
        "Time to first hit (median, summary last hop)",
        "TTL",
        "virtual ms",
    );
    for &share in held_by {
        for strategy in [Strategy::LastHopFilter, Strategy::Flooding] {
            success = success.series(series(strategy, share, &|c| c.success() * 100.0));
            messages = messages.series(series(strategy, share, &|c| c.query_messages));
        }
        latency = latency.series(series(Strategy::LastHopFilter, share, &|c| {
            c.first_hit_ms.median
        }));
    }
    report.plot("success.svg", "search success against TTL", success.svg());
    report.plot("messages.svg", "query datagrams per search", messages.svg());
    report.plot("first_hit.svg", "time to first hit", latency.svg());
}
