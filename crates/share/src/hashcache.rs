//! Remembered content hashes, so that a restart (or a rescan) does not rehash a file that
//! has not changed.
//!
//! An entry maps a relative path to the file's size, modification time (ns) and, on Unix,
//! its device and inode, together with the content hash and when hashing began. A file
//! whose size and time still match is not read again, with one exception borrowed from
//! git's "racy clean" rule: a hash that began less than [`RACY_WINDOW`] after the file's
//! modification time is not trusted across a restart or a change notification, because a
//! second write within the file system's timestamp granularity would leave size and time
//! unchanged. Such entries are dropped on load and ignored when a watcher event names the
//! file; the rehash that follows is trusted once the file has been quiet.
//!
//! Renames: when a path disappears, its entry is kept aside (bounded, in memory) under its
//! `(device, inode, size, mtime)`; a new path with the same identity reuses the hash, so
//! renaming or moving a large file inside the share costs no rehash.
//!
//! Persistence: `DATA_DIR/hashcache.json`, written atomically (a temporary file in the same
//! directory, flushed, then renamed over the old one). A missing, unreadable or corrupt
//! file, or one written for another root, is an empty cache with a warning: the cost is a
//! rehash, never wrong data.
//!
//! ```json
//! {"format":1,"root":"/srv/music","entries":[
//!   {"path":"albums/a.flac","size":123,"mtime_ns":1700000000000000000,
//!    "dev":2049,"ino":131,"hashed_at_ns":1700000100000000000,"content":"<64 hex>"}]}
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use highway_wire::ContentId;
use serde::{Deserialize, Serialize};

use crate::index::file_name_of;

/// Name of the cache file inside the data directory.
pub const CACHE_FILE: &str = "hashcache.json";
/// A hash that began less than this long after the file's mtime is not trusted on reload.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Most entries kept aside for rename detection.
pub const MAX_ORPHANS: usize = 65_536;

const FORMAT: u32 = 1;

/// What identifies one version of a file on disk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// `(device, inode)` where the platform has them.
    pub file_id: Option<(u64, u64)>,
}

impl FileStamp {
    /// The stamp of a file's metadata (from `symlink_metadata` or an open file).
    pub fn of(meta: &fs::Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            size: meta.len(),
            mtime_ns,
            file_id: file_id(meta),
        }
    }

    /// Whether two stamps describe the same file version (size and time; the identity
    /// too when both have one).
    pub fn same_version(&self, other: &FileStamp) -> bool {
        self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && match (self.file_id, other.file_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    stamp: FileStamp,
    content: ContentId,
    hashed_at_ns: u64,
}

impl Cached {
    fn racy(&self) -> bool {
        self.hashed_at_ns
            < self
                .stamp
                .mtime_ns
                .saturating_add(RACY_WINDOW.as_nanos() as u64)
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    root: String,
    entries: Vec<DiskEntry>,
}

#[derive(Serialize, Deserialize)]
struct DiskEntry {
    path: String,
    size: u64,
    mtime_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ino: Option<u64>,
    hashed_at_ns: u64,
    content: ContentId,
}

/// The cache; see the [module documentation](self).
#[derive(Debug)]
pub struct HashCache {
    file: PathBuf,
    root: String,
    entries: HashMap<PathBuf, Cached>,
    orphans: HashMap<FileStamp, Cached>,
    orphan_order: VecDeque<FileStamp>,
    dirty: bool,
}

impl HashCache {
    /// An empty cache that will be saved in `data_dir` for the share at `root`.
    pub fn new(data_dir: &Path, root: &Path) -> Self {
        Self {
            file: data_dir.join(CACHE_FILE),
            root: root.to_string_lossy().into_owned(),
            entries: HashMap::new(),
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            dirty: false,
        }
    }

    /// Loads the cache saved in `data_dir` for `root`, or an empty one (with a warning
    /// when a file existed but could not be used).
    pub fn load(data_dir: &Path, root: &Path) -> Self {
        let mut cache = Self::new(data_dir, root);
        let bytes = match fs::read(&cache.file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return cache,
            Err(e) => {
                tracing::warn!(file = %cache.file.display(), error = %e, "hash cache unreadable; starting empty");
                return cache;
            }
        };
        let disk: OnDisk = match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(file = %cache.file.display(), error = %e, "hash cache corrupt; starting empty");
                return cache;
            }
        };
        if disk.format != FORMAT || disk.root != cache.root {
            tracing::info!(file = %cache.file.display(), "hash cache is for another root or format; starting empty");
            return cache;
        }
        let mut racy = 0usize;
        for e in disk.entries {
            let path: PathBuf = e.path.split('/').collect();
            if file_name_of(&path).is_none() {
                continue;
            }
            let entry = Cached {
                stamp: FileStamp {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    file_id: e.dev.zip(e.ino),
                },
                content: e.content,
                hashed_at_ns: e.hashed_at_ns,
            };
            if entry.racy() {
                racy += 1;
            } else {
                cache.entries.insert(path, entry);
            }
        }
        tracing::debug!(entries = cache.entries.len(), racy, "hash cache loaded");
        cache
    }

    /// Number of remembered paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the cache is saved.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The remembered hash of `rel_path` if `stamp` is the version that was hashed. With
    /// `allow_racy` false, a hash taken too close to the modification time is not used.
    /// Falls back to an entry set aside by [`HashCache::forget`] with the same identity
    /// (a rename), which then moves to `rel_path`.
    pub fn get(
        &mut self,
        rel_path: &Path,
        stamp: &FileStamp,
        allow_racy: bool,
    ) -> Option<ContentId> {
        let usable = |c: &Cached| c.stamp.same_version(stamp) && (allow_racy || !c.racy());
        if let Some(c) = self.entries.get(rel_path).filter(|c| usable(c)) {
            return Some(c.content);
        }
        // Without a file identity a rename cannot be told from a lookalike file.
        stamp.file_id?;
        let c = *self.orphans.get(stamp).filter(|c| usable(c))?;
        self.orphans.remove(stamp);
        self.entries.insert(rel_path.to_path_buf(), c);
        self.dirty = true;
        Some(c.content)
    }

    /// Remembers that `rel_path` at `stamp` hashed to `content`, hashing having begun at
    /// `hashed_at_ns` (ns since the Unix epoch).
    pub fn insert(
        &mut self,
        rel_path: &Path,
        stamp: FileStamp,
        content: ContentId,
        hashed_at_ns: u64,
    ) {
        self.entries.insert(
            rel_path.to_path_buf(),
            Cached {
                stamp,
                content,
                hashed_at_ns,
            },
        );
        self.dirty = true;
    }

    /// Forgets `rel_path`, keeping its hash aside for a possible rename.
    pub fn forget(&mut self, rel_path: &Path) {
        let Some(c) = self.entries.remove(rel_path) else {
            return;
        };
        self.dirty = true;
        if c.stamp.file_id.is_none() {
            return;
        }
        if self.orphans.insert(c.stamp, c).is_none() {
            self.orphan_order.push_back(c.stamp);
        }
        while self.orphan_order.len() > MAX_ORPHANS {
            if let Some(old) = self.orphan_order.pop_front() {
                self.orphans.remove(&old);
            }
        }
    }

    /// Forgets (as [`HashCache::forget`]) every path not in `keep`.
    pub fn forget_all_but(&mut self, keep: &HashSet<PathBuf>) {
        let gone: Vec<PathBuf> = self
            .entries
            .keys()
            .filter(|p| !keep.contains(*p))
            .cloned()
            .collect();
        for p in gone {
            self.forget(&p);
        }
    }

    /// Whether there are changes not yet saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The bytes to save, if anything changed since the last snapshot. Cheap to call under
    /// a lock; write them with [`HashCache::write_snapshot`] outside it.
    pub fn snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let mut entries: Vec<DiskEntry> = self
            .entries
            .iter()
            .filter_map(|(path, c)| {
                let parts: Option<Vec<&str>> = path.iter().map(|p| p.to_str()).collect();
                Some(DiskEntry {
                    path: parts?.join("/"),
                    size: c.stamp.size,
                    mtime_ns: c.stamp.mtime_ns,
                    dev: c.stamp.file_id.map(|(d, _)| d),
                    ino: c.stamp.file_id.map(|(_, i)| i),
                    hashed_at_ns: c.hashed_at_ns,
                    content: c.content,
                })
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let disk = OnDisk {
            format: FORMAT,
            root: self.root.clone(),
            entries,
        };
        Some(serde_json::to_vec(&disk).expect("the cache serialises"))
    }

    /// Marks the cache as changed again (after a failed write, so the next save retries).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Writes a snapshot to `file` atomically: a temporary file beside it, flushed to
    /// disk, then renamed over it.
    pub fn write_snapshot(file: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = file.with_extension("json.tmp");
        let result = (|| {
            let mut w = BufWriter::new(File::create(&tmp)?);
            w.write_all(bytes)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            fs::rename(&tmp, file)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Snapshots and writes in one go (for callers without a lock to release).
    pub fn save(&mut self) -> io::Result<()> {
        let Some(bytes) = self.snapshot() else {
            return Ok(());
        };
        let r = Self::write_snapshot(&self.file, &bytes);
        if r.is_err() {
            self.dirty = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_NS: u64 = 3_600_000_000_000;

    fn stamp(size: u64, mtime_ns: u64, ino: u64) -> FileStamp {
        FileStamp {
            size,
            mtime_ns,
            file_id: Some((1, ino)),
        }
    }

    #[test]
    fn saved_entries_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/share");
        let mut c = HashCache::new(dir.path(), root);
        let id = ContentId::of(b"x");
        c.insert(Path::new("a/b.txt"), stamp(1, HOUR_NS, 7), id, 2 * HOUR_NS);
        c.save().unwrap();
        assert!(!c.is_dirty());

        let mut again = HashCache::load(dir.path(), root);
        assert_eq!(again.len(), 1);
        assert_eq!(
            again.get(Path::new("a/b.txt"), &stamp(1, HOUR_NS, 7), false),
            Some(id)
        );
        assert_eq!(
            again.get(Path::new("a/b.txt"), &stamp(2, HOUR_NS, 7), false),
            None,
            "size changed"
        );
        assert_eq!(
            again.get(Path::new("a/b.txt"), &stamp(1, HOUR_NS + 1, 7), false),
            None,
            "mtime changed"
        );
        assert!(!dir.path().join("hashcache.json.tmp").exists());
    }

    #[test]
    fn racy_hashes_are_dropped_on_reload_and_ignored_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/share");
        let mut c = HashCache::new(dir.path(), root);
        let s = stamp(1, HOUR_NS, 7);
        c.insert(Path::new("racy"), s, ContentId::of(b"r"), HOUR_NS + 1_000);
        assert_eq!(
            c.get(Path::new("racy"), &s, true),
            Some(ContentId::of(b"r"))
        );
        assert_eq!(c.get(Path::new("racy"), &s, false), None);
        c.save().unwrap();
        assert!(HashCache::load(dir.path(), root).is_empty());
    }

    #[test]
    fn another_root_or_a_corrupt_file_gives_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = HashCache::new(dir.path(), Path::new("/one"));
        c.insert(
            Path::new("f"),
            stamp(1, HOUR_NS, 1),
            ContentId::of(b"f"),
            2 * HOUR_NS,
        );
        c.save().unwrap();
        assert!(HashCache::load(dir.path(), Path::new("/two")).is_empty());
        fs::write(dir.path().join(CACHE_FILE), b"{not json").unwrap();
        assert!(HashCache::load(dir.path(), Path::new("/one")).is_empty());
    }

    #[test]
    fn a_forgotten_entry_is_found_again_by_identity_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = HashCache::new(dir.path(), Path::new("/r"));
        let s = stamp(10, HOUR_NS, 42);
        c.insert(Path::new("old.bin"), s, ContentId::of(b"big"), 2 * HOUR_NS);
        c.forget(Path::new("old.bin"));
        assert_eq!(c.len(), 0);
        assert_eq!(
            c.get(Path::new("new.bin"), &s, false),
            Some(ContentId::of(b"big"))
        );
        assert_eq!(c.len(), 1, "the entry moved to the new path");
        // The orphan was claimed; a second path with the same identity has to hash.
        c.forget(Path::new("nothing-here"));
        assert_eq!(c.get(Path::new("copy.bin"), &s, false), None);
        assert_eq!(
            c.get(Path::new("other.bin"), &stamp(10, HOUR_NS, 43), false),
            None,
            "another inode"
        );
    }

    #[test]
    fn forget_all_but_keeps_only_seen_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = HashCache::new(dir.path(), Path::new("/r"));
        c.insert(
            Path::new("a"),
            stamp(1, HOUR_NS, 1),
            ContentId::of(b"a"),
            2 * HOUR_NS,
        );
        c.insert(
            Path::new("b"),
            stamp(1, HOUR_NS, 2),
            ContentId::of(b"b"),
            2 * HOUR_NS,
        );
        c.forget_all_but(&HashSet::from([PathBuf::from("a")]));
        assert_eq!(c.len(), 1);
        assert!(
            c.get(Path::new("a"), &stamp(1, HOUR_NS, 1), false)
                .is_some()
        );
    }
}
