//! One conformance suite for every [`Store`] backend, driven directly through the trait with
//! explicit `now_ms` values (deterministic time). The `conformance!` macro at the bottom
//! instantiates each case for the embedded in-memory store and for Redis (a real
//! `redis-server` per test, see `support`).

#[macro_use]
mod support;

use std::collections::BTreeSet;

use std::sync::atomic::{AtomicU64, Ordering};

use highway_gatekeeper::config::REPORTS_PER_INTERVAL;
use highway_gatekeeper::store::{
    Auth, JoinOp, LeaveOp, NewLease, PrefixLimits, ReportOp, ReportOutcome, StatusOp,
};
use highway_gatekeeper::{EmbeddedStore, Store, StoreError};
use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;

/// An arbitrary "now" for the tests; everything else is relative to it.
const T0: u64 = 1_700_000_000_000;
/// Entries expire this long after their last status.
const EXPIRY: u64 = 300;
/// How long a reported peer keeps its entry without a status.
const GRACE: u64 = 250;
const LEASE_TTL: u64 = 60_000;
const TOMB_TTL: u64 = 600_000;

/// A test peer: its id, address host, current lease hash and candidate tie-break.
#[derive(Debug, Clone)]
struct Peer {
    seed: u64,
    id: NodeId,
    host: u8,
    lease: [u8; 32],
    tiebreak: u32,
    /// Its network: its own unless a case puts several peers in one.
    prefix: String,
}

fn lease_hash(seed: u64, generation: u32) -> [u8; 32] {
    *blake3::hash(format!("lease-{seed}-{generation}").as_bytes()).as_bytes()
}

/// Spreads small integers over the whole u32 range (Fibonacci hashing).
fn spread(n: u64) -> u32 {
    (n as u32).wrapping_mul(0x9E37_79B9)
}

fn peer(seed: u64) -> Peer {
    Peer {
        seed,
        id: support::id(seed),
        host: u8::try_from(seed % 250 + 1).unwrap(),
        lease: lease_hash(seed, 0),
        tiebreak: spread(seed),
        prefix: format!("net-{seed}"),
    }
}

/// A status timestamp newer than any handed out before (statuses must increase per peer,
/// and cases reuse `now` values freely).
fn status_ts() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(2 * T0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The outcome of a report that reached `reporters` and suspected the target.
fn suspected(reporters: u32) -> Result<ReportOutcome, StoreError> {
    Ok(ReportOutcome {
        suspected: true,
        reporters,
    })
}

/// The outcome of a report that was recorded, `reporters` so far, short of the quorum.
fn recorded(reporters: u32) -> Result<ReportOutcome, StoreError> {
    Ok(ReportOutcome {
        suspected: false,
        reporters,
    })
}

const GONE: Result<ReportOutcome, StoreError> = Ok(ReportOutcome::GONE);

fn info(p: &Peer, neighbours: u16, capacity: u16) -> PeerInfo {
    PeerInfo {
        id: p.id,
        addrs: support::addrs(p.host),
        neighbours,
        capacity,
        reachable: true,
    }
}

fn lease_auth(p: &Peer) -> Auth {
    Auth::Lease {
        token_hash: p.lease,
    }
}

fn wrong_lease() -> Auth {
    Auth::Lease {
        token_hash: lease_hash(u64::MAX, 99),
    }
}

/// A join of `p` (0 of 8 neighbours, want 0) signed at `ts`, arriving at `now`.
fn join_op(p: &Peer, ts: u64, now: u64) -> JoinOp {
    JoinOp {
        info: info(p, 0, 8),
        signed_ts_ms: ts,
        lease: NewLease {
            token_hash: p.lease,
            expires_ms: now + LEASE_TTL,
        },
        want: 0,
        now_ms: now,
        deadline_ms: now + EXPIRY,
        tiebreak: p.tiebreak,
        scan_start: 0,
        random_points: Vec::new(),
        prefix: p.prefix.clone(),
        limits: None,
    }
}

/// `reporter` (with `load` = (neighbours, capacity)) and `suspect` list each other as
/// neighbours, and the reporter reports it (quorum 1), so the store marks it suspected.
async fn suspect_by<S: Store>(
    store: &S,
    reporter: &Peer,
    load: (u16, u16),
    suspect: &Peer,
    now: u64,
) {
    let mut st = status_op(suspect, now);
    st.neighbour_ids = vec![reporter.id];
    status(store, st).await;
    let mut st = status_op(reporter, now);
    st.info = info(reporter, load.0, load.1);
    st.neighbour_ids = vec![suspect.id];
    status(store, st).await;
    let outcome = store.report(report_op(reporter, suspect, now)).await;
    assert!(outcome.unwrap().suspected);
}

/// `a` and `b` list each other in a status at `now`.
async fn link<S: Store>(store: &S, a: &Peer, b: &Peer, now: u64) {
    for (x, y) in [(a, b), (b, a)] {
        let mut op = status_op(x, now);
        op.neighbour_ids = vec![y.id];
        status(store, op).await;
    }
}

/// A lease-authenticated status of `p` (0 of 8 neighbours) at `now`.
fn status_op(p: &Peer, now: u64) -> StatusOp {
    StatusOp {
        info: info(p, 0, 8),
        ts_ms: status_ts(),
        neighbour_ids: Vec::new(),
        auth: lease_auth(p),
        new_lease: None,
        now_ms: now,
        deadline_ms: now + EXPIRY,
        tiebreak: p.tiebreak,
        accept_late: false,
        tombstone_ms: now + TOMB_TTL,
    }
}

fn report_op(reporter: &Peer, target: &Peer, now: u64) -> ReportOp {
    ReportOp {
        reporter: reporter.id,
        auth: lease_auth(reporter),
        target: target.id,
        now_ms: now,
        suspect_deadline_ms: now + GRACE,
        quorum: 1,
        window_ms: 10 * EXPIRY,
        // No rate limit unless a case sets one.
        interval_ms: 0,
        max_per_interval: REPORTS_PER_INTERVAL,
    }
}

fn leave_op(p: &Peer, now: u64) -> LeaveOp {
    LeaveOp {
        id: p.id,
        auth: lease_auth(p),
        now_ms: now,
        tombstone_ms: now + TOMB_TTL,
    }
}

async fn join<S: Store>(store: &S, op: JoinOp) -> Vec<PeerInfo> {
    let id = op.info.id;
    store
        .join(op)
        .await
        .unwrap_or_else(|e| panic!("join of {id:?} failed: {e}"))
}

/// Joins `p` signed at `now`, arriving at `now`.
async fn join_at<S: Store>(store: &S, p: &Peer, now: u64) -> Vec<PeerInfo> {
    join(store, join_op(p, now, now)).await
}

async fn status<S: Store>(store: &S, op: StatusOp) {
    let id = op.info.id;
    store
        .status(op)
        .await
        .unwrap_or_else(|e| panic!("status of {id:?} failed: {e}"));
}

/// Every live peer at `now`, following pages of `limit`, checking the paging contract on
/// the way: id order, no repeats, pages no longer than `limit`.
async fn all_peers<S: Store>(store: &S, now: u64, limit: usize) -> Vec<PeerInfo> {
    let mut out: Vec<PeerInfo> = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = store.peers(after, limit, now).await.expect("peers");
        assert!(
            page.peers.len() <= limit,
            "page of {} peers for limit {limit}",
            page.peers.len()
        );
        for p in &page.peers {
            if let Some(after) = after {
                assert!(p.id > after, "page after {after:?} contains {:?}", p.id);
            }
            if let Some(last) = out.last() {
                assert!(
                    last.id < p.id,
                    "peers out of id order or repeated: {:?}",
                    p.id
                );
            }
            out.push(p.clone());
        }
        match page.next {
            Some(next) => {
                if let Some(after) = after {
                    assert!(next > after, "cursor did not advance");
                }
                after = Some(next);
            }
            None => return out,
        }
    }
    panic!("paging did not end");
}

async fn live_ids<S: Store>(store: &S, now: u64) -> BTreeSet<NodeId> {
    all_peers(store, now, 1000)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect()
}

async fn listed_info<S: Store>(store: &S, now: u64, id: NodeId) -> Option<PeerInfo> {
    all_peers(store, now, 1000)
        .await
        .into_iter()
        .find(|p| p.id == id)
}

fn ids(peers: &[PeerInfo]) -> BTreeSet<NodeId> {
    peers.iter().map(|p| p.id).collect()
}

fn set<'a>(peers: impl IntoIterator<Item = &'a Peer>) -> BTreeSet<NodeId> {
    peers.into_iter().map(|p| p.id).collect()
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

async fn join_registers_and_returns_others<S: Store>(store: S) {
    let [a, b, c] = [peer(1), peer(2), peer(3)];
    let want = |mut op: JoinOp| {
        op.want = 10;
        op
    };
    assert!(join(&store, want(join_op(&a, T0, T0))).await.is_empty());
    let cands = join(&store, want(join_op(&b, T0, T0))).await;
    assert_eq!(cands, vec![info(&a, 0, 8)], "b's candidates");
    let cands = join(&store, want(join_op(&c, T0, T0))).await;
    assert_eq!(ids(&cands), set([&a, &b]));
    assert_eq!(cands.len(), 2);

    // Re-joining (a newer signature) never offers the requester itself.
    let mut op = want(join_op(&a, T0 + 1, T0 + 1));
    op.info = info(&a, 2, 9);
    let cands = join(&store, op).await;
    assert_eq!(ids(&cands), set([&b, &c]));
    for cand in &cands {
        let expected = if cand.id == b.id { &b } else { &c };
        assert_eq!(cand, &info(expected, 0, 8));
    }

    let listed = all_peers(&store, T0 + 1, 1000).await;
    assert_eq!(ids(&listed), set([&a, &b, &c]));
    assert_eq!(
        listed_info(&store, T0 + 1, a.id).await,
        Some(info(&a, 2, 9)),
        "a re-join replaces the registered info"
    );
    assert_eq!(store.live_count(T0 + 1).await.unwrap(), 3);
}

async fn candidates_come_in_order_and_skip_expired_suspected_and_self<S: Store>(store: S) {
    let now = T0 + 1_000;
    // (seed, neighbours, capacity)
    let layout: [(u64, u16, u16); 8] = [
        (1, 0, 5),
        (2, 1, 5),
        (3, 1, 5),
        (4, 3, 8),
        (5, 4, 5),
        (6, 1, 1),
        (7, 2, 2),
        (8, 5, 5),
    ];
    let mut expected = BTreeSet::new();
    for (seed, neighbours, capacity) in layout {
        let p = peer(seed);
        let mut op = join_op(&p, now, now);
        op.info = info(&p, neighbours, capacity);
        join(&store, op).await;
        expected.insert(p.id);
    }
    // Expired (not purged): idle, so it would be a top candidate if it were live.
    let expired = peer(20);
    let mut op = join_op(&expired, T0, T0);
    op.info = info(&expired, 0, 5);
    join(&store, op).await;
    // Suspected: idle too, reported by a neighbour.
    let suspect = peer(21);
    let mut op = join_op(&suspect, now, now);
    op.info = info(&suspect, 0, 5);
    join(&store, op).await;
    suspect_by(&store, &peer(5), (4, 5), &suspect, now).await;

    // The requester is idle as well: the best candidate if it did not skip itself.
    let q = peer(30);
    let mut op = join_op(&q, now + 10, now + 10);
    op.info = info(&q, 0, 5);
    op.want = 32;
    let cands = join(&store, op).await;
    assert_eq!(cands.len(), expected.len(), "candidates: {cands:?}");
    assert_eq!(ids(&cands), expected);
    let rank = |c: &PeerInfo| (!c.has_free_slot(), c.neighbours);
    for pair in cands.windows(2) {
        assert!(
            rank(&pair[0]) <= rank(&pair[1]),
            "candidate order: {:?} ({}/{}) before {:?} ({}/{})",
            pair[0].id,
            pair[0].neighbours,
            pair[0].capacity,
            pair[1].id,
            pair[1].neighbours,
            pair[1].capacity
        );
    }
    for cand in &cands {
        let (seed, n, c) = layout
            .iter()
            .copied()
            .find(|&(seed, _, _)| peer(seed).id == cand.id)
            .unwrap();
        assert_eq!(cand, &info(&peer(seed), n, c), "candidate info");
    }

    // Asked for 3: exactly the 3 best (the idle one, then the two with one neighbour).
    for (i, scan_start) in [0u32, 1 << 31, u32::MAX].into_iter().enumerate() {
        let ts = now + 11 + i as u64;
        let mut op = join_op(&q, ts, ts);
        op.info = info(&q, 0, 5);
        op.want = 3;
        op.scan_start = scan_start;
        let cands = join(&store, op).await;
        assert_eq!(ids(&cands), set([&peer(1), &peer(2), &peer(3)]));
        assert_eq!(cands[0].id, peer(1).id);
    }
}

async fn equal_candidates_are_picked_at_random<S: Store>(store: S) {
    let now = T0;
    let equals: Vec<Peer> = (100..124).map(peer).collect();
    for p in &equals {
        join_at(&store, p, now).await;
    }
    let busier = peer(200);
    let mut op = join_op(&busier, now, now);
    op.info = info(&busier, 1, 8);
    join(&store, op).await;

    let q = peer(300);
    let mut firsts = BTreeSet::new();
    for k in 0..16u64 {
        let ts = now + 1 + k;
        let mut op = join_op(&q, ts, ts);
        op.want = 1;
        op.scan_start = spread(k + 7);
        op.tiebreak = spread(k + 1000);
        let cands = join(&store, op).await;
        assert_eq!(cands.len(), 1, "want 1");
        assert_ne!(
            cands[0].id, busier.id,
            "a busier peer came before idle ones"
        );
        assert_ne!(cands[0].id, q.id);
        firsts.insert(cands[0].id);
    }
    assert!(
        firsts.len() >= 4,
        "16 joins with different random starts over 24 equal peers got only {} distinct \
         first candidates: the choice among equals is not spread",
        firsts.len()
    );
}

async fn want_bounds_the_number_of_candidates<S: Store>(store: S) {
    let others: Vec<Peer> = (1..=6).map(peer).collect();
    for p in &others {
        join_at(&store, p, T0).await;
    }
    let q = peer(50);
    for (i, want) in [0usize, 1, 2, 5, 6, 7, 32].into_iter().enumerate() {
        let ts = T0 + 1 + i as u64;
        let mut op = join_op(&q, ts, ts);
        op.want = want;
        let cands = join(&store, op).await;
        assert_eq!(cands.len(), want.min(others.len()), "want {want}");
        assert_eq!(ids(&cands).len(), cands.len(), "repeated candidate");
        assert!(!ids(&cands).contains(&q.id));
    }
}

async fn replayed_signatures_are_refused_everywhere<S: Store>(store: S) {
    let [a, b] = [peer(1), peer(2)];
    join(&store, join_op(&a, 100, T0)).await;
    join(&store, join_op(&b, 100, T0)).await;

    // join: equal or older timestamps are refused and change nothing.
    for ts in [100, 99, 1] {
        let mut op = join_op(&a, ts, T0 + 1);
        op.info = info(&a, 3, 3);
        assert_eq!(
            store.join(op).await,
            Err(StoreError::Replayed),
            "join ts {ts}"
        );
    }
    assert_eq!(
        listed_info(&store, T0 + 1, a.id).await,
        Some(info(&a, 0, 8))
    );
    join(&store, join_op(&a, 101, T0 + 2)).await;

    // status
    for ts in [101, 50] {
        let mut op = status_op(&a, T0 + 3);
        op.auth = Auth::Signed { ts_ms: ts };
        op.info = info(&a, 7, 8);
        assert_eq!(
            store.status(op).await,
            Err(StoreError::Replayed),
            "status ts {ts}"
        );
    }
    assert_eq!(
        listed_info(&store, T0 + 3, a.id).await,
        Some(info(&a, 0, 8))
    );
    let mut op = status_op(&a, T0 + 4);
    op.auth = Auth::Signed { ts_ms: 102 };
    op.neighbour_ids = vec![b.id];
    status(&store, op).await;
    let mut op = status_op(&b, T0 + 4);
    op.neighbour_ids = vec![a.id];
    status(&store, op).await;

    // report (a and b list each other, so only the timestamp can be wrong)
    for ts in [102, 7] {
        let mut op = report_op(&a, &b, T0 + 5);
        op.auth = Auth::Signed { ts_ms: ts };
        assert_eq!(
            store.report(op).await,
            Err(StoreError::Replayed),
            "report ts {ts}"
        );
    }
    let mut op = report_op(&a, &b, T0 + 5);
    op.auth = Auth::Signed { ts_ms: 103 };
    assert_eq!(store.report(op).await, suspected(1));

    // The accepted report moved the mark too.
    let mut op = status_op(&a, T0 + 6);
    op.auth = Auth::Signed { ts_ms: 103 };
    assert_eq!(store.status(op).await, Err(StoreError::Replayed));

    // leave
    for ts in [103, 100] {
        let mut op = leave_op(&a, T0 + 7);
        op.auth = Auth::Signed { ts_ms: ts };
        assert_eq!(
            store.leave(op).await,
            Err(StoreError::Replayed),
            "leave ts {ts}"
        );
    }
    assert!(live_ids(&store, T0 + 7).await.contains(&a.id));
    let mut op = leave_op(&a, T0 + 8);
    op.auth = Auth::Signed { ts_ms: 104 };
    assert_eq!(store.leave(op).await, Ok(true));
    assert!(!live_ids(&store, T0 + 8).await.contains(&a.id));

    // The leave's timestamp outlives the entry.
    for ts in [104, 101] {
        assert_eq!(
            store.join(join_op(&a, ts, T0 + 9)).await,
            Err(StoreError::Replayed),
            "join ts {ts} after leave"
        );
    }
    join(&store, join_op(&a, 105, T0 + 10)).await;
}

async fn lease_tokens_are_checked<S: Store>(store: S) {
    let [a, b] = [peer(1), peer(2)];
    let mut op = join_op(&a, T0, T0);
    op.lease.expires_ms = T0 + 1_000;
    join(&store, op).await;
    join_at(&store, &b, T0).await;

    status(&store, status_op(&a, T0 + 100)).await;

    // Someone else's (or a made-up) token changes nothing.
    for auth in [wrong_lease(), lease_auth(&b)] {
        let mut op = status_op(&a, T0 + 110);
        op.auth = auth;
        op.info = info(&a, 5, 5);
        assert_eq!(store.status(op).await, Err(StoreError::BadLease));
        let mut op = report_op(&a, &b, T0 + 110);
        op.auth = auth;
        assert_eq!(store.report(op).await, Err(StoreError::BadLease));
        let mut op = leave_op(&a, T0 + 110);
        op.auth = auth;
        assert_eq!(store.leave(op).await, Err(StoreError::BadLease));
    }
    assert_eq!(
        listed_info(&store, T0 + 110, a.id).await,
        Some(info(&a, 0, 8))
    );

    // Keep the entry alive until the lease runs out.
    for t in [300, 500, 700, 900, 999] {
        status(&store, status_op(&a, T0 + t)).await;
    }
    let at = T0 + 1_000;
    assert_eq!(
        store.status(status_op(&a, at)).await,
        Err(StoreError::LeaseExpired)
    );
    assert_eq!(
        store.report(report_op(&a, &b, at)).await,
        Err(StoreError::LeaseExpired)
    );
    assert_eq!(
        store.leave(leave_op(&a, at)).await,
        Err(StoreError::LeaseExpired)
    );
    assert!(
        live_ids(&store, at).await.contains(&a.id),
        "refusals removed a"
    );

    // A signed status brings a new lease; the old token is then simply wrong.
    let renewed = Peer {
        lease: lease_hash(a.seed, 1),
        ..a.clone()
    };
    let mut op = status_op(&a, at);
    op.auth = Auth::Signed { ts_ms: at };
    op.new_lease = Some(NewLease {
        token_hash: renewed.lease,
        expires_ms: at + LEASE_TTL,
    });
    status(&store, op).await;
    assert_eq!(
        store.status(status_op(&a, at + 10)).await,
        Err(StoreError::BadLease)
    );
    status(&store, status_op(&renewed, at + 20)).await;
    assert_eq!(store.leave(leave_op(&renewed, at + 30)).await, Ok(true));
}

async fn unknown_peers_are_told_to_join<S: Store>(store: S) {
    let [a, b] = [peer(1), peer(2)];
    join_at(&store, &b, T0).await;
    assert_eq!(
        store.status(status_op(&a, T0)).await,
        Err(StoreError::UnknownPeer)
    );
    let mut op = status_op(&a, T0);
    op.auth = Auth::Signed { ts_ms: T0 };
    assert_eq!(store.status(op).await, Err(StoreError::UnknownPeer));
    assert_eq!(
        store.report(report_op(&a, &b, T0)).await,
        Err(StoreError::UnknownPeer)
    );
    assert_eq!(store.leave(leave_op(&a, T0)).await, Ok(false));
    assert_eq!(live_ids(&store, T0).await, set([&b]));
    assert_eq!(store.live_count(T0).await.unwrap(), 1);
}

async fn a_late_status_expires_the_entry_unless_accept_late<S: Store>(store: S) {
    let [a, b, c] = [peer(1), peer(2), peer(3)];
    for p in [&a, &b, &c] {
        join(&store, join_op(p, 100, T0)).await;
    }
    // One millisecond before the deadline is still in time.
    status(&store, status_op(&c, T0 + EXPIRY - 1)).await;

    // At the deadline it is too late: refused, and the entry is gone for good.
    let late = T0 + EXPIRY;
    assert_eq!(
        store.status(status_op(&a, late)).await,
        Err(StoreError::Expired)
    );
    assert!(
        !live_ids(&store, T0).await.contains(&a.id),
        "an expired entry must be removed, not just hidden"
    );
    assert_eq!(
        store.status(status_op(&a, late + 1)).await,
        Err(StoreError::UnknownPeer)
    );
    assert_eq!(
        store.join(join_op(&a, 100, late + 2)).await,
        Err(StoreError::Replayed),
        "the expired entry's timestamp is remembered"
    );

    // accept_late: the same lateness is forgiven.
    let much_later = T0 + 10 * EXPIRY;
    let mut op = status_op(&b, much_later);
    op.accept_late = true;
    status(&store, op).await;
    assert!(live_ids(&store, much_later).await.contains(&b.id));
    assert!(
        live_ids(&store, much_later + EXPIRY - 1)
            .await
            .contains(&b.id)
    );
    assert!(!live_ids(&store, much_later + EXPIRY).await.contains(&b.id));

    // A fresh signed join brings a peer back.
    join(&store, join_op(&a, 101, late + 3)).await;
    assert!(live_ids(&store, late + 3).await.contains(&a.id));
}

async fn reports_follow_the_rules<S: Store>(store: S) {
    let [r, t, x, q, u] = [peer(1), peer(2), peer(3), peer(4), peer(9)];
    for p in [&r, &t, &x, &q] {
        join_at(&store, p, T0).await;
    }
    link(&store, &r, &t, T0 + 10).await;

    let candidates_of_q = |ts: u64| {
        let store = store.clone();
        let q = q.clone();
        async move {
            let mut op = join_op(&q, ts, ts);
            op.want = 32;
            ids(&join(&store, op).await)
        }
    };

    // Neither lists the other: refused, nothing changes.
    assert_eq!(
        store.report(report_op(&x, &t, T0 + 20)).await,
        Err(StoreError::NotANeighbour)
    );
    assert!(candidates_of_q(T0 + 21).await.contains(&t.id));
    // The reporter must be registered and prove it.
    assert_eq!(
        store.report(report_op(&u, &t, T0 + 22)).await,
        Err(StoreError::UnknownPeer)
    );
    let mut op = report_op(&r, &t, T0 + 22);
    op.auth = wrong_lease();
    assert_eq!(store.report(op).await, Err(StoreError::BadLease));
    assert!(candidates_of_q(T0 + 23).await.contains(&t.id));

    // A mutual neighbour's report: no longer a candidate, deadline shortened, entry kept.
    assert_eq!(store.report(report_op(&r, &t, T0 + 30)).await, suspected(1));
    let suspect_deadline = T0 + 30 + GRACE;
    let cands = candidates_of_q(T0 + 31).await;
    assert!(!cands.contains(&t.id), "a suspected peer was offered");
    assert_eq!(cands, set([&r, &x]));
    assert!(live_ids(&store, T0 + 31).await.contains(&t.id));
    assert!(live_ids(&store, suspect_deadline - 1).await.contains(&t.id));
    let after_grace = live_ids(&store, suspect_deadline).await;
    assert!(!after_grace.contains(&t.id), "deadline was not shortened");
    assert!(after_grace.contains(&r.id));
    assert_eq!(store.live_count(suspect_deadline - 1).await.unwrap(), 4);
    assert_eq!(store.live_count(suspect_deadline).await.unwrap(), 3);

    // The target's next status clears the suspicion (and it still lists r).
    let mut op = status_op(&t, T0 + 100);
    op.neighbour_ids = vec![r.id];
    status(&store, op).await;
    assert!(candidates_of_q(T0 + 101).await.contains(&t.id));
    assert!(
        live_ids(&store, T0 + 100 + EXPIRY - 1)
            .await
            .contains(&t.id)
    );

    // A report never extends a deadline.
    let mut op = report_op(&r, &t, T0 + 110);
    op.suspect_deadline_ms = T0 + 100_000;
    assert_eq!(store.report(op).await, suspected(1));
    assert!(!live_ids(&store, T0 + 100 + EXPIRY).await.contains(&t.id));

    // One side listing the other is not enough, either way round (finding 3: an attacker
    // listing its victim in an unchecked status could hide it).
    let mut op = status_op(&t, T0 + 130);
    op.neighbour_ids = vec![x.id];
    status(&store, op).await;
    assert_eq!(
        store.report(report_op(&x, &t, T0 + 140)).await,
        Err(StoreError::NotANeighbour),
        "only the target lists the reporter"
    );
    let mut op = status_op(&x, T0 + 141);
    op.neighbour_ids = vec![q.id];
    status(&store, op).await;
    assert_eq!(
        store.report(report_op(&x, &q, T0 + 142)).await,
        Err(StoreError::NotANeighbour),
        "only the reporter lists the target"
    );
    assert!(candidates_of_q(T0 + 143).await.contains(&t.id));

    // A target that is already gone is not suspected.
    assert_eq!(store.report(report_op(&r, &u, T0 + 150)).await, GONE);
    link(&store, &r, &t, T0 + 200).await;
    let t_deadline = T0 + 200 + EXPIRY;
    assert_eq!(
        store.report(report_op(&r, &t, t_deadline)).await,
        Err(StoreError::Expired),
        "r's own entry expired at the same time"
    );
    let mut op = status_op(&r, t_deadline - 50);
    op.neighbour_ids = vec![t.id];
    status(&store, op).await;
    assert_eq!(
        store.report(report_op(&r, &t, t_deadline)).await,
        GONE,
        "a target past its deadline is gone, not suspected"
    );

    // A reporter whose own entry expired (not yet purged) cannot report.
    // (The reporter is judged first, whatever became of the target.)
    let r_deadline = t_deadline - 50 + EXPIRY;
    assert_eq!(
        store.report(report_op(&r, &t, r_deadline)).await,
        Err(StoreError::Expired)
    );
}

/// Finding 3: a live peer is hidden only once `quorum` distinct mutual neighbours reported
/// it within the window; each reporter is rate limited; state stays bounded.
async fn reports_need_a_quorum_and_are_rate_limited<S: Store>(store: S) {
    let [t, a, b, c, q] = [peer(1), peer(2), peer(3), peer(4), peer(5)];
    for p in [&t, &a, &b, &c, &q] {
        join_at(&store, p, T0).await;
    }
    let mut op = status_op(&t, T0 + 1);
    op.neighbour_ids = vec![a.id, b.id, c.id];
    status(&store, op).await;
    for r in [&a, &b, &c] {
        let mut op = status_op(r, T0 + 1);
        op.neighbour_ids = vec![t.id];
        status(&store, op).await;
    }
    let quorum = |r: &Peer, now: u64| {
        let mut op = report_op(r, &t, now);
        op.quorum = 2;
        op.window_ms = 100;
        op.interval_ms = 50;
        op
    };
    let offered = |now: u64| {
        let store = store.clone();
        let (q, t) = (q.clone(), t.clone());
        async move {
            let mut op = join_op(&q, now, now);
            op.want = 32;
            ids(&join(&store, op).await).contains(&t.id)
        }
    };

    // One reporter, however often: recorded, never hidden; repeats within the interval
    // are refused.
    assert_eq!(store.report(quorum(&a, T0 + 10)).await, recorded(1));
    assert_eq!(
        store.report(quorum(&a, T0 + 20)).await,
        Err(StoreError::ReportRateLimited)
    );
    assert!(offered(T0 + 21).await, "one reporter hid a live peer");
    assert_eq!(store.report(quorum(&a, T0 + 61)).await, recorded(1));
    assert!(offered(T0 + 62).await, "one reporter hid a live peer");

    // A report older than the window no longer counts: b alone is still one.
    assert_eq!(store.report(quorum(&b, T0 + 200)).await, recorded(1));
    // A second distinct reporter within the window: hidden.
    assert_eq!(store.report(quorum(&c, T0 + 210)).await, suspected(2));
    assert!(!offered(T0 + 211).await, "quorum reached but still offered");

    // The target's status clears suspicion and the reports against it.
    let mut op = status_op(&t, T0 + 220);
    op.neighbour_ids = vec![a.id, b.id, c.id];
    status(&store, op).await;
    assert!(offered(T0 + 221).await);
    assert_eq!(store.report(quorum(&a, T0 + 230)).await, recorded(1));

    // Per reporter, at most max_per_interval reports in all.
    let mut op = quorum(&c, T0 + 270);
    op.max_per_interval = 1;
    assert_eq!(store.report(op).await, suspected(2));
    let mut op = report_op(&c, &q, T0 + 271);
    op.interval_ms = 50;
    op.max_per_interval = 1;
    assert_eq!(store.report(op).await, Err(StoreError::ReportRateLimited));
}

/// Finding 7: a status (lease or signed) must be newer than the last accepted one, and a
/// lease token cannot move a peer's addresses.
async fn statuses_are_ordered_and_addresses_need_a_signature<S: Store>(store: S) {
    let a = peer(1);
    join(&store, join_op(&a, T0, T0)).await;
    let at = |ts: u64, now: u64| {
        let mut op = status_op(&a, now);
        op.ts_ms = ts;
        op
    };
    // Not newer than the join: a replay of something older.
    assert_eq!(
        store.status(at(T0, T0 + 1)).await,
        Err(StoreError::Replayed)
    );
    status(&store, at(T0 + 5, T0 + 5)).await;
    // The same body again, and an older one: refused, whatever the auth.
    assert_eq!(
        store.status(at(T0 + 5, T0 + 6)).await,
        Err(StoreError::Replayed)
    );
    assert_eq!(
        store.status(at(T0 + 4, T0 + 6)).await,
        Err(StoreError::Replayed)
    );
    let mut signed = at(T0 + 5, T0 + 6);
    signed.auth = Auth::Signed { ts_ms: T0 + 7 };
    assert_eq!(store.status(signed).await, Err(StoreError::Replayed));
    status(&store, at(T0 + 8, T0 + 8)).await;

    // New addresses with the lease: refused, the entry keeps its addresses.
    let moved = PeerInfo {
        addrs: support::addrs(200),
        ..info(&a, 0, 8)
    };
    let mut op = at(T0 + 9, T0 + 9);
    op.info = moved.clone();
    assert_eq!(
        store.status(op).await,
        Err(StoreError::AddressChangeUnsigned)
    );
    assert_eq!(
        listed_info(&store, T0 + 9, a.id).await,
        Some(info(&a, 0, 8))
    );
    // Signed, they move.
    let mut op = at(T0 + 10, T0 + 10);
    op.info = moved.clone();
    op.auth = Auth::Signed { ts_ms: T0 + 10 };
    status(&store, op).await;
    assert_eq!(
        listed_info(&store, T0 + 10, a.id).await,
        Some(moved.clone())
    );
    // Later lease statuses with the same (new) addresses are fine.
    let mut op = at(T0 + 11, T0 + 11);
    op.info = moved;
    status(&store, op).await;
    // A re-join never lowers the status mark.
    join(&store, join_op(&a, T0 + 12, T0 + 12)).await;
    assert_eq!(
        store.status(at(T0 + 11, T0 + 13)).await,
        Err(StoreError::Replayed)
    );
    status(&store, at(T0 + 13, T0 + 13)).await;
}

/// Finding 3: at most `max_live` live registrations and `max_joins` joins per window from
/// one network; re-joins of a registered id do not count toward `max_live`, and a leave
/// frees its place.
async fn joins_are_limited_per_network<S: Store>(store: S) {
    let limits = PrefixLimits {
        max_live: 3,
        max_joins: 6,
        window_ms: 1_000,
    };
    let sybil = |seed: u64| Peer {
        prefix: "203.0.113.0/24".into(),
        ..peer(seed)
    };
    let limited = |p: &Peer, ts: u64| {
        let mut op = join_op(p, ts, ts);
        op.limits = Some(limits);
        op
    };
    for seed in 1..=3 {
        join(&store, limited(&sybil(seed), T0 + seed)).await;
    }
    assert_eq!(
        store.join(limited(&sybil(4), T0 + 4)).await,
        Err(StoreError::TooManyPeers)
    );
    // Another network is not affected; a registered id may join again.
    join(&store, limited(&peer(50), T0 + 5)).await;
    join(&store, limited(&sybil(1), T0 + 6)).await;
    // A leave frees a place (joins so far in the window: 5 of 6).
    assert_eq!(store.leave(leave_op(&sybil(2), T0 + 7)).await, Ok(true));
    join(&store, limited(&sybil(4), T0 + 8)).await;
    // The sixth join used the window up: even a re-join waits for the next window.
    assert_eq!(
        store.join(limited(&sybil(1), T0 + 9)).await,
        Err(StoreError::JoinRateLimited)
    );
    join(&store, limited(&sybil(1), T0 + 1_010)).await;
    // Moving to another network moves the count.
    let mut op = limited(&sybil(3), T0 + 1_011);
    op.prefix = "198.51.100.0/24".into();
    join(&store, op).await;
    join(&store, limited(&sybil(5), T0 + 1_012)).await;
    assert_eq!(
        store.join(limited(&sybil(6), T0 + 1_013)).await,
        Err(StoreError::TooManyPeers)
    );
    // Purged entries free their places too.
    store
        .purge_expired(T0 + 1_012 + EXPIRY, 1000, T0 + TOMB_TTL * 2)
        .await
        .unwrap();
    join(&store, limited(&sybil(6), T0 + 1_013 + EXPIRY)).await;
    // Without limits (the simulator) nothing is counted against anyone.
    for seed in 7..=12 {
        join_at(&store, &sybil(seed), T0 + 2_000 + seed).await;
    }
}

/// Finding 3's figure: with 100 Sybil ids alive from one network and 40 honest peers from
/// 40 others, a joiner's 32 candidates are almost all honest; with one network only, the
/// answer is still full.
async fn answers_spread_over_networks<S: Store>(store: S) {
    let sybils: Vec<Peer> = (1000..1100)
        .map(|seed| Peer {
            prefix: "127.0.0.0/24".into(),
            ..peer(seed)
        })
        .collect();
    let honest: Vec<Peer> = (1..=40).map(peer).collect();
    // Sybils claim to be idle with room to spare: the first in least-loaded order.
    for p in &sybils {
        let mut op = join_op(p, T0, T0);
        op.info = info(p, 0, 200);
        join(&store, op).await;
    }
    for p in &honest {
        let mut op = join_op(p, T0, T0);
        op.info = info(p, 4, 8);
        join(&store, op).await;
    }
    // Everyone but the Sybils is honest (earlier rounds' joiners included).
    let sybil_ids = set(&sybils);
    for round in 0..10u64 {
        let joiner = peer(5000 + round);
        let mut op = join_op(&joiner, T0 + 1 + round, T0 + 1 + round);
        op.want = 32;
        op.scan_start = spread(round);
        op.random_points = (0..16u64)
            .map(|i| *blake3::hash(&(round * 100 + i).to_le_bytes()).as_bytes())
            .collect();
        let got = join(&store, op).await;
        assert_eq!(got.len(), 32, "round {round}: answer not full");
        let good = got.iter().filter(|p| !sybil_ids.contains(&p.id)).count();
        assert!(
            good >= 30,
            "round {round}: only {good} of 32 candidates are honest"
        );
    }

    // One network only (a loopback test): full answers all the same.
    for round in 0..10u64 {
        let joiner = peer(5000 + round);
        assert_eq!(store.leave(leave_op(&joiner, T0 + 40)).await, Ok(true));
    }
    for p in &honest {
        assert_eq!(store.leave(leave_op(p, T0 + 40)).await, Ok(true));
    }
    let mut op = join_op(&peer(6000), T0 + 50, T0 + 50);
    op.want = 32;
    op.random_points = (0..16u8).map(|i| [i * 16; 32]).collect();
    let got = join(&store, op).await;
    assert_eq!(got.len(), 32);
}

async fn reports_never_remove_a_peer_that_keeps_sending_status<S: Store>(store: S) {
    let [r, t] = [peer(1), peer(2)];
    join_at(&store, &r, T0).await;
    join_at(&store, &t, T0).await;
    let mut now = T0;
    for step in 0..60 {
        now = T0 + step * 50;
        if step % 2 == 0 {
            link(&store, &r, &t, now).await;
        }
        assert_eq!(
            store.report(report_op(&r, &t, now + 1)).await,
            suspected(1),
            "step {step}"
        );
        assert_eq!(
            store
                .purge_expired(now + 2, 1000, now + 2 + TOMB_TTL)
                .await
                .unwrap(),
            0,
            "step {step}: purge removed someone"
        );
        assert!(
            live_ids(&store, now + 2).await.contains(&t.id),
            "step {step}: the reported peer vanished although it keeps sending status"
        );
    }
    assert_eq!(store.live_count(now + 2).await.unwrap(), 2);
}

async fn leave_removes_the_entry_and_leaves_a_tombstone<S: Store>(store: S) {
    let [a, b] = [peer(1), peer(2)];
    join(&store, join_op(&a, 100, T0)).await;
    join(&store, join_op(&b, 100, T0)).await;
    assert_eq!(store.leave(leave_op(&a, T0 + 1)).await, Ok(true));
    assert_eq!(live_ids(&store, T0 + 1).await, set([&b]));
    assert_eq!(store.live_count(T0 + 1).await.unwrap(), 1);
    assert_eq!(store.leave(leave_op(&a, T0 + 2)).await, Ok(false));
    assert_eq!(
        store.status(status_op(&a, T0 + 2)).await,
        Err(StoreError::UnknownPeer)
    );
    // A captured join cannot bring it back.
    for ts in [100, 50] {
        assert_eq!(
            store.join(join_op(&a, ts, T0 + 3)).await,
            Err(StoreError::Replayed),
            "replayed join ts {ts} after leave"
        );
    }
    assert!(!live_ids(&store, T0 + 3).await.contains(&a.id));
    // The candidate index forgot it too.
    let mut op = join_op(&b, 101, T0 + 4);
    op.want = 32;
    assert!(join(&store, op).await.is_empty());

    // A newer join is the owner coming back; a signed leave records its own timestamp.
    join(&store, join_op(&a, 101, T0 + 5)).await;
    let mut op = leave_op(&a, T0 + 6);
    op.auth = Auth::Signed { ts_ms: 200 };
    assert_eq!(store.leave(op).await, Ok(true));
    assert_eq!(
        store.join(join_op(&a, 150, T0 + 7)).await,
        Err(StoreError::Replayed)
    );
    join(&store, join_op(&a, 201, T0 + 8)).await;
}

async fn purge_removes_exactly_the_expired_within_its_limit<S: Store>(store: S) {
    let early: Vec<Peer> = (1..=5).map(peer).collect();
    let late: Vec<Peer> = (11..=14).map(peer).collect();
    for p in &early {
        join(&store, join_op(p, 100, T0)).await;
    }
    for p in &late {
        join(&store, join_op(p, 100, T0 + 100)).await;
    }
    let tomb = T0 + EXPIRY + TOMB_TTL;
    assert_eq!(
        store
            .purge_expired(T0 + EXPIRY - 1, 100, tomb)
            .await
            .unwrap(),
        0
    );
    let mut removed = 0;
    for expected in [2, 2, 1, 0] {
        let n = store.purge_expired(T0 + EXPIRY, 2, tomb).await.unwrap();
        assert_eq!(n, expected, "purge with limit 2");
        removed += n;
    }
    assert_eq!(removed, early.len());
    // Looking at an earlier time shows what is left in the store, expired or not.
    assert_eq!(live_ids(&store, T0).await, set(&late));
    assert_eq!(store.live_count(T0).await.unwrap(), late.len() as u64);
    assert_eq!(
        store.live_count(T0 + EXPIRY).await.unwrap(),
        late.len() as u64
    );
    for p in &early {
        assert_eq!(
            store.status(status_op(p, T0 + EXPIRY)).await,
            Err(StoreError::UnknownPeer)
        );
        assert_eq!(
            store.join(join_op(p, 100, T0 + EXPIRY)).await,
            Err(StoreError::Replayed),
            "a purged entry's timestamp is remembered"
        );
    }
    assert_eq!(
        store
            .purge_expired(T0 + 100 + EXPIRY, 1000, tomb)
            .await
            .unwrap(),
        late.len()
    );
    assert!(live_ids(&store, T0).await.is_empty());
}

async fn peers_pages_cover_every_live_peer_once<S: Store>(store: S) {
    let live: Vec<Peer> = (1..=23).map(peer).collect();
    let expired: Vec<Peer> = (101..=104).map(peer).collect();
    let now = T0 + 10_000;
    for (i, p) in live.iter().enumerate() {
        let mut op = join_op(p, now, now);
        op.info = info(p, (i % 4) as u16, 8);
        join(&store, op).await;
    }
    for p in &expired {
        join_at(&store, p, T0).await;
    }
    let mut expected: Vec<PeerInfo> = live
        .iter()
        .enumerate()
        .map(|(i, p)| info(p, (i % 4) as u16, 8))
        .collect();
    expected.sort_by_key(|p| p.id);
    for limit in [1, 3, 1000] {
        let got = all_peers(&store, now, limit).await;
        assert_eq!(got, expected, "pages of {limit}");
    }
    // `after` starts strictly after the given id.
    let middle = expected[10].id;
    let page = store.peers(Some(middle), 1000, now).await.unwrap();
    assert_eq!(page.peers, expected[11..].to_vec());
    assert_eq!(page.next, None);
    let page = store.peers(Some(expected[22].id), 5, now).await.unwrap();
    assert!(page.peers.is_empty());
    assert_eq!(page.next, None);
    // A page that does not hold everything says where to continue.
    let page = store.peers(None, 5, now).await.unwrap();
    assert_eq!(page.peers, expected[..5].to_vec());
    assert!(page.next.is_some());
    assert_eq!(store.live_count(now).await.unwrap(), 23);
}

async fn live_count_counts_only_unexpired_entries<S: Store>(store: S) {
    assert_eq!(store.live_count(T0).await.unwrap(), 0);
    let [a, b, c] = [peer(1), peer(2), peer(3)];
    join_at(&store, &a, T0).await;
    join_at(&store, &b, T0 + 100).await;
    join_at(&store, &c, T0 + 200).await;
    assert_eq!(store.live_count(T0 + 200).await.unwrap(), 3);
    assert_eq!(store.live_count(T0 + EXPIRY).await.unwrap(), 2);
    assert_eq!(store.live_count(T0 + 100 + EXPIRY).await.unwrap(), 1);
    assert_eq!(store.live_count(T0 + 200 + EXPIRY).await.unwrap(), 0);
    assert_eq!(store.leave(leave_op(&c, T0 + 201)).await, Ok(true));
    assert_eq!(store.live_count(T0 + 201).await.unwrap(), 2);
}

async fn random_points_pick_the_next_live_peer_in_id_order<S: Store>(store: S) {
    let now = T0 + 1_000;
    // Eight peers, all full except one idle peer, in id order.
    let mut peers: Vec<Peer> = (40..48).map(peer).collect();
    peers.sort_by_key(|p| p.id);
    let idle = peers[5].clone();
    for p in &peers {
        let mut op = join_op(p, now, now);
        op.info = if p.id == idle.id {
            info(p, 0, 5)
        } else {
            info(p, 5, 5)
        };
        join(&store, op).await;
    }
    // One suspected (reported by the next peer) and one expired peer, both in id order.
    let suspect = peers[2].clone();
    suspect_by(&store, &peers[1], (5, 5), &suspect, now).await;
    let expired = peers[6].clone();
    let mut op = join_op(&expired, now + 1, now - EXPIRY);
    op.info = info(&expired, 5, 5);
    join(&store, op).await;

    let q = peer(90);
    let ask = |ts: u64, points: Vec<[u8; 32]>, want: usize| {
        let mut op = join_op(&q, ts, ts);
        op.want = want;
        op.random_points = points;
        op
    };
    let at = |p: &Peer| *p.id.as_bytes();
    let mut ts = now + 10;
    let mut next_ts = || {
        ts += 1;
        ts
    };

    // A point on a full peer's id offers that peer first, although the least loaded
    // (the idle peer) would come before it otherwise; then random and least loaded
    // alternate.
    let cands = join(
        &store,
        ask(next_ts(), vec![at(&peers[0]), at(&peers[3])], 4),
    )
    .await;
    let got: Vec<NodeId> = cands.iter().map(|c| c.id).collect();
    assert_eq!(got[0], peers[0].id, "the peer at the first point: {got:?}");
    assert_eq!(got[1], idle.id, "then the least loaded: {got:?}");
    assert_eq!(
        got[2], peers[3].id,
        "then the peer at the second point: {got:?}"
    );
    assert_eq!(got.len(), 4);
    assert_eq!(ids(&cands).len(), 4, "a peer was offered twice: {got:?}");

    // Suspected and expired peers are passed over for the next one in id order.
    let cands = join(&store, ask(next_ts(), vec![at(&suspect)], 1)).await;
    assert_eq!(cands[0].id, peers[3].id, "suspected peer skipped");
    let cands = join(&store, ask(next_ts(), vec![at(&expired)], 1)).await;
    assert_eq!(cands[0].id, peers[7].id, "expired peer skipped");

    // Past the largest id the scan wraps to the smallest; the requester never offers
    // itself; two points on one peer give it once (the second point takes the next).
    let cands = join(&store, ask(next_ts(), vec![[0xFF; 32]], 1)).await;
    let smallest = std::iter::once(&q)
        .chain(&peers)
        .filter(|p| p.id != suspect.id && p.id != expired.id && p.id != q.id)
        .map(|p| p.id)
        .min()
        .unwrap();
    assert_eq!(cands[0].id, smallest, "wrapped to the smallest id");
    let cands = join(&store, ask(next_ts(), vec![at(&q)], 1)).await;
    assert_ne!(cands[0].id, q.id, "offered the requester itself");
    let cands = join(
        &store,
        ask(next_ts(), vec![at(&peers[4]), at(&peers[4])], 2),
    )
    .await;
    assert_eq!(
        cands.iter().map(|c| c.id).collect::<Vec<_>>(),
        [peers[4].id, idle.id],
        "second point on the same peer: the next one would be the idle peer"
    );
}

// ---------------------------------------------------------------------------------------
// Embedded only: the journal
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn embedded_journal_restores_live_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatekeeper.journal");
    let [a, b, c, d, e] = [peer(1), peer(2), peer(3), peer(4), peer(5)];
    let c_renewed = Peer {
        lease: lease_hash(c.seed, 1),
        ..c.clone()
    };
    {
        let store = EmbeddedStore::open(&path, T0, T0 + EXPIRY, T0 + TOMB_TTL).unwrap();
        for p in [&a, &b, &c, &d] {
            let mut op = join_op(p, 100, T0);
            op.info = info(p, 1, 6);
            join(&store, op).await;
        }
        // e joined long ago and is purged.
        join(&store, join_op(&e, 100, T0 - 10_000)).await;
        assert_eq!(store.purge_expired(T0, 100, T0 + TOMB_TTL).await, Ok(1));
        // b's neighbours change (lease-authenticated status).
        let mut op = status_op(&b, T0 + 10);
        op.info = info(&b, 3, 6);
        op.neighbour_ids = vec![a.id, c.id];
        status(&store, op).await;
        // c renews its lease with a signed status.
        let mut op = status_op(&c, T0 + 20);
        op.info = info(&c, 2, 6);
        op.auth = Auth::Signed { ts_ms: 300 };
        op.new_lease = Some(NewLease {
            token_hash: c_renewed.lease,
            expires_ms: T0 + 20 + LEASE_TTL,
        });
        status(&store, op).await;
        // d leaves.
        assert_eq!(store.leave(leave_op(&d, T0 + 30)).await, Ok(true));
    }

    let t1 = T0 + 5_000;
    let store = EmbeddedStore::open(&path, t1, t1 + EXPIRY, t1 + TOMB_TTL).unwrap();
    let mut expected = vec![info(&a, 1, 6), info(&b, 3, 6), info(&c, 2, 6)];
    expected.sort_by_key(|p| p.id);
    assert_eq!(
        all_peers(&store, t1, 1000).await,
        expected,
        "restored registrations"
    );
    assert_eq!(store.live_count(t1).await.unwrap(), 3);
    // Restored entries get one full expiry window from the restart.
    assert_eq!(store.live_count(t1 + EXPIRY - 1).await.unwrap(), 3);
    assert_eq!(store.live_count(t1 + EXPIRY).await.unwrap(), 0);

    // A status from before the restart cannot be replayed after it (the status mark is
    // not journaled; restored entries start it at the restore time).
    let mut op = status_op(&a, t1 + 1);
    op.ts_ms = t1 - 1;
    assert_eq!(store.status(op).await, Err(StoreError::Replayed));
    // Restored registrations still count toward their network.
    let neighbour_of_a = Peer {
        prefix: a.prefix.clone(),
        ..peer(77)
    };
    let mut op = join_op(&neighbour_of_a, t1 + 1, t1 + 1);
    op.limits = Some(PrefixLimits {
        max_live: 1,
        max_joins: 100,
        window_ms: 1_000,
    });
    assert_eq!(store.join(op).await, Err(StoreError::TooManyPeers));
    // Lease tokens are as they were.
    status(&store, status_op(&a, t1 + 1)).await;
    assert_eq!(
        store.status(status_op(&c, t1 + 1)).await,
        Err(StoreError::BadLease),
        "c's replaced lease came back"
    );
    status(&store, status_op(&c_renewed, t1 + 2)).await;
    let mut op = status_op(&b, t1 + 3);
    op.auth = wrong_lease();
    assert_eq!(store.status(op).await, Err(StoreError::BadLease));
    // b's neighbour list came back: once a lists b too, b may report a.
    let mut op = status_op(&a, t1 + 4);
    op.neighbour_ids = vec![b.id];
    status(&store, op).await;
    assert_eq!(store.report(report_op(&b, &a, t1 + 4)).await, suspected(1));

    // Signed timestamps came back, for live and removed entries.
    let mut op = status_op(&c_renewed, t1 + 5);
    op.auth = Auth::Signed { ts_ms: 300 };
    assert_eq!(store.status(op).await, Err(StoreError::Replayed));
    assert_eq!(
        store.join(join_op(&d, 100, t1 + 6)).await,
        Err(StoreError::Replayed),
        "d's leave was forgotten"
    );
    assert_eq!(
        store.join(join_op(&e, 100, t1 + 6)).await,
        Err(StoreError::Replayed),
        "e's purge was forgotten"
    );
    assert_eq!(
        store.status(status_op(&d, t1 + 7)).await,
        Err(StoreError::UnknownPeer)
    );
}

/// The journal is compacted once it holds many more lines than live entries; the
/// compacted file must still remember who left, or a captured join could bring a departed
/// peer back after a restart.
#[tokio::test]
async fn embedded_journal_compaction_keeps_tombstones_and_live_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatekeeper.journal");
    let [a, b] = [peer(1), peer(2)];
    let rounds = 10_050u64;
    {
        let store = EmbeddedStore::open(&path, T0, T0 + EXPIRY, T0 + TOMB_TTL).unwrap();
        join(&store, join_op(&a, 100, T0)).await;
        join(&store, join_op(&b, 100, T0)).await;
        let mut op = leave_op(&b, T0 + 1);
        op.auth = Auth::Signed { ts_ms: 200 };
        assert_eq!(store.leave(op).await, Ok(true));
        // Every status changes a's info, so every one is journaled.
        for i in 0..rounds {
            let mut op = status_op(&a, T0 + 2 + i);
            op.info = info(&a, (i % 2) as u16, 8);
            status(&store, op).await;
        }
    }
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(
        (lines as u64) < rounds / 2,
        "the journal was not compacted ({lines} lines)"
    );

    let t1 = T0 + 20_000;
    let store = EmbeddedStore::open(&path, t1, t1 + EXPIRY, t1 + TOMB_TTL).unwrap();
    assert_eq!(
        all_peers(&store, t1, 1000).await,
        vec![info(&a, ((rounds - 1) % 2) as u16, 8)]
    );
    status(&store, status_op(&a, t1 + 1)).await;
    assert_eq!(
        store.join(join_op(&a, 100, t1 + 2)).await,
        Err(StoreError::Replayed),
        "a's last signed timestamp was lost in compaction"
    );
    for ts in [200, 150] {
        assert_eq!(
            store.join(join_op(&b, ts, t1 + 3)).await,
            Err(StoreError::Replayed),
            "b's leave was lost in compaction: a join signed at {ts} was accepted"
        );
    }
    join(&store, join_op(&b, 201, t1 + 4)).await;
}

// ---------------------------------------------------------------------------------------
// Instantiation
// ---------------------------------------------------------------------------------------

for_both_stores!(
    join_registers_and_returns_others,
    candidates_come_in_order_and_skip_expired_suspected_and_self,
    equal_candidates_are_picked_at_random,
    random_points_pick_the_next_live_peer_in_id_order,
    want_bounds_the_number_of_candidates,
    replayed_signatures_are_refused_everywhere,
    lease_tokens_are_checked,
    unknown_peers_are_told_to_join,
    a_late_status_expires_the_entry_unless_accept_late,
    reports_follow_the_rules,
    reports_need_a_quorum_and_are_rate_limited,
    statuses_are_ordered_and_addresses_need_a_signature,
    joins_are_limited_per_network,
    answers_spread_over_networks,
    reports_never_remove_a_peer_that_keeps_sending_status,
    leave_removes_the_entry_and_leaves_a_tombstone,
    purge_removes_exactly_the_expired_within_its_limit,
    peers_pages_cover_every_live_peer_once,
    live_count_counts_only_unexpired_entries,
);
