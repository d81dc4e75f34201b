//! Downloads started in the shell: a background task polls each one, moves its progress
//! bar, and prints a line when it ends (done and verified, or failed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use highway_node::views::DownloadView;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::screen::{BarRows, Screen};
use crate::control_client::{ControlClient, ControlError};
use crate::render;
use crate::units::{human_rate, short_duration};

/// How often running downloads are polled.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Polls that may fail in a row before a download is given up on.
const MAX_POLL_FAILURES: u32 = 8;
/// How often `wait` prints progress lines when there are no bars.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Width of the name in a bar.
const LABEL_WIDTH: usize = 24;
/// Bar redraws per second at most.
const BAR_HZ: u8 = 8;

/// A download is known by its node's control address and the node's id for it.
type Key = (SocketAddr, u64);

#[derive(Debug)]
struct Entry {
    client: ControlClient,
    last: DownloadView,
    bar: Option<ProgressBar>,
    failures: u32,
}

#[derive(Debug)]
struct Shared {
    screen: Arc<Screen>,
    /// indicatif's bars, drawn into the screen; `None` without a terminal.
    bars: Option<MultiProgress>,
    entries: Mutex<BTreeMap<Key, Entry>>,
    /// How many downloads are still followed (`wait` watches it).
    active: watch::Sender<usize>,
    /// Downloads of this shell that failed, or were lost track of: a script's exit
    /// status counts them (issue 13).
    failed: std::sync::atomic::AtomicUsize,
}

/// The downloads this shell follows.
#[derive(Debug)]
pub struct Downloads {
    shared: Arc<Shared>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Downloads {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Downloads {
    pub fn new(screen: Arc<Screen>) -> Self {
        let bars = screen.interactive().then(|| {
            let rows = BarRows::new(screen.clone());
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
                Box::new(rows),
                BAR_HZ,
            ))
        });
        let shared = Arc::new(Shared {
            screen,
            bars,
            entries: Mutex::new(BTreeMap::new()),
            active: watch::Sender::new(0),
            failed: std::sync::atomic::AtomicUsize::new(0),
        });
        let poller = tokio::spawn(poll_forever(shared.clone()));
        Self { shared, poller }
    }

    /// Follows `download` (just started on the node behind `client`), shown as `label`.
    /// One already followed is left as it is.
    pub fn follow(&self, client: ControlClient, download: DownloadView, label: &str) {
        if self
            .shared
            .entries()
            .contains_key(&(client.addr(), download.id))
        {
            return;
        }
        let bar = self.shared.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::no_length());
            bar.set_prefix(format!(
                "{:>3} {}",
                download.id,
                console::pad_str(label, LABEL_WIDTH, console::Alignment::Left, Some("…"))
            ));
            bar.set_style(waiting_style());
            bar
        });
        let key = (client.addr(), download.id);
        let entry = Entry {
            client,
            last: download.clone(),
            bar,
            failures: 0,
        };
        self.shared.entries().insert(key, entry);
        self.shared.count();
        // It may have finished already (a tiny file, or one already here).
        self.shared.update(key, download);
    }

    /// How many followed downloads failed (or were lost track of) so far.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// How many downloads are still followed.
    pub fn active(&self) -> usize {
        *self.shared.active.borrow()
    }

    /// Waits until every followed download ended; without bars, prints progress lines
    /// now and then so a script's log shows it is alive.
    pub async fn wait_all(&self) {
        let mut active = self.shared.active.subscribe();
        let mut last_lines = Instant::now();
        loop {
            if *active.borrow_and_update() == 0 {
                return;
            }
            tokio::select! {
                changed = active.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(PLAIN_PROGRESS_EVERY) => {}
            }
            if self.shared.bars.is_none() && last_lines.elapsed() >= PLAIN_PROGRESS_EVERY {
                last_lines = Instant::now();
                let lines: Vec<String> = self
                    .shared
                    .entries()
                    .values()
                    .map(|e| render::download_progress(&e.last))
                    .collect();
                for line in lines {
                    self.shared.screen.print(&line);
                }
            }
        }
    }
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self) {
        let n = self.entries().len();
        self.active.send_replace(n);
    }

    /// Applies a fresh view of download `key`: moves its bar, or reports its end.
    fn update(&self, key: Key, view: DownloadView) {
        let ended = match view.state.as_str() {
            "done" => Some(render::download_done(&view)),
            "failed" => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Some(render::download_failed(&view))
            }
            // Stopped from elsewhere (`highway cancel`/`pause`, another shell): no
            // longer followed, so `wait` does not wait for it.
            "cancelled" | "paused" => Some(format!(
                "download {} was {}; `resume {}` goes on from what it fetched",
                view.id, view.state, view.id
            )),
            _ => None,
        };
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key) else {
            return;
        };
        entry.failures = 0;
        if let Some(bar) = &entry.bar {
            show(bar, &view);
        }
        entry.last = view;
        if let Some(line) = ended {
            let entry = entries.remove(&key);
            drop(entries);
            self.end(entry, &line);
        }
    }

    /// A poll failed: after a few in a row, or at once when the node says the download
    /// is unknown, stop following it.
    fn poll_failed(&self, key: Key, error: &ControlError) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&key) else {
            return;
        };
        entry.failures += 1;
        if entry.failures < MAX_POLL_FAILURES && error.code() != Some("not_found") {
            return;
        }
        let entry = entries.remove(&key);
        drop(entries);
        self.failed.fetch_add(1, Ordering::Relaxed);
        let line = format!("lost track of download {}: {error}", key.1);
        self.end(entry, &line);
    }

    /// Removes a bar and prints `line` (never while holding the entries' lock: the
    /// bar's redraw takes the screen's).
    fn end(&self, entry: Option<Entry>, line: &str) {
        if let Some(Entry { bar: Some(bar), .. }) = entry {
            bar.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&bar);
            }
        }
        self.screen.print(line);
        self.count();
    }
}

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:20}] {percent:>3}%  {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Moves `bar` to `view`: percent once the size is known, the node's rate and ETA.
fn show(bar: &ProgressBar, view: &DownloadView) {
    match view.size {
        Some(size) if view.state != "searching" => {
            if bar.length() != Some(size) {
                bar.set_style(bar_style());
                bar.set_length(size);
            }
            bar.set_position(view.done_bytes);
            let eta = view.eta_ms.map_or_else(|| "-".to_string(), short_duration);
            bar.set_message(format!("{}  ETA {eta}", human_rate(view.rate_bps)));
        }
        _ => bar.set_message(render::waiting_for(view)),
    }
}

async fn poll_forever(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let followed: Vec<(Key, ControlClient)> = shared
            .entries()
            .iter()
            .map(|(key, entry)| (*key, entry.client.clone()))
            .collect();
        for (key, client) in followed {
            match client.download(key.1).await {
                Ok(view) => shared.update(key, view),
                Err(e) => shared.poll_failed(key, &e),
            }
        }
    }
}
