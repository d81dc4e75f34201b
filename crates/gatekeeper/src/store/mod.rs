//! Where registrations live. Both backends implement [`Store`] with the same semantics,
//! and one conformance suite (tests/store_conformance.rs) holds them to it.
//!
//! The rules every backend applies atomically, per operation:
//! - A signed request is accepted only when its timestamp is newer than the last signed
//!   request accepted for that key, even across a leave or a purge (a tombstone keeps the
//!   timestamp for [`crate::GatekeeperConfig::tombstone_ttl`]).
//! - A lease-authenticated request must present the current lease, before it expires.
//! - An entry whose deadline passed is never a candidate, and is purged.
//! - Every status carries a timestamp newer than the last status accepted for that key,
//!   lease-authenticated or signed, so a captured status body cannot be replayed. A
//!   lease-authenticated status cannot change the published addresses (that needs a
//!   signature).
//! - A report counts only when reporter and target are mutual neighbours: the reporter's
//!   last status lists the target and the target's last status lists the reporter, and the
//!   reporter's own entry has not expired. A reporter sends at most one report per target
//!   and [`crate::config::REPORTS_PER_INTERVAL`] in all per status interval. Once
//!   `quorum` distinct reporters reported a target within the report window, the target is
//!   suspected: not a candidate, and a shorter deadline, until its next status clears it.
//! - With [`PrefixLimits`], a join is refused when its network already holds `max_live`
//!   live registrations (re-joins of a registered id from the same network excepted), or
//!   made `max_joins` joins within the window.
//! - Join answers hold at most [`candidates::MAX_PER_PREFIX`] peers of one network while
//!   peers of other networks can fill them; only then the rest is filled from any network.

mod candidates;
mod embedded;
mod journal;
mod redis;

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;

pub use candidates::{CandidateKey, MAX_PER_PREFIX, random_points};
pub use embedded::EmbeddedStore;
pub use journal::JournalError;
pub use redis::{RedisOptions, RedisStore};

/// How a mutation proved it comes from the key's owner (the signature itself was checked
/// before the store is called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Signed { ts_ms: u64 },
    Lease { token_hash: [u8; 32] },
}

/// A lease the store should remember: the hash of the token, never the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLease {
    pub token_hash: [u8; 32],
    pub expires_ms: u64,
}

#[derive(Debug, Clone)]
pub struct JoinOp {
    pub info: PeerInfo,
    pub signed_ts_ms: u64,
    pub lease: NewLease,
    pub want: usize,
    pub now_ms: u64,
    pub deadline_ms: u64,
    /// Random tie-break among equally loaded peers, and random start of the scan.
    pub tiebreak: u32,
    pub scan_start: u32,
    /// Points in id order, drawn at random: for each, the first live, unsuspected peer at
    /// or after it (wrapping) is a candidate, full or not (a full peer answers a dial
    /// with its neighbours, so the joiner still lands in that random part of the overlay).
    /// They come first, interleaved with the least loaded. Empty: least loaded only.
    /// See [`candidates::random_points`].
    pub random_points: Vec<[u8; 32]>,
    /// The network this registration counts toward (`crate::admission::prefix_of`), for the
    /// per-network limits and the diversity of answers. Empty: none (never limited).
    pub prefix: String,
    /// Limits on the network's registrations; `None` (the simulator) applies none.
    pub limits: Option<PrefixLimits>,
}

/// Per-network limits on joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLimits {
    /// Most live registrations of one network.
    pub max_live: u32,
    /// Most joins of one network per `window_ms`.
    pub max_joins: u32,
    pub window_ms: u64,
}

#[derive(Debug, Clone)]
pub struct StatusOp {
    pub info: PeerInfo,
    /// The body's timestamp: must be newer than the last accepted status's, whatever the
    /// authentication.
    pub ts_ms: u64,
    pub neighbour_ids: Vec<NodeId>,
    pub auth: Auth,
    pub new_lease: Option<NewLease>,
    pub now_ms: u64,
    pub deadline_ms: u64,
    pub tiebreak: u32,
    /// Accept a status that arrives after the deadline (the store itself was unreachable
    /// for part of that time, so the miss was not the peer's fault).
    pub accept_late: bool,
    /// Until when a tombstone keeps the entry's last signed timestamp if it expires here.
    pub tombstone_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ReportOp {
    pub reporter: NodeId,
    pub auth: Auth,
    pub target: NodeId,
    pub now_ms: u64,
    /// The target's deadline becomes at most this.
    pub suspect_deadline_ms: u64,
    /// Distinct reporters needed before the target is suspected.
    pub quorum: u32,
    /// Reports older than this long no longer count toward the quorum.
    pub window_ms: u64,
    /// The reporter's rate limit: one report per target, and `max_per_interval` in all,
    /// per `interval_ms`.
    pub interval_ms: u64,
    pub max_per_interval: u32,
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The target is now suspected (the quorum was reached).
    pub suspected: bool,
    /// Distinct reporters within the window, this one included; 0 when the target is gone.
    pub reporters: u32,
}

impl ReportOutcome {
    pub const GONE: Self = Self {
        suspected: false,
        reporters: 0,
    };
}

#[derive(Debug, Clone)]
pub struct LeaveOp {
    pub id: NodeId,
    pub auth: Auth,
    pub now_ms: u64,
    pub tombstone_ms: u64,
}

/// One page of live peers in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub peers: Vec<PeerInfo>,
    pub next: Option<NodeId>,
}

/// Why a store operation did not happen. Nothing was changed, except that a validly signed
/// request's timestamp counts as used even when the operation is then refused (so the
/// same signed request can never be tried twice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no entry for this peer; join first")]
    UnknownPeer,
    #[error("the entry expired after missed statuses; join again")]
    Expired,
    #[error("the request's timestamp is not newer than one already accepted for this key")]
    Replayed,
    #[error("the lease token does not match this peer's current lease")]
    BadLease,
    #[error("the lease token expired; sign the request to get a new one")]
    LeaseExpired,
    #[error(
        "the reporter and the target are not mutual neighbours: each one's last status must \
         list the other"
    )]
    NotANeighbour,
    #[error("a lease token cannot change the published addresses; sign this status")]
    AddressChangeUnsigned,
    #[error(
        "too many reports from this peer: at most one per target and a few in all per status interval"
    )]
    ReportRateLimited,
    #[error("too many joins from this network; retry later")]
    JoinRateLimited,
    #[error("this network already has as many live registrations as the Gatekeeper allows")]
    TooManyPeers,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// Checks `auth` against what the store holds for a peer.
pub(crate) fn check_auth(
    auth: Auth,
    last_signed_ts_ms: u64,
    lease: &NewLease,
    now_ms: u64,
) -> Result<(), StoreError> {
    match auth {
        Auth::Signed { ts_ms } if ts_ms <= last_signed_ts_ms => Err(StoreError::Replayed),
        Auth::Signed { .. } => Ok(()),
        // blake3::Hash compares in constant time.
        Auth::Lease { token_hash }
            if blake3::Hash::from_bytes(token_hash)
                != blake3::Hash::from_bytes(lease.token_hash) =>
        {
            Err(StoreError::BadLease)
        }
        Auth::Lease { .. } if lease.expires_ms <= now_ms => Err(StoreError::LeaseExpired),
        Auth::Lease { .. } => Ok(()),
    }
}

/// The registry's storage. Implementations are cheap to clone handles onto shared state,
/// so any number of HTTP workers (and Gatekeeper replicas, for Redis) can use them.
pub trait Store: Clone + Send + Sync + 'static {
    /// `embedded` or `redis`.
    fn kind(&self) -> &'static str;

    /// Registers (or re-registers) a peer and picks up to `want` candidates for it.
    fn join(&self, op: JoinOp) -> impl Future<Output = Result<Vec<PeerInfo>, StoreError>> + Send;

    fn status(&self, op: StatusOp) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a report; the target is suspected once the quorum is reached.
    fn report(
        &self,
        op: ReportOp,
    ) -> impl Future<Output = Result<ReportOutcome, StoreError>> + Send;

    /// Returns whether an entry was removed.
    fn leave(&self, op: LeaveOp) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Live peers with ids after `after`, at most `limit`.
    fn peers(
        &self,
        after: Option<NodeId>,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Removes up to `limit` expired entries; returns how many.
    fn purge_expired(
        &self,
        now_ms: u64,
        limit: usize,
        tombstone_ms: u64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Number of entries whose deadline has not passed.
    fn live_count(&self, now_ms: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Cheap reachability check for `/healthz`.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
