//! A least-recently-used cache of encoded outboards, bounded by bytes.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use highway_wire::ContentId;

/// Outboards below this many bytes (files below ~1 MiB) are not cached: recomputing them
/// costs less than a millisecond, and leaving them out keeps the entry count (and the
/// eviction bookkeeping) small.
pub(crate) const MIN_CACHED_BYTES: usize = 4 * 1024;

#[derive(Debug)]
struct Entry {
    encoded: Bytes,
    tick: u64,
}

/// Encoded outboards by content id. Not thread-safe; the server wraps it in a mutex that
/// is never held across an await.
#[derive(Debug)]
pub(crate) struct OutboardCache {
    entries: HashMap<ContentId, Entry>,
    by_age: BTreeMap<u64, ContentId>,
    bytes: usize,
    max_bytes: usize,
    tick: u64,
}

impl OutboardCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            max_bytes,
            tick: 0,
        }
    }

    pub fn get(&mut self, id: &ContentId) -> Option<Bytes> {
        self.tick += 1;
        let entry = self.entries.get_mut(id)?;
        self.by_age.remove(&entry.tick);
        entry.tick = self.tick;
        self.by_age.insert(self.tick, *id);
        Some(entry.encoded.clone())
    }

    pub fn insert(&mut self, id: ContentId, encoded: Bytes) {
        if encoded.len() < MIN_CACHED_BYTES || encoded.len() > self.max_bytes {
            return;
        }
        if let Some(old) = self.entries.remove(&id) {
            self.by_age.remove(&old.tick);
            self.bytes -= old.encoded.len();
        }
        while self.bytes + encoded.len() > self.max_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.encoded.len();
            }
        }
        self.tick += 1;
        self.bytes += encoded.len();
        self.by_age.insert(self.tick, id);
        self.entries.insert(
            id,
            Entry {
                encoded,
                tick: self.tick,
            },
        );
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ContentId {
        ContentId::from_bytes([n; 32])
    }

    #[test]
    fn evicts_the_least_recently_used_entry_to_stay_within_the_byte_bound() {
        let mut cache = OutboardCache::new(3 * MIN_CACHED_BYTES);
        let blob = Bytes::from(vec![0u8; MIN_CACHED_BYTES]);
        cache.insert(id(1), blob.clone());
        cache.insert(id(2), blob.clone());
        cache.insert(id(3), blob.clone());
        assert!(cache.get(&id(1)).is_some(), "touch 1 so 2 is the oldest");
        cache.insert(id(4), blob.clone());
        assert!(cache.get(&id(2)).is_none());
        assert!(cache.get(&id(1)).is_some());
        assert!(cache.get(&id(3)).is_some());
        assert!(cache.get(&id(4)).is_some());
        assert_eq!(cache.bytes(), 3 * MIN_CACHED_BYTES);
    }

    #[test]
    fn skips_tiny_and_oversized_entries() {
        let mut cache = OutboardCache::new(2 * MIN_CACHED_BYTES);
        cache.insert(id(1), Bytes::from(vec![0u8; 8]));
        cache.insert(id(2), Bytes::from(vec![0u8; 3 * MIN_CACHED_BYTES]));
        assert!(cache.get(&id(1)).is_none());
        assert!(cache.get(&id(2)).is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
