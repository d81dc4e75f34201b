//! The node's persistent identity: an ed25519 key whose public half is its NodeId.
//!
//! `DATA_DIR/identity.key` holds the 32-byte secret seed as 64 hex characters and a
//! newline (32 raw bytes are accepted too). It is created with mode 0600 on first start
//! and reused afterwards, so a restarted node keeps its id.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::NodeError;

/// File name of the key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// File a running node holds locked inside its data directory (it names its process).
pub const LOCK_FILE: &str = "lock";

/// The data directory's lock, held while the node runs (released when dropped, or when
/// the process ends however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Creates `data_dir` if needed, locks it for this process and reads (or creates) the
/// key. Two nodes on one data directory would be one identity twice: the Gatekeeper
/// would list one and the other would run unseen. Blocking: call it from
/// `spawn_blocking`.
pub fn open(data_dir: &Path) -> Result<(SigningKey, DataDirLock), NodeError> {
    create_private_dir(data_dir).map_err(|error| NodeError::Identity {
        path: data_dir.to_path_buf(),
        error,
    })?;
    let lock = lock(data_dir)?;
    Ok((load_or_create(data_dir)?, lock))
}

fn lock(data_dir: &Path) -> Result<DataDirLock, NodeError> {
    let path = data_dir.join(LOCK_FILE);
    let io_err = |error| NodeError::Identity {
        path: path.clone(),
        error,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            return Err(NodeError::DataDirInUse {
                dir: data_dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(io_err(error)),
    }
    // Who holds it, for the message another node on this folder gets.
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_err)?;
    Ok(DataDirLock { _file: file })
}

/// Reads the key in `data_dir`, or creates the directory and a fresh key. Blocking: call
/// it from `spawn_blocking`.
pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, NodeError> {
    let path = data_dir.join(IDENTITY_FILE);
    let io_err = |path: &PathBuf| {
        let path = path.clone();
        move |error| NodeError::Identity { path, error }
    };
    create_private_dir(data_dir).map_err(io_err(&data_dir.to_path_buf()))?;
    match read_key(&path) {
        Ok(Some(key)) => return Ok(key),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| NodeError::Identity {
        path: path.clone(),
        error: std::io::Error::other(format!("no OS randomness: {e}")),
    })?;
    match create_private_file(&path) {
        Ok(mut file) => {
            let text = format!("{}\n", hex::encode(seed));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(&path)?.ok_or_else(|| NodeError::BadIdentity {
                path,
                reason: "the file vanished while it was being created".into(),
            })
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The key in `path`, or `None` when there is no such file.
fn read_key(path: &Path) -> Result<Option<SigningKey>, NodeError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(NodeError::Identity {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    warn_if_readable_by_others(path);
    parse_seed(&bytes)
        .map(|seed| Some(SigningKey::from_bytes(&seed)))
        .map_err(|reason| NodeError::BadIdentity {
            path: path.to_path_buf(),
            reason,
        })
}

fn parse_seed(bytes: &[u8]) -> Result<[u8; 32], String> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        // 32 bytes that are not all hex digits: the raw form.
        if !raw.iter().all(u8::is_ascii_hexdigit) {
            return Ok(raw);
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "neither 64 hex characters nor 32 raw bytes".to_string())?
        .trim();
    let decoded = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
        format!(
            "expected a 32-byte seed (64 hex characters), found {} bytes",
            decoded.len()
        )
    })
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the identity key is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        let first = load_or_create(&data).unwrap();
        let second = load_or_create(&data).unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        let text = std::fs::read_to_string(data.join(IDENTITY_FILE)).unwrap();
        assert_eq!(text.trim(), hex::encode(first.to_bytes()));
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn hex_and_raw_seeds_are_read_and_garbage_is_refused() {
        let seed = [7u8; 32];
        assert_eq!(parse_seed(hex::encode(seed).as_bytes()), Ok(seed));
        assert_eq!(
            parse_seed(format!("  {}\r\n", hex::encode(seed)).as_bytes()),
            Ok(seed)
        );
        assert_eq!(parse_seed(&seed), Ok(seed));
        assert!(parse_seed(b"abcd").is_err());
        assert!(parse_seed(b"not a key at all").is_err());
        assert!(parse_seed(&[0xff; 40]).is_err());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "zz").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(NodeError::BadIdentity { .. })
        ));
    }
}
