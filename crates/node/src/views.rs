//! The JSON of the control API's search, download and share endpoints (docs/PROTOCOL.md,
//! "Node control API"). Scripts rely on these field names; add fields, never rename.
//!
//! - `POST /v1/search` [`SearchRequest`] → 202 [`SearchStarted`]
//! - `GET /v1/search/{id}?after=N&wait_ms=M` → [`SearchPage`]: hits from index `N` on,
//!   waiting up to `M` ms (≤ 10,000) for a new hit or the end when there is none yet
//! - `GET /v1/searches` → array of [`SearchPage`] without hits (the recent searches)
//! - `POST /v1/downloads` [`DownloadRequest`] → 202 [`DownloadView`]
//! - `GET /v1/downloads` → array of [`DownloadView`]; `GET /v1/downloads/{id}` → one
//! - `GET /v1/files` → [`FilesView`]
//! - `POST /v1/share` [`ShareRequest`] → [`FilesView`] (start sharing a folder, or switch)
//! - `DELETE /v1/share` → [`FilesView`] (stop sharing)
//! - `POST /v1/rescan` → [`FilesView`] (walk the share again now)

use std::net::SocketAddr;
use std::path::PathBuf;

use highway_wire::{ContentId, NodeId};
use serde::{Deserialize, Serialize};

/// `POST /v1/search`. Exactly one of `query` (keywords) and `hash` (a content hash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchRequest {
    /// Keywords; a file matches when its name holds every one (prefixes of 3+ characters
    /// match, case and accents ignored).
    pub query: Option<String>,
    /// A content hash (64 hex characters): find who holds exactly this file.
    pub hash: Option<ContentId>,
    /// Hops the query may travel (1..=7; default 4).
    pub ttl: Option<u8>,
    /// When the search ends at the latest (default from the node's configuration).
    pub timeout_ms: Option<u64>,
    /// Most hits kept (1..=1000; default 200).
    pub max_results: Option<u32>,
}

/// 202 answer to `POST /v1/search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchStarted {
    /// The search's id: 32 hex characters (also the query id on the wire).
    pub search: String,
}

/// One search hit: a file some peer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitJson {
    /// The file's name (its path relative to the holder's share root, `/`-separated).
    pub name: String,
    pub size: u64,
    /// BLAKE3 content hash, 64 hex characters.
    pub hash: ContentId,
    /// The holder's NodeId.
    pub holder: NodeId,
    /// The holder's file server: `curl http://ADDR/v1/files/HASH` fetches the file
    /// (when `dialable`).
    pub addr: SocketAddr,
    /// Overlay hops between the searcher and the holder (0: the searching node itself).
    pub hops: u8,
    /// When the hit arrived, in ms after the search started.
    pub at_ms: u64,
    /// The holder's file server can be dialled. False behind a NAT: fetch through one of
    /// `relays` (`curl http://RELAY/v1/relay/HOLDER/v1/files/HASH`).
    #[serde(default = "yes")]
    pub dialable: bool,
    /// Dialable neighbours of a holder behind a NAT that relay for it.
    #[serde(default)]
    pub relays: Vec<RelayJson>,
}

fn yes() -> bool {
    true
}

/// A relay a hit names: its id, and the TCP address its relay endpoint listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayJson {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// How a download reaches one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceJson {
    /// The base URL fetched (`.../v1/files/HASH` is appended).
    pub url: String,
    /// `direct`, `pushed via <relay id>` (the holder connected to us on the relay's word)
    /// or `relayed via <relay id>`.
    pub path: String,
    /// Verified file bytes it delivered (known once the download is done).
    #[serde(default)]
    pub bytes: u64,
}

/// `GET /v1/search/{id}`: a search's state and the hits from `after` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPage {
    pub search: String,
    /// The keywords, or `hash:<hex>` for a hash search.
    pub query: String,
    /// True once every branch answered or the timeout passed; no hits follow.
    pub done: bool,
    /// Hits with index `after`, `after + 1`, ...
    pub hits: Vec<HitJson>,
    /// Total hits so far: pass it as `after` to get only newer ones.
    pub next: usize,
    /// Time since the search started (or its length, once done).
    pub elapsed_ms: u64,
    /// Time to the first hit, once there is one.
    pub first_hit_ms: Option<u64>,
}

/// `POST /v1/downloads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub hash: ContentId,
    /// Where the file goes: an absolute path on the node's machine, or relative to the
    /// node's download directory. A file path must not exist yet (a `.part` beside it
    /// resumes). A folder, or nothing (the download directory), means "into that folder"
    /// under the file's own name, with ` (1)`-style names when it is taken.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// The file's name, for a folder `out` (a hit's `name`; only its last part is used).
    /// Without it the name comes from the hits found, else the content hash.
    #[serde(default)]
    pub name: Option<String>,
    /// File servers known to hold it (from hits). Empty: the node searches by hash.
    #[serde(default)]
    pub holders: Vec<SocketAddr>,
    /// The size the hits announced, if known (the first verified group proves it anyway).
    #[serde(default)]
    pub size: Option<u64>,
}

/// A download's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadView {
    /// Small integer, unique per node run.
    pub id: u64,
    pub hash: ContentId,
    /// The final path (the folder while a download into a folder is still searching for
    /// the file's name).
    pub out: PathBuf,
    /// `queued` (waiting for one of the 16 running slots), `searching` (looking for
    /// holders), `running`, `paused`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Total size, once known.
    pub size: Option<u64>,
    /// Verified bytes written so far (including what a resumed `.part` had).
    pub done_bytes: u64,
    /// Bytes that came from an earlier, interrupted attempt.
    pub resumed_bytes: u64,
    /// Current rate over the last few seconds, bytes per second.
    pub rate_bps: u64,
    /// Estimated time left, when the rate allows a guess.
    pub eta_ms: Option<u64>,
    /// Holders known, and those caught serving bytes that failed verification.
    pub holders: Vec<SocketAddr>,
    pub corrupt_holders: Vec<SocketAddr>,
    /// How each holder is reached (direct, pushed or relayed).
    #[serde(default)]
    pub sources: Vec<SourceJson>,
    /// Every fault met, in order, as `"URL: what went wrong"` (a holder that refused, timed
    /// out, or sent bad bytes or a bad outboard); retried faults included.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// `POST /v1/share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequest {
    /// The folder to share (absolute, or relative to the node's working directory).
    pub root: PathBuf,
}

/// One shared file in [`FilesView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileJson {
    /// Path relative to the share root, `/`-separated.
    pub path: String,
    /// The last component of `path`, the name hits show.
    pub name: String,
    pub size: u64,
    pub hash: ContentId,
}

/// `GET /v1/files`: the share and its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesView {
    /// The shared folder; `null` when nothing is shared.
    pub root: Option<PathBuf>,
    /// True while the first walk (or a rescan) is still hashing.
    pub scanning: bool,
    /// The current (or last) walk: files and bytes found, and how many are done
    /// (hashed, or known from the hash cache).
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// The version of the keyword summary neighbours see.
    pub summary_version: u64,
    /// Where this node's file server listens.
    pub file_server: SocketAddr,
    /// The indexed files (at most 10,000, sorted by name).
    pub files: Vec<FileJson>,
    /// Total indexed files (may exceed `files.len()`).
    pub total_files: u64,
    /// What is not shared or not watched, and why: folders and files the node cannot
    /// read, folders it cannot watch (changes there wait for the periodic rescan).
    #[serde(default)]
    pub skipped: Vec<SkippedJson>,
}

/// A path of the share that is skipped, in [`FilesView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedJson {
    /// Relative to the share root, `/`-separated (empty: the root itself).
    pub path: String,
    pub reason: String,
}

/// `POST /v1/tickets`: tickets for a shared file, or for every file under a folder of
/// the share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// A file or folder inside the shared folder (absolute, or relative to the node's
    /// working directory).
    pub path: PathBuf,
}

/// One ticket in the answer to `POST /v1/tickets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketJson {
    /// `hw1...`: what `highway get` takes.
    pub ticket: String,
    /// `highway://hw1...`, the same as a link.
    pub link: String,
    /// The file's path within the share.
    pub name: String,
    pub size: u64,
    pub hash: ContentId,
}
