//! Real `highway` processes for integration tests: a Gatekeeper and peers on loopback
//! addresses, each killed by its own pid when dropped.

#![allow(dead_code)]

pub mod nobody;

use std::future::Future;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_highway");

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 100 ms until it holds, or panics after `limit` naming `what`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `url` as JSON; `None` when it does not answer (in 2 s) or not with JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// A client that sends `Authorization: Bearer TOKEN` with every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}")
        .parse()
        .expect("a token is a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("reqwest client")
}

pub struct NodeProcess {
    child: Child,
    pub id: String,
    pub control: String,
    /// The file server's address (`files:` line).
    pub files: String,
    /// The control token, read from the file of the `token:` line.
    pub token: String,
    /// That file: removed on drop, as a node killed hard leaves it behind.
    token_file: Option<std::path::PathBuf>,
    /// Sends the token with every request.
    pub http: reqwest::Client,
}

impl NodeProcess {
    pub async fn start(
        gatekeeper: &str,
        bind: &str,
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
        let mut child = Command::new(BIN)
            .args([
                "node",
                "--gatekeeper",
                gatekeeper,
                "--bind",
                bind,
                "--control",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn highway node");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut id, mut control, mut files, mut token) = (None, None, None, None);
        let mut token_file = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while id.is_none() || control.is_none() || files.is_none() || token.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("node on {bind} printed no id/control lines in time"))
                .expect("read node stdout")
                .unwrap_or_else(|| {
                    panic!("node on {bind} exited early; see {}", data_dir.display())
                });
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.trim().to_string());
            }
            if let Some(v) = line.strip_prefix("control: ") {
                control = Some(v.trim().to_string());
            }
            if let Some(v) = line.strip_prefix("files: ") {
                files = Some(v.trim().to_string());
            }
            if let Some(v) = line.strip_prefix("token: ") {
                let path = std::path::Path::new(v.trim());
                token_file = Some(path.to_path_buf());
                token = Some(
                    std::fs::read_to_string(path)
                        .unwrap_or_else(|e| panic!("token file {}: {e}", path.display()))
                        .trim()
                        .to_string(),
                );
            }
        }
        let token = token.unwrap_or_default();
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            id: id.unwrap_or_default(),
            control: control.unwrap_or_default(),
            files: files.unwrap_or_default(),
            http: authorized_client(&token),
            token,
            token_file,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The ids this node currently lists as neighbours; None when it does not answer.
    pub async fn neighbour_ids(&self) -> Option<Vec<String>> {
        let url = format!("http://{}/v1/neighbors", self.control);
        let list = get_json(&self.http, &url).await?;
        Some(
            list.as_array()?
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect(),
        )
    }

    pub async fn status(&self) -> Option<serde_json::Value> {
        get_json(&self.http, &format!("http://{}/v1/status", self.control)).await
    }

    /// One counter from the node's `stats` (0 when it does not answer).
    pub async fn stat(&self, name: &str) -> u64 {
        self.status()
            .await
            .and_then(|s| s["stats"][name].as_u64())
            .unwrap_or(0)
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.start_kill();
    }

    /// SIGKILL, and wait until the process is gone (its ports are free again).
    pub async fn kill_and_wait(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGSTOP, wait, SIGCONT.
    pub async fn pause_for(&self, pause: Duration) {
        let pid = self.pid().to_string();
        let stop = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status();
        assert!(stop.is_ok_and(|s| s.success()), "SIGSTOP failed");
        tokio::time::sleep(pause).await;
        let cont = std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status();
        assert!(cont.is_ok_and(|s| s.success()), "SIGCONT failed");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(path) = &self.token_file
            && std::fs::read_to_string(path).is_ok_and(|t| t.trim() == self.token)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A Gatekeeper process and `n` peers on 127.0.0.2, 127.0.0.3, ...
pub struct Cluster {
    gatekeeper: Child,
    pub gatekeeper_url: String,
    pub nodes: Vec<NodeProcess>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(n: usize, node_args: &[&str]) -> Self {
        Self::start_each(n, |_, _| node_args.iter().map(|a| a.to_string()).collect()).await
    }

    /// As [`Cluster::start`], with each node's arguments from `args_for(index, dir)`.
    pub async fn start_each(
        n: usize,
        args_for: impl Fn(usize, &std::path::Path) -> Vec<String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let gatekeeper = Command::new(BIN)
            .args(["gatekeeper", "--listen", &listen, "--status-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gatekeeper");
        let gatekeeper_url = format!("http://{listen}");
        let http = reqwest::Client::new();
        wait_until(
            Duration::from_secs(15),
            "the gatekeeper answers",
            || async {
                get_json(&http, &format!("{gatekeeper_url}/healthz"))
                    .await
                    .is_some()
            },
        )
        .await;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let bind = format!("127.0.0.{}", i + 2);
            let data = dir.path().join(format!("node-{i}"));
            let args = args_for(i, dir.path());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(NodeProcess::start(&gatekeeper_url, &bind, &data, &args).await);
        }
        Self {
            gatekeeper,
            gatekeeper_url,
            nodes,
            dir,
        }
    }

    pub async fn gatekeeper_peer_count(&self) -> usize {
        let url = format!("{}/v1/peers?limit=1000", self.gatekeeper_url);
        get_json(&reqwest::Client::new(), &url)
            .await
            .and_then(|page| page["peers"].as_array().map(Vec::len))
            .unwrap_or(0)
    }

    pub async fn stop(&mut self) {
        for node in &mut self.nodes {
            node.kill_hard();
        }
        let _ = self.gatekeeper.start_kill();
        let _ = self.gatekeeper.wait().await;
        for node in &mut self.nodes {
            let _ = node.child.wait().await;
        }
    }
}
