//! **join**: the initial population joins over a window; how the overlay forms.
//!
//! Measured: the time series of components, isolated peers and mean degree; the time
//! until every peer has joined and all form one component; at the end, the degree
//! distribution and shortest-path lengths (breadth-first from sampled sources).

use std::time::Duration;

use crate::SimTime;
use crate::graph::Graph;
use crate::report::plot::{BarChart, LineChart, Series};
use crate::report::{Report, fixed, percent};
use crate::scenario::{Setup, Snapshot, counters, row};

#[derive(Debug, Clone)]
pub struct JoinParams {
    pub setup: Setup,
    /// Total virtual time simulated (from the first join).
    pub duration: Duration,
    /// Interval of the time series.
    pub sample_every: Duration,
    /// Sources of the breadth-first searches that measure path lengths.
    pub path_sources: usize,
}

impl JoinParams {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            duration: Duration::from_secs(120),
            sample_every: Duration::from_secs(1),
            path_sources: 32,
        }
    }
}

/// What a join run found, besides the report.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    /// From the first join until every peer had joined and all formed one component.
    pub one_component_at: Option<SimTime>,
    pub last: Snapshot,
    pub mean_path: f64,
    pub diameter: u32,
}

/// Resolution of "time until one component" once everyone has joined.
const FINE_STEP: Duration = Duration::from_millis(100);

pub fn run(p: &JoinParams) -> (Report, JoinOutcome) {
    let setup = &p.setup;
    let (mut sim, hosts) = setup.start();
    let mut series = Vec::new();
    let mut one_component_at = None;
    let end = SimTime::at(p.duration);
    let mut next_sample = SimTime::ZERO + p.sample_every;
    let mut t = SimTime::ZERO;
    while t < end {
        // Once everyone could have joined, look closely until the overlay is whole.
        let fine = one_component_at.is_none() && t >= SimTime::at(setup.join_window);
        t = if fine {
            (t + FINE_STEP).min(next_sample)
        } else {
            next_sample
        }
        .min(end);
        sim.run_until(t);
        if fine || t == next_sample {
            let (snap, _) = Snapshot::take(&sim);
            if one_component_at.is_none() && snap.running == hosts.len() && snap.components == 1 {
                one_component_at = Some(t);
            }
            if t == next_sample {
                series.push(snap);
                next_sample = next_sample + p.sample_every;
                if snap.at.as_micros() % 10_000_000 == 0 {
                    setup.progress(&sim, "join");
                }
            }
        }
    }
    let (last, graph) = Snapshot::take(&sim);
    let paths = graph.sample_paths(p.path_sources, sim.rng());
    let outcome = JoinOutcome {
        one_component_at,
        last,
        mean_path: paths.mean,
        diameter: paths.diameter,
    };

    let mut report = Report::new("Simulation: join");
    report.text(&format!(
        "{} peers join at random instants over {} s; the run lasts {} s of virtual time.",
        setup.peers,
        setup.join_window.as_secs(),
        p.duration.as_secs()
    ));
    setup.describe(&mut report);
    report.heading("Results");
    let whole = one_component_at.map_or("never (within the run)".to_string(), |t| {
        format!("{} s", fixed(t.as_secs_f64(), 1))
    });
    let rows = vec![
        row(&["time until all joined and one component", &whole]),
        row(&["running peers at the end", &last.running.to_string()]),
        row(&["components at the end", &last.components.to_string()]),
        row(&["isolated peers at the end", &last.isolated.to_string()]),
        row(&["mean degree", &fixed(last.mean_degree, 2)]),
        row(&["links", &graph.links().to_string()]),
        row(&["mean shortest path (hops)", &fixed(paths.mean, 2)]),
        row(&[
            "diameter (sampled lower bound, hops)",
            &paths.diameter.to_string(),
        ]),
        row(&["BFS sources", &paths.sources.to_string()]),
        row(&[
            "Gatekeeper entries live at the end",
            &last.registered.to_string(),
        ]),
    ];
    report.table(&["figure", "value"], &rows);
    degree_section(&mut report, &graph);
    path_section(&mut report, &paths.histogram);
    series_section(&mut report, &series, setup.join_window);
    report.heading("Counters");
    counters(&mut report, &sim.stats(), sim.gatekeeper_stats());
    (report, outcome)
}

fn degree_section(report: &mut Report, graph: &Graph) {
    report.subheading("Degree distribution");
    let hist = graph.degree_histogram();
    let n = graph.len().max(1) as f64;
    let rows: Vec<Vec<String>> = hist
        .iter()
        .enumerate()
        .map(|(d, &c)| vec![d.to_string(), c.to_string(), percent(c as f64 / n)])
        .collect();
    report.table(&["degree", "peers", "share"], &rows);
    report.csv(
        "degrees.csv",
        &["degree", "peers"],
        &rows.iter().map(|r| r[..2].to_vec()).collect::<Vec<_>>(),
    );
    let bars = hist
        .iter()
        .enumerate()
        .map(|(d, &c)| (d.to_string(), c as f64))
        .collect();
    report.plot(
        "degrees.svg",
        "degree distribution",
        BarChart::new(
            "Degree distribution at the end",
            "degree (links both ends hold)",
            "peers",
            bars,
        )
        .svg(),
    );
}

fn path_section(report: &mut Report, histogram: &[u64]) {
    report.subheading("Shortest-path lengths (sampled)");
    report.text(
        "\"Within\" is the share of peers at most that many hops from a source: what a \
         flooded query with that TTL can reach at best.",
    );
    let total = histogram.iter().sum::<u64>().max(1) as f64;
    let mut within = 0;
    let rows: Vec<Vec<String>> = histogram
        .iter()
        .enumerate()
        .skip(1)
        .map(|(h, &c)| {
            within += c;
            vec![
                h.to_string(),
                c.to_string(),
                percent(c as f64 / total),
                percent(within as f64 / total),
            ]
        })
        .collect();
    report.table(&["hops", "pairs", "share", "within"], &rows);
    report.csv("paths.csv", &["hops", "pairs", "share", "within"], &rows);
    let bars = histogram
        .iter()
        .enumerate()
        .skip(1)
        .map(|(h, &c)| (h.to_string(), c as f64))
        .collect();
    report.plot(
        "paths.svg",
        "shortest-path lengths",
        BarChart::new(
            "Shortest-path lengths from sampled sources",
            "hops",
            "pairs",
            bars,
        )
        .svg(),
    );
}

fn series_section(report: &mut Report, series: &[Snapshot], window: Duration) {
    report.subheading("Over time");
    report.text("The plots show the join and as long again after it; the CSV has the whole run.");
    let rows: Vec<Vec<String>> = series.iter().map(Snapshot::csv_row).collect();
    report.csv("timeline.csv", &Snapshot::CSV_HEADERS, &rows);
    let horizon = 2.0 * window.as_secs_f64().max(1.0);
    let pick = |f: fn(&Snapshot) -> f64| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|s| (s.at.as_secs_f64(), f(s)))
            .filter(|(t, _)| *t <= horizon)
            .collect()
    };
    let chart = LineChart::new(
        "Components and isolated peers while peers join",
        "virtual time (s)",
        "count",
    )
    .series(Series::new("components", pick(|s| s.components as f64)))
    .series(Series::new("isolated peers", pick(|s| s.isolated as f64)))
    .marker(window.as_secs_f64(), "join window ends");
    report.plot(
        "timeline.svg",
        "components and isolated peers over time",
        chart.svg(),
    );
    let degree = LineChart::new(
        "Mean degree while peers join",
        "virtual time (s)",
        "mean degree",
    )
    .series(Series::new("mean degree", pick(|s| s.mean_degree)))
    .marker(window.as_secs_f64(), "join window ends");
    report.plot("mean_degree.svg", "mean degree over time", degree.svg());
}
