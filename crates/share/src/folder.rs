//! [`Share`]: one shared folder, kept indexed in the background.
//!
//! Opening a share returns at once. Behind it run three tasks: the *scanner* (loads the
//! hash cache, scans the root, then rescans every [`ShareOptions::rescan_interval`] or on
//! request), the *updater* (reconciles the paths the file watcher reports, see
//! [`crate::watch`]) and the *saver* (writes the hash cache when it changed, at most every
//! [`ShareOptions::cache_save_interval`]). Reads — search, lookup, summary, listing — take a
//! short lock on the in-memory index and never touch the disk, except
//! [`LocatedFile::open`].

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use highway_wire::ContentId;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::hashcache::FileStamp;
use crate::index::{DEFAULT_MAX_FILES, SharedFile};
use crate::scan::{ScanProgress, Skipped, full_scan};
use crate::summary::Summary;
use crate::sync::{PathFilter, Shared, State, free_of_symlinks};
use crate::tokenize::tokens;
use crate::watch::{EventQueue, run_updates};
use crate::watches::FolderWatches;

/// How a share behaves. Build one with [`Default`] or [`ShareOptions::test`], adjust the
/// fields, and [`Share::open`] validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOptions {
    /// Full rescan period: the safety net under the watcher. Default 30 s.
    pub rescan_interval: Duration,
    /// Quiet period before watcher events are acted on (and a modified file is hashed).
    /// Default 300 ms.
    pub debounce: Duration,
    /// Least time between two writes of the hash cache. Default 5 s.
    pub cache_save_interval: Duration,
    /// Least time between two summary versions, so a share being filled does not make
    /// neighbours refetch its summary at every heartbeat. Default 2 s.
    pub summary_min_interval: Duration,
    /// Most files indexed. Default 1,000,000.
    pub max_files: usize,
    /// Whether to follow changes with a file watcher (otherwise rescans only). Default on.
    pub watch: bool,
    /// Whether names starting with `.` are shared. Default off.
    pub share_hidden: bool,
    /// File-name endings never shared: partial downloads by default.
    pub ignore_suffixes: Vec<String>,
}

impl Default for ShareOptions {
    fn default() -> Self {
        Self {
            rescan_interval: Duration::from_secs(30),
            debounce: Duration::from_millis(300),
            cache_save_interval: Duration::from_secs(5),
            summary_min_interval: Duration::from_secs(2),
            max_files: DEFAULT_MAX_FILES,
            watch: true,
            share_hidden: false,
            ignore_suffixes: vec![
                ".part".into(),
                ".part.outboard".into(),
                ".part.state".into(),
            ],
        }
    }
}

impl ShareOptions {
    /// Short timers for tests: rescans every 2 s, 50 ms debounce, immediate summaries.
    pub fn test() -> Self {
        Self {
            rescan_interval: Duration::from_secs(2),
            debounce: Duration::from_millis(50),
            cache_save_interval: Duration::from_millis(200),
            summary_min_interval: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Checks the options make sense together.
    pub fn validate(&self) -> Result<(), ShareError> {
        if self.rescan_interval < Duration::from_millis(100) {
            return Err(ShareError::Options(
                "rescan_interval must be at least 100 ms",
            ));
        }
        if self.debounce > Duration::from_secs(10) {
            return Err(ShareError::Options("debounce must be at most 10 s"));
        }
        if self.cache_save_interval.is_zero() {
            return Err(ShareError::Options("cache_save_interval must not be zero"));
        }
        if self.max_files == 0 {
            return Err(ShareError::Options("max_files must be at least 1"));
        }
        Ok(())
    }
}

/// Why a share could not be opened; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    // The I/O error is part of the message, not a `source`: an error chain printed in
    // full would say it twice (issue 13: "the missing-share error repeats itself").
    #[error("share root {path:?} cannot be used: {error}")]
    Root { path: PathBuf, error: io::Error },
    #[error("share root {0:?} is not a directory")]
    NotADirectory(PathBuf),
    #[error("data directory {path:?} cannot be created: {error}")]
    DataDir { path: PathBuf, error: io::Error },
    #[error("invalid share options: {0}")]
    Options(&'static str),
}

/// An indexed file and where it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedFile {
    pub file: SharedFile,
    /// Absolute path: the canonical root joined with [`SharedFile::rel_path`].
    pub path: PathBuf,
}

impl LocatedFile {
    /// Opens the file for serving, after checking that it is still what the index says:
    /// reached from the root without any symlink, a regular file, with the indexed size
    /// and modification time. A file that changed is refused (`InvalidData`) rather than
    /// served under a hash it may no longer have; one that escapes the root is refused
    /// (`PermissionDenied`). Blocking (a few metadata calls).
    pub fn open(&self) -> io::Result<File> {
        if !free_of_symlinks(&self.path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "path leaves the share root or passes a symlink",
            ));
        }
        let file = File::open(&self.path)?;
        let meta = file.metadata()?;
        let stamp = FileStamp::of(&meta);
        if !meta.is_file() || stamp.size != self.file.size || stamp.mtime_ns != self.file.mtime_ns {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "file changed since it was indexed",
            ));
        }
        Ok(file)
    }
}

/// Counters describing a share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareStats {
    /// Files (paths) indexed.
    pub files: usize,
    /// Distinct keywords indexed.
    pub keywords: usize,
    /// Index version (moves on every change).
    pub index_version: u64,
    /// Files read and hashed since the share was opened (cache hits excluded).
    pub files_hashed: u64,
    /// Bytes read for hashing since the share was opened.
    pub bytes_hashed: u64,
}

/// A shared folder: walked, hashed, indexed and watched in the background. Cheap to clone;
/// the background work stops at [`Share::stop`] or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Share {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    watches: Arc<Mutex<Option<FolderWatches>>>,
    /// Why the root could not be watched, if it could not.
    watch_error: Option<String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Share {
    /// Opens the share at `root`, keeping its hash cache in `data_dir` (created if
    /// missing), and starts indexing in the background. Returns at once; watch
    /// [`Share::progress`] to follow the first scan. Must be called inside a tokio runtime.
    pub fn open(
        root: impl AsRef<Path>,
        data_dir: impl AsRef<Path>,
        options: ShareOptions,
    ) -> Result<Share, ShareError> {
        options.validate()?;
        let root = root.as_ref();
        let root = fs::canonicalize(root).map_err(|error| ShareError::Root {
            path: root.to_path_buf(),
            error,
        })?;
        if !root.is_dir() {
            return Err(ShareError::NotADirectory(root));
        }
        let data_dir = data_dir.as_ref();
        fs::create_dir_all(data_dir).map_err(|error| ShareError::DataDir {
            path: data_dir.to_path_buf(),
            error,
        })?;
        let data_dir = fs::canonicalize(data_dir).map_err(|error| ShareError::DataDir {
            path: data_dir.to_path_buf(),
            error,
        })?;
        let filter = PathFilter {
            excluded_dir: data_dir.strip_prefix(&root).ok().map(Path::to_path_buf),
            share_hidden: options.share_hidden,
            ignore_suffixes: options.ignore_suffixes.clone(),
        };
        if filter.excluded_dir.as_deref() == Some(Path::new("")) {
            return Err(ShareError::Options(
                "the data directory must not be the share root",
            ));
        }
        let watch_enabled = options.watch;
        let shared = Arc::new(Shared::new(
            root.clone(),
            data_dir,
            options,
            filter,
            unix_millis().max(1),
        ));

        let queue = Arc::new(EventQueue::default());
        let mut watch_error = None;
        let watches = if watch_enabled {
            match FolderWatches::start(&shared, Arc::clone(&queue)) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(root = %root.display(), error = %e, "cannot watch the share; relying on periodic rescans");
                    watch_error = Some(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        let watches = Arc::new(Mutex::new(watches));
        let tasks = vec![
            tokio::spawn(run_scanner(Arc::clone(&shared))),
            tokio::spawn(run_updates(
                Arc::clone(&shared),
                queue,
                Arc::clone(&watches),
            )),
            tokio::spawn(run_saver(Arc::clone(&shared))),
        ];
        Ok(Share {
            inner: Arc::new(Inner {
                shared,
                watches,
                watch_error,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The canonical share root.
    pub fn root(&self) -> &Path {
        &self.shared().root
    }

    /// The data directory holding the hash cache.
    pub fn data_dir(&self) -> &Path {
        &self.shared().data_dir
    }

    /// Files whose name matches the query text (tokenised as in [`crate::tokenize`]): at
    /// most one per content, at most `limit` (capped at
    /// [`MAX_SEARCH_RESULTS`](crate::index::MAX_SEARCH_RESULTS)).
    pub fn search(&self, query: &str, limit: usize) -> Vec<SharedFile> {
        self.search_tokens(&tokens(query), limit)
    }

    /// As [`Share::search`], with the query already tokenised.
    pub fn search_tokens<S: AsRef<str>>(
        &self,
        query_tokens: &[S],
        limit: usize,
    ) -> Vec<SharedFile> {
        self.shared().lock().index.search(query_tokens, limit)
    }

    /// An indexed file with this content, and its absolute path inside the root. Use
    /// [`LocatedFile::open`] to read it: it re-checks the file before serving.
    pub fn lookup(&self, content: &ContentId) -> Option<LocatedFile> {
        let file = self
            .shared()
            .lock()
            .index
            .by_content(content)
            .next()?
            .clone();
        let path = self.root().join(&file.rel_path);
        Some(LocatedFile { file, path })
    }

    /// Every indexed file, sorted by path.
    pub fn files(&self) -> Vec<SharedFile> {
        let st = self.shared().lock();
        st.index
            .paths()
            .filter_map(|p| st.index.get(p).cloned())
            .collect()
    }

    /// Progress of the current or last full scan.
    pub fn progress(&self) -> watch::Receiver<ScanProgress> {
        self.shared().progress.subscribe()
    }

    /// The current keyword summary (see [`crate::summary`]). Its version changes when the
    /// bitmap does, at most once per [`ShareOptions::summary_min_interval`].
    pub fn summary(&self) -> Summary {
        let mut st = self.shared().lock();
        refresh_summary(&mut st, self.shared().options.summary_min_interval);
        st.summary.clone()
    }

    /// The current summary's version, without copying the bitmap.
    pub fn summary_version(&self) -> u64 {
        let mut st = self.shared().lock();
        refresh_summary(&mut st, self.shared().options.summary_min_interval);
        st.summary.version
    }

    /// Counters: index size, hashing work done.
    pub fn stats(&self) -> ShareStats {
        let sh = self.shared();
        let st = sh.lock();
        ShareStats {
            files: st.index.len(),
            keywords: st.index.keyword_count(),
            index_version: st.index.version(),
            files_hashed: sh.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: sh.bytes_hashed.load(Ordering::Relaxed),
        }
    }

    /// What is not shared or not watched, and why: folders and files the last scan
    /// could not read, folders that cannot be watched (their changes wait for the
    /// periodic rescan). The first [`crate::scan::MAX_SKIPPED_LISTED`] of each kind.
    pub fn skipped(&self) -> Vec<Skipped> {
        let mut list = self.shared().progress.borrow().skipped.clone();
        if let Some(why) = &self.inner.watch_error {
            list.push(Skipped {
                path: PathBuf::new(),
                reason: format!(
                    "the share is not watched ({why}): changes are found by the periodic rescan"
                ),
            });
        }
        if let Some(watches) = self
            .inner
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // A folder the scan could not list is listed once, by the scan.
            let unwatched = watches.unwatched();
            let listed: std::collections::HashSet<PathBuf> =
                list.iter().map(|s| s.path.clone()).collect();
            list.extend(unwatched.into_iter().filter(|s| !listed.contains(&s.path)));
        }
        list
    }

    /// Where the outboard of `id` is kept (made when the file was indexed; the file server
    /// reads it from there, and it goes when the content leaves the share).
    pub fn outboard_path(&self, id: &ContentId) -> PathBuf {
        crate::transfer::stored::outboard_path(&self.shared().outboard_dir(), id)
    }

    /// Asks for a full rescan now (after the one running, if any).
    pub fn rescan(&self) {
        self.shared().rescan_requested.notify_one();
    }

    /// Stops watching and scanning, waits for the background tasks, and saves the hash
    /// cache. Searches keep answering from the last index. Idempotent.
    pub async fn stop(&self) {
        self.shared().begin_shutdown();
        let watches = self
            .inner
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(watches);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        let shared = Arc::clone(&self.inner.shared);
        let _ = tokio::task::spawn_blocking(move || shared.save_cache()).await;
    }
}

/// Publishes a new summary version if the bitmap changed and the last publication is old
/// enough. Versions increase across restarts: `max(previous + 1, Unix milliseconds)`.
fn refresh_summary(st: &mut State, min_interval: Duration) {
    let generation = st.index.summary_generation();
    if generation == st.summary_generation {
        return;
    }
    if st
        .summary_published
        .is_some_and(|t| t.elapsed() < min_interval)
    {
        return;
    }
    st.summary_generation = generation;
    let current = st.index.summary(0);
    if current.bits() != st.summary.bits() {
        let version = (st.summary.version + 1).max(unix_millis());
        let mut fresh = current;
        fresh.version = version;
        st.summary = fresh;
        st.summary_published = Some(Instant::now());
    }
}

async fn run_scanner(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let loader = Arc::clone(&shared);
    let loaded = tokio::task::spawn_blocking(move || {
        let cache = crate::hashcache::HashCache::load(&loader.data_dir, &loader.root);
        loader.lock().cache = cache;
    })
    .await;
    if loaded.is_err() {
        tracing::warn!("loading the hash cache failed; starting empty");
    }
    loop {
        if shared.is_stopping() {
            return;
        }
        let scanner = Arc::clone(&shared);
        if tokio::task::spawn_blocking(move || full_scan(&scanner))
            .await
            .is_err()
        {
            tracing::error!("share scan panicked; retrying at the next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.options.rescan_interval) => {}
            _ = shared.rescan_requested.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn run_saver(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(shared.options.cache_save_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if shared.lock().cache.is_dirty() {
            let saver = Arc::clone(&shared);
            let _ = tokio::task::spawn_blocking(move || saver.save_cache()).await;
        }
    }
}
