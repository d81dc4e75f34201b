//! `highway bench gatekeeper`: status updates per second and join latency with N peers
//! registered, against a Gatekeeper this command starts (embedded store or Redis) or one
//! already running (`--target`). The load is generated in this process, on this machine.
//!
//! Phases:
//! 1. seed: N signed joins, each peer with its own ed25519 key;
//! 2. joins: `--joins` more signed joins (new keys) at `--concurrency`, then again one at
//!    a time (the cleaner latency figure);
//! 3. statuses: for `--duration`, statuses of the seeded peers, round-robin, with their
//!    lease tokens; then a shorter run of signed statuses, to show what signature
//!    verification costs.
//!
//! Requests of phases 2 and 3 are built (and signed) before the phase starts, except
//! lease statuses, which only need their timestamp and are built in the loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use highway_gatekeeper::server::now_ms;

use super::cpu::{self, Probes};
use super::load::{self, Http, JOIN_PATH, Joined, Peer, Prepared, STATUS_PATH};
use super::report::{LeaseVsSigned, Phase, Report};
use super::server::{self, Backend, Server};

/// How many signed statuses the signature run sends (spread over the seeded peers).
const SIGNED_STATUSES: usize = 50_000;
/// Pre-signed requests must arrive within the Gatekeeper's clock-skew window (30s by
/// default), so a phase of them never runs longer than this.
const PRESIGNED_LIMIT: Duration = Duration::from_secs(20);
/// Upper bound on the seeding phase.
const SEED_LIMIT: Duration = Duration::from_secs(600);
/// Upper bound on requests per second any phase is sized for (bounds every loop's count).
const MAX_RATE: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Embedded,
    Redis,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Benchmark a Gatekeeper already running at this URL (http://HOST:PORT) instead of
    /// starting one. Its peers must not expire during the run: give it a status interval
    /// of minutes.
    #[arg(long, value_name = "URL", conflicts_with_all = ["store", "redis"])]
    target: Option<String>,
    /// Store of the Gatekeeper the bench starts.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// Redis for --store redis [default: redis://127.0.0.1:6379]. The run uses its own
    /// key prefix and deletes its keys afterwards.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Peers registered before measuring.
    #[arg(long, value_name = "N")]
    peers: usize,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, value_name = "C", default_value_t = 32)]
    concurrency: usize,
    /// Length of the lease-token status run (the signed run is shorter).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Joins measured at --concurrency, and again one at a time.
    #[arg(long, value_name = "COUNT", default_value_t = 2000)]
    joins: usize,
    /// Print a JSON summary instead of the table.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if !(1..=10_000_000).contains(&self.peers) {
            anyhow::bail!("--peers must be between 1 and 10000000");
        }
        if !(1..=1024).contains(&self.concurrency) {
            anyhow::bail!("--concurrency must be between 1 and 1024");
        }
        if !(1..=1_000_000).contains(&self.joins) {
            anyhow::bail!("--joins must be between 1 and 1000000");
        }
        if self.duration < Duration::from_secs(1) || self.duration > Duration::from_secs(3600) {
            anyhow::bail!("--duration must be between 1s and 1h");
        }
        if self.redis.is_some() && self.store != StoreKind::Redis {
            anyhow::bail!("--redis needs --store redis");
        }
        Ok(())
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    args.check()?;
    let backend = match (&args.target, args.store) {
        (Some(_), _) => None,
        (None, StoreKind::Embedded) => Some(Backend::Embedded),
        (None, StoreKind::Redis) => Some(Backend::Redis {
            url: args
                .redis
                .clone()
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            prefix: format!(
                "hwbench:{}:{:08x}:",
                std::process::id(),
                rand::random::<u32>()
            ),
        }),
    };
    let server = match &backend {
        Some(backend) => {
            progress(&args, "starting the Gatekeeper");
            Some(Server::start(backend).await?)
        }
        None => None,
    };
    let base = match (&server, &args.target) {
        (Some(s), _) => s.base().to_string(),
        (None, Some(url)) => url.clone(),
        (None, None) => unreachable!("either --target or a started server"),
    };
    let probes = Probes {
        server_pid: server.as_ref().map(Server::pid),
        redis_addr: match &backend {
            Some(Backend::Redis { url, .. }) => cpu::redis_host_port(url),
            _ => None,
        },
    };
    let result = tokio::select! {
        r = measure(&args, &base, server.is_some(), &probes) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(server) = server {
        server.stop().await;
    }
    if let Some(Backend::Redis { url, prefix }) = &backend
        && let Err(e) = server::flush_redis(url, prefix).await
    {
        eprintln!("warning: cannot delete this run's Redis keys ({prefix}*): {e:#}");
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn progress(args: &Args, what: &str) {
    if !args.json {
        eprintln!("bench: {what}");
    }
}

/// Peers `range`, derived on every core (key derivation is a scalar multiplication).
async fn derive_peers(salt: [u8; 24], range: std::ops::Range<usize>) -> anyhow::Result<Vec<Peer>> {
    tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = range.len().div_ceil(threads).max(1);
        let starts: Vec<usize> = range.clone().step_by(chunk).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = starts
                .iter()
                .map(|&start| {
                    let end = (start + chunk).min(range.end);
                    scope.spawn(move || {
                        (start..end)
                            .map(|i| Peer::derive(&salt, i as u64))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("key derivation does not panic"))
                .collect()
        })
    })
    .await
    .context("key derivation failed")
}

/// Runs `count` pre-built requests to `path` and summarises them.
async fn run_prepared(
    name: &str,
    http: &Http,
    probes: &Probes,
    path: &'static str,
    requests: Vec<Prepared>,
    concurrency: usize,
) -> Phase {
    let count = requests.len();
    let requests = Arc::new(requests);
    let http = http.clone();
    let before = probes.snapshot().await;
    let mut out = load::run_phase(concurrency, count, PRESIGNED_LIMIT, move |i| {
        let (http, requests) = (http.clone(), requests.clone());
        async move { http.post(path, &requests[i]).await.map(|_| ()) }
    })
    .await;
    let usage = before.usage_until(&probes.snapshot().await, out.latencies_ns.len());
    Phase::from_outcome(name, concurrency, &mut out, usage)
}

async fn measure(
    args: &Args,
    base: &str,
    started_by_bench: bool,
    probes: &Probes,
) -> anyhow::Result<Report> {
    let n = args.peers;
    let conc = args.concurrency;
    let http = Http::new(base, conc)?;
    let health = http
        .health()
        .await
        .map_err(|e| anyhow::anyhow!("the Gatekeeper at {base} is not answering: {e}"))?;
    if health.status != "ok" {
        anyhow::bail!(
            "the Gatekeeper at {base} is {}: {}",
            health.status,
            health.error.unwrap_or_default()
        );
    }
    let salt: [u8; 24] = rand::random();
    let mut phases = Vec::new();

    // Phase 1: register N peers.
    progress(args, &format!("deriving {n} peer keys"));
    let peers = Arc::new(derive_peers(salt, 0..n).await?);
    progress(args, &format!("seeding {n} peers (concurrency {conc})"));
    let before = probes.snapshot().await;
    let mut seed = {
        let (http, peers) = (http.clone(), peers.clone());
        load::run_phase(conc, n, SEED_LIMIT, move |i| {
            let (http, peers) = (http.clone(), peers.clone());
            async move {
                let ts = now_ms();
                let body = http.post(JOIN_PATH, &peers[i].join(ts)).await?;
                load::joined(&body, ts)
            }
        })
        .await
    };
    let usage = before.usage_until(&probes.snapshot().await, seed.latencies_ns.len());
    phases.push(Phase::from_outcome(
        "seed: signed join",
        conc,
        &mut seed,
        usage,
    ));
    if seed.results.len() != n {
        anyhow::bail!(
            "only {} of {n} peers could join ({} errors); first error: {}",
            seed.results.len(),
            seed.errors,
            seed.first_error.as_deref().unwrap_or("none (time limit)")
        );
    }
    let mut joined: Vec<Option<Joined>> = vec![None; n];
    for (i, j) in std::mem::take(&mut seed.results) {
        joined[i] = Some(j);
    }
    let joined: Arc<Vec<Joined>> = Arc::new(joined.into_iter().flatten().collect());

    // Phase 2: join latency with N registered, at C and one at a time.
    for (name, c, offset) in [
        ("join: signed, N registered", conc, n),
        ("join: signed, one at a time", 1, n + args.joins),
    ] {
        progress(args, &format!("{} joins at concurrency {c}", args.joins));
        let fresh = derive_peers(salt, offset..offset + args.joins).await?;
        let ts = now_ms();
        let requests: Vec<Prepared> = fresh.iter().map(|p| p.join(ts)).collect();
        phases.push(run_prepared(name, &http, probes, JOIN_PATH, requests, c).await);
    }

    // Phase 3a: lease-token statuses, round-robin over the seeded peers, for --duration.
    progress(
        args,
        &format!("lease-token statuses for {:?}", args.duration),
    );
    let before = probes.snapshot().await;
    let cap = usize::try_from(args.duration.as_secs().max(1))
        .unwrap_or(usize::MAX)
        .saturating_mul(MAX_RATE);
    let mut lease = {
        let (http, peers, joined) = (http.clone(), peers.clone(), joined.clone());
        load::run_phase(conc, cap, args.duration, move |i| {
            let (http, peers, joined) = (http.clone(), peers.clone(), joined.clone());
            async move {
                let p = i % peers.len();
                let req = peers[p].lease_status(&joined[p].bearer, joined[p].next_status_ts());
                http.post(STATUS_PATH, &req).await.map(|_| ())
            }
        })
        .await
    };
    let usage = before.usage_until(&probes.snapshot().await, lease.latencies_ns.len());
    phases.push(Phase::from_outcome(
        "status: lease token",
        conc,
        &mut lease,
        usage,
    ));

    // Phase 3b: signed statuses (each also renews the lease, so this comes last).
    let used = n.min(SIGNED_STATUSES);
    let rounds = if n > 2 * conc {
        SIGNED_STATUSES.div_ceil(used)
    } else {
        1
    };
    progress(args, &format!("signing {} statuses", used * rounds));
    let (requests, sign_time) = {
        let (peers, joined) = (peers.clone(), joined.clone());
        tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let now = now_ms();
            let mut out = Vec::with_capacity(used * rounds);
            for r in 0..rounds as u64 {
                for p in 0..used {
                    // Newer than the join and than every lease status sent before.
                    let last_status = joined[p].last_status_ts.load(Ordering::Relaxed);
                    let ts = now.max(joined[p].ts_ms + 1).max(last_status + 1) + r;
                    out.push(peers[p].signed_status(ts));
                }
            }
            (out, start.elapsed())
        })
        .await
        .context("signing failed")?
    };
    let signed_count = requests.len();
    progress(args, &format!("{signed_count} signed statuses"));
    let signed = run_prepared("status: signed", &http, probes, STATUS_PATH, requests, conc).await;
    let lease_phase = phases.last().expect("the lease phase was pushed");
    let lease_vs_signed = (signed.per_second > 0.0).then(|| LeaseVsSigned {
        throughput_ratio: lease_phase.per_second / signed.per_second,
        server_cpu_ratio: match (signed.server_us_per_op(), lease_phase.server_us_per_op()) {
            (Some(s), Some(l)) if l > 0.0 => Some(s / l),
            _ => None,
        },
        client_sign_us: sign_time.as_secs_f64() * 1e6 / signed_count.max(1) as f64,
    });
    phases.push(signed);

    Ok(Report {
        command: command_line(),
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        gatekeeper: base.to_string(),
        store: health.store,
        started_by_bench,
        peers: n,
        concurrency: conc,
        phases,
        lease_vs_signed,
    })
}

/// This process's command line, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
