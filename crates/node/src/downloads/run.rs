//! One run of a download: find holders when it has none (recent hits, else a search by
//! hash), name the file when it goes into a folder, then fetch it with every chunk
//! verified, reporting progress into the download's record.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use highway_core::SearchRequest;
use highway_share::transfer::{DownloadRequest as TransferRequest, Holder, Progress};
use highway_wire::ContentId;
use highway_wire::peer::QueryTarget;
use tokio::sync::{oneshot, watch};

use super::{DownloadError, Downloads, Plan, Record, millis, pick_name};
use crate::out_name::safe_file_name;
use crate::owner::Msg;
use crate::searches::id_hex;

/// How long a download searches for holders of its hash.
const HOLDER_SEARCH: Duration = Duration::from_secs(8);
/// After the first holder turns up, how much longer to wait for more.
const MORE_HOLDERS: Duration = Duration::from_millis(500);
/// How long a download that must search waits for the node's first neighbour.
const NEIGHBOUR_WAIT: Duration = Duration::from_secs(10);
const NEIGHBOUR_POLL: Duration = Duration::from_millis(200);
/// Window the transfer rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

impl Downloads {
    /// Runs download `id` by `plan` until it ends or `stopped` turns true (a pause or a
    /// cancel, whose caller set the state). Returns once the transfer has stopped.
    pub(super) async fn run(&self, id: u64, plan: Plan, mut stopped: watch::Receiver<bool>) {
        let Plan {
            hash,
            mut out,
            folder,
            mut holders,
            size: expected_size,
        } = plan;
        let mut sources: Vec<(Holder, crate::views::SourceJson)> = holders
            .iter()
            .map(|a| crate::sources::direct_source(*a))
            .collect();
        let mut size = expected_size;
        if holders.is_empty() {
            let dialable = self.counters.dialable.load(Ordering::Relaxed);
            let found = tokio::select! {
                hits = self.find_holders(&hash) => hits,
                () = until_stopped(&mut stopped) => return,
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
                    hash,
                    HOLDER_SEARCH.as_secs()
                );
                self.fail(id, error, Vec::new(), None);
                return;
            }
            let views: Vec<_> = sources.iter().map(|(_, v)| v.clone()).collect();
            let named = match out {
                Some(out) => Ok(out),
                None => self.name_after_search(id, &hash, &folder),
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
            id: hash,
            holders: sources.into_iter().map(|(h, _)| h).collect(),
            expected_size,
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
                () = until_stopped(&mut stopped) => {
                    // The transfer stops; its `.part` file stays, to resume. Waiting for
                    // the task to end means nothing writes the file once this returns.
                    task.abort();
                    let _ = (&mut task).await;
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
            // A resumed run keeps the name (and so its `.part`).
            r.plan.out = Some(out.clone());
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

    /// Hits for `content`: from recent searches, else from a search by hash (once the
    /// node has a neighbour to ask, or has waited [`NEIGHBOUR_WAIT`] for one).
    async fn find_holders(&self, content: &ContentId) -> Vec<crate::views::HitJson> {
        let known = self.searches.holders_of(content);
        if !known.is_empty() {
            return known;
        }
        self.wait_for_a_neighbour().await;
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

impl Downloads {
    /// Returns once the node has a neighbour, or after [`NEIGHBOUR_WAIT`]: a download
    /// taken up as the node starts would otherwise search an empty overlay and fail.
    async fn wait_for_a_neighbour(&self) {
        let deadline = tokio::time::Instant::now() + NEIGHBOUR_WAIT;
        while tokio::time::Instant::now() < deadline {
            let (reply, answer) = oneshot::channel();
            if self.owner.send(Msg::Snapshot { reply }).await.is_err() {
                return;
            }
            match answer.await {
                Ok(snapshot) if snapshot.neighbours.is_empty() => {}
                _ => return,
            }
            tokio::time::sleep(NEIGHBOUR_POLL).await;
        }
    }
}

/// Resolves once the download is paused or cancelled (never, should its record be gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    loop {
        let now = *stopped.borrow_and_update();
        if now {
            return;
        }
        if stopped.changed().await.is_err() {
            std::future::pending::<()>().await;
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
