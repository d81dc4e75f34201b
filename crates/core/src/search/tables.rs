//! The bounded tables behind search: seen query ids, routes back to searchers, recent
//! answers, and per-neighbour query budgets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use highway_wire::peer::{Hit, QueryId, QueryTarget};
use highway_wire::{ContentId, NodeId};

/// Query ids seen recently: a query seen again (it came round another path) is answered
/// with a plain "done" and not forwarded. Bounded in count and age; the oldest go first.
#[derive(Debug, Default)]
pub(crate) struct SeenQueries {
    at: HashMap<QueryId, Instant>,
    order: VecDeque<(Instant, QueryId)>,
}

impl SeenQueries {
    /// Remembers `id`; false when it was already remembered.
    pub fn insert(&mut self, now: Instant, id: QueryId, capacity: usize, ttl: Duration) -> bool {
        self.expire(now, ttl);
        if self.at.contains_key(&id) {
            return false;
        }
        while self.order.len() >= capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
        self.at.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some(&(at, id)) = self.order.front() {
            if now < at + ttl {
                break;
            }
            self.order.pop_front();
            self.at.remove(&id);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.at.len()
    }
}

/// Where a routed query's answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// This peer searches: hits become events.
    Local,
    /// The neighbour that sent us the query.
    Neighbour(NodeId),
}

/// A query this peer forwarded and is waiting on.
#[derive(Debug)]
pub(crate) struct Route {
    pub upstream: Upstream,
    pub target: QueryTarget,
    /// Neighbours it went to; hits are accepted from these only.
    pub children: HashSet<NodeId>,
    /// Those that have not closed their branch yet.
    pub pending: HashSet<NodeId>,
    pub deadline: Instant,
    /// When the branches still open get the query again ([`crate::Config::query_resend`]);
    /// `None` when the deadline comes first.
    pub resend_at: Option<Instant>,
    /// Every branch has closed; the route ends at this instant (see
    /// [`crate::Config::query_close_grace`]).
    pub closing_at: Option<Instant>,
    /// The `ttl` and `hops` the query was forwarded with, for that resend.
    pub forwarded: (u8, u8),
    /// Hits passed upstream (or to the searcher) so far, capped.
    pub relayed: u32,
    pub cap: u32,
    /// (content, holder) pairs already passed on: the same hit along two paths once.
    pub delivered: HashSet<(ContentId, NodeId)>,
    /// Hits from the branches, kept for the hit cache (bounded by `cap`).
    pub collected: Vec<Hit>,
}

/// Recent answers by query, so a repeated query is answered here instead of flooding
/// again. An entry lives `ttl`, plus `ttl` for each time it was used, up to `max_ttl`:
/// popular queries stay longest.
#[derive(Debug, Default)]
pub(crate) struct HitCache {
    entries: HashMap<String, CachedAnswer>,
}

#[derive(Debug)]
struct CachedAnswer {
    hits: Vec<Hit>,
    stored: Instant,
    uses: u32,
}

/// The cache key of a query: keywords normalised and sorted, or the hash.
pub(crate) fn cache_key(target: &QueryTarget) -> Option<String> {
    match target {
        QueryTarget::Keywords(text) => {
            let mut tokens = highway_wire::tokenize::tokens(text);
            if tokens.is_empty() {
                return None;
            }
            tokens.sort();
            tokens.dedup();
            Some(tokens.join(" "))
        }
        QueryTarget::Hash(content) => Some(format!("#{content}")),
    }
}

impl HitCache {
    fn lifetime(uses: u32, ttl: Duration, max_ttl: Duration) -> Duration {
        ttl.saturating_mul(uses.saturating_add(1)).min(max_ttl)
    }

    /// The cached hits for `key`, if fresh; counts the use.
    pub fn answer(
        &mut self,
        now: Instant,
        key: &str,
        ttl: Duration,
        max_ttl: Duration,
    ) -> Option<Vec<Hit>> {
        let entry = self.entries.get_mut(key)?;
        if now >= entry.stored + Self::lifetime(entry.uses, ttl, max_ttl) {
            self.entries.remove(key);
            return None;
        }
        entry.uses = entry.uses.saturating_add(1);
        Some(entry.hits.clone())
    }

    /// Stores the answer a finished route collected. Answers with no hits are not kept:
    /// a file added a moment later must be findable at once.
    pub fn store(&mut self, now: Instant, key: String, hits: Vec<Hit>, capacity: usize) {
        if hits.is_empty() || capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= capacity {
            // Evict the entry stored longest ago among the least used.
            if let Some(victim) = self
                .entries
                .iter()
                .min_by_key(|(k, e)| (e.uses, e.stored, (*k).clone()))
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(
            key,
            CachedAnswer {
                hits,
                stored: now,
                uses: 0,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A token bucket: queries one neighbour may send us.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryBudget {
    tokens: f64,
    refilled: Option<Instant>,
}

impl QueryBudget {
    /// Takes one token; false when the neighbour is over its rate.
    pub fn take(&mut self, now: Instant, per_second: u32, burst: u32) -> bool {
        let burst = f64::from(burst);
        self.tokens = match self.refilled {
            None => burst,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                (self.tokens + elapsed * f64::from(per_second)).min(burst)
            }
        };
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u8) -> Hit {
        Hit {
            content: ContentId::from_bytes([n; 32]),
            size: 1,
            holder: NodeId::from_key(
                &ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
            ),
            server: "127.0.0.1:1".parse().unwrap(),
            hops: 1,
            name: format!("file{n}"),
            dialable: true,
            relays: Vec::new(),
        }
    }

    #[test]
    fn seen_queries_are_bounded_and_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut seen = SeenQueries::default();
        assert!(seen.insert(t0, [1; 16], 2, ttl));
        assert!(!seen.insert(t0, [1; 16], 2, ttl), "duplicate");
        assert!(seen.insert(t0, [2; 16], 2, ttl));
        assert!(seen.insert(t0, [3; 16], 2, ttl), "evicts the oldest");
        assert_eq!(seen.len(), 2);
        assert!(seen.insert(t0, [1; 16], 2, ttl), "evicted id is new again");
        let later = t0 + ttl;
        assert!(
            seen.insert(later, [3; 16], 2, ttl),
            "expired id is new again"
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn cache_keys_ignore_case_order_and_spacing() {
        let a = cache_key(&QueryTarget::Keywords("Café Live".into()));
        let b = cache_key(&QueryTarget::Keywords("live  CAFÉ, live".into()));
        assert_eq!(a, b);
        assert_eq!(cache_key(&QueryTarget::Keywords("  ".into())), None);
    }

    #[test]
    fn popular_answers_live_longer_and_empty_ones_are_not_kept() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let max = Duration::from_secs(30);
        let mut cache = HitCache::default();
        cache.store(t0, "x".into(), vec![], 8);
        assert_eq!(cache.len(), 0);
        cache.store(t0, "a".into(), vec![hit(1)], 8);
        assert!(
            cache
                .answer(t0 + Duration::from_secs(9), "a", ttl, max)
                .is_some()
        );
        // One use: it now lives 20 s.
        assert!(
            cache
                .answer(t0 + Duration::from_secs(19), "a", ttl, max)
                .is_some()
        );
        // Two uses: 30 s (the maximum), not more.
        assert!(
            cache
                .answer(t0 + Duration::from_secs(31), "a", ttl, max)
                .is_none()
        );
    }

    #[test]
    fn full_cache_evicts_the_least_used() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut cache = HitCache::default();
        cache.store(t0, "a".into(), vec![hit(1)], 2);
        cache.store(t0, "b".into(), vec![hit(2)], 2);
        cache.answer(t0, "a", ttl, ttl);
        cache.store(t0, "c".into(), vec![hit(3)], 2);
        assert_eq!(cache.len(), 2);
        assert!(cache.answer(t0, "a", ttl, ttl).is_some());
        assert!(cache.answer(t0, "b", ttl, ttl).is_none());
    }

    #[test]
    fn query_budget_allows_bursts_then_the_rate() {
        let t0 = Instant::now();
        let mut b = QueryBudget::default();
        for _ in 0..4 {
            assert!(b.take(t0, 2, 4));
        }
        assert!(!b.take(t0, 2, 4));
        assert!(b.take(t0 + Duration::from_millis(500), 2, 4));
        assert!(!b.take(t0 + Duration::from_millis(500), 2, 4));
    }
}
