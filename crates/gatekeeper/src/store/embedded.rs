//! The default store: in-process ordered indexes behind one mutex, optionally journaled to
//! a file. Every operation is O(log N) (candidate choice O(log N + k)).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;

use super::candidates::CandidateKey;
use super::journal::{Journal, JournalError, JournalRecord, StoredPeer};
use super::{
    Auth, JoinOp, LeaveOp, NewLease, Page, PrefixLimits, ReportOp, ReportOutcome, StatusOp, Store,
    StoreError, check_auth,
};
use crate::config::MAX_REPORT_QUORUM;

mod pick;

/// Most tombstones kept; past this the oldest go first (they are the nearest to expiry).
const MAX_TOMBSTONES: usize = 1 << 20;
/// Most index entries one candidate scan looks at, so a crowd of not-yet-purged expired
/// entries cannot make a join slow.
const MAX_CANDIDATE_SCAN: usize = 1024;
/// Most networks with a join window open at once; past this, expired windows are dropped,
/// and if none has expired a join is admitted uncounted (rather than refusing everyone).
const MAX_JOIN_WINDOWS: usize = 1 << 16;

#[derive(Debug, Clone)]
struct Entry {
    stored: StoredPeer,
    deadline_ms: u64,
    suspected: bool,
    key: CandidateKey,
    /// Timestamp of the newest accepted status (or join). Not journaled: a restored entry
    /// starts at the restore time, so no status captured before the restart replays.
    last_status_ts_ms: u64,
    /// Recent reports against this peer: (reporter, when), at most [`MAX_REPORT_QUORUM`].
    reported_by: Vec<(NodeId, u64)>,
    /// Recent reports by this peer: (target, when), for its rate limit.
    sent_reports: Vec<(NodeId, u64)>,
}

impl Entry {
    fn new(stored: StoredPeer, deadline_ms: u64, key: CandidateKey, ts_ms: u64) -> Self {
        Self {
            stored,
            deadline_ms,
            suspected: false,
            key,
            last_status_ts_ms: ts_ms,
            reported_by: Vec::new(),
            sent_reports: Vec::new(),
        }
    }

    fn lease(&self) -> NewLease {
        NewLease {
            token_hash: self.stored.lease_hash,
            expires_ms: self.stored.lease_expires_ms,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    peers: BTreeMap<NodeId, Entry>,
    candidates: BTreeSet<(u64, [u8; 32])>,
    deadlines: BTreeSet<(u64, NodeId)>,
    tombstones: HashMap<NodeId, (u64, u64)>,
    tombstone_order: VecDeque<(u64, NodeId)>,
    /// Registrations per network (entries with an empty prefix are not counted).
    per_prefix: HashMap<String, u32>,
    /// Join windows per network: (window start, joins in it).
    join_windows: HashMap<String, (u64, u32)>,
    /// Earliest time the full window table is scanned for closed windows again, so a
    /// crowd of networks cannot make every join pay for a full scan.
    join_windows_gc_ms: u64,
    journal: Option<Journal>,
}

/// In-memory registry, optionally journaled so a restart loses no registration.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    state: Arc<Mutex<State>>,
}

impl EmbeddedStore {
    /// A store that lives only in memory.
    pub fn in_memory() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// A store journaled at `path`, restored from it if it exists. Restored entries get a
    /// fresh deadline of `restored_deadline_ms`: the Gatekeeper cannot know how long it was
    /// down, so every peer gets one full expiry window to send its next status.
    pub fn open(
        path: &Path,
        now_ms: u64,
        restored_deadline_ms: u64,
        tombstone_ms: u64,
    ) -> Result<Self, JournalError> {
        let (journal, records) = Journal::open(path)?;
        let mut state = State::default();
        for record in records {
            match record {
                JournalRecord::Put(stored) => {
                    let key = CandidateKey::new(
                        stored.info.neighbours,
                        stored.info.capacity,
                        rand::random(),
                    );
                    state.upsert(Entry::new(stored, restored_deadline_ms, key, now_ms));
                }
                JournalRecord::Del {
                    id,
                    last_signed_ts_ms,
                } => {
                    state.remove(&id);
                    state.tombstone(id, last_signed_ts_ms, tombstone_ms);
                }
            }
        }
        state.expire_tombstones(now_ms);
        state.journal = Some(journal);
        tracing::info!(path = %path.display(), peers = state.peers.len(), "restored registrations");
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the indexes half-updated in a way
        // later operations would trip on (each mutation is applied after its checks), so
        // keep serving rather than poisoning every later request.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn journal_failed(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal write failed: {e}"))
}

impl State {
    fn upsert(&mut self, entry: Entry) {
        let id = entry.stored.info.id;
        let old_prefix = match self.peers.get(&id) {
            Some(old) => {
                let (key, deadline) = (old.key.0, old.deadline_ms);
                let prefix = old.stored.prefix.clone();
                self.candidates.remove(&(key, *id.as_bytes()));
                self.deadlines.remove(&(deadline, id));
                Some(prefix)
            }
            None => None,
        };
        if old_prefix.as_deref() != Some(entry.stored.prefix.as_str()) {
            if let Some(old) = old_prefix {
                self.count_prefix(&old, false);
            }
            self.count_prefix(&entry.stored.prefix, true);
        }
        // A peer that cannot be dialled is never offered (nor is a suspected one).
        if !entry.suspected && entry.stored.info.reachable {
            self.candidates.insert((entry.key.0, *id.as_bytes()));
        }
        self.deadlines.insert((entry.deadline_ms, id));
        self.peers.insert(id, entry);
    }

    fn remove(&mut self, id: &NodeId) -> Option<Entry> {
        let old = self.peers.remove(id)?;
        self.candidates.remove(&(old.key.0, *id.as_bytes()));
        self.deadlines.remove(&(old.deadline_ms, *id));
        self.count_prefix(&old.stored.prefix, false);
        Some(old)
    }

    fn count_prefix(&mut self, prefix: &str, add: bool) {
        if prefix.is_empty() {
            return;
        }
        if add {
            *self.per_prefix.entry(prefix.to_string()).or_default() += 1;
        } else if let Some(n) = self.per_prefix.get_mut(prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_prefix.remove(prefix);
            }
        }
    }

    /// Applies the per-network limits to a join of `id` from `prefix`.
    fn admit_join(
        &mut self,
        id: &NodeId,
        prefix: &str,
        limits: PrefixLimits,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if prefix.is_empty() {
            return Ok(());
        }
        let open = |&(start, _): &(u64, u32)| now_ms.saturating_sub(start) < limits.window_ms;
        if !self.join_windows.contains_key(prefix)
            && self.join_windows.len() >= MAX_JOIN_WINDOWS
            && now_ms >= self.join_windows_gc_ms
        {
            self.join_windows.retain(|_, w| open(w));
            self.join_windows_gc_ms = now_ms + 1_000;
        }
        let room = self.join_windows.len() < MAX_JOIN_WINDOWS;
        match self.join_windows.get_mut(prefix) {
            Some(w) if open(w) && w.1 >= limits.max_joins => {
                return Err(StoreError::JoinRateLimited);
            }
            Some(w) if open(w) => w.1 += 1,
            Some(w) => *w = (now_ms, 1),
            None if room => {
                self.join_windows.insert(prefix.to_string(), (now_ms, 1));
            }
            None => {}
        }
        let rejoin = self
            .peers
            .get(id)
            .is_some_and(|e| e.stored.prefix == prefix);
        let live = self.per_prefix.get(prefix).copied().unwrap_or(0);
        if !rejoin && live >= limits.max_live {
            return Err(StoreError::TooManyPeers);
        }
        Ok(())
    }

    fn journal(&mut self, record: &JournalRecord) -> Result<(), StoreError> {
        match self.journal.as_mut() {
            Some(journal) => journal.append(record).map_err(journal_failed),
            None => Ok(()),
        }
    }

    fn tombstone(&mut self, id: NodeId, last_signed_ts_ms: u64, until_ms: u64) {
        if self.tombstone_order.len() >= MAX_TOMBSTONES {
            self.pop_tombstone();
        }
        self.tombstones.insert(id, (last_signed_ts_ms, until_ms));
        self.tombstone_order.push_back((until_ms, id));
    }

    fn pop_tombstone(&mut self) {
        if let Some((until, id)) = self.tombstone_order.pop_front() {
            // A re-join removed or a later removal replaced it: only drop our own entry.
            if self.tombstones.get(&id).is_some_and(|&(_, u)| u == until) {
                self.tombstones.remove(&id);
            }
        }
    }

    fn expire_tombstones(&mut self, now_ms: u64) {
        while self
            .tombstone_order
            .front()
            .is_some_and(|&(until, _)| until <= now_ms)
        {
            self.pop_tombstone();
        }
    }

    fn last_signed(&self, id: &NodeId) -> u64 {
        match self.peers.get(id) {
            Some(entry) => entry.stored.last_signed_ts_ms,
            None => self.tombstones.get(id).map_or(0, |&(ts, _)| ts),
        }
    }

    /// Removes an entry whose time is up, journaling and tombstoning it.
    fn expire(&mut self, id: &NodeId, tombstone_ms: u64) -> Result<(), StoreError> {
        let Some(entry) = self.peers.get(id) else {
            return Ok(());
        };
        let last = entry.stored.last_signed_ts_ms;
        self.journal(&JournalRecord::Del {
            id: *id,
            last_signed_ts_ms: last,
        })?;
        self.remove(id);
        self.tombstone(*id, last, tombstone_ms);
        Ok(())
    }

    fn compact_if_needed(&mut self) {
        // A compacted journal holds a line per entry and per tombstone.
        let entries = self.peers.len() + self.tombstones.len();
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        if journal.wants_compaction(entries) {
            let peers = self.peers.values().map(|e| &e.stored);
            // Keep the tombstones too, or a restart would forget who left.
            let removed = self
                .tombstones
                .iter()
                .filter(|&(id, _)| !self.peers.contains_key::<NodeId>(id))
                .map(|(id, &(last_signed_ts_ms, _))| (*id, last_signed_ts_ms));
            if let Err(e) = journal.compact(peers, removed) {
                tracing::error!(error = %e, "journal compaction failed; the journal keeps growing");
            }
        }
    }
}

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn join(&self, op: JoinOp) -> Result<Vec<PeerInfo>, StoreError> {
        let mut st = self.lock();
        let id = op.info.id;
        if op.signed_ts_ms <= st.last_signed(&id) {
            return Err(StoreError::Replayed);
        }
        if let Some(limits) = op.limits {
            st.admit_join(&id, &op.prefix, limits, op.now_ms)?;
        }
        let key = CandidateKey::new(op.info.neighbours, op.info.capacity, op.tiebreak);
        let stored = StoredPeer {
            info: op.info.clone(),
            neighbour_ids: Vec::new(),
            lease_hash: op.lease.token_hash,
            lease_expires_ms: op.lease.expires_ms,
            last_signed_ts_ms: op.signed_ts_ms,
            prefix: op.prefix.clone(),
        };
        st.journal(&JournalRecord::Put(stored.clone()))?;
        st.tombstones.remove(&id);
        let mut entry = Entry::new(stored, op.deadline_ms, key, op.signed_ts_ms);
        if let Some(old) = st.peers.get(&id) {
            // A re-join keeps the rate-limit history (re-joining must not reset it) and
            // never lowers the status high-water mark.
            entry.sent_reports = old.sent_reports.clone();
            entry.last_status_ts_ms = entry.last_status_ts_ms.max(old.last_status_ts_ms);
        }
        st.upsert(entry);
        Ok(st.pick(&id, &op))
    }

    async fn status(&self, op: StatusOp) -> Result<(), StoreError> {
        let mut st = self.lock();
        let id = op.info.id;
        let entry = st.peers.get(&id).ok_or(StoreError::UnknownPeer)?;
        check_auth(
            op.auth,
            entry.stored.last_signed_ts_ms,
            &entry.lease(),
            op.now_ms,
        )?;
        if op.ts_ms <= entry.last_status_ts_ms {
            return Err(StoreError::Replayed);
        }
        if matches!(op.auth, Auth::Lease { .. }) && op.info.addrs != entry.stored.info.addrs {
            return Err(StoreError::AddressChangeUnsigned);
        }
        if entry.deadline_ms <= op.now_ms && !op.accept_late {
            st.expire(&id, op.tombstone_ms)?;
            return Err(StoreError::Expired);
        }
        let sent_reports = entry.sent_reports.clone();
        let mut stored = entry.stored.clone();
        stored.info = op.info;
        stored.neighbour_ids = op.neighbour_ids;
        if let Auth::Signed { ts_ms } = op.auth {
            stored.last_signed_ts_ms = ts_ms;
        }
        if let Some(lease) = op.new_lease {
            stored.lease_hash = lease.token_hash;
            stored.lease_expires_ms = lease.expires_ms;
        }
        if stored != entry.stored {
            st.journal(&JournalRecord::Put(stored.clone()))?;
        }
        let key = CandidateKey::new(stored.info.neighbours, stored.info.capacity, op.tiebreak);
        // A status proves the peer alive: earlier reports against it no longer count.
        let mut entry = Entry::new(stored, op.deadline_ms, key, op.ts_ms);
        entry.sent_reports = sent_reports;
        st.upsert(entry);
        st.compact_if_needed();
        Ok(())
    }

    async fn report(&self, op: ReportOp) -> Result<ReportOutcome, StoreError> {
        let mut st = self.lock();
        let reporter = st.peers.get(&op.reporter).ok_or(StoreError::UnknownPeer)?;
        if reporter.deadline_ms <= op.now_ms {
            return Err(StoreError::Expired);
        }
        check_auth(
            op.auth,
            reporter.stored.last_signed_ts_ms,
            &reporter.lease(),
            op.now_ms,
        )?;
        let reporter_lists_target = reporter.stored.neighbour_ids.contains(&op.target);
        if let Auth::Signed { ts_ms } = op.auth {
            let mut stored = reporter.stored.clone();
            stored.last_signed_ts_ms = ts_ms;
            st.journal(&JournalRecord::Put(stored))?;
        }
        let since = op.now_ms.saturating_sub(op.interval_ms);
        let Some(reporter) = st.peers.get_mut(&op.reporter) else {
            return Err(StoreError::UnknownPeer);
        };
        if let Auth::Signed { ts_ms } = op.auth {
            reporter.stored.last_signed_ts_ms = ts_ms;
        }
        reporter.sent_reports.retain(|&(_, at)| at > since);
        let sent = &reporter.sent_reports;
        if sent.len() >= op.max_per_interval as usize || sent.iter().any(|(t, _)| *t == op.target) {
            return Err(StoreError::ReportRateLimited);
        }
        reporter.sent_reports.push((op.target, op.now_ms));
        let Some(target) = st
            .peers
            .get(&op.target)
            .filter(|t| t.deadline_ms > op.now_ms)
        else {
            return Ok(ReportOutcome::GONE);
        };
        if !reporter_lists_target || !target.stored.neighbour_ids.contains(&op.reporter) {
            return Err(StoreError::NotANeighbour);
        }
        let mut target = target.clone();
        let window_start = op.now_ms.saturating_sub(op.window_ms);
        target
            .reported_by
            .retain(|&(r, at)| at > window_start && r != op.reporter);
        target.reported_by.push((op.reporter, op.now_ms));
        if target.reported_by.len() > MAX_REPORT_QUORUM as usize {
            target.reported_by.remove(0);
        }
        let reporters = target.reported_by.len() as u32;
        if reporters >= op.quorum {
            target.suspected = true;
            target.deadline_ms = target.deadline_ms.min(op.suspect_deadline_ms);
        }
        let suspected = target.suspected;
        st.upsert(target);
        Ok(ReportOutcome {
            suspected,
            reporters,
        })
    }

    async fn leave(&self, op: LeaveOp) -> Result<bool, StoreError> {
        let mut st = self.lock();
        let Some(entry) = st.peers.get(&op.id) else {
            return Ok(false);
        };
        check_auth(
            op.auth,
            entry.stored.last_signed_ts_ms,
            &entry.lease(),
            op.now_ms,
        )?;
        let last = match op.auth {
            Auth::Signed { ts_ms } => ts_ms,
            Auth::Lease { .. } => entry.stored.last_signed_ts_ms,
        };
        st.journal(&JournalRecord::Del {
            id: op.id,
            last_signed_ts_ms: last,
        })?;
        st.remove(&op.id);
        st.tombstone(op.id, last, op.tombstone_ms);
        Ok(true)
    }

    async fn peers(
        &self,
        after: Option<NodeId>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Page, StoreError> {
        let st = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut live = st
            .peers
            .range((start, Bound::Unbounded))
            .filter(|(_, e)| e.deadline_ms > now_ms)
            .map(|(_, e)| e.stored.info.clone());
        let peers: Vec<PeerInfo> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        let next = if more {
            peers.last().map(|p| p.id)
        } else {
            None
        };
        Ok(Page { peers, next })
    }

    async fn purge_expired(
        &self,
        now_ms: u64,
        limit: usize,
        tombstone_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut st = self.lock();
        st.expire_tombstones(now_ms);
        let expired: Vec<NodeId> = st
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|&(_, id)| id)
            .collect();
        for id in &expired {
            st.expire(id, tombstone_ms)?;
        }
        if let Some(journal) = st.journal.as_mut() {
            journal.sync().map_err(journal_failed)?;
        }
        st.compact_if_needed();
        Ok(expired.len())
    }

    async fn live_count(&self, now_ms: u64) -> Result<u64, StoreError> {
        let st = self.lock();
        let expired = st
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .count();
        Ok((st.peers.len() - expired) as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
