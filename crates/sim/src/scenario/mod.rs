//! The scenarios behind `highway sim`: each builds simulations from a [`Setup`], runs them
//! and returns a [`Report`](crate::report::Report).
//!
//! - [`join`]: peers join over a window; degrees, path lengths, time to one component.
//! - [`failure`]: a fraction of the peers crash at once; repair time, isolation,
//!   detection time; false failures under datagram loss.
//! - [`churn`]: peers come and go (Poisson arrivals, exponential sessions); components
//!   over time, plus whatever a [`Workload`] measures.
//! - [`partition`]: the network splits in two (both ways or one way) and heals; does the
//!   overlay become one again?
//!
//! **Adding the search scenario.** Queries are started on a peer with
//! [`Sim::with_peer`] (`sim.with_peer(h, |peer, now| peer.start_search(now, ...))`), which
//! runs the call at the current virtual instant and sends what it queued; their results
//! come back as core events the simulator does not act on itself, read with
//! [`Sim::drain_app_events`] (each with its instant and host). A search scenario builds
//! its overlay as [`join`] does ([`Setup::build`], [`Setup::join_population`], then
//! [`Sim::run_until`]), places files by whatever the core's share API takes, and loops:
//! start queries, run a while, drain the events, count hits, hops and first-hit latency.
//! Message counts come from the peers' `Stats` (`sim.peer(h).stats()`). To measure search
//! under churn, implement [`Workload`] and pass it to [`churn::run_with`]: its columns
//! join the churn time series.

pub mod churn;
pub mod failure;
pub mod join;
pub mod partition;
pub mod search;
pub mod search_workload;
pub mod shelves;

use std::time::Duration;

use highway_core::Phase;
use rand::Rng;

use crate::graph::Graph;
use crate::report::{Report, fixed, percent};
use crate::{GatekeeperStats, HostId, Sim, SimParams, SimStats, SimTime};

/// What every scenario starts from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Peers in the overlay (the steady population, for churn).
    pub peers: usize,
    pub params: SimParams,
    /// The initial peers join at random instants within this window.
    pub join_window: Duration,
    /// The command line that reproduces the run, quoted in the report.
    pub command: String,
    /// Print progress (virtual time, population) to stderr.
    pub progress: bool,
    /// Threads to run the simulation on (1 or 2): the report is the same either way.
    pub threads: usize,
}

impl Setup {
    pub fn new(peers: usize, seed: u64) -> Self {
        Self {
            peers,
            params: SimParams {
                seed,
                ..SimParams::default()
            },
            join_window: Duration::from_secs(60),
            command: String::new(),
            progress: false,
            threads: 1,
        }
    }

    pub fn build(&self) -> Sim {
        let mut sim = Sim::new(self.params.clone());
        sim.set_threads(self.threads);
        sim
    }

    /// Adds `n` hosts that join at random instants within `window` from `start`.
    pub fn join_population(
        sim: &mut Sim,
        n: usize,
        start: SimTime,
        window: Duration,
    ) -> Vec<HostId> {
        let span = window.as_micros() as u64;
        (0..n)
            .map(|_| {
                let h = sim.add_host();
                let offset = if span == 0 {
                    0
                } else {
                    sim.rng().random_range(0..span)
                };
                sim.join_at(h, SimTime::from_micros(start.as_micros() + offset));
                h
            })
            .collect()
    }

    /// A new simulation with the initial population scheduled to join.
    pub fn start(&self) -> (Sim, Vec<HostId>) {
        let mut sim = self.build();
        let hosts = Self::join_population(&mut sim, self.peers, SimTime::ZERO, self.join_window);
        (sim, hosts)
    }

    pub(crate) fn progress(&self, sim: &Sim, what: &str) {
        if self.progress {
            eprintln!(
                "[{}] {what}: {} peers up, {} actions queued",
                sim.now(),
                sim.up_count(),
                sim.agenda_len()
            );
        }
    }

    /// The configuration, as a table, and the command that reproduces the run.
    pub fn describe(&self, report: &mut Report) {
        let c = &self.params.core;
        let g = &self.params.gatekeeper;
        let l = &self.params.latency;
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let rows = vec![
            row(&["peers", &self.peers.to_string()]),
            row(&["seed", &self.params.seed.to_string()]),
            row(&["join window", &ms(self.join_window)]),
            row(&[
                "target / max degree",
                &format!("{} / {}", c.target_degree, c.max_degree),
            ]),
            row(&["heartbeat interval", &ms(c.heartbeat_interval)]),
            row(&[
                "suspect / probe timeout",
                &format!("{} / {}", ms(c.suspect_timeout), ms(c.probe_timeout)),
            ]),
            row(&["witnesses (k)", &c.witnesses.to_string()]),
            row(&["handshake timeout", &ms(c.handshake_timeout)]),
            row(&["failed-peer quarantine", &ms(c.failed_quarantine)]),
            row(&[
                "refresh interval (one more neighbour)",
                &ms(c.refresh_interval),
            ]),
            row(&[
                "Gatekeeper status interval / expiry",
                &format!("{} / {}", ms(g.status_interval), ms(g.expires_after())),
            ]),
            row(&[
                "Gatekeeper candidates picked at random",
                &percent(g.random_candidates),
            ]),
            row(&[
                "latency: span / mean access / jitter / floor",
                &format!(
                    "{} / {} µs / {} / {} µs",
                    ms(l.span),
                    l.access_mean.as_micros(),
                    percent(l.jitter),
                    l.floor.as_micros()
                ),
            ]),
            row(&["datagram loss", &percent(self.params.loss)]),
            row(&["peers behind NATs", &percent(self.params.nat)]),
            row(&[
                "dialable peers' max degree",
                &self
                    .params
                    .public_max_degree
                    .unwrap_or(c.max_degree)
                    .to_string(),
            ]),
            row(&[
                "their slots for peers behind NATs",
                &c.undialable_slots.to_string(),
            ]),
        ];
        report.heading("Setup");
        report.table(&["setting", "value"], &rows);
        if !self.command.is_empty() {
            report.text("Reproduce with:");
            report.code(&self.command);
        }
    }
}

/// How the peers behind NATs fit into the overlay: they link only with dialable peers,
/// whose slots they take and which relay their transfers.
#[derive(Debug, Clone, PartialEq)]
pub struct NatLoad {
    pub dialable: usize,
    pub behind_nat: usize,
    /// Peers behind NATs with no neighbour at all.
    pub nat_isolated: usize,
    pub dialable_mean_degree: f64,
    pub nat_mean_degree: f64,
    /// Neighbours behind NATs per dialable peer (the peers it relays for): mean, 95th
    /// percentile, most.
    pub relayed_mean: f64,
    pub relayed_p95: usize,
    pub relayed_max: usize,
}

impl NatLoad {
    pub fn of(sim: &Sim) -> Self {
        let now = sim.instant(sim.now());
        let mut load = Self {
            dialable: 0,
            behind_nat: 0,
            nat_isolated: 0,
            dialable_mean_degree: 0.0,
            nat_mean_degree: 0.0,
            relayed_mean: 0.0,
            relayed_p95: 0,
            relayed_max: 0,
        };
        let mut relayed = Vec::new();
        let (mut dialable_links, mut nat_links) = (0usize, 0usize);
        for h in sim.hosts_up() {
            let peer = sim.peer(h);
            let neighbours = peer.neighbours(now);
            if peer.dialable() {
                load.dialable += 1;
                dialable_links += neighbours.len();
                relayed.push(neighbours.iter().filter(|n| !n.dialable).count());
            } else {
                load.behind_nat += 1;
                nat_links += neighbours.len();
                load.nat_isolated += usize::from(neighbours.is_empty());
            }
        }
        let mean = |total: usize, n: usize| if n == 0 { 0.0 } else { total as f64 / n as f64 };
        load.dialable_mean_degree = mean(dialable_links, load.dialable);
        load.nat_mean_degree = mean(nat_links, load.behind_nat);
        relayed.sort_unstable();
        load.relayed_mean = mean(relayed.iter().sum(), relayed.len());
        load.relayed_max = relayed.last().copied().unwrap_or(0);
        load.relayed_p95 = relayed
            .get((relayed.len() * 95 / 100).min(relayed.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0);
        load
    }

    /// One paragraph for a report.
    pub fn describe(&self) -> String {
        format!(
            "Peers behind NATs: {} of {} running; they link only with dialable peers. Mean \
             degree: dialable {}, behind NATs {}; {} behind NATs with no neighbour. Neighbours \
             behind NATs per dialable peer (whose transfers it relays): mean {}, 95th \
             percentile {}, most {}.",
            self.behind_nat,
            self.behind_nat + self.dialable,
            crate::report::fixed(self.dialable_mean_degree, 2),
            crate::report::fixed(self.nat_mean_degree, 2),
            self.nat_isolated,
            crate::report::fixed(self.relayed_mean, 2),
            self.relayed_p95,
            self.relayed_max
        )
    }
}

/// A row of strings for a table.
pub(crate) fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Traffic a scenario runs on top of the overlay: the hook through which the search
/// scenario measures search under churn.
pub trait Workload {
    /// Names of the figures [`Workload::sample`] returns.
    fn columns(&self) -> Vec<String>;
    /// How often [`Workload::tick`] runs.
    fn tick_every(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// Runs with the simulation paused: read what happened (`sim.drain_app_events()`),
    /// start new work (`sim.with_peer(..)`).
    fn tick(&mut self, sim: &mut Sim);
    /// This sampling interval's figures, one per column.
    fn sample(&mut self) -> Vec<f64>;
}

/// The overlay at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub at: SimTime,
    /// Peers running (joined, not left or crashed).
    pub running: usize,
    pub components: usize,
    /// Share of running peers in the largest component.
    pub largest_share: f64,
    /// Running peers with no link.
    pub isolated: usize,
    pub mean_degree: f64,
    /// Entries the Gatekeeper holds as live.
    pub registered: u64,
}

impl Snapshot {
    pub fn take(sim: &Sim) -> (Self, Graph) {
        let graph = Graph::of(sim);
        let c = graph.components();
        let n = graph.len();
        let snap = Self {
            at: sim.now(),
            running: n,
            components: c.count,
            largest_share: if n == 0 {
                0.0
            } else {
                c.largest as f64 / n as f64
            },
            isolated: c.isolated,
            mean_degree: if n == 0 {
                0.0
            } else {
                2.0 * graph.links() as f64 / n as f64
            },
            registered: sim.gatekeeper_live(),
        };
        (snap, graph)
    }

    pub const CSV_HEADERS: [&'static str; 7] = [
        "t_s",
        "running",
        "components",
        "largest_share",
        "isolated",
        "mean_degree",
        "registered",
    ];

    pub fn csv_row(&self) -> Vec<String> {
        vec![
            fixed(self.at.as_secs_f64(), 3),
            self.running.to_string(),
            self.components.to_string(),
            fixed(self.largest_share, 5),
            self.isolated.to_string(),
            fixed(self.mean_degree, 3),
            self.registered.to_string(),
        ]
    }
}

/// True when host `h` runs the protocol (up and joined).
pub fn running(sim: &Sim, h: HostId) -> bool {
    sim.is_up(h) && sim.peer(h).phase() == Phase::Running
}

/// Summary of a sample of values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Self {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            median: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: v[v.len() - 1],
        }
    }

    /// Count, mean, median, p90, p99, max with `d` decimals.
    pub fn cells(&self, d: usize) -> Vec<String> {
        vec![
            self.count.to_string(),
            fixed(self.mean, d),
            fixed(self.median, d),
            fixed(self.p90, d),
            fixed(self.p99, d),
            fixed(self.max, d),
        ]
    }
}

/// The counters of a run, as a table.
pub(crate) fn counters(report: &mut Report, s: &SimStats, g: &GatekeeperStats) {
    let rows = vec![
        row(&[
            "datagrams sent / delivered",
            &format!("{} / {}", s.datagrams_sent, s.datagrams_delivered),
        ]),
        row(&[
            "lost at random / to cuts / to dead hosts",
            &format!(
                "{} / {} / {}",
                s.lost_at_random, s.lost_to_cuts, s.sent_to_dead_hosts
            ),
        ]),
        row(&[
            "link datagrams held until their handshake ended",
            &s.held_early.to_string(),
        ]),
        row(&["wake-ups", &s.wakeups.to_string()]),
        row(&[
            "dials / linked / full / rejected / unreachable",
            &format!(
                "{} / {} / {} / {} / {}",
                s.dials, s.dials_linked, s.dials_full, s.dials_rejected, s.dials_unreachable
            ),
        ]),
        row(&[
            "connections refused: responder busy",
            &s.inbound_refused_busy.to_string(),
        ]),
        row(&["inbound handshakes aborted", &s.inbound_aborted.to_string()]),
        row(&[
            "joins / crashes / graceful leaves / restarts",
            &format!(
                "{} / {} / {} / {}",
                s.joins, s.crashes, s.leaves, s.restarts
            ),
        ]),
        row(&[
            "Gatekeeper joins / statuses / reports / leaves",
            &format!(
                "{} / {} / {} / {}",
                g.joins, g.statuses, g.reports, g.leaves
            ),
        ]),
        row(&[
            "Gatekeeper refusals / purged / unanswered",
            &format!("{} / {} / {}", g.refusals, g.purged, g.unanswered),
        ]),
    ];
    report.table(&["counter", "value"], &rows);
}
