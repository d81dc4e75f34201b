//! The default store: in-process ordered indexes behind one mutex, optionally journaled to
//! a file. Every operation is O(log N) (candidate choice O(log N + k)).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;

use super::candidates::{CandidateKey, MAX_RANDOM_SCAN, interleave, scan_ranges};
use super::journal::{Journal, JournalError, JournalRecord, StoredPeer};
use super::{
    Auth, JoinOp, LeaveOp, NewLease, Page, ReportOp, StatusOp, Store, StoreError, check_auth,
};

/// Most tombstones kept; past this the oldest go first (they are the nearest to expiry).
const MAX_TOMBSTONES: usize = 1 << 20;
/// Most index entries one candidate scan looks at, so a crowd of not-yet-purged expired
/// entries cannot make a join slow.
const MAX_CANDIDATE_SCAN: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    stored: StoredPeer,
    deadline_ms: u64,
    suspected: bool,
    key: CandidateKey,
}

impl Entry {
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
                    state.upsert(Entry {
                        stored,
                        deadline_ms: restored_deadline_ms,
                        suspected: false,
                        key,
                    });
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
        if let Some(old) = self.peers.get(&id) {
            self.candidates.remove(&(old.key.0, *id.as_bytes()));
            self.deadlines.remove(&(old.deadline_ms, id));
        }
        if !entry.suspected {
            self.candidates.insert((entry.key.0, *id.as_bytes()));
        }
        self.deadlines.insert((entry.deadline_ms, id));
        self.peers.insert(id, entry);
    }

    fn remove(&mut self, id: &NodeId) -> Option<Entry> {
        let old = self.peers.remove(id)?;
        self.candidates.remove(&(old.key.0, *id.as_bytes()));
        self.deadlines.remove(&(old.deadline_ms, *id));
        Some(old)
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

    /// Candidates for `requester`: one per random point, then the least loaded, interleaved.
    fn pick(&self, requester: &NodeId, op: &JoinOp) -> Vec<PeerInfo> {
        let mut chosen = vec![*requester.as_bytes()];
        let random = self.pick_random(&op.random_points, op.want, op.now_ms, &mut chosen);
        let least_loaded =
            self.pick_least_loaded(op.want - random.len(), op.now_ms, op.scan_start, &chosen);
        interleave(random, least_loaded)
    }

    /// For each point, the first live, unsuspected peer at or after it in id order
    /// (wrapping), not yet chosen; a bounded scan per point.
    fn pick_random(
        &self,
        points: &[[u8; 32]],
        want: usize,
        now_ms: u64,
        chosen: &mut Vec<[u8; 32]>,
    ) -> Vec<PeerInfo> {
        let mut out = Vec::new();
        for point in points.iter().take(want) {
            let from_point = self
                .peers
                .range::<[u8; 32], _>((Bound::Included(point), Bound::Unbounded));
            let wrapped = self
                .peers
                .range::<[u8; 32], _>((Bound::Unbounded, Bound::Excluded(point)));
            let found = from_point
                .chain(wrapped)
                .take(MAX_RANDOM_SCAN)
                .find(|(id, e)| {
                    !e.suspected && e.deadline_ms > now_ms && !chosen.contains(id.as_bytes())
                });
            if let Some((id, entry)) = found {
                chosen.push(*id.as_bytes());
                out.push(entry.stored.info.clone());
            }
        }
        out
    }

    fn pick_least_loaded(
        &self,
        want: usize,
        now_ms: u64,
        scan_start: u32,
        chosen: &[[u8; 32]],
    ) -> Vec<PeerInfo> {
        let mut out = Vec::with_capacity(want);
        let Some(&(first, _)) = self.candidates.first() else {
            return out;
        };
        let mut scanned = 0;
        for (lo, hi) in scan_ranges(CandidateKey(first), scan_start) {
            let range = (
                Bound::Included((lo, [0u8; 32])),
                Bound::Excluded((hi, [0u8; 32])),
            );
            for (_, id_bytes) in self.candidates.range(range) {
                if out.len() >= want || scanned >= MAX_CANDIDATE_SCAN {
                    return out;
                }
                scanned += 1;
                if chosen.contains(id_bytes) {
                    continue;
                }
                if let Some(entry) = self.peers.get(id_bytes).filter(|e| e.deadline_ms > now_ms) {
                    out.push(entry.stored.info.clone());
                }
            }
        }
        out
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
        let key = CandidateKey::new(op.info.neighbours, op.info.capacity, op.tiebreak);
        let stored = StoredPeer {
            info: op.info.clone(),
            neighbour_ids: Vec::new(),
            lease_hash: op.lease.token_hash,
            lease_expires_ms: op.lease.expires_ms,
            last_signed_ts_ms: op.signed_ts_ms,
        };
        st.journal(&JournalRecord::Put(stored.clone()))?;
        st.tombstones.remove(&id);
        st.upsert(Entry {
            stored,
            deadline_ms: op.deadline_ms,
            suspected: false,
            key,
        });
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
        if entry.deadline_ms <= op.now_ms && !op.accept_late {
            st.expire(&id, op.tombstone_ms)?;
            return Err(StoreError::Expired);
        }
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
        st.upsert(Entry {
            stored,
            deadline_ms: op.deadline_ms,
            suspected: false,
            key,
        });
        st.compact_if_needed();
        Ok(())
    }

    async fn report(&self, op: ReportOp) -> Result<bool, StoreError> {
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
            let mut updated = reporter.clone();
            updated.stored.last_signed_ts_ms = ts_ms;
            st.journal(&JournalRecord::Put(updated.stored.clone()))?;
            st.upsert(updated);
        }
        let Some(target) = st
            .peers
            .get(&op.target)
            .filter(|t| t.deadline_ms > op.now_ms)
        else {
            return Ok(false);
        };
        if !reporter_lists_target && !target.stored.neighbour_ids.contains(&op.reporter) {
            return Err(StoreError::NotANeighbour);
        }
        let mut target = target.clone();
        target.suspected = true;
        target.deadline_ms = target.deadline_ms.min(op.suspect_deadline_ms);
        st.upsert(target);
        Ok(true)
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
