//! The partial download on disk: data, outboard and state files, resume and finalisation.
//!
//! All functions here block; the downloader calls them from blocking threads.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bao_tree::io::outboard::PreOrderOutboard;
use highway_wire::ContentId;
use serde::{Deserialize, Serialize};

use super::verify::{GROUP_BYTES, RangeVerifier, outboard_is_valid, outboard_len, tree};

/// Version of the state file format; a different version is treated as no state.
const STATE_VERSION: u32 = 1;

/// Chunk group log recorded in the state file, so a future change of group size cannot
/// misread an old outboard.
const CHUNK_GROUP_LOG: u8 = 4;

/// Where the pieces of one partial download live.
#[derive(Debug, Clone)]
pub(crate) struct PartPaths {
    pub dest: PathBuf,
    /// Verified data, a prefix of the file.
    pub data: PathBuf,
    /// The pre-order outboard, validated against the id.
    pub outboard: PathBuf,
    /// [`PartState`] as JSON.
    pub state: PathBuf,
}

impl PartPaths {
    /// Next to `dest` (`dest.part`, `dest.part.outboard`, `dest.part.state`), or in
    /// `part_dir` named by content id (`{id}.part`, ...). A `part_dir` must be on the same
    /// filesystem as `dest` for the final rename to be atomic.
    pub fn new(dest: &Path, part_dir: Option<&Path>, id: &ContentId) -> Self {
        let data = match part_dir {
            Some(dir) => dir.join(format!("{id}.part")),
            None => with_suffix(dest, ".part"),
        };
        Self {
            dest: dest.to_path_buf(),
            outboard: with_suffix(&data, ".outboard"),
            state: with_suffix(&data, ".state"),
            data,
        }
    }

    fn state_tmp(&self) -> PathBuf {
        with_suffix(&self.state, ".tmp")
    }

    /// Removes the outboard and state files (and a stray temporary state file).
    pub fn remove_metadata(&self) {
        for path in [&self.outboard, &self.state, &self.state_tmp()] {
            let _ = fs::remove_file(path);
        }
    }

    /// Removes everything, for a partial that belongs to another id.
    pub fn remove_all(&self) {
        self.remove_metadata();
        let _ = fs::remove_file(&self.data);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the state file records. Only `id`, `size` and the group size are relied on; the
/// data is re-verified on resume, so `verified` is advisory (for people and tools).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartState {
    pub version: u32,
    pub id: ContentId,
    pub size: u64,
    pub chunk_group_log: u8,
    pub verified: u64,
}

impl PartState {
    pub fn new(id: ContentId, size: u64, verified: u64) -> Self {
        Self {
            version: STATE_VERSION,
            id,
            size,
            chunk_group_log: CHUNK_GROUP_LOG,
            verified,
        }
    }
}

/// Writes the state atomically (temporary file, then rename).
pub(crate) fn write_state(paths: &PartPaths, state: &PartState) -> io::Result<()> {
    let tmp = paths.state_tmp();
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    fs::write(&tmp, json)?;
    fs::rename(&tmp, &paths.state)
}

/// An outboard file on disk, opened for positioned reads.
pub(crate) type DiskOutboard = PreOrderOutboard<File>;

/// Opens the outboard file for a file of `size` bytes with root `id`, if it has the right
/// length and every pair hashes up to `id`.
pub(crate) fn open_outboard(
    path: &Path,
    id: &ContentId,
    size: u64,
) -> io::Result<Option<DiskOutboard>> {
    let file = File::open(path)?;
    if file.metadata()?.len() != outboard_len(size) {
        return Ok(None);
    }
    let outboard = PreOrderOutboard {
        root: blake3::Hash::from(*id.as_bytes()),
        tree: tree(size),
        data: file,
    };
    Ok(outboard_is_valid(&outboard)?.then_some(outboard))
}

/// The size and outboard of a partial download of `id`, if there is a usable one.
///
/// A state file for another id, another format, or with an outboard that no longer
/// validates means the partial is useless; the caller removes it.
pub(crate) fn load_existing(
    paths: &PartPaths,
    id: &ContentId,
) -> io::Result<Option<(u64, DiskOutboard)>> {
    let json = match fs::read(&paths.state) {
        Ok(json) => json,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(state) = serde_json::from_slice::<PartState>(&json) else {
        return Ok(None);
    };
    if state.version != STATE_VERSION || state.chunk_group_log != CHUNK_GROUP_LOG || state.id != *id
    {
        return Ok(None);
    }
    match open_outboard(&paths.outboard, id, state.size) {
        Ok(Some(outboard)) => Ok(Some((state.size, outboard))),
        Ok(None) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Re-verifies the data file from the start and returns the length of its longest
/// verified prefix (whole groups, or the whole file), truncating anything after it.
///
/// This reads and hashes the partial once (about a second per GiB). It is done instead
/// of trusting the state file because the data may not have reached the disk before a
/// crash even though the state says it was verified, and because the partial directory is
/// as writable to other programs as the state file is.
pub(crate) fn verified_prefix(
    data_path: &Path,
    outboard: &DiskOutboard,
    size: u64,
    buffer: &mut [u8],
) -> io::Result<u64> {
    let mut file = match OpenOptions::new().read(true).write(true).open(data_path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let on_disk = file.metadata()?.len().min(size);
    let mut verifier = RangeVerifier::new(outboard.root, size, 0);
    let mut offset = 0u64;
    while offset < on_disk {
        let want = usize::try_from(on_disk - offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let chunk = &mut buffer[..want];
        file.read_exact(chunk)?;
        let fed = verifier.feed(outboard, chunk);
        offset += fed.verified as u64;
        if fed.error.is_some() || fed.verified < want {
            break;
        }
    }
    if file.metadata()?.len() != offset {
        file.set_len(offset)?;
    }
    debug_assert!(offset == size || offset.is_multiple_of(GROUP_BYTES));
    Ok(offset)
}

/// Opens (creating if needed) the data file for appending verified bytes at `offset`.
pub(crate) fn open_data_at(data_path: &Path, offset: u64) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_path)?;
    if file.metadata()?.len() != offset {
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

/// Makes the complete data durable and moves it to `dest`, then drops the metadata.
///
/// The rename is atomic, so `dest` is either absent or complete. With `overwrite` off,
/// an existing `dest` is left alone (checked just before the rename; the window between
/// check and rename is not closed).
pub(crate) fn finalize(paths: &PartPaths, data: File, overwrite: bool) -> io::Result<()> {
    data.sync_all()?;
    drop(data);
    if !overwrite && paths.dest.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the destination appeared during the download",
        ));
    }
    fs::rename(&paths.data, &paths.dest)?;
    // Make the rename durable. Directories cannot be opened for sync on every platform, so
    // a failure here is not an error.
    if let Some(dir) = paths.dest.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    paths.remove_metadata();
    Ok(())
}
