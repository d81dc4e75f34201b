//! Smoke test of the runtime: an in-process Gatekeeper and four in-process nodes on
//! 127.0.0.2..5, with the test timers (heartbeat 100 ms, suspicion after 500 ms).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use highway_core::DownReason;
use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig};
use highway_node::{NeighbourJson, NodeConfig, NodeEvent, NodeHandle, StatusView};
use highway_wire::NodeId;
use tokio::sync::{broadcast, oneshot};

/// Polls `check` every 50 ms until it holds, or panics after `limit` naming `what`.
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

async fn overlay(nodes: &[NodeHandle]) -> BTreeMap<NodeId, BTreeSet<NodeId>> {
    let mut graph = BTreeMap::new();
    for node in nodes {
        let neighbours = node.neighbours().await.expect("node is running");
        graph.insert(node.id(), neighbours.iter().map(|n| n.id).collect());
    }
    graph
}

fn connected(graph: &BTreeMap<NodeId, BTreeSet<NodeId>>) -> bool {
    let Some(&start) = graph.keys().next() else {
        return true;
    };
    let mut seen = BTreeSet::from([start]);
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if graph.contains_key(next) && seen.insert(*next) {
                stack.push(*next);
            }
        }
    }
    seen.len() == graph.len()
}

/// An in-process Gatekeeper on 127.0.0.1 (test timers), stopped by [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts a Gatekeeper: its URL, and how to stop it.
async fn start_gatekeeper() -> (String, Running) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
    let task = tokio::spawn(highway_gatekeeper::run(listener, app, async {
        let _ = stopped.await;
    }));
    (url, Running { stop, task })
}

/// Every event received so far, without waiting.
fn drain(rx: &mut broadcast::Receiver<NodeEvent>, into: &mut Vec<NodeEvent>) {
    while let Ok(event) = rx.try_recv() {
        into.push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_link_up_and_a_graceful_leave_is_seen_as_left_not_failed() {
    let (gatekeeper, stop_gatekeeper) = start_gatekeeper().await;

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..4u8 {
        let mut config = NodeConfig::new(
            format!("127.0.0.{}", i + 2).parse().unwrap(),
            gatekeeper.clone(),
            dir.path().join(format!("node-{i}")),
        );
        config.core = highway_core::Config::test();
        let node = highway_node::start(config).await.expect("node starts");
        assert_eq!(node.addr().ip.to_string(), format!("127.0.0.{}", i + 2));
        assert!(node.control_addr().ip().is_loopback());
        watchers.push(node.events());
        nodes.push(node);
    }

    let formed = Instant::now();
    wait_until(
        Duration::from_secs(15),
        "every node has a neighbour and the overlay is connected",
        || async {
            let graph = overlay(&nodes).await;
            graph.values().all(|n| !n.is_empty()) && connected(&graph)
        },
    )
    .await;
    eprintln!("overlay connected after {:?}", formed.elapsed());

    // Links are symmetric once heartbeats flowed, and within the degree bounds.
    wait_until(
        Duration::from_secs(5),
        "both ends list every link",
        || async {
            let graph = overlay(&nodes).await;
            graph
                .iter()
                .all(|(id, ns)| ns.iter().all(|n| graph[n].contains(id)))
        },
    )
    .await;

    // The control API answers over HTTP with the documented shapes.
    let http = reqwest::Client::new();
    let control = nodes[1].control_addr();
    let token = nodes[1].control_token().to_string();
    let status: StatusView = http
        .get(format!("http://{control}/v1/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.id, nodes[1].id());
    assert_eq!(status.phase, "running");
    assert_eq!(status.gatekeeper, gatekeeper);
    assert!(status.degree >= 1 && status.degree <= status.max_degree);
    let listed: Vec<NeighbourJson> = http
        .get(format!("http://{control}/v1/neighbors"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), status.degree);
    let raw: serde_json::Value = http
        .get(format!("http://{control}/v1/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in ["id", "short_id", "addr", "phase", "degree", "stats"] {
        assert!(raw.get(key).is_some(), "status lacks {key}: {raw}");
    }
    let refused = http
        .get(format!("http://{control}/v1/status"))
        .header("origin", "http://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "a browser's cross-origin request");

    // Without the token, or with another, every endpoint answers 401 and says what to do.
    let token_file = nodes[1].token_file().to_path_buf();
    assert_eq!(highway_node::token::read(&token_file).unwrap(), token);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{}", token_file.display());
    let wrong = "0".repeat(64);
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/neighbors"),
        ("GET", "/metrics"),
        ("GET", "/v1/files"),
        ("POST", "/v1/leave"),
        ("POST", "/v1/share"),
        ("POST", "/v1/downloads"),
        ("GET", "/v1/nothing"),
    ] {
        for bearer in [None, Some(wrong.as_str())] {
            let mut request =
                http.request(method.parse().unwrap(), format!("http://{control}{path}"));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), 401, "{method} {path} with {bearer:?}");
            let body: serde_json::Value = reply.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("--token"), "{message}");
            assert!(
                message.contains(&token_file.display().to_string()),
                "{message}"
            );
        }
    }
    let after = nodes[1].status().await.unwrap();
    assert_eq!(after.phase, "running", "401s did not stop it");
    assert_eq!(
        after.runtime.control_unauthorized, 16,
        "each refusal is counted"
    );

    for node in &nodes {
        let status = node.status().await.unwrap();
        assert_eq!(
            status.stats.failures, 0,
            "{} failed a peer",
            status.short_id
        );
    }

    // Node 0 leaves gracefully; each of its neighbours drops it as "left", well before
    // the failure detector could have (suspicion alone takes 500 ms).
    let leaver = nodes.remove(0);
    watchers.remove(0);
    let leaver_id = leaver.id();
    let its_neighbours: BTreeSet<NodeId> = leaver
        .neighbours()
        .await
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert!(!its_neighbours.is_empty());
    let left_at = Instant::now();
    leaver.shutdown().await;
    let mut seen: Vec<Vec<NodeEvent>> = vec![Vec::new(); nodes.len()];
    wait_until(
        Duration::from_millis(400),
        "every neighbour of the leaver dropped it",
        || {
            for (rx, seen) in watchers.iter_mut().zip(seen.iter_mut()) {
                drain(rx, seen);
            }
            let all_dropped = nodes
                .iter()
                .zip(&seen)
                .filter(|(n, _)| its_neighbours.contains(&n.id()))
                .all(|(_, events)| {
                    events.contains(&NodeEvent::NeighbourDown {
                        id: leaver_id,
                        reason: DownReason::Left,
                    })
                });
            async move { all_dropped }
        },
    )
    .await;
    eprintln!(
        "neighbours dropped the leaver after {:?}",
        left_at.elapsed()
    );

    // Long enough for a false suspicion to turn into a failure (500 + 400 ms), and for
    // the survivors to settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut early = 0;
    for (i, node) in nodes.iter().enumerate() {
        let status = node.status().await.unwrap();
        assert_eq!(
            status.stats.failures, 0,
            "node {} declared a live peer failed",
            status.short_id
        );
        early += status.runtime.early_datagrams;
        drain(&mut watchers[i], &mut seen[i]);
        // Neither a failure nor a fresh link torn down by a "not your neighbour" (the
        // responder's first heartbeat racing the initiator's handshake report).
        for event in &seen[i] {
            assert!(
                !matches!(
                    event,
                    NodeEvent::NeighbourDown {
                        reason: DownReason::Failed | DownReason::NotNeighbour,
                        ..
                    }
                ),
                "{event:?}"
            );
        }
        let neighbours = node.neighbours().await.unwrap();
        assert!(neighbours.iter().all(|n| n.id != leaver_id));
    }
    eprintln!("datagrams held for links not yet reported up: {early}");
    let survivors = overlay(&nodes).await;
    assert!(connected(&survivors), "the survivors stay one overlay");

    // The Gatekeeper forgot the leaver at once.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let client =
        highway_gatekeeper::GatekeeperClient::new(&gatekeeper, key, Default::default()).unwrap();
    let peers = client.all_peers().await.unwrap();
    assert!(peers.iter().all(|p| p.id != leaver_id));
    assert_eq!(peers.len(), 3);

    for node in nodes {
        node.shutdown().await;
    }
    stop_gatekeeper.stop().await;
}

/// A hello naming another address than the connection's source links (a peer behind a
/// NAT names its LAN address), but not one datagram goes to that address: a link's path is
/// where the initiator's authenticated datagrams come from, and this one never spoke. The
/// address is not handed on as dialable either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_naming_someone_elses_address_aims_nothing_at_it() {
    use highway_wire::PeerAddr;
    use highway_wire::peer::handshake::{Initiator, InitiatorOutcome, Purpose, split_frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gatekeeper = format!("http://{}", listener.local_addr().unwrap());
    let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
    let gatekeeper_task = tokio::spawn(highway_gatekeeper::run(
        listener,
        app,
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(
        "127.0.0.20".parse().unwrap(),
        gatekeeper,
        dir.path().join("n"),
    );
    config.core = highway_core::Config::test();
    let node = highway_node::start(config).await.expect("node starts");

    // The victim: a UDP socket that must hear nothing.
    let victim_socket = tokio::net::UdpSocket::bind("127.0.0.99:0").await.unwrap();
    let victim_port = victim_socket.local_addr().unwrap().port();
    let victim = PeerAddr::new("127.0.0.99".parse().unwrap(), victim_port, 9);
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let (initiator, hello) = Initiator::start(&key, victim, Purpose::Link, [1; 32]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.21:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(node.tcp_addr()).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    let read_frame = async |stream: &mut tokio::net::TcpStream| -> Vec<u8> {
        let mut buf = Vec::new();
        loop {
            if let Some((payload, _)) = split_frame(&buf).unwrap() {
                return payload.to_vec();
            }
            let mut chunk = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("the node answers")
                .unwrap();
            assert!(n > 0, "the node closed the handshake");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let welcome = read_frame(&mut stream).await;
    let InitiatorOutcome::Linked { confirm, .. } =
        initiator.on_welcome(&welcome, Some(node.id()), 7).unwrap()
    else {
        panic!("a peer naming another address (as behind a NAT) is accepted");
    };
    stream.write_all(&confirm).await.unwrap();
    let established = read_frame(&mut stream).await;
    assert!(highway_wire::peer::handshake::is_established(&established));
    let listed = node.neighbours().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].dialable, "handed on as dialable");
    assert_eq!(listed[0].udp_path, None);

    // Heartbeats, probes, the failure: for five suspect timeouts nothing reaches the victim.
    let mut buf = [0u8; 2048];
    let heard = tokio::time::timeout(
        Duration::from_millis(2500),
        victim_socket.recv_from(&mut buf),
    )
    .await;
    assert!(
        heard.is_err(),
        "a datagram was aimed at the address the hello named"
    );
    let status = node.status().await.unwrap();
    assert!(status.stats.sends_without_path > 0);
    assert_eq!(
        status.stats.links_lost_unheard, 1,
        "the silent link was dropped"
    );
    node.shutdown().await;
    gatekeeper_task.abort();
}

/// `--bind 0.0.0.0`: the node listens on every address and publishes the one this host
/// uses toward the Gatekeeper (here 127.0.0.1), which the Gatekeeper sees its requests
/// come from: it is dialable, and it links with a node bound the usual way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bound_to_every_address_publishes_its_route_to_the_gatekeeper() {
    let (gatekeeper, stop_gatekeeper) = start_gatekeeper().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (i, bind) in ["127.0.0.6", "0.0.0.0"].into_iter().enumerate() {
        let mut config = NodeConfig::new(
            bind.parse().unwrap(),
            gatekeeper.clone(),
            dir.path().join(format!("node-{i}")),
        );
        config.core = highway_core::Config::test();
        nodes.push(highway_node::start(config).await.expect("node starts"));
    }
    assert_eq!(nodes[1].addr().ip.to_string(), "127.0.0.1");
    wait_until(
        Duration::from_secs(15),
        "the two nodes link, and the Gatekeeper offers the one on 0.0.0.0 as dialable",
        || async {
            let Some(status) = nodes[1].status().await else {
                return false;
            };
            status.degree == 1 && status.reachability.dialable
        },
    )
    .await;
    for node in nodes {
        node.shutdown().await;
    }
    stop_gatekeeper.stop().await;
}

/// Issue 13: two nodes on one data directory silently shared one identity. The second
/// is refused, saying why and who holds it; once the first stops, the folder is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_directory_is_refused() {
    let (gatekeeper, stop_gatekeeper) = start_gatekeeper().await;
    let dir = tempfile::tempdir().unwrap();
    let config = |ip: &str| {
        let mut config = NodeConfig::new(ip.parse().unwrap(), gatekeeper.clone(), dir.path());
        config.core = highway_core::Config::test();
        config
    };
    let first = highway_node::start(config("127.0.0.7"))
        .await
        .expect("the first node starts");
    let refused = highway_node::start(config("127.0.0.8")).await;
    let error = match refused {
        Ok(_) => panic!("a second node started on the same data directory"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("--data-dir") && error.contains(&std::process::id().to_string()),
        "{error}"
    );
    first.shutdown().await;
    let again = highway_node::start(config("127.0.0.8"))
        .await
        .expect("the folder is free once the first node stopped");
    again.shutdown().await;
    stop_gatekeeper.stop().await;
}
