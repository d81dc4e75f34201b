//! Following changes to the shared root as they happen.
//!
//! A [`notify`] watcher (one watch per folder, see `watches.rs`; symlinks not followed)
//! reports paths; they gather in
//! a bounded set and, after a quiet [`ShareOptions::debounce`] period, each is reconciled
//! with the disk: a path that is gone (or became a symlink or a special file) leaves the
//! index together with everything under it; a directory is walked; a regular file is
//! re-stat'ed and hashed unless the hash cache vouches for its size and time. A rename is
//! simply both paths reconciled, removals first, so the new path finds the old one's hash
//! by file identity and nothing is reread.
//!
//! A file modified within the last debounce period is left for the next round, so a file
//! being copied in is hashed once when it is complete rather than at every write.
//!
//! Notify can lose events (its queue overflows, or the platform says "rescan"); the
//! bounded set can overflow too. Either way a full rescan is requested, and the periodic
//! rescan ([`ShareOptions::rescan_interval`]) catches whatever slipped through.
//!
//! [`ShareOptions::debounce`]: crate::ShareOptions::debounce
//! [`ShareOptions::rescan_interval`]: crate::ShareOptions::rescan_interval

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind};
use tokio::sync::Notify;

use crate::scan::walk;
use crate::sync::{Shared, free_of_symlinks};
use crate::watches::{FolderWatches, follow_folders};

/// Most distinct paths waiting for reconciliation; beyond it, a full rescan is requested.
pub const MAX_PENDING_PATHS: usize = 16_384;

/// Paths reported by the watcher, waiting for the next round.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    pending: Mutex<Pending>,
    pub ready: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    paths: HashSet<PathBuf>,
    overflow: bool,
}

impl EventQueue {
    fn push(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for path in paths {
            if p.paths.len() >= MAX_PENDING_PATHS {
                p.overflow = true;
                break;
            }
            p.paths.insert(path);
        }
        drop(p);
        self.ready.notify_one();
    }

    fn overflowed(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .overflow = true;
        self.ready.notify_one();
    }

    /// Takes everything pending: the paths, and whether events were lost.
    fn take(&self) -> (Vec<PathBuf>, bool) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let paths = p.paths.drain().collect();
        (paths, std::mem::take(&mut p.overflow))
    }
}

/// What the watcher does with what it reports: relevant paths go to `queue`; lost
/// events and errors ask for a full rescan.
pub(crate) fn event_handler(queue: Arc<EventQueue>) -> impl notify::EventHandler {
    move |res: notify::Result<Event>| match res {
        Ok(event) if event.need_rescan() => queue.overflowed(),
        Ok(event) => {
            if relevant(&event.kind) {
                queue.push(event.paths);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "file watcher error; rescanning the share");
            queue.overflowed();
        }
    }
}

/// Reads (our own, when serving files) change nothing; a close after writing is worth a
/// look, since it is often the last event of a copy.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The updater task: waits for paths, lets them settle, reconciles them on a blocking
/// thread, and re-queues files still being written.
pub(crate) async fn run_updates(
    shared: Arc<Shared>,
    queue: Arc<EventQueue>,
    watches: Arc<Mutex<Option<FolderWatches>>>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    // Nothing to reconcile against until the cache is loaded and the first scan began.
    let mut progress = shared.progress.subscribe();
    tokio::select! {
        _ = progress.wait_for(|p| p.scan >= 1) => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    loop {
        tokio::select! {
            _ = queue.ready.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.options.debounce) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let (paths, overflow) = queue.take();
        if overflow {
            tracing::debug!("file events were lost; requesting a full rescan");
            shared.rescan_requested.notify_one();
        }
        if paths.is_empty() {
            continue;
        }
        let worker = Arc::clone(&shared);
        let watches = Arc::clone(&watches);
        let deferred = tokio::task::spawn_blocking(move || {
            // New folders are watched before they are walked, so nothing made in them
            // meanwhile is missed.
            if let Some(watches) = watches.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                follow_folders(&worker, watches, &paths);
            }
            reconcile_batch(&worker, paths)
        })
        .await
        .unwrap_or_default();
        if !deferred.is_empty() {
            queue.push(deferred);
        }
    }
}

/// Reconciles absolute `paths` reported by the watcher; returns those to retry later.
fn reconcile_batch(shared: &Shared, paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut rels: Vec<PathBuf> = paths
        .iter()
        .filter_map(|abs| relative_in_root(&shared.root, abs))
        .filter(|rel| !shared.filter.skips_any(rel))
        .collect();
    rels.sort();
    rels.dedup();
    // Removals before additions: a renamed file's old entry goes aside in the hash cache
    // before its new path asks for it.
    rels.sort_by_key(|rel| shared.root.join(rel).symlink_metadata().is_ok());
    let mut deferred = Vec::new();
    for rel in rels {
        if shared.is_stopping() {
            break;
        }
        if reconcile(shared, &rel) == Reconciled::Deferred {
            deferred.push(shared.root.join(rel));
        }
    }
    deferred
}

#[derive(Debug, PartialEq, Eq)]
enum Reconciled {
    Done,
    Deferred,
}

fn reconcile(shared: &Shared, rel: &Path) -> Reconciled {
    let abs = shared.root.join(rel);
    let meta = match abs.symlink_metadata() {
        Ok(m) if (m.is_file() || m.is_dir()) && free_of_symlinks(&abs) => m,
        // Gone, a symlink, a special file, or reached through a symlink.
        _ => {
            shared.prune(rel);
            return Reconciled::Done;
        }
    };
    if meta.is_dir() {
        let found = walk(
            &shared.root,
            rel,
            &shared.filter,
            shared.options.max_files,
            &shared.stopping,
        );
        let seen: HashSet<PathBuf> = found.files.iter().map(|f| f.rel.clone()).collect();
        shared.prune_unseen(rel, &seen);
        for f in &found.files {
            if shared.is_stopping() {
                break;
            }
            if !shared.is_current(&f.rel, &f.stamp) {
                shared.update_file(&f.rel, true, &mut |_| {});
            }
        }
        return Reconciled::Done;
    }
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age >= shared.options.debounce);
    if !settled {
        return Reconciled::Deferred;
    }
    // It may have been a directory before.
    let mut gone_below = HashSet::new();
    gone_below.insert(rel.to_path_buf());
    shared.prune_unseen(rel, &gone_below);
    shared.update_file(rel, false, &mut |_| {});
    Reconciled::Done
}

/// `abs` relative to `root`, if it lies strictly inside it and names only normal UTF-8
/// components.
fn relative_in_root(root: &Path, abs: &Path) -> Option<PathBuf> {
    let rel = abs.strip_prefix(root).ok()?;
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => match part.to_str() {
                Some(s) => out.push(s),
                None => {
                    tracing::warn!(path = ?abs, "name is not valid UTF-8; not shared");
                    return None;
                }
            },
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_strictly_inside_the_root_are_reconciled() {
        let root = Path::new("/srv/share");
        assert_eq!(
            relative_in_root(root, Path::new("/srv/share/a/b.txt")),
            Some("a/b.txt".into())
        );
        assert_eq!(relative_in_root(root, Path::new("/srv/share")), None);
        assert_eq!(relative_in_root(root, Path::new("/srv/other/x")), None);
        assert_eq!(relative_in_root(root, Path::new("/srv/share/../x")), None);
    }

    #[test]
    fn reads_are_not_changes_but_close_after_write_is() {
        assert!(!relevant(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(relevant(&EventKind::Remove(notify::event::RemoveKind::Any)));
    }

    #[test]
    fn the_pending_set_is_bounded() {
        let q = EventQueue::default();
        q.push((0..MAX_PENDING_PATHS + 5).map(|i| PathBuf::from(format!("/r/{i}"))));
        let (paths, overflow) = q.take();
        assert_eq!(paths.len(), MAX_PENDING_PATHS);
        assert!(overflow);
        assert_eq!(q.take(), (vec![], false));
    }
}
