//! One function per endpoint: parse, validate, authenticate, then one store operation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use highway_wire::gatekeeper::{
    API_VERSION, FieldError, Health, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse,
    MAX_PAGE, PeerInfo, PeersPage, ReportRequest, ReportResponse, StatusRequest, StatusResponse,
};
use highway_wire::{NodeId, PeerAddr};

use super::{ApiError, body};
use crate::admission::{check_addrs, prefix_of, source_ip};
use crate::auth::{authenticate, new_lease};
use crate::config::{JOIN_WINDOW, REPORTS_PER_INTERVAL};
use crate::server::{App, now_ms};
use crate::store::{Auth, JoinOp, LeaveOp, PrefixLimits, ReportOp, StatusOp, Store, random_points};

/// The TCP peer of a request, as the serving loop records it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// A refused field: addresses get their own code (`bad_address`, 400), the rest
/// `invalid_field` (422).
fn field_error(e: FieldError) -> ApiError {
    match e {
        FieldError::Addr(_) => ApiError::bad_address(e.to_string()),
        other => ApiError::invalid(other.to_string()),
    }
}

/// Default page size of `GET /v1/peers`.
const DEFAULT_PAGE: usize = 100;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S: Store> App<S> {
    fn auth(
        &self,
        headers: &HeaderMap,
        path: &str,
        bytes: &[u8],
        id: &NodeId,
        ts_ms: u64,
        now: u64,
    ) -> Result<Auth, ApiError> {
        authenticate(
            headers,
            path,
            bytes,
            id,
            ts_ms,
            now,
            ms(self.config.max_clock_skew),
        )
    }

    fn tombstone_until(&self, now: u64) -> u64 {
        now + ms(self.config.tombstone_ttl())
    }

    /// The client's IP (see [`crate::admission`]).
    fn source(&self, peer: Peer, headers: &HeaderMap) -> Result<IpAddr, ApiError> {
        let Some(Extension(ConnectInfo(peer))) = peer else {
            return Err(ApiError::internal(
                "the server did not record this connection's peer address",
            ));
        };
        Ok(source_ip(peer.ip(), headers, &self.config.trusted_proxies))
    }

    /// Whether the addresses make the peer reachable (see [`check_addrs`]).
    fn check_addrs(&self, addrs: &[PeerAddr], source: IpAddr) -> Result<bool, ApiError> {
        let own = self.listen_addr.get().copied();
        check_addrs(addrs, source, own, &self.config)
            .map_err(|e| ApiError::bad_address(e.to_string()))
    }
}

pub async fn join<S: Store>(
    State(app): State<Arc<App<S>>>,
    peer: Peer,
    headers: HeaderMap,
    raw: Body,
) -> Result<Json<JoinResponse>, ApiError> {
    let bytes = body::read(&headers, raw, app.limits.header_timeout).await?;
    let req: JoinRequest = body::parse(&bytes)?;
    req.validate().map_err(field_error)?;
    let source = app.source(peer, &headers)?;
    let reachable = app.check_addrs(&req.addrs, source)?;
    let now = now_ms();
    let Auth::Signed { ts_ms } = app.auth(&headers, "/v1/join", &bytes, &req.id, req.ts_ms, now)?
    else {
        return Err(ApiError::bad_signature(
            "a join must be signed (x-highway-signature); lease tokens come from a join",
        ));
    };
    let (lease, stored_lease) = new_lease(now, ms(app.config.lease_ttl))?;
    let op = JoinOp {
        info: PeerInfo {
            id: req.id,
            addrs: req.addrs,
            neighbours: req.neighbours,
            capacity: req.capacity,
            reachable,
        },
        signed_ts_ms: ts_ms,
        lease: stored_lease,
        want: usize::from(req.want),
        now_ms: now,
        deadline_ms: now + ms(app.config.expires_after()),
        tiebreak: rand::random(),
        scan_start: rand::random(),
        random_points: random_points(
            &mut rand::rng(),
            usize::from(req.want),
            app.config.random_candidates,
        ),
        prefix: prefix_of(source, app.config.ipv4_prefix, app.config.ipv6_prefix),
        limits: Some(PrefixLimits {
            max_live: app.config.max_peers_per_prefix,
            max_joins: app.config.max_joins_per_prefix,
            window_ms: ms(JOIN_WINDOW),
        }),
    };
    let candidates = app.store.join(op).await?;
    Ok(Json(JoinResponse {
        v: API_VERSION,
        lease,
        candidates,
        status_interval_ms: ms(app.config.status_interval),
        expires_after_ms: ms(app.config.expires_after()),
        observed_ip: Some(source),
        reachable,
    }))
}

pub async fn status<S: Store>(
    State(app): State<Arc<App<S>>>,
    peer: Peer,
    headers: HeaderMap,
    raw: Body,
) -> Result<Json<StatusResponse>, ApiError> {
    let bytes = body::read(&headers, raw, app.limits.header_timeout).await?;
    let req: StatusRequest = body::parse(&bytes)?;
    req.validate().map_err(field_error)?;
    let source = app.source(peer, &headers)?;
    let reachable = app.check_addrs(&req.addrs, source)?;
    let now = now_ms();
    let auth = app.auth(&headers, "/v1/status", &bytes, &req.id, req.ts_ms, now)?;
    let (lease, new_lease) = match auth {
        Auth::Signed { .. } => {
            let (lease, stored) = new_lease(now, ms(app.config.lease_ttl))?;
            (Some(lease), Some(stored))
        }
        Auth::Lease { .. } => (None, None),
    };
    let op = StatusOp {
        info: PeerInfo {
            id: req.id,
            addrs: req.addrs,
            neighbours: req.neighbours,
            capacity: req.capacity,
            reachable,
        },
        ts_ms: req.ts_ms,
        neighbour_ids: req.neighbour_ids,
        auth,
        new_lease,
        now_ms: now,
        deadline_ms: now + ms(app.config.expires_after()),
        tiebreak: rand::random(),
        // Also while the store is still marked down: this status may be one of the first
        // after an outage, arriving before the sweeper (or /healthz) noticed the store back.
        accept_late: app.health.is_down()
            || app
                .health
                .recently_recovered(now, ms(app.config.expires_after())),
        tombstone_ms: app.tombstone_until(now),
    };
    app.store.status(op).await?;
    Ok(Json(StatusResponse {
        v: API_VERSION,
        status_interval_ms: ms(app.config.status_interval),
        expires_after_ms: ms(app.config.expires_after()),
        lease,
        observed_ip: Some(source),
        reachable,
    }))
}

pub async fn report<S: Store>(
    State(app): State<Arc<App<S>>>,
    headers: HeaderMap,
    raw: Body,
) -> Result<(StatusCode, Json<ReportResponse>), ApiError> {
    let bytes = body::read(&headers, raw, app.limits.header_timeout).await?;
    let req: ReportRequest = body::parse(&bytes)?;
    req.validate().map_err(field_error)?;
    let now = now_ms();
    let auth = app.auth(&headers, "/v1/report", &bytes, &req.id, req.ts_ms, now)?;
    let op = ReportOp {
        reporter: req.id,
        auth,
        target: req.target,
        now_ms: now,
        suspect_deadline_ms: now + ms(app.config.report_grace),
        quorum: app.config.report_quorum,
        window_ms: ms(app.config.report_window()),
        interval_ms: ms(app.config.status_interval),
        max_per_interval: REPORTS_PER_INTERVAL,
    };
    let outcome = app.store.report(op).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReportResponse {
            v: API_VERSION,
            target_suspected: outcome.suspected,
            reporters: outcome.reporters,
        }),
    ))
}

pub async fn leave<S: Store>(
    State(app): State<Arc<App<S>>>,
    headers: HeaderMap,
    raw: Body,
) -> Result<Json<LeaveResponse>, ApiError> {
    let bytes = body::read(&headers, raw, app.limits.header_timeout).await?;
    let req: LeaveRequest = body::parse(&bytes)?;
    let now = now_ms();
    let auth = app.auth(&headers, "/v1/leave", &bytes, &req.id, req.ts_ms, now)?;
    let op = LeaveOp {
        id: req.id,
        auth,
        now_ms: now,
        tombstone_ms: app.tombstone_until(now),
    };
    let removed = app.store.leave(op).await?;
    Ok(Json(LeaveResponse {
        v: API_VERSION,
        removed,
    }))
}

/// `after` and `limit` from the query string; anything else there is refused.
fn page_query(query: Option<&str>) -> Result<(Option<NodeId>, usize), ApiError> {
    let mut after = None;
    let mut limit = DEFAULT_PAGE;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => {
                after = Some(value.parse().map_err(|e| {
                    ApiError::invalid(format!("after: must be a peer id (64 hex): {e}"))
                })?);
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!("limit: must be between 1 and {MAX_PAGE}"))
                    })?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {other:?}; use after and limit"
                )));
            }
        }
    }
    Ok((after, limit))
}

pub async fn peers<S: Store>(
    State(app): State<Arc<App<S>>>,
    RawQuery(query): RawQuery,
) -> Result<Json<PeersPage>, ApiError> {
    let (after, limit) = page_query(query.as_deref())?;
    let page = app.store.peers(after, limit, now_ms()).await?;
    Ok(Json(PeersPage {
        v: API_VERSION,
        peers: page.peers,
        next: page.next,
    }))
}

pub async fn healthz<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    let store = app.store.kind().to_string();
    match app.store.ping().await {
        Ok(()) => {
            app.health.mark_up(now_ms());
            Json(Health {
                status: "ok".into(),
                store,
                error: None,
            })
            .into_response()
        }
        Err(e) => {
            app.health.mark_down();
            let body = Health {
                status: "unavailable".into(),
                store,
                error: Some(e.to_string()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /livez`: the process answers HTTP. Never touches the store, so a liveness probe on
/// it does not restart every replica during a store outage (which a restart cannot fix).
pub async fn livez() -> Response {
    Json(serde_json::json!({"status": "alive"})).into_response()
}

/// `GET /metrics`: OpenMetrics when the scraper accepts it (Prometheus does), else the
/// Prometheus text format (curl, promtool, older scrapers).
pub async fn metrics<S: Store>(State(app): State<Arc<App<S>>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, content_type)], app.metrics.encode()).into_response()
    } else {
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        let body = app.metrics.encode_prometheus();
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_query_defaults_and_bounds() {
        assert_eq!(page_query(None).unwrap(), (None, DEFAULT_PAGE));
        assert_eq!(page_query(Some("limit=5")).unwrap(), (None, 5));
        assert!(page_query(Some("limit=0")).is_err());
        assert!(page_query(Some(&format!("limit={}", MAX_PAGE + 1))).is_err());
        assert!(page_query(Some("after=xyz")).is_err());
        assert!(page_query(Some("offset=3")).is_err());
    }
}
