//! The control API's bearer token: 32 random bytes (64 hex characters), made fresh each
//! time a node starts and written to a file only the node's OS user can read, so that
//! user's `highway` commands find it with no flags while other local users cannot.
//!
//! Where: `$XDG_RUNTIME_DIR/highway/` when that variable names an absolute path, else
//! `$HOME/.local/state/highway/`; the file is `control-<ip>-<port>.token`, keyed by the
//! control address so several nodes of one user do not clash. The folder is made (or
//! reset to) mode 0700, the file is created with mode 0600 (never readable by others, not
//! even for a moment) and renamed into place, then removed when the node stops.
//!
//! A fresh token per start (rather than reusing the one on disk) means a token copied
//! somewhere dies with the process that made it; the CLI reads the file on every call,
//! so restarts need nothing from the user.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable the CLI reads a token (or a token file's path) from.
pub const TOKEN_ENV: &str = "HIGHWAY_TOKEN";
/// Token length in bytes before hex encoding.
const TOKEN_BYTES: usize = 32;

/// The folder this OS user's token files live in, from this process's environment:
/// `$XDG_RUNTIME_DIR/highway`, else `$HOME/.local/state/highway`. `None` when neither
/// variable names an absolute path.
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(runtime) = absolute("XDG_RUNTIME_DIR") {
        return Some(runtime.join("highway"));
    }
    absolute("HOME").map(|home| home.join(".local/state/highway"))
}

/// `control-127.0.0.1-7800.token` for `127.0.0.1:7800`.
pub fn file_name(control: SocketAddr) -> String {
    format!("control-{}-{}.token", control.ip(), control.port())
}

/// Where a node on `control` writes its token by default (see [`default_dir`]).
pub fn default_path(control: SocketAddr) -> Option<PathBuf> {
    default_dir().map(|dir| dir.join(file_name(control)))
}

/// True for what a token looks like: 64 hex characters.
pub fn looks_like_token(text: &str) -> bool {
    text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a token file: its first line, which must look like a token.
pub fn read(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    if !looks_like_token(token) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a control token (64 hex characters)",
                path.display()
            ),
        ));
    }
    Ok(token.to_string())
}

/// A new random token from the OS's generator.
pub(crate) fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Writes `token` to `path` with mode 0600, its folder created 0700 if missing. An
/// existing folder is set to 0700 too when `own_folder` (the default place, which holds
/// nothing else), but left alone for a path the user chose (`--token-file`).
///
/// The bytes go to a fresh temporary file created with mode 0600 (`create_new`, so a
/// file planted under that name is never followed), which is then renamed over `path`:
/// a reader sees the old token or the new one, never a partial one.
pub(crate) fn write(path: &Path, token: &str, own_folder: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if own_folder {
        // An existing folder may have been made by something else with a looser mode.
        // This fails (and so does the start) when the folder belongs to another user.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let suffix = generate().map_err(std::io::Error::other)?;
    let temp = dir.join(format!(".{}.{}", file_name_of(path), &suffix[..16]));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned())
}

/// Compares a presented token with the expected one in time that does not depend on
/// where they differ (only on the presented length, which is not secret).
pub(crate) fn same(expected: &str, presented: &[u8]) -> bool {
    let expected = expected.as_bytes();
    if expected.len() != presented.len() {
        return false;
    }
    let mut diff = 0u8;
    for (a, b) in expected.iter().zip(presented) {
        diff |= a ^ b;
    }
    diff == 0
}

/// The token a node serves with, and the file it wrote; the file is removed when this is
/// dropped (the node stopped), unless another node has since written its own there.
#[derive(Debug)]
pub(crate) struct ControlToken {
    pub secret: String,
    pub file: PathBuf,
}

impl ControlToken {
    /// Makes a token and writes it to `file` (see [`write`] for `own_folder`).
    pub fn create(file: PathBuf, own_folder: bool) -> std::io::Result<Self> {
        let secret = generate().map_err(std::io::Error::other)?;
        write(&file, &secret, own_folder)?;
        Ok(Self { secret, file })
    }
}

impl Drop for ControlToken {
    fn drop(&mut self) {
        if read(&self.file).is_ok_and(|on_disk| on_disk == self.secret) {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn tokens_are_random_hex_and_compared_exactly() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(looks_like_token(&a), "{a}");
        assert_ne!(a, b);
        assert!(same(&a, a.as_bytes()));
        assert!(!same(&a, b.as_bytes()));
        assert!(!same(&a, &a.as_bytes()[..63]));
        assert!(!same(&a, b""));
    }

    #[test]
    fn the_file_is_private_replaced_whole_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state/highway");
        let path = folder.join(file_name("127.0.0.1:7800".parse().unwrap()));
        assert!(path.ends_with("control-127.0.0.1-7800.token"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let token = ControlToken::create(path.clone(), true).unwrap();
        assert_eq!(read(&path).unwrap(), token.secret);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&folder).unwrap().mode() & 0o777, 0o700);
        // Only the token file is left: no temporary files.
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        drop(token);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_rewritten_by_another_node_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let first = ControlToken::create(path.clone(), false).unwrap();
        let second = ControlToken::create(path.clone(), false).unwrap();
        // A folder the user chose keeps its mode.
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o755);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(first);
        assert_eq!(read(&path).unwrap(), second.secret);
    }

    #[test]
    fn a_file_without_a_token_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        std::fs::write(&path, "hello\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a control token"), "{err}");
    }
}
