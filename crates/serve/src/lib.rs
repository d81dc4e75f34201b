//! Highway's bounded HTTP/1.1 serving layer, shared by the file server and the Gatekeeper.
//!
//! Everything that connects is hostile until it has sent a whole request, so this layer
//! bounds what a client can hold without doing so:
//!
//! - **Connections in total** ([`Limits::max_connections`]) and **per source**
//!   ([`Limits::max_per_source`]; a source is one IPv4 address or one IPv6 /64). A
//!   connection over either cap is answered `503` (best effort, one non-blocking write)
//!   and closed at once: it never waits behind the slots an attacker holds, and it costs
//!   the server no memory beyond the accept.
//! - **A hard deadline for request headers** ([`Limits::header_timeout`], hyper's
//!   `header_read_timeout`): the clock starts when the server starts waiting for a request
//!   (just after the accept, and again after each response on a kept-alive connection)
//!   and bytes arriving do not move it, so a client trickling one byte at a time loses the
//!   connection at the deadline. It is also the keep-alive idle timeout.
//! - **An idle timeout** ([`Limits::idle_timeout`]) once a request is being answered: a
//!   connection on which nothing moved in either direction for that long is closed
//!   (a client that stopped reading its response).
//! - **TLS** ([`serve_tls`], [`Tls`]): optional, with rustls; the handshake has the header
//!   timeout too.
//! - **Graceful shutdown**: when the shutdown future completes, accepting stops, idle
//!   connections close, and requests in progress are finished.
//!
//! What is refused or cut is counted in [`ServeCounters`]. Request bodies are read by the
//! handlers, which bound their own reading time (the Gatekeeper does; the file server
//! reads none).

mod serve;
mod source;
mod stream;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use serve::{serve, serve_connection, serve_tls};
pub use source::{Refusal, SourceKey, SourceTable};
pub use tls::{Tls, TlsError};

/// How much one server lets its clients hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most, from everybody.
    pub max_connections: usize,
    /// Open connections at most from one source (IPv4 address or IPv6 /64).
    pub max_per_source: usize,
    /// Time a client has to send a request's headers, from the moment the server waits
    /// for them; also how long a kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// While a request is answered: time without progress in either direction after
    /// which the connection is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// Defaults for a node's file server: many peers, each with a few downloads.
    pub fn file_server() -> Self {
        Self {
            max_connections: 256,
            max_per_source: 16,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Defaults for a node's control API: local clients only (all from one loopback
    /// address, so the per-source cap is the total), each CLI command or shell with a
    /// connection or two; long polls answer within 10 s, well inside the idle timeout.
    pub fn control_api() -> Self {
        Self {
            max_connections: 128,
            max_per_source: 128,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Defaults for a Gatekeeper: many peers, each with a pooled connection or two.
    pub fn gatekeeper() -> Self {
        Self {
            max_connections: 4096,
            max_per_source: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Refuses limits that would make the server useless, saying which and why.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.max_connections == 0 {
            return Err(LimitsError::NoConnections);
        }
        if self.max_per_source == 0 || self.max_per_source > self.max_connections {
            return Err(LimitsError::PerSource {
                per_source: self.max_per_source,
                total: self.max_connections,
            });
        }
        for (what, d) in [
            ("header timeout", self.header_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return Err(LimitsError::Timeout { what, got: d });
            }
        }
        Ok(())
    }
}

/// Why [`Limits`] were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("the connection cap must be at least 1")]
    NoConnections,
    #[error(
        "the per-source connection cap must be between 1 and the total cap ({total}), got \
         {per_source}; behind a proxy every connection comes from the proxy, so raise it to \
         the total there"
    )]
    PerSource { per_source: usize, total: usize },
    #[error("the {what} must be between 10ms and 1h, got {got:?}")]
    Timeout { what: &'static str, got: Duration },
}

/// What a server's connection layer did. All but `open` only grow.
#[derive(Debug, Default)]
pub struct ServeCounters {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Connections closed at once because their source held its share.
    pub refused_per_source: AtomicU64,
    /// Connections closed at once because the server held its total.
    pub refused_total_cap: AtomicU64,
    /// Connections closed because the request headers did not arrive in time (including
    /// kept-alive connections that sent no further request).
    pub header_timeouts: AtomicU64,
    /// Connections closed because nothing moved while a request was answered.
    pub idle_timeouts: AtomicU64,
    /// TLS handshakes that failed (a client that does not trust the certificate, or
    /// does not speak TLS).
    pub tls_failures: AtomicU64,
    /// Connections open now (a gauge).
    pub open: AtomicU64,
}

impl ServeCounters {
    /// A snapshot, for status output and tests.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
