//! The production Gatekeeper topology as real processes on loopback, configured from the
//! files `deploy/` ships: a `redis-server` primary and replica (`deploy/k8s/redis/*.conf`),
//! `highway gatekeeper` replicas (the environment of the `gatekeeper-config` ConfigMap in
//! `deploy/k8s/kustomization.yaml`) and nginx (`deploy/nginx/gatekeeper.conf`).
//!
//! Included by `topology_process.rs` with `#[path]` (the shared `support/mod.rs` stays as
//! it is). Every process is a child of the test, killed by its own pid when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{BIN, free_port};

/// The repository root (this crate is `crates/cli`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when `program` runs (`program -v`-style `probe` args exit 0). When it does not,
/// says why and returns false, unless `HIGHWAY_REQUIRE_TOOLS=1` (scripts/test, which
/// installs every tool) makes a missing tool a failure.
pub fn tool_available(program: &str, probe: &[&str], install: &str) -> bool {
    let runs = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return true;
    }
    let why = format!("{program} is not installed ({install}); ./scripts/test installs it");
    assert!(
        std::env::var("HIGHWAY_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{why}, and HIGHWAY_REQUIRE_TOOLS=1 forbids skipping"
    );
    eprintln!("SKIPPED: {why}");
    false
}

/// A child process killed (SIGKILL, by its pid) and reaped when dropped.
#[derive(Debug)]
struct Owned(Option<Child>);

impl Owned {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// `redis-server` with one of the shipped configurations, on 127.0.0.1, its data in its own
/// temporary directory. It can be killed and restarted on the same port and data.
#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    conf: PathBuf,
    replica_of: Option<u16>,
    dir: tempfile::TempDir,
    process: Owned,
}

impl Redis {
    /// The primary, from `deploy/k8s/redis/primary.conf` (append-only file on).
    /// `appendfsync always` replaces the shipped `everysec` so that the count of
    /// registrations kept through a SIGKILL is exact even when the disk is slow.
    pub fn primary() -> Self {
        Self::start(repo_root().join("deploy/k8s/redis/primary.conf"), None)
    }

    /// A replica of `primary`, from `deploy/k8s/redis/replica.conf`.
    pub fn replica_of(primary: &Redis) -> Self {
        Self::start(
            repo_root().join("deploy/k8s/redis/replica.conf"),
            Some(primary.port),
        )
    }

    fn start(conf: PathBuf, replica_of: Option<u16>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("highway-topology-redis-")
            .tempdir()
            .expect("temp dir for redis");
        let mut redis = Self {
            port: 0,
            conf,
            replica_of,
            dir,
            process: Owned(None),
        };
        let mut failures = Vec::new();
        for _ in 0..5 {
            redis.port = free_port();
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(e) => failures.push(e),
            }
        }
        panic!("redis-server did not start:\n{}", failures.join("\n---\n"));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| format!("redis log: {e}"))?;
        let mut cmd = Command::new("redis-server");
        // The shipped file first; the command line overrides what only suits a pod.
        cmd.arg(&self.conf)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendfsync", "always", "--logfile", ""]);
        if let Some(primary) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().map_err(|e| format!("redis log: {e}"))?,
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install it with `apt-get install \
                     redis-server`, or run ./scripts/test, which does"
                )
            });
        self.process = Owned(Some(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.process.exited() {
                self.process = Owned(None);
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    tail(&self.log(), 20)
                ));
            }
            if self.command("PING").is_some_and(|r| r == "+PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.process.kill();
                return Err(format!(
                    "redis-server on port {} never answered PING:\n{}",
                    self.port,
                    tail(&self.log(), 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash. What the append-only file holds survives for [`Redis::restart`].
    pub fn kill(&mut self) {
        assert!(self.process.0.is_some(), "redis-server is not running");
        self.process.kill();
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// One inline command; the reply's first line, or a bulk string's content.
    pub fn command(&self, command: &str) -> Option<String> {
        let timeout = Duration::from_millis(500);
        let addr = (Ipv4Addr::LOCALHOST, self.port).into();
        let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(end) = text.find("\r\n") else {
                continue;
            };
            let Some(len) = text.strip_prefix('$') else {
                return Some(text[..end].to_string());
            };
            let len: usize = len[..end - 1].parse().ok()?;
            if buf.len() >= end + 2 + len {
                return Some(String::from_utf8_lossy(&buf[end + 2..end + 2 + len]).into());
            }
        }
    }

    /// Waits until this replica is in sync with its primary.
    pub fn wait_link_up(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let info = self.command("INFO replication").unwrap_or_default();
            if info.contains("master_link_status:up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica on {} not in sync after {within:?}:\n{info}\n{}",
                self.port,
                tail(&self.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Gatekeepers
// ---------------------------------------------------------------------------------------

/// The Gatekeeper's settings from the `gatekeeper-config` ConfigMap of
/// `deploy/k8s/kustomization.yaml`: every `HIGHWAY_*=value` literal.
pub fn configmap_env() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/k8s/kustomization.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let item = line.trim().strip_prefix("- ")?.trim_matches('"');
            let (key, value) = item.split_once('=')?;
            key.starts_with("HIGHWAY_")
                .then(|| (key.to_string(), value.to_string()))
        })
        .collect();
    assert!(
        env.iter().any(|(k, _)| k == "HIGHWAY_GATEKEEPER_REDIS"),
        "no HIGHWAY_GATEKEEPER_REDIS literal in {}",
        path.display()
    );
    env
}

/// A `highway gatekeeper` process configured only through environment variables.
#[derive(Debug)]
pub struct GatekeeperProcess {
    pub port: u16,
    pub url: String,
    process: Owned,
    log: PathBuf,
}

impl GatekeeperProcess {
    /// Starts with `env` (later entries win) and waits until `/healthz` answers 200.
    pub async fn start(env: &[(String, String)], log: PathBuf) -> Self {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("gatekeeper");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let listen = format!("127.0.0.1:{port}");
        cmd.env("HIGHWAY_GATEKEEPER_LISTEN", &listen);
        let log_file = std::fs::File::create(&log).expect("gatekeeper log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn highway gatekeeper");
        let mut gk = Self {
            port,
            url: format!("http://{listen}"),
            process: Owned(Some(child)),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = gk.process.exited() {
                panic!(
                    "gatekeeper on {listen} exited with {status}:\n{}",
                    tail(&gk.log, 20)
                );
            }
            let health = http.get(format!("{}/healthz", gk.url)).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return gk;
            }
            assert!(
                Instant::now() < deadline,
                "gatekeeper on {listen} never became healthy:\n{}",
                tail(&gk.log, 20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`.
    pub fn kill_hard(&mut self) {
        self.process.kill();
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }
}

// ---------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------

/// nginx in the foreground, one process (`master_process off`, so killing its pid stops
/// all of it), serving `deploy/nginx/gatekeeper.conf` in front of `upstreams`.
#[derive(Debug)]
pub struct Nginx {
    pub url: String,
    dir: tempfile::TempDir,
    process: Owned,
}

impl Nginx {
    pub fn start(upstreams: &[u16]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("highway-topology-nginx-")
            .tempdir()
            .expect("temp dir for nginx");
        let shipped = repo_root().join("deploy/nginx/gatekeeper.conf");
        let template = std::fs::read_to_string(&shipped).expect("read the shipped nginx conf");
        let servers: Vec<String> = upstreams
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"))
            .collect();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let site = template
                .replace("@UPSTREAMS@", &servers.join("\n    "))
                .replace("@LISTEN@", &format!("127.0.0.1:{port}"));
            let d = dir.path().display();
            let main = format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/gatekeeper.conf;\n}}\n"
            );
            std::fs::write(dir.path().join("gatekeeper.conf"), site).expect("write conf");
            std::fs::write(dir.path().join("nginx.conf"), main).expect("write conf");
            let child = Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let mut process = Owned(Some(child));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if process.exited().is_some() {
                    failures.push(tail(&dir.path().join("error.log"), 10));
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Self {
                        url: format!("http://127.0.0.1:{port}"),
                        dir,
                        process,
                    };
                }
                if Instant::now() > deadline {
                    failures.push(format!("nginx did not listen on {port} within 5 s"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    /// HTTP status codes nginx answered, from its access log (the default `combined`
    /// format: `addr - - [time] "REQUEST" STATUS BYTES "REFERER" "AGENT"`).
    pub fn statuses(&self) -> Vec<u16> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split('"').nth(2)?.split_whitespace().next()?.parse().ok())
            .collect()
    }
}
