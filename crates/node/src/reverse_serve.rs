//! As a holder behind a NAT: connecting out when a neighbour asks, and serving the file
//! server over that connection (see [`crate::relay`] for the other end).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use highway_wire::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

use crate::relay::{RelayCounters, bump};

/// Reverse connections served at once; requests past it are dropped (and counted).
const MAX_REVERSE: usize = 32;
/// Time to connect to the asker and send the reverse hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The file server's router while something is shared (set by [`crate::sharing`]).
pub(crate) type RouterSlot = Arc<Mutex<Option<Router>>>;

/// Opens and serves reverse connections, at most [`MAX_REVERSE`] at once.
#[derive(Clone)]
pub(crate) struct ReverseServer {
    pub router: RouterSlot,
    pub counters: Arc<RelayCounters>,
    /// The file server's connection counters: a reverse connection is one of its own.
    pub serve_counters: Arc<highway_serve::ServeCounters>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for ReverseServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReverseServer").finish_non_exhaustive()
    }
}

impl ReverseServer {
    pub fn new(
        router: RouterSlot,
        counters: Arc<RelayCounters>,
        serve_counters: Arc<highway_serve::ServeCounters>,
    ) -> Self {
        Self {
            router,
            counters,
            serve_counters,
            permits: Arc::new(Semaphore::new(MAX_REVERSE)),
        }
    }

    /// Connects to `to` from `local_ip`, writes `hello`, and serves the file server there
    /// until the asker closes; in a task of its own.
    pub fn connect(&self, to: SocketAddr, via: NodeId, hello: Vec<u8>, local_ip: IpAddr) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            bump(&self.counters.reverse_failed);
            tracing::debug!(%to, "too many reverse connections; dropping a request");
            return;
        };
        let router = self
            .router
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(router) = router else {
            // Nothing shared: nothing to serve. The asker times out and says so.
            bump(&self.counters.reverse_failed);
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let opened = async {
                let socket = if to.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                if local_ip.is_ipv4() == to.is_ipv4() && !local_ip.is_unspecified() {
                    socket.bind(SocketAddr::new(local_ip, 0))?;
                }
                let mut stream = socket.connect(to).await?;
                let _ = stream.set_nodelay(true);
                stream.write_all(&hello).await?;
                Ok::<_, std::io::Error>(stream)
            };
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, opened).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    bump(&this.counters.reverse_failed);
                    tracing::debug!(%to, via = %via.short(), error = %e, "reverse connection failed");
                    return;
                }
                Err(_) => {
                    bump(&this.counters.reverse_failed);
                    tracing::debug!(%to, via = %via.short(), "reverse connection timed out");
                    return;
                }
            };
            bump(&this.counters.reverse_served);
            highway_serve::serve_connection(
                stream,
                to,
                router,
                highway_serve::Limits::file_server(),
                this.serve_counters.clone(),
            )
            .await;
        });
    }
}
