//! TCP connections for the core: this module only moves their bytes.
//!
//! The core decides everything about a connection — the handshake, its deadlines, the
//! caps on connections, links carried over TCP — and says what to do through
//! `Peer::poll_conn`. Each connection runs in a task of its own: it writes what the owner
//! task passes on, reads whatever arrives and hands it to the owner, and reports the
//! close. The one decision made here is the first byte's: an inbound connection that
//! starts like an HTTP request is a relay request and belongs to the relay hub.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use highway_core::ConnId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::owner::{Counters, Msg};
use crate::relay::RelayHub;

/// What the owner task queues for one connection (a `ConnIo` of the core).
#[derive(Debug)]
pub(crate) enum ConnCmd {
    Write(Vec<u8>),
    Close,
    /// A reverse hello came in: hand the connection to the relay hub.
    Reverse(Vec<u8>),
}

/// Commands queued for one connection; past it datagrams for a TCP-carried link are
/// dropped (as UDP would drop them). Handshake frames are a handful per connection.
pub(crate) const CONN_QUEUE: usize = 64;
/// Bytes read at once.
const READ_CHUNK: usize = 4096;

/// Accepts connections on the handshake port until the task is aborted. The core admits
/// each (it caps handshakes in total and per source) and the connection's task serves it.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    owner: mpsc::Sender<Msg>,
    hello_timeout: Duration,
    hub: Arc<RelayHub>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let (reply, admitted) = oneshot::channel();
        if owner.send(Msg::Accepted { from, tx, reply }).await.is_err() {
            return;
        }
        let Ok(Some(conn)) = admitted.await else {
            tracing::debug!(%from, "too many handshakes in progress (from there); closing");
            continue;
        };
        let owner = owner.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            // The port also carries relay requests (HTTP): those leave the core's
            // handshake caps at once for the relay's own.
            if starts_like_http(&stream, hello_timeout).await {
                let _ = owner.send(Msg::ConnClosed { conn }).await;
                hub.serve_http(stream, from).await;
                return;
            }
            carry(conn, stream, owner, rx, Some(&hub)).await;
        });
    }
}

/// True when the first byte (waited for up to `wait`) is an ASCII capital: an HTTP
/// method. A handshake frame starts with its length's high byte, which is zero.
async fn starts_like_http(stream: &TcpStream, wait: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// What one outbound connection needs.
#[derive(Debug)]
pub(crate) struct Dial {
    pub conn: ConnId,
    pub to: SocketAddr,
    /// Our bind address: the connection comes from it, so a responder sees the address
    /// our hello names (when we are not behind a NAT).
    pub local_ip: IpAddr,
    /// Given up on after this long (the core gives up then too).
    pub timeout: Duration,
}

/// Opens an outbound connection and serves it; reports the close (or the failure to
/// open it) to the owner.
pub(crate) async fn dial(
    dial: Dial,
    owner: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<ConnCmd>,
    counters: Arc<Counters>,
) {
    let opened = tokio::time::timeout(dial.timeout, async {
        let socket = if dial.to.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(dial.local_ip, 0))?;
        socket.connect(dial.to).await
    })
    .await;
    match opened {
        Ok(Ok(stream)) => carry(dial.conn, stream, owner, rx, None).await,
        Ok(Err(e)) => {
            counters.note_dial_error(format!("{}: {e}", dial.to));
            let _ = owner.send(Msg::ConnClosed { conn: dial.conn }).await;
        }
        Err(_) => {
            counters.note_dial_error(format!("{}: connecting timed out", dial.to));
            let _ = owner.send(Msg::ConnClosed { conn: dial.conn }).await;
        }
    }
}

/// Moves bytes both ways until the core closes the connection, the other side does, or
/// a reverse hello hands it to the relay hub.
async fn carry(
    conn: ConnId,
    stream: TcpStream,
    owner: mpsc::Sender<Msg>,
    mut rx: mpsc::Receiver<ConnCmd>,
    hub: Option<&RelayHub>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(ConnCmd::Write(bytes)) => {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(ConnCmd::Reverse(hello)) => {
                    if let (Some(hub), Ok(stream)) = (hub, read.reunite(write)) {
                        hub.attach(&hello, stream);
                    }
                    return;
                }
                // Closed by the core (or the owner is gone): nothing more to report. The
                // shutdown lets the other side read what was written before it.
                Some(ConnCmd::Close) | None => {
                    let _ = write.shutdown().await;
                    return;
                }
            },
            r = read.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = chunk[..n].to_vec();
                    if owner.send(Msg::ConnBytes { conn, bytes }).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    let _ = owner.send(Msg::ConnClosed { conn }).await;
}
