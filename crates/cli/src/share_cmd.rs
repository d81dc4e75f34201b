//! `highway share FILE|FOLDER`: tickets for files a running node shares (issue 13). A
//! folder the node does not share yet becomes its share first; each file under the path
//! gets a ticket that `highway get TICKET` fetches on any machine of the network.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::control_client::{ControlClient, NodeArgs};
use crate::terminal_text::{safe, safe_path};
use crate::units::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: NodeArgs,
    /// Print the JSON array of POST /v1/tickets (see docs/PROTOCOL.md).
    #[arg(long)]
    json: bool,
    /// A file in the node's shared folder, or a folder: the node's shared folder (or one
    /// in it), or another folder, which the node then shares instead.
    #[arg(value_name = "FILE|FOLDER")]
    path: PathBuf,
}

/// How long to wait for the node to finish hashing before giving up.
const HASHING_LIMIT: Duration = Duration::from_secs(600);
/// How often hashing progress is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let path = std::fs::canonicalize(&args.path)
        .with_context(|| format!("cannot find {}", args.path.display()))?;
    let files = client.files().await?;
    let shared = files
        .root
        .as_deref()
        .is_some_and(|root| path.starts_with(root));
    if !shared {
        if !path.is_dir() {
            let now = files.root.as_deref().map_or_else(
                || "nothing is shared".to_string(),
                |root| format!("the node shares {}", safe_path(root)),
            );
            bail!(
                "{} is not in the node's shared folder ({now}); share the folder it is in: \
                 `highway share FOLDER` (the node then shares that folder instead)",
                safe_path(&path)
            );
        }
        client.share(path.clone()).await?;
        let before = files
            .root
            .as_deref()
            .map_or_else(String::new, |old| format!(" instead of {}", safe_path(old)));
        eprintln!("the node now shares {}{before}", safe_path(&path));
    }
    wait_for_hashing(&client).await?;
    let tickets = client.tickets(path).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&tickets)?)?;
        return Ok(());
    }
    for t in &tickets {
        writeln!(
            out,
            "{} ({})\n{}\n",
            safe(&t.name),
            human_bytes(t.size),
            t.ticket
        )?;
    }
    eprintln!(
        "{}; `highway get TICKET` fetches one, verified, from this node or any other peer \
         holding the same file",
        crate::render::plural(tickets.len(), "ticket", "tickets")
    );
    Ok(())
}

/// Waits until the node's share is hashed, printing progress now and then.
async fn wait_for_hashing(client: &ControlClient) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut printed = Instant::now();
    loop {
        let files = client.files().await?;
        if !files.scanning {
            return Ok(());
        }
        if started.elapsed() > HASHING_LIMIT {
            bail!(
                "the node is still hashing its share after {} s; try again later",
                HASHING_LIMIT.as_secs()
            );
        }
        if printed.elapsed() >= PROGRESS_EVERY {
            printed = Instant::now();
            eprintln!(
                "hashing: {} of {} files, {} of {}",
                files.files_done,
                files.files_total,
                human_bytes(files.bytes_done),
                human_bytes(files.bytes_total)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
