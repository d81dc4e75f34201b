//! The Gatekeeper under test, started as a child process of this same binary so the
//! load generator and the server are separate processes, as in production.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use highway_gatekeeper::{RedisOptions, RedisStore};

use super::load::Http;

/// Long enough that no seeded peer expires during a run (expiry is 3 × this).
const STATUS_INTERVAL: &str = "300s";
/// Must exceed the status interval.
const LEASE_TTL: &str = "1h";
/// How long the child may take to answer `/healthz`.
const STARTUP_LIMIT: Duration = Duration::from_secs(15);
/// How long the child may report its store unavailable before the bench gives up.
const STORE_LIMIT: Duration = Duration::from_secs(3);

/// Which store the started Gatekeeper uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    /// Redis URL and a key prefix unique to this run.
    Redis {
        url: String,
        prefix: String,
    },
}

/// A running child Gatekeeper; [`Server::stop`] ends it, and dropping it kills it.
#[derive(Debug)]
pub struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
}

impl Server {
    /// Starts `highway gatekeeper` on a free loopback port and waits until it is healthy.
    pub async fn start(backend: &Backend) -> anyhow::Result<Self> {
        let port = free_port().context("cannot find a free loopback port")?;
        let listen = format!("127.0.0.1:{port}");
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["gatekeeper", "--listen", &listen])
            .args(["--status-interval", STATUS_INTERVAL])
            .args(["--lease-ttl", LEASE_TTL])
            // All load comes from 127.0.0.1 for peers claiming 10.x addresses: lift the
            // per-network limits and the claimed-address rule, which would refuse it.
            .args(["--max-peers-per-prefix", "4000000000"])
            .args(["--max-joins-per-prefix", "4000000000"])
            .args(["--claimed-addrs", "any"])
            // All the load comes from this one address, up to --concurrency 1024 at once.
            .args(["--max-connections-per-ip", "4096"]);
        if let Backend::Redis { url, prefix } = backend {
            cmd.args(["--redis", url, "--redis-prefix", prefix]);
        }
        cmd.env("HIGHWAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd.spawn().context("cannot start the Gatekeeper")?;
        let pid = child.id().context("the Gatekeeper exited at once")?;
        let mut server = Self {
            child,
            pid,
            base: format!("http://{listen}"),
        };
        if let Err(e) = server.wait_healthy().await {
            server.stop().await;
            return Err(e);
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let http = Http::new(&self.base, 1)?;
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < STARTUP_LIMIT {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the Gatekeeper (pid {}) exited with {status} before it was ready",
                    self.pid
                );
            }
            match http.health().await {
                Ok(h) if h.status == "ok" => return Ok(()),
                Ok(h) => {
                    last = format!("{} ({})", h.status, h.error.unwrap_or_default());
                    if started.elapsed() >= STORE_LIMIT {
                        break;
                    }
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the Gatekeeper at {} did not become healthy: {last}",
            self.base
        )
    }

    /// Kills the child (by its pid, through its process handle) and reaps it.
    pub async fn stop(mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::warn!(pid = self.pid, error = %e, "cannot kill the Gatekeeper");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = self.pid, "the Gatekeeper did not exit within 5s");
        }
    }
}

/// A port nobody listens on right now (the child binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Deletes every key of this run from Redis.
pub async fn flush_redis(url: &str, prefix: &str) -> anyhow::Result<()> {
    let options = RedisOptions {
        prefix: prefix.to_string(),
        op_timeout: Duration::from_secs(60),
    };
    let store = RedisStore::new(url, None, options)?;
    store.flush_prefix().await?;
    Ok(())
}
