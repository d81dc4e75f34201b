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
    Catalog, Command, ConnectOutcome, DownReason, Event, InboundAnswer, LinkUp, NeighbourView,
    Peer, Phase, SearchError, SearchRequest, Stats,
};
use highway_gatekeeper::GatekeeperClient;
use highway_wire::peer::QueryId;
use highway_wire::peer::datagram::{self, Datagram};
use highway_wire::peer::handshake::HandshakeError;
use highway_wire::peer::{MAX_DATAGRAM, NeighbourEntry};
use highway_wire::summary::Summary;
use highway_wire::{NodeId, PeerAddr};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::NodeEvent;
use crate::gatekeeper::{self, GatekeeperCall};
use crate::handshake::{self, Dial};
use crate::searches::Searches;

/// Capacity of the channel into the owner task.
pub const OWNER_QUEUE: usize = 1024;
/// Outbound handshakes running at once (the core asks for fewer; this is a backstop).
pub const MAX_DIALS: usize = 16;
/// Receive buffer: larger than any valid datagram, so an oversized one reaches the core
/// whole and is refused there rather than silently truncated into something valid.
const RECV_BUFFER: usize = 2048;
/// Datagrams kept for an outbound link whose handshake has not reported back yet.
const MAX_EARLY_DATAGRAMS: usize = 8;
/// Shortest gap between two timer wake-ups, so a deadline the core leaves in the past
/// cannot spin the task.
const MIN_TIMER_GAP: Duration = Duration::from_millis(5);
/// How long a leaving node waits for the Gatekeeper to acknowledge.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP-carried links at once (each is a link, so a few times `max_degree` is plenty).
const MAX_STREAMS: usize = 64;
/// A kept connection younger than this stays even when no link uses it yet.
const STREAM_GRACE: Duration = Duration::from_secs(10);

/// What other tasks tell the owner task.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A result of work the core asked for (handshakes, Gatekeeper answers).
    Command(Command),
    /// A joined Gatekeeper answered with candidates; the status loop may start.
    Joined {
        candidates: Vec<NeighbourEntry>,
        status_interval: Duration,
        verdict: GatekeeperVerdict,
    },
    /// What the Gatekeeper said of our addresses in a status answer.
    Verdict(GatekeeperVerdict),
    /// An inbound handshake's hello: the core decides and builds the welcome.
    Hello {
        /// The connection's source address.
        from: std::net::IpAddr,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<InboundAnswer, HandshakeError>>,
    },
    /// An inbound handshake verified the confirm; the reply says whether the core
    /// installed the link (only then is "established" written).
    InboundLinkUp {
        up: LinkUp,
        reply: oneshot::Sender<bool>,
    },
    /// A copy of the state, for the control API and the Gatekeeper status.
    Snapshot { reply: oneshot::Sender<Snapshot> },
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
    /// A link's TCP connection is kept to carry its datagrams (UDP blocked): sends to
    /// `addr` go to `tx` from now on.
    StreamOpened {
        addr: SocketAddr,
        tx: mpsc::Sender<Vec<u8>>,
    },
    /// A datagram that came over such a connection.
    StreamDatagram { from: SocketAddr, bytes: Vec<u8> },
    /// That connection closed.
    StreamClosed { addr: SocketAddr },
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
    pub neighbours: Vec<NeighbourView>,
    pub stats: Stats,
    pub reachability: highway_core::Reachability,
    /// The Gatekeeper's last verdict (`None` before the first answer).
    pub verdict: Option<GatekeeperVerdict>,
}

/// Counters of what the runtime (not the core) did, shared with the handshake tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub outbound_started: AtomicU64,
    pub outbound_linked: AtomicU64,
    pub outbound_full: AtomicU64,
    pub outbound_rejected: AtomicU64,
    pub outbound_unreachable: AtomicU64,
    pub outbound_refused_busy: AtomicU64,
    pub inbound_linked: AtomicU64,
    pub inbound_failed: AtomicU64,
    pub inbound_refused_busy: AtomicU64,
    pub inbound_refused_per_ip: AtomicU64,
    pub inbound_hello_timeouts: AtomicU64,
    pub early_datagrams: AtomicU64,
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
    /// The file server's own counters (it outlives a share switch, so they live here).
    pub file_server: Arc<highway_share::transfer::ServerCounters>,
    /// The control API's connections (caps, header deadline).
    pub control_connections: Arc<highway_serve::ServeCounters>,
    /// The last failed dial and the last Gatekeeper error, as text: what a node with no
    /// neighbours shows to say why.
    pub last_dial_error: std::sync::Mutex<Option<String>>,
    pub last_gatekeeper_error: std::sync::Mutex<Option<String>>,
    /// Relaying and reverse connections.
    pub relay: Arc<crate::relay::RelayCounters>,
    /// Datagrams dropped because a TCP-carried link's queue was full.
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

    pub fn note_gatekeeper_error(&self, text: String) {
        if let Ok(mut last) = self.last_gatekeeper_error.lock() {
            *last = Some(text);
        }
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
    dial_permits: Arc<Semaphore>,
    join_task: Option<AbortHandle>,
    status_task: Option<AbortHandle>,
    /// Datagrams that arrived for an outbound link before its handshake task reported
    /// the link up, by our link id (see [`Running::on_datagram`]).
    early: HashMap<u64, Vec<(SocketAddr, Vec<u8>)>>,
    leave_gatekeeper: bool,
    rng: SmallRng,
    last_timer: Option<Instant>,
    /// The Gatekeeper's last word on our addresses.
    verdict: Option<GatekeeperVerdict>,
    /// Links carried over TCP, by the address the core knows them as, with when each
    /// connection was kept.
    streams: HashMap<SocketAddr, (mpsc::Sender<Vec<u8>>, Instant)>,
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
            dial_permits: Arc::new(Semaphore::new(MAX_DIALS)),
            join_task: None,
            status_task: None,
            early: HashMap::new(),
            leave_gatekeeper: false,
            rng: SmallRng::from_rng(&mut rand::rng()),
            last_timer: None,
            verdict: None,
            streams: HashMap::new(),
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
        // The responder installs its link, and heartbeats on it, before writing the
        // "established" frame; that heartbeat can beat our handshake task's report to
        // this task. Handed to the core now, it would be an unknown link and provoke a
        // "not your neighbour" that tears the new link down, so hold it until then.
        if !self.early.is_empty()
            && bytes.len() <= MAX_DATAGRAM
            && let Ok(Datagram::Link(frame)) = datagram::decode(bytes)
            && let Some(held) = self.early.get_mut(&frame.link_id)
        {
            bump(&self.o.counters.early_datagrams);
            if held.len() < MAX_EARLY_DATAGRAMS {
                held.push((from, bytes.to_vec()));
            }
            return;
        }
        self.o.peer.handle_datagram(Instant::now(), from, bytes);
    }

    /// Acts on `msg`; a request to leave is returned (with its reply) for the run loop.
    fn on_msg(&mut self, msg: Msg) -> Option<Option<oneshot::Sender<()>>> {
        let now = Instant::now();
        match msg {
            Msg::Command(cmd) => self.on_result(now, cmd),
            Msg::Verdict(verdict) => self.on_verdict(verdict),
            Msg::StreamOpened { addr, tx } => {
                // Bounded like links: a stream exists only for a link being set up or up.
                if self.streams.len() < MAX_STREAMS {
                    self.streams.insert(addr, (tx, now));
                }
            }
            Msg::StreamDatagram { from, bytes } => self.on_datagram(from, &bytes),
            Msg::StreamClosed { addr } => {
                self.streams.remove(&addr);
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
            Msg::Hello {
                from,
                payload,
                reply,
            } => {
                let answer = self.o.peer.answer_hello(now, from, &payload);
                if let Err(Ok(answer)) = reply.send(answer)
                    && answer.responder.is_some()
                {
                    // The connection gave up while we decided: release the slot.
                    self.o.peer.handle_command(
                        now,
                        Command::HandshakeAborted {
                            my_link_id: answer.my_link_id,
                        },
                    );
                }
            }
            Msg::InboundLinkUp { up, reply } => {
                let my_link_id = up.my_link_id;
                self.o.peer.handle_command(now, Command::LinkUp(up));
                let _ = reply.send(self.o.peer.has_link(my_link_id));
            }
            Msg::Snapshot { reply } => {
                let peer = &self.o.peer;
                let _ = reply.send(Snapshot {
                    id: peer.id(),
                    addr: peer.addr(),
                    phase: peer.phase(),
                    target_degree: peer.config().target_degree,
                    max_degree: peer.config().max_degree,
                    neighbours: peer.neighbours(now),
                    stats: peer.stats().clone(),
                    reachability: peer.reachability(),
                    verdict: self.verdict,
                });
            }
            Msg::Leave { reply } => return Some(reply),
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

    /// A handshake's or the Gatekeeper's result, for the core.
    /// Drops the TCP connections no link travels over any more (the carrying task then
    /// closes its connection), sparing ones kept in the last few seconds whose link may
    /// still be on its way up.
    fn close_unused_streams(&mut self) {
        if self.streams.is_empty() {
            return;
        }
        let now = Instant::now();
        let used: std::collections::HashSet<SocketAddr> = self
            .o
            .peer
            .neighbours(now)
            .into_iter()
            .filter_map(|n| n.udp_path)
            .collect();
        self.streams.retain(|addr, (_, since)| {
            used.contains(addr) || now.duration_since(*since) < STREAM_GRACE
        });
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

    fn on_result(&mut self, now: Instant, cmd: Command) {
        let counters = &self.o.counters;
        let finished = match &cmd {
            Command::LinkUp(up) if !up.inbound => {
                bump(&counters.outbound_linked);
                Some(up.my_link_id)
            }
            Command::ConnectFailed {
                my_link_id,
                outcome,
            } => {
                bump(match outcome {
                    ConnectOutcome::Unreachable => &counters.outbound_unreachable,
                    // Reported from `on_event` directly, never through here.
                    ConnectOutcome::NotStarted => &counters.outbound_refused_busy,
                    ConnectOutcome::Full { .. } => &counters.outbound_full,
                    ConnectOutcome::Rejected { .. } => &counters.outbound_rejected,
                });
                Some(*my_link_id)
            }
            _ => None,
        };
        let held = finished
            .and_then(|id| self.early.remove(&id))
            .unwrap_or_default();
        self.o.peer.handle_command(now, cmd);
        for (from, bytes) in held {
            self.o.peer.handle_datagram(now, from, &bytes);
        }
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
                if let Some((stream, _)) = self.streams.get(&t.to) {
                    if stream.try_send(t.bytes).is_err() {
                        bump(&self.o.counters.stream_dropped);
                    }
                    continue;
                }
                if let Err(e) = self.o.socket.send_to(&t.bytes, t.to).await {
                    bump(&self.o.counters.udp_send_errors);
                    tracing::debug!(to = %t.to, error = %e, "UDP send failed");
                }
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

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ReverseConnect { to, via, hello, .. } => {
                self.o.reverse.connect(to, via, hello, self.o.bind_ip);
            }
            Event::GatekeeperJoin => {
                let call = self.gatekeeper_call();
                let tx = self.o.tx.clone();
                let addr = self.o.peer.addr();
                let degree = self.o.peer.degree();
                self.join_task = Some(self.tasks.spawn(async move {
                    let msg = call.join_for_candidates(addr, degree).await;
                    let _ = tx.send(msg).await;
                }));
            }
            Event::Connect {
                my_link_id,
                addr,
                expected,
                initiator,
                hello,
                stream,
            } => {
                let Ok(permit) = self.dial_permits.clone().try_acquire_owned() else {
                    bump(&self.o.counters.outbound_refused_busy);
                    self.o.peer.handle_command(
                        Instant::now(),
                        Command::ConnectFailed {
                            my_link_id,
                            outcome: ConnectOutcome::NotStarted,
                        },
                    );
                    return;
                };
                bump(&self.o.counters.outbound_started);
                self.early.insert(my_link_id, Vec::new());
                let dial = Dial {
                    local_ip: self.o.bind_ip,
                    my_link_id,
                    addr,
                    expected,
                    initiator,
                    hello,
                    stream: stream.then(|| self.o.tx.clone()),
                };
                let timeout = self.o.peer.config().handshake_timeout;
                let tx = self.o.tx.clone();
                let counters = self.o.counters.clone();
                self.tasks.spawn(async move {
                    let cmd = handshake::dial(dial, timeout, &counters).await;
                    drop(permit);
                    let _ = tx.send(Msg::Command(cmd)).await;
                });
            }
            Event::NeighbourUp { id, addr } => {
                tracing::info!(peer = %id.short(), %addr, "neighbour up");
                let _ = self.o.events.send(NodeEvent::NeighbourUp { id, addr });
            }
            Event::NeighbourDown { id, reason } => {
                self.close_unused_streams();
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
