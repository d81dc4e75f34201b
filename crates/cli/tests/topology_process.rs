//! The production topology of the Gatekeeper, for real on loopback: nginx
//! (`deploy/nginx/gatekeeper.conf`) load-balancing three `highway gatekeeper` processes
//! (configured only by the environment the Kubernetes ConfigMap sets) on a Redis primary
//! with its append-only file and one replica (`deploy/k8s/redis/*.conf`).
//!
//! Under a steady load of joins and statuses from typed clients through nginx:
//! 1. `kill -9` of one Gatekeeper: no client sees a failure (at most a retry);
//! 2. the Redis primary is killed: every write is answered with a clear 503
//!    `store_unavailable`, `/healthz` says so, the replica keeps serving the peer list;
//! 3. the primary restarts from its append-only file: the Gatekeepers recover by
//!    themselves, the load succeeds again, and no acknowledged registration is lost.
//!
//! Skipped (saying so) only when nginx is not installed; scripts/test installs it and sets
//! `HIGHWAY_REQUIRE_TOOLS=1`, which turns a missing nginx into a failure.

mod support;
#[path = "support/topology.rs"]
mod topology;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{ClientConfig, ClientError, GatekeeperClient};
use highway_wire::gatekeeper::ErrorCode;
use highway_wire::{NodeId, PeerAddr};
use support::wait_until;
use topology::{GatekeeperProcess, Nginx, Redis, configmap_env, tool_available};

/// Peers registered before the load starts.
const SEED_PEERS: u64 = 24;
/// Tasks sending statuses in a loop (each waits this long between two).
const STATUS_WORKERS: usize = 6;
const STATUS_PAUSE: Duration = Duration::from_millis(10);
/// One task joins new peers, pausing this long between two joins.
const JOIN_PAUSE: Duration = Duration::from_millis(40);
/// How long each phase of the load lasts.
const WARM_UP: Duration = Duration::from_secs(2);
const AFTER_KILL: Duration = Duration::from_secs(4);
const OUTAGE: Duration = Duration::from_secs(5);
const AFTER_RECOVERY: Duration = Duration::from_secs(3);

/// What one client call came to, after the client's own retries.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    /// 503 `store_unavailable`, with the Gatekeeper's message.
    StoreUnavailable(String),
    /// Anything else: never acceptable here.
    Other(String),
}

#[derive(Debug, Clone)]
struct Op {
    kind: &'static str,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

impl Op {
    fn latency(&self) -> Duration {
        self.ended - self.started
    }
}

struct Peer {
    client: GatekeeperClient,
    addr: PeerAddr,
    /// When its join was acknowledged.
    joined: Instant,
}

/// The load: peers whose join was acknowledged, and every call made.
struct Load {
    url: String,
    peers: Mutex<Vec<Arc<Peer>>>,
    ops: Mutex<Vec<Op>>,
    stop: AtomicBool,
    next_seed: AtomicU64,
    next_status: AtomicUsize,
}

fn client_config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(3),
        retries: 3,
        backoff: Duration::from_millis(100),
        ca_file: None,
        local_address: None,
    }
}

fn outcome<T>(result: &Result<T, ClientError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(ClientError::Api {
            status: 503,
            code: ErrorCode::StoreUnavailable,
            message,
        }) => Outcome::StoreUnavailable(message.clone()),
        Err(e) => Outcome::Other(e.to_string()),
    }
}

impl Load {
    fn new(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.to_string(),
            peers: Mutex::new(Vec::new()),
            ops: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_seed: AtomicU64::new(1),
            next_status: AtomicUsize::new(0),
        })
    }

    fn record(&self, kind: &'static str, started: Instant, outcome: Outcome) {
        let op = Op {
            kind,
            started,
            ended: Instant::now(),
            outcome,
        };
        self.ops.lock().unwrap().push(op);
    }

    /// Joins one new peer; true when the join was acknowledged.
    async fn join_one(&self) -> bool {
        let seed = self.next_seed.fetch_add(1, Ordering::Relaxed);
        let hash = blake3::hash(format!("topology-peer-{seed}").as_bytes());
        let key = SigningKey::from_bytes(hash.as_bytes());
        let client = GatekeeperClient::new(&self.url, key, client_config()).expect("client");
        let host = (seed % 250 + 1) as u8;
        let port = 20_000 + (seed % 20_000) as u16 * 2;
        let addr = PeerAddr::new([127, 0, 1, host].into(), port, port + 1);
        let started = Instant::now();
        let result = client.join(&[addr], 0, 5, 3).await;
        let ok = result.is_ok();
        self.record("join", started, outcome(&result));
        if ok {
            let peer = Peer {
                client,
                addr,
                joined: Instant::now(),
            };
            self.peers.lock().unwrap().push(Arc::new(peer));
        }
        ok
    }

    async fn status_one(&self) {
        let peer = {
            let peers = self.peers.lock().unwrap();
            let i = self.next_status.fetch_add(1, Ordering::Relaxed) % peers.len();
            peers[i].clone()
        };
        let started = Instant::now();
        let result = peer.client.status(&[peer.addr], 0, 5, &[]).await;
        self.record("status", started, outcome(&result));
    }

    fn acknowledged_before(&self, at: Instant) -> BTreeSet<NodeId> {
        let peers = self.peers.lock().unwrap();
        peers
            .iter()
            .filter(|p| p.joined < at)
            .map(|p| p.client.id())
            .collect()
    }

    fn ops_where(&self, keep: impl Fn(&Op) -> bool) -> Vec<Op> {
        self.ops
            .lock()
            .unwrap()
            .iter()
            .filter(|op| keep(op))
            .cloned()
            .collect()
    }
}

/// Every live peer, through `url` (a read: served by the Redis replica).
async fn listed(reader: &GatekeeperClient) -> Result<BTreeSet<NodeId>, ClientError> {
    Ok(reader
        .all_peers()
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect())
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(reply) => (
            reply.status().as_u16(),
            reply.text().await.unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn summary(ops: &[Op]) -> String {
    let failed = ops.iter().filter(|o| o.outcome != Outcome::Ok).count();
    let slowest = ops.iter().map(Op::latency).max().unwrap_or_default();
    format!("{} calls, {failed} failed, slowest {slowest:?}", ops.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gatekeepers_behind_nginx_survive_a_replica_kill_and_a_redis_primary_outage() {
    if !tool_available("nginx", &["-v"], "apt-get install nginx") {
        return;
    }
    let test_started = Instant::now();
    let mut primary = Redis::primary();
    let replica = Redis::replica_of(&primary);
    tokio::task::block_in_place(|| replica.wait_link_up(Duration::from_secs(10)));

    let logs = tempfile::tempdir().expect("log dir");
    let mut env = configmap_env();
    // Behind nginx every connection comes from nginx's address (docs/OPERATIONS.md).
    env.push((
        "HIGHWAY_GATEKEEPER_MAX_CONNECTIONS_PER_IP".into(),
        "4096".into(),
    ));
    env.push(("HIGHWAY_GATEKEEPER_REDIS".into(), primary.url()));
    env.push(("HIGHWAY_GATEKEEPER_REDIS_REPLICA".into(), replica.url()));
    // nginx forwards the client's address; every simulated peer comes from 127.0.0.1, one
    // network, and several hundred join here: lift the per-network limits.
    env.push((
        "HIGHWAY_GATEKEEPER_TRUSTED_PROXY".into(),
        "127.0.0.1".into(),
    ));
    env.push((
        "HIGHWAY_GATEKEEPER_MAX_PEERS_PER_PREFIX".into(),
        "100000".into(),
    ));
    env.push((
        "HIGHWAY_GATEKEEPER_MAX_JOINS_PER_PREFIX".into(),
        "100000".into(),
    ));
    let mut gatekeepers = Vec::new();
    for i in 0..3 {
        let log = logs.path().join(format!("gatekeeper-{i}.log"));
        gatekeepers.push(GatekeeperProcess::start(&env, log).await);
    }
    let ports: Vec<u16> = gatekeepers.iter().map(|g| g.port).collect();
    let nginx = Nginx::start(&ports);
    let reader = GatekeeperClient::new(
        &nginx.url,
        SigningKey::from_bytes(&[200; 32]),
        client_config(),
    )
    .expect("reader");

    let load = Load::new(&nginx.url);
    for _ in 0..SEED_PEERS {
        assert!(load.join_one().await, "seeding failed: {:?}", load.ops);
    }
    let mut workers = Vec::new();
    for _ in 0..STATUS_WORKERS {
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            while !load.stop.load(Ordering::Relaxed) {
                load.status_one().await;
                tokio::time::sleep(STATUS_PAUSE).await;
            }
        }));
    }
    let joiner = load.clone();
    workers.push(tokio::spawn(async move {
        while !joiner.stop.load(Ordering::Relaxed) {
            joiner.join_one().await;
            tokio::time::sleep(JOIN_PAUSE).await;
        }
    }));
    tokio::time::sleep(WARM_UP).await;
    // nginx spreads the load: every Gatekeeper, the one about to die included, has
    // answered statuses.
    for gk in &gatekeepers {
        let (_, text) = get(&format!("{}/metrics", gk.url)).await;
        let served = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "highway_gatekeeper_requests_total{endpoint=\"status\",code=\"200\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(served > 0.0, "gatekeeper {} got no status", gk.port);
    }

    // 1. kill -9 one Gatekeeper.
    let killed_at = Instant::now();
    gatekeepers[1].kill_hard();
    tokio::time::sleep(AFTER_KILL).await;

    // 2. The Redis primary crashes.
    let outage_started = Instant::now();
    tokio::task::block_in_place(|| primary.kill());
    let (live_a, live_b) = (&gatekeepers[0], &gatekeepers[2]);
    wait_until(
        Duration::from_secs(5),
        "/healthz through nginx reports the store unavailable",
        || async {
            let (status, body) = get(&format!("{}/healthz", nginx.url)).await;
            status == 503 && body.contains("\"store\":\"redis\"") && body.contains("unavailable")
        },
    )
    .await;
    // The peer list still comes, from the replica, with everyone acknowledged before.
    let before_outage = load.acknowledged_before(outage_started - Duration::from_millis(200));
    let during = listed(&reader)
        .await
        .expect("the peer list while the primary is down");
    let missing: Vec<_> = before_outage.difference(&during).collect();
    assert!(
        missing.is_empty(),
        "the replica's list lacks {} acknowledged peers",
        missing.len()
    );
    // A live replica stays alive (liveness) and says the store is down (metrics).
    assert_eq!(get(&format!("{}/livez", live_a.url)).await.0, 200);
    wait_until(Duration::from_secs(5), "store_up falls to 0", || async {
        let (_, text) = get(&format!("{}/metrics", live_b.url)).await;
        text.lines().any(|l| l == "highway_gatekeeper_store_up 0")
    })
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;

    // 3. The primary comes back from its append-only file; nobody touches the Gatekeepers.
    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| primary.restart());
    for gk in [live_a, live_b] {
        wait_until(
            Duration::from_secs(15),
            &format!("gatekeeper {} reaches Redis again", gk.port),
            || async { get(&format!("{}/healthz", gk.url)).await.0 == 200 },
        )
        .await;
    }
    let recovered_at = Instant::now();
    tokio::time::sleep(AFTER_RECOVERY).await;
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("load task");
    }

    // No acknowledged registration was lost (the replica catches up with the restarted
    // primary first).
    let acknowledged = load.acknowledged_before(Instant::now());
    let mut last = BTreeSet::new();
    let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(now) = listed(&reader).await {
                if acknowledged.is_subset(&now) {
                    return;
                }
                last = now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "{} of {} acknowledged registrations are gone",
        acknowledged.difference(&last).count(),
        acknowledged.len()
    );
    let replica_stats = replica.command("INFO commandstats").unwrap_or_default();
    assert!(
        replica_stats.contains("cmdstat_eval_ro:"),
        "the replica served no read:\n{replica_stats}"
    );

    // What the clients saw.
    let all = load.ops_where(|_| true);
    let odd: Vec<&Op> = all
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Other(_)))
        .collect();
    assert!(
        odd.is_empty(),
        "calls failed otherwise than with a clear 503 store_unavailable: {:?}",
        &odd[..odd.len().min(5)]
    );
    let before_outage = load.ops_where(|o| o.ended < outage_started);
    let after_kill = load.ops_where(|o| o.started >= killed_at && o.ended < outage_started);
    let failed: Vec<&Op> = before_outage
        .iter()
        .filter(|o| o.outcome != Outcome::Ok)
        .collect();
    assert!(
        failed.is_empty(),
        "calls failed before the Redis outage (the Gatekeeper kill must be invisible): {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        after_kill.len() >= 50,
        "too little load after the kill: {}",
        summary(&after_kill)
    );
    let outage = load.ops_where(|o| o.started >= outage_started && o.ended <= restarted_at);
    assert!(outage.len() >= 3, "too few calls in the outage: {outage:?}");
    for op in &outage {
        match &op.outcome {
            Outcome::StoreUnavailable(message) => assert!(
                message.contains("unavailable") && message.contains(&primary.port.to_string()),
                "the 503 should say which store is unavailable: {message}"
            ),
            other => panic!("a {} during the outage got {other:?}", op.kind),
        }
    }
    let after = load.ops_where(|o| o.started >= recovered_at);
    assert!(
        after.iter().all(|o| o.outcome == Outcome::Ok),
        "calls failed after the recovery: {}",
        summary(&after)
    );
    assert!(after.len() >= 50, "too little load after the recovery");

    let statuses = nginx.statuses();
    let bad_gateway = statuses.iter().filter(|s| **s == 502).count();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    eprintln!(
        "topology: {} requests through nginx ({bad_gateway} answered 502 and retried by the \
         client); before the outage {}; after the kill {}; outage {}; \
         Gatekeepers recovered {:.2}s after Redis restarted; after the recovery {}; \
         {} registrations kept; whole test {:.1}s",
        statuses.len(),
        summary(&before_outage),
        summary(&after_kill),
        summary(&outage),
        secs(restarted_at, recovered_at),
        summary(&after),
        acknowledged.len(),
        test_started.elapsed().as_secs_f64(),
    );
    drop(nginx);
    drop(gatekeepers);
}

/// Every `HIGHWAY_GATEKEEPER_*` setting of the Kubernetes ConfigMap is a variable the
/// binary reads (clap ignores unknown variables, so a typo would pass silently).
#[test]
fn configmap_settings_are_variables_the_gatekeeper_reads() {
    let help = std::process::Command::new(support::BIN)
        .args(["gatekeeper", "--help"])
        .output()
        .expect("run highway gatekeeper --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let env = configmap_env();
    assert!(
        env.len() >= 10,
        "too few settings in the ConfigMap: {env:?}"
    );
    for (key, _) in env.iter().filter(|(k, _)| k != "HIGHWAY_LOG") {
        assert!(
            help.contains(&format!("[env: {key}=")),
            "{key} (deploy/k8s/kustomization.yaml) is not a `highway gatekeeper` variable"
        );
    }
}
