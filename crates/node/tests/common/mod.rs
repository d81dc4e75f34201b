//! In-process nodes with an embedded Gatekeeper on loopback, and helpers to drive their
//! control API: shared by the control API's integration tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig};
use highway_node::views::{SearchPage, SearchStarted};
use highway_node::{NodeConfig, NodeHandle};
use tokio::sync::oneshot;

pub struct Net {
    pub nodes: Vec<NodeHandle>,
    /// Each node's configuration, to start it again.
    pub configs: Vec<NodeConfig>,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    pub dir: tempfile::TempDir,
}

/// Files a node shares: (name, content).
pub type Files<'a> = &'a [(&'a str, &'a [u8])];

pub async fn network(n: u8, shares: &[(u8, Files<'_>)]) -> Net {
    network_with(n, shares, |_, _| {}).await
}

/// [`network`], with `configure` adjusting node `i`'s configuration last.
pub async fn network_with(
    n: u8,
    shares: &[(u8, Files<'_>)],
    configure: impl Fn(u8, &mut NodeConfig),
) -> Net {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gatekeeper = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
    tokio::spawn(highway_gatekeeper::run(listener, app, async {
        let _ = stopped.await;
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let mut config = NodeConfig::new(
            format!("127.0.0.{}", i + 40).parse().unwrap(),
            gatekeeper.clone(),
            dir.path().join(format!("node-{i}")),
        );
        config.core = highway_core::Config::test();
        config.fast_share = true;
        config.download_dir = dir.path().to_path_buf();
        let roots = dir.path().join("roots");
        std::fs::create_dir_all(&roots).unwrap();
        config.share_roots = vec![roots];
        if let Some((_, files)) = shares.iter().find(|(j, _)| *j == i) {
            let root = dir.path().join(format!("share-{i}"));
            std::fs::create_dir_all(&root).unwrap();
            for (name, content) in files.iter() {
                std::fs::write(root.join(name), content).unwrap();
            }
            config.share = Some(root);
        }
        configure(i, &mut config);
        configs.push(config.clone());
        nodes.push(highway_node::start(config).await.unwrap());
    }
    Net {
        nodes,
        configs,
        http: reqwest::Client::new(),
        _stop: stop,
        dir,
    }
}

impl Net {
    /// Stops node `i` gracefully and starts it again with the same configuration (and
    /// so the same data directory and identity).
    pub async fn restart(&mut self, i: usize) {
        // The old node holds the data directory's lock until it has stopped.
        self.nodes.remove(i).shutdown().await;
        let node = highway_node::start(self.configs[i].clone()).await.unwrap();
        self.nodes.insert(i, node);
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[i].control_addr())
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, i: usize, path: &str) -> T {
        let r = self
            .http
            .get(self.url(i, path))
            .bearer_auth(self.nodes[i].control_token())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn delete(&self, i: usize, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(i, path))
            .bearer_auth(self.nodes[i].control_token())
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, i: usize, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(i, path))
            .bearer_auth(self.nodes[i].control_token())
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Runs a search from node `i` to its end.
    pub async fn search(&self, i: usize, body: serde_json::Value) -> SearchPage {
        let r = self.post(i, "/v1/search", body).await;
        assert_eq!(r.status(), 202);
        let started: SearchStarted = r.json().await.unwrap();
        loop {
            let page: SearchPage = self
                .get(
                    i,
                    &format!("/v1/search/{}?after=0&wait_ms=2000", started.search),
                )
                .await;
            if page.done {
                return page;
            }
        }
    }
}

pub async fn wait_until(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
