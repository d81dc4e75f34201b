//! **failure**: a fraction of the peers crash at once, and separately the overlay runs
//! under datagram loss with nobody crashing.
//!
//! Crash runs measure how long the survivors take to be one component again, how many
//! are cut off meanwhile, and how long detection takes, in heartbeat intervals: the first
//! suspicion of each dead peer by any neighbour (SWIM's "time to first detection", which
//! the SWIM paper expects at e/(e−1) ≈ 1.58 protocol periods for random probing), the
//! first FAILED, and FAILED on every link to it. Loss runs count false failures: live
//! peers declared FAILED.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use highway_core::DownReason;
use highway_wire::NodeId;
use rand::seq::SliceRandom;

use crate::report::plot::{LineChart, Series};
use crate::report::{Report, fixed, percent};
use crate::scenario::{Setup, Snapshot, Summary, counters, running};
use crate::{Change, GatekeeperStats, HostId, Sim, SimStats, SimTime};

#[derive(Debug, Clone)]
pub struct FailureParams {
    pub setup: Setup,
    /// From the end of the join window to the crash (or to the start of a loss run's
    /// measurement).
    pub settle: Duration,
    /// Fractions of the running peers crashed at once, one run each.
    pub fractions: Vec<f64>,
    /// How long a crash run watches after the crash.
    pub after: Duration,
    pub sample_every: Duration,
    /// Datagram loss rates, one run each.
    pub losses: Vec<f64>,
    /// How long a loss run measures.
    pub loss_duration: Duration,
}

impl FailureParams {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            settle: Duration::from_secs(60),
            fractions: vec![0.1, 0.3, 0.5],
            after: Duration::from_secs(120),
            sample_every: Duration::from_millis(250),
            losses: vec![0.05, 0.1, 0.2],
            loss_duration: Duration::from_secs(600),
        }
    }

    fn heartbeat(&self) -> f64 {
        self.setup.params.core.heartbeat_interval.as_secs_f64()
    }
}

/// What one crash run found. Times are from the crash.
#[derive(Debug, Clone, PartialEq)]
pub struct CrashOutcome {
    pub fraction: f64,
    pub crashed: usize,
    pub survivors: usize,
    /// Links survivors held to crashed peers.
    pub links_to_crashed: usize,
    /// Components among the survivors just before the crash (1 when whole).
    pub components_before: usize,
    /// First instant the survivors were one component.
    pub whole_again: Option<Duration>,
    /// From here on they stayed one component (to the end of the run).
    pub stable_from: Option<Duration>,
    /// Largest share of survivors outside the largest component, and its mean.
    pub max_cut_off: f64,
    pub mean_cut_off: f64,
    /// Most survivors without any link at one instant.
    pub max_isolated: usize,
    /// In heartbeat intervals: per crashed peer, its first suspicion and first FAILED
    /// by any neighbour; per link, FAILED.
    pub first_suspicion: Vec<f64>,
    pub first_failure: Vec<f64>,
    pub link_failure: Vec<f64>,
    /// Links to crashed peers still held at the end.
    pub undetected: usize,
    /// Live peers declared FAILED during the run.
    pub false_failures: usize,
    /// (seconds since the crash, components, share cut off, isolated)
    pub series: Vec<(f64, usize, f64, usize)>,
    pub stats: SimStats,
    pub gatekeeper: GatekeeperStats,
}

/// What one loss run found.
#[derive(Debug, Clone, PartialEq)]
pub struct LossOutcome {
    pub loss: f64,
    /// Link-hours observed (links × time).
    pub link_hours: f64,
    pub suspicions: u64,
    pub cleared: u64,
    /// Live peers declared FAILED (nobody crashed, so every one is false).
    pub false_failures: u64,
    pub components_at_end: usize,
    pub mean_degree_at_end: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureOutcome {
    pub crashes: Vec<CrashOutcome>,
    pub losses: Vec<LossOutcome>,
}

pub fn run(p: &FailureParams) -> (Report, FailureOutcome) {
    let crashes: Vec<CrashOutcome> = p.fractions.iter().map(|&f| crash_run(p, f).0).collect();
    let losses: Vec<LossOutcome> = p.losses.iter().map(|&l| loss_run(p, l).0).collect();
    let report = write_report(p, &crashes, &losses);
    (report, FailureOutcome { crashes, losses })
}

/// Builds the overlay, lets it settle, and returns the simulation at the crash instant.
fn settled(p: &FailureParams, setup: &Setup) -> Sim {
    let (mut sim, _) = setup.start();
    let start = SimTime::at(setup.join_window + p.settle);
    let mut t = SimTime::ZERO;
    while t < start {
        t = (t + Duration::from_secs(10)).min(start);
        sim.run_until(t);
        setup.progress(&sim, "settling");
    }
    sim
}

/// Crashes `fraction` of the running peers at once and watches the survivors; returns
/// the simulation too, for tests that look further.
pub fn crash_run(p: &FailureParams, fraction: f64) -> (CrashOutcome, Sim) {
    let mut sim = settled(p, &p.setup);
    let crash_at = sim.now();
    let mut candidates: Vec<HostId> = sim.hosts_up().filter(|&h| running(&sim, h)).collect();
    let components_before = Snapshot::take(&sim).0.components;
    candidates.shuffle(sim.rng());
    let k = ((candidates.len() as f64) * fraction).round() as usize;
    let victims: BTreeSet<HostId> = candidates[..k].iter().copied().collect();
    let victim_ids: BTreeSet<NodeId> = victims.iter().map(|&h| sim.peer(h).id()).collect();
    // Every link a survivor holds to a victim: each should be detected.
    let mut pending: BTreeSet<(HostId, NodeId)> = BTreeSet::new();
    for &h in &candidates[k..] {
        for &(id, n) in sim.neighbours(h) {
            if victims.contains(&n) {
                pending.insert((h, id));
            }
        }
    }
    let links_to_crashed = pending.len();
    sim.record_membership(true);
    for &v in &victims {
        sim.crash(v);
    }

    let mut series = Vec::new();
    let mut whole_again = None;
    let mut last_split = None;
    let end = crash_at + p.after;
    let mut t = crash_at;
    let mut first_suspicion: BTreeMap<NodeId, SimTime> = BTreeMap::new();
    let mut first_failure: BTreeMap<NodeId, SimTime> = BTreeMap::new();
    let mut link_failure = Vec::new();
    let mut false_failures = 0;
    let interval = p.heartbeat();
    while t < end {
        t = (t + p.sample_every).min(end);
        sim.run_until(t);
        let (snap, _) = Snapshot::take(&sim);
        let since = t.since(crash_at);
        if snap.components == 1 {
            whole_again.get_or_insert(since);
        } else {
            last_split = Some(t);
        }
        series.push((
            since.as_secs_f64(),
            snap.components,
            1.0 - snap.largest_share,
            snap.isolated,
        ));
        for m in sim.drain_membership() {
            let dead = victim_ids.contains(&m.neighbour);
            match m.change {
                Change::Suspected if dead => {
                    first_suspicion.entry(m.neighbour).or_insert(m.at);
                }
                Change::Down(reason) if dead => {
                    if pending.remove(&(m.host, m.neighbour)) && reason == DownReason::Failed {
                        link_failure.push(m.at.since(crash_at).as_secs_f64() / interval);
                    }
                    if reason == DownReason::Failed {
                        first_failure.entry(m.neighbour).or_insert(m.at);
                    }
                }
                Change::Down(DownReason::Failed) => false_failures += 1,
                _ => {}
            }
        }
        if since.as_micros().is_multiple_of(10_000_000) {
            p.setup
                .progress(&sim, &format!("{} crashed", percent(fraction)));
        }
    }
    let in_intervals = |m: &BTreeMap<NodeId, SimTime>| -> Vec<f64> {
        m.values()
            .map(|at| at.since(crash_at).as_secs_f64() / interval)
            .collect()
    };
    // Never split at all: whole from the crash on (not just from the first sample).
    if last_split.is_none() {
        whole_again = Some(Duration::ZERO);
    }
    let stable_from = match last_split {
        None => Some(Duration::ZERO),
        Some(at) if at < end => Some((at + p.sample_every).since(crash_at)),
        Some(_) => None,
    };
    let cut_offs: Vec<f64> = series.iter().map(|s| s.2).collect();
    let outcome = CrashOutcome {
        fraction,
        crashed: victims.len(),
        survivors: candidates.len() - victims.len(),
        links_to_crashed,
        components_before,
        whole_again,
        stable_from,
        max_cut_off: cut_offs.iter().copied().fold(0.0, f64::max),
        mean_cut_off: cut_offs.iter().sum::<f64>() / cut_offs.len().max(1) as f64,
        max_isolated: series.iter().map(|s| s.3).max().unwrap_or(0),
        first_suspicion: in_intervals(&first_suspicion),
        first_failure: in_intervals(&first_failure),
        link_failure,
        undetected: pending.len(),
        false_failures,
        series,
        stats: sim.stats(),
        gatekeeper: sim.gatekeeper_stats().clone(),
    };
    sim.record_membership(false);
    (outcome, sim)
}

/// Runs the overlay under `loss` (from the first join on) with nobody crashing, and
/// counts suspicions and failures over the measured window.
pub fn loss_run(p: &FailureParams, loss: f64) -> (LossOutcome, Sim) {
    let mut setup = p.setup.clone();
    setup.params.loss = loss;
    let mut sim = settled(p, &setup);
    sim.record_membership(true);
    sim.drain_membership();
    let start = sim.now();
    let end = start + p.loss_duration;
    let step = Duration::from_secs(10);
    let mut outcome = LossOutcome {
        loss,
        link_hours: 0.0,
        suspicions: 0,
        cleared: 0,
        false_failures: 0,
        components_at_end: 0,
        mean_degree_at_end: 0.0,
    };
    let mut t = start;
    while t < end {
        let links = crate::graph::Graph::of(&sim).links();
        let next = (t + step).min(end);
        sim.run_until(next);
        outcome.link_hours += links as f64 * next.since(t).as_secs_f64() / 3600.0;
        t = next;
        for m in sim.drain_membership() {
            match m.change {
                Change::Suspected => outcome.suspicions += 1,
                Change::Cleared => outcome.cleared += 1,
                Change::Down(DownReason::Failed) => outcome.false_failures += 1,
                _ => {}
            }
        }
        if t.since(start).as_micros().is_multiple_of(60_000_000) {
            setup.progress(&sim, &format!("{} loss", percent(loss)));
        }
    }
    let (snap, _) = Snapshot::take(&sim);
    outcome.components_at_end = snap.components;
    outcome.mean_degree_at_end = snap.mean_degree;
    sim.record_membership(false);
    (outcome, sim)
}

/// Width of the bins of `detection.csv`, in heartbeat intervals.
const HISTOGRAM_BIN: f64 = 0.05;
/// Most points per line of the detection plot.
const CDF_POINTS: usize = 400;

/// Counts of `values` per bin of `width`, by the bin's lower bound, in order.
fn histogram(values: &[f64], width: f64) -> Vec<(f64, usize)> {
    let mut bins: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    for v in values {
        *bins.entry((v / width).floor() as i64).or_default() += 1;
    }
    bins.into_iter()
        .map(|(b, n)| (b as f64 * width, n))
        .collect()
}

/// A repair time: zero means the survivors were never split.
fn secs(d: Option<Duration>) -> String {
    match d {
        None => "not within the run".into(),
        Some(Duration::ZERO) => "never split".into(),
        Some(d) => format!("{} s", fixed(d.as_secs_f64(), 2)),
    }
}

fn write_report(p: &FailureParams, crashes: &[CrashOutcome], losses: &[LossOutcome]) -> Report {
    let mut report = Report::new("Simulation: failure");
    report.text(&format!(
        "The overlay forms ({} peers over {} s) and settles for {} s. Then, in separate runs \
         from the same seed, a fraction of the running peers crash at once and the \
         survivors are watched for {} s (sampled every {} ms); and the overlay runs {} s \
         under each datagram loss rate with nobody crashing.",
        p.setup.peers,
        p.setup.join_window.as_secs(),
        p.settle.as_secs(),
        p.after.as_secs(),
        p.sample_every.as_millis(),
        p.loss_duration.as_secs()
    ));
    p.setup.describe(&mut report);

    report.heading("Crashes: repair");
    let rows: Vec<Vec<String>> = crashes
        .iter()
        .map(|c| {
            vec![
                percent(c.fraction),
                c.crashed.to_string(),
                c.survivors.to_string(),
                c.links_to_crashed.to_string(),
                secs(c.whole_again),
                secs(c.stable_from),
                percent(c.max_cut_off),
                percent(c.mean_cut_off),
                c.max_isolated.to_string(),
                c.undetected.to_string(),
                c.false_failures.to_string(),
            ]
        })
        .collect();
    report.table(
        &[
            "crashed",
            "peers crashed",
            "survivors",
            "links to them",
            "one component again after",
            "stays one component from",
            "most cut off",
            "mean cut off",
            "most isolated",
            "links undetected at the end",
            "false failures",
        ],
        &rows,
    );
    report.text(
        "\"Cut off\" is the share of survivors outside the largest component; \"isolated\" \
         survivors have no link at all. Times are from the crash.",
    );
    let mut timeline = Vec::new();
    let mut chart = LineChart::new(
        "Survivors outside the largest component after the crash",
        "seconds after the crash",
        "share of survivors (%)",
    );
    let mut components = LineChart::new(
        "Components among the survivors after the crash",
        "seconds after the crash",
        "components",
    );
    for c in crashes {
        let name = format!("{} crashed", percent(c.fraction));
        chart = chart.series(Series::new(
            name.clone(),
            c.series.iter().map(|s| (s.0, s.2 * 100.0)).collect(),
        ));
        components = components.series(Series::new(
            name,
            c.series.iter().map(|s| (s.0, s.1 as f64)).collect(),
        ));
        for s in &c.series {
            timeline.push(vec![
                fixed(c.fraction, 2),
                fixed(s.0, 3),
                s.1.to_string(),
                fixed(s.2, 5),
                s.3.to_string(),
            ]);
        }
    }
    report.plot(
        "cut_off.svg",
        "survivors cut off after the crash",
        chart.svg(),
    );
    report.plot(
        "components.svg",
        "components after the crash",
        components.svg(),
    );
    report.csv(
        "crash_timeline.csv",
        &[
            "fraction",
            "t_after_crash_s",
            "components",
            "cut_off_share",
            "isolated",
        ],
        &timeline,
    );

    report.heading("Crashes: detection");
    report.text(&format!(
        "In heartbeat intervals ({} ms) from the crash. A neighbour suspects a peer it has \
         not heard from for the suspect timeout ({} intervals) and declares it FAILED when \
         the probes through witnesses get no answer within the probe timeout ({} \
         intervals). SWIM's expected time to first detection with random probing is \
         1.58 protocol periods.",
        p.setup.params.core.heartbeat_interval.as_millis(),
        fixed(
            p.setup.params.core.suspect_timeout.as_secs_f64() / p.heartbeat(),
            1
        ),
        fixed(
            p.setup.params.core.probe_timeout.as_secs_f64() / p.heartbeat(),
            1
        ),
    ));
    let mut rows = Vec::new();
    let mut detections = Vec::new();
    let mut cdf = LineChart::new(
        "Detection on each link to a crashed peer (cumulative)",
        "heartbeat intervals after the crash",
        "links detected (%)",
    )
    .y_range(0.0, 100.0);
    for c in crashes {
        for (what, values) in [
            ("first suspicion per crashed peer", &c.first_suspicion),
            ("first FAILED per crashed peer", &c.first_failure),
            ("FAILED per link", &c.link_failure),
        ] {
            let mut cells = vec![percent(c.fraction), what.to_string()];
            cells.extend(Summary::of(values).cells(2));
            rows.push(cells);
            for (bin, count) in histogram(values, HISTOGRAM_BIN) {
                detections.push(vec![
                    fixed(c.fraction, 2),
                    what.replace(' ', "_"),
                    fixed(bin, 2),
                    count.to_string(),
                ]);
            }
        }
        let mut sorted = c.link_failure.clone();
        sorted.sort_by(f64::total_cmp);
        let n = c.links_to_crashed.max(1) as f64;
        // At most CDF_POINTS points per line: enough to draw, small enough to commit.
        let every = sorted.len().div_ceil(CDF_POINTS).max(1);
        let points = sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| (i + 1) % every == 0 || i + 1 == sorted.len())
            .map(|(i, &v)| (v, (i + 1) as f64 * 100.0 / n))
            .collect();
        cdf = cdf.series(Series::new(
            format!("{} crashed", percent(c.fraction)),
            points,
        ));
    }
    report.table(
        &[
            "crashed", "measure", "count", "mean", "median", "p90", "p99", "max",
        ],
        &rows,
    );
    report.plot("detection.svg", "detection time per link", cdf.svg());
    report.csv(
        "detection.csv",
        &["fraction", "measure", "from_intervals", "count"],
        &detections,
    );

    report.heading("False failures under datagram loss");
    let rows: Vec<Vec<String>> = losses
        .iter()
        .map(|l| {
            let per = |n: u64| fixed(n as f64 / l.link_hours.max(f64::MIN_POSITIVE), 3);
            vec![
                percent(l.loss),
                fixed(l.link_hours, 1),
                l.suspicions.to_string(),
                per(l.suspicions),
                l.cleared.to_string(),
                l.false_failures.to_string(),
                per(l.false_failures),
                l.components_at_end.to_string(),
                fixed(l.mean_degree_at_end, 2),
            ]
        })
        .collect();
    report.table(
        &[
            "loss (each datagram)",
            "link-hours",
            "suspicions",
            "per link-hour",
            "cleared",
            "false failures",
            "per link-hour",
            "components at the end",
            "mean degree at the end",
        ],
        &rows,
    );
    report.csv(
        "loss.csv",
        &[
            "loss",
            "link_hours",
            "suspicions",
            "suspicions_per_link_hour",
            "cleared",
            "false_failures",
            "false_failures_per_link_hour",
            "components_at_end",
            "mean_degree_at_end",
        ],
        &rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r[0] = r[0].trim_end_matches('%').to_string();
                r
            })
            .collect::<Vec<_>>(),
    );
    report.text(
        "Loss applies to every datagram on its own (one way); a round trip is lost with \
         probability 1 − (1 − loss)². The node's `--loss F` drops F on receive and F on \
         send, so it equals a loss here of about 2F.",
    );
    if let Some(last) = crashes.last() {
        report.heading(&format!(
            "Counters of the {} crash run",
            percent(last.fraction)
        ));
        counters(&mut report, &last.stats, &last.gatekeeper);
    }
    report
}
