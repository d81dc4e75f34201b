//! The shared folder and the bytes that leave it or arrive into it.
//!
//! Knows nothing about the overlay: it turns a directory into an index of files addressed
//! by BLAKE3 content hash and searchable by keyword, summarises that index for neighbours,
//! serves indexed files, and downloads files with every chunk verified against the hash.

pub mod folder;
pub mod hashcache;
pub mod index;
pub mod scan;
mod sync;
pub mod transfer;
pub mod watch;
mod watches;

pub use folder::{LocatedFile, Share, ShareError, ShareOptions, ShareStats};
/// The keyword summary and tokenizer are wire formats (peers must agree on them), so they
/// live in `highway-wire`; re-exported here where the share builds them.
pub use highway_wire::{summary, tokenize};
pub use index::SharedFile;
pub use scan::{ScanPhase, ScanProgress, Skipped};
pub use summary::{Summary, SummaryAssembler};
