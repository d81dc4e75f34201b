//! The download queue across restarts: every download that has not ended (running,
//! searching, queued, paused) is written to `DATA_DIR/downloads.json` whenever one
//! changes state, and taken up again when the node starts. What was fetched lives in
//! each download's `.part` file, so a restarted download resumes — after a crash too,
//! since the list is replaced atomically (written beside, then renamed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use highway_wire::ContentId;
use serde::{Deserialize, Serialize};

use super::{DownloadError, Downloads, MAX_RUNNING, MAX_WAITING, is_final};
use crate::views::DownloadRequest;

/// The file in the data directory.
pub const FILE: &str = "downloads.json";
/// The format's version; a file with another is left alone (and said so).
const VERSION: u32 = 1;
/// Largest file read: the most downloads there can be, with room for long paths.
const MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct SavedFile {
    version: u32,
    downloads: Vec<SavedDownload>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedDownload {
    hash: ContentId,
    /// The file, once named.
    out: Option<PathBuf>,
    folder: PathBuf,
    #[serde(default)]
    holders: Vec<SocketAddr>,
    size: Option<u64>,
    paused: bool,
}

impl Downloads {
    /// Writes the downloads that have not ended. A failure is logged, not fatal: the
    /// downloads go on, only a restart would not bring them back.
    pub(super) fn save(&self) {
        // One save at a time, each taking the state when it starts: the file ends with
        // the latest, and two writers never share the file written beside it.
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let downloads: Vec<SavedDownload> = {
            let book = self.book();
            book.records
                .values()
                .filter(|r| !is_final(&r.view))
                .map(|r| SavedDownload {
                    hash: r.plan.hash,
                    out: r.plan.out.clone(),
                    folder: r.plan.folder.clone(),
                    holders: r.plan.holders.clone(),
                    size: r.plan.size,
                    paused: r.view.state == "paused",
                })
                .collect()
        };
        let file = SavedFile {
            version: VERSION,
            downloads,
        };
        if let Err(e) = write_atomically(&self.saved, &file) {
            tracing::warn!(
                "cannot save the download list to {}: {e}; the downloads go on, but a \
                 restart will not resume them",
                self.saved.display()
            );
        }
    }

    /// Takes up the downloads saved by the last run (paused ones stay paused); how many.
    /// One that can no longer go where it was going (its file is there now, its folder
    /// is gone or outside the download folder) is dropped, and the log says why.
    pub fn restore(self: &Arc<Self>) -> usize {
        let file = match read(&self.saved) {
            Ok(Some(file)) => file,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!(
                    "cannot read the saved download list {}: {e}; starting with none",
                    self.saved.display()
                );
                return 0;
            }
        };
        let mut restored = 0;
        for saved in file.downloads.into_iter().take(MAX_RUNNING + MAX_WAITING) {
            let request = DownloadRequest {
                hash: saved.hash,
                out: Some(saved.out.clone().unwrap_or_else(|| saved.folder.clone())),
                name: None,
                holders: saved.holders,
                size: saved.size,
            };
            let added = self
                .plan(&request)
                .and_then(|(plan, name)| self.add(plan, name, saved.paused));
            match added {
                Ok(_) => restored += 1,
                Err(DownloadError::Exists(out)) => {
                    tracing::info!(
                        "the saved download of {} is complete already: {} exists",
                        saved.hash,
                        out.display()
                    );
                }
                Err(e) => tracing::warn!("the saved download of {} is dropped: {e}", saved.hash),
            }
        }
        if restored > 0 {
            tracing::info!("resuming {restored} downloads saved by the last run");
        }
        self.schedule();
        self.save();
        restored
    }
}

fn read(path: &std::path::Path) -> Result<Option<SavedFile>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if meta.len() > MAX_BYTES {
        return Err(format!("it is {} bytes, more than it can be", meta.len()));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let file: SavedFile = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!(
            "it is version {}, this node reads version {VERSION}",
            file.version
        ));
    }
    Ok(Some(file))
}

fn write_atomically(path: &std::path::Path, file: &SavedFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let beside = path.with_extension("json.new");
    std::fs::write(&beside, text)?;
    std::fs::rename(&beside, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_round_trips_and_bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(read(&path).unwrap().is_none(), "no file: no downloads");
        let file = SavedFile {
            version: VERSION,
            downloads: vec![SavedDownload {
                hash: ContentId::of(b"x"),
                out: Some(dir.path().join("x.bin")),
                folder: dir.path().to_path_buf(),
                holders: vec!["127.0.0.2:4000".parse().unwrap()],
                size: Some(1),
                paused: true,
            }],
        };
        write_atomically(&path, &file).unwrap();
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.downloads.len(), 1);
        assert!(back.downloads[0].paused);
        assert_eq!(back.downloads[0].out, file.downloads[0].out);

        for bad in [&b"{"[..], b"[]", br#"{"version": 9, "downloads": []}"#] {
            std::fs::write(&path, bad).unwrap();
            assert!(read(&path).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
