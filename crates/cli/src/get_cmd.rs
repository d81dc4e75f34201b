//! `highway get`: a verified download through a running node, with progress; exits 0
//! only when the file is complete and every byte matched its content hash.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use highway_node::views::{DownloadRequest, DownloadView};
use highway_wire::ContentId;
use highway_wire::peer::ticket::{Ticket, looks_like_ticket};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control_client::{ControlClient, NodeArgs};
use crate::render;
use crate::units::{human_rate, short_duration};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: NodeArgs,
    /// The file's BLAKE3 content hash (64 hex characters), as `highway search` prints
    /// it, or a ticket (`hw1...` or `highway://hw1...`) as `highway share` prints it.
    #[arg(value_name = "HASH|TICKET", value_parser = parse_what)]
    what: What,
    /// Where the file goes (relative to this directory). A folder means "into this
    /// folder" under the file's own name (from the search hit, else the hash), with a
    /// ` (1)`-style name when that is taken; a file path must not exist yet. Without
    /// it: the node's --download-dir. It must be inside that folder unless the node
    /// allows anywhere. A `.part` left by an interrupted attempt is resumed.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// A peer's file server known to hold the file (a hit's `addr`); repeat for several.
    /// Without any, the node first searches the network by hash.
    #[arg(long = "holder", value_name = "ADDR")]
    holders: Vec<SocketAddr>,
}

/// What `get` fetches.
#[derive(Debug, Clone)]
pub enum What {
    Hash(ContentId),
    Ticket(Box<Ticket>),
}

/// A ticket when it looks like one, else a content hash; the error says which failed.
pub fn parse_what(text: &str) -> Result<What, String> {
    if looks_like_ticket(text) {
        return text
            .parse::<Ticket>()
            .map(|t| What::Ticket(Box::new(t)))
            .map_err(|e| e.to_string());
    }
    text.parse::<ContentId>()
        .map(What::Hash)
        .map_err(|e| format!("{e}; give a content hash (64 hex characters) or a ticket (hw1...)"))
}

/// The download request for `what`: a ticket names its holder (when it can be dialled),
/// the file's name and size.
pub fn request_for(what: &What, out: Option<PathBuf>, holders: Vec<SocketAddr>) -> DownloadRequest {
    match what {
        What::Hash(hash) => DownloadRequest {
            hash: *hash,
            out,
            name: None,
            holders,
            size: None,
        },
        What::Ticket(ticket) => {
            let hit = &ticket.0;
            let mut holders = holders;
            if hit.dialable && !holders.contains(&hit.server) {
                holders.push(hit.server);
            }
            DownloadRequest {
                hash: hit.content,
                out,
                name: Some(hit.name.clone()),
                holders,
                size: Some(hit.size),
            }
        }
    }
}

/// How often the node is asked how the download is going.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// `out` made absolute against this process's directory (the node's may differ); the
/// node checks the rest, by the same rules for every client. A trailing `/` is kept: it
/// says "a folder".
pub fn destination(out: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(out)
        .with_context(|| format!("cannot make {} an absolute path", out.display()))?;
    let folder = out.as_os_str().as_encoded_bytes().ends_with(b"/");
    Ok(
        if folder && !absolute.as_os_str().as_encoded_bytes().ends_with(b"/") {
            let mut text = absolute.into_os_string();
            text.push("/");
            PathBuf::from(text)
        } else {
            absolute
        },
    )
}

/// Shows progress: an indicatif bar when stderr is a terminal, otherwise a plain line
/// now and then (logs and CI output stay readable).
#[derive(Debug)]
enum Progress {
    Bar(ProgressBar),
    /// When the last line was printed (the first comes after a while: short downloads
    /// print none).
    Plain {
        last: Instant,
    },
}

impl Progress {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Plain {
                last: Instant::now(),
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(searching_style());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn update(&mut self, download: &DownloadView) {
        match self {
            Self::Bar(bar) => match (download.state.as_str(), download.size) {
                ("searching" | "queued", _) | (_, None) => {
                    bar.set_message(render::waiting_for(download));
                }
                (_, Some(size)) => {
                    if bar.length() != Some(size) {
                        bar.set_style(bar_style());
                        bar.set_length(size);
                    }
                    bar.set_position(download.done_bytes);
                    let eta = download
                        .eta_ms
                        .map_or_else(|| "-".to_string(), short_duration);
                    bar.set_message(format!("{}  ETA {eta}", human_rate(download.rate_bps)));
                }
            },
            Self::Plain { last } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!("{}", render::download_progress(download));
                }
            }
        }
    }

    fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn searching_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("[{bar:32}] {percent:>3}%  {bytes}/{total_bytes}  {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let out = args.out.as_deref().map(destination).transpose()?;
    let request = request_for(&args.what, out, args.holders);
    let download = client.start_download(&request).await?;
    let current = AtomicU64::new(download.id);
    // Ctrl-C stops the download in the node too, not only this command (issue 13).
    let done = tokio::select! {
        done = follow_or_search(&client, download, &args.what, &request, &current) => done?,
        _ = tokio::signal::ctrl_c() => {
            let id = current.load(Ordering::Relaxed);
            let cancelled = client.cancel_download(id).await?;
            eprintln!(
                "\ncancelled download {id} ({} fetched); run the same command again to resume",
                crate::units::human_bytes(cancelled.done_bytes)
            );
            return Err(crate::ExitStatus(EXIT_INTERRUPTED).into());
        }
    };
    println!("{}", render::download_done(&done));
    Ok(())
}

/// Follows `download`; when a ticket's holder could not serve it, asks the node again
/// without holders, so it searches the overlay for others holding the same content
/// (the `.part` keeps what arrived).
async fn follow_or_search(
    client: &ControlClient,
    download: DownloadView,
    what: &What,
    request: &DownloadRequest,
    current: &AtomicU64,
) -> anyhow::Result<DownloadView> {
    let failed = match follow(client, download).await {
        Ok(done) => return Ok(done),
        Err(e) => e,
    };
    let What::Ticket(_) = what else {
        return Err(failed);
    };
    if request.holders.is_empty() {
        return Err(failed);
    }
    eprintln!(
        "{failed:#}
the ticket's holder could not serve it; looking for other peers holding it"
    );
    let again = DownloadRequest {
        holders: Vec::new(),
        ..request.clone()
    };
    let download = client.start_download(&again).await?;
    current.store(download.id, Ordering::Relaxed);
    follow(client, download).await
}

/// The exit status after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Polls `download` until it ends, showing progress on stderr. Returns its final view
/// when it is `done` (complete and verified); an error saying why otherwise.
pub async fn follow(
    client: &ControlClient,
    mut download: DownloadView,
) -> anyhow::Result<DownloadView> {
    let mut progress = Progress::new();
    loop {
        progress.update(&download);
        match download.state.as_str() {
            "done" => {
                progress.finish();
                return Ok(download);
            }
            "failed" => {
                progress.finish();
                bail!("{}", render::download_failed(&download));
            }
            "cancelled" | "paused" => {
                progress.finish();
                bail!(
                    "download {} was {} ({} fetched, kept to resume); `highway resume {}` \
                     goes on",
                    download.id,
                    download.state,
                    crate::units::human_bytes(download.done_bytes),
                    download.id
                );
            }
            _ => {}
        }
        tokio::time::sleep(POLL_EVERY).await;
        download = client.download(download.id).await.with_context(|| {
            format!(
                "lost track of download {} (it may go on in the node; `highway shell --node {}` \
                 then `downloads` shows it)",
                download.id,
                client.addr()
            )
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_made_absolute_here_and_keeps_its_folder_slash() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(destination(Path::new("a.bin")).unwrap(), here.join("a.bin"));
        let folder = destination(Path::new("sub/")).unwrap();
        assert!(folder.starts_with(&here), "{}", folder.display());
        assert!(
            folder.to_str().unwrap().ends_with("sub/"),
            "{}",
            folder.display()
        );
        assert_eq!(destination(Path::new("/x/y")).unwrap(), Path::new("/x/y"));
    }
}
