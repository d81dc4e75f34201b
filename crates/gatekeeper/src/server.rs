//! Running a Gatekeeper: shared state, the HTTP server, and the sweeper that purges
//! expired entries.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use highway_serve::{Limits, Tls};
use tokio::net::TcpListener;

use crate::config::GatekeeperConfig;
use crate::metrics::Metrics;
use crate::store::Store;

/// Milliseconds since the Unix epoch by this machine's clock. Replicas of one deployment
/// compare deadlines written by each other, so their clocks must be kept in sync (NTP).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the store has been reachable, and since when. Peers cannot send a status while
/// the store is down, so for one expiry window after it comes back nobody is purged and
/// late statuses are accepted.
#[derive(Debug)]
pub struct StoreHealth {
    down: AtomicBool,
    up_since_ms: AtomicU64,
}

impl StoreHealth {
    fn new(now_ms: u64) -> Self {
        Self {
            down: AtomicBool::new(false),
            up_since_ms: AtomicU64::new(now_ms),
        }
    }

    pub fn mark_down(&self) {
        self.down.store(true, Ordering::Relaxed);
    }

    pub fn mark_up(&self, now_ms: u64) {
        if self.down.swap(false, Ordering::Relaxed) {
            self.up_since_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// True when the store came back (or we started) less than `window_ms` ago.
    pub fn recently_recovered(&self, now_ms: u64, window_ms: u64) -> bool {
        now_ms.saturating_sub(self.up_since_ms.load(Ordering::Relaxed)) < window_ms
    }
}

/// Everything a request handler needs. Holds no registry state of its own: that is all in
/// the store, so replicas on one Redis are interchangeable.
#[derive(Debug)]
pub struct App<S> {
    pub store: S,
    pub config: GatekeeperConfig,
    pub metrics: Metrics,
    pub health: StoreHealth,
    /// Requests being answered; past [`MAX_IN_FLIGHT`] new ones get 503 at once.
    pub in_flight: tokio::sync::Semaphore,
    /// Where this process serves, once bound: peers may not publish it as theirs.
    pub listen_addr: std::sync::OnceLock<SocketAddr>,
    /// Connection caps and deadlines of the HTTP server (see [`highway_serve`]). The
    /// header deadline also bounds the time a request body may take to arrive.
    pub limits: Limits,
}

/// Most requests answered concurrently by one process.
pub const MAX_IN_FLIGHT: usize = 4096;

impl<S: Store> App<S> {
    pub fn new(store: S, config: GatekeeperConfig) -> Arc<Self> {
        Self::with_limits(store, config, Limits::gatekeeper())
    }

    /// Like [`App::new`], with other connection limits than [`Limits::gatekeeper`].
    pub fn with_limits(store: S, config: GatekeeperConfig, limits: Limits) -> Arc<Self> {
        let metrics = Metrics::default();
        metrics.set_build_info(store.kind());
        Arc::new(Self {
            store,
            config,
            metrics,
            health: StoreHealth::new(now_ms()),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            listen_addr: std::sync::OnceLock::new(),
            limits,
        })
    }
}

/// Most entries purged per sweep, so one sweep never holds the store for long.
const PURGE_BATCH: usize = 10_000;

/// Serves the API on `listener` until `shutdown` completes, sweeping expired entries in
/// the background. Connections are capped in total and per source, and request headers
/// have a deadline ([`App::limits`]); refusals are counted in the metrics.
pub async fn run<S: Store>(
    listener: TcpListener,
    app: Arc<App<S>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_tls(listener, app, None, shutdown).await
}

/// [`run`], serving HTTPS when `tls` is given.
pub async fn run_tls<S: Store>(
    listener: TcpListener,
    app: Arc<App<S>>,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let _ = app.listen_addr.set(addr);
    }
    let sweeper = tokio::spawn(sweep_forever(app.clone()));
    let limits = app.limits.clone();
    let counters = Arc::clone(&app.metrics.connections);
    // highway_serve gives every request its connection's peer address (`ConnectInfo`),
    // which the handlers need (crate::admission).
    let router = crate::api::router(app);
    let result = highway_serve::serve_tls(listener, router, limits, counters, tls, shutdown).await;
    sweeper.abort();
    result
}

async fn sweep_forever<S: Store>(app: Arc<App<S>>) {
    let mut tick = tokio::time::interval(app.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep_once(&app).await;
    }
}

/// One sweep: check the store, purge what expired (unless the store was just down), and
/// refresh the gauges.
pub async fn sweep_once<S: Store>(app: &App<S>) {
    let now = now_ms();
    if let Err(e) = app.store.ping().await {
        if !app.health.is_down() {
            tracing::warn!(error = %e, "store unavailable; answering 503 until it is back");
        }
        app.health.mark_down();
        app.metrics.store_up.set(0);
        return;
    }
    if app.health.is_down() {
        tracing::info!("store reachable again");
    }
    app.health.mark_up(now);
    app.metrics.store_up.set(1);
    let window = Duration::as_millis(&app.config.expires_after()) as u64;
    if !app.health.recently_recovered(now, window) {
        let tombstone = now + app.config.tombstone_ttl().as_millis() as u64;
        match app.store.purge_expired(now, PURGE_BATCH, tombstone).await {
            Ok(0) => {}
            Ok(n) => {
                app.metrics.purged.inc_by(n as u64);
                tracing::debug!(purged = n, "purged expired entries");
            }
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
    if let Ok(live) = app.store.live_count(now).await {
        app.metrics
            .live_peers
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }
}

/// Binds `addr` and serves until Ctrl-C or SIGTERM.
pub async fn serve_until_signal<S: Store>(
    addr: SocketAddr,
    app: Arc<App<S>>,
) -> std::io::Result<()> {
    serve_until_signal_tls(addr, app, None).await
}

/// [`serve_until_signal`], serving HTTPS when `tls` is given.
pub async fn serve_until_signal_tls<S: Store>(
    addr: SocketAddr,
    app: Arc<App<S>>,
    tls: Option<Tls>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %listener.local_addr()?, scheme, store = app.store.kind(), "gatekeeper listening");
    run_tls(listener, app, tls, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
