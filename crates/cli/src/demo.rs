//! `highway demo`: a whole network on this machine in one command — an embedded
//! Gatekeeper and several peers on loopback addresses, each sharing sample files — then a
//! search for a file only the farthest peer holds, a verified download of it, and a
//! shell on the first peer.

mod samples;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig};
use highway_node::views::{DownloadRequest, HitJson};
use highway_node::{NodeConfig, NodeHandle};
use highway_wire::{ContentId, NodeId};
use tokio::sync::oneshot;

use crate::control_client::{ControlClient, TokenArg};
use crate::render;
use crate::shell::{self, NodeSettings, Setup};
use crate::units::{average_rate, human_bytes, human_rate, short_duration};
use samples::{BIG_FILE, BIG_FILE_QUERY, SampleFile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit after the search and the download instead of opening a shell.
    #[arg(long)]
    no_shell: bool,
    /// Peers to start, on 127.0.0.2, 127.0.0.3, ... (2 to 40).
    #[arg(long, value_name = "N", default_value_t = 6,
          value_parser = clap::value_parser!(u8).range(2..=40))]
    peers: u8,
    /// Keep keys, shared folders and downloads here instead of a temporary folder that
    /// is removed at the end.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// How long the peers may take to form one overlay and index their shares.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Searches tried before the demo gives up on finding the big file.
const SEARCH_ATTEMPTS: u32 = 3;

/// The demo's folder: temporary (removed when dropped) or the user's.
enum Workdir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Workdir {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

/// One running peer and what it shares.
struct Peer {
    number: usize,
    node: NodeHandle,
    client: ControlClient,
    files: Vec<SampleFile>,
}

/// The running network.
struct Network {
    gatekeeper_url: String,
    stop_gatekeeper: oneshot::Sender<()>,
    gatekeeper: tokio::task::JoinHandle<std::io::Result<()>>,
    peers: Vec<Peer>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let work = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
            Workdir::Kept(std::path::absolute(dir)?)
        }
        None => Workdir::Temporary(
            tempfile::Builder::new()
                .prefix("highway-demo-")
                .tempdir()
                .context("cannot create a temporary folder for the demo")?,
        ),
    };
    let peers = usize::from(args.peers);
    println!(
        "Highway demo: a Gatekeeper and {peers} peers on this machine, files in {}",
        work.path().display()
    );
    // Ctrl-C or SIGTERM while the network starts or the demo runs: stop and remove the
    // temporary folder (issue 13: a demo killed by a signal left it behind).
    let network = tokio::select! {
        network = Network::start(work.path(), peers) => network?,
        signal = stop_signal() => {
            drop(work);
            bail!("{signal} while starting; the demo's temporary files are removed");
        }
    };
    let shown = tokio::select! {
        shown = show(&network, work.path()) => shown,
        signal = stop_signal() => Err(anyhow::anyhow!("{signal}")),
    };
    let result = match shown {
        Ok(()) if !args.no_shell => {
            let setup = Setup {
                attach: Some(network.peers[0].client.addr()),
                token: TokenArg {
                    token: Some(network.peers[0].node.control_token().to_string()),
                },
                settings: NodeSettings {
                    gatekeeper: network.gatekeeper_url.clone(),
                    bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    data_dir: work.path().join("shell"),
                },
                banner: Some(
                    "\nA shell on peer 1 (the network keeps running). Try `search welcome`, \
                     `results`, `get 1`, `downloads`, `neighbors`, `files`, `help`; `exit` \
                     stops the demo."
                        .to_string(),
                ),
            };
            shell::run_on_stdio(setup, Some(work.path().join("shell_history"))).await
        }
        other => other,
    };
    println!("stopping the demo: every peer leaves gracefully");
    network.stop().await;
    drop(work);
    result
}

/// Resolves on Ctrl-C or SIGTERM, naming which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        return tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = term.recv() => "terminated",
        };
    }
    let _ = tokio::signal::ctrl_c().await;
    "interrupted"
}

impl Network {
    /// Starts the Gatekeeper and `n` peers, each sharing its sample folder.
    async fn start(work: &Path, n: usize) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the demo's Gatekeeper on 127.0.0.1")?;
        let gatekeeper_url = format!("http://{}", listener.local_addr()?);
        let config = GatekeeperConfig {
            status_interval: Duration::from_secs(1),
            ..GatekeeperConfig::default()
        };
        let app = App::new(EmbeddedStore::in_memory(), config);
        let (stop_gatekeeper, stopped) = oneshot::channel::<()>();
        let gatekeeper = tokio::spawn(highway_gatekeeper::run(listener, app, async {
            let _ = stopped.await;
        }));
        println!("gatekeeper  {gatekeeper_url} (embedded store)");
        let mut network = Self {
            gatekeeper_url,
            stop_gatekeeper,
            gatekeeper,
            peers: Vec::with_capacity(n),
        };
        for number in 1..=n {
            match network.start_peer(work, number, n).await {
                Ok(peer) => network.peers.push(peer),
                Err(e) => {
                    network.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(network)
    }

    async fn start_peer(&self, work: &Path, number: usize, n: usize) -> anyhow::Result<Peer> {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + u8::try_from(number)?));
        let share = work.join(format!("share-{number}"));
        let files = samples::files_for(number, n);
        samples::write(&share, &files)
            .with_context(|| format!("cannot write sample files into {}", share.display()))?;
        let mut core = highway_core::Config::test();
        // Short heartbeats join and spread summaries fast; the failure timers keep some
        // slack so a busy machine does not fail healthy peers.
        core.suspect_timeout = Duration::from_millis(1500);
        core.probe_timeout = Duration::from_secs(1);
        // Peers start one right after another. With room for 5 neighbours the first ones
        // fill up at once, and each later peer can only link with the few that joined
        // just before it: the overlay grew into a chain, 9 to 11 hops from peer 1 to peer
        // 40, past the longest search (issue 13). With room for 8 it stays a random
        // graph a few hops across.
        core.max_degree = 8;
        let config = NodeConfig {
            core,
            share: Some(share),
            fast_share: true,
            // The demo's shell runs on peer 1 for the person at the terminal: `get` saves
            // where they are (the download folder) and `start`/`share` takes their
            // folders, as they could.
            download_dir: if number == 1 {
                std::env::current_dir().unwrap_or_else(|_| work.join("downloads"))
            } else {
                work.join("downloads")
            },
            share_roots: vec![PathBuf::from("/")],
            allow_download_anywhere: true,
            ..NodeConfig::new(
                ip,
                self.gatekeeper_url.clone(),
                work.join(format!("peer-{number}")),
            )
        };
        let node = highway_node::start(config).await.with_context(|| {
            format!(
                "cannot start peer {number} on {ip} (on macOS, add the address first: \
                 sudo ifconfig lo0 alias {ip})"
            )
        })?;
        let client = ControlClient::with_token(node.control_addr(), node.control_token())?;
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                if f.content.len() > 1 << 20 {
                    format!("{} ({})", f.name, human_bytes(f.content.len() as u64))
                } else {
                    f.name.clone()
                }
            })
            .collect();
        println!(
            "peer {number:<2}     {ip:<10}  id {}  control {}  shares {}",
            node.id().short(),
            node.control_addr(),
            names.join(", ")
        );
        Ok(Peer {
            number,
            node,
            client,
            files,
        })
    }

    /// Every peer leaves gracefully (at once), then the Gatekeeper stops.
    async fn stop(self) {
        let leaving: Vec<_> = self
            .peers
            .into_iter()
            .map(|peer| tokio::spawn(peer.node.shutdown()))
            .collect();
        for task in leaving {
            let _ = task.await;
        }
        let _ = self.stop_gatekeeper.send(());
        let _ = self.gatekeeper.await;
    }

    fn peer_by_id(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.node.id() == id)
    }
}

/// The demo itself: waits for the network, searches, downloads, verifies.
async fn show(network: &Network, work: &Path) -> anyhow::Result<()> {
    println!("waiting until the peers form one overlay and index their shares...");
    let started = Instant::now();
    let graph = wait_until_ready(network).await?;
    let links = graph.values().map(BTreeSet::len).sum::<usize>() / 2;
    println!(
        "ready after {}: {} peers, {links} links, every share indexed",
        short_duration(crate::units::millis(started.elapsed())),
        network.peers.len()
    );

    let first = &network.peers[0];
    let last = &network.peers[network.peers.len() - 1];
    let big = last
        .files
        .iter()
        .find(|f| f.name == BIG_FILE)
        .context("the last peer has no big file")?;
    let big_hash = big.hash();
    println!(
        "\npeer 1 searches for \"{BIG_FILE_QUERY}\" (only peer {} holds {BIG_FILE}):",
        last.number
    );
    // Far enough to reach the holder whatever shape the overlay took: at 17 peers and
    // more the last peer is often more hops away than the default TTL (issue 13).
    let hops = hops_between(&graph, first.node.id(), last.node.id())
        .context("the overlay lost its connection to the last peer")?;
    let ttl = u8::try_from(hops).unwrap_or(u8::MAX).clamp(
        highway_core::Config::default().default_ttl,
        highway_wire::peer::search::MAX_TTL,
    );
    println!(
        "(peer {} is {hops} hops away: the search travels {ttl})",
        last.number
    );
    let (hits, first_hit_ms) = search_for(first, big_hash, ttl).await?;
    let holders: Vec<SocketAddr> = hits.iter().map(|h| h.addr).collect();
    let hit = &hits[0];
    let holder = network
        .peer_by_id(hit.holder)
        .map_or_else(|| hit.holder.short(), |p| format!("peer {}", p.number));

    let downloads = work.join("downloads");
    let out = downloads.join(format!("peer-1-{BIG_FILE}"));
    // A kept --data-dir holds the previous run's copy; a download never overwrites.
    let _ = std::fs::remove_file(&out);
    std::fs::create_dir_all(&downloads)?;
    println!(
        "\npeer 1 downloads it from {holder} ({}), verifying every chunk:",
        hit.addr
    );
    let request = DownloadRequest {
        hash: big_hash,
        out: Some(out.clone()),
        name: None,
        holders,
        size: Some(hit.size),
    };
    let view = first.client.start_download(&request).await?;
    let done = crate::get_cmd::follow(&first.client, view).await?;
    println!("{}", render::download_done(&done));

    let copy = blake3_of(&out)?;
    let original = ContentId::of(&big.content);
    if copy != original {
        bail!(
            "the downloaded file's BLAKE3 {copy} differs from the original's {original}; this is a bug"
        );
    }
    println!(
        "check: BLAKE3 of the downloaded copy {copy}\n       equals BLAKE3 of peer {}'s \
         original: the download is verified and identical",
        last.number
    );
    let fetched = done.size.unwrap_or(0).saturating_sub(done.resumed_bytes);
    println!(
        "\nin short: peer 1 found {BIG_FILE} {} away after {} and downloaded {} from {holder} \
         in {} ({}), verified",
        render::plural(usize::from(hit.hops), "hop", "hops"),
        short_duration(first_hit_ms),
        human_bytes(fetched),
        short_duration(done.elapsed_ms),
        human_rate(average_rate(fetched, done.elapsed_ms))
    );
    Ok(())
}

/// Searches from `peer` until a hit for `hash` arrives; prints the hits as they come.
/// Returns the hits for `hash` and when the first of them arrived (ms into the search).
async fn search_for(peer: &Peer, hash: ContentId, ttl: u8) -> anyhow::Result<(Vec<HitJson>, u64)> {
    for attempt in 1..=SEARCH_ATTEMPTS {
        let words = [BIG_FILE_QUERY.to_string()];
        let request = crate::search_cmd::request(&words, None, Some(ttl), None);
        let id = peer.client.start_search(&request).await?;
        let print = crate::search_cmd::print_files(|line| println!("{line}"));
        let outcome = crate::search_cmd::follow(&peer.client, &id, None, print).await?;
        println!("{}", render::search_summary(&outcome.last, &outcome.hits));
        let found: Vec<HitJson> = outcome
            .hits
            .into_iter()
            .filter(|h| h.hash == hash)
            .collect();
        if let Some(first) = found.iter().map(|h| h.at_ms).min() {
            return Ok((found, first));
        }
        if attempt < SEARCH_ATTEMPTS {
            println!("no hit for it yet (summaries may still be spreading); searching again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    bail!(
        "{SEARCH_ATTEMPTS} searches from peer 1 found no peer holding {BIG_FILE}; \
         run with HIGHWAY_LOG=debug to see why"
    )
}

/// Waits until the peers form one connected overlay, every share is indexed and every
/// peer has its neighbours' keyword summaries (searches rely on them on the last hop).
/// Returns the overlay: each peer's neighbours.
async fn wait_until_ready(network: &Network) -> anyhow::Result<Graph> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let why = match readiness(network).await {
            Ok(graph) => return Ok(graph),
            Err(reason) => reason,
        };
        if Instant::now() > deadline {
            bail!(
                "the demo network was not ready within {}: {why}",
                short_duration(crate::units::millis(READY_LIMIT))
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The overlay when ready; otherwise what is still missing.
async fn readiness(network: &Network) -> Result<Graph, String> {
    let mut graph = Graph::new();
    for peer in &network.peers {
        let files = peer.client.files().await.map_err(|e| e.to_string())?;
        if files.scanning || files.total_files < peer.files.len() as u64 {
            return Err(format!("peer {} is still indexing its share", peer.number));
        }
        let neighbours = peer.client.neighbors().await.map_err(|e| e.to_string())?;
        if neighbours.is_empty() {
            return Err(format!("peer {} has no neighbour yet", peer.number));
        }
        if let Some(n) = neighbours.iter().find(|n| n.summary_version == 0) {
            return Err(format!(
                "peer {} has no share summary from its neighbour {} yet",
                peer.number, n.short_id
            ));
        }
        graph.insert(peer.node.id(), neighbours.iter().map(|n| n.id).collect());
    }
    if !connected(&graph) {
        return Err("the peers form more than one overlay so far".to_string());
    }
    Ok(graph)
}

/// Each peer's neighbours.
type Graph = BTreeMap<NodeId, BTreeSet<NodeId>>;

/// The fewest hops from `from` to `to` (breadth-first), if `to` can be reached.
fn hops_between(graph: &Graph, from: NodeId, to: NodeId) -> Option<usize> {
    let mut seen = BTreeSet::from([from]);
    let mut frontier = vec![from];
    let mut hops = 0;
    while !frontier.is_empty() {
        if frontier.contains(&to) {
            return Some(hops);
        }
        hops += 1;
        let mut next = Vec::new();
        for node in &frontier {
            for n in graph.get(node).into_iter().flatten() {
                if seen.insert(*n) {
                    next.push(*n);
                }
            }
        }
        frontier = next;
    }
    None
}

/// True when every peer in `graph` reaches every other.
fn connected(graph: &Graph) -> bool {
    let Some(&start) = graph.keys().next() else {
        return true;
    };
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if graph.contains_key(next) && seen.insert(*next) {
                stack.push(*next);
            }
        }
    }
    seen.len() == graph.len()
}

/// BLAKE3 of a file, read as a stream.
fn blake3_of(path: &Path) -> anyhow::Result<ContentId> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the downloaded file {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::BufReader::new(file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> NodeId {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        NodeId::from_key(&key.verifying_key())
    }

    #[test]
    fn a_graph_is_connected_only_when_every_peer_reaches_every_other() {
        let (a, b, c) = (id(1), id(2), id(3));
        let mut graph = BTreeMap::from([
            (a, BTreeSet::from([b])),
            (b, BTreeSet::from([a])),
            (c, BTreeSet::new()),
        ]);
        assert!(!connected(&graph));
        graph.get_mut(&b).unwrap().insert(c);
        assert!(connected(&graph));
    }

    #[test]
    fn hops_count_the_shortest_way_and_none_when_there_is_no_way() {
        let ids: Vec<NodeId> = (1..=5).map(id).collect();
        // A chain 0-1-2-3 with a shortcut 0-3; peer 4 alone.
        let mut graph = Graph::new();
        for (a, b) in [(0, 1), (1, 2), (2, 3), (0, 3)] {
            graph.entry(ids[a]).or_default().insert(ids[b]);
            graph.entry(ids[b]).or_default().insert(ids[a]);
        }
        graph.insert(ids[4], BTreeSet::new());
        assert_eq!(hops_between(&graph, ids[0], ids[0]), Some(0));
        assert_eq!(hops_between(&graph, ids[0], ids[2]), Some(2));
        assert_eq!(hops_between(&graph, ids[0], ids[3]), Some(1));
        assert_eq!(hops_between(&graph, ids[0], ids[4]), None);
    }

    #[test]
    fn the_file_hash_is_the_blake3_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello highway").unwrap();
        assert_eq!(blake3_of(&path).unwrap(), ContentId::of(b"hello highway"));
    }
}
