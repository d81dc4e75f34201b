//! Search and transfer with 20 real `highway node` processes on loopback, each sharing
//! its own folder: a far file is found and downloaded intact, shares follow changes, a
//! killed download resumes, a corrupt holder is caught, and the file server refuses
//! everything outside the index.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BIN, Cluster, NodeProcess, wait_until};

const PEERS: usize = 20;
const BIG: usize = 96 << 20;

/// Fast timers, a small degree (so the overlay has some depth), quick share reactions
/// and a short hit cache (so a deleted file's cached hits expire within the test).
fn node_args(i: usize, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--heartbeat-interval",
        "100ms",
        "--suspect-timeout",
        "500ms",
        "--probe-timeout",
        "400ms",
        "--target-degree",
        "2",
        "--max-degree",
        "4",
        "--query-hop-timeout",
        "700ms",
        "--hit-cache-ttl",
        "300ms",
        "--fast-share",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--share".into());
    args.push(share_dir(dir, i).display().to_string());
    args.push("--download-dir".into());
    args.push(dir.display().to_string());
    args
}

fn share_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("share-{i}"))
}

/// A word no other node's files contain.
fn word(i: usize) -> String {
    const WORDS: [&str; 20] = [
        "amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo",
        "juniper", "kestrel", "lagoon", "meadow", "nebula", "onyx", "prairie", "quartz", "riviera",
        "sierra", "tundra",
    ];
    WORDS[i].to_string()
}

fn write_shares(dir: &Path) {
    for i in 0..PEERS {
        let share = share_dir(dir, i);
        std::fs::create_dir_all(&share).unwrap();
        let body = format!("file of node {i}\n").repeat(1000);
        std::fs::write(share.join(format!("{} notes {i}.txt", word(i))), body).unwrap();
    }
}

fn sha256(path: &Path) -> String {
    let out = StdCommand::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, node: &NodeProcess, path: &str) -> Value {
        let url = format!("http://{}{path}", node.control);
        let r = self
            .http
            .get(&url)
            .bearer_auth(&node.token)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn post(&self, node: &NodeProcess, path: &str, body: Value) -> (u16, Value) {
        let url = format!("http://{}{path}", node.control);
        let r = self
            .http
            .post(&url)
            .bearer_auth(&node.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Runs a search to its end; its hits.
    async fn search(&self, node: &NodeProcess, query: &str, ttl: u64) -> Vec<Value> {
        let (status, started) = self
            .post(
                node,
                "/v1/search",
                json!({"query": query, "ttl": ttl, "timeout_ms": 5000}),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let id = started["search"].as_str().unwrap().to_string();
        loop {
            let page = self
                .get(node, &format!("/v1/search/{id}?after=0&wait_ms=3000"))
                .await;
            if page["done"].as_bool() == Some(true) {
                return page["hits"].as_array().cloned().unwrap_or_default();
            }
        }
    }

    async fn download(&self, node: &NodeProcess, body: Value) -> u64 {
        let (status, view) = self.post(node, "/v1/downloads", body).await;
        assert_eq!(status, 202, "{view}");
        view["id"].as_u64().unwrap()
    }

    async fn wait_download(&self, node: &NodeProcess, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.get(node, &format!("/v1/downloads/{id}")).await;
            if matches!(view["state"].as_str(), Some("done" | "failed")) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "download {id} did not end: {view}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Hops from node `from` to every node, by BFS over their neighbour lists.
async fn distances(nodes: &[NodeProcess], from: usize) -> BTreeMap<usize, usize> {
    let index: BTreeMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    let mut graph = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let ids = n.neighbour_ids().await.unwrap_or_default();
        let list: Vec<usize> = ids.iter().filter_map(|id| index.get(id).copied()).collect();
        graph.insert(i, list);
    }
    let mut dist = BTreeMap::from([(from, 0)]);
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for &next in &graph[&at] {
            if !dist.contains_key(&next) {
                dist.insert(next, dist[&at] + 1);
                queue.push_back(next);
            }
        }
    }
    dist
}

fn hit_of<'a>(hits: &'a [Value], name: &str) -> Option<&'a Value> {
    hits.iter().find(|h| h["name"].as_str() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_peers_search_download_resume_and_refuse() {
    let staging = tempfile::tempdir().unwrap();
    write_shares(staging.path());
    // The cluster's dir is created by start_each; shares live in a staging dir beside it.
    let staging_path = staging.path().to_path_buf();
    let mut cluster = Cluster::start_each(PEERS, |i, dir| {
        let mut args = node_args(i, &staging_path);
        let last = args.len() - 1;
        args[last] = dir.display().to_string();
        args
    })
    .await;
    let api = Api {
        http: reqwest::Client::new(),
    };
    let nodes = &cluster.nodes;

    wait_until(
        Duration::from_secs(30),
        "every share is indexed",
        || async {
            for n in nodes {
                let files = api.get(n, "/v1/files").await;
                if files["scanning"].as_bool() != Some(false) || files["total_files"] != 1 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    wait_until(Duration::from_secs(30), "one connected overlay", || async {
        distances(nodes, 0).await.len() == PEERS
    })
    .await;

    // A file held only by a peer at least 3 hops away: the searcher and the holder are
    // the two ends of a longest shortest path (capped at the largest TTL, 7).
    let mut ends = (0, 0, 0);
    for from in 0..PEERS {
        for (&to, &d) in &distances(nodes, from).await {
            if d <= 7 && d > ends.2 {
                ends = (from, to, d);
            }
        }
    }
    let (searcher, far, hops) = ends;
    assert!(hops >= 3, "no two peers are 3 hops apart");
    let name = format!("{} notes {far}.txt", word(far));
    let ttl = hops.max(4) as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let hit = loop {
        let hits = api
            .search(&nodes[searcher], &format!("{} notes", word(far)), ttl)
            .await;
        if let Some(hit) = hit_of(&hits, &name) {
            break hit.clone();
        }
        assert!(Instant::now() < deadline, "{name} was not found");
    };
    assert_eq!(hit["holder"].as_str(), Some(nodes[far].id.as_str()));
    assert!(hit["hops"].as_u64().unwrap() >= 3, "{hit}");
    assert_eq!(hit["addr"].as_str(), Some(nodes[far].files.as_str()));

    // Download it through the one-shot CLI: exit 0 only when complete and verified.
    let out = cluster.dir.path().join("far.txt");
    let status = StdCommand::new(BIN)
        .args(["get", "--node", &nodes[searcher].control])
        .arg(hit["hash"].as_str().unwrap())
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "highway get failed");
    let original = share_dir(&staging_path, far).join(&name);
    assert_eq!(sha256(&out), sha256(&original));

    // A file added to a share becomes findable within seconds; a deleted one disappears.
    let adder = (far + 7) % PEERS;
    let added = share_dir(&staging_path, adder).join("zeppelin flight plan.pdf");
    std::fs::write(&added, b"up, up and away").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the added file is found",
        || async {
            let hits = api.search(&nodes[0], "zeppelin", 7).await;
            hit_of(&hits, "zeppelin flight plan.pdf").is_some()
        },
    )
    .await;
    std::fs::remove_file(&added).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the deleted file is gone",
        || async {
            let hits = api.search(&nodes[0], "zeppelin", 7).await;
            hits.is_empty()
        },
    )
    .await;

    // Two holders of one big file; the second goes bad on disk while it is down (same
    // size and time, so its hash cache still vouches for the old content).
    let (good, bad) = (far, (far + 1) % PEERS);
    let big = pattern(BIG, 42);
    let big_name = "wideband survey.dat";
    // Written elsewhere, dated an hour back, then moved in: the share trusts a cached hash
    // only when the file's time is well before the hashing (as git does).
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let bad_path = share_dir(&staging_path, bad).join(big_name);
    for target in [
        share_dir(&staging_path, good).join(big_name),
        bad_path.clone(),
    ] {
        let tmp = staging_path.join("incoming.tmp");
        std::fs::write(&tmp, &big).unwrap();
        let f = std::fs::File::options().write(true).open(&tmp).unwrap();
        f.set_modified(an_hour_ago).unwrap();
        drop(f);
        std::fs::rename(&tmp, &target).unwrap();
    }
    let big_hash = highway_wire::ContentId::of(&big).to_string();
    for holder in [good, bad] {
        wait_until(
            Duration::from_secs(20),
            "the big file is indexed",
            || async {
                let files = api.get(&nodes[holder], "/v1/files").await;
                files["files"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["hash"] == big_hash.as_str()))
            },
        )
        .await;
    }
    let bad_args = {
        let mut a = node_args(bad, &staging_path);
        let last = a.len() - 1;
        a[last] = cluster.dir.path().display().to_string();
        a
    };
    // Let the hash cache reach the disk (it is saved every 200 ms with --fast-share).
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.nodes[bad].kill_and_wait().await;
    let mut corrupt = big.clone();
    for i in (BIG / 2..BIG / 2 + 4096).step_by(512) {
        corrupt[i] ^= 0xFF;
    }
    let mtime = std::fs::metadata(&bad_path).unwrap().modified().unwrap();
    std::fs::write(&bad_path, &corrupt).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&bad_path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let bind = format!("127.0.0.{}", bad + 2);
    let data = cluster.dir.path().join(format!("node-{bad}"));
    let args: Vec<&str> = bad_args.iter().map(String::as_str).collect();
    cluster.nodes[bad] = NodeProcess::start(&cluster.gatekeeper_url, &bind, &data, &args).await;
    let nodes = &cluster.nodes;
    wait_until(
        Duration::from_secs(20),
        "the bad holder serves again",
        || async {
            let files = api.get(&nodes[bad], "/v1/files").await;
            files["scanning"].as_bool() == Some(false)
                && files["files"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["hash"] == big_hash.as_str()))
        },
    )
    .await;

    // The bad holder serves the damaged bytes under the old hash...
    let range = StdCommand::new("curl")
        .args(["-sf", "-r", &format!("{}-{}", BIG / 2, BIG / 2 + 4095)])
        .arg(format!("http://{}/v1/files/{big_hash}", nodes[bad].files))
        .output()
        .unwrap();
    assert!(range.status.success());
    assert_ne!(
        range.stdout,
        &big[BIG / 2..BIG / 2 + 4096],
        "the damage is served"
    );
    // ...but cannot produce an outboard matching it, so a downloader asking it first is
    // refused there (a fault against it) and the good holder delivers the file. (Bad data
    // behind a valid outboard is caught per 16 KiB group: share's transfer_download tests.)
    let out = cluster.dir.path().join("survey.dat");
    let id = api
        .download(
            &nodes[0],
            json!({"hash": big_hash, "out": out, "holders": [nodes[bad].files, nodes[good].files]}),
        )
        .await;
    let view = api.wait_download(&nodes[0], id).await;
    assert_eq!(view["state"], "done", "{view}");
    let faults = view["faults"].to_string();
    assert!(
        faults.contains(&nodes[bad].files),
        "no fault against the bad holder: {view}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), big);

    // A download killed half-way (the downloading node is killed -9) resumes from its
    // verified prefix by itself after a restart. The downloader runs with a
    // download cap for the first attempt, so the kill lands mid-file on any machine.
    let downloader = (1..PEERS)
        .find(|i| ![good, bad].contains(i))
        .expect("20 peers");
    let down_args = {
        let mut a = node_args(downloader, &staging_path);
        let last = a.len() - 1;
        a[last] = cluster.dir.path().display().to_string();
        a
    };
    let bind = format!("127.0.0.{}", downloader + 2);
    let data = cluster.dir.path().join(format!("node-{downloader}"));
    let capped: Vec<&str> = down_args
        .iter()
        .map(String::as_str)
        .chain(["--download-limit", "8MiB"])
        .collect();
    cluster.nodes[downloader].kill_and_wait().await;
    cluster.nodes[downloader] =
        NodeProcess::start(&cluster.gatekeeper_url, &bind, &data, &capped).await;
    let nodes = &cluster.nodes;
    let out = cluster.dir.path().join("survey-resumed.dat");
    let id = api
        .download(
            &nodes[downloader],
            json!({"hash": big_hash, "out": out, "holders": [nodes[good].files]}),
        )
        .await;
    wait_until(
        Duration::from_secs(30),
        "part of the file arrived",
        || async {
            let v = api
                .get(&nodes[downloader], &format!("/v1/downloads/{id}"))
                .await;
            v["done_bytes"].as_u64().unwrap_or(0) >= (BIG / 8) as u64
        },
    )
    .await;
    cluster.nodes[downloader].kill_and_wait().await;
    assert!(
        !out.exists(),
        "the download had finished when it was killed, despite its 8 MiB/s cap"
    );
    // Restarted without the cap, so the rest arrives at full speed.
    let args: Vec<&str> = down_args.iter().map(String::as_str).collect();
    cluster.nodes[downloader] =
        NodeProcess::start(&cluster.gatekeeper_url, &bind, &data, &args).await;
    let nodes = &cluster.nodes;
    // The node takes the unfinished download up by itself (DATA_DIR/downloads.json,
    // issue 13), so asking for it again is refused as already running.
    let list = api.get(&nodes[downloader], "/v1/downloads").await;
    let restored = list
        .as_array()
        .and_then(|l| l.iter().find(|d| d["out"] == json!(out)))
        .unwrap_or_else(|| panic!("the download was not taken up again: {list}"));
    let id = restored["id"].as_u64().unwrap();
    let (status, _) = api
        .post(
            &nodes[downloader],
            "/v1/downloads",
            json!({"hash": big_hash, "out": out, "holders": [nodes[good].files]}),
        )
        .await;
    assert_eq!(status, 409);
    let view = api.wait_download(&nodes[downloader], id).await;
    assert_eq!(view["state"], "done", "{view}");
    let resumed = view["resumed_bytes"].as_u64().unwrap();
    assert!(
        resumed >= (BIG / 16) as u64,
        "resumed only {resumed} bytes: {view}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), big);

    // curl fetches a range by content hash.
    let files = &nodes[good].files;
    let curl = StdCommand::new("curl")
        .args(["-sf", "-r", "1000-1999"])
        .arg(format!("http://{files}/v1/files/{big_hash}"))
        .output()
        .unwrap();
    assert!(curl.status.success(), "curl failed");
    assert_eq!(curl.stdout, &big[1000..2000]);

    // Nothing outside the index is served: traversal in any spelling, absolute paths,
    // and a symlink out of the root (never indexed, so its content hash is unknown).
    let outside = std::fs::read("/etc/hostname").unwrap_or_else(|_| b"x".to_vec());
    std::os::unix::fs::symlink(
        "/etc/hostname",
        share_dir(&staging_path, good).join("escape.txt"),
    )
    .unwrap();
    std::fs::write(cluster.dir.path().join("secret.txt"), b"secret").unwrap();
    let outside_hash = highway_wire::ContentId::of(&outside).to_string();
    let secret_hash = highway_wire::ContentId::of(b"secret").to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in [
        "/v1/files/../../etc/hostname".to_string(),
        "/v1/files/..%2f..%2fetc%2fhostname".to_string(),
        "/v1/files/%2e%2e/%2e%2e/etc/hostname".to_string(),
        "/v1/files//etc/hostname".to_string(),
        "/v1/files/%2Fetc%2Fhostname".to_string(),
        format!("/v1/files/{outside_hash}"),
        format!("/v1/files/{secret_hash}"),
        "/../secret.txt".to_string(),
    ] {
        let curl = StdCommand::new("curl")
            .args([
                "-s",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("http://{files}{path}"))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&curl.stdout).to_string();
        assert!(
            code == "400" || code == "404",
            "{path} answered {code}, not a refusal"
        );
    }
    let hits = api.search(&nodes[0], "escape", 7).await;
    assert!(hits.is_empty(), "a symlink was indexed: {hits:?}");

    cluster.stop().await;
}
