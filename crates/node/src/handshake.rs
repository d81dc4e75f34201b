//! The TCP side of linking: dialling a peer the core asked for, and answering peers that
//! dial us. The decisions are the core's (through the owner task); this module only
//! moves frames, under a deadline, and reports how it went.
//!
//! Outbound: connect, write the hello, read the welcome, finish with the `Initiator`;
//! when linked, write the confirm and wait for the responder's "established" frame, which
//! says the link is installed on its side, before telling the core.
//!
//! Inbound: read the hello, let the core answer it, write the welcome; when the core
//! accepted, read the confirm, verify it, hand the link to the core, and write
//! "established" only if the core installed it. Either way the connection then closes:
//! the link lives on UDP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use highway_core::{Command, ConnectOutcome, LinkUp};
use highway_wire::peer::handshake::{
    Decision, HandshakeError, Initiator, InitiatorOutcome, MAX_FRAME, established_frame,
    is_established, split_frame,
};
use highway_wire::peer::reverse::ReverseHello;
use highway_wire::peer::{DecodeError, NeighbourEntry};
use highway_wire::{NodeId, PeerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::owner::{Counters, Msg};
use crate::relay::{RelayHub, bump};
use crate::stream_link;

/// Inbound handshakes served at once; further connections are closed at once.
pub const MAX_INBOUND_HANDSHAKES: usize = 64;
/// Of those, from one source address (an IPv6 /64 counts as one): idle connections from
/// one address cannot take the slots a handshake from another needs.
pub const MAX_INBOUND_HANDSHAKES_PER_IP: usize = 4;
/// How long a new connection has to deliver its hello. An initiator writes it as soon as
/// it is connected, so only an idle (or trickling) connection takes longer.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one handshake connection ended without a link. Nothing was installed (or the
/// core was told to release what it reserved).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("bad frame: {0}")]
    Frame(#[from] DecodeError),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("timed out")]
    Timeout,
    #[error("the peer did not confirm that the link is established")]
    NotEstablished,
    #[error("the node is stopping")]
    Stopping,
}

/// A TCP stream read one length-prefixed frame at a time, never buffering more than
/// one maximal frame.
struct Framed {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Framed {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(256),
        }
    }

    async fn read_frame(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some((payload, used)) = split_frame(&self.buf)? {
                let payload = payload.to_vec();
                self.buf.drain(..used);
                return Ok(payload);
            }
            // split_frame refused any declared length over MAX_FRAME, so a whole frame
            // always fits in this bound.
            let room = (4 + MAX_FRAME).saturating_sub(self.buf.len());
            let mut chunk = [0u8; 1024];
            let want = room.min(chunk.len());
            if want == 0 {
                return Err(LinkError::Closed);
            }
            let n = self.stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }
}

/// What the core asked for in one `Event::Connect`.
#[derive(Debug)]
pub(crate) struct Dial {
    /// Our bind address: the connection must come from it, since the responder checks
    /// the hello's address against the connection's source.
    pub local_ip: std::net::IpAddr,
    pub my_link_id: u64,
    pub addr: PeerAddr,
    pub expected: Option<NodeId>,
    pub initiator: Box<Initiator>,
    pub hello: Vec<u8>,
    /// The hello asks to keep the connection for the link's datagrams (UDP blocked):
    /// the owner to register it with.
    pub stream: Option<mpsc::Sender<Msg>>,
}

/// Runs one outbound handshake within `timeout` and returns the command that reports
/// its result to the core.
pub(crate) async fn dial(dial: Dial, timeout: Duration, counters: &Counters) -> Command {
    let my_link_id = dial.my_link_id;
    let addr = dial.addr;
    let result = dial_inner(dial, Instant::now() + timeout).await;
    match result {
        Ok(cmd) => cmd,
        Err(e) => {
            tracing::debug!(peer = %addr, error = %e, "outbound handshake failed");
            counters.note_dial_error(format!("{}: {e}", addr.tcp_addr()));
            Command::ConnectFailed {
                my_link_id,
                outcome: ConnectOutcome::Unreachable,
            }
        }
    }
}

/// Dials within `deadline`. An error means the address never answered with a valid
/// welcome; what happens after one is reported as a command.
async fn dial_inner(dial: Dial, deadline: Instant) -> Result<Command, LinkError> {
    let remote = dial.addr.tcp_addr();
    let (mut conn, welcome) = tokio::time::timeout_at(deadline, async {
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(dial.local_ip, 0))?;
        let stream = socket.connect(remote).await?;
        let _ = stream.set_nodelay(true);
        let mut conn = Framed::new(stream);
        conn.write(&dial.hello).await?;
        let welcome = conn.read_frame().await?;
        Ok::<_, LinkError>((conn, welcome))
    })
    .await
    .map_err(|_| LinkError::Timeout)??;
    let outcome = dial
        .initiator
        .on_welcome(&welcome, dial.expected, dial.my_link_id)?;
    match outcome {
        InitiatorOutcome::Linked {
            responder,
            responder_link_id,
            keys,
            neighbours,
            confirm,
        } => {
            // It answered: from here a failure is a refusal (it accepted more handshakes
            // than it had room for when they confirmed), not an address to back off from.
            let established = tokio::time::timeout_at(deadline, async {
                conn.write(&confirm).await?;
                let last = conn.read_frame().await?;
                if is_established(&last) {
                    Ok(())
                } else {
                    Err(LinkError::NotEstablished)
                }
            });
            if let Err(e) = established.await.unwrap_or(Err(LinkError::Timeout)) {
                tracing::debug!(peer = %dial.addr, error = %e, "the link was not established");
                return Ok(Command::ConnectFailed {
                    my_link_id: dial.my_link_id,
                    outcome: ConnectOutcome::Rejected { neighbours },
                });
            }
            // Over this connection from now on: registered before the link is reported.
            let mut stream = None;
            if let Some(owner) = &dial.stream
                && let Some(kept) = stream_link::keep(remote, owner).await
            {
                kept.carry(conn.stream, std::mem::take(&mut conn.buf));
                stream = Some(remote);
            }
            Ok(Command::LinkUp(LinkUp {
                my_link_id: dial.my_link_id,
                their_link_id: responder_link_id,
                peer: responder,
                addr: dial.addr,
                keys,
                their_neighbours: neighbours,
                inbound: false,
                dialable: true,
                stream,
            }))
        }
        InitiatorOutcome::NotLinked {
            decision,
            neighbours,
            ..
        } => Ok(Command::ConnectFailed {
            my_link_id: dial.my_link_id,
            outcome: not_linked(decision, neighbours),
        }),
    }
}

fn not_linked(decision: Decision, neighbours: Vec<NeighbourEntry>) -> ConnectOutcome {
    match decision {
        Decision::Full => ConnectOutcome::Full { neighbours },
        // An "accept" without a link only happens for a query, which we never send.
        Decision::Reject | Decision::Accept => ConnectOutcome::Rejected { neighbours },
    }
}

/// Inbound handshakes in progress per source bucket
/// ([`highway_core::source_bucket`]). Holds at most [`MAX_INBOUND_HANDSHAKES`] keys,
/// since each one needs a live connection.
#[derive(Debug, Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerSource`], given back when dropped.
struct SourceSlot {
    table: Arc<PerSource>,
    source: IpAddr,
}

impl PerSource {
    fn take(table: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let source = highway_core::source_bucket(ip);
        // A poisoned lock only means another task panicked mid-update of a counter.
        let mut map = table.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(source).or_insert(0);
        if *count >= MAX_INBOUND_HANDSHAKES_PER_IP {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: table.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.source);
            }
        }
    }
}

/// Accepts handshake connections until the task is aborted. Each one runs in its own
/// task, at most [`MAX_INBOUND_HANDSHAKES`] at once and
/// [`MAX_INBOUND_HANDSHAKES_PER_IP`] from one source, each within `timeout` (and
/// [`HELLO_TIMEOUT`] for its first frame).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    owner: mpsc::Sender<Msg>,
    timeout: Duration,
    counters: Arc<Counters>,
    hub: Arc<RelayHub>,
) {
    let permits = Arc::new(Semaphore::new(MAX_INBOUND_HANDSHAKES));
    let per_source = Arc::new(PerSource::default());
    // Dropped with this task, which aborts every connection still being served.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accepting a handshake connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Checked first: a flood from one address is refused without touching the
        // global permits.
        let Some(slot) = PerSource::take(&per_source, from.ip()) else {
            counters
                .inbound_refused_per_ip
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "too many handshakes from this address; closing");
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters
                .inbound_refused_busy
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "too many handshakes in progress; closing");
            continue;
        };
        let owner = owner.clone();
        let counters = counters.clone();
        let hub = hub.clone();
        conns.spawn(async move {
            // The port also carries relay requests (HTTP): those leave the handshake
            // caps at once for the relay's own.
            if starts_like_http(&stream).await {
                drop((permit, slot));
                hub.serve_http(stream, from).await;
                return;
            }
            let _permit = permit;
            let _slot = slot;
            answer(stream, from, owner, timeout, &counters, &hub).await;
        });
    }
}

/// True when the first byte (waited for up to [`HELLO_TIMEOUT`]) is an ASCII letter: an
/// HTTP method. A handshake frame starts with its length's high byte, which is zero.
async fn starts_like_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(HELLO_TIMEOUT, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// How an inbound connection's first frames ended.
enum Answered {
    /// With the connection kept for the link's datagrams, when the initiator asked.
    Linked(Option<stream_link::Kept>),
    NotLinked,
    /// A reverse hello: the connection belongs to the relay hub.
    Reverse(Vec<u8>),
}

/// Serves one inbound handshake connection from start to close.
async fn answer(
    stream: TcpStream,
    from: SocketAddr,
    owner: mpsc::Sender<Msg>,
    timeout: Duration,
    counters: &Counters,
    hub: &RelayHub,
) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + timeout;
    let mut conn = Framed::new(stream);
    // Set once the core reserved a slot for this handshake.
    let mut reserved = None;
    let hello_deadline = deadline.min(Instant::now() + HELLO_TIMEOUT);
    let result = tokio::time::timeout_at(deadline, async {
        let Ok(hello) = tokio::time::timeout_at(hello_deadline, conn.read_frame()).await else {
            counters
                .inbound_hello_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return Err(LinkError::Timeout);
        };
        let hello = hello?;
        if ReverseHello::is_reverse(&hello) {
            return Ok(Answered::Reverse(hello));
        }
        let (reply, answer) = oneshot::channel();
        owner
            .send(Msg::Hello {
                from: from.ip(),
                payload: hello,
                reply,
            })
            .await
            .map_err(|_| LinkError::Stopping)?;
        let answer = answer.await.map_err(|_| LinkError::Stopping)??;
        let Some(responder) = answer.responder else {
            conn.write(&answer.welcome).await?;
            return Ok(Answered::NotLinked);
        };
        reserved = Some(answer.my_link_id);
        // The core judged the hello against the connection's source: a peer that names
        // another address (behind a NAT) is neither sent to before it speaks nor handed on
        // as dialable.
        let dialable = answer.initiator_dialable;
        conn.write(&answer.welcome).await?;
        let confirm = conn.read_frame().await?;
        let accepted = responder.on_confirm(&confirm)?;
        // The initiator asked to carry the link over this connection (its UDP is blocked):
        // register the path before the link is installed, which may send on it at once.
        let kept = if answer.stream {
            stream_link::keep(from, &owner).await
        } else {
            None
        };
        let stream = kept.as_ref().map(|_| from);
        let up = LinkUp {
            my_link_id: answer.my_link_id,
            their_link_id: accepted.initiator_link_id,
            peer: accepted.initiator,
            addr: answer.initiator_addr,
            keys: accepted.keys,
            their_neighbours: Vec::new(),
            inbound: true,
            dialable,
            stream,
        };
        let (reply, installed) = oneshot::channel();
        owner
            .send(Msg::InboundLinkUp { up, reply })
            .await
            .map_err(|_| LinkError::Stopping)?;
        // From here the core has consumed the reservation, whatever it decided.
        reserved = None;
        let installed = installed.await.map_err(|_| LinkError::Stopping)?;
        if !installed {
            if let Some(kept) = kept {
                kept.abandon();
            }
            return Ok(Answered::NotLinked);
        }
        if let Err(e) = conn.write(&established_frame()).await {
            if let Some(kept) = kept {
                kept.abandon();
            }
            return Err(e);
        }
        Ok(Answered::Linked(kept))
    })
    .await
    .unwrap_or(Err(LinkError::Timeout));
    match result {
        Ok(Answered::Linked(Some(kept))) => {
            counters.inbound_linked.fetch_add(1, Ordering::Relaxed);
            kept.carry(conn.stream, std::mem::take(&mut conn.buf));
        }
        Ok(Answered::Linked(None)) => {
            counters.inbound_linked.fetch_add(1, Ordering::Relaxed);
            // Let the initiator read "established" before the close reaches it.
            let _ = conn.stream.shutdown().await;
        }
        Ok(Answered::NotLinked) => {
            let _ = conn.stream.shutdown().await;
        }
        // A holder behind a NAT connecting back: HTTP follows, so nothing may have been
        // read past the frame (the holder waits for the request before sending more).
        Ok(Answered::Reverse(payload)) if conn.buf.is_empty() => hub.attach(&payload, conn.stream),
        Ok(Answered::Reverse(_)) => bump(&hub.counters.reverse_refused),
        Err(e) => {
            counters.inbound_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, error = %e, "inbound handshake failed");
            if let Some(my_link_id) = reserved {
                let _ = owner
                    .send(Msg::Command(Command::HandshakeAborted { my_link_id }))
                    .await;
            }
        }
    }
}
