//! Starting and stopping a node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use highway_core::{Command, DownReason, Peer};
use highway_gatekeeper::{ClientError, GatekeeperClient};
use highway_share::transfer::{DownloadOptions, RateLimit, ServerConfig};
use highway_wire::{NodeId, PeerAddr};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::confine::ShareRoots;
use crate::control::{self, Auth, ControlState, NeighbourJson, RuntimeStats, StatusView};
use crate::control_share::App;
use crate::downloads::{Downloads, DownloadsConfig};
use crate::owner::{Counters, Msg, OWNER_QUEUE, Owner};
use crate::searches::Searches;
use crate::sharing::Sharing;
use crate::token::{self, ControlToken};
use crate::{conns, gatekeeper, identity};

/// Events kept for slow [`NodeHandle::events`] subscribers before the oldest are lost.
const EVENT_BUFFER: usize = 256;
/// How long a stopping node lets the control API finish answering.
const CONTROL_DRAIN: Duration = Duration::from_secs(2);

/// Why a node did not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "--bind {bind} listens on every address, and the one to publish (the one this host \
         uses toward the Gatekeeper {gatekeeper}) could not be found: {error}. Give the \
         address other peers should dial with --bind (e.g. 192.0.2.10) or --public-addr"
    )]
    NoAddressToPublish {
        bind: IpAddr,
        gatekeeper: String,
        error: std::io::Error,
    },
    #[error("--bind {0} is a multicast address; give a unicast address peers can dial")]
    MulticastBind(IpAddr),
    #[error(
        "control address {0} is not a loopback address; the control API is only for local processes, so it only listens on 127.0.0.1 or ::1"
    )]
    ControlNotLoopback(SocketAddr),
    #[error("loss must be a fraction between 0 and 1, got {0}")]
    Loss(f64),
    #[error("--corrupt-uploads must be a fraction between 0 and 1, got {0}")]
    CorruptUploads(f64),
    #[error(
        "the {what} limit of {rate} bytes/s is too low: use at least {} bytes/s (64KiB), or no limit",
        highway_share::transfer::MIN_RATE
    )]
    RateTooLow { what: &'static str, rate: u64 },
    #[error(
        "--public-addr {0} cannot be dialled (unspecified, multicast, broadcast or link-local); give the address others reach this node at"
    )]
    PublicAddr(IpAddr),
    #[error("--max-relayed must be at least 1; to stop relaying for others use --no-relay")]
    NoRelayCircuits,
    #[error("invalid protocol settings: {0}")]
    Core(highway_core::ConfigError),
    #[error(transparent)]
    Gatekeeper(#[from] ClientError),
    #[error("identity key {}: {error}", path.display())]
    Identity {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "another node runs with --data-dir {}{}: each node needs a data directory of its own \
         (its identity lives there); give this one another --data-dir",
        dir.display(),
        holder.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    DataDirInUse { dir: PathBuf, holder: Option<u32> },
    #[error("identity key {} is unreadable: {reason}; move it away to get a new identity", path.display())]
    BadIdentity { path: PathBuf, reason: String },
    /// The reason is in the message (not a `source`, which would print it again).
    #[error("cannot share the folder: {0}")]
    Share(crate::sharing::SharingError),
    #[error("cannot start the downloader: {0}")]
    Downloader(std::io::Error),
    #[error(
        "no place for the control token: neither XDG_RUNTIME_DIR nor HOME names an absolute \
         path; set HOME, or give --token-file PATH"
    )]
    NoTokenPlace,
    #[error("cannot write the control token to {}: {error}", path.display())]
    Token {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--share-root {}: {error}; give an existing folder", path.display())]
    ShareRoot {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot bind the {what} on {addr}: {error}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl From<crate::sharing::SharingError> for NodeError {
    fn from(e: crate::sharing::SharingError) -> Self {
        Self::Share(e)
    }
}

/// What happened to this node's neighbours, for whoever watches (tests, a shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    NeighbourUp {
        id: NodeId,
        addr: PeerAddr,
    },
    NeighbourDown {
        id: NodeId,
        reason: DownReason,
    },
    /// The failure detector moved a neighbour to `okay` or `warning`.
    StateChanged {
        id: NodeId,
        state: &'static str,
    },
}

/// A running node. Dropping it stops every task at once, without leaving (like a crash);
/// [`NodeHandle::shutdown`] leaves gracefully.
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    addr: PeerAddr,
    control_addr: SocketAddr,
    file_server: SocketAddr,
    gatekeeper: String,
    app: Arc<App>,
    owner_tx: mpsc::Sender<Msg>,
    owner: Option<JoinHandle<()>>,
    accept: JoinHandle<()>,
    control: Option<JoinHandle<()>>,
    control_stop: Option<oneshot::Sender<()>>,
    /// The control token; its file is removed when the handle is dropped.
    token: Arc<ControlToken>,
    events: broadcast::Sender<NodeEvent>,
    counters: Arc<Counters>,
    /// Held while the node runs: no second node starts on its data directory.
    _data_lock: identity::DataDirLock,
}

async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, NodeError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|error| NodeError::Bind {
            what: "UDP socket",
            addr,
            error,
        })
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| NodeError::Bind { what, addr, error })
}

fn local_addr(
    what: &'static str,
    addr: SocketAddr,
    r: std::io::Result<SocketAddr>,
) -> Result<SocketAddr, NodeError> {
    r.map_err(|error| NodeError::Bind { what, addr, error })
}

/// The local address this host sends from toward the Gatekeeper, of `bind`'s family. No
/// packet is sent: connecting a UDP socket only has the kernel pick the route.
async fn route_toward(gatekeeper: &GatekeeperClient, bind: IpAddr) -> std::io::Result<IpAddr> {
    let (host, port) = gatekeeper
        .host_and_port()
        .ok_or_else(|| std::io::Error::other("its URL names no host"))?;
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .find(|a| a.is_ipv6() == bind.is_ipv6())
        .ok_or_else(|| std::io::Error::other(format!("{host} has no address of that family")))?;
    let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))?;
    socket.connect(target)?;
    let ip = socket.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(std::io::Error::other("no route"));
    }
    Ok(ip)
}

/// Starts a node: validates `config`, loads (or creates) the identity, binds the UDP
/// socket, the TCP listener and the control API, and starts joining.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    let (key, data_lock) = tokio::task::spawn_blocking(move || identity::open(&data_dir))
        .await
        .map_err(|e| NodeError::Identity {
            path: config.data_dir.join(identity::IDENTITY_FILE),
            error: std::io::Error::other(e.to_string()),
        })??;
    let probe =
        GatekeeperClient::new(&config.gatekeeper, key.clone(), gatekeeper::client_config())?;
    // Bound to every address: the node publishes (and speaks from) the one this host uses
    // toward the Gatekeeper, as if it had been bound to it.
    let local_ip = if config.bind.is_unspecified() {
        route_toward(&probe, config.bind)
            .await
            .map_err(|error| NodeError::NoAddressToPublish {
                bind: config.bind,
                gatekeeper: config.gatekeeper.clone(),
                error,
            })?
    } else {
        config.bind
    };
    let client_config = highway_gatekeeper::ClientConfig {
        ca_file: config.gatekeeper_ca.clone(),
        // The Gatekeeper checks published addresses against the request's source.
        local_address: Some(local_ip),
        ..gatekeeper::client_config()
    };
    let client = GatekeeperClient::new(&config.gatekeeper, key.clone(), client_config)?;

    let udp_at = SocketAddr::new(config.bind, config.udp_port);
    let tcp_at = SocketAddr::new(config.bind, config.tcp_port);
    let socket = bind_udp(udp_at).await?;
    let listener = bind_tcp("TCP listener", tcp_at).await?;
    let control_listener = bind_tcp("control API", config.control).await?;
    let http_at = SocketAddr::new(config.bind, config.http_port);
    let http_listener = bind_tcp("file server", http_at).await?;
    let file_server = local_addr("file server", http_at, http_listener.local_addr())?;
    let udp_addr = local_addr("UDP socket", udp_at, socket.local_addr())?;
    let tcp_addr = local_addr("TCP listener", tcp_at, listener.local_addr())?;
    let control_addr = local_addr("control API", config.control, control_listener.local_addr())?;
    // Published: --public-addr when the node is reached at another address than it binds
    // (its router forwards the same ports), else the bound address.
    let published_ip = config.public_ip.unwrap_or(local_ip);
    let addr = PeerAddr::new(published_ip, udp_addr.port(), tcp_addr.port());
    let share_roots = ShareRoots::new(config.share.as_deref(), &config.share_roots)
        .map_err(|(path, error)| NodeError::ShareRoot { path, error })?;
    let (token_file, own_folder) = match &config.token_file {
        Some(path) => (path.clone(), false),
        None => (
            token::default_path(control_addr).ok_or(NodeError::NoTokenPlace)?,
            true,
        ),
    };
    let token = tokio::task::spawn_blocking(move || {
        ControlToken::create(token_file.clone(), own_folder).map_err(|error| NodeError::Token {
            path: token_file,
            error,
        })
    })
    .await
    .map_err(|e| NodeError::Token {
        path: PathBuf::new(),
        error: std::io::Error::other(e.to_string()),
    })??;
    let token = Arc::new(token);

    let now = Instant::now();
    let mut peer = Peer::new(config.core.clone(), key, addr, rand::random(), now);
    let id = peer.id();
    peer.handle_command(now, Command::Join);

    let (owner_tx, owner_rx) = mpsc::channel(OWNER_QUEUE);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let counters = Arc::new(Counters::default());
    let searches = Arc::new(Searches::default());
    let router_slot = crate::reverse_serve::RouterSlot::default();
    let sharing = Sharing::new(
        http_listener,
        crate::sharing::ServerAt {
            bind: file_server,
            advertised: SocketAddr::new(published_ip, file_server.port()),
        },
        config.data_dir.clone(),
        config.fast_share,
        owner_tx.clone(),
        ServerConfig {
            counters: Arc::clone(&counters.file_server),
            upload_limit: config
                .upload_limit
                .map(|rate| Arc::new(RateLimit::new(rate))),
            corrupt_uploads: config.corrupt_uploads,
            // Replaced by the shared folder when sharing starts.
            ..ServerConfig::new(PathBuf::new())
        },
        router_slot.clone(),
    );
    let downloads = Downloads::new(
        owner_tx.clone(),
        searches.clone(),
        counters.clone(),
        DownloadsConfig {
            download_dir: config.download_dir.clone(),
            anywhere: config.allow_download_anywhere,
            options: DownloadOptions {
                rate_limit: config
                    .download_limit
                    .map(|rate| Arc::new(RateLimit::new(rate))),
                // Downloads come from the address this node publishes, as its other traffic.
                local_address: Some(local_ip),
                ..DownloadOptions::default()
            },
            me: tcp_addr,
            data_dir: config.data_dir.clone(),
        },
    )
    .map_err(NodeError::Downloader)?;
    let app = Arc::new(App {
        sharing,
        searches: searches.clone(),
        downloads: Arc::new(downloads),
        share_roots,
    });
    if let Some(root) = &config.share {
        app.sharing.start(root).await?;
    }
    let hello_timeout = config.core.hello_timeout;
    let owner = Owner {
        peer,
        socket,
        rx: owner_rx,
        tx: owner_tx.clone(),
        gatekeeper: Arc::new(client),
        counters: counters.clone(),
        events: events.clone(),
        loss: config.loss,
        searches,
        bind_ip: local_ip,
        reverse: crate::reverse_serve::ReverseServer::new(
            router_slot,
            counters.relay.clone(),
            counters.file_server.connections.clone(),
        ),
    };
    let owner = tokio::spawn(owner.run());
    // Downloads the last run left unfinished go on (they search once the node has
    // neighbours).
    app.downloads.restore();
    let hub = Arc::new(crate::relay::RelayHub::new(
        config.relay.clone(),
        SocketAddr::new(published_ip, tcp_addr.port()),
        local_ip,
        owner_tx.clone(),
        counters.relay.clone(),
    ));
    let accept = tokio::spawn(conns::accept_loop(
        listener,
        owner_tx.clone(),
        hello_timeout,
        hub,
    ));
    let state = ControlState {
        owner: owner_tx.clone(),
        gatekeeper: config.gatekeeper.clone(),
        counters: counters.clone(),
        app: app.clone(),
        auth: Arc::new(Auth {
            token: token.clone(),
            open_metrics: config.open_metrics,
            counters: counters.clone(),
        }),
    };
    let (control_stop, stop) = oneshot::channel::<()>();
    let control_connections = Arc::clone(&counters.control_connections);
    let control = tokio::spawn(async move {
        // Bounded like the other servers: a local user without the token must not be able
        // to hold the control API with trickled requests.
        let serve = highway_serve::serve(
            control_listener,
            control::router(state),
            highway_serve::Limits::control_api(),
            control_connections,
            async {
                let _ = stop.await;
            },
        );
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "the control API stopped");
        }
    });
    tracing::info!(
        id = %id,
        udp = %udp_addr,
        tcp = %tcp_addr,
        control = %control_addr,
        files = %file_server,
        gatekeeper = %config.gatekeeper,
        "node started"
    );
    Ok(NodeHandle {
        id,
        addr,
        control_addr,
        file_server,
        gatekeeper: config.gatekeeper,
        app,
        owner_tx,
        owner: Some(owner),
        accept,
        control: Some(control),
        control_stop: Some(control_stop),
        token,
        events,
        counters,
        _data_lock: data_lock,
    })
}

/// Runs a node until `shutdown` completes (then leaves gracefully) or until it is told
/// to leave through its control API.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let mut node = start(config).await?;
    tokio::select! {
        () = shutdown => {}
        () = node.stopped() => {}
    }
    node.shutdown().await;
    Ok(())
}

impl NodeHandle {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address published to other peers.
    pub fn addr(&self) -> PeerAddr {
        self.addr
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.addr.udp_addr()
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.addr.tcp_addr()
    }

    /// Where the control API listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// Where the file server listens (HTTP/1.1: `GET /v1/files/{hash}`).
    pub fn file_server_addr(&self) -> SocketAddr {
        self.file_server
    }

    /// Neighbour events from now on. A subscriber that falls more than 256 events
    /// behind loses the oldest (and is told so by the receiver).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// What `GET /v1/status` would answer; `None` once the node stopped.
    pub async fn status(&self) -> Option<StatusView> {
        let snap = self.state().snapshot().await?;
        let runtime = RuntimeStats::new(self.counters.as_ref(), &snap.stats);
        Some(control::status_view(
            &snap,
            &self.gatekeeper,
            runtime,
            &self.counters,
        ))
    }

    /// What `GET /v1/neighbors` would answer; `None` once the node stopped.
    pub async fn neighbours(&self) -> Option<Vec<NeighbourJson>> {
        let snap = self.state().snapshot().await?;
        Some(snap.neighbours.iter().map(NeighbourJson::from).collect())
    }

    fn state(&self) -> ControlState {
        ControlState {
            owner: self.owner_tx.clone(),
            gatekeeper: self.gatekeeper.clone(),
            counters: self.counters.clone(),
            app: self.app.clone(),
            auth: Arc::new(Auth {
                token: self.token.clone(),
                open_metrics: false,
                counters: self.counters.clone(),
            }),
        }
    }

    /// The bearer token the control API requires (`Authorization: Bearer TOKEN`).
    pub fn control_token(&self) -> &str {
        &self.token.secret
    }

    /// The file the control token was written to (mode 0600), removed when the node
    /// stops.
    pub fn token_file(&self) -> &std::path::Path {
        &self.token.file
    }

    /// Completes when the node stopped on its own (after `POST /v1/leave`). Cancel-safe.
    pub async fn stopped(&mut self) {
        if let Some(owner) = self.owner.as_mut() {
            let _ = owner.await;
            self.owner = None;
        }
    }

    /// Leaves gracefully — neighbours get a Leave datagram, the Gatekeeper a leave — and
    /// stops every task. After [`NodeHandle::stopped`] it only stops the remaining tasks,
    /// letting the control API finish its answers first.
    pub async fn shutdown(mut self) {
        let (reply, done) = oneshot::channel();
        if self
            .owner_tx
            .send(Msg::Leave { reply: Some(reply) })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        self.stopped().await;
        self.close().await;
    }

    /// Stops the remaining tasks once the owner task ended, letting the control API
    /// finish its answers (such as the one to `POST /v1/leave`).
    async fn close(&mut self) {
        self.accept.abort();
        if let Some(stop) = self.control_stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut control) = self.control.take()
            && tokio::time::timeout(CONTROL_DRAIN, &mut control)
                .await
                .is_err()
        {
            control.abort();
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            owner.abort();
        }
        self.accept.abort();
        if let Some(control) = &self.control {
            control.abort();
        }
    }
}
