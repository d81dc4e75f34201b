//! Bringing the index in line with the disk, one path at a time.
//!
//! The scanner and the watcher both end here. Every index change is decided by a `stat`
//! taken while the state lock is held, and hashing happens outside the lock; so whichever
//! of two concurrent updates of a path takes the lock last leaves the index agreeing with
//! the disk as it was at that moment, and a hash of content that changed while it was read
//! is thrown away.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use std::{fs, io};

use highway_wire::ContentId;
use tokio::sync::{Notify, watch};

use crate::folder::ShareOptions;
use crate::hashcache::{FileStamp, HashCache};
use crate::index::{Index, IndexError, SharedFile, file_name_of};
use crate::scan::{ScanProgress, hash_file};
use crate::summary::Summary;
use crate::transfer::stored;

/// How many times a file that keeps changing while it is hashed is retried in one update.
const HASH_ATTEMPTS: usize = 3;
/// The folder of the data directory that keeps the shared files' outboards.
pub const OUTBOARD_DIR: &str = "outboards";

/// Everything the share's tasks have in common.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Canonical share root.
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub options: ShareOptions,
    pub filter: PathFilter,
    pub state: Mutex<State>,
    pub progress: watch::Sender<ScanProgress>,
    pub shutdown: watch::Sender<bool>,
    pub stopping: AtomicBool,
    pub rescan_requested: Notify,
    /// Serialises cache writes, so an older snapshot never lands after a newer one.
    pub save_lock: Mutex<()>,
    pub files_hashed: AtomicU64,
    pub bytes_hashed: AtomicU64,
    warned_full: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub index: Index,
    pub cache: HashCache,
    /// The summary last published, and the filter generation it was checked against.
    pub summary: Summary,
    pub summary_generation: u64,
    pub summary_published: Option<Instant>,
}

/// What one file update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// Indexed from the cache or already up to date.
    Known,
    /// Read and hashed.
    Hashed,
    /// Not a regular file inside the root (any more): removed from the index.
    Gone,
    /// Could not be read, kept changing, or the share is stopping: left as it was.
    Skipped,
}

/// Which names inside the root are never shared.
#[derive(Debug, Clone)]
pub(crate) struct PathFilter {
    /// The data directory, relative to the root, when it lies inside it.
    pub excluded_dir: Option<PathBuf>,
    pub share_hidden: bool,
    pub ignore_suffixes: Vec<String>,
}

impl PathFilter {
    /// Whether `rel` (whose last component is `name`) is left out.
    pub fn skips(&self, rel: &Path, name: &str, is_dir: bool) -> bool {
        if !self.share_hidden && name.starts_with('.') {
            return true;
        }
        if self
            .excluded_dir
            .as_deref()
            .is_some_and(|d| rel.starts_with(d))
        {
            return true;
        }
        !is_dir
            && self
                .ignore_suffixes
                .iter()
                .any(|s| name.ends_with(s.as_str()))
    }

    /// Whether any component of `rel` is skipped.
    pub fn skips_any(&self, rel: &Path) -> bool {
        let mut prefix = PathBuf::new();
        let count = rel.components().count();
        for (i, c) in rel.iter().enumerate() {
            prefix.push(c);
            let Some(name) = c.to_str() else { return true };
            if self.skips(&prefix, name, i + 1 < count) {
                return true;
            }
        }
        false
    }
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The stamp of `abs` if it is a regular file (not following a final symlink).
fn regular_stamp(abs: &Path) -> Option<FileStamp> {
    let meta = fs::symlink_metadata(abs).ok()?;
    meta.is_file().then(|| FileStamp::of(&meta))
}

/// Whether `abs` (the root joined with normal components) reaches its target without
/// passing through a symlink.
pub(crate) fn free_of_symlinks(abs: &Path) -> bool {
    fs::canonicalize(abs).is_ok_and(|c| c == abs)
}

impl Shared {
    pub fn new(
        root: PathBuf,
        data_dir: PathBuf,
        options: ShareOptions,
        filter: PathFilter,
        initial_summary_version: u64,
    ) -> Self {
        let cache = HashCache::new(&data_dir, &root);
        Self {
            state: Mutex::new(State {
                index: Index::new(options.max_files),
                cache,
                summary: Summary::empty(initial_summary_version),
                summary_generation: 0,
                summary_published: None,
            }),
            root,
            data_dir,
            options,
            filter,
            progress: watch::Sender::new(ScanProgress::default()),
            shutdown: watch::Sender::new(false),
            stopping: AtomicBool::new(false),
            rescan_requested: Notify::new(),
            save_lock: Mutex::new(()),
            files_hashed: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still internally usable;
        // keep serving rather than poisoning every later call.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }

    /// Brings the index entry of the file `rel` in line with the disk, hashing it unless
    /// the cache knows it. `allow_racy` trusts cached hashes taken right after a write
    /// (see [`crate::hashcache`]); watcher events pass `false`. `on_bytes` is told how many
    /// bytes were read, as they are read.
    pub fn update_file(
        &self,
        rel: &Path,
        allow_racy: bool,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Update {
        let abs = self.root.join(rel);
        {
            let mut st = self.lock();
            let Some(stamp) = regular_stamp(&abs) else {
                self.prune_locked(&mut st, rel);
                return Update::Gone;
            };
            if let Some(content) = st.cache.get(rel, &stamp, allow_racy) {
                self.index_locked(&mut st, rel, stamp, content);
                return Update::Known;
            }
        }
        for _ in 0..HASH_ATTEMPTS {
            let hashed_at_ns = now_ns();
            let hashed = match hash_file(&abs, &self.stopping, on_bytes) {
                Ok(Some(done)) => done,
                Ok(None) => return Update::Skipped,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.prune_locked(&mut self.lock(), rel);
                    return Update::Gone;
                }
                // Shrunk while we read it: read it again.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
                Err(e) => {
                    tracing::warn!(path = %rel.display(), error = %e, "cannot hash file; not shared");
                    return Update::Skipped;
                }
            };
            let (content, stamp) = (hashed.content, hashed.stamp);
            self.files_hashed.fetch_add(1, Ordering::Relaxed);
            self.bytes_hashed.fetch_add(stamp.size, Ordering::Relaxed);
            // Kept for the file server (before the index names the file, so the first
            // request finds it). A failure costs only speed: the server makes its own.
            if let Some(outboard) = &hashed.outboard
                && let Err(e) = stored::save(&self.outboard_dir(), &content, outboard)
            {
                tracing::debug!(path = %rel.display(), error = %e, "cannot keep the outboard");
            }
            let mut st = self.lock();
            match regular_stamp(&abs) {
                None => {
                    self.prune_locked(&mut st, rel);
                    return Update::Gone;
                }
                Some(now) if now.same_version(&stamp) => {
                    st.cache.insert(rel, stamp, content, hashed_at_ns);
                    self.index_locked(&mut st, rel, stamp, content);
                    return Update::Hashed;
                }
                // Written to while we read it: that hash describes nothing; read again.
                Some(_) => {}
            }
        }
        tracing::debug!(path = %rel.display(), "file keeps changing; will retry on the next event or rescan");
        Update::Skipped
    }

    /// Whether some indexed file has content `id`.
    pub fn holds(&self, id: &ContentId) -> bool {
        self.lock().index.by_content(id).next().is_some()
    }

    /// Where the outboards of shared files are kept (`DATA_DIR/outboards`).
    pub fn outboard_dir(&self) -> PathBuf {
        self.data_dir.join(OUTBOARD_DIR)
    }

    /// Whether the index already has `rel` at `stamp` (a rescan's fast path).
    pub fn is_current(&self, rel: &Path, stamp: &FileStamp) -> bool {
        self.lock()
            .index
            .get(rel)
            .is_some_and(|f| f.size == stamp.size && f.mtime_ns == stamp.mtime_ns)
    }

    fn index_locked(&self, st: &mut State, rel: &Path, stamp: FileStamp, content: ContentId) {
        let Some(name) = file_name_of(rel) else {
            return;
        };
        let file = SharedFile {
            content,
            rel_path: rel.to_path_buf(),
            name: name.to_owned(),
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
        };
        match st.index.insert(file) {
            Ok(_) => {}
            Err(IndexError::Full { max }) => {
                if !self.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(max, "share index is full; further files are not shared");
                }
            }
            Err(e) => tracing::warn!(error = %e, "file not indexed"),
        }
    }

    /// Removes `rel` and every indexed path under it that is no longer a regular file
    /// reachable inside the root without a symlink.
    pub fn prune(&self, rel: &Path) {
        self.prune_locked(&mut self.lock(), rel);
    }

    /// As [`Shared::prune`], but paths in `seen` (just found by a walk) are known to be
    /// there and are not checked.
    pub fn prune_unseen(&self, rel: &Path, seen: &HashSet<PathBuf>) {
        let mut st = self.lock();
        for path in st.index.paths_under(rel) {
            if !seen.contains(&path) {
                self.prune_locked(&mut st, &path);
            }
        }
    }

    fn prune_locked(&self, st: &mut State, rel: &Path) {
        for path in st.index.paths_under(rel) {
            let abs = self.root.join(&path);
            if regular_stamp(&abs).is_none() || !free_of_symlinks(&abs) {
                st.index.remove(&path);
                st.cache.forget(&path);
            }
        }
        if st.index.get(rel).is_none() {
            st.cache.forget(rel);
        }
    }

    /// Writes the hash cache if it changed (atomically; see [`crate::hashcache`]).
    pub fn save_cache(&self) {
        let _one_writer = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, file) = {
            let mut st = self.lock();
            (st.cache.snapshot(), st.cache.file().to_path_buf())
        };
        let Some(bytes) = bytes else { return };
        if let Err(e) = HashCache::write_snapshot(&file, &bytes) {
            tracing::warn!(file = %file.display(), error = %e, "cannot save the hash cache");
            self.lock().cache.mark_dirty();
        }
    }
}
