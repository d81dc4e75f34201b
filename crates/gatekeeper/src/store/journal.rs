//! The embedded store's durability: an append-only file of JSON lines, one per change to
//! a registration, compacted into a snapshot of the live entries (and tombstones) when it grows.
//!
//! Each append is written through to the operating system before the request is answered,
//! so a killed Gatekeeper loses nothing; the file is fsynced on every sweep, bounding what
//! a power loss can take. Heartbeat-only statuses (nothing but the deadline changes) are not
//! journaled: after a restart every restored entry gets a fresh deadline instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use highway_wire::NodeId;
use highway_wire::gatekeeper::PeerInfo;
use serde::{Deserialize, Serialize};

/// Compaction never runs below this many lines.
const COMPACT_MIN_LINES: u64 = 10_000;
/// Longest line accepted when reading the journal back (a registration is far smaller).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// What the journal remembers of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPeer {
    pub info: PeerInfo,
    pub neighbour_ids: Vec<NodeId>,
    #[serde(with = "hex::serde")]
    pub lease_hash: [u8; 32],
    pub lease_expires_ms: u64,
    pub last_signed_ts_ms: u64,
    /// The network the registration came from (absent in journals written before it was
    /// recorded: such entries count toward no network).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalRecord {
    Put(StoredPeer),
    Del { id: NodeId, last_signed_ts_ms: u64 },
}

/// Why the journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "journal {path} line {line} is corrupt ({reason}); move the file aside to start empty, \
         or repair that line"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: BufWriter<File>,
    lines: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and returns its records in order.
    /// A last line cut short by a crash is dropped; any other bad line is an error.
    pub fn open(path: &Path) -> Result<(Self, Vec<JournalRecord>), JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let records = match File::open(path) {
            Ok(file) => read_records(path, file)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(e)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        let journal = Self {
            path: path.to_owned(),
            file: BufWriter::new(file),
            lines: records.len() as u64,
        };
        Ok((journal, records))
    }

    /// Writes one record through to the operating system.
    pub fn append(&mut self, record: &JournalRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()?;
        self.lines += 1;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }

    /// True when the file holds many more lines than there are live entries.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > COMPACT_MIN_LINES.max(live as u64 * 2)
    }

    /// Replaces the file with one `del` per tombstone (`removed`: id and last signed
    /// timestamp, so a removed peer's old signatures stay refused after a restart) followed
    /// by one `put` per live entry, atomically (write, fsync, rename).
    pub fn compact<'a>(
        &mut self,
        live: impl Iterator<Item = &'a StoredPeer>,
        removed: impl Iterator<Item = (NodeId, u64)>,
    ) -> io::Result<()> {
        let tmp = self.path.with_extension("compacting");
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut lines = 0;
        for (id, last_signed_ts_ms) in removed {
            let record = JournalRecord::Del {
                id,
                last_signed_ts_ms,
            };
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
            lines += 1;
        }
        for peer in live {
            serde_json::to_writer(&mut out, &JournalRecord::Put(peer.clone()))?;
            out.write_all(b"\n")?;
            lines += 1;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        fs::rename(&tmp, &self.path)?;
        // The rename itself must reach the disk too, or a power loss could bring back
        // the long journal (harmless) or neither file (not harmless).
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.file = BufWriter::new(file);
        self.lines = lines;
        Ok(())
    }
}

fn read_records(path: &Path, file: File) -> Result<Vec<JournalRecord>, JournalError> {
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok(records);
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() <= MAX_LINE_BYTES {
            // The process died mid-append: that change was never acknowledged.
            tracing::warn!(path = %path.display(), line = line_no, "dropping a cut-short last journal line");
            return Ok(records);
        }
        let record = serde_json::from_slice(&buf).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            line: line_no,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use highway_wire::PeerAddr;

    fn peer(seed: u8) -> StoredPeer {
        let id = NodeId::from_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key());
        StoredPeer {
            info: PeerInfo {
                id,
                addrs: vec![PeerAddr::new("127.0.0.1".parse().unwrap(), 1, 2)],
                neighbours: 0,
                capacity: 5,
                reachable: true,
            },
            neighbour_ids: vec![],
            lease_hash: [seed; 32],
            lease_expires_ms: 10,
            last_signed_ts_ms: 5,
            prefix: String::new(),
        }
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gk.journal");
        let (mut j, records) = Journal::open(&path).unwrap();
        assert!(records.is_empty());
        j.append(&JournalRecord::Put(peer(1))).unwrap();
        j.append(&JournalRecord::Del {
            id: peer(1).info.id,
            last_signed_ts_ms: 9,
        })
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"put\":{\"inf").unwrap();
        drop(f);
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], JournalRecord::Put(peer(1)));
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gk.journal");
        fs::write(&path, "not json\n{}\n").unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gk.journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        for seed in 1..=5 {
            j.append(&JournalRecord::Put(peer(seed))).unwrap();
        }
        let live = [peer(2)];
        j.compact(live.iter(), std::iter::empty()).unwrap();
        j.append(&JournalRecord::Put(peer(3))).unwrap();
        drop(j);
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(
            records,
            vec![JournalRecord::Put(peer(2)), JournalRecord::Put(peer(3))]
        );
    }
}
