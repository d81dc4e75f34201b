//! The local control API: a small HTTP/JSON server on a loopback address, used by
//! `highway status`, `highway neighbors` and scripts.
//!
//! - `GET /v1/status` → [`StatusView`]
//! - `GET /v1/neighbors` → array of [`NeighbourJson`]
//! - `POST /v1/leave` → [`LeaveView`] once the neighbours and the Gatekeeper were told;
//!   the node then stops.
//!
//! Errors are `{"error": "<code>", "message": "<text>"}`. Every request needs the node's
//! bearer token ([`crate::token`], checked in `control_auth`; 401 without it). The API
//! only ever listens on loopback, and refuses requests a web page could make: any with an
//! `Origin` header, or a `Host` that is not a loopback address or `localhost` (DNS
//! rebinding).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use highway_core::{NeighbourView, Phase, Stats};
use highway_wire::{NodeId, PeerAddr};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub(crate) use crate::control_auth::Auth;
use crate::owner::Counters;
use crate::owner::{Msg, Snapshot};
use crate::reach_view::{ReachabilityJson, cut_off_reason, reachability_json};

/// How long a request waits for the owner task.
const OWNER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `POST /v1/leave` waits for the leave to finish.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v1/status`: who this node is and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The NodeId, 64 hex characters.
    pub id: NodeId,
    /// Its first 12 hex characters, as tables and logs show it.
    pub short_id: String,
    /// Where other peers reach this node.
    pub addr: PeerAddr,
    /// `idle`, `running` or `left`.
    pub phase: String,
    /// Current number of neighbours.
    pub degree: usize,
    pub target_degree: usize,
    /// Most neighbours that can be dialled; `undialable_slots` more behind NATs.
    pub max_degree: usize,
    #[serde(default)]
    pub undialable_slots: usize,
    /// The Gatekeeper's URL.
    pub gatekeeper: String,
    /// The protocol's counters (`highway_core::Stats`).
    pub stats: StatsView,
    /// The runtime's own counters (handshakes, loss injection, Gatekeeper errors).
    #[serde(default)]
    pub runtime: RuntimeStats,
    /// Whether others can reach this node, and what its neighbours see of it.
    #[serde(default)]
    pub reachability: ReachabilityJson,
    /// Why the node has no neighbours (`null` while it has some): what failed, in words.
    #[serde(default)]
    pub cut_off: Option<String>,
    /// Paths of the share that are not shared or not watched (`GET /v1/files` lists
    /// them with why).
    #[serde(default)]
    pub share_skipped: u64,
}

/// One neighbour, in `GET /v1/neighbors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourJson {
    pub id: NodeId,
    pub short_id: String,
    pub addr: PeerAddr,
    /// `okay` or `warning` (failed neighbours are removed at once).
    pub state: String,
    /// True when the neighbour opened the link.
    pub inbound: bool,
    pub linked_for_ms: u64,
    pub last_heard_ms_ago: u64,
    /// Sequence number of the last heartbeat sent to it.
    pub sent_seq: u64,
    /// Highest of our heartbeat sequence numbers it acknowledged.
    pub last_acked_seq: u64,
    /// Its incarnation (raised each time it refuted a suspicion).
    pub incarnation: u64,
    /// The version of its share summary (0: none).
    pub summary_version: u64,
    /// Its neighbours, as its last heartbeat listed them.
    pub their_neighbours: Vec<NodeId>,
    /// How this link's datagrams travel: `direct` (UDP between the two peers) or `tcp`
    /// (over the handshake's connection, kept open because UDP is blocked at one end).
    #[serde(default)]
    pub path: String,
    /// Where this link's datagrams go: the source of the neighbour's last authenticated
    /// datagram (behind a NAT, its mapping); `null` until an inbound link's peer spoke.
    #[serde(default)]
    pub udp_path: Option<SocketAddr>,
    /// The neighbour can be dialled at `addr` (false: it is behind a NAT and dialled us).
    #[serde(default)]
    pub dialable: bool,
    /// Where the neighbour sees our datagrams come from.
    #[serde(default)]
    pub observed_me: Option<SocketAddr>,
}

/// `POST /v1/leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveView {
    pub left: bool,
}

/// The core's counters, as `highway_core::Stats` serializes them.
pub type StatsView = Stats;

/// What the runtime did around the core: handshakes over TCP, datagrams dropped by loss
/// injection, Gatekeeper errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeStats {
    /// Outbound handshakes started, and how they ended.
    pub outbound_started: u64,
    pub outbound_linked: u64,
    pub outbound_full: u64,
    pub outbound_rejected: u64,
    pub outbound_unreachable: u64,
    /// Dials refused because too many were running. Always 0 since the core caps its
    /// own dials (kept for scripts that read it).
    pub outbound_refused_busy: u64,
    /// Inbound handshakes that ended with a link installed, or failed part-way.
    pub inbound_linked: u64,
    pub inbound_failed: u64,
    /// Inbound connections closed at once because too many handshakes were running.
    pub inbound_refused_busy: u64,
    /// Inbound connections closed at once because their source address (IPv6: its /64)
    /// had 4 handshakes in progress; handshakes dropped because no hello came in 2 s.
    pub inbound_refused_per_ip: u64,
    pub inbound_hello_timeouts: u64,
    /// Datagrams held until their outbound link was reported up.
    pub early_datagrams: u64,
    /// Datagrams dropped on purpose by `--loss`, received and sent.
    pub loss_dropped_in: u64,
    pub loss_dropped_out: u64,
    pub udp_send_errors: u64,
    pub gatekeeper_errors: u64,
    /// Times the core's timer fired.
    pub timer_wakeups: u64,
    /// Control API requests refused (401) for a missing or wrong token.
    pub control_unauthorized: u64,
    /// Verified file bytes fetched by downloads (not counting resumed ones).
    pub bytes_fetched: u64,
    pub downloads_done: u64,
    pub downloads_failed: u64,
    /// Downloads cancelled (`DELETE /v1/downloads/{id}`, Ctrl-C on `highway get`).
    pub downloads_cancelled: u64,
    /// The file server: responses with a file body (200 or 206), file bytes sent,
    /// outboards sent, requests for ids not shared, requests refused as busy (503).
    pub files_served: u64,
    pub bytes_served: u64,
    pub outboards_served: u64,
    /// Outboards the file server had to make by reading a whole file (none kept from
    /// indexing, or the kept one did not check out).
    #[serde(default)]
    pub outboards_computed: u64,
    pub file_requests_not_found: u64,
    pub file_requests_busy: u64,
    /// The file server's connections: admitted, closed at once over the per-source or
    /// total cap (`503`), cut at the request-header deadline or for idleness.
    pub file_connections_accepted: u64,
    pub file_connections_refused_per_source: u64,
    pub file_connections_refused_total_cap: u64,
    pub file_header_timeouts: u64,
    pub file_idle_timeouts: u64,
    /// The control API's connections closed at once over its cap, or cut at the
    /// request-header deadline (a local client trickling its request).
    pub control_connections_refused: u64,
    pub control_header_timeouts: u64,
    /// Relaying for peers behind NATs: transfers carried as a relay, pushes received as a
    /// downloader, bytes relayed; requests refused (relaying off, full, holder not a
    /// neighbour, holder did not connect back, malformed).
    pub relay_circuits: u64,
    pub relay_pushes: u64,
    pub relay_bytes: u64,
    pub relay_refused_off: u64,
    pub relay_refused_full: u64,
    pub relay_refused_unknown_peer: u64,
    pub relay_holder_timeouts: u64,
    pub relay_bad_requests: u64,
    /// Reverse hellos accepted and refused (bad signature, unknown token); as a holder
    /// behind a NAT, reverse connections served and failed.
    pub reverse_attached: u64,
    pub reverse_refused: u64,
    pub reverse_served: u64,
    pub reverse_failed: u64,
}

impl RuntimeStats {
    /// The runtime's counters, with the handshake ones the core keeps (`core`): they
    /// stay here, where scripts have always read them.
    pub(crate) fn new(c: &Counters, core: &Stats) -> Self {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Self {
            outbound_started: core.dials_started,
            outbound_linked: core.dials_linked,
            outbound_full: core.dials_full,
            outbound_rejected: core.dials_rejected + core.dial_bad_welcomes,
            outbound_unreachable: core.dials_unanswered,
            outbound_refused_busy: 0,
            inbound_linked: core.inbound_linked,
            inbound_failed: core.inbound_failed,
            inbound_refused_busy: core.inbound_refused_busy,
            inbound_refused_per_ip: core.inbound_refused_per_ip,
            inbound_hello_timeouts: core.inbound_hello_timeouts,
            early_datagrams: core.early_link_datagrams,
            loss_dropped_in: get(&c.loss_dropped_in),
            loss_dropped_out: get(&c.loss_dropped_out),
            udp_send_errors: get(&c.udp_send_errors),
            gatekeeper_errors: get(&c.gatekeeper_errors),
            timer_wakeups: get(&c.timer_wakeups),
            control_unauthorized: get(&c.control_unauthorized),
            bytes_fetched: get(&c.bytes_fetched),
            files_served: get(&c.file_server.files_served),
            bytes_served: get(&c.file_server.bytes_served),
            outboards_served: get(&c.file_server.outboards_served),
            outboards_computed: get(&c.file_server.outboards_computed),
            file_requests_not_found: get(&c.file_server.not_found),
            file_requests_busy: get(&c.file_server.busy),
            file_connections_accepted: get(&c.file_server.connections.accepted),
            file_connections_refused_per_source: get(&c.file_server.connections.refused_per_source),
            file_connections_refused_total_cap: get(&c.file_server.connections.refused_total_cap),
            file_header_timeouts: get(&c.file_server.connections.header_timeouts),
            file_idle_timeouts: get(&c.file_server.connections.idle_timeouts),
            control_connections_refused: get(&c.control_connections.refused_per_source)
                + get(&c.control_connections.refused_total_cap),
            control_header_timeouts: get(&c.control_connections.header_timeouts),
            downloads_done: get(&c.downloads_done),
            downloads_failed: get(&c.downloads_failed),
            downloads_cancelled: get(&c.downloads_cancelled),
            relay_circuits: get(&c.relay.circuits),
            relay_pushes: get(&c.relay.pushes),
            relay_bytes: get(&c.relay.bytes),
            relay_refused_off: get(&c.relay.refused_off),
            relay_refused_full: get(&c.relay.refused_full),
            relay_refused_unknown_peer: get(&c.relay.refused_unknown_peer),
            relay_holder_timeouts: get(&c.relay.holder_timeouts),
            relay_bad_requests: get(&c.relay.bad_requests),
            reverse_attached: get(&c.relay.reverse_attached),
            reverse_refused: get(&c.relay.reverse_refused),
            reverse_served: get(&c.relay.reverse_served),
            reverse_failed: get(&c.relay.reverse_failed),
        }
    }
}

/// The name of a phase, as the API shows it.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Running => "running",
        Phase::Left => "left",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&NeighbourView> for NeighbourJson {
    fn from(n: &NeighbourView) -> Self {
        Self {
            id: n.id,
            short_id: n.id.short(),
            addr: n.addr,
            state: n.state.to_string(),
            inbound: n.inbound,
            linked_for_ms: millis(n.linked_for),
            last_heard_ms_ago: millis(n.last_heard_ago),
            sent_seq: n.sent_seq,
            last_acked_seq: n.last_acked_seq,
            incarnation: n.incarnation,
            summary_version: n.summary_version,
            their_neighbours: n.their_neighbours.clone(),
            path: if n.over_tcp { "tcp" } else { "direct" }.to_string(),
            udp_path: n.udp_path,
            dialable: n.dialable,
            observed_me: n.observed_me,
        }
    }
}

pub(crate) fn status_view(
    snap: &Snapshot,
    gatekeeper: &str,
    runtime: RuntimeStats,
    counters: &Counters,
) -> StatusView {
    let last = |m: &std::sync::Mutex<Option<String>>| m.lock().ok().and_then(|g| g.clone());
    let cut_off = cut_off_reason(
        snap,
        &runtime,
        last(&counters.last_dial_error).as_deref(),
        last(&counters.last_gatekeeper_error).as_deref(),
    );
    StatusView {
        reachability: reachability_json(snap),
        cut_off,
        id: snap.id,
        short_id: snap.id.short(),
        addr: snap.addr,
        phase: phase_name(snap.phase).to_string(),
        degree: snap.neighbours.len(),
        target_degree: snap.target_degree,
        max_degree: snap.max_degree,
        undialable_slots: snap.undialable_slots,
        gatekeeper: gatekeeper.to_string(),
        stats: snap.stats.clone(),
        runtime,
        // Filled by the status handler, which knows the share.
        share_skipped: 0,
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct ControlState {
    pub owner: mpsc::Sender<Msg>,
    pub gatekeeper: String,
    pub counters: std::sync::Arc<Counters>,
    /// Share, searches and downloads.
    pub app: std::sync::Arc<crate::control_share::App>,
    /// The token every request must carry.
    pub auth: std::sync::Arc<Auth>,
}

impl ControlState {
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, rx) = oneshot::channel();
        let ask = async {
            self.owner.send(Msg::Snapshot { reply }).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(OWNER_TIMEOUT, ask)
            .await
            .ok()
            .flatten()
    }
}

#[derive(Debug, Serialize)]
struct ErrorJson {
    error: &'static str,
    message: String,
}

pub(crate) fn error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Response {
    let body = ErrorJson {
        error: code,
        message: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

pub(crate) fn stopped() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopped",
        "the node is stopping or has stopped",
    )
}

pub(crate) fn router(state: ControlState) -> Router {
    let auth = state.auth.clone();
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/neighbors", get(neighbors))
        .route("/v1/leave", post(leave))
        .route("/metrics", get(crate::metrics::serve))
        .merge(crate::control_share::routes())
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see docs/PROTOCOL.md (GET /v1/status, /v1/neighbors, /v1/files, POST /v1/search, /v1/downloads, ...)",
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "wrong method for this endpoint",
            )
        })
        // The last layer added runs first: browser requests are refused before the token
        // is even looked at.
        .layer(middleware::from_fn_with_state(
            auth,
            crate::control_auth::require_token,
        ))
        .layer(middleware::from_fn(local_callers_only))
        .with_state(state)
}

/// Refuses what a browser could send on a web page's behalf.
async fn local_callers_only(request: Request, next: Next) -> Response {
    if request.headers().contains_key(header::ORIGIN) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin requests are refused",
        );
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Some(host) = host
        && !is_local_host(host)
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the Host header must name a loopback address",
        );
    }
    next.run(request).await
}

/// True for `localhost`, `127.0.0.1`, `[::1]` and the like, with or without a port.
fn is_local_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or("", |(name, _)| name)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn status(State(state): State<ControlState>) -> Response {
    match state.snapshot().await {
        Some(snap) => {
            let runtime = RuntimeStats::new(state.counters.as_ref(), &snap.stats);
            let mut view = status_view(&snap, &state.gatekeeper, runtime, &state.counters);
            if let Some(share) = state.app.sharing.share().await {
                view.share_skipped = share.skipped().len() as u64;
            }
            axum::Json(view).into_response()
        }
        None => stopped(),
    }
}

async fn neighbors(State(state): State<ControlState>) -> Response {
    match state.snapshot().await {
        Some(snap) => {
            let list: Vec<NeighbourJson> =
                snap.neighbours.iter().map(NeighbourJson::from).collect();
            axum::Json(list).into_response()
        }
        None => stopped(),
    }
}

async fn leave(State(state): State<ControlState>) -> Response {
    let (reply, done) = oneshot::channel();
    let ask = async {
        state
            .owner
            .send(Msg::Leave { reply: Some(reply) })
            .await
            .ok()?;
        done.await.ok()
    };
    match tokio::time::timeout(LEAVE_TIMEOUT, ask).await {
        Ok(Some(())) => axum::Json(LeaveView { left: true }).into_response(),
        _ => stopped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_local() {
        for host in [
            "127.0.0.1:7800",
            "127.0.0.1",
            "127.1.2.3:1",
            "localhost:7800",
            "LOCALHOST",
            "[::1]:7800",
            "[::1]",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["evil.example:7800", "10.0.0.1:80", "[::2]:1", "", "[::1"] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
