//! The overlay with real `highway` processes on loopback addresses, shortened timers.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::{Cluster, NodeProcess, wait_until};

/// Timers shrunk 10×: heartbeat 100 ms, suspicion after 500 ms, probes for 400 ms.
const FAST: &[&str] = &[
    "--heartbeat-interval",
    "100ms",
    "--suspect-timeout",
    "500ms",
    "--probe-timeout",
    "400ms",
];
/// Suspect + probe timeout + one heartbeat interval, plus generous slack for a loaded
/// 2-core machine running 20 debug-build peers.
const DETECTION_BOUND: Duration = Duration::from_millis(1000 + 4000);

fn connected(graph: &BTreeMap<String, BTreeSet<String>>) -> bool {
    let Some(start) = graph.keys().next() else {
        return true;
    };
    let mut seen = BTreeSet::from([start.clone()]);
    let mut stack = vec![start.clone()];
    while let Some(node) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if graph.contains_key(next) && seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen.len() == graph.len()
}

async fn overlay(nodes: &[&NodeProcess]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for node in nodes {
        let neighbours = node.neighbour_ids().await.unwrap_or_default();
        graph.insert(node.id.clone(), neighbours.into_iter().collect());
    }
    graph
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_peers_form_one_overlay_and_repair_after_five_are_killed() {
    let mut cluster = Cluster::start(20, FAST).await;
    let all: Vec<&NodeProcess> = cluster.nodes.iter().collect();
    wait_until(
        Duration::from_secs(40),
        "20 peers joined into one overlay",
        || async {
            let graph = overlay(&all).await;
            graph.values().all(|n| !n.is_empty()) && connected(&graph)
        },
    )
    .await;
    let graph = overlay(&all).await;
    for (id, neighbours) in &graph {
        assert!(
            neighbours.len() <= 5,
            "{id} has {} neighbours, max is 5",
            neighbours.len()
        );
    }
    let listed = cluster.gatekeeper_peer_count().await;
    assert_eq!(listed, 20, "the Gatekeeper lists every peer");

    // kill -9 five peers; remember who was linked to them.
    let victims: Vec<usize> = vec![1, 5, 9, 13, 17];
    let victim_ids: BTreeSet<String> = victims
        .iter()
        .map(|&i| cluster.nodes[i].id.clone())
        .collect();
    let killed_at = Instant::now();
    for &i in &victims {
        cluster.nodes[i].kill_hard();
    }
    let survivors: Vec<&NodeProcess> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !victims.contains(i))
        .map(|(_, n)| n)
        .collect();
    let watchers: Vec<(&NodeProcess, BTreeSet<String>)> = survivors
        .iter()
        .map(|n| {
            (
                *n,
                graph[&n.id]
                    .intersection(&victim_ids)
                    .cloned()
                    .collect::<BTreeSet<_>>(),
            )
        })
        .filter(|(_, dead)| !dead.is_empty())
        .collect();
    assert!(!watchers.is_empty(), "some survivor had a killed neighbour");
    wait_until(
        DETECTION_BOUND,
        "every neighbour of a killed peer dropped it as failed",
        || async {
            let mut all_done = true;
            for (node, dead) in &watchers {
                let now: BTreeSet<String> = node
                    .neighbour_ids()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                all_done &= now.is_disjoint(dead);
            }
            all_done
        },
    )
    .await;
    let detected_in = killed_at.elapsed();
    for (node, dead) in &watchers {
        let failures = node.stat("failures").await;
        assert!(
            failures >= dead.len() as u64,
            "{} reported {failures} failures for {dead:?}",
            node.id
        );
    }
    eprintln!(
        "all {} watchers detected their dead neighbours within {detected_in:?}",
        watchers.len()
    );

    wait_until(
        Duration::from_secs(30),
        "the 15 survivors are one overlay again",
        || async {
            let graph = overlay(&survivors).await;
            graph
                .values()
                .all(|n| n.iter().any(|id| !victim_ids.contains(id)))
                && connected(&graph)
        },
    )
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_paused_for_less_than_the_suspect_timeout_is_never_declared_failed() {
    // A longer suspect timeout than FAST, so a short pause cannot cross it on a slow machine.
    let timers = [
        "--heartbeat-interval",
        "100ms",
        "--suspect-timeout",
        "1500ms",
        "--probe-timeout",
        "500ms",
    ];
    let mut cluster = Cluster::start(5, &timers).await;
    let all: Vec<&NodeProcess> = cluster.nodes.iter().collect();
    wait_until(
        Duration::from_secs(30),
        "5 peers in one overlay",
        || async {
            let graph = overlay(&all).await;
            graph.values().all(|n| !n.is_empty()) && connected(&graph)
        },
    )
    .await;
    for _ in 0..3 {
        cluster.nodes[0].pause_for(Duration::from_millis(400)).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in &cluster.nodes {
        assert_eq!(
            node.stat("failures").await,
            0,
            "{} declared a paused peer failed",
            node.id
        );
    }
    let paused = cluster.nodes[0].id.clone();
    let graph = overlay(&cluster.nodes.iter().collect::<Vec<_>>()).await;
    assert!(
        graph.values().any(|n| n.contains(&paused)),
        "the paused peer lost its links"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ten_percent_loss_no_live_peer_is_declared_failed_for_a_minute() {
    let mut args = FAST.to_vec();
    args.extend(["--loss", "0.1"]);
    let mut cluster = Cluster::start(10, &args).await;
    let all: Vec<&NodeProcess> = cluster.nodes.iter().collect();
    wait_until(
        Duration::from_secs(40),
        "10 lossy peers in one overlay",
        || async {
            let graph = overlay(&all).await;
            graph.values().all(|n| !n.is_empty()) && connected(&graph)
        },
    )
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for node in &cluster.nodes {
            assert_eq!(
                node.stat("failures").await,
                0,
                "{} declared a live peer failed",
                node.id
            );
        }
    }
    let suspicions: u64 = {
        let mut total = 0;
        for node in &cluster.nodes {
            total += node.stat("suspicions").await;
        }
        total
    };
    eprintln!("10% loss for 60 s: 0 failures, {suspicions} suspicions (all refuted)");
    cluster.stop().await;
}
