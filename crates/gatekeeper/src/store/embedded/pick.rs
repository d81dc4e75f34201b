//! Choosing join candidates: random points and least loaded, interleaved, with at most
//! [`MAX_PER_PREFIX`] peers of one network while other networks can fill the answer.

use std::ops::Bound;

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;

use super::{Entry, MAX_CANDIDATE_SCAN, State};
use crate::store::JoinOp;
use crate::store::candidates::{
    CandidateKey, MAX_PER_PREFIX, MAX_RANDOM_SCAN, interleave, scan_ranges,
};

/// What one answer holds so far: who, and how many of each network.
struct Selection<'a> {
    chosen: Vec<[u8; 32]>,
    networks: Vec<(&'a str, usize)>,
}

impl<'a> Selection<'a> {
    fn has(&self, id: &[u8; 32]) -> bool {
        self.chosen.contains(id)
    }

    /// The network already has its share (peers without a network never do).
    fn full(&self, prefix: &str) -> bool {
        !prefix.is_empty()
            && self
                .networks
                .iter()
                .any(|&(p, n)| p == prefix && n >= MAX_PER_PREFIX)
    }

    fn take(&mut self, entry: &'a Entry) -> PeerInfo {
        self.chosen.push(*entry.stored.info.id.as_bytes());
        let prefix = entry.stored.prefix.as_str();
        match self.networks.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, n)) => *n += 1,
            None => self.networks.push((prefix, 1)),
        }
        entry.stored.info.clone()
    }
}

impl State {
    /// Candidates for `requester`: one per random point, then the least loaded, each
    /// preferring networks not yet in the answer; then, if the answer is short, the peers
    /// passed over for their network.
    pub(super) fn pick(&self, requester: &NodeId, op: &JoinOp) -> Vec<PeerInfo> {
        let mut sel = Selection {
            chosen: vec![*requester.as_bytes()],
            networks: Vec::new(),
        };
        let (mut random, deferred) = self.pick_random(op, &mut sel);
        let want_least = op.want - random.len();
        let (mut least, passed_over) = self.pick_least_loaded(op, want_least, &mut sel);
        for id in deferred.iter().chain(&passed_over) {
            if random.len() + least.len() >= op.want {
                break;
            }
            let Some(entry) = self.peers.get(id) else {
                continue;
            };
            if sel.has(id) {
                continue;
            }
            let info = sel.take(entry);
            if deferred.contains(id) {
                random.push(info);
            } else {
                least.push(info);
            }
        }
        interleave(random, least)
    }

    fn usable(entry: &Entry, now_ms: u64) -> bool {
        !entry.suspected && entry.stored.info.reachable && entry.deadline_ms > now_ms
    }

    /// For each point, the first live, unsuspected peer at or after it in id order
    /// (wrapping) not yet chosen, whose network has room; a bounded scan per point. When
    /// only full networks were seen, the first such peer is deferred.
    fn pick_random<'a>(
        &'a self,
        op: &JoinOp,
        sel: &mut Selection<'a>,
    ) -> (Vec<PeerInfo>, Vec<[u8; 32]>) {
        let mut out = Vec::new();
        let mut deferred = Vec::new();
        for point in op.random_points.iter().take(op.want) {
            let from_point = self
                .peers
                .range::<[u8; 32], _>((Bound::Included(point), Bound::Unbounded));
            let wrapped = self
                .peers
                .range::<[u8; 32], _>((Bound::Unbounded, Bound::Excluded(point)));
            let mut fallback = None;
            let found = from_point
                .chain(wrapped)
                .take(MAX_RANDOM_SCAN)
                .filter(|(id, e)| Self::usable(e, op.now_ms) && !sel.has(id.as_bytes()))
                .find(|(id, e)| {
                    let full = sel.full(&e.stored.prefix);
                    if full && fallback.is_none() {
                        fallback = Some(*id.as_bytes());
                    }
                    !full
                });
            match found {
                Some((_, entry)) => out.push(sel.take(entry)),
                None => deferred.extend(fallback),
            }
        }
        (out, deferred)
    }

    /// The least loaded peers whose network has room, within a bounded scan; also up to
    /// `want` peers passed over for their network, in scan order.
    fn pick_least_loaded<'a>(
        &'a self,
        op: &JoinOp,
        want: usize,
        sel: &mut Selection<'a>,
    ) -> (Vec<PeerInfo>, Vec<[u8; 32]>) {
        let mut out = Vec::with_capacity(want);
        let mut passed_over = Vec::new();
        let Some(&(first, _)) = self.candidates.first() else {
            return (out, passed_over);
        };
        let mut scanned = 0;
        for (lo, hi) in scan_ranges(CandidateKey(first), op.scan_start) {
            let range = (
                Bound::Included((lo, [0u8; 32])),
                Bound::Excluded((hi, [0u8; 32])),
            );
            for (_, id_bytes) in self.candidates.range(range) {
                if out.len() >= want || scanned >= MAX_CANDIDATE_SCAN {
                    return (out, passed_over);
                }
                scanned += 1;
                if sel.has(id_bytes) {
                    continue;
                }
                let Some(entry) = self
                    .peers
                    .get(id_bytes)
                    .filter(|e| e.deadline_ms > op.now_ms)
                else {
                    continue;
                };
                if !sel.full(&entry.stored.prefix) {
                    out.push(sel.take(entry));
                } else if passed_over.len() < want {
                    passed_over.push(*id_bytes);
                }
            }
        }
        (out, passed_over)
    }
}
