//! `highway search --help` promises that case and accents are ignored: with real
//! `highway node` processes on loopback, `cafe` finds `Café …` and `istanbul` finds
//! `İstanbul …`, also on the last hop, where the holder's share summary decides whether the
//! query is sent at all (docs/PROTOCOL.md, "Keywords").

mod support;

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{BIN, Cluster, wait_until};

fn node_args(i: usize, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--heartbeat-interval",
        "100ms",
        "--suspect-timeout",
        "500ms",
        "--probe-timeout",
        "400ms",
        "--fast-share",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if i == 1 {
        let share = dir.join("share");
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join("Café del Mar.txt"), "sunset\n").unwrap();
        std::fs::write(share.join("İstanbul Nights.txt"), "bosphorus\n").unwrap();
        args.push("--share".into());
        args.push(share.display().to_string());
    }
    args
}

/// Names of the hits `highway search --json --ttl 1` prints for `words`, run from `node`.
fn search(control: &str, words: &str) -> Vec<String> {
    let out = StdCommand::new(BIN)
        .args([
            "search",
            "--node",
            control,
            "--json",
            "--ttl",
            "1",
            "--timeout",
            "2s",
        ])
        .args(words.split_whitespace())
        .output()
        .expect("run highway search");
    // 0 with hits, 3 without (issue 13).
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "highway search {words}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits: Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let empty = hits.as_array().is_some_and(Vec::is_empty);
    assert_eq!(out.status.code(), Some(if empty { 3 } else { 0 }));
    hits.as_array()
        .expect("an array")
        .iter()
        .filter_map(|h| h["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccented_queries_find_accented_names() {
    let mut cluster = Cluster::start_each(2, node_args).await;
    let holder = cluster.nodes[1].id.clone();
    let searcher = &cluster.nodes[0];
    wait_until(
        Duration::from_secs(30),
        "the two nodes are linked",
        || async {
            searcher
                .neighbour_ids()
                .await
                .is_some_and(|ids| ids.contains(&holder))
        },
    )
    .await;
    // Searches run from the holder's neighbour with TTL 1: the holder is the last hop, so
    // once the searcher has the holder's summary, a query reaches the holder only if that
    // summary says it might match. Wait for it: a query for a word the holder lacks stops
    // reaching it.
    let control = searcher.control.clone();
    let holder_node = &cluster.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the holder's summary never filtered a query"
        );
        let before = holder_node.stat("queries_received").await;
        assert!(search(&control, "zzzqqq").is_empty());
        let have_summary = searcher.stat("summaries_completed").await > 0;
        if have_summary && holder_node.stat("queries_received").await == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The holder may still be publishing its first files: its summary grows until both
    // names are in, so each spelling gets a few tries. Each must get through the last-hop
    // filter and match at the holder.
    for (query, name) in [
        ("cafe", "Café del Mar.txt"),
        ("CAFE", "Café del Mar.txt"),
        ("café mar", "Café del Mar.txt"),
        ("caf", "Café del Mar.txt"),
        ("istanbul", "İstanbul Nights.txt"),
        ("ISTANBUL nights", "İstanbul Nights.txt"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut names = search(&control, query);
        while names.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            names = search(&control, query);
        }
        assert_eq!(names, [name], "{query}");
    }
    // And nothing else matches.
    assert!(search(&control, "cafx").is_empty());
    cluster.stop().await;
}
