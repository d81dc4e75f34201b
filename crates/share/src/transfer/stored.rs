//! Outboards kept on disk, by content id: the indexer writes a file's outboard in the
//! pass that hashes it, so the first download from a holder is as fast as the later ones
//! (issue 12: the holder computed it on the first request, and the first download ran at
//! 0.37× nginx). The file server reads one back (checking it against the id, so a damaged
//! file is recomputed, never served), and saves the ones it had to compute.
//!
//! One file per content id: `DIR/<64 hex>.obao`, the pre-order outboard without its size
//! prefix, written beside and renamed into place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bao_tree::io::outboard::PreOrderMemOutboard;
use highway_wire::ContentId;

use super::verify::{SIZE_PREFIX_LEN, outboard_is_valid, outboard_len, tree};

/// The file name suffix of stored outboards.
const SUFFIX: &str = ".obao";

/// Where the outboard of `id` is kept in `dir`.
pub fn outboard_path(dir: &Path, id: &ContentId) -> PathBuf {
    dir.join(format!("{id}{SUFFIX}"))
}

/// Saves `outboard` (no size prefix) as the outboard of `id` in `dir` (created if
/// missing). An empty outboard (a file of one chunk group) is not worth a file.
pub fn save(dir: &Path, id: &ContentId, outboard: &[u8]) -> io::Result<()> {
    if outboard.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    let path = outboard_path(dir, id);
    let beside = path.with_extension(format!("new{}", std::process::id()));
    fs::write(&beside, outboard)?;
    fs::rename(&beside, &path).inspect_err(|_| {
        let _ = fs::remove_file(&beside);
    })
}

/// The outboard of `id` (a file of `size` bytes) stored at `path`, in its wire form (the
/// size prefix, then the outboard), when there is one of the right length whose tree
/// hashes to `id`; `None` otherwise.
pub fn load_encoded(path: &Path, id: &ContentId, size: u64) -> io::Result<Option<Vec<u8>>> {
    let expected = outboard_len(size);
    match fs::metadata(path) {
        Ok(meta) if meta.len() == expected => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let data = fs::read(path)?;
    if data.len() as u64 != expected {
        return Ok(None);
    }
    let outboard = PreOrderMemOutboard {
        root: blake3::Hash::from(*id.as_bytes()),
        tree: tree(size),
        data,
    };
    if !outboard_is_valid(&outboard)? {
        return Ok(None);
    }
    let mut encoded = Vec::with_capacity(SIZE_PREFIX_LEN + outboard.data.len());
    encoded.extend_from_slice(&size.to_le_bytes());
    encoded.extend_from_slice(&outboard.data);
    Ok(Some(encoded))
}

/// Removes the stored outboards in `dir` whose id `keep` says no longer: those of files
/// that left the share. Returns how many went.
pub fn remove_unless(dir: &Path, keep: impl Fn(&ContentId) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|hex| hex.parse::<ContentId>().ok())
        else {
            continue;
        };
        if !keep(&id) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::verify::compute_outboard;

    #[test]
    fn a_saved_outboard_loads_back_and_a_damaged_or_foreign_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let computed = compute_outboard(&data[..], data.len() as u64).unwrap();
        let id = ContentId::from(computed.root);
        save(dir.path(), &id, &computed.outboard).unwrap();
        let path = outboard_path(dir.path(), &id);
        let size = data.len() as u64;
        assert_eq!(
            load_encoded(&path, &id, size).unwrap().unwrap(),
            computed.encode()
        );
        // Another id, another size, a flipped byte: not this file's outboard.
        let other = ContentId::of(b"other");
        assert!(load_encoded(&path, &other, size).unwrap().is_none());
        // (A size within the same last group has the same tree: the size is proven by
        // the data, the server takes it from its index.)
        assert!(load_encoded(&path, &id, size + 100_000).unwrap().is_none());
        let mut damaged = computed.outboard.clone();
        damaged[10] ^= 1;
        fs::write(&path, &damaged).unwrap();
        assert!(load_encoded(&path, &id, size).unwrap().is_none());
        // Missing: none, no error.
        fs::remove_file(&path).unwrap();
        assert!(load_encoded(&path, &id, size).unwrap().is_none());

        save(dir.path(), &id, &computed.outboard).unwrap();
        save(dir.path(), &other, &computed.outboard).unwrap();
        fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        assert_eq!(remove_unless(dir.path(), |k| *k == id), 1);
        assert!(path.exists() && dir.path().join("unrelated.txt").exists());
        // A one-group file has an empty outboard: nothing is written.
        save(dir.path(), &other, &[]).unwrap();
        assert!(!outboard_path(dir.path(), &other).exists());
    }
}
