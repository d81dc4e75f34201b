//! **churn**: after the initial population joins, peers keep arriving (a Poisson process
//! sized to keep the population steady) and leaving after exponentially distributed
//! sessions, some gracefully and some by crashing. Measured over time: the population,
//! components, the share outside the largest component, isolated peers, mean degree and
//! the Gatekeeper's live entries — plus whatever a [`Workload`] adds (search success,
//! once the search scenario plugs in).

use std::time::Duration;

use crate::report::plot::{LineChart, Series};
use crate::report::{Report, fixed, percent};
use crate::scenario::{Setup, Snapshot, Summary, Workload, counters, row};
use crate::{ChurnParams, SimTime};

#[derive(Debug, Clone)]
pub struct ChurnScenario {
    pub setup: Setup,
    pub median_session: Duration,
    /// Fraction of departures that leave gracefully (the rest crash).
    pub graceful: f64,
    /// Virtual time simulated after the join window.
    pub duration: Duration,
    pub sample_every: Duration,
}

impl ChurnScenario {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            median_session: Duration::from_secs(30 * 60),
            graceful: 0.5,
            duration: Duration::from_secs(3600),
            sample_every: Duration::from_secs(10),
        }
    }
}

/// What a churn run found.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnOutcome {
    pub series: Vec<Snapshot>,
    /// Samples at which the running peers formed one component.
    pub whole_share: f64,
    pub arrivals: u64,
    pub departures: u64,
}

/// A workload that does nothing, for churn without traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWorkload;

impl Workload for NoWorkload {
    fn columns(&self) -> Vec<String> {
        Vec::new()
    }

    fn tick(&mut self, _sim: &mut crate::Sim) {}

    fn sample(&mut self) -> Vec<f64> {
        Vec::new()
    }
}

pub fn run(p: &ChurnScenario) -> (Report, ChurnOutcome) {
    run_with(p, &mut NoWorkload)
}

/// Runs the churn scenario with `workload` ticking along; its figures join the time
/// series and the report.
pub fn run_with(p: &ChurnScenario, workload: &mut dyn Workload) -> (Report, ChurnOutcome) {
    let setup = &p.setup;
    let (mut sim, initial) = setup.start();
    let churn_from = SimTime::at(setup.join_window);
    sim.run_until(churn_from);
    sim.start_churn(ChurnParams::steady(
        setup.peers,
        p.median_session,
        p.graceful,
    ));
    for h in initial {
        sim.give_session(h);
    }
    let start_stats = sim.stats();
    let end = churn_from + p.duration;
    let mut series = Vec::new();
    let mut extra: Vec<Vec<f64>> = Vec::new();
    let mut next_sample = churn_from + p.sample_every;
    let mut next_tick = churn_from + workload.tick_every();
    let mut t = churn_from;
    while t < end {
        t = next_sample.min(next_tick).min(end);
        sim.run_until(t);
        if t == next_tick {
            workload.tick(&mut sim);
            next_tick = next_tick + workload.tick_every();
        }
        if t == next_sample {
            let (snap, _) = Snapshot::take(&sim);
            series.push(snap);
            extra.push(workload.sample());
            next_sample = next_sample + p.sample_every;
            if snap.at.as_micros() % 60_000_000 == 0 {
                setup.progress(&sim, "churn");
            }
        }
    }
    let s = sim.stats();
    let arrivals = s.joins - start_stats.joins;
    let departures = (s.leaves + s.crashes) - (start_stats.leaves + start_stats.crashes);
    let whole = series.iter().filter(|s| s.components == 1).count();
    let outcome = ChurnOutcome {
        whole_share: whole as f64 / series.len().max(1) as f64,
        series,
        arrivals,
        departures,
    };

    let mut report = Report::new("Simulation: churn");
    report.text(&format!(
        "{} peers join over {} s; then for {} s peers arrive as a Poisson process and stay \
         for exponentially distributed sessions (median {} s), so the population stays \
         near {}; {} of departures are graceful leaves, the rest crashes. Sampled every \
         {} s.",
        setup.peers,
        setup.join_window.as_secs(),
        p.duration.as_secs(),
        p.median_session.as_secs(),
        setup.peers,
        percent(p.graceful),
        p.sample_every.as_secs()
    ));
    setup.describe(&mut report);
    report.heading("Results");
    let col = |f: fn(&Snapshot) -> f64| -> Vec<f64> { outcome.series.iter().map(f).collect() };
    let mut rows = vec![
        summary_row("running peers", &col(|s| s.running as f64), 0),
        summary_row("components", &col(|s| s.components as f64), 0),
        summary_row(
            "share outside the largest component (%)",
            &col(|s| (1.0 - s.largest_share) * 100.0),
            3,
        ),
        summary_row("isolated peers", &col(|s| s.isolated as f64), 0),
        summary_row("mean degree", &col(|s| s.mean_degree), 2),
        summary_row("Gatekeeper live entries", &col(|s| s.registered as f64), 0),
    ];
    let names = workload.columns();
    for (i, name) in names.iter().enumerate() {
        let values: Vec<f64> = extra.iter().filter_map(|e| e.get(i).copied()).collect();
        rows.push(summary_row(name, &values, 3));
    }
    report.table(
        &["over the samples", "mean", "median", "p90", "p99", "max"],
        &rows,
    );
    report.table(
        &["figure", "value"],
        &[
            row(&["samples with one component", &percent(outcome.whole_share)]),
            row(&["arrivals", &outcome.arrivals.to_string()]),
            row(&["departures", &outcome.departures.to_string()]),
        ],
    );

    let mut headers: Vec<&str> = Snapshot::CSV_HEADERS.to_vec();
    headers.extend(names.iter().map(String::as_str));
    let csv: Vec<Vec<String>> = outcome
        .series
        .iter()
        .zip(&extra)
        .map(|(s, e)| {
            let mut r = s.csv_row();
            r.extend(e.iter().map(|v| fixed(*v, 4)));
            r
        })
        .collect();
    report.csv("timeline.csv", &headers, &csv);
    let pick = |f: fn(&Snapshot) -> f64| -> Vec<(f64, f64)> {
        outcome
            .series
            .iter()
            .map(|s| (s.at.as_secs_f64() / 60.0, f(s)))
            .collect()
    };
    let components = LineChart::new("Components under churn", "virtual time (min)", "count")
        .series(Series::new("components", pick(|s| s.components as f64)))
        .series(Series::new("isolated peers", pick(|s| s.isolated as f64)));
    report.plot("components.svg", "components under churn", components.svg());
    let population = LineChart::new("Population under churn", "virtual time (min)", "peers")
        .series(Series::new("running", pick(|s| s.running as f64)))
        .series(Series::new(
            "Gatekeeper live entries",
            pick(|s| s.registered as f64),
        ));
    report.plot("population.svg", "population under churn", population.svg());
    let cut_off = LineChart::new(
        "Share outside the largest component under churn",
        "virtual time (min)",
        "share of running peers (%)",
    )
    .series(Series::new(
        "outside the largest component",
        pick(|s| (1.0 - s.largest_share) * 100.0),
    ));
    report.plot(
        "cut_off.svg",
        "share outside the largest component",
        cut_off.svg(),
    );
    let degree = LineChart::new(
        "Mean degree under churn",
        "virtual time (min)",
        "mean degree",
    )
    .series(Series::new("mean degree", pick(|s| s.mean_degree)));
    report.plot("mean_degree.svg", "mean degree under churn", degree.svg());
    if let Some(i) = names.iter().position(|n| n.starts_with("search success")) {
        let points = outcome
            .series
            .iter()
            .zip(&extra)
            .filter_map(|(s, e)| Some((s.at.as_secs_f64() / 60.0, *e.get(i)?)))
            .collect();
        let success = LineChart::new(
            "Search success under churn",
            "virtual time (min)",
            "searches that found the file (%)",
        )
        .y_range(0.0, 100.0)
        .series(Series::new(names[i].as_str(), points));
        report.plot(
            "search_success.svg",
            "search success under churn",
            success.svg(),
        );
    }
    report.heading("Counters");
    counters(&mut report, &sim.stats(), sim.gatekeeper_stats());
    (report, outcome)
}

fn summary_row(name: &str, values: &[f64], decimals: usize) -> Vec<String> {
    let s = Summary::of(values);
    vec![
        name.to_string(),
        fixed(s.mean, decimals),
        fixed(s.median, decimals),
        fixed(s.p90, decimals),
        fixed(s.p99, decimals),
        fixed(s.max, decimals),
    ]
}
