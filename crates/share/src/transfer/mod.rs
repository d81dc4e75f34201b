//! Serving files to other peers and downloading them with every byte verified.
//!
//! Goals: a peer serves exactly the files its index names, by content hash, to anyone who
//! speaks HTTP/1.1 (`curl` included); a downloader accepts a byte only after checking it
//! against the content hash, survives interruptions without refetching what it has, and
//! moves on from a holder that fails or lies. Memory stays flat however large the file.
//!
//! Non-goals: finding holders (the overlay's search does that), encryption or
//! authentication of the transfer (the content hash makes tampering detectable, which is
//! all a public file needs), fetching from several holders at once.
//!
//! # Protocol
//!
//! Plain HTTP/1.1 on the peer's transfer port:
//!
//! - `GET|HEAD /v1/files/{id}` — the file whose BLAKE3 hash is `id` (64 hex characters).
//!   `200` with the whole file, or `206` for one `Range: bytes=a-b`, `a-` or `-n`.
//!   An unsatisfiable range and a request for several ranges (`bytes=0-1,5-6`) are both
//!   answered `416` with `Content-Range: bytes */{size}`: multipart responses are not
//!   worth their complexity here. A `Range` in another unit is ignored (`200`), as RFC 9110
//!   asks. Headers: `Content-Length`, `Accept-Ranges: bytes`, `ETag: "{id}"`,
//!   `Content-Type: application/octet-stream`, an immutable `Cache-Control`.
//! - `GET|HEAD /v1/outboard/{id}` — the file's size as a little-endian `u64`, followed by
//!   its pre-order bao outboard (see below): exactly `8 + outboard_len(size)` bytes.
//! - Anything that is not 64 hex characters is `400`; an id the index does not hold is
//!   `404`, as is a hit whose file escapes the root, is not a regular file or changed size
//!   since it was indexed. Bodies never name a path. `503` with `Retry-After` when every
//!   transfer slot is busy.
//! - Connections are bounded by the shared serving layer ([`highway_serve`]): a
//!   connection over the total or per-source cap gets `503` and is closed at once, and one
//!   whose request headers do not arrive within the header deadline is closed.
//!
//! A download, step by step:
//!
//! 1. If `dest.part.state` names the same id, reuse `dest.part.outboard` after checking it
//!    against the id again, and re-verify the data in `dest.part` to find the verified
//!    prefix (see [`download`] for why it re-verifies rather than trusting the state file).
//! 2. Otherwise ask the holders in turn for the outboard until one gives an outboard whose
//!    tree hashes to the id *and* a final chunk group that verifies against it (this
//!    proves the declared size, see below).
//! 3. Ask the current holder for `Range: bytes={verified}-{size-1}`, stream the body
//!    through a bounded pool of buffers, verify every 16 KiB chunk group against the
//!    outboard, and only then write it and advance the verified prefix.
//! 4. On a transport error, a stall, a short body, a protocol violation or a chunk group
//!    that fails to verify, record the fault against the holder and continue from the
//!    verified prefix with the next holder. A holder that sent bad bytes, a bad outboard or
//!    a wrong size is never asked again; one that merely failed is retried a bounded
//!    number of times.
//! 5. When the prefix reaches the size: fsync, rename `dest.part` to `dest`, fsync the
//!    directory, delete the outboard and state files. (The data file is flushed in the
//!    background every 32 MiB during the download, so the final fsync is short.)
//!
//! # Verification scheme
//!
//! The content id is the plain BLAKE3 hash of the file. BLAKE3 is itself a binary Merkle
//! tree over 1 KiB chunks, so any aligned piece of a file can be checked against the root
//! given the chaining values of its siblings on the path to the root. The
//! [bao-tree](bao_tree) crate stores those chaining values in an *outboard*:
//!
//! - Chunk group size: 16 chunks = 16 KiB ([`BLOCK_SIZE`], `BlockSize::from_chunk_log(4)`).
//!   The tree below a group is not stored, so a group is the unit of verification.
//! - The outboard is the sequence of `(left, right)` chaining-value pairs of every tree
//!   node above the group level, in pre-order, 64 bytes each, without a size prefix:
//!   `(groups - 1) * 64` bytes, about `size / 256`.
//! - A group's chaining value is BLAKE3 over its bytes with the chunk counter starting at
//!   its first chunk and the non-root finalisation; the root is BLAKE3's root
//!   finalisation of the top pair (or of the data, for a file of one group). So the root
//!   of a valid outboard equals the content id, which is what binds it to the id.
//! - The size is bound because it fixes the tree's shape and, above all, the length and
//!   position of the final group: BLAKE3 hashes each chunk's length and counter, so a
//!   holder that declares another size cannot make the final group verify. The
//!   downloader therefore checks the final group from the same holder before trusting a
//!   declared size (step 2); a lying holder is caught before any honest holder could be
//!   blamed for bytes that cannot match.
//! - While downloading, each pair loaded from the outboard is checked against its parent
//!   (from the root down) and each group's chaining value against its pair entry, using
//!   bao-tree's own traversal ([`bao_tree::iter::ResponseIter`]) so the tree geometry
//!   (odd group counts, the short final group, one-group files) is the library's.
//!
//! The downloader keeps the outboard on disk next to the partial file and reads the pairs
//! it needs with positioned reads, so its memory is the buffer pool (default 4 × 1 MiB)
//! whatever the file size. The indexer makes each file's outboard in the pass that hashes
//! it and keeps it in the data directory (`stored.rs`); the server reads it from there
//! (checked against the id), makes one itself only when none is kept (one sequential read
//! and hash of the file, then kept too), and holds recent ones in a byte-bounded LRU.

mod cache;
mod download;
mod error;
mod fetch;
mod partial;
mod range;
mod rate;
mod server;
pub(crate) mod stored;
mod verify;

pub use download::{
    DownloadOptions, DownloadReport, DownloadRequest, Downloader, Holder, HolderUsage, Progress,
    download,
};
pub use error::{HolderFailure, HolderFault, TransferError};
pub use rate::{MIN_RATE, RateLimit};
pub use server::{FileServer, FileSource, ServedFile, ServerConfig, ServerCounters};
pub use verify::{
    BLOCK_SIZE, ComputedOutboard, GROUP_BYTES, SIZE_PREFIX_LEN, compute_outboard, outboard_len,
};
