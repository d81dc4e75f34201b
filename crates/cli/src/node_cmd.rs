//! `highway node`: a headless peer.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use highway_node::NodeConfig;

use crate::overlay_flags::OverlayFlags;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Gatekeeper's URL, e.g. http://127.0.0.1:7700 or https://gk.example.org.
    #[arg(long, value_name = "URL")]
    gatekeeper: String,
    /// For an https:// Gatekeeper whose certificate comes from a private CA: a PEM file
    /// of the certificates to trust (instead of the system's roots).
    #[arg(long, env = "HIGHWAY_GATEKEEPER_CA", value_name = "FILE")]
    gatekeeper_ca: Option<PathBuf>,
    /// The address to bind and publish, e.g. 192.0.2.10; 0.0.0.0 (or ::) listens on every
    /// address and publishes the one this host uses toward the Gatekeeper.
    #[arg(long, value_name = "IP")]
    bind: IpAddr,
    /// Where the identity key lives (created on first start). One per node.
    #[arg(long, value_name = "DIR", default_value = "./highway-data")]
    data_dir: PathBuf,
    /// Loopback address of the control API used by `highway status` and `highway
    /// neighbors`; port 0 picks a free one (printed as `control: ADDR` at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Where to write the control token (mode 0600; a new one each start) [default:
    /// $XDG_RUNTIME_DIR/highway/ or ~/.local/state/highway/, control-IP-PORT.token, where
    /// this user's `highway` commands find it].
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Serve GET /metrics without the control token (it holds counters only), for a
    /// Prometheus that cannot read this user's token file.
    #[arg(long)]
    open_metrics: bool,
    /// UDP port for datagrams (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 0)]
    udp_port: u16,
    /// TCP port for handshakes (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 0)]
    tcp_port: u16,
    #[command(flatten)]
    overlay: OverlayFlags,
    /// A folder to share: indexed in the background, watched for changes, searchable by
    /// other peers and served by the file server.
    #[arg(long, value_name = "DIR")]
    share: Option<PathBuf>,
    /// A folder whose subfolders (and itself) the control API may share later (`start`
    /// in `highway shell`); repeat for several. Without any, only --share's folder.
    #[arg(long = "share-root", value_name = "DIR")]
    share_roots: Vec<PathBuf>,
    /// TCP port of the file server (HTTP/1.1, on --bind; 0: any free port).
    #[arg(long, value_name = "P", default_value_t = 0)]
    http_port: u16,
    /// Where downloads with a relative destination go, and the only folder (with its
    /// subfolders) downloads may be saved in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    download_dir: PathBuf,
    /// Let downloads be saved anywhere this node's user may write, not only in
    /// --download-dir (whoever holds the control token then chooses where).
    #[arg(long)]
    allow_download_anywhere: bool,
    /// Hops a search travels [default: 5].
    #[arg(long, value_name = "N")]
    ttl: Option<u8>,
    /// How long a peer waits per hop ahead for a forwarded query's answers [default: 1.5s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    query_hop_timeout: Option<Duration>,
    /// How long a relayed answer is cached at first; popular ones up to 6x [default: 10s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    hit_cache_ttl: Option<Duration>,
    /// Cap on the bytes per second the file server sends to other peers, all uploads
    /// together, e.g. 2MiB or 500KiB/s (at least 64KiB) [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_rate)]
    upload_limit: Option<u64>,
    /// Cap on the bytes per second this node's downloads receive, all together, e.g.
    /// 10MiB (at least 64KiB) [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_rate)]
    download_limit: Option<u64>,
    /// The address others reach this node at, when it is not --bind: a router that
    /// forwards this node's ports (fix them with --udp-port, --tcp-port, --http-port and
    /// forward the same numbers), or a cloud VM's public address. Published instead of
    /// --bind; the Gatekeeper offers the node as dialable when its requests come from it.
    #[arg(long, value_name = "IP")]
    public_addr: Option<std::net::IpAddr>,
    /// Do not relay for neighbours behind NATs (a dialable node relays by default: peers
    /// that cannot be dialled are reached through it).
    #[arg(long)]
    no_relay: bool,
    /// Cap on the bytes per second relayed for others, all circuits together, e.g. 5MiB
    /// (at least 64KiB) [default: no cap].
    #[arg(long, value_name = "RATE", value_parser = crate::units::parse_rate)]
    relay_limit: Option<u64>,
    /// Most transfers relayed at once; a full relay says so and the downloader tries
    /// another.
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_relayed: usize,
    /// Testing only: rescan the share every 2 s and react to changes after 50 ms.
    #[arg(long, hide = true)]
    fast_share: bool,
    /// Testing only: drop this fraction (0..1) of datagrams at random, received and sent.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    loss: f64,
    /// Testing only: send this fraction (0..1) of file body frames with a flipped byte,
    /// playing a holder that corrupts data (downloaders must catch and ban it).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    corrupt_uploads: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut core = highway_core::Config::default();
    args.overlay.apply(&mut core);
    if let Some(n) = args.ttl {
        core.default_ttl = n;
    }
    if let Some(d) = args.query_hop_timeout {
        core.query_hop_timeout = d;
    }
    if let Some(d) = args.hit_cache_ttl {
        core.hit_cache_ttl = d;
        core.hit_cache_max_ttl = d * 6;
    }
    let config = NodeConfig {
        bind: args.bind,
        udp_port: args.udp_port,
        tcp_port: args.tcp_port,
        gatekeeper: args.gatekeeper,
        gatekeeper_ca: args.gatekeeper_ca,
        data_dir: args.data_dir,
        control: args.control,
        token_file: args.token_file,
        open_metrics: args.open_metrics,
        core,
        share: args.share,
        share_roots: args.share_roots,
        http_port: args.http_port,
        download_dir: args.download_dir,
        allow_download_anywhere: args.allow_download_anywhere,
        fast_share: args.fast_share,
        upload_limit: args.upload_limit,
        download_limit: args.download_limit,
        public_ip: args.public_addr,
        relay: highway_node::relay::RelayConfig {
            enabled: !args.no_relay,
            max_circuits: args.max_relayed,
            limit: args.relay_limit,
        },
        loss: args.loss,
        corrupt_uploads: args.corrupt_uploads,
    };
    let mut node = highway_node::start(config).await?;
    // Scripts read these lines (see README): keep their form. A closed stdout must not
    // stop the node, so write errors are ignored.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "id: {}", node.id());
    let _ = writeln!(out, "udp: {}", node.udp_addr());
    let _ = writeln!(out, "tcp: {}", node.tcp_addr());
    let _ = writeln!(out, "control: {}", node.control_addr());
    let _ = writeln!(out, "files: {}", node.file_server_addr());
    let _ = writeln!(out, "token: {}", node.token_file().display());
    let _ = out.flush();
    drop(out);
    tokio::select! {
        () = shutdown_signal() => tracing::info!("leaving the overlay"),
        () = node.stopped() => {}
    }
    node.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
