//! What can go wrong in a download, and what it did to the partial file.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::download::Holder;

/// Why one holder was dropped (for now or for good) during a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderFault {
    /// Connecting or talking to the holder failed (reset, DNS, TLS...).
    Unreachable(String),
    /// The holder's machine refused the connection: nothing listens there any more.
    Refused,
    /// No response or no bytes for longer than the stall timeout.
    Timeout,
    /// The holder answered `503`: all its transfer slots are busy.
    Busy,
    /// The holder does not have the file (`404`).
    NotFound,
    /// Another unexpected HTTP status.
    Status(u16),
    /// The response broke the protocol (wrong `Content-Range`, wrong length, bad outboard
    /// framing, more bytes than announced).
    Protocol(String),
    /// The holder's size differs from the size the caller expected or already verified.
    SizeMismatch { expected: u64, declared: u64 },
    /// The holder declared a size above [`DownloadOptions::max_size`](super::DownloadOptions).
    TooLarge { declared: u64, max: u64 },
    /// The outboard does not hash to the content id.
    BadOutboard,
    /// The final chunk group did not verify, so the declared size is unproven (a lie or
    /// corrupt data).
    SizeUnproven { declared: u64 },
    /// The chunk group starting at `offset` did not match the content hash.
    CorruptData { offset: u64 },
    /// The body ended after `received` of the `expected` bytes.
    ShortRead { received: u64, expected: u64 },
}

impl HolderFault {
    /// True for faults that prove the holder wrong or useless for this file; such a holder
    /// is never asked again in the same download. The others may be transient and are
    /// retried up to [`DownloadOptions::max_failures_per_holder`](super::DownloadOptions).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::NotFound
                | Self::Refused
                | Self::Protocol(_)
                | Self::SizeMismatch { .. }
                | Self::TooLarge { .. }
                | Self::BadOutboard
                | Self::SizeUnproven { .. }
                | Self::CorruptData { .. }
        ) || matches!(self, Self::Status(code) if (400..500).contains(code))
    }

    /// True when the holder sent bytes that failed verification.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::BadOutboard | Self::SizeUnproven { .. } | Self::CorruptData { .. }
        )
    }
}

impl fmt::Display for HolderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "unreachable: {e}"),
            Self::Refused => f.write_str("refused the connection (nothing listens there)"),
            Self::Timeout => f.write_str("timed out"),
            Self::Busy => f.write_str("busy (503)"),
            Self::NotFound => f.write_str("does not have the file (404)"),
            Self::Status(code) => write!(f, "unexpected HTTP status {code}"),
            Self::Protocol(e) => write!(f, "protocol violation: {e}"),
            Self::SizeMismatch { expected, declared } => {
                write!(f, "declared size {declared}, expected {expected}")
            }
            Self::TooLarge { declared, max } => {
                write!(f, "declared size {declared} exceeds the limit {max}")
            }
            Self::BadOutboard => f.write_str("outboard does not match the content hash"),
            Self::SizeUnproven { declared } => {
                write!(
                    f,
                    "final chunk group does not verify for declared size {declared}"
                )
            }
            Self::CorruptData { offset } => {
                write!(f, "sent corrupt data in the chunk group at byte {offset}")
            }
            Self::ShortRead { received, expected } => {
                write!(f, "body ended after {received} of {expected} bytes")
            }
        }
    }
}

/// A holder and what went wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderFailure {
    pub holder: Holder,
    pub fault: HolderFault,
}

impl fmt::Display for HolderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.holder, self.fault)
    }
}

/// Why a download did not finish. Each variant says what happened to the partial file.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The request named no holder. Nothing was fetched or written.
    #[error("no holders to download from; nothing was fetched or written")]
    NoHolders,
    /// The destination exists and overwriting was not allowed. Nothing was fetched.
    #[error("{} already exists; nothing was fetched", .0.display())]
    DestinationExists(PathBuf),
    /// The caller's expected size is above the configured limit. Nothing was fetched.
    #[error("size {size} exceeds the limit of {max} bytes; nothing was fetched")]
    TooLarge { size: u64, max: u64 },
    /// The partial download of this id already proved its size against the content hash,
    /// and it is not the size the caller expected. The partial is kept as it was.
    #[error("the content hash proves a size of {proven} bytes, not {expected}; partial kept")]
    WrongExpectedSize { expected: u64, proven: u64 },
    /// Every holder failed. The verified prefix stays in `part` (with its outboard and state
    /// files when the size is known), so a later download of the same id to the same
    /// destination resumes from it.
    #[error(
        "every holder failed with {verified} bytes verified; kept in {} for a resume: {}",
        part.display(),
        list(failures)
    )]
    HoldersExhausted {
        verified: u64,
        size: Option<u64>,
        part: PathBuf,
        failures: Vec<HolderFailure>,
    },
    /// Reading or writing a local file failed. The verified prefix written so far stays in
    /// the partial file and is found again by the next attempt's re-verification.
    #[error("local file {}: {source}; verified data so far stays in the partial file", path.display())]
    LocalIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is complete and verified in `part`, but moving it to `dest` failed (e.g. the
    /// partial directory is on another filesystem). Retrying finishes without refetching.
    #[error(
        "complete and verified in {}, but moving it to {} failed: {source}",
        part.display(),
        dest.display()
    )]
    Finalize {
        part: PathBuf,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The HTTP client could not be built. Nothing was fetched or written.
    #[error("HTTP client setup failed: {0}; nothing was fetched or written")]
    Client(String),
}

impl TransferError {
    /// Holders caught sending bytes that failed verification before the download gave up:
    /// the user must learn of them also when one of them was the only holder.
    pub fn corrupt_holders(&self) -> impl Iterator<Item = &Holder> {
        let failures = match self {
            Self::HoldersExhausted { failures, .. } => failures.as_slice(),
            _ => &[],
        };
        failures
            .iter()
            .filter(|f| f.fault.is_corruption())
            .map(|f| &f.holder)
    }
}

/// The faults, one entry per holder and fault (`HOLDER: FAULT (3 times)`), in the order
/// they first happened: a holder retried is named once, not once per try (issue 13).
fn list(failures: &[HolderFailure]) -> String {
    if failures.is_empty() {
        return "no holder was usable".to_owned();
    }
    let mut counted: Vec<(&HolderFailure, usize)> = Vec::new();
    for failure in failures {
        match counted.iter_mut().find(|(seen, _)| *seen == failure) {
            Some((_, n)) => *n += 1,
            None => counted.push((failure, 1)),
        }
    }
    counted
        .iter()
        .map(|(failure, n)| match n {
            1 => failure.to_string(),
            n => format!("{failure} ({n} times)"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_retried_is_named_once_with_how_often_it_failed() {
        let a = Holder::from(std::net::SocketAddr::from(([127, 0, 0, 2], 80)));
        let b = Holder::from(std::net::SocketAddr::from(([127, 0, 0, 3], 80)));
        let failure = |holder: &Holder, fault: HolderFault| HolderFailure {
            holder: holder.clone(),
            fault,
        };
        let text = list(&[
            failure(&a, HolderFault::Timeout),
            failure(&b, HolderFault::Busy),
            failure(&a, HolderFault::Timeout),
            failure(&a, HolderFault::Timeout),
            failure(&a, HolderFault::Refused),
        ]);
        assert_eq!(text.matches("127.0.0.2").count(), 2, "{text}");
        assert!(text.contains("timed out (3 times)"), "{text}");
        assert!(text.contains("busy (503)"), "{text}");
        assert!(
            !text.contains("refused the connection (nothing listens there) ("),
            "{text}"
        );
    }
}
