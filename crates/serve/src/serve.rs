//! The accept loop and the life of one connection.

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::source::{Refusal, Slot, SourceTable};
use crate::stream::{IDLE_MESSAGE, IdleStream};
use crate::{Limits, ServeCounters, Tls, bump};

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets requests in progress finish (idle connections close at once), and
/// returns when every connection is closed.
///
/// Errors of single connections are counted and logged, never returned: one hostile
/// client cannot stop the server.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Arc<ServeCounters>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_tls(listener, router, limits, counters, None, shutdown).await
}

/// [`serve`], speaking TLS when `tls` is given. The TLS handshake must finish within the
/// header timeout; hyper's header deadline starts after it.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Arc<ServeCounters>,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let table = SourceTable::new(limits.max_connections, limits.max_per_source);
    // `stop` tells connections to wind down; every connection task holds a clone of
    // `alive`, so `all_closed` yields `None` once the last one has ended.
    let (stop, stopping) = watch::channel(false);
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(&stream, refusal, &counters, tls.is_none());
                continue;
            }
        };
        bump(&counters.accepted);
        let connection = Connection {
            slot: Some(slot),
            peer,
            limits: limits.clone(),
            counters: Arc::clone(&counters),
        };
        let (router, stopping, alive) = (router.clone(), stopping.clone(), alive.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            connection.run(stream, tls, router, stopping).await;
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(alive);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Serves `router` on one connection this side opened itself: a reverse connection, made
/// because the peer that wants to send requests cannot reach us (we are behind a NAT) and
/// asked us to connect to it. There is no accept loop to admit it, so no caps apply; the
/// caller bounds how many run. The header and idle timeouts of `limits` do apply.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    counters: Arc<ServeCounters>,
) {
    bump(&counters.accepted);
    let connection = Connection {
        slot: None,
        peer,
        limits,
        counters,
    };
    // Never asked to stop early: the caller aborts the task instead.
    let (_stop, stopping) = watch::channel(false);
    connection.run(stream, None, router, stopping).await;
}

/// Out of file descriptors or similar: back off instead of spinning. Errors that concern
/// only the connection being accepted (reset before the accept) are skipped at once.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Counts the refusal and, on plain HTTP, tells the client why with one non-blocking
/// write: a client that does not read cannot make the accept loop wait. (A TLS client
/// could not read a plaintext answer, so it only sees the close.) The connection closes
/// when `stream` is dropped.
fn refuse(stream: &TcpStream, refusal: Refusal, counters: &ServeCounters, explain: bool) {
    let (counter, message) = match refusal {
        Refusal::PerSource => (
            &counters.refused_per_source,
            "too many connections from your address; close some and retry",
        ),
        Refusal::TotalCap => (
            &counters.refused_total_cap,
            "too many connections; retry later",
        ),
    };
    bump(counter);
    if !explain {
        return;
    }
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{message}",
        message.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// One admitted connection; its slot is freed when this is dropped.
struct Connection {
    /// Its place under the caps (none for a connection we opened ourselves).
    slot: Option<Slot>,
    peer: SocketAddr,
    limits: Limits,
    counters: Arc<ServeCounters>,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        tls: Option<Tls>,
        router: Router,
        stopping: watch::Receiver<bool>,
    ) {
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        // Small writes (headers) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let io = IdleStream::new(stream, self.limits.idle_timeout);
        match tls {
            None => self.http(io, router, stopping).await,
            Some(tls) => {
                let deadline = self.limits.header_timeout;
                match tokio::time::timeout(deadline, tls.acceptor().accept(io)).await {
                    Ok(Ok(io)) => self.http(io, router, stopping).await,
                    Ok(Err(e)) => {
                        bump(&self.counters.tls_failures);
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        bump(&self.counters.header_timeouts);
                        tracing::debug!(peer = %self.peer, "TLS handshake did not finish in time");
                    }
                }
            }
        }
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        drop(self.slot);
    }

    async fn http<IO>(&self, io: IO, router: Router, mut stopping: watch::Receiver<bool>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        // Handlers that judge a request by where it came from (the Gatekeeper's admission
        // rules) read the TCP peer address as axum's `ConnectInfo`.
        let router = router.layer(axum::Extension(ConnectInfo(self.peer)));
        let conn = builder.serve_connection(io, TowerToHyperService::new(router));
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stop_requested(&mut stopping) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            self.classify(&e);
        }
    }

    fn classify(&self, e: &hyper::Error) {
        if e.is_timeout() {
            bump(&self.counters.header_timeouts);
            tracing::debug!(peer = %self.peer, "request headers did not arrive in time");
        } else if is_idle(e) {
            bump(&self.counters.idle_timeouts);
            tracing::debug!(peer = %self.peer, "connection idle for too long");
        } else {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

/// Completes when the server is shutting down (or gone).
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

fn is_idle(e: &hyper::Error) -> bool {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut && io.to_string() == IDLE_MESSAGE;
        }
        source = cause.source();
    }
    false
}
