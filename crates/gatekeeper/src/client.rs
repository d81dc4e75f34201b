//! Typed client for the Gatekeeper API, with per-request timeouts and retries.
//!
//! It signs joins, uses the lease token for statuses while the lease is comfortably
//! valid, and signs (renewing the lease) when it is not or when the Gatekeeper no longer
//! knows it. Signed requests are re-signed with a fresh timestamp on every attempt, since
//! the Gatekeeper refuses a timestamp it has already seen.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use highway_wire::gatekeeper::{
    API_VERSION, ErrorBody, ErrorCode, Health, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, MAX_PAGE, PeerInfo, PeersPage, ReportRequest, ReportResponse, SIGNATURE_HEADER,
    StatusRequest, StatusResponse, signing_message,
};
use highway_wire::{NodeId, PeerAddr};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::server::now_ms;

/// Largest response body the client reads (a full page of peers is far smaller).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Most pages [`GatekeeperClient::all_peers`] fetches.
const MAX_PAGES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limit on one attempt, connecting included.
    pub timeout: Duration,
    /// Further attempts after a failure that may be transient (no answer, 502, 503, 504).
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
    /// For an `https://` Gatekeeper with a private CA: a PEM file of the certificates to
    /// trust, instead of the system's roots. `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Connect from this address (of the same family as the Gatekeeper's), so that a peer
    /// on a host with several addresses reaches the Gatekeeper from the one it publishes:
    /// the Gatekeeper accepts only addresses that match a request's source. `None`: the
    /// system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            retries: 3,
            backoff: Duration::from_millis(200),
            ca_file: None,
            local_address: None,
        }
    }
}

/// What went wrong with a call. The Gatekeeper's own refusals keep its code and message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad Gatekeeper URL {0:?}: give http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error(
        "cannot use {path} as the Gatekeeper's CA: {reason}; give a PEM file with one or more CERTIFICATE blocks"
    )]
    BadCa { path: PathBuf, reason: String },
    #[error("Gatekeeper at {url} did not answer: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Gatekeeper refused the request ({status}, {}): {message}", .code.as_str())]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("Gatekeeper sent an answer this client cannot read: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The Gatekeeper's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// `e` and its causes, so "error sending request" comes with "connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, Clone)]
struct HeldLease {
    token: String,
    expires: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Credential<'a> {
    Sign,
    Lease(&'a str),
    None,
}

/// A peer's handle on one Gatekeeper (or a load balancer in front of several).
#[derive(Debug)]
pub struct GatekeeperClient {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    id: NodeId,
    config: ClientConfig,
    lease: Mutex<Option<HeldLease>>,
    status_interval: Mutex<Duration>,
    last_ts: AtomicU64,
}

/// The certificates of a PEM file, refusing a file with none.
fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let bad = |reason: String| ClientError::BadCa {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    Ok(certs)
}

impl GatekeeperClient {
    pub fn new(base_url: &str, key: SigningKey, config: ClientConfig) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::BadUrl(base_url.to_string()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .local_address(config.local_address);
        if let Some(path) = &config.ca_file {
            builder = builder.tls_certs_only(read_ca(path)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::BadUrl(format!("{base_url}: {e}")))?;
        let id = NodeId::from_key(&key.verifying_key());
        Ok(Self {
            http,
            base,
            key,
            id,
            config,
            lease: Mutex::new(None),
            status_interval: Mutex::new(Duration::from_secs(5)),
            last_ts: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The Gatekeeper's host (a name or an address, IPv6 without brackets) and port.
    pub fn host_and_port(&self) -> Option<(String, u16)> {
        let url = reqwest::Url::parse(&self.base).ok()?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        Some((host.to_string(), url.port_or_known_default()?))
    }

    /// A timestamp newer than any this client used before, even if the clock stepped back.
    fn next_ts(&self) -> u64 {
        let now = now_ms();
        let prev = self
            .last_ts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(prev + 1)
    }

    /// The lease token, unless it expires within two status intervals.
    fn usable_lease(&self) -> Option<String> {
        let margin = *self
            .status_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            * 2;
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        lease
            .as_ref()
            .filter(|l| l.expires > Instant::now() + margin)
            .map(|l| l.token.clone())
    }

    fn keep_lease(&self, lease: &highway_wire::gatekeeper::Lease) {
        let expires = Instant::now() + Duration::from_millis(lease.expires_in_ms);
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(HeldLease {
            token: lease.token.clone(),
            expires,
        });
    }

    /// Registers this peer and returns candidate neighbours.
    pub async fn join(
        &self,
        addrs: &[PeerAddr],
        neighbours: u16,
        capacity: u16,
        want: u16,
    ) -> Result<JoinResponse, ClientError> {
        let resp: JoinResponse = self
            .post("/v1/join", Credential::Sign, |ts| JoinRequest {
                v: API_VERSION,
                id: self.id,
                ts_ms: ts,
                addrs: addrs.to_vec(),
                neighbours,
                capacity,
                want,
            })
            .await?;
        self.keep_lease(&resp.lease);
        *self
            .status_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Duration::from_millis(resp.status_interval_ms);
        Ok(resp)
    }

    /// Sends a status. Uses the lease while it is good, else signs (renewing the lease).
    pub async fn status(
        &self,
        addrs: &[PeerAddr],
        neighbours: u16,
        capacity: u16,
        neighbour_ids: &[NodeId],
    ) -> Result<StatusResponse, ClientError> {
        let make = |ts| StatusRequest {
            v: API_VERSION,
            id: self.id,
            ts_ms: ts,
            addrs: addrs.to_vec(),
            neighbours,
            capacity,
            neighbour_ids: neighbour_ids.to_vec(),
        };
        if let Some(token) = self.usable_lease() {
            match self
                .post("/v1/status", Credential::Lease(&token), make)
                .await
            {
                Err(e)
                    if matches!(
                        e.code(),
                        Some(
                            ErrorCode::BadLease
                                | ErrorCode::LeaseExpired
                                | ErrorCode::SignatureRequired
                        )
                    ) =>
                {
                    // SignatureRequired: the addresses changed, which only a signature may do.
                    tracing::debug!(error = %e, "lease refused; signing the status instead");
                }
                other => return other,
            }
        }
        let resp: StatusResponse = self.post("/v1/status", Credential::Sign, make).await?;
        if let Some(lease) = &resp.lease {
            self.keep_lease(lease);
        }
        Ok(resp)
    }

    /// Tells the Gatekeeper that neighbour `target` was found dead.
    pub async fn report(&self, target: NodeId) -> Result<ReportResponse, ClientError> {
        let credential = match self.usable_lease() {
            Some(token) => token,
            None => {
                return self
                    .post("/v1/report", Credential::Sign, |ts| {
                        self.report_body(target, ts)
                    })
                    .await;
            }
        };
        self.post("/v1/report", Credential::Lease(&credential), |ts| {
            self.report_body(target, ts)
        })
        .await
    }

    fn report_body(&self, target: NodeId, ts: u64) -> ReportRequest {
        ReportRequest {
            v: API_VERSION,
            id: self.id,
            ts_ms: ts,
            target,
        }
    }

    /// Removes this peer's entry (signed, so it works even without a lease).
    pub async fn leave(&self) -> Result<LeaveResponse, ClientError> {
        let resp = self
            .post("/v1/leave", Credential::Sign, |ts| LeaveRequest {
                v: API_VERSION,
                id: self.id,
                ts_ms: ts,
            })
            .await?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(resp)
    }

    /// One page of live peers in id order.
    pub async fn peers(
        &self,
        after: Option<NodeId>,
        limit: usize,
    ) -> Result<PeersPage, ClientError> {
        let mut path = format!("/v1/peers?limit={}", limit.clamp(1, MAX_PAGE));
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.get(&path).await
    }

    /// Every live peer, page by page.
    pub async fn all_peers(&self) -> Result<Vec<PeerInfo>, ClientError> {
        let mut out = Vec::new();
        let mut after = None;
        for _ in 0..MAX_PAGES {
            let page = self.peers(after, MAX_PAGE).await?;
            out.extend(page.peers);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
        Err(ClientError::Protocol(format!(
            "more than {MAX_PAGES} pages of peers"
        )))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ClientError> {
        self.with_retries(|| {
            self.attempt::<(), Resp>(reqwest::Method::GET, path, None, Credential::None)
        })
        .await
    }

    async fn post<Req, Resp>(
        &self,
        path: &str,
        credential: Credential<'_>,
        make: impl Fn(u64) -> Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        self.with_retries(|| {
            let body = make(self.next_ts());
            self.attempt(reqwest::Method::POST, path, Some(body), credential)
        })
        .await
    }

    async fn with_retries<Resp, Fut>(
        &self,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<Resp, ClientError>
    where
        Fut: Future<Output = Result<Resp, ClientError>>,
    {
        let mut delay = self.config.backoff;
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if e.is_transient() && tries < self.config.retries => {
                    tries += 1;
                    tracing::debug!(error = %e, attempt = tries, "retrying Gatekeeper request");
                    let jitter = delay.mul_f64(rand::random::<f64>() * 0.5);
                    tokio::time::sleep(delay + jitter).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    async fn attempt<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Req>,
        credential: Credential<'_>,
    ) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            let bytes = serde_json::to_vec(&body)
                .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
            request = match credential {
                Credential::Sign => {
                    let signature = self.key.sign(&signing_message(path, &bytes));
                    request.header(SIGNATURE_HEADER, hex::encode(signature.to_bytes()))
                }
                Credential::Lease(token) => request.bearer_auth(token),
                Credential::None => request,
            };
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("{path}: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(err) => Err(ClientError::Api {
                status: status.as_u16(),
                code: err.error,
                message: err.message,
            }),
            // A proxy in front of the Gatekeeper may answer with its own non-JSON page.
            Err(_) => Err(ClientError::Api {
                status: status.as_u16(),
                code: if status.is_server_error() {
                    ErrorCode::StoreUnavailable
                } else {
                    ErrorCode::NotFound
                },
                message: format!("HTTP {status} without a Highway error body"),
            }),
        }
    }
}
