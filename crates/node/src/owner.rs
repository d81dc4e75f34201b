//! The owner task: the only place the core [`Peer`] lives.
//!
//! It waits on three inputs — a datagram on the UDP socket, the core's next timeout, and
//! a message from another task — feeds each to the core with the current time, then sends
//! every datagram the core queued and acts on every event (spawning the TCP and
//! Gatekeeper work, which reports back through the same bounded channel). Nothing it does
//! waits on a peer: slow work runs in tasks, so one stuck connection cannot stall it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use highway_core::{
    Catalog, Command, ConnId, ConnIo, DownReason, Event, NeighbourView, Peer, Phase, SearchError,
    SearchRequest, Stats,
};
use highway_gatekeeper::GatekeeperClient;
use highway_wire::peer::NeighbourEntry;
use highway_wire::peer::QueryId;
use highway_wire::peer::QueryTarget;
use highway_wire::summary::Summary;
use highway_wire::{NodeId, PeerAddr};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::NodeEvent;
use crate::conns::{self, ConnCmd, Dial};
use crate::gatekeeper::{self, GatekeeperCall};
use crate::searches::Searches;

/// Capacity of the channel into the owner task.
pub const OWNER_QUEUE: usize = 1024;
/// Receive buffer: larger than any valid datagram, so an oversized one reaches the core
/// whole and is refused there rather than silently truncated into something valid.
const RECV_BUFFER: usize = 2048;
/// Shortest gap between two timer wake-ups, so a deadline the core leaves in the past
/// cannot spin the task.
const MIN_TIMER_GAP: Duration = Duration::from_millis(5);
/// How long a leaving node waits for the Gatekeeper to acknowledge.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
/// What other tasks tell the owner task.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A result of work the core asked for (the Gatekeeper could not be asked).
    Command(Command),
    /// A joined Gatekeeper answered with candidates; the status loop may start.
    Joined {
        candidates: Vec<NeighbourEntry>,
        status_interval: Duration,
        verdict: GatekeeperVerdict,
    },
    /// What the Gatekeeper said of our addresses in a status answer.
    Verdict(GatekeeperVerdict),
    /// A copy of the state, for the control API and the Gatekeeper status.
    Snapshot { reply: oneshot::Sender<Snapshot> },
    /// This node's own hit for a file it shares (for a ticket): empty when it does not
    /// share `content` or serves no files.
    OwnHits {
        content: highway_wire::ContentId,
        reply: oneshot::Sender<Vec<highway_wire::peer::Hit>>,
    },
    /// Leave gracefully and stop; the reply comes once neighbours and the Gatekeeper
    /// were told.
    Leave { reply: Option<oneshot::Sender<()>> },
    /// The share changed: where the core looks up local files, and the file server.
    SetCatalog {
        catalog: Option<Arc<dyn Catalog>>,
        server: Option<SocketAddr>,
    },
    /// A new share summary to announce (or none).
    Summary(Option<Summary>),
    /// Ask neighbour `holder` (behind a NAT) to connect to `to` with `token` (relays).
    RequestReverse {
        holder: NodeId,
        token: [u8; 16],
        to: SocketAddr,
        reply: oneshot::Sender<Result<(), highway_core::ReverseError>>,
    },
    /// A TCP connection arrived on the handshake port: the core admits it (and names it)
    /// or refuses it; `tx` takes what the core wants done with it.
    Accepted {
        from: SocketAddr,
        tx: mpsc::Sender<ConnCmd>,
        reply: oneshot::Sender<Option<ConnId>>,
    },
    /// Bytes read from a connection.
    ConnBytes { conn: ConnId, bytes: Vec<u8> },
    /// A connection closed (or could not be opened, or went to the relay hub).
    ConnClosed { conn: ConnId },
    /// Start a search; its hits go to the search book.
    Search {
        request: SearchRequest,
        reply: oneshot::Sender<Result<QueryId, SearchError>>,
    },
}

/// How the Gatekeeper sees this node: from which IP its requests come, and whether it
/// offers the node to others as dialable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GatekeeperVerdict {
    pub observed_ip: Option<std::net::IpAddr>,
    pub dialable: bool,
}

/// The state the control API and the status loop see.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub id: NodeId,
    pub addr: PeerAddr,
    pub phase: Phase,
    pub target_degree: usize,
    pub max_degree: usize,
    pub undialable_slots: usize,
    pub neighbours: Vec<NeighbourView>,
    pub stats: Stats,
    pub reachability: highway_core::Reachability,
    /// The Gatekeeper's last verdict (`None` before the first answer).
    pub verdict: Option<GatekeeperVerdict>,
}

/// Counters of what the runtime (not the core) did, shared with the handshake tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub loss_dropped_in: AtomicU64,
    pub loss_dropped_out: AtomicU64,
    pub udp_send_errors: AtomicU64,
    pub gatekeeper_errors: AtomicU64,
    pub timer_wakeups: AtomicU64,
    /// Control API requests refused for a missing or wrong token.
    pub control_unauthorized: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub downloads_done: AtomicU64,
    pub downloads_failed: AtomicU64,
    pub downloads_cancelled: AtomicU64,
    /// The file server's own counters (it outlives a share switch, so they live here).
    pub file_server: Arc<highway_share::transfer::ServerCounters>,
    /// The control API's connections (caps, header deadline).
    pub control_connections: Arc<highway_serve::ServeCounters>,
    /// The last failed dial and the last Gatekeeper error, as text: what a node with no
    /// neighbours shows to say why.
    pub last_dial_error: std::sync::Mutex<Option<String>>,
    pub last_gatekeeper_error: std::sync::Mutex<Option<String>>,
    /// The last Gatekeeper request failed.
    pub gatekeeper_down: std::sync::atomic::AtomicBool,
    /// Relaying and reverse connections.
    pub relay: Arc<crate::relay::RelayCounters>,
    /// Writes dropped because a connection's queue was full (datagrams of a TCP-carried
    /// link the connection could not keep up with).
    pub stream_dropped: AtomicU64,
    /// Others can dial this node (the Gatekeeper's last verdict; false until it speaks):
    /// downloads then ask holders behind NATs to push instead of relaying.
    pub dialable: std::sync::atomic::AtomicBool,
}

impl Counters {
    pub fn note_dial_error(&self, text: String) {
        if let Ok(mut last) = self.last_dial_error.lock() {
            *last = Some(text);
        }
    }

    /// Notes a failed Gatekeeper request; true when it is the first since the Gatekeeper
    /// last answered (logged as a warning; the repeats only at debug level, so a node
    /// whose Gatekeeper is down does not fill the log or the shell with them).
    pub fn note_gatekeeper_error(&self, text: String) -> bool {
        if let Ok(mut last) = self.last_gatekeeper_error.lock() {
            *last = Some(text);
        }
        !self.gatekeeper_down.swap(true, Ordering::Relaxed)
    }

    /// Notes a Gatekeeper answer; true when it ends a run of failures.
    pub fn note_gatekeeper_answer(&self) -> bool {
        self.gatekeeper_down.swap(false, Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything the owner task needs; built by [`crate::start`].
pub(crate) struct Owner {
    pub peer: Peer,
    pub socket: UdpSocket,
    pub rx: mpsc::Receiver<Msg>,
    /// Handed to the tasks it spawns, so they can report back.
    pub tx: mpsc::Sender<Msg>,
    pub gatekeeper: Arc<GatekeeperClient>,
    pub counters: Arc<Counters>,
    pub events: broadcast::Sender<NodeEvent>,
    pub loss: f64,
    /// Where search hits and ends are recorded for the control API.
    pub searches: Arc<Searches>,
    /// Serves the file server over reverse connections neighbours ask for.
    pub reverse: crate::reverse_serve::ReverseServer,
    /// The address sockets bind (`--bind`); the peer publishes `--public-addr` when given.
    pub bind_ip: std::net::IpAddr,
}

/// The owner task's working state around [`Owner`].
struct Running {
    o: Owner,
    /// Handshakes and Gatekeeper calls; dropping it (when the task ends) aborts them.
    tasks: JoinSet<()>,
    join_task: Option<AbortHandle>,
    status_task: Option<AbortHandle>,
    leave_gatekeeper: bool,
    rng: SmallRng,
    last_timer: Option<Instant>,
    /// The Gatekeeper's last word on our addresses.
    verdict: Option<GatekeeperVerdict>,
    /// The core's TCP connections: where to pass what it wants done with each. Bounded
    /// by the core's caps on connections.
    conns: HashMap<ConnId, mpsc::Sender<ConnCmd>>,
}

enum Input {
    Datagram(usize, SocketAddr),
    RecvError(std::io::Error),
    Timer,
    Msg(Msg),
    Closed,
    TaskDone,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("id", &self.peer.id())
            .finish_non_exhaustive()
    }
}

impl Owner {
    /// Runs until the node left (or every sender is gone).
    pub async fn run(self) {
        let mut state = Running {
            o: self,
            tasks: JoinSet::new(),
            join_task: None,
            status_task: None,
            leave_gatekeeper: false,
            rng: SmallRng::from_rng(&mut rand::rng()),
            last_timer: None,
            verdict: None,
            conns: HashMap::new(),
        };
        state.flush().await;
        state.run().await;
    }
}

impl Running {
    async fn run(&mut self) {
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut recv_errors = 0u32;
        loop {
            let deadline = self.o.peer.poll_timeout().map(|at| match self.last_timer {
                Some(last) => at.max(last + MIN_TIMER_GAP),
                None => at,
            });
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                r = self.o.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => Input::Datagram(n, from),
                    Err(e) => Input::RecvError(e),
                },
                () = timer => Input::Timer,
                msg = self.o.rx.recv() => msg.map_or(Input::Closed, Input::Msg),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => Input::TaskDone,
            };
            match input {
                Input::Datagram(n, from) => {
                    recv_errors = 0;
                    self.on_datagram(from, &buf[..n]);
                }
                Input::RecvError(e) => {
                    // Linux reports ICMP errors for earlier sends here; they say nothing
                    // about this socket. Back off only if errors persist.
                    recv_errors += 1;
                    tracing::debug!(error = %e, "UDP receive error");
                    if recv_errors > 100 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Input::Timer => {
                    let now = Instant::now();
                    self.last_timer = Some(now);
                    bump(&self.o.counters.timer_wakeups);
                    self.o.peer.handle_timeout(now);
                }
                Input::Msg(msg) => {
                    if let Some(reply) = self.on_msg(msg) {
                        self.leave().await;
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                        return;
                    }
                }
                Input::Closed => return,
                Input::TaskDone => {}
            }
            self.flush().await;
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.o.loss > 0.0 && self.rng.random::<f64>() < self.o.loss {
            bump(&self.o.counters.loss_dropped_in);
            return;
        }
        self.o.peer.handle_datagram(Instant::now(), from, bytes);
    }

    /// Acts on `msg`; a request to leave is returned (with its reply) for the run loop.
    fn on_msg(&mut self, msg: Msg) -> Option<Option<oneshot::Sender<()>>> {
        let now = Instant::now();
        match msg {
            Msg::Command(cmd) => self.o.peer.handle_command(now, cmd),
            Msg::Verdict(verdict) => self.on_verdict(verdict),
            Msg::Accepted { from, tx, reply } => {
                let admitted = self.o.peer.handle_accept(now, from);
                if let Some(conn) = admitted {
                    self.conns.insert(conn, tx);
                }
                if reply.send(admitted).is_err()
                    && let Some(conn) = admitted
                {
                    // The accept loop is gone (stopping): forget the connection.
                    self.conns.remove(&conn);
                    self.o.peer.handle_conn_closed(now, conn);
                }
            }
            Msg::ConnBytes { conn, bytes } => self.o.peer.handle_conn_bytes(now, conn, &bytes),
            Msg::ConnClosed { conn } => {
                self.conns.remove(&conn);
                self.o.peer.handle_conn_closed(now, conn);
            }
            Msg::Joined {
                candidates,
                status_interval,
                verdict,
            } => {
                // Before the candidates: our hellos must say whether we can be dialled.
                self.on_verdict(verdict);
                if self.status_task.is_none() {
                    let call = self.gatekeeper_call();
                    let tx = self.o.tx.clone();
                    self.status_task = Some(self.tasks.spawn(gatekeeper::status_loop(
                        call,
                        tx,
                        status_interval,
                    )));
                }
                self.o
                    .peer
                    .handle_command(now, Command::Candidates(candidates));
            }
            Msg::Snapshot { reply } => {
                let peer = &self.o.peer;
                let _ = reply.send(Snapshot {
                    id: peer.id(),
                    addr: peer.addr(),
                    phase: peer.phase(),
                    target_degree: peer.config().target_degree,
                    max_degree: peer.config().max_degree,
                    undialable_slots: peer.config().undialable_slots,
                    neighbours: peer.neighbours(now),
                    stats: peer.stats().clone(),
                    reachability: peer.reachability(),
                    verdict: self.verdict,
                });
            }
            Msg::Leave { reply } => return Some(reply),
            Msg::OwnHits { content, reply } => {
                let target = QueryTarget::Hash(content);
                let _ = reply.send(self.o.peer.own_hits(&target, 0, 1));
            }
            Msg::RequestReverse {
                holder,
                token,
                to,
                reply,
            } => {
                let _ = reply.send(self.o.peer.request_reverse(&holder, token, to));
            }
            Msg::SetCatalog { catalog, server } => self.o.peer.set_catalog(catalog, server),
            Msg::Summary(summary) => self.o.peer.set_summary(summary.as_ref()),
            Msg::Search { request, reply } => {
                let target = request.target.clone();
                let cap = request.max_results;
                let started = self.o.peer.start_search(now, request);
                if let Ok(id) = &started {
                    self.o.searches.begin(id, &target, cap, now);
                }
                let _ = reply.send(started);
            }
        }
        None
    }

    fn on_verdict(&mut self, verdict: GatekeeperVerdict) {
        if self.verdict.is_none_or(|v| v.dialable != verdict.dialable) {
            if verdict.dialable {
                tracing::info!("the Gatekeeper offers this node to others as dialable");
            } else {
                tracing::warn!(
                    observed = ?verdict.observed_ip,
                    "the Gatekeeper sees this node's requests come from another address \
                     than the one it publishes (a NAT): others will not dial it, it links \
                     by dialling out"
                );
            }
        }
        self.verdict = Some(verdict);
        self.o.peer.set_dialable(verdict.dialable);
        self.o
            .counters
            .dialable
            .store(verdict.dialable, Ordering::Relaxed);
    }

    fn gatekeeper_call(&self) -> GatekeeperCall {
        GatekeeperCall {
            client: self.o.gatekeeper.clone(),
            capacity: u16::try_from(self.o.peer.config().max_degree).unwrap_or(u16::MAX),
            counters: self.o.counters.clone(),
        }
    }

    /// Sends what the core queued and acts on its events, until both queues are empty.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.o.peer.poll_transmit() {
                progressed = true;
                if self.o.loss > 0.0 && self.rng.random::<f64>() < self.o.loss {
                    bump(&self.o.counters.loss_dropped_out);
                    continue;
                }
                if let Err(e) = self.o.socket.send_to(&t.bytes, t.to).await {
                    bump(&self.o.counters.udp_send_errors);
                    tracing::debug!(to = %t.to, error = %e, "UDP send failed");
                }
            }
            while let Some(io) = self.o.peer.poll_conn() {
                progressed = true;
                self.on_conn_io(io);
            }
            while let Some(event) = self.o.peer.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            if !progressed {
                return;
            }
        }
    }

    /// Passes what the core wants done with a connection to the connection's task.
    fn on_conn_io(&mut self, io: ConnIo) {
        match io {
            ConnIo::Open { conn, to } => {
                let (tx, rx) = mpsc::channel(conns::CONN_QUEUE);
                self.conns.insert(conn, tx);
                let dial = Dial {
                    conn,
                    to,
                    local_ip: self.o.bind_ip,
                    timeout: self.o.peer.config().handshake_timeout,
                };
                let owner = self.o.tx.clone();
                let counters = self.o.counters.clone();
                self.tasks.spawn(conns::dial(dial, owner, rx, counters));
            }
            ConnIo::Write { conn, bytes } => {
                if let Some(tx) = self.conns.get(&conn)
                    && tx.try_send(ConnCmd::Write(bytes)).is_err()
                {
                    bump(&self.o.counters.stream_dropped);
                }
            }
            // Dropping the sender ends the task too, should the queue be full.
            ConnIo::Close { conn } => {
                if let Some(tx) = self.conns.remove(&conn) {
                    let _ = tx.try_send(ConnCmd::Close);
                }
            }
            ConnIo::Reverse { conn, hello } => {
                if let Some(tx) = self.conns.remove(&conn) {
                    let _ = tx.try_send(ConnCmd::Reverse(hello));
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ReverseConnect { to, via, hello, .. } => {
                self.o.reverse.connect(to, via, hello, self.o.bind_ip);
            }
            Event::GatekeeperJoin => {
                let call = self.gatekeeper_call();
                let tx = self.o.tx.clone();
                let addr = self.o.peer.addr();
                let degree = self.o.peer.dialable_degree();
                self.join_task = Some(self.tasks.spawn(async move {
                    let msg = call.join_for_candidates(addr, degree).await;
                    let _ = tx.send(msg).await;
                }));
            }
            Event::NeighbourUp { id, addr } => {
                tracing::info!(peer = %id.short(), %addr, "neighbour up");
                let _ = self.o.events.send(NodeEvent::NeighbourUp { id, addr });
            }
            Event::NeighbourDown { id, reason } => {
                if reason == DownReason::Failed {
                    tracing::warn!(peer = %id.short(), reason = reason.name(), "neighbour down");
                } else {
                    tracing::info!(peer = %id.short(), reason = reason.name(), "neighbour down");
                }
                let _ = self.o.events.send(NodeEvent::NeighbourDown { id, reason });
            }
            Event::StateChanged { id, state } => {
                tracing::info!(peer = %id.short(), state, "neighbour state changed");
                let _ = self.o.events.send(NodeEvent::StateChanged { id, state });
            }
            Event::ReportFailed { id } => {
                let call = self.gatekeeper_call();
                self.tasks.spawn(async move { call.report(id).await });
            }
            Event::GatekeeperLeave => self.leave_gatekeeper = true,
            Event::SearchHits { id, hits } => {
                self.o.searches.add_hits(&id, hits, Instant::now());
            }
            Event::SearchDone { id, .. } => self.o.searches.finish(&id, Instant::now()),
        }
    }

    /// Leaves: tells the neighbours (the core's Leave datagrams), then the Gatekeeper.
    async fn leave(&mut self) {
        // A status or join landing after the leave would register us again.
        for task in [self.status_task.take(), self.join_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        self.o.peer.handle_command(Instant::now(), Command::Leave);
        self.flush().await;
        if std::mem::take(&mut self.leave_gatekeeper) {
            match tokio::time::timeout(LEAVE_TIMEOUT, self.o.gatekeeper.leave()).await {
                Ok(Ok(_)) => tracing::info!("left the Gatekeeper"),
                Ok(Err(e)) => tracing::warn!(error = %e, "telling the Gatekeeper we leave failed"),
                Err(_) => tracing::warn!("the Gatekeeper did not acknowledge our leave in time"),
            }
        }
        self.tasks.abort_all();
        tracing::info!("left the overlay");
    }
}
