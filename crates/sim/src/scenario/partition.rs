//! **partition**: the network splits in two — both ways, or one way only — and later
//! heals. Measured over time: components, links across the cut, isolated peers; and
//! whether (and when) the overlay is one component again after the healing.
//!
//! The far side is a random subset of the peers; the Gatekeeper stays on the near side,
//! so the far side cannot reach it while the cut lasts.

use std::time::Duration;

use rand::seq::SliceRandom;

use crate::report::plot::{LineChart, Series};
use crate::report::{Report, fixed, percent};
use crate::scenario::{Setup, Snapshot, counters, row, running};
use crate::{HostId, Sim, SimTime};

#[derive(Debug, Clone)]
pub struct PartitionParams {
    pub setup: Setup,
    /// From the end of the join window to the split.
    pub settle: Duration,
    /// How long the cut lasts.
    pub split_for: Duration,
    /// How long the overlay is watched after the healing.
    pub after: Duration,
    /// Share of the peers on the far side.
    pub far_share: f64,
    /// Only the far side's traffic to the near side is lost (not the other way).
    pub one_way: bool,
    pub sample_every: Duration,
}

impl PartitionParams {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            settle: Duration::from_secs(60),
            split_for: Duration::from_secs(60),
            after: Duration::from_secs(300),
            far_share: 0.5,
            one_way: false,
            sample_every: Duration::from_secs(1),
        }
    }
}

/// What a partition run found.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOutcome {
    pub far_side: usize,
    /// Components just before the healing.
    pub components_split: usize,
    /// From the healing until the overlay was one component again.
    pub whole_after_heal: Option<Duration>,
    pub components_at_end: usize,
    /// Links between the sides at the end (as the near side lists them).
    pub links_across_at_end: usize,
    pub series: Vec<PartitionSample>,
}

/// The overlay at one instant of a partition run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartitionSample {
    pub since_split_secs: f64,
    pub components: usize,
    /// Share of running peers in the largest component.
    pub largest_share: f64,
    pub links_across: usize,
    pub isolated: usize,
}

/// Links the hosts on one side hold to hosts on the other.
fn links_across(sim: &Sim, far: &[bool]) -> usize {
    sim.hosts_up()
        .filter(|&h| !far[h.index()])
        .map(|h| {
            sim.neighbours(h)
                .iter()
                .filter(|(_, n)| far.get(n.index()).copied().unwrap_or(false))
                .count()
        })
        .sum()
}

pub fn run(p: &PartitionParams) -> (Report, PartitionOutcome) {
    let setup = &p.setup;
    let (mut sim, _) = setup.start();
    let split_at = SimTime::at(setup.join_window + p.settle);
    sim.run_until(split_at);
    setup.progress(&sim, "settled");
    let mut hosts: Vec<HostId> = sim.hosts_up().filter(|&h| running(&sim, h)).collect();
    hosts.shuffle(sim.rng());
    let far_count = (hosts.len() as f64 * p.far_share).round() as usize;
    let mut far = vec![false; sim.host_count()];
    for &h in &hosts[..far_count] {
        far[h.index()] = true;
        sim.set_group(h, 1);
    }
    if p.one_way {
        sim.cut_one_way(1, 0);
    } else {
        sim.cut(0, 1);
    }
    let heal_at = split_at + p.split_for;
    let end = heal_at + p.after;
    let mut series = Vec::new();
    let mut components_split = 0;
    let mut whole_after_heal = None;
    let mut t = split_at;
    while t < end {
        let next = (t + p.sample_every).min(end);
        if t < heal_at && next >= heal_at {
            sim.run_until(heal_at);
            components_split = Snapshot::take(&sim).0.components;
            sim.heal();
            setup.progress(&sim, "healed");
        }
        t = next;
        sim.run_until(t);
        let (snap, _) = Snapshot::take(&sim);
        if t > heal_at && snap.components == 1 {
            whole_after_heal.get_or_insert(t.since(heal_at));
        }
        series.push(PartitionSample {
            since_split_secs: t.since(split_at).as_secs_f64(),
            components: snap.components,
            largest_share: snap.largest_share,
            links_across: links_across(&sim, &far),
            isolated: snap.isolated,
        });
    }
    let last = series.last().copied().unwrap_or_default();
    let outcome = PartitionOutcome {
        far_side: far_count,
        components_split,
        whole_after_heal,
        components_at_end: last.components,
        links_across_at_end: last.links_across,
        series,
    };
    let report = write_report(p, &outcome, &sim);
    (report, outcome)
}

fn write_report(p: &PartitionParams, o: &PartitionOutcome, sim: &Sim) -> Report {
    let mut report = Report::new("Simulation: partition");
    let way = if p.one_way {
        "the far side's datagrams and segments to the near side are lost (one way)"
    } else {
        "nothing passes between the sides (both ways)"
    };
    report.text(&format!(
        "{} peers join over {} s and settle for {} s. Then a random {} of them (the far \
         side; the Gatekeeper is on the near side) are cut off for {} s — {way} — and the \
         overlay is watched for {} s after the cut heals.",
        p.setup.peers,
        p.setup.join_window.as_secs(),
        p.settle.as_secs(),
        percent(p.far_share),
        p.split_for.as_secs(),
        p.after.as_secs(),
    ));
    p.setup.describe(&mut report);
    report.heading("Results");
    let whole = o
        .whole_after_heal
        .map_or("not within the run".to_string(), |d| {
            format!("{} s", fixed(d.as_secs_f64(), 1))
        });
    report.table(
        &["figure", "value"],
        &[
            row(&["peers on the far side", &o.far_side.to_string()]),
            row(&[
                "components just before the healing",
                &o.components_split.to_string(),
            ]),
            row(&["one component again after the healing", &whole]),
            row(&["components at the end", &o.components_at_end.to_string()]),
            row(&[
                "links across the former cut at the end",
                &o.links_across_at_end.to_string(),
            ]),
        ],
    );
    let heal = p.split_for.as_secs_f64();
    let pick = |f: fn(&PartitionSample) -> f64| -> Vec<(f64, f64)> {
        o.series
            .iter()
            .map(|s| (s.since_split_secs, f(s)))
            .collect()
    };
    let chart = LineChart::new(
        "Largest component during and after the partition",
        "seconds since the split",
        "share of running peers (%)",
    )
    .y_range(0.0, 100.0)
    .series(Series::new(
        "largest component",
        pick(|s| s.largest_share * 100.0),
    ))
    .marker(heal, "healed");
    report.plot(
        "largest_component.svg",
        "largest component during and after the partition",
        chart.svg(),
    );
    let across = LineChart::new("Links across the cut", "seconds since the split", "links")
        .series(Series::new("links across", pick(|s| s.links_across as f64)))
        .marker(heal, "healed");
    report.plot("links_across.svg", "links across the cut", across.svg());
    let rows: Vec<Vec<String>> = o
        .series
        .iter()
        .map(|s| {
            vec![
                fixed(s.since_split_secs, 3),
                s.components.to_string(),
                fixed(s.largest_share, 5),
                s.links_across.to_string(),
                s.isolated.to_string(),
            ]
        })
        .collect();
    report.csv(
        "timeline.csv",
        &[
            "t_since_split_s",
            "components",
            "largest_share",
            "links_across",
            "isolated",
        ],
        &rows,
    );
    report.heading("Counters");
    counters(&mut report, &sim.stats(), sim.gatekeeper_stats());
    report
}
