//! The Redis backend, for replicated deployments: any number of stateless Gatekeepers
//! share one Redis primary. Every mutation is one Lua script, so it is atomic and costs one
//! round trip; reads (candidates, the peer list, the live count) go to the replica when one
//! is configured, and fall back to the primary when the replica cannot be reached.
//!
//! Redis being unreachable is [`StoreError::Unavailable`], answered as 503; the connection
//! is re-established on its own, and nothing is lost that Redis itself kept (run it with
//! `appendonly yes`). Keys are built inside the scripts from a prefix, so this backend
//! expects a single Redis, not Redis Cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::candidates::{CandidateKey, MAX_PER_PREFIX, MAX_RANDOM_SCAN};
use super::{Auth, JoinOp, LeaveOp, Page, ReportOp, ReportOutcome, StatusOp, Store, StoreError};
use crate::config::MAX_REPORT_QUORUM;

const PRELUDE: &str = include_str!("lua/common.lua");
const CANDIDATES_LUA: &str = include_str!("lua/candidates.lua");
const PEERS_LUA: &str = include_str!("lua/peers.lua");
/// Most sorted-set members one read script looks at.
const MAX_SCAN: usize = 1024;

/// Connection settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every key, so one Redis can hold several registries.
    pub prefix: String,
    /// Upper bound on one store operation, connecting included.
    pub op_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "hw:".into(),
            op_timeout: Duration::from_secs(2),
        }
    }
}

/// One Redis server, connected lazily and re-connected after failures.
#[derive(Clone)]
struct Endpoint {
    client: Client,
    conn: Arc<Mutex<Option<ConnectionManager>>>,
    connect_gate: Arc<tokio::sync::Mutex<()>>,
    op_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.client.get_connection_info().addr())
            .finish()
    }
}

impl Endpoint {
    fn new(url: &str, op_timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL {url:?}: {e}")))?;
        Ok(Self {
            client,
            conn: Arc::new(Mutex::new(None)),
            connect_gate: Arc::new(tokio::sync::Mutex::new(())),
            op_timeout,
        })
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        // One connect attempt at a time; the others wait for its outcome.
        let _gate = self.connect_gate.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = self
            .client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| unavailable(&self.client, e))?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `f` with a connection, bounded by the operation timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.connection().await?;
            f(conn).await.map_err(|e| unavailable(&self.client, e))
        };
        match tokio::time::timeout(self.op_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis at {} did not answer within {:?}",
                self.client.get_connection_info().addr(),
                self.op_timeout
            ))),
        }
    }
}

fn unavailable(client: &Client, e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!(
        "Redis at {}: {e}",
        client.get_connection_info().addr()
    ))
}

struct Scripts {
    join: Script,
    status: Script,
    report: Script,
    leave: Script,
    purge: Script,
    candidates: Script,
    /// Full source of the read-only scripts, for `EVAL_RO` on a replica.
    candidates_src: String,
    peers_src: String,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude = |body: &str| format!("{PRELUDE}\n{body}");
        Self {
            join: Script::new(&with_prelude(include_str!("lua/join.lua"))),
            status: Script::new(&with_prelude(include_str!("lua/status.lua"))),
            report: Script::new(&with_prelude(include_str!("lua/report.lua"))),
            leave: Script::new(&with_prelude(include_str!("lua/leave.lua"))),
            purge: Script::new(&with_prelude(include_str!("lua/purge.lua"))),
            candidates: Script::new(&with_prelude(CANDIDATES_LUA)),
            candidates_src: with_prelude(CANDIDATES_LUA),
            peers_src: with_prelude(PEERS_LUA),
        }
    }
}

/// Registry in Redis: writes to the primary, reads from the replica when given.
#[derive(Clone)]
pub struct RedisStore {
    primary: Endpoint,
    replica: Option<Endpoint>,
    prefix: String,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("primary", &self.primary)
            .field("replica", &self.replica)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn auth_args(auth: Auth) -> (&'static str, String) {
    match auth {
        Auth::Signed { ts_ms } => ("sig", ts_ms.to_string()),
        Auth::Lease { token_hash } => ("lease", hex::encode(token_hash)),
    }
}

/// The peer's score in the candidate index, or "" for a peer that must never be offered
/// (unreachable): the scripts then leave it out of the index.
fn cand_score(info: &PeerInfo, key: CandidateKey) -> String {
    if info.reachable {
        key.0.to_string()
    } else {
        String::new()
    }
}

fn info_json(info: &PeerInfo) -> Result<String, StoreError> {
    serde_json::to_string(info).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn addrs_json(info: &PeerInfo) -> Result<String, StoreError> {
    serde_json::to_string(&info.addrs).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_info(json: &str) -> Result<PeerInfo, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("peer entry in Redis is not valid: {e}")))
}

/// Maps a script's answer word to the store's outcome.
fn outcome(word: &str) -> Result<(), StoreError> {
    match word {
        "ok" | "suspected" | "recorded" | "gone" => Ok(()),
        "replayed" => Err(StoreError::Replayed),
        "bad_lease" => Err(StoreError::BadLease),
        "lease_expired" => Err(StoreError::LeaseExpired),
        "unknown_peer" => Err(StoreError::UnknownPeer),
        "expired" => Err(StoreError::Expired),
        "not_a_neighbour" => Err(StoreError::NotANeighbour),
        "address_unsigned" => Err(StoreError::AddressChangeUnsigned),
        "rate_limited" => Err(StoreError::ReportRateLimited),
        "join_rate" => Err(StoreError::JoinRateLimited),
        "too_many_peers" => Err(StoreError::TooManyPeers),
        other => Err(StoreError::Corrupt(format!(
            "unexpected script answer {other:?}"
        ))),
    }
}

/// Members of sorted set `key` scored above `min`.
async fn count_after(endpoint: &Endpoint, key: &str, min: u64) -> Result<u64, StoreError> {
    let min = format!("({min}");
    endpoint
        .run(|mut conn| async move {
            redis::cmd("ZCOUNT")
                .arg(key)
                .arg(&min)
                .arg("+inf")
                .query_async(&mut conn)
                .await
        })
        .await
}

fn ttl_ms(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).max(1)
}

impl RedisStore {
    /// Connects lazily: a Gatekeeper may start before Redis is up and answers 503 until it is.
    pub fn new(
        primary_url: &str,
        replica_url: Option<&str>,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            primary: Endpoint::new(primary_url, options.op_timeout)?,
            replica: replica_url
                .map(|url| Endpoint::new(url, options.op_timeout))
                .transpose()?,
            prefix: options.prefix,
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// Runs a read-only script on the replica, or on the primary when there is no replica
    /// or it cannot be reached.
    async fn read_script(&self, src: &str, args: Vec<String>) -> Result<Vec<String>, StoreError> {
        if let Some(replica) = &self.replica {
            let result = replica
                .run(|mut conn| {
                    let mut cmd = redis::cmd("EVAL_RO");
                    cmd.arg(src).arg(0).arg(&args);
                    async move { cmd.query_async(&mut conn).await }
                })
                .await;
            match result {
                Ok(rows) => return Ok(rows),
                Err(e) => tracing::warn!(error = %e, "replica read failed; reading the primary"),
            }
        }
        self.primary
            .run(|mut conn| {
                let mut cmd = redis::cmd("EVAL_RO");
                cmd.arg(src).arg(0).arg(&args);
                async move { cmd.query_async(&mut conn).await }
            })
            .await
    }

    async fn write_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        args: Vec<String>,
    ) -> Result<T, StoreError> {
        self.primary
            .run(|mut conn| {
                let mut invocation = script.prepare_invoke();
                for arg in &args {
                    invocation.arg(arg);
                }
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await
    }

    /// Deletes every key under this store's prefix (tests and benchmarks only).
    pub async fn flush_prefix(&self) -> Result<(), StoreError> {
        let pattern = format!("{}*", self.prefix);
        self.primary
            .run(|mut conn| async move {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await?;
                for chunk in keys.chunks(1000) {
                    redis::cmd("DEL")
                        .arg(chunk)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                Ok(())
            })
            .await
    }
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn join(&self, op: JoinOp) -> Result<Vec<PeerInfo>, StoreError> {
        let id = op.info.id.to_string();
        let key = CandidateKey::new(op.info.neighbours, op.info.capacity, op.tiebreak);
        let limits = op.limits;
        let word: String = self
            .write_script(
                &self.scripts.join,
                vec![
                    self.prefix.clone(),
                    id.clone(),
                    info_json(&op.info)?,
                    op.signed_ts_ms.to_string(),
                    hex::encode(op.lease.token_hash),
                    op.lease.expires_ms.to_string(),
                    op.deadline_ms.to_string(),
                    cand_score(&op.info, key),
                    op.prefix.clone(),
                    addrs_json(&op.info)?,
                    op.now_ms.to_string(),
                    limits.map(|l| l.max_live.to_string()).unwrap_or_default(),
                    limits.map(|l| l.max_joins.to_string()).unwrap_or_default(),
                    limits
                        .map(|l| l.window_ms.max(1).to_string())
                        .unwrap_or_default(),
                ],
            )
            .await?;
        outcome(&word)?;
        let mut args = vec![
            self.prefix.clone(),
            id,
            op.want.to_string(),
            op.now_ms.to_string(),
            op.scan_start.to_string(),
            MAX_SCAN.to_string(),
            MAX_RANDOM_SCAN.to_string(),
            MAX_PER_PREFIX.to_string(),
        ];
        args.extend(op.random_points.iter().take(op.want).map(hex::encode));
        let rows = match &self.replica {
            Some(_) => self.read_script(&self.scripts.candidates_src, args).await?,
            None => self.write_script(&self.scripts.candidates, args).await?,
        };
        rows.iter().map(|row| parse_info(row)).collect()
    }

    async fn status(&self, op: StatusOp) -> Result<(), StoreError> {
        let (kind, val) = auth_args(op.auth);
        let key = CandidateKey::new(op.info.neighbours, op.info.capacity, op.tiebreak);
        let nbrs: Vec<String> = op.neighbour_ids.iter().map(NodeId::to_string).collect();
        let (lease_hash, lease_exp) = match op.new_lease {
            Some(l) => (hex::encode(l.token_hash), l.expires_ms.to_string()),
            None => (String::new(), String::new()),
        };
        let word: String = self
            .write_script(
                &self.scripts.status,
                vec![
                    self.prefix.clone(),
                    op.info.id.to_string(),
                    kind.into(),
                    val,
                    op.now_ms.to_string(),
                    info_json(&op.info)?,
                    nbrs.join(" "),
                    op.deadline_ms.to_string(),
                    cand_score(&op.info, key),
                    lease_hash,
                    lease_exp,
                    if op.accept_late { "1" } else { "0" }.into(),
                    ttl_ms(op.tombstone_ms, op.now_ms).to_string(),
                    op.ts_ms.to_string(),
                    addrs_json(&op.info)?,
                ],
            )
            .await?;
        outcome(&word)
    }

    async fn report(&self, op: ReportOp) -> Result<ReportOutcome, StoreError> {
        let (kind, val) = auth_args(op.auth);
        let (word, reporters): (String, u32) = self
            .write_script(
                &self.scripts.report,
                vec![
                    self.prefix.clone(),
                    op.reporter.to_string(),
                    kind.into(),
                    val,
                    op.now_ms.to_string(),
                    op.target.to_string(),
                    op.suspect_deadline_ms.to_string(),
                    op.quorum.to_string(),
                    op.window_ms.to_string(),
                    op.interval_ms.to_string(),
                    op.max_per_interval.to_string(),
                    MAX_REPORT_QUORUM.to_string(),
                ],
            )
            .await?;
        outcome(&word)?;
        Ok(ReportOutcome {
            suspected: word == "suspected",
            reporters,
        })
    }

    async fn leave(&self, op: LeaveOp) -> Result<bool, StoreError> {
        let (kind, val) = auth_args(op.auth);
        let word: String = self
            .write_script(
                &self.scripts.leave,
                vec![
                    self.prefix.clone(),
                    op.id.to_string(),
                    kind.into(),
                    val,
                    op.now_ms.to_string(),
                    ttl_ms(op.tombstone_ms, op.now_ms).to_string(),
                ],
            )
            .await?;
        outcome(&word)?;
        Ok(word == "ok")
    }

    async fn peers(
        &self,
        after: Option<NodeId>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Page, StoreError> {
        let args = vec![
            self.prefix.clone(),
            after.map(|id| id.to_string()).unwrap_or_default(),
            limit.to_string(),
            now_ms.to_string(),
            (limit * 2 + 16).min(MAX_SCAN * 4).to_string(),
        ];
        let rows = self.read_script(&self.scripts.peers_src, args).await?;
        let Some((cursor, infos)) = rows.split_first() else {
            return Err(StoreError::Corrupt(
                "empty answer from the peers script".into(),
            ));
        };
        let peers = infos
            .iter()
            .map(|row| parse_info(row))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if cursor.is_empty() {
            None
        } else {
            Some(
                cursor
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("bad cursor: {e}")))?,
            )
        };
        Ok(Page { peers, next })
    }

    async fn purge_expired(
        &self,
        now_ms: u64,
        limit: usize,
        tombstone_ms: u64,
    ) -> Result<usize, StoreError> {
        let n: usize = self
            .write_script(
                &self.scripts.purge,
                vec![
                    self.prefix.clone(),
                    now_ms.to_string(),
                    limit.to_string(),
                    ttl_ms(tombstone_ms, now_ms).to_string(),
                ],
            )
            .await?;
        Ok(n)
    }

    async fn live_count(&self, now_ms: u64) -> Result<u64, StoreError> {
        let key = format!("{}deadline", self.prefix);
        if let Some(replica) = &self.replica
            && let Ok(n) = count_after(replica, &key, now_ms).await
        {
            return Ok(n);
        }
        count_after(&self.primary, &key, now_ms).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.primary
            .run(|mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
            .await
    }
}
