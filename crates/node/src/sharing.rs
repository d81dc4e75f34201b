//! The node's shared folder: the share index, the file server in front of it, and the
//! summary publisher that keeps the core's announced summary current.
//!
//! The file server's port is bound once at start, so the address in this node's hits
//! stays the same when the share is switched (`POST /v1/share`) or stopped: switching
//! closes the old server and starts one for the new root on the same port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use highway_core::{Catalog, LocalFile};
use highway_share::transfer::{FileServer, FileSource, ServedFile, ServerConfig};
use highway_share::{Share, ShareError, ShareOptions, SharedFile};
use highway_wire::ContentId;
use highway_wire::peer::QueryTarget;
use highway_wire::peer::search::MAX_HIT_NAME;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::owner::Msg;
use crate::views::{FileJson, FilesView, SkippedJson};

/// How often the publisher looks for a new summary version (the share itself limits how
/// often one appears).
const SUMMARY_POLL: Duration = Duration::from_millis(200);
/// Most files `GET /v1/files` lists.
const MAX_LISTED_FILES: usize = 10_000;

/// The share as the core's searches see it.
#[derive(Debug)]
struct ShareCatalog(Share);

fn local_file(f: SharedFile) -> LocalFile {
    LocalFile {
        content: f.content,
        size: f.size,
        name: hit_name(&f.rel_path, &f.name),
    }
}

/// What hits call a file: its path within the share (`jazz/so what.flac`), so searchers
/// see the folder. A path longer than a hit carries loses leading folders (`…/` marks
/// the cut) rather than its file name, which the wire would cut instead.
pub(crate) fn hit_name(rel_path: &Path, name: &str) -> String {
    let full = rel_path_string(rel_path);
    if full.len() <= MAX_HIT_NAME {
        return full;
    }
    let mut parts: Vec<&str> = full.split('/').collect();
    while parts.len() > 1 {
        parts.remove(0);
        let tail = format!("…/{}", parts.join("/"));
        if tail.len() <= MAX_HIT_NAME {
            return tail;
        }
    }
    name.to_string()
}

impl Catalog for ShareCatalog {
    fn lookup(&self, target: &QueryTarget, limit: usize) -> Vec<LocalFile> {
        match target {
            QueryTarget::Keywords(text) => self
                .0
                .search(text, limit)
                .into_iter()
                .map(local_file)
                .collect(),
            QueryTarget::Hash(content) => self
                .0
                .lookup(content)
                .map(|located| local_file(located.file))
                .into_iter()
                .collect(),
        }
    }
}

/// The share as the file server sees it: only indexed files, by content hash.
struct ShareSource(Share);

impl FileSource for ShareSource {
    fn open(&self, id: &ContentId) -> Option<ServedFile> {
        self.0.lookup(id).map(|located| ServedFile {
            path: located.path,
            size: located.file.size,
            outboard: Some(self.0.outboard_path(id)),
        })
    }
}

struct Active {
    share: Share,
    server_stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    publisher: JoinHandle<()>,
}

/// Why a share could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error("cannot start the file server on {addr}: {error}")]
    Server {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// The node's share slot: empty, or one shared folder with its server and publisher.
pub(crate) struct Sharing {
    server_addr: SocketAddr,
    data_dir: PathBuf,
    options: ShareOptions,
    owner: mpsc::Sender<Msg>,
    /// The listener bound at start, used by the first server.
    reserved: Mutex<Option<TcpListener>>,
    active: Mutex<Option<Active>>,
    /// Settings of every file server this node runs; each share change starts one from
    /// it, so counters and the upload cap carry over.
    server: ServerConfig,
    /// The current file server's router, for reverse connections (behind a NAT).
    router: crate::reverse_serve::RouterSlot,
    /// The file server's address as hits name it: `server_addr`, or its port on
    /// `--public-addr`.
    advertised: SocketAddr,
}

impl std::fmt::Debug for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharing")
            .field("server_addr", &self.server_addr)
            .finish_non_exhaustive()
    }
}

/// Where the file server listens, and the address hits name for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerAt {
    pub bind: SocketAddr,
    /// `bind`, or its port on `--public-addr`.
    pub advertised: SocketAddr,
}

impl Sharing {
    pub fn new(
        listener: TcpListener,
        at: ServerAt,
        data_dir: PathBuf,
        fast: bool,
        owner: mpsc::Sender<Msg>,
        server: ServerConfig,
        router: crate::reverse_serve::RouterSlot,
    ) -> Self {
        let (server_addr, advertised) = (at.bind, at.advertised);
        let options = if fast {
            ShareOptions::test()
        } else {
            ShareOptions::default()
        };
        Self {
            server_addr,
            data_dir,
            options,
            owner,
            reserved: Mutex::new(Some(listener)),
            server,
            active: Mutex::new(None),
            router,
            advertised,
        }
    }

    /// Shares `root` (replacing any current share): indexing starts in the background.
    pub async fn start(&self, root: &Path) -> Result<(), SharingError> {
        let mut active = self.active.lock().await;
        if let Some(old) = active.take() {
            self.close(old).await;
        }
        let share = Share::open(root, &self.data_dir, self.options.clone())?;
        let listener =
            match self.reserved.lock().await.take() {
                Some(listener) => listener,
                None => TcpListener::bind(self.server_addr).await.map_err(|error| {
                    SharingError::Server {
                        addr: self.server_addr,
                        error,
                    }
                })?,
            };
        let source: Arc<dyn FileSource> = Arc::new(ShareSource(share.clone()));
        let config = ServerConfig {
            root: share.root().to_path_buf(),
            ..self.server.clone()
        };
        let server = FileServer::new(source, config).map_err(|error| SharingError::Server {
            addr: self.server_addr,
            error,
        })?;
        *self.router.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.router());
        let (server_stop, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stop.await;
            };
            if let Err(e) = server.run(listener, shutdown).await {
                tracing::warn!(error = %e, "the file server stopped");
            }
        });
        let catalog: Arc<dyn Catalog> = Arc::new(ShareCatalog(share.clone()));
        let _ = self
            .owner
            .send(Msg::SetCatalog {
                catalog: Some(catalog),
                server: Some(self.advertised),
            })
            .await;
        let publisher = tokio::spawn(publish_summaries(share.clone(), self.owner.clone()));
        tracing::info!(root = %share.root().display(), server = %self.server_addr, "sharing");
        *active = Some(Active {
            share,
            server_stop,
            server,
            publisher,
        });
        Ok(())
    }

    /// Stops sharing: neighbours see an empty summary, the file server closes.
    pub async fn stop(&self) {
        if let Some(old) = self.active.lock().await.take() {
            self.close(old).await;
        }
    }

    async fn close(&self, old: Active) {
        *self.router.lock().unwrap_or_else(|e| e.into_inner()) = None;
        old.publisher.abort();
        let _ = self
            .owner
            .send(Msg::SetCatalog {
                catalog: None,
                server: None,
            })
            .await;
        let _ = self.owner.send(Msg::Summary(None)).await;
        let _ = old.server_stop.send(());
        let _ = old.server.await;
        old.share.stop().await;
    }

    /// The current share, if any.
    pub async fn share(&self) -> Option<Share> {
        self.active.lock().await.as_ref().map(|a| a.share.clone())
    }

    /// Walks the share again now.
    pub async fn rescan(&self) -> bool {
        match self.share().await {
            Some(share) => {
                share.rescan();
                true
            }
            None => false,
        }
    }

    /// `GET /v1/files`.
    pub async fn view(&self) -> FilesView {
        let Some(share) = self.share().await else {
            return FilesView {
                root: None,
                scanning: false,
                files_total: 0,
                files_done: 0,
                bytes_total: 0,
                bytes_done: 0,
                summary_version: 0,
                file_server: self.server_addr,
                files: Vec::new(),
                total_files: 0,
                skipped: Vec::new(),
            };
        };
        let progress = share.progress().borrow().clone();
        let mut files = share.files();
        files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        let total_files = files.len() as u64;
        let files = files
            .into_iter()
            .take(MAX_LISTED_FILES)
            .map(|f| FileJson {
                path: rel_path_string(&f.rel_path),
                name: f.name,
                size: f.size,
                hash: f.content,
            })
            .collect();
        FilesView {
            root: Some(share.root().to_path_buf()),
            scanning: !progress.is_done(),
            files_total: progress.files_total,
            files_done: progress.files_done,
            bytes_total: progress.bytes_total,
            bytes_done: progress.bytes_done,
            summary_version: share.summary_version(),
            file_server: self.server_addr,
            files,
            total_files,
            skipped: share
                .skipped()
                .into_iter()
                .map(|s| SkippedJson {
                    path: rel_path_string(&s.path),
                    reason: s.reason,
                })
                .collect(),
        }
    }
}

fn rel_path_string(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Tells the owner task about every new summary version of `share`.
async fn publish_summaries(share: Share, owner: mpsc::Sender<Msg>) {
    let mut published = 0;
    loop {
        let version = share.summary_version();
        if version != published {
            published = version;
            let summary = (version != 0).then(|| share.summary());
            if owner.send(Msg::Summary(summary)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(SUMMARY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_name_the_path_within_the_share_keeping_the_file_name() {
        let short = Path::new("jazz/miles/so what.flac");
        assert_eq!(hit_name(short, "so what.flac"), "jazz/miles/so what.flac");
        let deep = format!("{}/{}/so what.flac", "a".repeat(230), "b".repeat(40));
        let named = hit_name(Path::new(&deep), "so what.flac");
        assert_eq!(named, format!("…/{}/so what.flac", "b".repeat(40)));
        let long_name = "n".repeat(300);
        let path = format!("dir/{long_name}");
        assert_eq!(hit_name(Path::new(&path), &long_name), long_name);
    }
}
