//! Flooded keyword search (docs/PROTOCOL.md, "Search").
//!
//! A searcher picks a random 128-bit id and sends `Query { ttl, hops: 0 }` to every
//! neighbour. A peer that receives one remembers the id (a repeat is answered with
//! `QueryDone` at once), answers from its own share, and forwards it with `ttl - 1` to its
//! other neighbours while `ttl > 1` — on the last hop only to those whose summary might
//! match. It then waits for every branch to close (`QueryDone`) or for its deadline,
//! relaying hits towards the searcher as they arrive, and closes its own branch. Branches
//! still open get the query again every `query_resend`, so a lost `Query` or `QueryDone`
//! does not hold a search open until its timeout. A route whose branches have all closed
//! lingers `query_close_grace` for hits that a reordered `QueryDone` overtook. The
//! searcher sees hits as events, then one end-of-search.

mod catalog;
mod summaries;
pub(crate) mod tables;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use highway_wire::NodeId;
use highway_wire::peer::search::{MAX_TTL, pack_hits};
use highway_wire::peer::{Hit, PeerMsg, QueryId, QueryTarget};
use highway_wire::summary::Summary;
use rand::Rng;

pub use catalog::{Catalog, LocalFile};
pub(crate) use summaries::{LinkSearch, LocalSummary};

use crate::api::Event;
use crate::peer::{Peer, Phase};
use tables::{HitCache, Route, SeenQueries, Upstream, cache_key};

/// Why a search could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the peer is not running (it has not joined, or it left)")]
    NotRunning,
    #[error("the query has no keywords of at least one letter or digit")]
    EmptyQuery,
    #[error("ttl {0} must be between 1 and {MAX_TTL}")]
    Ttl(u8),
    #[error("too many searches are running; wait for one to end")]
    Busy,
}

/// What a searcher asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub target: QueryTarget,
    /// Hops; `None` for the configured default.
    pub ttl: Option<u8>,
    /// When the search ends at the latest.
    pub timeout: Duration,
    /// Most hits delivered.
    pub max_results: u32,
}

/// The search state of a peer.
#[derive(Debug, Default)]
pub(crate) struct SearchState {
    pub seen: SeenQueries,
    pub routes: HashMap<QueryId, Route>,
    pub cache: HitCache,
    pub catalog: Option<Arc<dyn Catalog>>,
    pub file_server: Option<SocketAddr>,
    pub summary: Option<LocalSummary>,
}

impl Peer {
    /// Sets where this peer's files are looked up and served from; `None` shares nothing.
    pub fn set_catalog(&mut self, catalog: Option<Arc<dyn Catalog>>, server: Option<SocketAddr>) {
        self.search.catalog = catalog;
        self.search.file_server = server;
    }

    /// Publishes a new share summary (or none): neighbours see its version in the next
    /// heartbeat and fetch it.
    pub fn set_summary(&mut self, summary: Option<&Summary>) {
        self.search.summary = summary.map(LocalSummary::new);
        self.summary_version = summary.map_or(0, |s| s.version);
    }

    /// Starts a search; its hits arrive as [`Event::SearchHits`], then one
    /// [`Event::SearchDone`].
    pub fn start_search(
        &mut self,
        now: Instant,
        request: SearchRequest,
    ) -> Result<QueryId, SearchError> {
        if self.phase != Phase::Running {
            return Err(SearchError::NotRunning);
        }
        let ttl = request.ttl.unwrap_or(self.config.default_ttl);
        if !(1..=MAX_TTL).contains(&ttl) {
            return Err(SearchError::Ttl(ttl));
        }
        if cache_key(&request.target).is_none() {
            return Err(SearchError::EmptyQuery);
        }
        if self.search.routes.len() >= self.config.max_routes {
            return Err(SearchError::Busy);
        }
        let id = loop {
            let id: QueryId = self.rng.random();
            if self.insert_seen(now, id) {
                break id;
            }
        };
        self.stats.queries_started += 1;
        let cap = request.max_results.max(1);
        let mut route = self.new_route(
            Upstream::Local,
            request.target.clone(),
            now + request.timeout,
            cap,
        );
        let local = self.local_hits(&request.target, 0, cap);
        let fresh = accept_hits(&mut route, local);
        if !fresh.is_empty() {
            self.emit(Event::SearchHits { id, hits: fresh });
        }
        let children = self.forward_targets(None, ttl, &request.target);
        if children.is_empty() {
            self.emit(Event::SearchDone {
                id,
                timed_out: false,
            });
            return Ok(id);
        }
        self.forward(id, &children, ttl, 0, &request.target);
        self.open_branches(now, &mut route, &children, (ttl, 0));
        self.search.routes.insert(id, route);
        Ok(id)
    }

    /// Searches in progress (routed here or started here).
    pub fn routes_in_progress(&self) -> usize {
        self.search.routes.len()
    }

    fn insert_seen(&mut self, now: Instant, id: QueryId) -> bool {
        let (capacity, ttl) = (self.config.seen_queries, self.config.seen_ttl);
        self.search.seen.insert(now, id, capacity, ttl)
    }

    fn new_route(
        &self,
        upstream: Upstream,
        target: QueryTarget,
        deadline: Instant,
        cap: u32,
    ) -> Route {
        Route {
            upstream,
            target,
            children: HashSet::new(),
            pending: HashSet::new(),
            deadline,
            resend_at: None,
            closing_at: None,
            forwarded: (0, 0),
            relayed: 0,
            cap,
            delivered: HashSet::new(),
            collected: Vec::new(),
        }
    }

    /// This peer's own matching files as hits, `hops` away from the searcher.
    fn local_hits(&mut self, target: &QueryTarget, hops: u8, limit: u32) -> Vec<Hit> {
        let hits = self.own_hits(target, hops, limit);
        if !hits.is_empty() {
            self.stats.queries_answered += 1;
        }
        hits
    }

    /// This peer's own files matching `target` as hits would carry them, `hops` away:
    /// what a searcher learns of it, and what a ticket for one of its files holds.
    pub fn own_hits(&self, target: &QueryTarget, hops: u8, limit: u32) -> Vec<Hit> {
        let (Some(catalog), Some(server)) = (&self.search.catalog, self.search.file_server) else {
            return Vec::new();
        };
        let files = catalog.lookup(target, limit as usize);
        let dialable = self.dialable;
        let relays = if dialable {
            Vec::new()
        } else {
            self.relays_for_hits()
        };
        files
            .into_iter()
            .take(limit as usize)
            .map(|f| Hit {
                content: f.content,
                size: f.size,
                holder: self.id,
                server,
                dialable,
                relays: relays.clone(),
                hops,
                name: f.name,
            })
            .collect()
    }

    /// The neighbours a query with `ttl` hops left goes to from here (besides `from`):
    /// all of them, except on the last hop, where only those whose summary might match
    /// (unless [`crate::Config::last_hop_filter`] is off).
    fn forward_targets(&self, from: Option<&NodeId>, ttl: u8, target: &QueryTarget) -> Vec<NodeId> {
        let tokens = match target {
            QueryTarget::Keywords(text) => highway_wire::tokenize::tokens(text),
            QueryTarget::Hash(_) => Vec::new(),
        };
        self.link_peers()
            .into_iter()
            .filter(|p| Some(p) != from)
            .filter(|p| {
                ttl > 1
                    || !self.config.last_hop_filter
                    || self
                        .links
                        .get(p)
                        .is_some_and(|l| l.search.might_have(l, target, &tokens))
            })
            .collect()
    }

    fn forward(&mut self, id: QueryId, to: &[NodeId], ttl: u8, hops: u8, target: &QueryTarget) {
        let msg = PeerMsg::Query {
            id,
            ttl,
            hops,
            target: target.clone(),
        };
        for peer in to {
            self.stats.queries_forwarded += 1;
            self.send(peer, &msg);
        }
    }

    /// Records the branches a query was just forwarded to, and when to resend it to those
    /// still open.
    fn open_branches(&self, now: Instant, route: &mut Route, children: &[NodeId], sent: (u8, u8)) {
        route.pending = children.iter().copied().collect();
        route.children = route.pending.clone();
        route.forwarded = sent;
        let resend_at = now + self.config.query_resend;
        route.resend_at = (resend_at < route.deadline).then_some(resend_at);
    }

    /// Sends the query again to the branches of `id` still open, and again one
    /// `query_resend` later while the route lasts: a branch's `QueryDone` can be lost after
    /// an earlier resend (its subtree was itself waiting on a resend).
    fn resend(&mut self, now: Instant, id: QueryId) {
        let interval = self.config.query_resend;
        let Some(route) = self.search.routes.get_mut(&id) else {
            return;
        };
        let next = now + interval;
        route.resend_at = (next < route.deadline).then_some(next);
        let mut open: Vec<NodeId> = route.pending.iter().copied().collect();
        open.sort_unstable();
        let ((ttl, hops), target) = (route.forwarded, route.target.clone());
        self.stats.queries_resent += open.len() as u64;
        self.forward(id, &open, ttl, hops, &target);
    }

    fn send_hits(&mut self, to: &NodeId, id: QueryId, hits: &[Hit]) {
        for group in pack_hits(hits) {
            self.stats.hits_sent += group.len() as u64;
            self.send(to, &PeerMsg::QueryHits { id, hits: group });
        }
    }

    /// A neighbour's query: answer, forward, remember the way back.
    pub(crate) fn on_query(
        &mut self,
        now: Instant,
        from: NodeId,
        id: QueryId,
        ttl: u8,
        hops: u8,
        target: QueryTarget,
    ) {
        self.stats.queries_received += 1;
        let (rate, burst) = (self.config.queries_per_second, self.config.query_burst);
        let allowed = self
            .links
            .get_mut(&from)
            .is_some_and(|l| l.search.budget.take(now, rate, burst));
        if !allowed {
            self.stats.queries_rate_limited += 1;
            self.send(&from, &PeerMsg::QueryDone { id });
            return;
        }
        if !self.insert_seen(now, id) {
            let routing_for_sender = self
                .search
                .routes
                .get(&id)
                .is_some_and(|r| r.upstream == Upstream::Neighbour(from));
            if routing_for_sender {
                // Its resend: our branch is still open and will close in time.
                self.stats.queries_resend_ignored += 1;
                return;
            }
            self.stats.queries_duplicate += 1;
            self.send(&from, &PeerMsg::QueryDone { id });
            return;
        }
        let Some(key) = cache_key(&target) else {
            self.send(&from, &PeerMsg::QueryDone { id });
            return;
        };
        let here = hops.saturating_add(1);
        let cap = self.config.max_hits_per_query;
        let deadline = now + self.config.query_hop_timeout * u32::from(ttl - 1);
        let mut route = self.new_route(Upstream::Neighbour(from), target.clone(), deadline, cap);
        let mut answer = accept_hits(&mut route, self.local_hits(&target, here, cap));
        if ttl > 1 {
            let (cache_ttl, cache_max) = (self.config.hit_cache_ttl, self.config.hit_cache_max_ttl);
            if let Some(cached) = self.search.cache.answer(now, &key, cache_ttl, cache_max) {
                self.stats.queries_cache_answered += 1;
                answer.extend(accept_hits(&mut route, cached));
                self.send_hits(&from, id, &answer);
                self.send(&from, &PeerMsg::QueryDone { id });
                return;
            }
        }
        self.send_hits(&from, id, &answer);
        let children = if ttl > 1 {
            self.forward_targets(Some(&from), ttl - 1, &target)
        } else {
            Vec::new()
        };
        if children.is_empty() {
            self.send(&from, &PeerMsg::QueryDone { id });
            return;
        }
        if self.search.routes.len() >= self.config.max_routes {
            self.stats.queries_dropped += 1;
            self.send(&from, &PeerMsg::QueryDone { id });
            return;
        }
        self.forward(id, &children, ttl - 1, here, &target);
        self.open_branches(now, &mut route, &children, (ttl - 1, here));
        // Our own hits are not worth caching: the cache answers for other peers' files.
        route.collected.clear();
        self.search.routes.insert(id, route);
    }

    pub(crate) fn on_query_hits(&mut self, from: NodeId, id: QueryId, hits: Vec<Hit>) {
        self.stats.hits_received += hits.len() as u64;
        let Some(route) = self.search.routes.get_mut(&id) else {
            self.stats.hits_unroutable += hits.len() as u64;
            return;
        };
        if !route.children.contains(&from) {
            self.stats.hits_unroutable += hits.len() as u64;
            return;
        }
        // A forged hit could point a downloader at any address: never pass one on that
        // names no dialable file server (or, for a holder behind a NAT, no dialable relay).
        let offered = hits.len();
        let dialable = |a: &std::net::SocketAddr| {
            a.port() != 0 && highway_wire::check_dialable_ip(a.ip()).is_ok()
        };
        let hits: Vec<Hit> = hits
            .into_iter()
            .filter(|h| {
                dialable(&h.server) && (h.dialable || h.relays.iter().any(|r| dialable(&r.addr)))
            })
            .collect();
        let refused = offered - hits.len();
        self.stats.hits_refused_address += refused as u64;
        let offered = hits.len();
        let fresh = accept_hits(route, hits);
        self.stats.hits_dropped += (offered - fresh.len()) as u64;
        if fresh.is_empty() {
            return;
        }
        match route.upstream {
            Upstream::Local => self.emit(Event::SearchHits { id, hits: fresh }),
            Upstream::Neighbour(up) => self.send_hits(&up, id, &fresh),
        }
    }

    pub(crate) fn on_query_done(&mut self, now: Instant, from: NodeId, id: QueryId) {
        let Some(route) = self.search.routes.get_mut(&id) else {
            return;
        };
        route.pending.remove(&from);
        if route.pending.is_empty() && route.closing_at.is_none() {
            route.resend_at = None;
            route.closing_at = Some(now + self.config.query_close_grace);
            self.quiet_timer = true;
        }
    }

    /// Closes a route: the searcher gets its end, a neighbour its `QueryDone`. What a
    /// relayed route collected is cached (when `now` is known).
    fn finish_route(&mut self, id: QueryId, timed_out: bool, now: Option<Instant>) {
        let Some(route) = self.search.routes.remove(&id) else {
            return;
        };
        if timed_out {
            self.stats.routes_timed_out += 1;
        }
        match route.upstream {
            Upstream::Local => {
                self.emit(Event::SearchDone { id, timed_out });
                return;
            }
            Upstream::Neighbour(up) => self.send(&up, &PeerMsg::QueryDone { id }),
        }
        if let (Some(key), Some(now)) = (cache_key(&route.target), now) {
            let capacity = self.config.hit_cache_entries;
            self.search.cache.store(now, key, route.collected, capacity);
        }
    }

    /// Resends queries whose branches are slow to close; ends the routes whose time ran
    /// out.
    pub(crate) fn expire_routes(&mut self, now: Instant) {
        let closed: Vec<QueryId> = self
            .search
            .routes
            .iter()
            .filter(|(_, r)| r.closing_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in sorted(closed) {
            self.finish_route(id, false, Some(now));
        }
        let slow: Vec<QueryId> = self
            .search
            .routes
            .iter()
            .filter(|(_, r)| r.resend_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in sorted(slow) {
            self.resend(now, id);
        }
        let expired: Vec<QueryId> = self
            .search
            .routes
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in sorted(expired) {
            self.finish_route(id, true, Some(now));
        }
    }

    /// The earliest route deadline, for [`Peer::poll_timeout`].
    pub(crate) fn next_route_deadline(&self) -> Option<Instant> {
        self.search
            .routes
            .values()
            .map(|r| {
                [r.resend_at, r.closing_at]
                    .into_iter()
                    .flatten()
                    .fold(r.deadline, Instant::min)
            })
            .min()
    }

    /// A neighbour is gone: its branches are closed, and routes towards it are dropped
    /// (nobody is left to answer).
    pub(crate) fn search_link_down(&mut self, peer: &NodeId) {
        let mut finished = Vec::new();
        self.search.routes.retain(|id, route| {
            if route.upstream == Upstream::Neighbour(*peer) {
                return false;
            }
            if route.pending.remove(peer) && route.pending.is_empty() {
                finished.push(*id);
            }
            true
        });
        for id in sorted(finished) {
            self.finish_route(id, false, None);
        }
    }
}

/// Keeps the hits of `hits` that are new for `route` and within its cap; records them.
fn accept_hits(route: &mut Route, hits: Vec<Hit>) -> Vec<Hit> {
    let mut fresh = Vec::new();
    for hit in hits {
        if route.relayed >= route.cap {
            break;
        }
        if !route.delivered.insert((hit.content, hit.holder)) {
            continue;
        }
        route.relayed += 1;
        route.collected.push(hit.clone());
        fresh.push(hit);
    }
    fresh
}

/// Query ids in a fixed order, so the same inputs give the same outputs.
fn sorted(mut ids: Vec<QueryId>) -> Vec<QueryId> {
    ids.sort_unstable();
    ids
}
