//! Searches started through the control API: their hits as they arrive, for
//! `GET /v1/search/{id}` to page through (and wait on).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use highway_wire::peer::{Hit, QueryId, QueryTarget};
use tokio::sync::watch;

use crate::views::{HitJson, RelayJson, SearchPage};

/// Searches remembered; the oldest are forgotten first.
const MAX_SEARCHES: usize = 64;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The hex form of a query id, as the API shows it.
pub fn id_hex(id: &QueryId) -> String {
    hex::encode(id)
}

#[derive(Debug)]
struct Record {
    query: String,
    started: Instant,
    hits: Vec<HitJson>,
    cap: usize,
    ended: Option<Instant>,
    first_hit: Option<Instant>,
    /// Bumped on every change, for waiters.
    changed: watch::Sender<u64>,
}

impl Record {
    fn page(&self, id: &str, after: usize, now: Instant) -> SearchPage {
        let end = self.ended.unwrap_or(now);
        SearchPage {
            search: id.to_string(),
            query: self.query.clone(),
            done: self.ended.is_some(),
            hits: self.hits.iter().skip(after).cloned().collect(),
            next: self.hits.len(),
            elapsed_ms: millis(end - self.started),
            first_hit_ms: self.first_hit.map(|t| millis(t - self.started)),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    records: HashMap<String, Record>,
    order: VecDeque<String>,
}

/// Every recent search of this node.
#[derive(Debug, Default)]
pub(crate) struct Searches {
    book: Mutex<Book>,
}

impl Searches {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a search the core just started.
    pub fn begin(&self, id: &QueryId, target: &QueryTarget, cap: u32, now: Instant) {
        let key = id_hex(id);
        let mut book = self.book();
        while book.order.len() >= MAX_SEARCHES {
            if let Some(old) = book.order.pop_front() {
                book.records.remove(&old);
            }
        }
        let (changed, _) = watch::channel(0);
        book.order.push_back(key.clone());
        book.records.insert(
            key,
            Record {
                query: target.to_string(),
                started: now,
                hits: Vec::new(),
                cap: cap as usize,
                ended: None,
                first_hit: None,
                changed,
            },
        );
    }

    pub fn add_hits(&self, id: &QueryId, hits: Vec<Hit>, now: Instant) {
        let mut book = self.book();
        let Some(record) = book.records.get_mut(&id_hex(id)) else {
            return;
        };
        if record.ended.is_some() {
            return;
        }
        let at_ms = millis(now - record.started);
        for hit in hits {
            if record.hits.len() >= record.cap {
                break;
            }
            record.first_hit.get_or_insert(now);
            record.hits.push(HitJson {
                name: hit.name,
                size: hit.size,
                hash: hit.content,
                holder: hit.holder,
                addr: hit.server,
                hops: hit.hops,
                at_ms,
                dialable: hit.dialable,
                relays: hit
                    .relays
                    .iter()
                    .map(|r| RelayJson {
                        id: r.id,
                        addr: r.addr,
                    })
                    .collect(),
            });
        }
        record.changed.send_modify(|n| *n += 1);
    }

    pub fn finish(&self, id: &QueryId, now: Instant) {
        let mut book = self.book();
        if let Some(record) = book.records.get_mut(&id_hex(id))
            && record.ended.is_none()
        {
            record.ended = Some(now);
            record.changed.send_modify(|n| *n += 1);
        }
    }

    /// Hits from `after` on; `None` for an unknown search.
    pub fn page(&self, id: &str, after: usize) -> Option<SearchPage> {
        let book = self.book();
        book.records
            .get(id)
            .map(|r| r.page(id, after, Instant::now()))
    }

    /// Waits up to `wait` for a hit past `after` or the end, then pages.
    pub async fn wait_page(&self, id: &str, after: usize, wait: Duration) -> Option<SearchPage> {
        let mut changes = {
            let book = self.book();
            let record = book.records.get(id)?;
            if record.ended.is_some() || record.hits.len() > after {
                return Some(record.page(id, after, Instant::now()));
            }
            record.changed.subscribe()
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(page) = self.page(id, after)
                && (page.done || page.next > after)
            {
                return Some(page);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the search was forgotten meanwhile.
                _ => return self.page(id, after),
            }
        }
    }

    /// The recent searches, newest last, without their hits.
    pub fn list(&self) -> Vec<SearchPage> {
        let book = self.book();
        let now = Instant::now();
        book.order
            .iter()
            .filter_map(|id| book.records.get(id).map(|r| r.page(id, usize::MAX, now)))
            .collect()
    }

    /// Hits for `content` from recent searches, one per holder, most recent first.
    pub fn holders_of(&self, content: &highway_wire::ContentId) -> Vec<HitJson> {
        let book = self.book();
        let mut out: Vec<HitJson> = Vec::new();
        for id in book.order.iter().rev() {
            if let Some(r) = book.records.get(id) {
                for h in r.hits.iter().filter(|h| h.hash == *content) {
                    if !out.iter().any(|o| o.holder == h.holder && o.addr == h.addr) {
                        out.push(h.clone());
                    }
                }
            }
        }
        out
    }
}
