//! A lean load generator for the Gatekeeper API: one shared keep-alive HTTP client for
//! every simulated peer, with bodies and credentials built exactly as
//! `highway_gatekeeper::GatekeeperClient` builds them (JSON body, ed25519 signature over
//! [`signing_message`] in [`SIGNATURE_HEADER`], or `Authorization: Bearer <lease>`).

use highway_gatekeeper::client::error_chain;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use highway_gatekeeper::server::now_ms;
use highway_wire::gatekeeper::{
    API_VERSION, Health, JoinRequest, JoinResponse, SIGNATURE_HEADER, StatusRequest,
    signing_message,
};
use highway_wire::{NodeId, PeerAddr};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

pub const JOIN_PATH: &str = "/v1/join";
pub const STATUS_PATH: &str = "/v1/status";
/// Neighbour capacity every simulated peer declares, and how many candidates it asks for.
const CAPACITY: u16 = 8;
const WANT: u16 = 8;
/// Limit on one request; a slower answer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker gives up after this many failures in a row (the Gatekeeper is gone or
/// refusing everything); the phase then ends with the errors reported.
const MAX_CONSECUTIVE_ERRORS: usize = 50;

/// The Gatekeeper under test, over one pooled HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    join_url: reqwest::Url,
    status_url: reqwest::Url,
}

/// How a request proves who sent it.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Hex ed25519 signature, for [`SIGNATURE_HEADER`].
    Signature(HeaderValue),
    /// `Bearer <lease token>`, for `Authorization`.
    Bearer(HeaderValue),
}

/// A body with its credential, ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Vec<u8>,
    pub credential: Credential,
}

impl Http {
    pub fn new(base: &str, concurrency: usize) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            anyhow::bail!("--target must be http://HOST:PORT, got {base:?}");
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(concurrency)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        let join_url = reqwest::Url::parse(&format!("{base}{JOIN_PATH}"))?;
        let status_url = reqwest::Url::parse(&format!("{base}{STATUS_PATH}"))?;
        Ok(Self {
            client,
            base,
            join_url,
            status_url,
        })
    }

    /// The Gatekeeper's `/healthz`, or why it could not be read.
    pub async fn health(&self) -> Result<Health, String> {
        let response = self
            .client
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let bytes = response.bytes().await.map_err(|e| error_chain(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("/healthz answered non-JSON: {e}"))
    }

    /// POSTs `req` to `path` and returns the body of a 2xx answer.
    pub async fn post(&self, path: &str, req: &Prepared) -> Result<Vec<u8>, String> {
        let url = if path == JOIN_PATH {
            self.join_url.clone()
        } else {
            self.status_url.clone()
        };
        let builder = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json");
        let builder = match &req.credential {
            Credential::Signature(sig) => builder.header(SIGNATURE_HEADER, sig.clone()),
            Credential::Bearer(token) => builder.header(AUTHORIZATION, token.clone()),
        };
        let response = builder
            .body(req.body.clone())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| error_chain(&e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(format!("{path}: HTTP {status}: {text}"));
        }
        Ok(bytes.to_vec())
    }
}

/// One simulated peer: its key (derived from the run's salt and its index, so keys are
/// cheap to make and never collide with another run's) and where it claims to listen.
#[derive(Debug, Clone)]
pub struct Peer {
    pub key: SigningKey,
    pub id: NodeId,
    pub addr: PeerAddr,
}

impl Peer {
    pub fn derive(salt: &[u8; 24], index: u64) -> Self {
        let mut seed = [0u8; 32];
        seed[..24].copy_from_slice(salt);
        seed[24..].copy_from_slice(&index.to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let id = NodeId::from_key(&key.verifying_key());
        // Distinct, dialable-looking addresses: 10.x.y.z, ports from 1024 up.
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (index as u32 & 0x00ff_ffff)));
        let udp = 1024 + (index % 60_000) as u16;
        Self {
            key,
            id,
            addr: PeerAddr::new(ip, udp, udp + 1),
        }
    }

    fn sign(&self, path: &str, body: Vec<u8>) -> Prepared {
        let signature = self.key.sign(&signing_message(path, &body));
        let hex = hex::encode(signature.to_bytes());
        Prepared {
            body,
            credential: Credential::Signature(
                HeaderValue::from_str(&hex).expect("hex is a valid header value"),
            ),
        }
    }

    /// A signed `POST /v1/join` with timestamp `ts_ms`.
    pub fn join(&self, ts_ms: u64) -> Prepared {
        let req = JoinRequest {
            v: API_VERSION,
            id: self.id,
            ts_ms,
            addrs: vec![self.addr],
            neighbours: 0,
            capacity: CAPACITY,
            want: WANT,
        };
        let body = serde_json::to_vec(&req).expect("a JoinRequest always encodes");
        self.sign(JOIN_PATH, body)
    }

    fn status_body(&self, ts_ms: u64) -> Vec<u8> {
        let req = StatusRequest {
            v: API_VERSION,
            id: self.id,
            ts_ms,
            addrs: vec![self.addr],
            neighbours: 0,
            capacity: CAPACITY,
            neighbour_ids: Vec::new(),
        };
        serde_json::to_vec(&req).expect("a StatusRequest always encodes")
    }

    /// A signed `POST /v1/status` with timestamp `ts_ms`.
    pub fn signed_status(&self, ts_ms: u64) -> Prepared {
        self.sign(STATUS_PATH, self.status_body(ts_ms))
    }

    /// A `POST /v1/status` authenticated by `bearer` (`Bearer <lease token>`), stamped
    /// `ts_ms` ([`Joined::next_status_ts`]).
    pub fn lease_status(&self, bearer: &HeaderValue, ts_ms: u64) -> Prepared {
        Prepared {
            body: self.status_body(ts_ms),
            credential: Credential::Bearer(bearer.clone()),
        }
    }
}

/// A registered peer: what the join answered.
#[derive(Debug, Clone)]
pub struct Joined {
    /// `Bearer <token>`, ready for the Authorization header.
    pub bearer: HeaderValue,
    /// Timestamp of the accepted join; a later signed request must be newer.
    pub ts_ms: u64,
    /// Last status timestamp handed out: each status must be newer than the last one the
    /// Gatekeeper accepted for the peer, even two sent in the same millisecond.
    pub last_status_ts: Arc<AtomicU64>,
}

impl Joined {
    /// A status timestamp newer than any handed out for this peer: now, or one more.
    pub fn next_status_ts(&self) -> u64 {
        let now = now_ms();
        let prev = self
            .last_status_ts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(prev + 1)
    }
}

/// Reads the lease out of a join answer.
pub fn joined(body: &[u8], ts_ms: u64) -> Result<Joined, String> {
    let resp: JoinResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable join answer: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", resp.lease.token))
        .map_err(|e| format!("lease token is not a header value: {e}"))?;
    Ok(Joined {
        bearer,
        ts_ms,
        last_status_ts: Arc::new(AtomicU64::new(ts_ms)),
    })
}

/// What a phase's workers did.
#[derive(Debug)]
pub struct Outcome<T> {
    /// (request index, result) of each successful request, in no particular order.
    pub results: Vec<(usize, T)>,
    /// Latency of each successful request, nanoseconds.
    pub latencies_ns: Vec<u64>,
    pub errors: usize,
    pub first_error: Option<String>,
    /// From the first request to the end of the last.
    pub elapsed: Duration,
}

/// Runs requests `0..count` on `concurrency` workers until all are done or `limit` has
/// passed, whichever is first. `job(i)` performs request `i`; only the time it takes is
/// measured, so anything expensive that is not part of the request (signing, say)
/// belongs before the phase.
pub async fn run_phase<T, F, Fut>(
    concurrency: usize,
    count: usize,
    limit: Duration,
    job: F,
) -> Outcome<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + limit;
    let workers: Vec<_> = (0..concurrency.clamp(1, count.max(1)))
        .map(|_| {
            let (job, next, stop) = (job.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let mut out = Outcome {
                    results: Vec::new(),
                    latencies_ns: Vec::new(),
                    errors: 0,
                    first_error: None,
                    elapsed: Duration::ZERO,
                };
                let mut failures_in_a_row = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t0 = Instant::now();
                    match job(i).await {
                        Ok(value) => {
                            out.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                            out.results.push((i, value));
                            failures_in_a_row = 0;
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                            failures_in_a_row += 1;
                            if failures_in_a_row >= MAX_CONSECUTIVE_ERRORS {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Outcome {
        results: Vec::new(),
        latencies_ns: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        match worker.await {
            Ok(out) => {
                total.results.extend(out.results);
                total.latencies_ns.extend(out.latencies_ns);
                total.errors += out.errors;
                if total.first_error.is_none() {
                    total.first_error = out.first_error;
                }
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("worker failed: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_peers_are_distinct_and_valid() {
        let salt = [7u8; 24];
        let a = Peer::derive(&salt, 0);
        let b = Peer::derive(&salt, 1);
        assert_ne!(a.id, b.id);
        assert_eq!(Peer::derive(&salt, 1).id, b.id);
        assert_eq!(a.addr.validate(), Ok(()));
        assert_eq!(Peer::derive(&salt, 70_000).addr.validate(), Ok(()));
    }

    #[test]
    fn signed_requests_verify_like_the_gatekeeper_checks_them() {
        let peer = Peer::derive(&[1u8; 24], 5);
        let req = peer.signed_status(1_700_000_000_000);
        let Credential::Signature(sig) = &req.credential else {
            panic!("expected a signature");
        };
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(sig.as_bytes(), &mut bytes).unwrap();
        assert!(
            peer.id
                .verify(&signing_message(STATUS_PATH, &req.body), &bytes)
        );
        let status: StatusRequest = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(status.validate(), Ok(()));
    }

    #[tokio::test]
    async fn phases_stop_at_their_count_and_count_errors() {
        let out = run_phase(4, 10, Duration::from_secs(5), |i| async move {
            if i % 5 == 0 {
                Err(format!("no {i}"))
            } else {
                Ok(i)
            }
        })
        .await;
        assert_eq!(out.results.len(), 8);
        assert_eq!(out.latencies_ns.len(), 8);
        assert_eq!(out.errors, 2);
        assert!(out.first_error.is_some());
    }
}
