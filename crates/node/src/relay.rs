//! Reaching file servers that cannot be dialled, through reverse connections.
//!
//! A peer behind a NAT keeps links with dialable peers. To fetch from it, a downloader
//! asks one of those neighbours (a relay, named in the hit) over HTTP on the relay's TCP
//! port: `GET /v1/relay/{holder}/v1/files/{hash}`. The relay sends the holder a
//! [`PeerMsg::Reverse`](highway_wire::peer::PeerMsg::Reverse) over their link; the holder
//! connects back and presents the token in a signed reverse hello; the relay then passes
//! the request to it and copies the answer back, byte for byte. The relay only moves bytes:
//! the downloader verifies every one against the content hash, so a relay can slow a
//! download down but never corrupt it.
//!
//! A downloader that can be dialled itself asks the relay for a push instead
//! (`POST /v1/relay/{holder}/push`): the holder then connects straight to the downloader,
//! and only that one request-sized message went through the relay. The downloader's own
//! fetcher reaches that connection through `GET /v1/pushed/...` on its own TCP port.
//!
//! Everything here is bounded: connections per source and in all, pending tokens,
//! circuits at once (`--max-relayed`), and relayed bytes per second (`--relay-limit`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use highway_core::ReverseError;
use highway_share::transfer::RateLimit;
use highway_wire::NodeId;
use highway_wire::peer::reverse::ReverseHello;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::owner::Msg;
use crate::relay_http::{Head, Route, error_response, read_head};

/// Tokens waiting for their reverse connection, at most.
const MAX_PENDING: usize = 256;
/// How long a holder has to connect back.
const CONNECT_BACK: Duration = Duration::from_secs(5);
/// HTTP connections on the TCP port, in all and from one source.
const MAX_HTTP: usize = 64;
const MAX_HTTP_PER_SOURCE: usize = 8;
/// Pushes this node waits for at once, as a downloader.
const MAX_PUSHES: usize = 16;
/// Bytes copied per read while relaying.
const CHUNK: usize = 16 * 1024;
/// A circuit on which nothing moves this long (a stalled holder, a client that stopped
/// reading) is closed, so it cannot hold one of the relay's circuits for ever.
const IDLE: Duration = Duration::from_secs(30);

/// What a node offers as a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Relays for its neighbours behind NATs (`--no-relay` turns it off).
    pub enabled: bool,
    /// Circuits carried at once (`--max-relayed`).
    pub max_circuits: usize,
    /// Relayed bytes per second, all circuits together (`--relay-limit`).
    pub limit: Option<u64>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_circuits: 32,
            limit: None,
        }
    }
}

/// What relaying did, for `highway status` and `/metrics`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Circuits carried (as a relay) and pushes received (as a downloader), completed.
    pub circuits: AtomicU64,
    pub pushes: AtomicU64,
    /// Bytes copied from holders to downloaders through this relay.
    pub bytes: AtomicU64,
    /// Requests refused: relaying off, full, the holder not a neighbour, the holder did not
    /// connect back in time, malformed requests.
    pub refused_off: AtomicU64,
    pub refused_full: AtomicU64,
    pub refused_unknown_peer: AtomicU64,
    pub holder_timeouts: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Reverse hellos accepted, and refused (bad signature, unknown token, wrong holder).
    pub reverse_attached: AtomicU64,
    pub reverse_refused: AtomicU64,
    /// As a holder: reverse connections made, and failed (could not connect).
    pub reverse_served: AtomicU64,
    pub reverse_failed: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Pending {
    holder: NodeId,
    tx: oneshot::Sender<TcpStream>,
}

/// The relay and reverse-connection endpoint on this node's TCP port.
pub(crate) struct RelayHub {
    config: RelayConfig,
    /// Where holders connect back to: our published IP and TCP port.
    me: SocketAddr,
    /// The address we bind (the published one unless `--public-addr` names another):
    /// where our own downloader connects from, and what our outgoing sockets bind.
    local_ip: IpAddr,
    owner: mpsc::Sender<Msg>,
    pub counters: Arc<RelayCounters>,
    pending: Mutex<HashMap<[u8; 16], Pending>>,
    circuits: Arc<Semaphore>,
    pushes: Arc<Semaphore>,
    connections: Arc<highway_serve::SourceTable>,
    rate: Option<RateLimit>,
}

impl std::fmt::Debug for RelayHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHub")
            .field("me", &self.me)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A refusal: HTTP status, error code, message.
type Refusal = (u16, &'static str, String);

impl RelayHub {
    pub fn new(
        config: RelayConfig,
        me: SocketAddr,
        local_ip: IpAddr,
        owner: mpsc::Sender<Msg>,
        counters: Arc<RelayCounters>,
    ) -> Self {
        Self {
            local_ip,
            circuits: Arc::new(Semaphore::new(config.max_circuits.max(1))),
            pushes: Arc::new(Semaphore::new(MAX_PUSHES)),
            rate: config.limit.map(RateLimit::new),
            config,
            me,
            owner,
            counters,
            pending: Mutex::new(HashMap::new()),
            connections: highway_serve::SourceTable::new(MAX_HTTP, MAX_HTTP_PER_SOURCE),
        }
    }

    /// Serves one HTTP connection that arrived on the TCP port.
    pub async fn serve_http(&self, mut stream: TcpStream, from: SocketAddr) {
        let Ok(_slot) = self.connections.admit(from.ip()) else {
            bump(&self.counters.refused_full);
            let _ = stream
                .write_all(&error_response(
                    503,
                    "busy",
                    "too many relay connections; retry later",
                ))
                .await;
            return;
        };
        let _ = stream.set_nodelay(true);
        let head = match read_head(&mut stream).await {
            Ok(head) => head,
            Err(message) => {
                bump(&self.counters.bad_requests);
                let _ = stream
                    .write_all(&error_response(400, "bad_request", &message))
                    .await;
                return;
            }
        };
        let outcome = match head.route() {
            Ok(Route::Relay { holder, target }) => {
                self.relay(&mut stream, holder, target, &head).await
            }
            Ok(Route::Push { holder }) => self.accept_push(&mut stream, from, holder, &head).await,
            Ok(Route::Pushed {
                holder,
                relay,
                target,
            }) => {
                self.pushed(&mut stream, from, holder, relay, target, &head)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        if let Err((status, code, message)) = outcome {
            if status == 400 || status == 404 && code == "not_found" {
                bump(&self.counters.bad_requests);
            }
            tracing::debug!(%from, status, code, message, "relay request refused");
            let _ = stream
                .write_all(&error_response(status, code, &message))
                .await;
        }
        let _ = stream.shutdown().await;
    }

    /// Refuses (and counts) when relaying is off (`--no-relay`).
    fn relaying(&self) -> Result<(), Refusal> {
        if self.config.enabled {
            return Ok(());
        }
        bump(&self.counters.refused_off);
        Err((
            403,
            "relay_off",
            "this peer does not relay (--no-relay); try another relay".to_string(),
        ))
    }

    /// As a relay: fetches `target` from neighbour `holder` for the client on `stream`.
    async fn relay(
        &self,
        stream: &mut TcpStream,
        holder: NodeId,
        target: String,
        head: &Head,
    ) -> Result<(), Refusal> {
        self.relaying()?;
        let Ok(_circuit) = self.circuits.clone().try_acquire_owned() else {
            bump(&self.counters.refused_full);
            return Err((
                503,
                "relay_full",
                format!(
                    "this relay carries {} circuits, its limit (--max-relayed); try another relay",
                    self.config.max_circuits
                ),
            ));
        };
        let holder_stream = self.reverse_from(holder, self.me).await?;
        bump(&self.counters.circuits);
        self.forward(stream, holder_stream, &target, head).await;
        Ok(())
    }

    /// As a relay: a dialable downloader asks that `holder` connect to it directly.
    async fn accept_push(
        &self,
        stream: &mut TcpStream,
        from: SocketAddr,
        holder: NodeId,
        head: &Head,
    ) -> Result<(), Refusal> {
        self.relaying()?;
        let (token, to) = head.push_body()?;
        // The holder will connect where this names: only to the asker itself, never to a
        // third party.
        if to.ip() != from.ip() {
            bump(&self.counters.bad_requests);
            return Err((
                403,
                "not_yours",
                format!(
                    "a push may only name the asker's own address ({})",
                    from.ip()
                ),
            ));
        }
        self.ask_reverse(holder, token, to).await?;
        let _ = stream
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        Ok(())
    }

    /// As a downloader: asks `relay` for a push from `holder`, then passes the local
    /// fetcher's request to the holder's connection.
    async fn pushed(
        &self,
        stream: &mut TcpStream,
        from: SocketAddr,
        holder: NodeId,
        relay: SocketAddr,
        target: String,
        head: &Head,
    ) -> Result<(), Refusal> {
        // Only this node's own downloader may make us ask relays for pushes.
        if !is_local(from.ip(), self.local_ip) && from.ip() != self.me.ip() {
            bump(&self.counters.bad_requests);
            return Err((
                403,
                "local_only",
                "only this node's own downloads push".into(),
            ));
        }
        let Ok(_push) = self.pushes.clone().try_acquire_owned() else {
            return Err((503, "busy", "too many pushes waiting; retry later".into()));
        };
        let (token, rx) = self.register(holder)?;
        if let Err(refusal) = ask_push(relay, holder, token, self.me, self.local_ip).await {
            self.forget(&token);
            return Err(refusal);
        }
        let holder_stream = self.wait(token, rx).await?;
        bump(&self.counters.pushes);
        self.forward(stream, holder_stream, &target, head).await;
        Ok(())
    }

    /// Registers a token, asks the core to send the reverse request to neighbour `holder`,
    /// and waits for the connection.
    async fn reverse_from(&self, holder: NodeId, to: SocketAddr) -> Result<TcpStream, Refusal> {
        let (token, rx) = self.register(holder)?;
        if let Err(refusal) = self.ask_reverse(holder, token, to).await {
            self.forget(&token);
            return Err(refusal);
        }
        self.wait(token, rx).await
    }

    fn register(
        &self,
        holder: NodeId,
    ) -> Result<([u8; 16], oneshot::Receiver<TcpStream>), Refusal> {
        let token: [u8; 16] = rand::random();
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Entries whose waiter gave up are dropped first.
        pending.retain(|_, p| !p.tx.is_closed());
        if pending.len() >= MAX_PENDING {
            bump(&self.counters.refused_full);
            return Err((
                503,
                "busy",
                "too many reverse connections pending; retry later".into(),
            ));
        }
        pending.insert(token, Pending { holder, tx });
        Ok((token, rx))
    }

    fn forget(&self, token: &[u8; 16]) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    async fn wait(
        &self,
        token: [u8; 16],
        rx: oneshot::Receiver<TcpStream>,
    ) -> Result<TcpStream, Refusal> {
        match tokio::time::timeout(CONNECT_BACK, rx).await {
            Ok(Ok(stream)) => Ok(stream),
            _ => {
                self.forget(&token);
                bump(&self.counters.holder_timeouts);
                Err((
                    504,
                    "holder_silent",
                    format!(
                        "the holder did not connect back within {}s",
                        CONNECT_BACK.as_secs()
                    ),
                ))
            }
        }
    }

    async fn ask_reverse(
        &self,
        holder: NodeId,
        token: [u8; 16],
        to: SocketAddr,
    ) -> Result<(), Refusal> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::RequestReverse {
            holder,
            token,
            to,
            reply,
        };
        if self.owner.send(msg).await.is_err() {
            return Err((503, "stopping", "this node is stopping".into()));
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ReverseError::NotLinked | ReverseError::NoPath)) => {
                bump(&self.counters.refused_unknown_peer);
                Err((
                    404,
                    "unknown_peer",
                    format!("this relay has no working link with {}", holder.short()),
                ))
            }
            Ok(Err(ReverseError::Undialable)) => {
                Err((400, "bad_address", format!("{to} cannot be dialled")))
            }
            Err(_) => Err((503, "stopping", "this node is stopping".into())),
        }
    }

    /// A reverse hello arrived on the TCP port (the first frame's payload): hands the
    /// connection to whoever waits for its token.
    pub fn attach(&self, payload: &[u8], stream: TcpStream) {
        let hello = match ReverseHello::decode(payload) {
            Ok(hello) if hello.verify() => hello,
            _ => {
                bump(&self.counters.reverse_refused);
                return;
            }
        };
        let waiting = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.get(&hello.token) {
                Some(p) if p.holder == hello.holder => pending.remove(&hello.token),
                _ => None,
            }
        };
        let handed = waiting.is_some_and(|p| p.tx.send(stream).is_ok());
        if handed {
            bump(&self.counters.reverse_attached);
        } else {
            bump(&self.counters.reverse_refused);
        }
    }

    /// Sends the request to the holder, rewritten to its own path and closing after the
    /// answer, then copies the answer back to the client.
    async fn forward(
        &self,
        client: &mut TcpStream,
        mut holder: TcpStream,
        target: &str,
        head: &Head,
    ) {
        let _ = holder.set_nodelay(true);
        if holder.write_all(&head.rewritten(target)).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match tokio::time::timeout(IDLE, holder.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            };
            if let Some(rate) = &self.rate {
                rate.acquire(n).await;
            }
            match tokio::time::timeout(IDLE, client.write_all(&buf[..n])).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Asks `relay` to have `holder` connect to `me` with `token` (as a downloader).
async fn ask_push(
    relay: SocketAddr,
    holder: NodeId,
    token: [u8; 16],
    me: SocketAddr,
    local_ip: IpAddr,
) -> Result<(), Refusal> {
    let unreachable = |e: &dyn std::fmt::Display| {
        (
            502,
            "relay_unreachable",
            format!("the relay at {relay} could not be asked for a push: {e}"),
        )
    };
    let socket = if relay.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| unreachable(&e))?;
    // From the address we bind, which the relay sees as the one we publish (ours, or our
    // router's under --public-addr): it checks that the push names the asker.
    if local_ip.is_ipv4() == relay.is_ipv4() && !local_ip.is_unspecified() {
        socket
            .bind(SocketAddr::new(local_ip, 0))
            .map_err(|e| unreachable(&e))?;
    }
    let exchange = async {
        let mut stream = socket.connect(relay).await?;
        let body = format!("{{\"token\":\"{}\",\"to\":\"{me}\"}}", hex::encode(token));
        let request = format!(
            "POST /v1/relay/{holder}/push HTTP/1.1\r\nhost: {relay}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        while answer.len() < 4096 && !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(CONNECT_BACK, exchange)
        .await
        .map_err(|_| unreachable(&"timed out"))?
        .map_err(|e| unreachable(&e))?;
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 202") {
        return Ok(());
    }
    let status = text.lines().next().unwrap_or("no answer").to_string();
    Err((
        502,
        "push_refused",
        format!("the relay at {relay} refused the push: {status}"),
    ))
}

/// True when `ip` could be where our own downloader connects from.
pub(crate) fn is_local(ip: IpAddr, me: IpAddr) -> bool {
    ip == me || ip.is_loopback()
}
