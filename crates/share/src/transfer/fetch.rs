//! One holder at a time: fetching the outboard, and fetching data through the verifier.

use std::fs::File;
use std::io::{self, Write};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use highway_wire::ContentId;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::download::{DownloadOptions, Holder, ProgressHandle};
use super::error::{HolderFault, TransferError};
use super::partial::{self, DiskOutboard, PartPaths};
use super::verify::{GROUP_BYTES, RangeVerifier, SIZE_PREFIX_LEN, VerifyError, outboard_len};

/// Why a step with one holder stopped: the holder's fault (try another), or ours (stop).
#[derive(Debug)]
pub(crate) enum Failure {
    Holder(HolderFault),
    Local(TransferError),
}

impl From<HolderFault> for Failure {
    fn from(fault: HolderFault) -> Self {
        Self::Holder(fault)
    }
}

fn local(path: &std::path::Path, source: io::Error) -> Failure {
    Failure::Local(TransferError::LocalIo {
        path: path.to_path_buf(),
        source,
    })
}

fn transport(e: &reqwest::Error) -> HolderFault {
    if e.is_timeout() {
        HolderFault::Timeout
    } else if refused(e) {
        HolderFault::Refused
    } else {
        // The chain of sources says what really happened (refused, reset...).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        HolderFault::Unreachable(text)
    }
}

/// Whether the holder's machine refused the connection: nothing listens there (the
/// holder is gone), so asking again in this download is pointless.
fn refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

async fn send(
    request: reqwest::RequestBuilder,
    stall: Duration,
) -> Result<reqwest::Response, HolderFault> {
    match tokio::time::timeout(stall, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(transport(&e)),
        Err(_) => Err(HolderFault::Timeout),
    }
}

async fn next_chunk(
    response: &mut reqwest::Response,
    stall: Duration,
) -> Result<Option<axum::body::Bytes>, HolderFault> {
    match tokio::time::timeout(stall, response.chunk()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(transport(&e)),
        Err(_) => Err(HolderFault::Timeout),
    }
}

fn status_fault(status: StatusCode) -> HolderFault {
    match status {
        StatusCode::NOT_FOUND => HolderFault::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => HolderFault::Busy,
        other => HolderFault::Status(other.as_u16()),
    }
}

/// Parses `bytes a-b/total` (or `bytes */total`) into `(Some((a, b)), total)`.
fn content_range(headers: &HeaderMap) -> Option<(Option<(u64, u64)>, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok()?;
    if span.trim() == "*" {
        return Some((None, total));
    }
    let (a, b) = span.split_once('-')?;
    Some((
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        total,
    ))
}

/// Checks that `response` carries exactly bytes `start..size` of a file of `size` bytes.
fn check_range_response(
    response: &reqwest::Response,
    start: u64,
    size: u64,
) -> Result<(), HolderFault> {
    let status = response.status();
    let headers = response.headers();
    match status {
        StatusCode::PARTIAL_CONTENT => match content_range(headers) {
            Some((_, total)) if total != size => {
                return Err(HolderFault::SizeMismatch {
                    expected: size,
                    declared: total,
                });
            }
            Some((Some((a, b)), _)) if a == start && b + 1 == size => {}
            _ => {
                return Err(HolderFault::Protocol(format!(
                    "expected Content-Range bytes {start}-{}/{size}",
                    size - 1
                )));
            }
        },
        StatusCode::OK if start == 0 => {}
        StatusCode::OK => {
            return Err(HolderFault::Protocol("ignored the Range header".to_owned()));
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            return Err(match content_range(headers) {
                Some((None, total)) if total != size => HolderFault::SizeMismatch {
                    expected: size,
                    declared: total,
                },
                _ => HolderFault::Protocol("refused a satisfiable range".to_owned()),
            });
        }
        other => return Err(status_fault(other)),
    }
    match response.content_length() {
        Some(len) if len != size - start => Err(HolderFault::Protocol(format!(
            "Content-Length {len}, expected {}",
            size - start
        ))),
        _ => Ok(()),
    }
}

/// A proven size and an outboard that hashes to the content id, saved on disk.
pub(crate) struct Metadata {
    pub size: u64,
    pub outboard: DiskOutboard,
}

/// Fetches the outboard from `holder` into `paths.outboard`, validates it against `id`,
/// and proves the declared size by verifying the file's final chunk group from the same
/// holder.
pub(crate) async fn metadata(
    client: &reqwest::Client,
    options: &DownloadOptions,
    holder: &Holder,
    id: &ContentId,
    expected_size: Option<u64>,
    paths: &PartPaths,
) -> Result<Metadata, Failure> {
    let stall = options.stall_timeout;
    let mut response = send(client.get(holder.outboard_url(id)), stall).await?;
    if response.status() != StatusCode::OK {
        return Err(status_fault(response.status()).into());
    }
    // Read before the body: reqwest's figure shrinks as the body is consumed.
    let announced = response.content_length();

    // The size prefix, then the outboard streamed to disk.
    let mut prefix = [0u8; SIZE_PREFIX_LEN];
    let mut have = 0;
    let mut first_rest = None;
    while have < SIZE_PREFIX_LEN {
        let Some(chunk) = next_chunk(&mut response, stall).await? else {
            return Err(
                HolderFault::Protocol("outboard response without a size".to_owned()).into(),
            );
        };
        let n = chunk.len().min(SIZE_PREFIX_LEN - have);
        prefix[have..have + n].copy_from_slice(&chunk[..n]);
        have += n;
        if n < chunk.len() {
            first_rest = Some(chunk.slice(n..));
        }
    }
    let size = u64::from_le_bytes(prefix);
    if size > options.max_size {
        return Err(HolderFault::TooLarge {
            declared: size,
            max: options.max_size,
        }
        .into());
    }
    if let Some(expected) = expected_size
        && expected != size
    {
        return Err(HolderFault::SizeMismatch {
            expected,
            declared: size,
        }
        .into());
    }
    let expected_len = outboard_len(size);
    if let Some(len) = announced
        && len != SIZE_PREFIX_LEN as u64 + expected_len
    {
        return Err(
            HolderFault::Protocol(format!("outboard of {len} bytes for a file of {size}")).into(),
        );
    }
    let mut file = tokio::fs::File::create(&paths.outboard)
        .await
        .map_err(|e| local(&paths.outboard, e))?;
    let mut written = 0u64;
    let mut next = first_rest;
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => match next_chunk(&mut response, stall).await? {
                Some(chunk) => chunk,
                None => break,
            },
        };
        written += chunk.len() as u64;
        if written > expected_len {
            return Err(
                HolderFault::Protocol("outboard longer than its size implies".to_owned()).into(),
            );
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| local(&paths.outboard, e))?;
    }
    if written != expected_len {
        return Err(HolderFault::ShortRead {
            received: written,
            expected: expected_len,
        }
        .into());
    }
    file.flush().await.map_err(|e| local(&paths.outboard, e))?;
    drop(file);

    let (outboard_path, owned_id) = (paths.outboard.clone(), *id);
    let outboard = tokio::task::spawn_blocking(move || {
        partial::open_outboard(&outboard_path, &owned_id, size)
    })
    .await
    .map_err(|e| local(&paths.outboard, io::Error::other(e)))?
    .map_err(|e| local(&paths.outboard, e))?;
    let Some(outboard) = outboard else {
        return Err(HolderFault::BadOutboard.into());
    };

    // Prove the size: only the true final group, at the true offset and length, hashes to
    // its entry.
    if size == 0 {
        return if blake3::hash(b"").as_bytes() == id.as_bytes() {
            Ok(Metadata { size, outboard })
        } else {
            Err(HolderFault::SizeUnproven { declared: 0 }.into())
        };
    }
    let last = (size - 1) / GROUP_BYTES * GROUP_BYTES;
    let mut response = send(
        client
            .get(holder.file_url(id))
            .header(header::RANGE, format!("bytes={last}-{}", size - 1)),
        stall,
    )
    .await?;
    if last > 0 || response.status() != StatusCode::OK {
        check_range_response(&response, last, size)?;
    }
    let want = (size - last) as usize;
    let mut group = Vec::with_capacity(want);
    while let Some(chunk) = next_chunk(&mut response, stall).await? {
        if group.len() + chunk.len() > want {
            return Err(HolderFault::Protocol("more bytes than requested".to_owned()).into());
        }
        group.extend_from_slice(&chunk);
    }
    if group.len() != want {
        return Err(HolderFault::ShortRead {
            received: group.len() as u64,
            expected: want as u64,
        }
        .into());
    }
    let (outboard, proven) = tokio::task::spawn_blocking(move || {
        let fed = RangeVerifier::new(outboard.root, size, last).feed(&outboard, &group);
        let proven = fed.error.is_none() && fed.verified == group.len();
        (outboard, proven)
    })
    .await
    .map_err(|e| local(&paths.outboard, io::Error::other(e)))?;
    if !proven {
        return Err(HolderFault::SizeUnproven { declared: size }.into());
    }
    Ok(Metadata { size, outboard })
}

/// What the verifier thread owns: the outboard and the data file, positioned at the
/// verified prefix. Handed to each attempt and back.
pub(crate) struct Sink {
    pub outboard: DiskOutboard,
    pub data: File,
    pub paths: PartPaths,
    pub flusher: Flusher,
}

/// Bytes written between two nudges of the [`Flusher`].
const FLUSH_EVERY: u64 = 32 << 20;

/// Flushes the data file to disk in the background while the download goes on, so the
/// fsync before the final rename has little left to do (on a 256 MiB download it was 40%
/// of the wall time when left to the end). Holds a clone of the file descriptor; stops when
/// dropped.
pub(crate) struct Flusher {
    nudge: std::sync::mpsc::SyncSender<()>,
    since_nudge: u64,
}

impl Flusher {
    /// Starts the flushing thread for `data`. Call from within the runtime.
    pub fn start(data: &File) -> io::Result<Self> {
        let file = data.try_clone()?;
        let (nudge, nudges) = std::sync::mpsc::sync_channel::<()>(1);
        tokio::task::spawn_blocking(move || {
            while nudges.recv().is_ok() {
                // Best effort: the final fsync reports errors that matter.
                let _ = file.sync_data();
            }
        });
        Ok(Self {
            nudge,
            since_nudge: 0,
        })
    }

    /// Notes `bytes` more written; starts a flush every [`FLUSH_EVERY`] bytes unless one is
    /// still pending.
    fn wrote(&mut self, bytes: u64) {
        self.since_nudge += bytes;
        if self.since_nudge >= FLUSH_EVERY {
            self.since_nudge = 0;
            let _ = self.nudge.try_send(());
        }
    }
}

/// One pass over one holder, from the verified prefix to the end or the first fault.
pub(crate) struct Attempt<'a> {
    pub client: &'a reqwest::Client,
    pub options: &'a DownloadOptions,
    pub holder: &'a Holder,
    pub id: &'a ContentId,
    pub size: u64,
    pub start: u64,
    pub progress: &'a ProgressHandle,
}

pub(crate) struct Outcome {
    pub sink: Sink,
    /// Bytes verified and written in this attempt.
    pub verified: u64,
    /// Bytes received but not kept.
    pub discarded: u64,
    pub failure: Option<Failure>,
}

struct Job {
    buf: Vec<u8>,
    len: usize,
}

struct WorkerResult {
    sink: Sink,
    verified: u64,
    received: u64,
    failure: Option<Failure>,
}

impl Attempt<'_> {
    pub async fn run(self, sink: Sink) -> Outcome {
        let expected = self.size - self.start;
        let stall = self.options.stall_timeout;
        let request = self.client.get(self.holder.file_url(self.id));
        let request = if self.start == 0 {
            request
        } else {
            request.header(
                header::RANGE,
                format!("bytes={}-{}", self.start, self.size - 1),
            )
        };
        let response = match send(request, stall).await {
            Ok(response) => response,
            Err(fault) => return Outcome::early(sink, fault),
        };
        if let Err(fault) = check_range_response(&response, self.start, self.size) {
            return Outcome::early(sink, fault);
        }

        // Network → bounded pool of group-aligned buffers → verifier thread → disk.
        let buffers = self.options.buffers.max(1);
        let capacity = self.options.group_aligned_buffer();
        let (jobs, job_rx) = mpsc::channel::<Job>(buffers);
        let (free_tx, mut free) = mpsc::channel::<Vec<u8>>(buffers);
        let verifier = RangeVerifier::new(
            blake3::Hash::from(*self.id.as_bytes()),
            self.size,
            self.start,
        );
        let (holder, progress) = (self.holder.clone(), self.progress.clone());
        let worker = tokio::task::spawn_blocking(move || {
            verify_and_write(sink, verifier, job_rx, free_tx, &holder, &progress)
        });

        let mut response = response;
        let mut allocated = 0usize;
        let mut received = 0u64;
        let mut network_fault = None;
        let mut current: Option<Vec<u8>> = None;
        let mut filled = 0usize;
        'receive: loop {
            let chunk = match next_chunk(&mut response, stall).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    if received < expected {
                        network_fault = Some(HolderFault::ShortRead { received, expected });
                    }
                    break;
                }
                // The body broke off mid-way (reset, or closed before its length).
                Err(HolderFault::Timeout) => {
                    network_fault = Some(HolderFault::Timeout);
                    break;
                }
                Err(_) => {
                    network_fault = Some(HolderFault::ShortRead { received, expected });
                    break;
                }
            };
            if received + chunk.len() as u64 > expected {
                network_fault = Some(HolderFault::Protocol(
                    "more bytes than requested".to_owned(),
                ));
                break;
            }
            received += chunk.len() as u64;
            if let Some(limit) = &self.options.rate_limit {
                limit.acquire(chunk.len()).await;
            }
            if jobs.is_closed() {
                break; // the verifier stopped (bad bytes or a local error)
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let buf = match current.as_mut() {
                    Some(buf) => buf,
                    None => {
                        let buf = if let Ok(buf) = free.try_recv() {
                            buf
                        } else if allocated < buffers {
                            allocated += 1;
                            vec![0u8; capacity]
                        } else {
                            match free.recv().await {
                                Some(buf) => buf,
                                None => break 'receive,
                            }
                        };
                        filled = 0;
                        current.insert(buf)
                    }
                };
                let n = rest.len().min(capacity - filled);
                buf[filled..filled + n].copy_from_slice(&rest[..n]);
                filled += n;
                rest = &rest[n..];
                if filled == capacity {
                    let buf = current.take().expect("just filled");
                    if jobs.send(Job { buf, len: filled }).await.is_err() {
                        break 'receive;
                    }
                }
            }
        }
        if let Some(buf) = current.take()
            && filled > 0
        {
            let _ = jobs.send(Job { buf, len: filled }).await;
        }
        drop(jobs);
        drop(response);

        let result = match worker.await {
            Ok(result) => result,
            Err(e) => panic!("the verifier thread panicked: {e}"),
        };
        let finished = self.start + result.verified == self.size;
        let failure = match (result.failure, network_fault) {
            (Some(failure), _) => Some(failure),
            (None, _) if finished => None,
            (None, Some(fault)) => Some(Failure::Holder(fault)),
            (None, None) => Some(Failure::Holder(HolderFault::ShortRead {
                received: result.received,
                expected,
            })),
        };
        Outcome {
            sink: result.sink,
            verified: result.verified,
            discarded: received.saturating_sub(result.verified),
            failure,
        }
    }
}

impl Outcome {
    fn early(sink: Sink, fault: HolderFault) -> Self {
        Self {
            sink,
            verified: 0,
            discarded: 0,
            failure: Some(Failure::Holder(fault)),
        }
    }
}

/// Bytes hashed and written per step of the verifier thread. Slices this size stay in the
/// CPU cache between hashing and writing, and page-cache writes of 1 MiB and more were
/// measured several times slower per byte than 256 KiB ones (Linux 6.x, ext4).
const SLICE: usize = 256 * 1024;

/// The verifier thread: verifies each buffer slice by slice, writes each slice's verified
/// groups, and returns the buffer to the pool.
fn verify_and_write(
    mut sink: Sink,
    mut verifier: RangeVerifier,
    mut jobs: mpsc::Receiver<Job>,
    free: mpsc::Sender<Vec<u8>>,
    holder: &Holder,
    progress: &ProgressHandle,
) -> WorkerResult {
    let mut verified = 0u64;
    let mut received = 0u64;
    let mut failure = None;
    'jobs: while let Some(job) = jobs.blocking_recv() {
        received += job.len as u64;
        let mut job_verified = 0usize;
        // Slices are whole groups (SLICE is a multiple of the group size) except the last.
        for slice in job.buf[..job.len].chunks(SLICE) {
            let fed = verifier.feed(&sink.outboard, slice);
            if fed.verified > 0 {
                if let Err(e) = sink.data.write_all(&slice[..fed.verified]) {
                    failure = Some(local(&sink.paths.data, e));
                    break 'jobs;
                }
                sink.flusher.wrote(fed.verified as u64);
                job_verified += fed.verified;
                verified += fed.verified as u64;
                progress.verified(holder, fed.verified as u64);
            }
            if let Some(error) = fed.error {
                failure = Some(match error {
                    VerifyError::Corrupt { offset } => {
                        Failure::Holder(HolderFault::CorruptData { offset })
                    }
                    VerifyError::Outboard { offset } => local(
                        &sink.paths.outboard,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the saved outboard stopped validating at byte {offset}"),
                        ),
                    ),
                    VerifyError::Io(e) => local(&sink.paths.outboard, e),
                });
                break;
            }
            if fed.verified < slice.len() {
                break; // a cut-off final buffer: its incomplete last group is dropped
            }
        }
        if failure.is_some() || job_verified < job.len {
            break;
        }
        // The pool has room for every buffer, so this never fails for lack of space.
        let _ = free.try_send(job.buf);
    }
    WorkerResult {
        sink,
        verified,
        received,
        failure,
    }
}
