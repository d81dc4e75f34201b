//! Shared helpers of the Gatekeeper integration tests: a real `redis-server` on loopback,
//! a Gatekeeper served on an ephemeral port, keys, addresses and a raw HTTP client for
//! hand-crafted (bad) requests.
//!
//! Every wait here is bounded; nothing is mocked.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use highway_gatekeeper::{
    App, ClientConfig, GatekeeperClient, GatekeeperConfig, RedisOptions, RedisStore, Store,
};
use highway_wire::gatekeeper::{
    API_VERSION, ErrorBody, JoinRequest, LeaveRequest, ReportRequest, SIGNATURE_HEADER,
    StatusRequest, signing_message,
};
use highway_wire::{NodeId, PeerAddr};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use highway_gatekeeper::server::now_ms;

/// How long a Redis server may take to answer its first PING.
const REDIS_START_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts at finding a free port for a new Redis server (another process may grab the
/// port between our probe and Redis binding it).
const REDIS_START_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// A `redis-server` child process on 127.0.0.1, with its own data directory, killed (by its
/// own pid) when dropped. It can be stopped and restarted on the same port and directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    replica_of: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// A primary with `appendonly yes` and `appendfsync always`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A replica of `primary` (`--replicaof 127.0.0.1 PRIMARYPORT`).
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        Self::start_with(Some(primary.port))
    }

    fn start_with(replica_of: Option<u16>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("highway-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let mut server = Self {
            port: 0,
            replica_of,
            dir,
            child: None,
        };
        let mut failures = Vec::new();
        for _ in 0..REDIS_START_ATTEMPTS {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "redis-server did not start after {REDIS_START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the redis log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the redis log handle: {e}"))?;
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("always")
            .arg("--dir")
            .arg(self.dir.path())
            // A replica's first sync starts at once instead of after the default 5 s.
            .arg("--repl-diskless-sync-delay")
            .arg("0");
        if let Some(primary) = self.replica_of {
            cmd.arg("--replicaof")
                .arg("127.0.0.1")
                .arg(primary.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (or not on PATH): the Redis-backed Gatekeeper \
                 tests run a real one on loopback and are never skipped. Install it with \
                 `apt-get install redis-server`, or run ./scripts/test, which installs it."
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}; its log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if self.ping() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {REDIS_START_DEADLINE:?}; \
                     its log:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the server answers `PING` with `+PONG` (not `-LOADING`).
    pub fn ping(&self) -> bool {
        self.command("PING")
            .is_some_and(|reply| reply.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the raw reply (a simple line, or a bulk
    /// string's content), or None when the server cannot be reached.
    pub fn command(&self, command: &str) -> Option<String> {
        let timeout = Duration::from_millis(500);
        let addr = (Ipv4Addr::LOCALHOST, self.port).into();
        let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.set_write_timeout(Some(timeout)).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            let Some(line_end) = text.find("\r\n") else {
                continue;
            };
            if let Some(len) = text.strip_prefix('$') {
                let len: usize = len[..line_end - 1].parse().ok()?;
                let body_start = line_end + 2;
                if buf.len() >= body_start + len {
                    return Some(
                        String::from_utf8_lossy(&buf[body_start..body_start + len]).into(),
                    );
                }
                continue;
            }
            return Some(text[..line_end].to_string());
        }
    }

    /// Waits until this replica reports `master_link_status:up`.
    pub fn wait_replica_link_up(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let info = self.command("INFO replication").unwrap_or_default();
            if info.contains("master_link_status:up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica on port {} did not sync with its primary within {within:?}:\n{info}\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals this child's own pid (SIGKILL), nothing else.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (SIGKILL, like a crash); data written with `appendfsync always` stays
    /// on disk for [`RedisServer::restart`].
    pub fn stop(&mut self) {
        assert!(self.child.is_some(), "redis-server is not running");
        self.kill();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port and data directory. Retries for a while in
    /// case the port is briefly taken.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        let deadline = Instant::now() + REDIS_START_DEADLINE;
        let mut failures = Vec::new();
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) => failures.push(e),
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}:\n{}",
                self.port,
                failures.join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A store on this server under a prefix no other test uses.
    pub fn store(&self) -> RedisStore {
        self.store_with_prefix(&unique_prefix())
    }

    pub fn store_with_prefix(&self, prefix: &str) -> RedisStore {
        RedisStore::new(&self.url(), None, redis_options(prefix)).expect("RedisStore::new")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The options every Redis-backed test uses: its own prefix, the default 2 s op timeout.
pub fn redis_options(prefix: &str) -> RedisOptions {
    RedisOptions {
        prefix: prefix.to_string(),
        op_timeout: Duration::from_secs(2),
    }
}

/// A key prefix unique within this test process (and across processes, via the pid).
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "hwtest:{}:{}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------
// Gatekeeper server
// ---------------------------------------------------------------------------------------

/// A Gatekeeper serving on 127.0.0.1 (ephemeral port) in a tokio task; shut down on drop.
#[derive(Debug)]
pub struct Gatekeeper<S: Store> {
    pub url: String,
    pub app: Arc<App<S>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Starts a Gatekeeper over `store` with `config`, via `highway_gatekeeper::run`.
pub async fn start_gatekeeper<S: Store>(store: S, config: GatekeeperConfig) -> Gatekeeper<S> {
    config.validate().expect("valid test config");
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the gatekeeper on 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let app = App::new(store, config);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(highway_gatekeeper::run(listener, app.clone(), async move {
        let _ = rx.await;
    }));
    Gatekeeper {
        url,
        app,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl<S: Store> Gatekeeper<S> {
    /// A typed client for `key` that does not retry, so every refusal surfaces.
    pub fn client(&self, key: &SigningKey) -> GatekeeperClient {
        GatekeeperClient::new(&self.url, key.clone(), client_config()).expect("client")
    }

    pub fn raw(&self) -> Raw {
        Raw::new(&self.url)
    }

    /// Stops serving and waits (bounded) for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("gatekeeper ended with an error: {e}"),
                Ok(Err(e)) => panic!("gatekeeper task failed: {e}"),
                Err(_) => panic!("gatekeeper did not shut down within 5 s"),
            }
        }
    }
}

impl<S: Store> Drop for Gatekeeper<S> {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Client settings of the tests: generous timeout, no retries.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        retries: 0,
        backoff: Duration::from_millis(50),
        ca_file: None,
        local_address: None,
    }
}

/// Long timers (nothing expires during a test) and a fast sweep.
pub fn steady_config() -> GatekeeperConfig {
    GatekeeperConfig {
        sweep_interval: Duration::from_millis(50),
        ..GatekeeperConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Keys and addresses
// ---------------------------------------------------------------------------------------

/// A signing key derived from `seed` (distinct seeds give distinct keys).
pub fn key(seed: u64) -> SigningKey {
    let hash = blake3::hash(format!("highway-gatekeeper-test-key-{seed}").as_bytes());
    SigningKey::from_bytes(hash.as_bytes())
}

pub fn id_of(key: &SigningKey) -> NodeId {
    NodeId::from_key(&key.verifying_key())
}

/// The id of [`key`]`(seed)`.
pub fn id(seed: u64) -> NodeId {
    id_of(&key(seed))
}

/// A signed-request timestamp: the current time, but always newer than any this process
/// handed out before, so two signed requests in the same millisecond are still distinct.
pub fn fresh_ts() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

/// A peer address on 127.0.0.`host` with ports derived from `host`.
pub fn addr(host: u8) -> PeerAddr {
    let port = 20_000 + u16::from(host) * 2;
    PeerAddr::new(Ipv4Addr::new(127, 0, 0, host).into(), port, port + 1)
}

/// One address on 127.0.0.`host`, as the API wants a list.
pub fn addrs(host: u8) -> Vec<PeerAddr> {
    vec![addr(host)]
}

/// Hex ed25519 signature of `body` sent to `path`, as the API expects it.
pub fn sign(key: &SigningKey, path: &str, body: &[u8]) -> String {
    hex::encode(key.sign(&signing_message(path, body)).to_bytes())
}

// ---------------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------------

/// One HTTP answer: status, raw text, and the JSON body when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: Option<Value>,
    pub content_type: String,
    pub elapsed: Duration,
}

impl Reply {
    /// The JSON body; panics (showing the text) when the body is not JSON.
    pub fn body(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("HTTP {} body is not JSON: {:?}", self.status, self.text))
    }

    /// Decodes the body as `T`, panicking with the body on failure.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body does not decode as {}: {e}: {}",
                self.status,
                std::any::type_name::<T>(),
                self.text
            )
        })
    }

    /// Asserts a 2xx answer and returns self for chaining.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got HTTP {}: {}",
            self.status,
            self.text
        );
        self
    }
}

/// Asserts `reply` is HTTP `status` with exactly the error body
/// `{"error": code, "message": <non-empty>}`.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status, status,
        "expected HTTP {status} {code}, got HTTP {}: {}",
        reply.status, reply.text
    );
    assert_error_shape(reply);
    assert_eq!(
        reply.body()["error"],
        code,
        "wrong error code in {}",
        reply.text
    );
}

/// Asserts the body is an error body: a JSON object with exactly `error` (a known code) and
/// a non-empty `message`, served as JSON.
#[track_caller]
pub fn assert_error_shape(reply: &Reply) {
    let body = reply.body();
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {}", reply.text));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message"], "error body: {}", reply.text);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "error message must be a non-empty string: {}",
        reply.text
    );
    serde_json::from_value::<ErrorBody>(body.clone())
        .unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {}", reply.text));
    assert!(
        reply.content_type.starts_with("application/json"),
        "error served as {:?}, not JSON",
        reply.content_type
    );
}

/// A plain HTTP client for requests the typed client would never send.
#[derive(Debug, Clone)]
pub struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    pub fn new(base: &str) -> Self {
        Self::build(base, None)
    }

    /// A client whose connections come from `source` (a loopback address other than
    /// 127.0.0.1 stands for another network).
    pub fn from_source(base: &str, source: std::net::IpAddr) -> Self {
        Self::build(base, Some(source))
    }

    fn build(base: &str, source: Option<std::net::IpAddr>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .local_address(source)
            .build()
            .expect("reqwest client");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with `body` (when given) and the extra `headers`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Reply {
        let started = Instant::now();
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        let json = serde_json::from_str(&text).ok();
        Reply {
            status,
            text,
            json,
            content_type,
            elapsed: started.elapsed(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    /// POSTs `bytes` exactly as given, with the extra `headers`.
    pub async fn post_bytes(
        &self,
        path: &str,
        bytes: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Reply {
        self.send(reqwest::Method::POST, path, Some(bytes), headers)
            .await
    }

    /// POSTs `body` signed by `key`.
    pub async fn post_signed<T: Serialize>(&self, path: &str, key: &SigningKey, body: &T) -> Reply {
        let bytes = serde_json::to_vec(body).expect("encode body");
        self.post_signed_bytes(path, key, bytes).await
    }

    /// POSTs `bytes` exactly as given, signed by `key`.
    pub async fn post_signed_bytes(&self, path: &str, key: &SigningKey, bytes: Vec<u8>) -> Reply {
        let signature = sign(key, path, &bytes);
        self.post_bytes(path, bytes, &[(SIGNATURE_HEADER, signature)])
            .await
    }

    /// POSTs `body` with `Authorization: Bearer <token>`.
    pub async fn post_bearer<T: Serialize>(&self, path: &str, token: &str, body: &T) -> Reply {
        let bytes = serde_json::to_vec(body).expect("encode body");
        self.post_bytes(path, bytes, &[("authorization", format!("Bearer {token}"))])
            .await
    }

    /// All live peer ids via `GET /v1/peers`, following `next` (bounded).
    pub async fn peer_ids(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut path = "/v1/peers?limit=1000".to_string();
        for _ in 0..1000 {
            let reply = self.get(&path).await;
            reply.ok();
            let page: highway_wire::gatekeeper::PeersPage = reply.decode();
            out.extend(page.peers.iter().map(|p| p.id));
            match page.next {
                Some(next) => path = format!("/v1/peers?limit=1000&after={next}"),
                None => return out,
            }
        }
        panic!("more than 1000 pages of peers");
    }
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Request bodies with fresh timestamps, as a peer would build them.

pub fn join_req(key: &SigningKey, host: u8, want: u16) -> JoinRequest {
    JoinRequest {
        v: API_VERSION,
        id: id_of(key),
        ts_ms: fresh_ts(),
        addrs: addrs(host),
        neighbours: 0,
        capacity: 8,
        want,
    }
}

pub fn status_req(key: &SigningKey, host: u8, neighbour_ids: Vec<NodeId>) -> StatusRequest {
    StatusRequest {
        v: API_VERSION,
        id: id_of(key),
        ts_ms: fresh_ts(),
        addrs: addrs(host),
        neighbours: u16::try_from(neighbour_ids.len()).unwrap(),
        capacity: 8,
        neighbour_ids,
    }
}

pub fn report_req(key: &SigningKey, target: NodeId) -> ReportRequest {
    ReportRequest {
        v: API_VERSION,
        id: id_of(key),
        ts_ms: fresh_ts(),
        target,
    }
}

pub fn leave_req(key: &SigningKey) -> LeaveRequest {
    LeaveRequest {
        v: API_VERSION,
        id: id_of(key),
        ts_ms: fresh_ts(),
    }
}

/// Instantiates each generic `async fn case<S: Store>(store: S)` twice: `embedded::case`
/// on an in-memory store and `redis::case` on a fresh `redis-server`.
#[allow(unused_macros)] // redis_ops.rs shares this module but has Redis-only tests
macro_rules! for_both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(highway_gatekeeper::EmbeddedStore::in_memory()).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = crate::support::RedisServer::start();
                    super::$case(server.store()).await;
                    drop(server);
                }
            )*
        }
    };
}
