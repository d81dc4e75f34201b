//! The Gatekeeper, in-process: the real registry logic of `highway_gatekeeper`'s embedded
//! store, judged against virtual time.
//!
//! Every store operation already takes its "now" as an argument, and the embedded store
//! never waits, so the simulator calls it directly — no HTTP, no seam in the gatekeeper
//! crate. What the HTTP handlers add around the store (deadlines from the configuration,
//! lease tokens, random tie-breaks) is redone here with the simulation's RNG. Signatures
//! are not computed: both ends are honest here, and the store only ever sees the verified
//! outcome (`Auth`).

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use highway_gatekeeper::GatekeeperConfig;
use highway_gatekeeper::admission::prefix_of;
use highway_gatekeeper::config::REPORTS_PER_INTERVAL;
use highway_gatekeeper::store::{
    Auth, EmbeddedStore, JoinOp, LeaveOp, NewLease, ReportOp, StatusOp, Store, StoreError,
    random_points,
};
use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::SimTime;

/// Unix time (ms) of the start of every run: 2026-01-01. Any fixed value works; it only
/// has to look like a clock to the store.
const EPOCH_MS: u64 = 1_767_225_600_000;
/// Entries purged per sweep (`gatekeeper/src/server.rs`, `PURGE_BATCH`).
const PURGE_BATCH: usize = 10_000;

/// Runs a future of the embedded store, which completes on its first poll.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the embedded store never waits"),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The lease a peer holds: the hash of its token (all the store compares) and when the
/// client believes it expires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldLease {
    pub token_hash: [u8; 32],
    pub expires: SimTime,
}

/// One request, as built by the client when it is sent.
#[derive(Debug)]
pub(crate) enum Request {
    /// A signed join; `for_core` when the core asked for candidates (else it is the
    /// status loop joining again after the Gatekeeper forgot it).
    Join {
        info: PeerInfo,
        ts_ms: u64,
        want: u16,
        for_core: bool,
    },
    Status {
        info: PeerInfo,
        /// The body's timestamp, newer than any this peer sent before.
        ts_ms: u64,
        neighbour_ids: Vec<NodeId>,
        auth: Auth,
    },
    Report {
        reporter: NodeId,
        target: NodeId,
        auth: Auth,
    },
    Leave {
        id: NodeId,
        auth: Auth,
    },
}

/// The Gatekeeper's answer, as the client sees it.
#[derive(Debug)]
pub(crate) enum Response {
    Joined {
        candidates: Vec<PeerInfo>,
        lease: HeldLease,
        for_core: bool,
    },
    JoinRefused {
        for_core: bool,
    },
    StatusAccepted {
        lease: Option<HeldLease>,
    },
    /// The entry expired or is unknown: join again.
    Forgotten,
    StatusRefused,
    /// Report or leave, whatever the outcome (the runtime only logs it).
    Done,
    /// No answer within the client's timeouts (Gatekeeper down or cut off).
    NoAnswer(CallKind),
}

/// Which call went unanswered, for the client to react as the runtime does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A join the core asked for.
    CoreJoin,
    /// The status loop's join after the Gatekeeper forgot the peer.
    Rejoin,
    Status,
    /// A report or a leave.
    Other,
}

impl Request {
    pub fn kind(&self) -> CallKind {
        match self {
            Request::Join { for_core: true, .. } => CallKind::CoreJoin,
            Request::Join { .. } => CallKind::Rejoin,
            Request::Status { .. } => CallKind::Status,
            Request::Report { .. } | Request::Leave { .. } => CallKind::Other,
        }
    }
}

/// Counters of what the Gatekeeper did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatekeeperStats {
    pub joins: u64,
    pub statuses: u64,
    pub reports: u64,
    pub leaves: u64,
    pub refusals: u64,
    pub purged: u64,
    pub unanswered: u64,
}

#[derive(Debug)]
pub(crate) struct GatekeeperSim {
    store: EmbeddedStore,
    pub config: GatekeeperConfig,
    pub stats: GatekeeperStats,
}

impl GatekeeperSim {
    pub fn new(config: GatekeeperConfig) -> Self {
        Self {
            store: EmbeddedStore::in_memory(),
            config,
            stats: GatekeeperStats::default(),
        }
    }

    /// The clock both the peers and the Gatekeeper read: the same, so no skew.
    pub fn unix_ms(now: SimTime) -> u64 {
        EPOCH_MS + now.as_millis()
    }

    fn new_lease(&self, now: SimTime, rng: &mut ChaCha8Rng) -> (NewLease, HeldLease) {
        let token: [u8; 32] = rng.random();
        let token_hash = *blake3::hash(&token).as_bytes();
        let stored = NewLease {
            token_hash,
            expires_ms: Self::unix_ms(now) + ms(self.config.lease_ttl),
        };
        let held = HeldLease {
            token_hash,
            expires: now + self.config.lease_ttl,
        };
        (stored, held)
    }

    /// Applies `req` as the HTTP handlers would, at the instant it arrives.
    pub fn handle(&mut self, now: SimTime, req: Request, rng: &mut ChaCha8Rng) -> Response {
        let now_ms = Self::unix_ms(now);
        let deadline_ms = now_ms + ms(self.config.expires_after());
        let tombstone_ms = now_ms + ms(self.config.tombstone_ttl());
        match req {
            Request::Join {
                info,
                ts_ms,
                want,
                for_core,
            } => {
                self.stats.joins += 1;
                let (lease, held) = self.new_lease(now, rng);
                // Every simulated host is its own network (a /32): honest peers in one
                // address block would otherwise be spread out of answers they belong in.
                let prefix = info
                    .addrs
                    .first()
                    .map(|a| prefix_of(a.ip, 32, 128))
                    .unwrap_or_default();
                let op = JoinOp {
                    info,
                    signed_ts_ms: ts_ms,
                    lease,
                    want: usize::from(want),
                    now_ms,
                    deadline_ms,
                    tiebreak: rng.random(),
                    scan_start: rng.random(),
                    random_points: random_points(
                        rng,
                        usize::from(want),
                        self.config.random_candidates,
                    ),
                    prefix,
                    limits: None,
                };
                match ready(self.store.join(op)) {
                    Ok(candidates) => Response::Joined {
                        candidates,
                        lease: held,
                        for_core,
                    },
                    Err(_) => {
                        self.stats.refusals += 1;
                        Response::JoinRefused { for_core }
                    }
                }
            }
            Request::Status {
                info,
                ts_ms,
                neighbour_ids,
                auth,
            } => {
                self.stats.statuses += 1;
                let (new_lease, held) = match auth {
                    Auth::Signed { .. } => {
                        let (stored, held) = self.new_lease(now, rng);
                        (Some(stored), Some(held))
                    }
                    Auth::Lease { .. } => (None, None),
                };
                let op = StatusOp {
                    info,
                    ts_ms,
                    neighbour_ids,
                    auth,
                    new_lease,
                    now_ms,
                    deadline_ms,
                    tiebreak: rng.random(),
                    accept_late: false,
                    tombstone_ms,
                };
                match ready(self.store.status(op)) {
                    Ok(()) => Response::StatusAccepted { lease: held },
                    Err(StoreError::Expired | StoreError::UnknownPeer) => {
                        self.stats.refusals += 1;
                        Response::Forgotten
                    }
                    Err(_) => {
                        self.stats.refusals += 1;
                        Response::StatusRefused
                    }
                }
            }
            Request::Report {
                reporter,
                target,
                auth,
            } => {
                self.stats.reports += 1;
                let op = ReportOp {
                    reporter,
                    auth,
                    target,
                    now_ms,
                    suspect_deadline_ms: now_ms + ms(self.config.report_grace),
                    quorum: self.config.report_quorum,
                    window_ms: ms(self.config.report_window()),
                    interval_ms: ms(self.config.status_interval),
                    max_per_interval: REPORTS_PER_INTERVAL,
                };
                if ready(self.store.report(op)).is_err() {
                    self.stats.refusals += 1;
                }
                Response::Done
            }
            Request::Leave { id, auth } => {
                self.stats.leaves += 1;
                let op = LeaveOp {
                    id,
                    auth,
                    now_ms,
                    tombstone_ms,
                };
                if ready(self.store.leave(op)).is_err() {
                    self.stats.refusals += 1;
                }
                Response::Done
            }
        }
    }

    /// One sweep of the server's sweeper: purge what expired.
    pub fn sweep(&mut self, now: SimTime) {
        let now_ms = Self::unix_ms(now);
        let tombstone_ms = now_ms + ms(self.config.tombstone_ttl());
        if let Ok(n) = ready(self.store.purge_expired(now_ms, PURGE_BATCH, tombstone_ms)) {
            self.stats.purged += n as u64;
        }
    }

    /// Entries the Gatekeeper holds as live.
    pub fn live_count(&self, now: SimTime) -> u64 {
        ready(self.store.live_count(Self::unix_ms(now))).unwrap_or(0)
    }
}
