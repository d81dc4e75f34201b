//! Operating the Gatekeeper on Redis: an outage and the recovery from it, reads from a
//! replica while the primary is down, and several Gatekeepers sharing one Redis. Every test
//! runs real `redis-server` processes on loopback.

mod support;

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{GatekeeperConfig, RedisStore};
use highway_wire::NodeId;
use highway_wire::gatekeeper::{Health, JoinResponse, LeaveResponse, ReportResponse};

use support::{
    Raw, RedisServer, Reply, assert_error, id_of, join_req, key, leave_req, redis_options,
    report_req, start_gatekeeper, status_req, steady_config, unique_prefix, wait_until,
};

/// Longest a request may take while the store is down (the store's op timeout is 2 s).
const OUTAGE_ANSWER_BOUND: Duration = Duration::from_secs(3);

/// A registered test peer: key, address host and lease token.
struct Registered {
    key: SigningKey,
    host: u8,
    token: String,
}

impl Registered {
    fn id(&self) -> NodeId {
        id_of(&self.key)
    }
}

async fn register(raw: &Raw, seed: u64, want: u16) -> (Registered, JoinResponse) {
    let key = key(seed);
    let host = u8::try_from(seed % 250 + 1).unwrap();
    let reply = raw
        .post_signed("/v1/join", &key, &join_req(&key, host, want))
        .await;
    reply.ok();
    let resp: JoinResponse = reply.decode();
    let token = resp.lease.token.clone();
    (Registered { key, host, token }, resp)
}

async fn lease_status(raw: &Raw, peer: &Registered) -> Reply {
    raw.post_bearer(
        "/v1/status",
        &peer.token,
        &status_req(&peer.key, peer.host, vec![]),
    )
    .await
}

/// Asserts a prompt 503 `store_unavailable` whose message names the unreachable Redis.
#[track_caller]
fn assert_unavailable(reply: &Reply, what: &str, port: u16) {
    assert!(
        reply.elapsed < OUTAGE_ANSWER_BOUND,
        "{what}: answered after {:?} while Redis was down",
        reply.elapsed
    );
    assert_error(reply, 503, "store_unavailable");
    let message = reply.body()["message"].as_str().unwrap();
    assert!(
        message.contains("unavailable") && message.contains(&port.to_string()),
        "{what}: the message should say the store at port {port} is unavailable: {message}"
    );
}

#[track_caller]
fn assert_health_unavailable(reply: &Reply) {
    assert!(
        reply.elapsed < OUTAGE_ANSWER_BOUND,
        "healthz took {:?}",
        reply.elapsed
    );
    assert_eq!(reply.status, 503, "{}", reply.text);
    let health: Health = reply.decode();
    assert_eq!(health.status, "unavailable");
    assert_eq!(health.store, "redis");
    assert!(
        health
            .error
            .as_deref()
            .is_some_and(|e| e.contains("unavailable")),
        "{health:?}"
    );
}

/// A report (peer 1 on peer 0), a leave (peer 2) and `/healthz` all get the outage answer.
async fn assert_report_leave_health_unavailable(raw: &Raw, peers: &[Registered], port: u16) {
    let report = report_req(&peers[1].key, peers[0].id());
    let reply = raw
        .post_bearer("/v1/report", &peers[1].token, &report)
        .await;
    assert_unavailable(&reply, "report", port);
    let reply = raw
        .post_bearer("/v1/leave", &peers[2].token, &leave_req(&peers[2].key))
        .await;
    assert_unavailable(&reply, "leave", port);
    assert_health_unavailable(&raw.get("/healthz").await);
}

fn sorted(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_and_recovers_without_losing_registrations() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    // Short timers, so the peers surely miss their deadlines during the outage.
    let config = GatekeeperConfig {
        status_interval: Duration::from_millis(200),
        missed_statuses: 3,
        sweep_interval: Duration::from_millis(50),
        ..GatekeeperConfig::test()
    };
    let expiry = config.expires_after();
    let gk = start_gatekeeper(redis.store(), config).await;
    let raw = gk.raw();

    let mut peers = Vec::new();
    for seed in 1..=5 {
        peers.push(register(&raw, seed, 0).await.0);
    }
    let registered_at = Instant::now();
    let expected = sorted(peers.iter().map(Registered::id).collect());
    assert_eq!(sorted(raw.peer_ids().await), expected);

    redis.stop();

    // Every kind of request is answered promptly with a clear 503, more than once.
    let newcomer = key(100);
    for round in 0..2 {
        let reply = raw
            .post_signed("/v1/join", &newcomer, &join_req(&newcomer, 100, 4))
            .await;
        assert_unavailable(&reply, &format!("join (round {round})"), port);
        let reply = lease_status(&raw, &peers[0]).await;
        assert_unavailable(&reply, "status", port);
        let reply = raw.get("/v1/peers").await;
        assert_unavailable(&reply, "GET /v1/peers", port);
        assert_report_leave_health_unavailable(&raw, &peers, port).await;
    }

    // Let every registration miss its deadline, then bring Redis back.
    let missed = registered_at + expiry + Duration::from_millis(200);
    tokio::time::sleep(missed.saturating_duration_since(Instant::now())).await;
    tokio::task::block_in_place(|| redis.restart());

    wait_until(Duration::from_secs(10), "/healthz is 200 again", || {
        let raw = raw.clone();
        async move { raw.get("/healthz").await.status == 200 }
    })
    .await;

    // The old lease tokens work; nobody has to join again.
    for peer in &peers {
        let reply = lease_status(&raw, peer).await;
        assert_eq!(
            reply.status, 200,
            "a status with the old lease after the outage: {}",
            reply.text
        );
    }
    assert_eq!(
        sorted(raw.peer_ids().await),
        expected,
        "registrations lost in the outage"
    );
    // The leave refused during the outage did not happen.
    assert!(raw.peer_ids().await.contains(&peers[2].id()));

    // Once the recovery window is over and purging resumes, they are all still there.
    let until = Instant::now() + expiry * 2;
    while Instant::now() < until {
        for peer in &peers {
            lease_status(&raw, peer).await.ok();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sorted(raw.peer_ids().await), expected);
    let (_, resp) = register(&raw, 100, 32).await;
    assert_eq!(
        sorted(resp.candidates.iter().map(|c| c.id).collect()),
        expected
    );
}

/// The first statuses after Redis comes back may arrive before anything else noticed the
/// recovery (the sweeper runs rarely here and /healthz is never asked): they are late
/// through no fault of the peer and must be accepted, not expire the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_status_right_after_recovery_is_accepted_before_the_sweeper_notices() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let config = GatekeeperConfig {
        sweep_interval: Duration::from_secs(600),
        ..GatekeeperConfig::test()
    };
    let expiry = config.expires_after();
    let gk = start_gatekeeper(redis.store(), config).await;
    let raw = gk.raw();
    let mut peers = Vec::new();
    for seed in 1..=3 {
        peers.push(register(&raw, seed, 0).await.0);
    }
    let registered_at = Instant::now();

    redis.stop();
    let reply = lease_status(&raw, &peers[0]).await;
    assert_unavailable(&reply, "status", port);
    let missed = registered_at + expiry + Duration::from_millis(200);
    tokio::time::sleep(missed.saturating_duration_since(Instant::now())).await;
    tokio::task::block_in_place(|| redis.restart());

    // The peer keeps trying; the first answer that is not a 503 must be a success.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let reply = lease_status(&raw, &peers[0]).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "Redis did not come back: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        first.status, 200,
        "the first status after the outage expired the entry: {}",
        first.text
    );
    for peer in &peers[1..] {
        let reply = lease_status(&raw, peer).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(
        sorted(raw.peer_ids().await),
        sorted(peers.iter().map(Registered::id).collect())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_serves_the_peer_list_while_the_primary_is_down() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(&primary);
    tokio::task::block_in_place(|| replica.wait_replica_link_up(Duration::from_secs(10)));
    let store = RedisStore::new(
        &primary.url(),
        Some(&replica.url()),
        redis_options(&unique_prefix()),
    )
    .unwrap();
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();

    let mut peers = Vec::new();
    for seed in 1..=4 {
        peers.push(register(&raw, seed, 8).await.0);
    }
    let expected = sorted(peers.iter().map(Registered::id).collect());
    wait_until(
        Duration::from_secs(5),
        "joins on the primary are listed via the replica",
        || {
            let raw = raw.clone();
            let expected = expected.clone();
            async move { sorted(raw.peer_ids().await) == expected }
        },
    )
    .await;
    // Reads went to the replica, not to the primary.
    let replica_stats = replica.command("INFO commandstats").unwrap_or_default();
    assert!(
        replica_stats.contains("cmdstat_eval_ro:"),
        "the replica ran no read script:\n{replica_stats}"
    );
    let primary_stats = primary.command("INFO commandstats").unwrap_or_default();
    assert!(
        !primary_stats.contains("cmdstat_eval_ro:"),
        "reads went to the primary although the replica is up:\n{primary_stats}"
    );

    primary.stop();
    let port = primary.port();

    for _ in 0..3 {
        let reply = raw.get("/v1/peers").await;
        assert!(
            reply.elapsed < OUTAGE_ANSWER_BOUND,
            "took {:?}",
            reply.elapsed
        );
        assert_eq!(
            reply.status, 200,
            "peer list with the primary down: {}",
            reply.text
        );
    }
    assert_eq!(sorted(raw.peer_ids().await), expected);

    let newcomer = key(100);
    let reply = raw
        .post_signed("/v1/join", &newcomer, &join_req(&newcomer, 100, 4))
        .await;
    assert_unavailable(&reply, "join", port);
    let reply = lease_status(&raw, &peers[0]).await;
    assert_unavailable(&reply, "status", port);
    let reply = raw
        .post_signed(
            "/v1/status",
            &peers[1].key,
            &status_req(&peers[1].key, peers[1].host, vec![]),
        )
        .await;
    assert_unavailable(&reply, "signed status", port);
    assert_report_leave_health_unavailable(&raw, &peers, port).await;

    // Still served, unchanged.
    assert_eq!(sorted(raw.peer_ids().await), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gatekeepers_on_one_redis_are_interchangeable() {
    let redis = RedisServer::start();
    let prefix = unique_prefix();
    // Separate store handles (separate connections), one key space.
    // One mutual neighbour's report suspects (the quorum is the conformance suite's).
    let config = GatekeeperConfig {
        report_quorum: 1,
        ..steady_config()
    };
    let gk_a = start_gatekeeper(redis.store_with_prefix(&prefix), config.clone()).await;
    let gk_b = start_gatekeeper(redis.store_with_prefix(&prefix), config).await;
    let gk_other = start_gatekeeper(redis.store(), steady_config()).await;
    let (a, b) = (gk_a.raw(), gk_b.raw());

    let join_p = join_req(&key(1), 1, 0);
    let join_p_bytes = serde_json::to_vec(&join_p).unwrap();
    let reply = a
        .post_signed_bytes("/v1/join", &key(1), join_p_bytes.clone())
        .await;
    reply.ok();
    let p = Registered {
        key: key(1),
        host: 1,
        token: reply.decode::<JoinResponse>().lease.token,
    };
    let (q, q_join) = register(&b, 2, 8).await;
    assert_eq!(
        q_join.candidates.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![p.id()],
        "B offers the peer that joined on A"
    );

    // A's lease token works on B.
    b.post_bearer(
        "/v1/status",
        &p.token,
        &status_req(&p.key, p.host, vec![q.id()]),
    )
    .await
    .ok();
    b.post_bearer(
        "/v1/status",
        &q.token,
        &status_req(&q.key, q.host, vec![p.id()]),
    )
    .await
    .ok();
    // A report on B is seen on A.
    let reply = b
        .post_bearer("/v1/report", &q.token, &report_req(&q.key, p.id()))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert!(reply.decode::<ReportResponse>().target_suspected);
    assert_eq!(sorted(a.peer_ids().await), sorted(vec![p.id(), q.id()]));
    let (_, r_join) = register(&a, 3, 8).await;
    assert_eq!(
        r_join.candidates.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![q.id()],
        "A offered a peer suspected through B"
    );
    // Another registry on the same Redis (another prefix) sees none of it.
    assert!(gk_other.raw().peer_ids().await.is_empty());

    // Leave on B with A's token; gone on A.
    let reply = b
        .post_bearer("/v1/leave", &p.token, &leave_req(&p.key))
        .await;
    reply.ok();
    assert!(reply.decode::<LeaveResponse>().removed);
    assert!(!a.peer_ids().await.contains(&p.id()));
    let reply = lease_status(&a, &p).await;
    assert_error(&reply, 404, "unknown_peer");
    // The tombstone is shared too: A refuses the captured join.
    let reply = a.post_signed_bytes("/v1/join", &key(1), join_p_bytes).await;
    assert_error(&reply, 409, "replayed");
}
