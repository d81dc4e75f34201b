//! The downloader: holders in turn, every byte verified, resumable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use highway_wire::ContentId;
use reqwest::Url;
use tokio::sync::watch;

use super::error::{HolderFailure, HolderFault, TransferError};
use super::fetch::{self, Attempt, Metadata};
use super::partial::{self, PartPaths, PartState};
use super::rate::RateLimit;
use super::verify::GROUP_BYTES;

/// A peer that holds the file: the base URL of its file server (`http://host:port`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Holder(Url);

impl Holder {
    /// A holder at `url`; only `http` URLs are supported.
    pub fn from_url(url: Url) -> Result<Self, String> {
        if url.scheme() != "http" {
            return Err(format!("unsupported scheme {:?}", url.scheme()));
        }
        if url.host().is_none() {
            return Err("no host".to_owned());
        }
        Ok(Self(url))
    }

    /// The base URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    fn endpoint(&self, kind: &str, id: &ContentId) -> String {
        format!("{}/v1/{kind}/{id}", self.0.as_str().trim_end_matches('/'))
    }

    pub(crate) fn file_url(&self, id: &ContentId) -> String {
        self.endpoint("files", id)
    }

    pub(crate) fn outboard_url(&self, id: &ContentId) -> String {
        self.endpoint("outboard", id)
    }
}

impl From<SocketAddr> for Holder {
    fn from(addr: SocketAddr) -> Self {
        let url = Url::parse(&format!("http://{addr}/")).expect("a socket address is a valid host");
        Self(url)
    }
}

impl FromStr for Holder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        Self::from_url(Url::parse(s).map_err(|e| e.to_string())?)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Holder({self})")
    }
}

/// Downloader settings.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Directory for partial files (named by content id). `None` keeps them next to the
    /// destination (`dest.part`, ...). Must be on the destination's filesystem.
    pub part_dir: Option<PathBuf>,
    /// Limit for establishing a TCP connection to a holder.
    pub connect_timeout: Duration,
    /// Limit for a holder to answer a request, and for each read of a body.
    pub stall_timeout: Duration,
    /// Failures (of the kind that may be transient) after which a holder is dropped.
    pub max_failures_per_holder: u32,
    /// Pause before going round the holders again after all of them failed once.
    pub retry_backoff: Duration,
    /// Largest file accepted, whatever a holder declares.
    pub max_size: u64,
    /// Size of each receive buffer (rounded up to whole 16 KiB chunk groups).
    pub buffer_size: usize,
    /// Receive buffers in flight between the network and the verifier: the download's
    /// memory is `buffers * buffer_size`, independent of the file size.
    pub buffers: usize,
    /// Replace an existing destination file.
    pub overwrite: bool,
    /// A cap on the bytes per second received, shared by every download that uses this
    /// downloader (and any other holder of the `Arc`). `None`: no cap.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Connect to holders from this address (when the holder's address is of the same
    /// family), so a peer's downloads come from the address it publishes; file servers cap
    /// connections per source address. `None`: the system's choice.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            part_dir: None,
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(20),
            max_failures_per_holder: 3,
            retry_backoff: Duration::from_millis(500),
            max_size: 1 << 40,
            buffer_size: 1 << 20,
            buffers: 4,
            overwrite: false,
            rate_limit: None,
            local_address: None,
        }
    }
}

impl DownloadOptions {
    /// Short timers for tests on loopback.
    pub fn test() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(2),
            max_failures_per_holder: 2,
            retry_backoff: Duration::from_millis(20),
            ..Self::default()
        }
    }

    pub(crate) fn group_aligned_buffer(&self) -> usize {
        let group = GROUP_BYTES as usize;
        self.buffer_size.max(group).div_ceil(group) * group
    }
}

/// What to download, from whom, to where.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub id: ContentId,
    /// Holders in order of preference.
    pub holders: Vec<Holder>,
    /// The size the caller expects (e.g. from a search hit). A holder declaring another
    /// size is dropped. `None` takes the size from the first holder that proves it.
    pub expected_size: Option<u64>,
    /// The final path. Its directory must exist.
    pub dest: PathBuf,
}

/// How a download is going. Published on the optional watch channel after every buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// File size, once a holder proved it.
    pub size: Option<u64>,
    /// Bytes verified so far, including resumed ones.
    pub verified: u64,
    /// Bytes that were already verified on disk when this run started.
    pub resumed: u64,
    /// The holder being read from now.
    pub current: Option<Holder>,
    /// Verified bytes fetched from each holder in this run.
    pub per_holder: Vec<(Holder, u64)>,
}

/// Bytes verified from one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderUsage {
    pub holder: Holder,
    pub bytes: u64,
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    pub id: ContentId,
    pub size: u64,
    /// Where the file now is.
    pub path: PathBuf,
    /// Verified bytes found in the partial file at the start.
    pub bytes_resumed: u64,
    /// Verified file bytes fetched in this run (`size - bytes_resumed`).
    pub bytes_fetched: u64,
    /// File bytes received but thrown away: corrupt groups and the tails of cut-off
    /// responses.
    pub bytes_discarded: u64,
    /// Outboard bytes fetched (zero when the outboard was resumed).
    pub outboard_bytes: u64,
    /// Holders that contributed data, in order of first use.
    pub holders_used: Vec<HolderUsage>,
    /// Every fault met, in order, including holders that were retried successfully.
    pub failures: Vec<HolderFailure>,
    pub elapsed: Duration,
}

impl DownloadReport {
    /// Holders dropped for sending bytes that failed verification.
    pub fn corrupt_holders(&self) -> impl Iterator<Item = &Holder> {
        self.failures
            .iter()
            .filter(|f| f.fault.is_corruption())
            .map(|f| &f.holder)
    }
}

/// Downloads files; holds the HTTP connection pool, so reuse one per node.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    options: DownloadOptions,
}

/// Downloads with a one-off [`Downloader`].
pub async fn download(
    request: DownloadRequest,
    options: DownloadOptions,
    progress: Option<watch::Sender<Progress>>,
) -> Result<DownloadReport, TransferError> {
    Downloader::new(options)?.download(request, progress).await
}

impl Downloader {
    pub fn new(options: DownloadOptions) -> Result<Self, TransferError> {
        let client = reqwest::Client::builder()
            // Holders are peers: never send their traffic through a proxy.
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.stall_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .local_address(options.local_address)
            .build()
            .map_err(|e| TransferError::Client(e.to_string()))?;
        Ok(Self { client, options })
    }

    pub fn options(&self) -> &DownloadOptions {
        &self.options
    }

    /// Downloads `request.id` to `request.dest`, resuming a partial left by an earlier
    /// attempt, and returns what it did.
    ///
    /// Dropping the future cancels the download; the partial stays for a resume. A
    /// verifier thread may still write the buffer it holds (verified bytes at their own
    /// offsets), so a resume started right after a cancel cannot be corrupted by it.
    pub async fn download(
        &self,
        request: DownloadRequest,
        progress: Option<watch::Sender<Progress>>,
    ) -> Result<DownloadReport, TransferError> {
        let started = Instant::now();
        let progress = ProgressHandle(progress.map(Arc::new));
        let options = &self.options;
        if request.holders.is_empty() {
            return Err(TransferError::NoHolders);
        }
        if let Some(size) = request.expected_size
            && size > options.max_size
        {
            return Err(TransferError::TooLarge {
                size,
                max: options.max_size,
            });
        }
        if !options.overwrite && tokio::fs::try_exists(&request.dest).await.unwrap_or(false) {
            return Err(TransferError::DestinationExists(request.dest.clone()));
        }
        let id = request.id;
        let paths = PartPaths::new(&request.dest, options.part_dir.as_deref(), &id);
        if let Some(dir) = &options.part_dir {
            blocking(dir.clone(), {
                let dir = dir.clone();
                move || std::fs::create_dir_all(&dir)
            })
            .await?;
        }

        let mut ring = HolderRing::new(request.holders.clone(), options.max_failures_per_holder);
        let mut outboard_bytes = 0;

        // 1. Size and outboard: from a previous attempt, or from the first holder that
        //    proves them.
        let existing = blocking(paths.state.clone(), {
            let paths = paths.clone();
            move || {
                let existing = partial::load_existing(&paths, &id)?;
                if existing.is_none() && (paths.state.exists() || paths.data.exists()) {
                    tracing::info!(%id, "discarding a partial download that cannot be resumed");
                    paths.remove_all();
                }
                Ok(existing)
            }
        })
        .await?;
        // A resumed size was proven against the content hash, which fixes it; an expectation
        // that differs is wrong, and no holder could satisfy it.
        if let (Some((proven, _)), Some(expected)) = (&existing, request.expected_size)
            && *proven != expected
        {
            return Err(TransferError::WrongExpectedSize {
                expected,
                proven: *proven,
            });
        }
        let (size, outboard) = match existing {
            Some(found) => found,
            None => loop {
                let Some(index) = ring.next(options.retry_backoff).await else {
                    // Whatever the last holder sent is not worth keeping.
                    let stale = paths.clone();
                    let _ = tokio::task::spawn_blocking(move || stale.remove_all()).await;
                    return Err(ring.exhausted(0, None, &paths));
                };
                let holder = ring.holder(index).clone();
                progress.update(|p| p.current = Some(holder.clone()));
                let metadata = fetch::metadata(
                    &self.client,
                    options,
                    &holder,
                    &id,
                    request.expected_size,
                    &paths,
                )
                .await;
                match metadata {
                    Ok(Metadata { size, outboard }) => {
                        outboard_bytes = size_prefixed_len(size);
                        let state = PartState::new(id, size, 0);
                        let paths = paths.clone();
                        blocking(paths.state.clone(), move || {
                            partial::write_state(&paths, &state)
                        })
                        .await?;
                        break (size, outboard);
                    }
                    Err(fetch::Failure::Holder(fault)) => ring.fault(index, fault),
                    Err(fetch::Failure::Local(e)) => return Err(e),
                }
            },
        };

        // 2. What is already verified on disk.
        let buffer_size = options.group_aligned_buffer();
        let (resumed, outboard) = blocking(paths.data.clone(), {
            let data = paths.data.clone();
            move || {
                let mut buffer = vec![0u8; buffer_size];
                let resumed = partial::verified_prefix(&data, &outboard, size, &mut buffer)?;
                Ok((resumed, outboard))
            }
        })
        .await?;
        if resumed > 0 {
            tracing::info!(%id, resumed, size, "resuming a partial download");
        }
        progress.update(|p| {
            p.size = Some(size);
            p.verified = resumed;
            p.resumed = resumed;
        });

        // 3. Data, holder by holder, from the verified prefix.
        let mut verified = resumed;
        let mut discarded = 0u64;
        let data = blocking(paths.data.clone(), {
            let data = paths.data.clone();
            move || partial::open_data_at(&data, resumed)
        })
        .await?;
        let flusher = fetch::Flusher::start(&data).map_err(|source| TransferError::LocalIo {
            path: paths.data.clone(),
            source,
        })?;
        let mut sink = Some(fetch::Sink {
            outboard,
            data,
            paths: paths.clone(),
            flusher,
        });
        let mut used: Vec<HolderUsage> = Vec::new();
        while verified < size {
            let Some(index) = ring.next(options.retry_backoff).await else {
                let state = PartState::new(id, size, verified);
                let state_paths = paths.clone();
                let _ = blocking(paths.state.clone(), move || {
                    partial::write_state(&state_paths, &state)
                })
                .await;
                return Err(ring.exhausted(verified, Some(size), &paths));
            };
            let holder = ring.holder(index).clone();
            progress.update(|p| p.current = Some(holder.clone()));
            let attempt = Attempt {
                client: &self.client,
                options,
                holder: &holder,
                id: &id,
                size,
                start: verified,
                progress: &progress,
            };
            let outcome = attempt
                .run(sink.take().expect("the sink is returned by every attempt"))
                .await;
            sink = Some(outcome.sink);
            verified += outcome.verified;
            discarded += outcome.discarded;
            if outcome.verified > 0 {
                match used.iter_mut().find(|u| u.holder == holder) {
                    Some(usage) => usage.bytes += outcome.verified,
                    None => used.push(HolderUsage {
                        holder: holder.clone(),
                        bytes: outcome.verified,
                    }),
                }
            }
            match outcome.failure {
                None => {}
                Some(fetch::Failure::Holder(fault)) => {
                    tracing::info!(%id, %holder, %fault, verified, "switching holder");
                    ring.fault(index, fault);
                }
                Some(fetch::Failure::Local(e)) => return Err(e),
            }
        }

        // 4. Done: durable, renamed, metadata removed.
        let sink = sink.expect("the sink is returned by every attempt");
        let overwrite = options.overwrite;
        let finalize_paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            partial::finalize(&finalize_paths, sink.data, overwrite)
        })
        .await
        .map_err(|e| TransferError::LocalIo {
            path: paths.data.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| TransferError::Finalize {
            part: paths.data.clone(),
            dest: paths.dest.clone(),
            source,
        })?;
        progress.update(|p| p.current = None);
        Ok(DownloadReport {
            id,
            size,
            path: request.dest,
            bytes_resumed: resumed,
            bytes_fetched: verified - resumed,
            bytes_discarded: discarded,
            outboard_bytes,
            holders_used: used,
            failures: ring.failures,
            elapsed: started.elapsed(),
        })
    }
}

fn size_prefixed_len(size: u64) -> u64 {
    super::verify::SIZE_PREFIX_LEN as u64 + super::verify::outboard_len(size)
}

/// Runs blocking file work off the runtime; errors name `path`.
async fn blocking<T: Send + 'static>(
    path: PathBuf,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, TransferError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(TransferError::LocalIo { path, source }),
        Err(e) => Err(TransferError::LocalIo {
            path,
            source: std::io::Error::other(e),
        }),
    }
}

/// The optional progress channel, shared with the verifier thread.
#[derive(Debug, Clone)]
pub(crate) struct ProgressHandle(Option<Arc<watch::Sender<Progress>>>);

impl ProgressHandle {
    pub fn update(&self, change: impl FnOnce(&mut Progress)) {
        if let Some(sender) = &self.0 {
            sender.send_modify(change);
        }
    }

    /// Records `bytes` more verified bytes from `holder`.
    pub fn verified(&self, holder: &Holder, bytes: u64) {
        self.update(|p| {
            p.verified += bytes;
            match p.per_holder.iter_mut().find(|(h, _)| h == holder) {
                Some((_, n)) => *n += bytes,
                None => p.per_holder.push((holder.clone(), bytes)),
            }
        });
    }
}

struct RingEntry {
    holder: Holder,
    failures: u32,
    dropped: bool,
}

/// The holders, tried in order, each until it fails; then the next one, round and round,
/// until every holder is dropped.
struct HolderRing {
    entries: Vec<RingEntry>,
    cursor: usize,
    max_failures: u32,
    /// Faults since the last pause; once every usable holder failed, pause.
    faults_this_round: usize,
    failures: Vec<HolderFailure>,
}

impl HolderRing {
    fn new(holders: Vec<Holder>, max_failures: u32) -> Self {
        let mut entries: Vec<RingEntry> = Vec::with_capacity(holders.len());
        for holder in holders {
            if entries.iter().all(|e| e.holder != holder) {
                entries.push(RingEntry {
                    holder,
                    failures: 0,
                    dropped: false,
                });
            }
        }
        Self {
            entries,
            cursor: 0,
            max_failures: max_failures.max(1),
            faults_this_round: 0,
            failures: Vec::new(),
        }
    }

    fn holder(&self, index: usize) -> &Holder {
        &self.entries[index].holder
    }

    /// The holder to use now: the current one if still usable, else the next usable one.
    /// Once every usable holder has failed since the last pause, pauses for `backoff`.
    async fn next(&mut self, backoff: Duration) -> Option<usize> {
        let n = self.entries.len();
        let index = (0..n)
            .map(|step| (self.cursor + step) % n)
            .find(|&i| !self.entries[i].dropped)?;
        if self.faults_this_round > 0 && self.faults_this_round >= self.usable() {
            tokio::time::sleep(backoff).await;
            self.faults_this_round = 0;
        }
        self.cursor = index;
        Some(index)
    }

    fn usable(&self) -> usize {
        self.entries.iter().filter(|e| !e.dropped).count()
    }

    fn fault(&mut self, index: usize, fault: HolderFault) {
        let entry = &mut self.entries[index];
        entry.failures += 1;
        if fault.is_permanent() || entry.failures >= self.max_failures {
            entry.dropped = true;
        }
        self.failures.push(HolderFailure {
            holder: entry.holder.clone(),
            fault,
        });
        self.faults_this_round += 1;
        self.cursor = (index + 1) % self.entries.len();
    }

    fn exhausted(&mut self, verified: u64, size: Option<u64>, paths: &PartPaths) -> TransferError {
        TransferError::HoldersExhausted {
            verified,
            size,
            part: paths.data.clone(),
            failures: std::mem::take(&mut self.failures),
        }
    }
}
