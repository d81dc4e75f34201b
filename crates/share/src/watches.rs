//! One watch per folder of the share, so that a folder the node may not read costs only
//! itself. A recursive watch of the root (notify's, and inotify's underneath) gives up
//! on the whole tree at the first folder it cannot watch: one unreadable subfolder used
//! to turn change-watching off for the share, and a new file took a rescan (30 s) to be
//! found instead of half a second (issue 13).
//!
//! Folders are watched as they are found: the whole tree at the start, then each new
//! folder the watcher reports (before it is walked, so nothing created in it is missed).
//! Those that cannot be watched are listed with why; their changes are found by the
//! periodic rescan.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::scan::{MAX_DEPTH, MAX_SKIPPED_LISTED, Skipped};
use crate::sync::Shared;
use crate::watch::{EventQueue, event_handler};

/// The watcher and the folders it watches.
pub(crate) struct FolderWatches {
    watcher: RecommendedWatcher,
    /// Watched folders, relative to the root (empty: the root).
    watched: HashSet<PathBuf>,
    /// Folders that could not be watched, and why.
    unwatched: BTreeMap<PathBuf, String>,
}

impl std::fmt::Debug for FolderWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatches")
            .field("watched", &self.watched.len())
            .field("unwatched", &self.unwatched.len())
            .finish_non_exhaustive()
    }
}

impl FolderWatches {
    /// Watches every folder of the share it can. Fails only when the root itself
    /// cannot be watched (the share then relies on rescans).
    pub fn start(shared: &Shared, queue: Arc<EventQueue>) -> notify::Result<Self> {
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = RecommendedWatcher::new(event_handler(queue), config)?;
        watcher.watch(&shared.root, RecursiveMode::NonRecursive)?;
        let mut watches = Self {
            watcher,
            watched: HashSet::from([PathBuf::new()]),
            unwatched: BTreeMap::new(),
        };
        watches.add_tree(shared, Path::new(""));
        Ok(watches)
    }

    /// Watches `rel` (relative to the root) and every folder below it not watched yet;
    /// symlinks are not followed, and filtered folders (hidden, the data directory) are
    /// left out as the scan leaves them out.
    pub fn add_tree(&mut self, shared: &Shared, rel: &Path) {
        let mut folders = vec![rel.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let abs = shared.root.join(&folder);
            if !self.watched.contains(&folder) {
                if let Err(e) = self.watcher.watch(&abs, RecursiveMode::NonRecursive) {
                    tracing::warn!(
                        folder = %abs.display(),
                        error = %e,
                        "cannot watch this folder; its changes are found by the periodic rescan"
                    );
                    self.unwatched.insert(folder, e.to_string());
                    continue;
                }
                self.watched.insert(folder.clone());
                self.unwatched.remove(&folder);
            }
            // An unreadable folder was refused above; one that vanished meanwhile is
            // forgotten when its removal is reported.
            let Ok(entries) = std::fs::read_dir(&abs) else {
                continue;
            };
            for entry in entries.flatten() {
                let is_folder = entry
                    .file_type()
                    .is_ok_and(|t| t.is_dir() && !t.is_symlink());
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let below = folder.join(name);
                if is_folder
                    && below.components().count() <= MAX_DEPTH
                    && !shared.filter.skips(&below, name, true)
                {
                    folders.push(below);
                }
            }
        }
    }

    /// Forgets `rel` and the folders below it: they are gone (their watches went with
    /// them), and a folder made again under the same name must be watched again.
    pub fn forget(&mut self, rel: &Path) {
        self.watched
            .retain(|w| !w.starts_with(rel) || w.as_os_str().is_empty());
        self.unwatched.retain(|w, _| !w.starts_with(rel));
    }

    /// The folders that could not be watched, with why (the first
    /// [`MAX_SKIPPED_LISTED`]).
    pub fn unwatched(&self) -> Vec<Skipped> {
        self.unwatched
            .iter()
            .take(MAX_SKIPPED_LISTED)
            .map(|(path, why)| Skipped {
                path: path.clone(),
                reason: format!(
                    "not watched ({why}): changes there are found by the periodic rescan"
                ),
            })
            .collect()
    }

    pub fn is_watched(&self, rel: &Path) -> bool {
        self.watched.contains(rel)
    }
}

/// Follows the folders among the paths the watcher reported: a new folder is watched
/// (with what is below it), a vanished one forgotten.
pub(crate) fn follow_folders(shared: &Shared, watches: &mut FolderWatches, paths: &[PathBuf]) {
    for abs in paths {
        let Ok(rel) = abs.strip_prefix(&shared.root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        match abs.symlink_metadata() {
            Ok(meta) if meta.is_dir() => watches.add_tree(shared, rel),
            // Gone, or no longer a folder: its watch went with it.
            _ if watches.is_watched(rel) => watches.forget(rel),
            _ => {}
        }
    }
}
