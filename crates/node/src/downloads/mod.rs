//! Downloads started through the control API: find holders (from recent hits, or by a
//! search for the content hash), then fetch with every chunk verified (highway-share's
//! downloader), keeping a view of the progress for `GET /v1/downloads`.
//!
//! At most [`MAX_RUNNING`] run at once; later ones wait `queued`, oldest first. A download
//! can be paused, resumed (also after a cancel or a failure: it picks up its `.part`) and
//! cancelled. Those not finished are saved in the data directory and come back when the
//! node starts again (`saved.rs`).

mod run;
mod saved;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highway_share::transfer::{DownloadOptions, Downloader};
use highway_wire::ContentId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::confine::OutError;
use crate::out_name::{Target, download_target, free_name, safe_file_name};
use crate::owner::{Counters, Msg};
use crate::searches::Searches;
use crate::views::{DownloadRequest, DownloadView};

/// Downloads running at once; more wait in the queue.
pub const MAX_RUNNING: usize = 16;
/// Downloads waiting (queued or paused); more are refused until one ends.
pub const MAX_WAITING: usize = 256;
/// Finished downloads remembered.
const MAX_FINISHED: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "{0} exists already; give another --out (a folder saves into it under a free \
         name), or remove it"
    )]
    Exists(PathBuf),
    /// Outside `--download-dir`, `..` in a relative path, a missing folder, ...
    #[error(transparent)]
    Destination(#[from] OutError),
    #[error(
        "{MAX_RUNNING} downloads are running and {MAX_WAITING} wait; cancel some or wait \
         for them to finish"
    )]
    Busy,
    #[error("a download to {0} is already running")]
    SameDestination(PathBuf),
    #[error("{folder} has {name} and 999 numbered variants of it already; give another --out")]
    NoFreeName { folder: PathBuf, name: String },
    /// The folder is there but the node cannot create files in it.
    #[error(
        "the node cannot write into {dir} ({error}): the node writes downloads itself, as \
         the user it runs as ({user}), not as the user of this command; give a folder that \
         user can write to"
    )]
    Unwritable {
        dir: PathBuf,
        error: std::io::Error,
        user: String,
    },
}

/// Why a download's state was not changed (cancel, pause, resume).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no download {0} (`highway downloads` lists them)")]
    Unknown(u64),
    #[error("download {id} is already {state}")]
    Finished { id: u64, state: String },
}

/// What a download fetches and where: enough to start it again (resume, restart).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    hash: ContentId,
    /// The file, once named; `None` while a download into `folder` waits for its name.
    out: Option<PathBuf>,
    folder: PathBuf,
    holders: Vec<SocketAddr>,
    size: Option<u64>,
}

#[derive(Debug)]
struct Record {
    view: DownloadView,
    plan: Plan,
    started: Instant,
    samples: VecDeque<(Instant, u64)>,
    /// Set to true to stop the running task (it watches it).
    stop: watch::Sender<bool>,
    /// The task of the latest run: a resumed download starts only once it has stopped,
    /// so two never write the same `.part`.
    task: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Book {
    next_id: u64,
    records: BTreeMap<u64, Record>,
}

/// This node's downloads.
#[derive(Debug)]
pub(crate) struct Downloads {
    book: Mutex<Book>,
    downloader: Downloader,
    owner: mpsc::Sender<Msg>,
    searches: Arc<Searches>,
    download_dir: PathBuf,
    /// `--allow-download-anywhere`: `out` need not be inside `download_dir`.
    anywhere: bool,
    counters: Arc<Counters>,
    /// This node's TCP address: where pushed holders connect (its relay endpoint).
    me: SocketAddr,
    /// Where unfinished downloads are saved (`DATA_DIR/downloads.json`).
    saved: PathBuf,
    /// Held while saving.
    saving: Mutex<()>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The arguments of [`Downloads::new`] besides the channels.
#[derive(Debug)]
pub(crate) struct DownloadsConfig {
    pub download_dir: PathBuf,
    pub anywhere: bool,
    pub options: DownloadOptions,
    pub me: SocketAddr,
    pub data_dir: PathBuf,
}

impl Downloads {
    pub fn new(
        owner: mpsc::Sender<Msg>,
        searches: Arc<Searches>,
        counters: Arc<Counters>,
        config: DownloadsConfig,
    ) -> std::io::Result<Self> {
        let downloader = Downloader::new(config.options).map_err(std::io::Error::other)?;
        Ok(Self {
            book: Mutex::new(Book::default()),
            downloader,
            owner,
            searches,
            download_dir: config.download_dir,
            anywhere: config.anywhere,
            counters,
            me: config.me,
            saved: config.data_dir.join(saved::FILE),
            saving: Mutex::new(()),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks where `request` may go and what it is called: the plan to run.
    fn plan(&self, request: &DownloadRequest) -> Result<(Plan, Option<String>), DownloadError> {
        let target = download_target(request.out.as_deref(), &self.download_dir, self.anywhere)?;
        let (out, folder) = match target {
            Target::File(out) => {
                // Not `exists()`: a dangling symlink there counts as taken too.
                if out.symlink_metadata().is_ok() {
                    return Err(DownloadError::Exists(out));
                }
                let folder = out.parent().unwrap_or(Path::new("/")).to_path_buf();
                (Some(out), folder)
            }
            Target::Folder(folder) => (None, folder),
        };
        check_writable(&folder)?;
        // The file's name, when known before any search: asked for, or from recent hits,
        // or (holders given, no name) the content hash.
        let name = request
            .name
            .as_deref()
            .and_then(safe_file_name)
            .or_else(|| {
                let hits = self.searches.holders_of(&request.hash);
                hits.iter().find_map(|hit| safe_file_name(&hit.name))
            })
            .or_else(|| (!request.holders.is_empty()).then(|| request.hash.to_string()));
        let plan = Plan {
            hash: request.hash,
            out,
            folder,
            holders: request.holders.clone(),
            size: request.size,
        };
        Ok((plan, name))
    }

    /// Takes a download; it runs at once when fewer than [`MAX_RUNNING`] do, else it
    /// waits `queued`. Its view at once.
    pub fn start(
        self: &Arc<Self>,
        request: DownloadRequest,
    ) -> Result<DownloadView, DownloadError> {
        let (plan, name) = self.plan(&request)?;
        let id = self.add(plan, name, false)?;
        self.schedule();
        self.save();
        Ok(self.get(id).expect("just added"))
    }

    /// Adds a record for `plan`, `queued` (or `paused`); its id.
    fn add(
        &self,
        mut plan: Plan,
        name: Option<String>,
        paused: bool,
    ) -> Result<u64, DownloadError> {
        let mut book = self.book();
        let waiting = book.records.values().filter(|r| !is_final(&r.view)).count();
        if waiting >= MAX_RUNNING + MAX_WAITING {
            return Err(DownloadError::Busy);
        }
        match (&plan.out, name) {
            (Some(out), _) => {
                if book.writing(out) {
                    return Err(DownloadError::SameDestination(out.clone()));
                }
            }
            (None, Some(name)) => plan.out = Some(pick_name(&book, &plan.folder, &name)?),
            (None, None) => {}
        }
        book.next_id += 1;
        let id = book.next_id;
        let view = DownloadView {
            id,
            hash: plan.hash,
            out: plan.out.clone().unwrap_or_else(|| plan.folder.clone()),
            state: if paused { "paused" } else { "queued" }.into(),
            size: plan.size,
            done_bytes: 0,
            resumed_bytes: 0,
            rate_bps: 0,
            eta_ms: None,
            holders: plan.holders.clone(),
            corrupt_holders: Vec::new(),
            sources: plan
                .holders
                .iter()
                .map(|a| crate::sources::direct_source(*a).1)
                .collect(),
            faults: Vec::new(),
            error: None,
            elapsed_ms: 0,
        };
        book.records.insert(
            id,
            Record {
                view,
                plan,
                started: Instant::now(),
                samples: VecDeque::new(),
                stop: watch::channel(false).0,
                task: None,
            },
        );
        forget_old(&mut book);
        Ok(id)
    }

    /// Starts queued downloads, oldest first, while fewer than [`MAX_RUNNING`] run.
    fn schedule(self: &Arc<Self>) {
        let mut book = self.book();
        let running = book
            .records
            .values()
            .filter(|r| is_running(&r.view))
            .count();
        let queued: Vec<u64> = book
            .records
            .iter()
            .filter(|(_, r)| r.view.state == "queued")
            .map(|(id, _)| *id)
            .take(MAX_RUNNING.saturating_sub(running))
            .collect();
        for id in queued {
            let Some(r) = book.records.get_mut(&id) else {
                continue;
            };
            r.view.state = if r.plan.holders.is_empty() {
                "searching"
            } else {
                "running"
            }
            .into();
            r.view.error = None;
            r.started = Instant::now();
            r.samples.clear();
            let (stop, stopped) = watch::channel(false);
            r.stop = stop;
            let before = r.task.take();
            let plan = r.plan.clone();
            let this = self.clone();
            r.task = Some(tokio::spawn(async move {
                if let Some(before) = before {
                    let _ = before.await;
                }
                this.run(id, plan, stopped).await;
                this.schedule();
                this.save();
            }));
        }
    }

    /// Stops a download that has not ended (running, queued or paused). What it
    /// fetched stays in its `.part` file, so resuming it (or starting the same download
    /// again) picks up from there.
    pub fn cancel(self: &Arc<Self>, id: u64) -> Result<DownloadView, StateError> {
        let view = self.change(id, |r| {
            if is_final(&r.view) {
                return Err(r.view.state.clone());
            }
            stop(r, "cancelled");
            Ok(())
        })?;
        self.counters
            .downloads_cancelled
            .fetch_add(1, Ordering::Relaxed);
        Ok(view)
    }

    /// Stops a running or queued download until it is resumed; it keeps its place in
    /// the saved list across restarts. Pausing a paused download changes nothing.
    pub fn pause(self: &Arc<Self>, id: u64) -> Result<DownloadView, StateError> {
        self.change(id, |r| {
            if is_final(&r.view) {
                return Err(r.view.state.clone());
            }
            stop(r, "paused");
            Ok(())
        })
    }

    /// Queues a paused, cancelled or failed download again (it runs as soon as a slot
    /// is free, resuming its `.part`). Resuming one that runs or waits changes nothing;
    /// a finished one cannot be resumed.
    pub fn resume(self: &Arc<Self>, id: u64) -> Result<DownloadView, StateError> {
        self.change(id, |r| {
            match r.view.state.as_str() {
                "done" => return Err(r.view.state.clone()),
                "paused" | "cancelled" | "failed" => {
                    r.view.state = "queued".into();
                    r.view.error = None;
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// Applies `f` to download `id` (an `Err(state)` refuses), then starts what may run
    /// and saves the list.
    fn change(
        self: &Arc<Self>,
        id: u64,
        f: impl FnOnce(&mut Record) -> Result<(), String>,
    ) -> Result<DownloadView, StateError> {
        {
            let mut book = self.book();
            let r = book.records.get_mut(&id).ok_or(StateError::Unknown(id))?;
            f(r).map_err(|state| StateError::Finished { id, state })?;
        }
        self.schedule();
        self.save();
        Ok(self.get(id).expect("still listed"))
    }

    pub fn list(&self) -> Vec<DownloadView> {
        let book = self.book();
        book.records.values().map(current).collect()
    }

    pub fn get(&self, id: u64) -> Option<DownloadView> {
        self.book().records.get(&id).map(current)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.book().records.get_mut(&id) {
            f(r);
        }
    }
}

/// Sets `state` and tells a running task to stop.
fn stop(r: &mut Record, state: &str) {
    r.view.state = state.into();
    r.view.eta_ms = None;
    r.view.rate_bps = 0;
    r.view.elapsed_ms = millis(r.started.elapsed());
    let _ = r.stop.send(true);
}

/// Creates and removes a probe file in `dir`: a folder the node cannot write to (or a
/// place such as /proc that takes no files) is refused at once, naming the folder,
/// instead of failing later on one of the download's own files (`OUT.part.outboard`).
fn check_writable(dir: &Path) -> Result<(), DownloadError> {
    let probe = dir.join(format!(".highway-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        // Left by a probe that was interrupted: writable, then.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(DownloadError::Unwritable {
            dir: dir.to_path_buf(),
            error,
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| format!("process {}", std::process::id())),
        }),
    }
}

impl Book {
    /// Whether a download that has not ended writes to `out`.
    fn writing(&self, out: &Path) -> bool {
        self.records
            .values()
            .any(|r| !is_final(&r.view) && r.plan.out.as_deref() == Some(out))
    }
}

/// A free name for `name` in `folder`, not one another download writes.
fn pick_name(book: &Book, folder: &Path, name: &str) -> Result<PathBuf, DownloadError> {
    free_name(folder, name, |path| book.writing(path)).ok_or_else(|| DownloadError::NoFreeName {
        folder: folder.to_path_buf(),
        name: name.to_string(),
    })
}

/// Searching or fetching: holds one of the [`MAX_RUNNING`] slots.
fn is_running(view: &DownloadView) -> bool {
    view.state == "searching" || view.state == "running"
}

fn is_final(view: &DownloadView) -> bool {
    view.state == "done" || view.state == "failed" || view.state == "cancelled"
}

fn forget_old(book: &mut Book) {
    let finished: Vec<u64> = book
        .records
        .iter()
        .filter(|(_, r)| is_final(&r.view))
        .map(|(id, _)| *id)
        .collect();
    if finished.len() > MAX_FINISHED {
        for id in &finished[..finished.len() - MAX_FINISHED] {
            book.records.remove(id);
        }
    }
}

/// The view with its elapsed time brought up to date.
fn current(r: &Record) -> DownloadView {
    let mut view = r.view.clone();
    if is_running(&view) {
        view.elapsed_ms = millis(r.started.elapsed());
    }
    view
}
