//! `highway sim SCENARIO`: runs a deterministic simulation (`highway_sim`) and writes its
//! report, CSV and plots to a directory, plus `timing.txt` with the wall-clock figures
//! (kept apart so the report depends only on the arguments).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use highway_sim::LatencyModel;
use highway_sim::report::Report;
use highway_sim::scenario::search_workload::SearchWorkload;
use highway_sim::scenario::{Setup, churn, failure, join, partition, search};

use crate::overlay_flags::OverlayFlags;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Peers join over a window: degrees, path lengths, time until one component.
    Join,
    /// Crash 10/30/50% at once (repair, isolation, detection); false failures under loss.
    Failure,
    /// Poisson arrivals and exponential sessions: components and search success over time.
    Churn,
    /// Search success, messages and first-hit latency against TTL and popularity;
    /// summary-assisted last hop against plain flooding.
    Search,
    /// The network splits in two, then heals: does the overlay become one again?
    Partition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Latency {
    /// Continental: one-way 10–150 ms.
    Wan,
    /// One data centre: about 0.2 ms.
    Lan,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    scenario: Scenario,
    /// Peers in the overlay (the steady population, for churn).
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Seed of the run: the same arguments give the same report, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for report.md, the CSV files, the SVG plots and timing.txt.
    #[arg(long, value_name = "DIR", default_value = "sim-report")]
    out: PathBuf,
    /// Virtual time to simulate [join: 2m; churn: 1h after the join window; partition:
    /// 5m after the healing].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// The initial peers join at random instants within this window.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = humantime::parse_duration)]
    join_window: Duration,
    /// Probability that a datagram is lost (join and churn; failure has --losses).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    loss: f64,
    /// Fraction (0..1) of peers behind NATs: they cannot be dialled and take datagrams
    /// only from peers they sent to lately, so they link only by dialling out.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    nat: f64,
    /// Maximum degree of the peers that can be dialled (default: --max-degree); with
    /// many peers behind NATs they need more slots.
    #[arg(long, value_name = "N")]
    public_max_degree: Option<usize>,
    #[arg(long, value_enum, default_value = "wan")]
    latency: Latency,
    #[command(flatten)]
    overlay: OverlayFlags,
    /// How often a peer with two free slots looks for one more neighbour [default: 1m];
    /// a very long one (e.g. 1000h) shows the overlay as it was before this existed.
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    refresh_interval: Option<Duration>,
    /// Share of each Gatekeeper join answer picked at random among all live peers
    /// [default: 0.5]; 0 gives only the least loaded, as before this existed.
    #[arg(long, value_name = "F")]
    random_candidates: Option<f64>,
    /// failure: fractions of peers crashed at once, one run each ("" for none).
    #[arg(long, value_name = "F,..", default_value = "0.1,0.3,0.5", value_parser = fractions)]
    crash: Fractions,
    /// failure: how long to watch after the crash.
    #[arg(long, value_name = "D", default_value = "2m", value_parser = humantime::parse_duration)]
    watch: Duration,
    /// failure: datagram loss rates for the false-failure runs, one run each ("" for
    /// none).
    #[arg(long, value_name = "F,..", default_value = "0.05,0.1,0.2", value_parser = fractions)]
    losses: Fractions,
    /// failure: how long each loss run measures.
    #[arg(long, value_name = "D", default_value = "10m", value_parser = humantime::parse_duration)]
    loss_duration: Duration,
    /// churn: median session length.
    #[arg(long, value_name = "D", default_value = "30m", value_parser = humantime::parse_duration)]
    median_session: Duration,
    /// partition: how long the cut lasts.
    #[arg(long, value_name = "D", default_value = "60s", value_parser = humantime::parse_duration)]
    split_for: Duration,
    /// partition: share of the peers cut off from the rest (and the Gatekeeper).
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    far_side: f64,
    /// partition: cut only the far side's traffic to the rest, not the other way.
    #[arg(long)]
    one_way: bool,
    /// search: TTLs to measure, one batch of searches each.
    #[arg(long, value_name = "N,..", default_value = "1,2,3,4,5,6,7", value_parser = ttls)]
    ttls: Ttls,
    /// search: shares of the peers holding each searched file, one batch each.
    #[arg(long, value_name = "F,..", default_value = "0.001,0.01,0.1", value_parser = fractions)]
    held_by: Fractions,
    /// search: searches per TTL and share.
    #[arg(long, value_name = "N", default_value_t = 40)]
    queries: usize,
    /// churn: fraction of departures that leave gracefully (the rest crash).
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    graceful: f64,
    /// Threads to run on, 1 or 2 [default: 2 when the machine has two cores]. The report
    /// is the same either way.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// A comma-separated list of fractions in [0, 1); empty means none.
#[derive(Debug, Clone)]
struct Fractions(Vec<f64>);

fn fractions(text: &str) -> Result<Fractions, String> {
    let list = text
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| match f.parse::<f64>() {
            Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
            _ => Err(format!("{f:?} is not a fraction in [0, 1)")),
        })
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(Fractions(list))
}

/// A comma-separated list of TTLs, each 1..=7.
#[derive(Debug, Clone)]
struct Ttls(Vec<u8>);

fn ttls(text: &str) -> Result<Ttls, String> {
    let list = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<u8>() {
            Ok(n) if (1..=7).contains(&n) => Ok(n),
            _ => Err(format!("{t:?} is not a TTL from 1 to 7")),
        })
        .collect::<Result<Vec<u8>, String>>()?;
    if list.is_empty() {
        return Err("give at least one TTL".into());
    }
    Ok(Ttls(list))
}

/// Flags that change how a run is carried out or where it goes, never its result.
const NOT_IN_REPORT: [&str; 3] = ["--out", "--threads", "--quiet"];

/// The command line as typed after the program name; `for_report` leaves out the flags
/// that do not change the result, so the report does not depend on them.
fn command_line(for_report: bool) -> String {
    let mut words = vec!["highway".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let flag = arg.split('=').next().unwrap_or_default();
        if for_report && NOT_IN_REPORT.contains(&flag) {
            if !arg.contains('=') && flag != "--quiet" {
                args.next();
            }
            continue;
        }
        words.push(if arg.contains(' ') {
            format!("'{arg}'")
        } else {
            arg
        });
    }
    words.join(" ")
}

fn setup(args: &Args) -> anyhow::Result<Setup> {
    let mut setup = Setup::new(args.peers, args.seed);
    let core = &mut setup.params.core;
    args.overlay.apply(core);
    if let Some(d) = args.refresh_interval {
        core.refresh_interval = d;
    }
    core.validate().context("protocol settings")?;
    if let Some(share) = args.random_candidates {
        setup.params.gatekeeper.random_candidates = share;
    }
    (setup.params.gatekeeper.validate()).context("Gatekeeper settings")?;
    anyhow::ensure!((0.0..1.0).contains(&args.loss), "--loss must be in [0, 1)");
    setup.params.loss = args.loss;
    anyhow::ensure!(
        (0.0..1.0).contains(&args.nat),
        "--nat must be in [0, 1): some peers must be dialable for any to link"
    );
    setup.params.nat = args.nat;
    if let Some(n) = args.public_max_degree {
        let slots = setup.params.core.undialable_slots;
        anyhow::ensure!(
            n >= setup.params.core.max_degree && n + slots <= 16,
            "--public-max-degree must be between --max-degree ({}) and {} (a heartbeat lists 16 \
             neighbours, {slots} of them may be behind NATs: see --undialable-slots)",
            setup.params.core.max_degree,
            16usize.saturating_sub(slots)
        );
        setup.params.public_max_degree = Some(n);
    }
    setup.params.latency = match args.latency {
        Latency::Wan => LatencyModel::wan(),
        Latency::Lan => LatencyModel::lan(),
    };
    setup.join_window = args.join_window;
    setup.command = command_line(true);
    setup.progress = !args.quiet;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    setup.threads = args.threads.unwrap_or(cores.min(2));
    Ok(setup)
}

fn run_scenario(args: &Args, setup: Setup) -> anyhow::Result<(Report, Duration)> {
    Ok(match args.scenario {
        Scenario::Join => {
            let mut p = join::JoinParams::new(setup);
            if let Some(d) = args.duration {
                p.duration = d;
            }
            let simulated = p.duration;
            (join::run(&p).0, simulated)
        }
        Scenario::Failure => {
            let mut p = failure::FailureParams::new(setup);
            p.fractions = args.crash.0.clone();
            p.losses = args.losses.0.clone();
            p.after = args.watch;
            p.loss_duration = args.loss_duration;
            let before = p.setup.join_window + p.settle;
            let simulated = (before + p.after) * p.fractions.len() as u32
                + (before + p.loss_duration) * p.losses.len() as u32;
            (failure::run(&p).0, simulated)
        }
        Scenario::Partition => {
            anyhow::ensure!(
                args.far_side > 0.0 && args.far_side < 1.0,
                "--far-side must be between 0 and 1"
            );
            let mut p = partition::PartitionParams::new(setup);
            p.split_for = args.split_for;
            p.far_share = args.far_side;
            p.one_way = args.one_way;
            if let Some(d) = args.duration {
                p.after = d;
            }
            let simulated = p.setup.join_window + p.settle + p.split_for + p.after;
            (partition::run(&p).0, simulated)
        }
        Scenario::Churn => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&args.graceful),
                "--graceful must be in [0, 1]"
            );
            let mut p = churn::ChurnScenario::new(setup);
            p.median_session = args.median_session;
            p.graceful = args.graceful;
            if let Some(d) = args.duration {
                p.duration = d;
            }
            let simulated = p.setup.join_window + p.duration;
            (churn::run_with(&p, &mut SearchWorkload::new()).0, simulated)
        }
        Scenario::Search => {
            anyhow::ensure!(args.queries > 0, "--queries must be at least 1");
            anyhow::ensure!(
                !args.held_by.0.is_empty() && args.held_by.0.iter().all(|f| *f > 0.0),
                "--held-by needs shares above 0, e.g. 0.001,0.01,0.1"
            );
            let mut p = search::SearchParams::new(setup);
            p.ttls = args.ttls.0.clone();
            p.held_by = args.held_by.0.clone();
            p.queries = args.queries;
            let (report, outcome) = search::run(&p);
            (report, outcome.simulated)
        }
    })
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn write_timing(
    dir: &Path,
    args: &Args,
    wall: Duration,
    simulated: Duration,
) -> anyhow::Result<()> {
    let rss = peak_rss_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"));
    let text = format!(
        "command: {}\nscenario: {:?}\npeers: {}\nvirtual time simulated: {:.0} s\nwall time: {:.1} s\nspeed: {:.1}x real time\npeak resident memory: {rss}\n",
        command_line(false),
        args.scenario,
        args.peers,
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
    );
    std::fs::write(dir.join("timing.txt"), &text)?;
    eprint!("{text}");
    Ok(())
}

/// Runs a simulation (synchronously: it owns the process for its duration).
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.peers >= 2, "--peers must be at least 2");
    // Every simulated peer is honest, so checking that each id in each heartbeat is a
    // curve point (three quarters of the run time otherwise) can be skipped. This
    // process talks to no real peer.
    highway_wire::id::trust_ids_in_this_process();
    let setup = setup(&args)?;
    let started = Instant::now();
    let (report, simulated) = run_scenario(&args, setup)?;
    let wall = started.elapsed();
    report
        .write(&args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    write_timing(&args.out, &args, wall, simulated)?;
    println!(
        "report: {}",
        args.out.join(highway_sim::report::REPORT_FILE).display()
    );
    Ok(())
}
