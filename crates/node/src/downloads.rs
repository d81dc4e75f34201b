//! Downloads started through the control API: find holders (from recent hits, or by a
//! search for the content hash), then fetch with every chunk verified (highway-share's
//! downloader), keeping a view of the progress for `GET /v1/downloads`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highway_core::SearchRequest;
use highway_share::transfer::{
    DownloadOptions, DownloadRequest as TransferRequest, Downloader, Holder, Progress,
};
use highway_wire::ContentId;
use highway_wire::peer::QueryTarget;
use tokio::sync::{mpsc, oneshot, watch};

use crate::confine::OutError;
use crate::out_name::{Target, download_target, free_name, safe_file_name};
use crate::owner::{Counters, Msg};
use crate::searches::{Searches, id_hex};
use crate::views::{DownloadRequest, DownloadView};

/// Downloads running at once; more are refused until one ends.
pub const MAX_RUNNING: usize = 16;
/// Finished downloads remembered.
const MAX_FINISHED: usize = 256;
/// How long a download searches for holders of its hash.
const HOLDER_SEARCH: Duration = Duration::from_secs(8);
/// After the first holder turns up, how much longer to wait for more.
const MORE_HOLDERS: Duration = Duration::from_millis(500);
/// Window the transfer rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

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
    #[error("{MAX_RUNNING} downloads are running; wait for one to finish")]
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

/// Why a download was not cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no download {0} (`highway downloads` lists them)")]
    Unknown(u64),
    #[error("download {id} is already {state}")]
    Finished { id: u64, state: String },
}

#[derive(Debug)]
struct Record {
    view: DownloadView,
    started: Instant,
    samples: VecDeque<(Instant, u64)>,
    /// Set to true to stop the download (its task watches it).
    cancel: watch::Sender<bool>,
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
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Downloads {
    pub fn new(
        owner: mpsc::Sender<Msg>,
        searches: Arc<Searches>,
        download_dir: PathBuf,
        anywhere: bool,
        counters: Arc<Counters>,
        options: DownloadOptions,
        me: SocketAddr,
    ) -> std::io::Result<Self> {
        let downloader = Downloader::new(options).map_err(std::io::Error::other)?;
        Ok(Self {
            book: Mutex::new(Book::default()),
            downloader,
            owner,
            searches,
            download_dir,
            anywhere,
            counters,
            me,
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a download in the background; its view at once.
    pub fn start(
        self: &Arc<Self>,
        request: DownloadRequest,
    ) -> Result<DownloadView, DownloadError> {
        let target = download_target(request.out.as_deref(), &self.download_dir, self.anywhere)?;
        let folder = match &target {
            Target::File(out) => {
                // Not `exists()`: a dangling symlink there counts as taken too.
                if out.symlink_metadata().is_ok() {
                    return Err(DownloadError::Exists(out.clone()));
                }
                out.parent().unwrap_or(Path::new("/")).to_path_buf()
            }
            Target::Folder(folder) => folder.clone(),
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
        let view = {
            let mut book = self.book();
            let busy = book.records.values().filter(|r| !is_final(&r.view)).count();
            if busy >= MAX_RUNNING {
                return Err(DownloadError::Busy);
            }
            let out = match (&target, name) {
                (Target::File(out), _) => {
                    if book.writing(out) {
                        return Err(DownloadError::SameDestination(out.clone()));
                    }
                    Some(out.clone())
                }
                (Target::Folder(folder), Some(name)) => Some(pick_name(&book, folder, &name)?),
                (Target::Folder(_), None) => None,
            };
            book.next_id += 1;
            let id = book.next_id;
            let view = DownloadView {
                id,
                hash: request.hash,
                out: out.clone().unwrap_or_else(|| folder.clone()),
                state: if request.holders.is_empty() {
                    "searching".into()
                } else {
                    "running".into()
                },
                size: request.size,
                done_bytes: 0,
                resumed_bytes: 0,
                rate_bps: 0,
                eta_ms: None,
                holders: request.holders.clone(),
                corrupt_holders: Vec::new(),
                sources: request
                    .holders
                    .iter()
                    .map(|a| crate::sources::direct_source(*a).1)
                    .collect(),
                faults: Vec::new(),
                error: None,
                elapsed_ms: 0,
            };
            let (cancel, cancelled) = watch::channel(false);
            book.records.insert(
                id,
                Record {
                    view: view.clone(),
                    started: Instant::now(),
                    samples: VecDeque::new(),
                    cancel,
                },
            );
            forget_old(&mut book);
            (view, out, cancelled)
        };
        let (view, out, cancelled) = view;
        let this = self.clone();
        let id = view.id;
        tokio::spawn(async move {
            this.run(id, request, out, folder, cancelled).await;
        });
        Ok(view)
    }

    /// Stops a download that is still searching or running. What it fetched stays in
    /// its `.part` file, so starting the same download again resumes it.
    pub fn cancel(&self, id: u64) -> Result<DownloadView, CancelError> {
        let mut book = self.book();
        let r = book.records.get_mut(&id).ok_or(CancelError::Unknown(id))?;
        if is_final(&r.view) {
            return Err(CancelError::Finished {
                id,
                state: r.view.state.clone(),
            });
        }
        r.view.state = "cancelled".into();
        r.view.eta_ms = None;
        r.view.rate_bps = 0;
        r.view.elapsed_ms = millis(r.started.elapsed());
        let _ = r.cancel.send(true);
        self.counters
            .downloads_cancelled
            .fetch_add(1, Ordering::Relaxed);
        Ok(current(r))
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

    async fn run(
        self: Arc<Self>,
        id: u64,
        request: DownloadRequest,
        out: Option<PathBuf>,
        folder: PathBuf,
        mut cancelled: watch::Receiver<bool>,
    ) {
        let mut out = out;
        let mut holders = request.holders.clone();
        let mut sources: Vec<(Holder, crate::views::SourceJson)> = holders
            .iter()
            .map(|a| crate::sources::direct_source(*a))
            .collect();
        let mut size = request.size;
        if holders.is_empty() {
            let dialable = self.counters.dialable.load(Ordering::Relaxed);
            let found = tokio::select! {
                hits = self.find_holders(&request.hash) => hits,
                () = until_cancelled(&mut cancelled) => return,
            };
            for hit in found {
                let ways = crate::sources::sources_for(&hit, self.me, dialable);
                if ways.is_empty() {
                    continue;
                }
                holders.push(hit.addr);
                sources.extend(ways);
                size = size.or(Some(hit.size));
            }
            if holders.is_empty() {
                let error = format!(
                    "no peer answered a search for {} within {} s; check the hash, or search again later",
                    request.hash,
                    HOLDER_SEARCH.as_secs()
                );
                self.fail(id, error, Vec::new(), None);
                return;
            }
            let views: Vec<_> = sources.iter().map(|(_, v)| v.clone()).collect();
            let named = match out {
                Some(out) => Ok(out),
                None => self.name_after_search(id, &request.hash, &folder),
            };
            out = match named {
                Ok(out) => Some(out),
                Err(e) => {
                    self.fail(id, e.to_string(), Vec::new(), None);
                    return;
                }
            };
            self.update(id, |r| {
                // Unless cancelled meanwhile (the transfer then stops at once).
                if r.view.state == "searching" {
                    r.view.state = "running".into();
                }
                r.view.holders = holders.clone();
                r.view.sources = views;
                r.view.size = r.view.size.or(size);
            });
        }
        let (tx, mut rx) = watch::channel(Progress::default());
        let transfer = TransferRequest {
            id: request.hash,
            holders: sources.into_iter().map(|(h, _)| h).collect(),
            expected_size: request.size,
            // Known by now: from the request, or named after the search above.
            dest: out.unwrap_or(folder),
        };
        let downloader = self.downloader.clone();
        let mut task = tokio::spawn(async move { downloader.download(transfer, Some(tx)).await });
        let result = loop {
            tokio::select! {
                result = &mut task => break result,
                changed = rx.changed() => {
                    if changed.is_err() {
                        break (&mut task).await;
                    }
                    let p = rx.borrow_and_update().clone();
                    self.update(id, |r| record_progress(r, &p));
                }
                () = until_cancelled(&mut cancelled) => {
                    // The transfer stops at once; its `.part` file stays, to resume.
                    task.abort();
                    let p = rx.borrow().clone();
                    self.update(id, |r| {
                        r.view.done_bytes = p.verified;
                        r.view.rate_bps = 0;
                        r.view.eta_ms = None;
                    });
                    return;
                }
            }
        };
        let p = rx.borrow().clone();
        match result {
            Ok(Ok(report)) => {
                self.counters
                    .bytes_fetched
                    .fetch_add(report.bytes_fetched, Ordering::Relaxed);
                let corrupt = addrs(report.corrupt_holders());
                let faults: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
                self.update(id, |r| {
                    for used in &report.holders_used {
                        let url = used.holder.url().as_str().trim_end_matches('/');
                        if let Some(s) = r.view.sources.iter_mut().find(|s| s.url == url) {
                            s.bytes += used.bytes;
                        }
                    }
                    record_progress(r, &p);
                    r.view.state = "done".into();
                    r.view.size = Some(report.size);
                    r.view.done_bytes = report.size;
                    r.view.resumed_bytes = report.bytes_resumed;
                    r.view.corrupt_holders = corrupt;
                    r.view.faults = faults;
                    r.view.eta_ms = Some(0);
                    r.view.elapsed_ms = millis(r.started.elapsed());
                });
                self.counters.downloads_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                let corrupt = addrs(e.corrupt_holders());
                self.fail(id, e.to_string(), corrupt, Some(&p));
            }
            Err(e) => self.fail(
                id,
                format!("the download task stopped: {e}"),
                Vec::new(),
                None,
            ),
        }
    }

    /// Names a download into `folder` once its search found holders: after the first hit
    /// with a usable name, else the content hash.
    fn name_after_search(
        &self,
        id: u64,
        hash: &ContentId,
        folder: &Path,
    ) -> Result<PathBuf, DownloadError> {
        let hits = self.searches.holders_of(hash);
        let name = hits
            .iter()
            .find_map(|hit| safe_file_name(&hit.name))
            .unwrap_or_else(|| hash.to_string());
        let mut book = self.book();
        let out = pick_name(&book, folder, &name)?;
        if let Some(r) = book.records.get_mut(&id) {
            r.view.out = out.clone();
        }
        Ok(out)
    }

    /// Marks a download failed and counts it: every way a download can fail goes here, so
    /// `downloads_failed_total` matches the views.
    fn fail(&self, id: u64, error: String, corrupt: Vec<SocketAddr>, progress: Option<&Progress>) {
        self.update(id, |r| {
            if let Some(p) = progress {
                record_progress(r, p);
            }
            r.view.state = "failed".into();
            r.view.error = Some(error);
            r.view.corrupt_holders = corrupt;
            r.view.elapsed_ms = millis(r.started.elapsed());
        });
        self.counters
            .downloads_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Hits for `content`: from recent searches, else from a search by hash.
    async fn find_holders(&self, content: &ContentId) -> Vec<crate::views::HitJson> {
        let known = self.searches.holders_of(content);
        if !known.is_empty() {
            return known;
        }
        let (reply, answer) = oneshot::channel();
        let request = SearchRequest {
            target: QueryTarget::Hash(*content),
            ttl: None,
            timeout: HOLDER_SEARCH,
            max_results: 32,
        };
        if self
            .owner
            .send(Msg::Search { request, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        let Ok(Ok(query)) = answer.await else {
            return Vec::new();
        };
        let key = id_hex(&query);
        let started = tokio::time::Instant::now();
        let mut after = 0;
        let mut first_found: Option<tokio::time::Instant> = None;
        loop {
            let wait = match first_found {
                Some(at) => {
                    (at + MORE_HOLDERS).saturating_duration_since(tokio::time::Instant::now())
                }
                None => (started + HOLDER_SEARCH + Duration::from_secs(1))
                    .saturating_duration_since(tokio::time::Instant::now()),
            };
            let Some(page) = self.searches.wait_page(&key, after, wait).await else {
                break;
            };
            after = page.next;
            if page.next > 0 && first_found.is_none() {
                first_found = Some(tokio::time::Instant::now());
            }
            if page.done || wait.is_zero() {
                break;
            }
        }
        self.searches.holders_of(content)
    }
}

/// Creates and removes a probe file next to `out`: a folder the node cannot write to (or
/// a place such as /proc that takes no files) is refused at once, naming the folder,
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

/// Resolves once the download is cancelled (never, should its record be gone).
async fn until_cancelled(cancelled: &mut watch::Receiver<bool>) {
    loop {
        let now = *cancelled.borrow_and_update();
        if now {
            return;
        }
        if cancelled.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Book {
    /// Whether a download that has not ended writes to `out`.
    fn writing(&self, out: &Path) -> bool {
        self.records
            .values()
            .any(|r| !is_final(&r.view) && r.view.out == out)
    }
}

/// A free name for `name` in `folder`, not one another running download writes.
fn pick_name(book: &Book, folder: &Path, name: &str) -> Result<PathBuf, DownloadError> {
    free_name(folder, name, |path| book.writing(path)).ok_or_else(|| DownloadError::NoFreeName {
        folder: folder.to_path_buf(),
        name: name.to_string(),
    })
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

fn addrs<'a>(holders: impl Iterator<Item = &'a Holder>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = holders
        .filter_map(|h| {
            let url = h.url();
            let host = url
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            Some(SocketAddr::new(host.parse().ok()?, url.port()?))
        })
        .collect();
    out.dedup();
    out
}

/// The view with its elapsed time brought up to date.
fn current(r: &Record) -> DownloadView {
    let mut view = r.view.clone();
    if !is_final(&view) {
        view.elapsed_ms = millis(r.started.elapsed());
    }
    view
}

fn record_progress(r: &mut Record, p: &Progress) {
    let now = Instant::now();
    r.view.size = p.size.or(r.view.size);
    r.view.done_bytes = p.verified;
    r.view.resumed_bytes = p.resumed;
    r.samples.push_back((now, p.verified));
    while r
        .samples
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
    {
        r.samples.pop_front();
    }
    if let (Some(&(t0, b0)), Some(&(t1, b1))) = (r.samples.front(), r.samples.back()) {
        let secs = t1.duration_since(t0).as_secs_f64();
        if secs > 0.05 {
            r.view.rate_bps = ((b1.saturating_sub(b0)) as f64 / secs) as u64;
        }
    }
    r.view.eta_ms = match (r.view.size, r.view.rate_bps) {
        (Some(size), rate) if rate > 0 => {
            Some(size.saturating_sub(p.verified).saturating_mul(1000) / rate)
        }
        _ => None,
    };
}
