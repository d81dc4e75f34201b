//! Walking the shared root and hashing what is in it.
//!
//! A full scan has two phases: a walk that lists every shareable file with its size and
//! modification time (quick: metadata only), then a pass that indexes each file, from the
//! hash cache when its size and time are known, otherwise by reading it through BLAKE3.
//! Files become searchable one by one as the second phase reaches them, and progress (files
//! and bytes, done and total) is published on a [`tokio::sync::watch`] channel. The scan
//! runs on a blocking thread; nothing waits for it.
//!
//! What is shared: regular files under the root, reached through real directories.
//! **Symbolic links are skipped entirely**, whether they point at files or directories,
//! inside the root or out of it: following them would let a link share (and serve) files
//! outside the root, and checking every target would not close the race with a link that
//! changes after the check. Also skipped: other special files (FIFOs, sockets, devices,
//! which could block a reader), names that are not valid UTF-8 (with a warning), hidden
//! names (starting with `.`) unless configured, partial downloads, the data directory when
//! it lies inside the root, and anything deeper than [`MAX_DEPTH`] directories.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use highway_wire::ContentId;

use crate::hashcache::FileStamp;
use crate::sync::{PathFilter, Shared, Update};
use crate::transfer::{GROUP_BYTES, compute_outboard};

/// Deepest directory nesting walked below the root.
pub const MAX_DEPTH: usize = 64;
/// Read size while hashing (BLAKE3 uses SIMD across 16 KiB and more at a time).
const READ_CHUNK: usize = 256 * 1024;
/// How often progress is published at most, while a scan runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(25);

/// Where a scan is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScanPhase {
    /// Loading the hash cache; no scan has begun.
    #[default]
    Starting,
    /// Listing files.
    Walking,
    /// Indexing the listed files (from the cache or by hashing them).
    Hashing,
    /// The scan finished; the index reflects the whole root (until the next change).
    Done,
}

/// Progress of the current (or last) full scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanProgress {
    /// Number of the scan: 1 for the first after opening, then one more per rescan.
    pub scan: u64,
    pub phase: ScanPhase,
    /// Files found by the walk (known once hashing begins).
    pub files_total: u64,
    /// Files indexed, skipped or found gone so far.
    pub files_done: u64,
    /// Bytes in the files found by the walk.
    pub bytes_total: u64,
    /// Bytes of `files_total` accounted for so far (read, or known from the cache).
    pub bytes_done: u64,
    /// Files read and hashed by this scan (the rest came from the cache).
    pub files_hashed: u64,
    /// Files or directories that could not be read.
    pub errors: u64,
    /// The first [`MAX_SKIPPED_LISTED`] of them, with why: what `files` and `status` show,
    /// so a user need not read the log (issue 13).
    pub skipped: Vec<Skipped>,
}

/// A path in the share that is not shared (or not watched), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to the share root (empty: the root itself).
    pub path: PathBuf,
    pub reason: String,
}

/// Most skipped paths listed (all are counted in [`ScanProgress::errors`]).
pub const MAX_SKIPPED_LISTED: usize = 100;

/// Adds `path` to `list` unless it is full.
pub(crate) fn note_skipped(list: &mut Vec<Skipped>, path: &Path, reason: impl Into<String>) {
    if list.len() < MAX_SKIPPED_LISTED {
        list.push(Skipped {
            path: path.to_path_buf(),
            reason: reason.into(),
        });
    }
}

impl ScanProgress {
    /// Whether a scan has completed and no other is running.
    pub fn is_done(&self) -> bool {
        self.phase == ScanPhase::Done
    }
}

/// A shareable file found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub rel: PathBuf,
    pub stamp: FileStamp,
}

#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub files: Vec<Found>,
    pub errors: u64,
    pub skipped: Vec<Skipped>,
    /// The walk stopped at `max_files`.
    pub truncated: bool,
}

/// Lists the shareable files at or below `start` (relative to `root`, which is canonical;
/// `start` must be a real directory, not reached through a symlink). Stops early, with what
/// it has, when `stop` is set or `max_files` are found.
pub(crate) fn walk(
    root: &Path,
    start: &Path,
    filter: &PathFilter,
    max_files: usize,
    stop: &AtomicBool,
) -> Walk {
    let mut out = Walk::default();
    let mut dirs: Vec<(PathBuf, usize)> = vec![(start.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match fs::read_dir(root.join(&dir)) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list directory; skipped");
                out.errors += 1;
                note_skipped(
                    &mut out.skipped,
                    &dir,
                    format!("cannot list the folder: {e}"),
                );
                continue;
            }
        };
        for entry in entries {
            if stop.load(Ordering::Relaxed) {
                return out;
            }
            let Ok(entry) = entry else {
                out.errors += 1;
                continue;
            };
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                tracing::warn!(dir = %dir.display(), name = ?file_name, "name is not valid UTF-8; not shared");
                continue;
            };
            let rel = dir.join(name);
            // `DirEntry::file_type` and `metadata` do not follow symlinks.
            let Ok(kind) = entry.file_type() else {
                out.errors += 1;
                continue;
            };
            if kind.is_symlink() {
                tracing::debug!(path = %rel.display(), "symlink; not followed");
            } else if kind.is_dir() {
                if filter.skips(&rel, name, true) {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    tracing::warn!(dir = %rel.display(), "directory nested too deep; skipped");
                    note_skipped(
                        &mut out.skipped,
                        &rel,
                        format!("nested more than {MAX_DEPTH} folders deep"),
                    );
                    continue;
                }
                dirs.push((rel, depth + 1));
            } else if kind.is_file() {
                if filter.skips(&rel, name, false) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) => {
                        out.errors += 1;
                        note_skipped(&mut out.skipped, &rel, format!("cannot read it: {e}"));
                        continue;
                    }
                };
                if out.files.len() >= max_files {
                    out.truncated = true;
                    return out;
                }
                out.files.push(Found {
                    rel,
                    stamp: FileStamp::of(&meta),
                });
            }
        }
    }
    out
}

/// Largest file whose outboard the indexer makes in its hashing pass: the outboard is held
/// in memory until it is saved (64 MiB for this size). A larger file gets its outboard
/// from the file server, on the first request for it.
pub const MAX_INDEXED_OUTBOARD_FILE: u64 = 16 << 30;

/// A file read and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub content: ContentId,
    /// The file as it was opened.
    pub stamp: FileStamp,
    /// Its pre-order outboard (no size prefix), made in the same pass: for files of more
    /// than one chunk group, up to [`MAX_INDEXED_OUTBOARD_FILE`].
    pub outboard: Option<Vec<u8>>,
}

/// Hashes the regular file at `path` with BLAKE3, streaming, making its outboard on the
/// way when it is worth one. `None` if `stop` was set meanwhile. Refuses (as
/// `InvalidInput`) anything that is not a regular file once opened. A file that shrinks
/// while it is read is an `UnexpectedEof` error (the caller reads it again).
pub fn hash_file(
    path: &Path,
    stop: &AtomicBool,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<Option<Hashed>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let stamp = FileStamp::of(&meta);
    let size = meta.len();
    if size > GROUP_BYTES && size <= MAX_INDEXED_OUTBOARD_FILE {
        let reader = Watched {
            file,
            stop,
            on_bytes,
        };
        let computed =
            match compute_outboard(io::BufReader::with_capacity(READ_CHUNK, reader), size) {
                Ok(computed) => computed,
                Err(_) if stop.load(Ordering::Relaxed) => return Ok(None),
                Err(e) => return Err(e),
            };
        return Ok(Some(Hashed {
            content: ContentId::from(computed.root),
            stamp,
            outboard: Some(computed.outboard),
        }));
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        on_bytes(n as u64);
    }
    Ok(Some(Hashed {
        content: ContentId::from(hasher.finalize()),
        stamp,
        outboard: None,
    }))
}

/// A file being hashed: counts what is read, and fails once `stop` is set (not as
/// `Interrupted`, which `read_exact` would retry for ever; the caller checks `stop`).
struct Watched<'a> {
    file: File,
    stop: &'a AtomicBool,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("the share is stopping"));
        }
        loop {
            match self.file.read(buf) {
                Ok(n) => {
                    (self.on_bytes)(n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One full scan of the root: walk, drop what disappeared, index what is there. Blocking.
pub(crate) fn full_scan(shared: &Shared) {
    let started = Instant::now();
    let mut p = ScanProgress {
        scan: shared.progress.borrow().scan + 1,
        phase: ScanPhase::Walking,
        ..ScanProgress::default()
    };
    shared.progress.send_replace(p.clone());

    let walked = walk(
        &shared.root,
        Path::new(""),
        &shared.filter,
        shared.options.max_files,
        &shared.stopping,
    );
    if shared.is_stopping() {
        return;
    }
    if walked.truncated {
        tracing::warn!(
            max = shared.options.max_files,
            "share holds more files than the limit; the rest is not shared"
        );
    }
    let seen: HashSet<PathBuf> = walked.files.iter().map(|f| f.rel.clone()).collect();
    // Removals first, so a file moved while we were not looking keeps its cached hash.
    shared.prune_unseen(Path::new(""), &seen);
    shared.lock().cache.forget_all_but(&seen);

    p.phase = ScanPhase::Hashing;
    p.errors = walked.errors;
    p.skipped = walked.skipped.clone();
    p.files_total = walked.files.len() as u64;
    p.bytes_total = walked.files.iter().map(|f| f.stamp.size).sum();
    shared.progress.send_replace(p.clone());
    let mut published = Instant::now();

    for found in &walked.files {
        if shared.is_stopping() {
            return;
        }
        let before = p.bytes_done;
        if !shared.is_current(&found.rel, &found.stamp) {
            let mut read = 0u64;
            let mut on_bytes = |n: u64| {
                read += n;
                if published.elapsed() >= PROGRESS_EVERY {
                    shared.progress.send_modify(|q| {
                        q.bytes_done = (before + read).min(q.bytes_total);
                    });
                    published = Instant::now();
                }
            };
            match shared.update_file(&found.rel, true, &mut on_bytes) {
                Update::Hashed => p.files_hashed += 1,
                Update::Skipped if !shared.is_stopping() => {
                    p.errors += 1;
                    note_skipped(&mut p.skipped, &found.rel, "cannot be read and hashed");
                }
                Update::Known | Update::Gone | Update::Skipped => {}
            }
        }
        p.files_done += 1;
        p.bytes_done = before + found.stamp.size;
        if published.elapsed() >= PROGRESS_EVERY {
            shared.progress.send_replace(p.clone());
            published = Instant::now();
        }
    }
    // Outboards of content no longer shared go (a file moved in and out again is
    // simply hashed again), before the scan says it is done.
    let gone =
        crate::transfer::stored::remove_unless(&shared.outboard_dir(), |id| shared.holds(id));
    if gone > 0 {
        tracing::debug!(gone, "removed the outboards of files no longer shared");
    }
    p.phase = ScanPhase::Done;
    shared.progress.send_replace(p.clone());
    tracing::debug!(
        scan = p.scan,
        files = p.files_total,
        hashed = p.files_hashed,
        errors = p.errors,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "share scan done"
    );
    shared.save_cache();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> PathFilter {
        PathFilter {
            excluded_dir: Some("data".into()),
            share_hidden: false,
            ignore_suffixes: vec![".part".into()],
        }
    }

    #[test]
    fn walk_lists_regular_files_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        for f in [
            "top.txt",
            "a/one.txt",
            "a/b/two.txt",
            "data/hashcache.json",
            ".hidden",
            ".git/x",
            "movie.mkv.part",
        ] {
            fs::write(root.join(f), f).unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("link.txt")).unwrap();

        let w = walk(
            &root,
            Path::new(""),
            &filter(),
            100,
            &AtomicBool::new(false),
        );
        let mut got: Vec<String> = w
            .files
            .iter()
            .map(|f| f.rel.display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, ["a/b/two.txt", "a/one.txt", "top.txt"]);
        assert_eq!(
            w.files
                .iter()
                .find(|f| f.rel == Path::new("top.txt"))
                .unwrap()
                .stamp
                .size,
            7
        );

        let sub = walk(
            &root,
            Path::new("a"),
            &filter(),
            100,
            &AtomicBool::new(false),
        );
        assert_eq!(sub.files.len(), 2);
        let capped = walk(&root, Path::new(""), &filter(), 2, &AtomicBool::new(false));
        assert!(capped.truncated);
        assert_eq!(capped.files.len(), 2);
    }

    #[test]
    fn hash_file_streams_to_the_blake3_of_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..(READ_CHUNK * 2 + 17)).map(|i| i as u8).collect();
        fs::write(&path, &content).unwrap();
        let mut seen = 0;
        let hashed = hash_file(&path, &AtomicBool::new(false), &mut |n| seen += n)
            .unwrap()
            .unwrap();
        assert_eq!(hashed.content, ContentId::of(&content));
        assert_eq!(hashed.stamp.size, content.len() as u64);
        assert_eq!(seen, content.len() as u64);
        // The outboard came in the same pass, the same as the file server would make.
        let expected =
            crate::transfer::compute_outboard(&content[..], content.len() as u64).unwrap();
        assert_eq!(hashed.outboard, Some(expected.outboard));
        // One chunk group: no outboard to make.
        let small = dir.path().join("small.bin");
        fs::write(&small, b"tiny").unwrap();
        let hashed = hash_file(&small, &AtomicBool::new(false), &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(
            (hashed.content, hashed.outboard),
            (ContentId::of(b"tiny"), None)
        );
        assert!(
            hash_file(&path, &AtomicBool::new(true), &mut |_| {})
                .unwrap()
                .is_none()
        );
        assert!(hash_file(dir.path(), &AtomicBool::new(false), &mut |_| {}).is_err());
    }
}
