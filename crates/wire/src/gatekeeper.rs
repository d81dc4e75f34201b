//! The Gatekeeper's HTTP/JSON API, version 1.
//!
//! Goals: a peer can register, learn candidate neighbours, keep its entry alive and leave,
//! and nobody but the owner of a key can change that key's entry. Non-goals: confidentiality
//! (run it behind TLS when that matters) and peer-to-peer traffic.
//!
//! Flow:
//! 1. `POST /v1/join`, signed with the peer's key: the Gatekeeper registers the peer and
//!    answers with candidates and a lease token.
//! 2. `POST /v1/status` every `status_interval_ms`, authenticated with the lease token
//!    (`Authorization: Bearer ...`) or a signature; a signed status also renews the lease.
//! 3. `POST /v1/report` when a neighbour was found dead: a hint, not a removal.
//! 4. `POST /v1/leave` on shutdown. A peer that stops sending status expires on its own.
//!
//! Every body carries `"v": 1`. A signature is ed25519 over [`signing_message`] and
//! travels hex-encoded in the [`SIGNATURE_HEADER`] header; the body's `ts_ms` must be within
//! the Gatekeeper's clock-skew window and newer than any signed request it accepted from
//! that key before, so a captured request cannot be replayed.

use serde::{Deserialize, Serialize};

use crate::{NodeId, PeerAddr};

/// The only API version this crate speaks.
pub const API_VERSION: u16 = 1;
/// Largest request body the Gatekeeper reads; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most addresses one peer may publish.
pub const MAX_ADDRS: usize = 4;
/// Most neighbour ids one status may carry.
pub const MAX_NEIGHBOUR_IDS: usize = 64;
/// Largest neighbour capacity a peer may declare.
pub const MAX_CAPACITY: u16 = 256;
/// Most candidates one join may ask for.
pub const MAX_WANT: u16 = 32;
/// Largest page `GET /v1/peers` returns.
pub const MAX_PAGE: usize = 1000;
/// Header carrying the hex ed25519 signature of a signed request.
pub const SIGNATURE_HEADER: &str = "x-highway-signature";
/// Domain separator so a Gatekeeper signature can never be mistaken for another message.
pub const SIGNING_DOMAIN: &[u8] = b"highway-gatekeeper-v1\0";

/// The exact bytes a peer signs: domain, request path, a zero byte, then the raw body.
pub fn signing_message(path: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_DOMAIN.len() + path.len() + 1 + body.len());
    msg.extend_from_slice(SIGNING_DOMAIN);
    msg.extend_from_slice(path.as_bytes());
    msg.push(0);
    msg.extend_from_slice(body);
    msg
}

/// Only the `v` field, read first so an unknown version is reported as such rather than
/// as whatever field the newer format changed.
#[derive(Debug, Deserialize)]
pub struct VersionProbe {
    pub v: u16,
}

/// A peer as the Gatekeeper lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: NodeId,
    pub addrs: Vec<PeerAddr>,
    pub neighbours: u16,
    pub capacity: u16,
    /// Others can dial `addrs`: the Gatekeeper saw the peer's requests come from one of
    /// them (or trusts claims). A peer that cannot be dialled is never offered as a
    /// candidate; it finds neighbours by dialling out. Absent (older Gatekeepers): true.
    #[serde(default = "yes")]
    pub reachable: bool,
}

fn yes() -> bool {
    true
}

impl PeerInfo {
    pub fn has_free_slot(&self) -> bool {
        self.neighbours < self.capacity
    }
}

/// A lease token: proof of a signed join, cheaper to check than a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// 64 hex characters; send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_in_ms: u64,
}

/// `POST /v1/join` (signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub v: u16,
    pub id: NodeId,
    pub ts_ms: u64,
    pub addrs: Vec<PeerAddr>,
    pub neighbours: u16,
    pub capacity: u16,
    /// How many candidates the peer would like (at most [`MAX_WANT`]).
    pub want: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub v: u16,
    pub lease: Lease,
    pub candidates: Vec<PeerInfo>,
    /// How often the Gatekeeper expects a status.
    pub status_interval_ms: u64,
    /// After this long without a status the entry expires.
    pub expires_after_ms: u64,
    /// The address this request came from, as the Gatekeeper saw it: the peer's public
    /// IP when it sits behind a NAT. Absent from older Gatekeepers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ip: Option<std::net::IpAddr>,
    /// Whether the Gatekeeper offers this peer to others as dialable ([`PeerInfo::reachable`]).
    #[serde(default = "yes")]
    pub reachable: bool,
}

/// `POST /v1/status` (lease token or signed). `ts_ms` must be newer than that of the last
/// status the Gatekeeper accepted for `id` (a replayed body is refused), and only a signed
/// status may change `addrs` (docs/PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub v: u16,
    pub id: NodeId,
    pub ts_ms: u64,
    pub addrs: Vec<PeerAddr>,
    pub neighbours: u16,
    pub capacity: u16,
    #[serde(default)]
    pub neighbour_ids: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub v: u16,
    pub status_interval_ms: u64,
    pub expires_after_ms: u64,
    /// A fresh lease, present when the status was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// As in [`JoinResponse::observed_ip`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ip: Option<std::net::IpAddr>,
    /// As in [`JoinResponse::reachable`]: the verdict on the addresses stored for the peer.
    #[serde(default = "yes")]
    pub reachable: bool,
}

/// `POST /v1/report` (lease token or signed): `id` found `target` dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub v: u16,
    pub id: NodeId,
    pub ts_ms: u64,
    pub target: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    pub v: u16,
    /// True when the target is now suspected (no longer offered as a candidate until it
    /// sends a status); false when the target was already gone, or when the report was
    /// recorded but too few distinct neighbours have reported the target yet (the quorum).
    pub target_suspected: bool,
    /// Distinct peers that reported the target within the report window, this one
    /// included; 0 when the target was already gone. Absent from older Gatekeepers.
    #[serde(default)]
    pub reporters: u32,
}

/// `POST /v1/leave` (lease token or signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub v: u16,
    pub id: NodeId,
    pub ts_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub v: u16,
    pub removed: bool,
}

/// `GET /v1/peers?after=ID&limit=N`: live peers in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersPage {
    pub v: u16,
    pub peers: Vec<PeerInfo>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `unavailable` when the store cannot be reached.
    pub status: String,
    /// `embedded` or `redis`.
    pub store: String,
    /// Why the store is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Machine-readable reason in every error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    InvalidField,
    UnsupportedVersion,
    BodyTooLarge,
    MissingAuth,
    BadSignature,
    StaleRequest,
    Replayed,
    BadLease,
    LeaseExpired,
    UnknownPeer,
    Expired,
    NotANeighbour,
    /// An address is not one a peer can be dialled at (unspecified, multicast, broadcast,
    /// link-local, port 0), is the Gatekeeper's own, or is not the sender's own address.
    BadAddress,
    /// Changing the published addresses needs a signed status; a lease token cannot.
    SignatureRequired,
    /// Too many reports from this peer, or too many joins from its network, for now.
    RateLimited,
    /// The sender's network already has as many live registrations as allowed.
    TooManyPeers,
    NotFound,
    MethodNotAllowed,
    StoreUnavailable,
    Overloaded,
    /// The request body did not arrive within the deadline (408).
    RequestTimeout,
    Internal,
}

impl ErrorCode {
    /// The snake_case name, as in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidField => "invalid_field",
            Self::UnsupportedVersion => "unsupported_version",
            Self::BodyTooLarge => "body_too_large",
            Self::MissingAuth => "missing_auth",
            Self::BadSignature => "bad_signature",
            Self::StaleRequest => "stale_request",
            Self::Replayed => "replayed",
            Self::BadLease => "bad_lease",
            Self::LeaseExpired => "lease_expired",
            Self::UnknownPeer => "unknown_peer",
            Self::Expired => "expired",
            Self::NotANeighbour => "not_a_neighbour",
            Self::BadAddress => "bad_address",
            Self::SignatureRequired => "signature_required",
            Self::RateLimited => "rate_limited",
            Self::TooManyPeers => "too_many_peers",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Overloaded => "overloaded",
            Self::RequestTimeout => "request_timeout",
            Self::Internal => "internal",
        }
    }
}

/// Body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// What was wrong and what to do about it, for a human.
    pub message: String,
}

/// Why a well-formed request is still unacceptable. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("addrs: give between 1 and {MAX_ADDRS} addresses, got {0}")]
    AddrCount(usize),
    #[error("addrs: {0}")]
    Addr(#[from] crate::AddrError),
    #[error("capacity: must be between 1 and {MAX_CAPACITY}, got {0}")]
    Capacity(u16),
    #[error("neighbours: {0} is more than the capacity limit {MAX_CAPACITY}")]
    Neighbours(u16),
    #[error("want: must be at most {MAX_WANT}, got {0}")]
    Want(u16),
    #[error("neighbour_ids: at most {MAX_NEIGHBOUR_IDS} ids, got {0}")]
    NeighbourIds(usize),
    #[error("neighbour_ids: a peer cannot list itself")]
    SelfNeighbour,
    #[error("target: a peer cannot report itself")]
    SelfReport,
}

fn validate_common(addrs: &[PeerAddr], neighbours: u16, capacity: u16) -> Result<(), FieldError> {
    if addrs.is_empty() || addrs.len() > MAX_ADDRS {
        return Err(FieldError::AddrCount(addrs.len()));
    }
    for addr in addrs {
        addr.validate()?;
    }
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(FieldError::Capacity(capacity));
    }
    if neighbours > MAX_CAPACITY {
        return Err(FieldError::Neighbours(neighbours));
    }
    Ok(())
}

impl JoinRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_common(&self.addrs, self.neighbours, self.capacity)?;
        if self.want > MAX_WANT {
            return Err(FieldError::Want(self.want));
        }
        Ok(())
    }
}

impl StatusRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_common(&self.addrs, self.neighbours, self.capacity)?;
        if self.neighbour_ids.len() > MAX_NEIGHBOUR_IDS {
            return Err(FieldError::NeighbourIds(self.neighbour_ids.len()));
        }
        if self.neighbour_ids.contains(&self.id) {
            return Err(FieldError::SelfNeighbour);
        }
        Ok(())
    }
}

impl ReportRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.id == self.target {
            return Err(FieldError::SelfReport);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn id(seed: u8) -> NodeId {
        NodeId::from_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    fn join() -> JoinRequest {
        JoinRequest {
            v: API_VERSION,
            id: id(1),
            ts_ms: 1_700_000_000_000,
            addrs: vec![PeerAddr::new("127.0.0.1".parse().unwrap(), 4000, 4001)],
            neighbours: 0,
            capacity: 5,
            want: 5,
        }
    }

    #[test]
    fn signing_message_binds_path_and_body() {
        let a = signing_message("/v1/join", b"{}");
        let b = signing_message("/v1/leave", b"{}");
        assert_ne!(a, b);
        assert!(a.starts_with(SIGNING_DOMAIN));
        assert!(a.ends_with(b"/v1/join\0{}"));
    }

    #[test]
    fn join_request_json_round_trips() {
        let req = join();
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<JoinRequest>(&json).unwrap(), req);
    }

    #[test]
    fn join_validation_catches_each_bad_field() {
        assert_eq!(join().validate(), Ok(()));
        let mut r = join();
        r.addrs.clear();
        assert_eq!(r.validate(), Err(FieldError::AddrCount(0)));
        let mut r = join();
        r.capacity = 0;
        assert_eq!(r.validate(), Err(FieldError::Capacity(0)));
        let mut r = join();
        r.want = MAX_WANT + 1;
        assert_eq!(r.validate(), Err(FieldError::Want(MAX_WANT + 1)));
        let mut r = join();
        r.addrs[0].ip = "0.0.0.0".parse().unwrap();
        assert!(matches!(r.validate(), Err(FieldError::Addr(_))));
    }

    #[test]
    fn status_cannot_list_itself_or_too_many_neighbours() {
        let j = join();
        let mut s = StatusRequest {
            v: API_VERSION,
            id: j.id,
            ts_ms: j.ts_ms,
            addrs: j.addrs,
            neighbours: 1,
            capacity: 5,
            neighbour_ids: vec![id(1)],
        };
        assert_eq!(s.validate(), Err(FieldError::SelfNeighbour));
        s.neighbour_ids = vec![id(2); MAX_NEIGHBOUR_IDS + 1];
        assert_eq!(
            s.validate(),
            Err(FieldError::NeighbourIds(MAX_NEIGHBOUR_IDS + 1))
        );
        s.neighbour_ids = vec![id(2)];
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn error_codes_are_snake_case() {
        let body = ErrorBody {
            error: ErrorCode::BadSignature,
            message: "x".into(),
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(json, r#"{"error":"bad_signature","message":"x"}"#);
        for code in [
            ErrorCode::NotANeighbour,
            ErrorCode::StoreUnavailable,
            ErrorCode::Replayed,
            ErrorCode::BadAddress,
            ErrorCode::SignatureRequired,
            ErrorCode::RateLimited,
            ErrorCode::TooManyPeers,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
