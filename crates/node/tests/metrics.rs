//! `GET /metrics` on a node's control API: valid Prometheus text (`promtool check
//! metrics`), and the same figures `/v1/status` and `/v1/neighbors` show, including the
//! failure detector's transitions after a neighbour crashes. In-process Gatekeeper and
//! nodes on 127.0.0.2..4 with the test timers.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig};
use highway_node::{NodeConfig, NodeHandle, StatusView};
use tokio::sync::oneshot;

async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool`, or None (saying why) when it is not installed. `HIGHWAY_REQUIRE_TOOLS=1`
/// (set by scripts/test, which installs it) turns a missing promtool into a failure.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    let why = "promtool is not installed (apt-get install prometheus); ./scripts/test installs it";
    assert!(
        std::env::var("HIGHWAY_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{why}, and HIGHWAY_REQUIRE_TOOLS=1 forbids skipping"
    );
    eprintln!("SKIPPED the promtool check: {why}");
    None
}

/// Asserts `promtool check metrics` accepts `text` without a single remark.
fn assert_promtool_accepts(promtool: &str, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}\n--- the metrics:\n{text}"
    );
}

/// The value of the sample line that starts with `series ` (name and labels, exactly).
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn get(
    http: &reqwest::Client,
    (control, token): (SocketAddr, &str),
    path: &str,
) -> reqwest::Response {
    http.get(format!("http://{control}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("control API answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_status_pass_promtool_and_count_a_crashed_neighbour() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gatekeeper = format!("http://{}", listener.local_addr().unwrap());
    let (stop_gatekeeper, stopped) = oneshot::channel::<()>();
    let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
    let gatekeeper_task = tokio::spawn(highway_gatekeeper::run(listener, app, async {
        let _ = stopped.await;
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..3u8 {
        let mut config = NodeConfig::new(
            format!("127.0.0.{}", i + 2).parse().unwrap(),
            gatekeeper.clone(),
            dir.path().join(format!("node-{i}")),
        );
        config.core = highway_core::Config::test();
        nodes.push(highway_node::start(config).await.expect("node starts"));
    }
    // Three nodes with target degree 3 link into a triangle.
    wait_until(
        Duration::from_secs(15),
        "every node has 2 neighbours",
        || {
            let nodes = &nodes;
            async move {
                for node in nodes {
                    if node.neighbours().await.map_or(0, |n| n.len()) < 2 {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    wait_until(
        Duration::from_secs(5),
        "node 0 heard heartbeats",
        || async {
            nodes[0]
                .status()
                .await
                .is_some_and(|s| s.stats.heartbeats_received > 0 && s.stats.heartbeats_sent > 0)
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = nodes[0].control_token().to_string();
    let control = (nodes[0].control_addr(), token.as_str());
    let reply = get(&http, control, "/metrics").await;
    assert_eq!(reply.status(), 200);
    let content_type = reply.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert!(
        content_type
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{content_type:?}"
    );
    let text = reply.text().await.unwrap();
    let status: StatusView = get(&http, control, "/v1/status")
        .await
        .json()
        .await
        .unwrap();

    if let Some(promtool) = promtool() {
        assert_promtool_accepts(promtool, &text);
    }
    let id = status.id.to_string();
    assert!(text.contains(&format!("highway_node_info{{id=\"{id}\",version=")));
    assert_eq!(
        value(&text, "highway_node_phase{phase=\"running\"}"),
        Some(1)
    );
    assert_eq!(value(&text, "highway_node_degree"), Some(2));
    assert_eq!(
        value(&text, "highway_node_neighbours{state=\"okay\"}"),
        Some(2)
    );
    assert_eq!(value(&text, "highway_node_max_degree"), Some(5));
    // Heartbeats only grow: the metrics, read first, show no more than the status.
    let sent = value(&text, "highway_node_heartbeats_sent_total").expect("heartbeats sent");
    let received = value(&text, "highway_node_heartbeats_received_total").expect("received");
    assert!(
        sent > 0 && sent <= status.stats.heartbeats_sent,
        "{sent}: {status:?}"
    );
    assert!(
        received > 0 && received <= status.stats.heartbeats_received,
        "{received}: {status:?}"
    );
    let linked = value(&text, "highway_node_runtime_outbound_linked_total").unwrap()
        + value(&text, "highway_node_runtime_inbound_linked_total").unwrap();
    assert_eq!(
        linked, 2,
        "two links, each counted once by the side it was made on"
    );
    // Every counter of both structs is there, its HELP saying what it counts and naming
    // its field (issue 13: the help read "counter FIELD" for every one).
    let core = serde_json::to_value(&status.stats).unwrap();
    let runtime = serde_json::to_value(&status.runtime).unwrap();
    for object in [&core, &runtime] {
        for field in object.as_object().unwrap().keys() {
            let help = format!(" (field {field})");
            let line = text
                .lines()
                .find(|l| l.starts_with("# HELP highway_node_") && l.ends_with(&help));
            let line = line.unwrap_or_else(|| panic!("no counter for {field}:\n{text}"));
            assert!(!line.contains("A counter ("), "generic help: {line}");
        }
    }
    let help = |metric: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("# HELP {metric} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        help("highway_node_heartbeats_sent_total").contains("Heartbeats sent to neighbours"),
        "{text}"
    );

    // Node 2 crashes (no Leave): node 0 suspects it, probes it, and declares it failed.
    drop(nodes.pop());
    let transitions = |text: &str, from: &str, to: &str| {
        let series =
            format!("highway_node_detector_transitions_total{{from=\"{from}\",to=\"{to}\"}}");
        value(text, &series).unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(10),
        "node 0 failed the crashed node",
        || {
            let http = http.clone();
            async move {
                let text = get(&http, control, "/metrics").await.text().await.unwrap();
                transitions(&text, "warning", "failed") == 1
            }
        },
    )
    .await;
    let text = get(&http, control, "/metrics").await.text().await.unwrap();
    assert!(transitions(&text, "okay", "warning") >= 1, "{text}");
    assert_eq!(value(&text, "highway_node_failures_total"), Some(1));
    assert_eq!(
        value(&text, "highway_node_neighbours{state=\"warning\"}"),
        Some(0)
    );
    assert_eq!(
        value(&text, "highway_node_neighbours{state=\"okay\"}"),
        Some(1)
    );
    if let Some(promtool) = promtool() {
        assert_promtool_accepts(promtool, &text);
    }

    // Like the rest of the control API, refused to a web page.
    let refused = http
        .get(format!("http://{}/metrics", control.0))
        .header("origin", "http://evil.example")
        .bearer_auth(control.1)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // And to a caller without the token (the node was not started with --open-metrics).
    let refused = http
        .get(format!("http://{}/metrics", control.0))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    for node in nodes {
        node.shutdown().await;
    }
    let _ = stop_gatekeeper.send(());
    let _ = gatekeeper_task.await;
}

/// `--open-metrics`: `GET /metrics` without the token, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_metrics_serves_only_metrics_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    // No Gatekeeper is needed to answer locally; joining just keeps failing.
    let mut config = NodeConfig::new(
        "127.0.0.71".parse().unwrap(),
        "http://127.0.0.1:9",
        dir.path().join("node"),
    );
    config.core = highway_core::Config::test();
    config.open_metrics = true;
    let node = highway_node::start(config).await.unwrap();
    let control = node.control_addr();
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("http://{control}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("highway_node_info"));
    for (method, path) in [("GET", "/v1/status"), ("POST", "/metrics")] {
        let reply = http
            .request(method.parse().unwrap(), format!("http://{control}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401, "{method} {path}");
    }
    drop(node);
}
