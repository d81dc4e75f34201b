//! The file server: indexed files by content hash over HTTP/1.1, with ranges.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use highway_serve::{Limits, ServeCounters};
use highway_wire::ContentId;
use http_body::{Frame, SizeHint};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::cache::OutboardCache;
use super::range::{self, RangeRequest};
use super::rate::RateLimit;
use super::stored;
use super::verify::compute_outboard;

/// Where the server finds the file for a content id: the share index, in production.
///
/// The server never maps a request path to a file itself; it only asks this.
pub trait FileSource: Send + Sync + 'static {
    /// The file whose BLAKE3 hash is `id`, if it is shared.
    fn open(&self, id: &ContentId) -> Option<ServedFile>;
}

/// A shared file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFile {
    /// Absolute path, expected inside the shared root. The server checks this again
    /// (after resolving symlinks) before opening anything.
    pub path: PathBuf,
    /// Size when indexed. A file whose size changed since is not served: its content no
    /// longer matches the id.
    pub size: u64,
    /// Where its outboard is kept (made when the file was indexed): read instead of
    /// hashing the file again, and written when the server had to make it. `None`: made
    /// on request and kept in memory only.
    pub outboard: Option<PathBuf>,
}

/// File server settings. `root` is required; the rest have working defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The shared root. Only regular files strictly inside it (after resolving symlinks)
    /// are ever served, whatever the [`FileSource`] says.
    pub root: PathBuf,
    /// Open connections at most; a connection beyond is answered `503` and closed.
    pub max_connections: usize,
    /// Open connections at most from one source (IPv4 address or IPv6 /64), so one
    /// client cannot take every connection; beyond, `503` and closed at once.
    pub max_per_source: usize,
    /// Time a client has to send a request's headers (and how long a kept-alive
    /// connection may wait for its next request). Bytes arriving do not extend it.
    pub header_timeout: Duration,
    /// File bodies and outboard computations in progress at most; beyond that, `503`.
    pub max_transfers: usize,
    /// While a request is answered, a connection with no progress in either direction
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes of encoded outboards kept in memory.
    pub outboard_cache_bytes: usize,
    /// Size of each read from disk and of each body frame.
    pub read_chunk: usize,
    /// Frames read ahead of the socket per transfer.
    pub read_ahead: usize,
    /// What the server did. Shared, so a caller that replaces the server (a new share
    /// root) keeps counting in the same place.
    pub counters: Arc<ServerCounters>,
    /// A cap on the bytes per second of file bodies, shared by all transfers (outboards
    /// are small and not counted). `None`: as fast as disk and network allow.
    pub upload_limit: Option<Arc<RateLimit>>,
    /// Testing only: the fraction (0.0..=1.0) of file body frames sent with one byte
    /// flipped, so downloaders' handling of a corrupting holder can be exercised with real
    /// processes. Outboards stay correct (the damage must be caught per chunk group).
    pub corrupt_uploads: f64,
}

/// Counters of a file server; they only grow.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// File responses with a body on their way (200 or 206).
    pub files_served: AtomicU64,
    /// File bytes handed to the connection (a client that goes away early is counted
    /// for what it was sent).
    pub bytes_served: AtomicU64,
    /// Outboards (verification trees) sent.
    pub outboards_served: AtomicU64,
    /// Outboards the server had to make by reading the whole file (none stored, or the
    /// stored one did not check out): the first download of such a file waits for it.
    pub outboards_computed: AtomicU64,
    /// Requests for ids that are not shared (or no longer match their file).
    pub not_found: AtomicU64,
    /// Requests refused with `503` because every transfer slot was taken.
    pub busy: AtomicU64,
    /// The connection layer: admitted, refused per source or at the total cap, cut at
    /// the header deadline or for idleness.
    pub connections: Arc<ServeCounters>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ServerConfig {
    /// Defaults for a peer sharing `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let defaults = Limits::file_server();
        Self {
            root: root.into(),
            max_connections: defaults.max_connections,
            max_per_source: defaults.max_per_source,
            header_timeout: defaults.header_timeout,
            max_transfers: 32,
            idle_timeout: defaults.idle_timeout,
            outboard_cache_bytes: 64 << 20,
            read_chunk: 256 << 10,
            read_ahead: 4,
            counters: Arc::default(),
            upload_limit: None,
            corrupt_uploads: 0.0,
        }
    }
}

/// A file server for one shared root.
///
/// ```no_run
/// # use highway_share::transfer::{FileServer, FileSource, ServerConfig};
/// # async fn demo(source: std::sync::Arc<dyn FileSource>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = FileServer::new(source, ServerConfig::new("/srv/share"))?;
/// server.run(listener, std::future::pending()).await
/// # }
/// ```
#[derive(Clone)]
pub struct FileServer {
    shared: Arc<Shared>,
}

struct Shared {
    source: Arc<dyn FileSource>,
    /// The root, canonicalised once at start.
    root: PathBuf,
    transfers: Arc<Semaphore>,
    cache: Mutex<OutboardCache>,
    config: ServerConfig,
}

impl std::fmt::Debug for FileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileServer")
            .field("root", &self.shared.root)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl FileServer {
    /// Fails when the root does not exist or cannot be resolved.
    pub fn new(source: Arc<dyn FileSource>, config: ServerConfig) -> io::Result<Self> {
        let root = std::fs::canonicalize(&config.root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "the shared root is not a directory",
            ));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                source,
                root,
                transfers: Arc::new(Semaphore::new(config.max_transfers.max(1))),
                cache: Mutex::new(OutboardCache::new(config.outboard_cache_bytes)),
                config,
            }),
        })
    }

    /// The routes, for a caller that wants to serve them on its own listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/files/{id}", get(file))
            .route("/v1/outboard/{id}", get(outboard))
            .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves until `shutdown` completes, then stops accepting and lets open connections
    /// finish. Connections are bounded in total and per source, headers have a deadline
    /// and idle connections are closed (see [`ServerConfig`] and [`highway_serve`]).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let config = &self.shared.config;
        let limits = Limits {
            max_connections: config.max_connections.max(1),
            max_per_source: config
                .max_per_source
                .clamp(1, config.max_connections.max(1)),
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        };
        let counters = Arc::clone(&config.counters.connections);
        highway_serve::serve(listener, self.router(), limits, counters, shutdown).await
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

fn busy() -> Response {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "busy, retry later");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Only exactly 64 hex characters name a file; everything else (`..`, slashes that
/// arrived percent-encoded, absolute paths) stops here.
fn parse_id(raw: &str) -> Option<ContentId> {
    raw.parse().ok()
}

fn bad_id() -> Response {
    plain(StatusCode::BAD_REQUEST, "expected a 64-hex content id")
}

/// Resolves and opens the file for `id`, checking it is a regular file strictly inside the
/// root with the indexed size. Blocking.
///
/// Symlinks are resolved before the check, so a link inside the root that points outside
/// is refused. The remaining race (someone with write access to the root swapping a
/// directory for a link between the check and the open) needs an attacker inside the
/// shared folder and is out of scope.
fn open_checked(shared: &Shared, id: &ContentId) -> Option<(File, u64)> {
    open_served(shared, id).map(|(file, size, _)| (file, size))
}

/// [`open_checked`], with where the file's outboard is kept.
fn open_served(shared: &Shared, id: &ContentId) -> Option<(File, u64, Option<PathBuf>)> {
    let served = shared.source.open(id)?;
    let resolved = std::fs::canonicalize(&served.path).ok()?;
    if resolved == shared.root || !resolved.starts_with(&shared.root) {
        tracing::warn!(%id, "refusing to serve a file outside the shared root");
        return None;
    }
    let file = File::open(&resolved).ok()?;
    // Metadata of the open descriptor: what is actually served.
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        tracing::warn!(%id, "refusing to serve something that is not a regular file");
        return None;
    }
    if meta.len() != served.size {
        tracing::info!(%id, "not serving a file whose size changed since it was indexed");
        return None;
    }
    Some((file, meta.len(), served.outboard))
}

async fn open_blocking(shared: &Arc<Shared>, id: ContentId) -> Option<(File, u64)> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || open_checked(&shared, &id))
        .await
        .ok()
        .flatten()
}

async fn file(
    State(shared): State<Arc<Shared>>,
    method: Method,
    UrlPath(raw): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = parse_id(&raw) else {
        return bad_id();
    };
    // HEAD reads no data, so it takes no transfer slot.
    let permit = if method == Method::HEAD {
        None
    } else {
        match Arc::clone(&shared.transfers).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                bump(&shared.config.counters.busy);
                return busy();
            }
        }
    };
    let Some((file, size)) = open_blocking(&shared, id).await else {
        bump(&shared.config.counters.not_found);
        return plain(StatusCode::NOT_FOUND, "not found");
    };

    let etag = format!("\"{id}\"");
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // An If-Range that is not our (immutable) ETag means the client holds other content:
    // send the whole file.
    let if_range_matches = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let request = if if_range_matches {
        range::parse(range_header, size)
    } else {
        RangeRequest::Full
    };

    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    let (start, len) = match request {
        RangeRequest::Full => (0, size),
        RangeRequest::Partial { start, end } => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from("range not satisfiable"))
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error"));
        }
    };
    builder = builder
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len);
    let body = match permit {
        Some(permit) if len > 0 => {
            let config = &shared.config;
            bump(&config.counters.files_served);
            FileBody::spawn(file, start, len, permit, config)
        }
        _ => Body::empty(),
    };
    builder
        .body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error"))
}

async fn outboard(
    State(shared): State<Arc<Shared>>,
    method: Method,
    UrlPath(raw): UrlPath<String>,
) -> Response {
    let Some(id) = parse_id(&raw) else {
        return bad_id();
    };
    let cached = shared
        .cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&id);
    let encoded = match cached {
        Some(encoded) => encoded,
        None => {
            let Ok(permit) = Arc::clone(&shared.transfers).try_acquire_owned() else {
                bump(&shared.config.counters.busy);
                return busy();
            };
            let worker = Arc::clone(&shared);
            let computed = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let (file, size, kept) = open_served(&worker, &id)?;
                // Kept since the file was indexed: checked against the id, not recomputed.
                if let Some(path) = &kept
                    && let Ok(Some(encoded)) = stored::load_encoded(path, &id, size)
                {
                    return Some(Bytes::from(encoded));
                }
                bump(&worker.config.counters.outboards_computed);
                let outboard =
                    compute_outboard(BufReader::with_capacity(1 << 20, file), size).ok()?;
                if outboard.root.as_bytes() != id.as_bytes() {
                    tracing::warn!(%id, "file content no longer matches its id; not serving");
                    return None;
                }
                if let Some(dir) = kept.as_deref().and_then(Path::parent)
                    && let Err(e) = stored::save(dir, &id, &outboard.outboard)
                {
                    tracing::debug!(%id, error = %e, "cannot keep the outboard");
                }
                Some(Bytes::from(outboard.encode()))
            })
            .await
            .ok()
            .flatten();
            let Some(encoded) = computed else {
                bump(&shared.config.counters.not_found);
                return plain(StatusCode::NOT_FOUND, "not found");
            };
            shared
                .cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(id, encoded.clone());
            encoded
        }
    };
    let len = encoded.len();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        bump(&shared.config.counters.outboards_served);
        Body::from(encoded)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "error"))
}

/// A response body fed by a blocking thread that reads the file ahead of the socket.
///
/// Memory per transfer is `read_ahead + 1` frames of `read_chunk` bytes. The reader stops
/// when the body is dropped (the client went away) because its sends fail.
struct FileBody {
    frames: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
    counters: Arc<ServerCounters>,
}

impl FileBody {
    fn spawn(
        mut file: File,
        start: u64,
        len: u64,
        permit: OwnedSemaphorePermit,
        config: &ServerConfig,
    ) -> Body {
        let (tx, rx) = mpsc::channel(config.read_ahead.max(1));
        let read_chunk = config.read_chunk.max(4096);
        let limit = config.upload_limit.clone();
        let counters = Arc::clone(&config.counters);
        let corrupt = config.corrupt_uploads;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(read_chunk);
                if let Some(limit) = &limit {
                    limit.acquire_blocking(want);
                }
                let offset = start + (len - left);
                let frame = read_frame(&mut file, want).map(|f| damage(f, offset, corrupt));
                let failed = frame.is_err();
                if tx.blocking_send(frame).is_err() || failed {
                    return;
                }
                left -= want as u64;
            }
        });
        Body::new(FileBody {
            frames: rx,
            remaining: len,
            counters,
        })
    }
}

/// Testing only (`corrupt_uploads`): flips one byte in the middle of a frame that starts at
/// `offset`, for that fraction of frames. Chosen by a hash of the offset, so a test sees
/// the same frames damaged on every run and every retry.
fn damage(frame: Bytes, offset: u64, fraction: f64) -> Bytes {
    if fraction <= 0.0 || frame.is_empty() {
        return frame;
    }
    let draw = blake3::hash(&offset.to_le_bytes()).as_bytes()[0];
    if f64::from(draw) >= fraction * 256.0 {
        return frame;
    }
    let mut bytes = frame.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xA5;
    Bytes::from(bytes)
}

/// Reads exactly `len` bytes into a fresh frame (without zero-filling it first). A file
/// that shrank under us is an `UnexpectedEof`, which aborts the response so the client
/// sees a short body rather than wrong bytes.
fn read_frame(file: &mut File, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being served",
        ));
    }
    Ok(Bytes::from(buf))
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                (self.counters.bytes_served).fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file reader stopped early",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
