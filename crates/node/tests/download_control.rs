//! Issue 13, item 2: downloads can be paused and resumed, wait in a queue beyond the
//! running slots, and survive a restart of the node (paused ones stay paused), each
//! resuming from its `.part` and ending verified.

mod common;

use std::time::Duration;

use common::{Net, network_with, wait_until};
use highway_node::views::DownloadView;
use highway_wire::ContentId;
use serde_json::json;

/// Running slots (highway_node's `MAX_RUNNING`).
const SLOTS: usize = 16;

fn content(seed: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

async fn start(net: &Net, hash: ContentId, out: &str) -> DownloadView {
    let r = net
        .post(0, "/v1/downloads", json!({"hash": hash, "out": out}))
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn change(net: &Net, id: u64, verb: &str) -> DownloadView {
    let r = net
        .post(0, &format!("/v1/downloads/{id}/{verb}"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{verb}: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn view(net: &Net, id: u64) -> DownloadView {
    net.get(0, &format!("/v1/downloads/{id}")).await
}

async fn find(net: &Net, words: &str) -> ContentId {
    let mut hash = None;
    wait_until(
        Duration::from_secs(15),
        "node 0 finds the file",
        async || {
            let page = net.search(0, json!({"query": words})).await;
            hash = page.hits.first().map(|h| h.hash);
            hash.is_some()
        },
    )
    .await;
    hash.unwrap()
}

async fn wait_state(net: &Net, id: u64, states: &[&str]) -> DownloadView {
    let mut last = None;
    wait_until(
        Duration::from_secs(40),
        &format!("download {id} is one of {states:?}"),
        async || {
            let v = view(net, id).await;
            let found = states.contains(&v.state.as_str());
            last = Some(v);
            found
        },
    )
    .await;
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_downloads_stop_resume_and_survive_a_restart_paused_or_running() {
    let first = content(1, 1_500_000);
    // Large enough to be still running when the node restarts.
    let second = content(2, 5_000_000);
    let mut net = network_with(
        2,
        &[(1, &[("reef one.bin", &first), ("reef two.bin", &second)])],
        |i, config| {
            if i == 0 {
                // About 6 s per file: time to pause part-way.
                config.download_limit = Some(256 * 1024);
            }
        },
    )
    .await;
    let one = find(&net, "reef one").await;
    let two = find(&net, "reef two").await;

    // Pause part-way: the `.part` stops growing, pausing again changes nothing.
    let a = start(&net, one, "one.bin").await;
    wait_until(Duration::from_secs(30), "some bytes arrived", async || {
        view(&net, a.id).await.done_bytes > 0
    })
    .await;
    assert_eq!(change(&net, a.id, "pause").await.state, "paused");
    let part = net.dir.path().join("one.bin.part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let size = std::fs::metadata(&part).unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        size,
        "still writing"
    );
    assert_eq!(change(&net, a.id, "pause").await.state, "paused");

    // Resume: it ends verified, from what it had.
    change(&net, a.id, "resume").await;
    let done = wait_state(&net, a.id, &["done", "failed"]).await;
    assert_eq!(done.state, "done", "{:?}", done.error);
    assert!(done.resumed_bytes > 0, "{done:?}");
    assert_eq!(
        std::fs::read(net.dir.path().join("one.bin")).unwrap(),
        first
    );
    // A finished download cannot be resumed or paused; an unknown one is not found.
    let r = net
        .post(0, &format!("/v1/downloads/{}/resume", a.id), json!({}))
        .await;
    assert_eq!(r.status(), 409);
    let r = net.post(0, "/v1/downloads/999/pause", json!({})).await;
    assert_eq!(r.status(), 404);

    // One paused and one running when the node stops: both come back after a restart,
    // the paused one still paused; resumed, each ends verified.
    let c = start(&net, one, "one again.bin").await;
    wait_until(
        Duration::from_secs(30),
        "some bytes of one again",
        async || view(&net, c.id).await.done_bytes > 0,
    )
    .await;
    change(&net, c.id, "pause").await;
    let b = start(&net, two, "two.bin").await;
    wait_until(Duration::from_secs(30), "some bytes of two", async || {
        view(&net, b.id).await.done_bytes > 0
    })
    .await;
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(net.configs[0].data_dir.join("downloads.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        saved["downloads"].as_array().unwrap().len(),
        2,
        "{saved}\n{:?}",
        view(&net, b.id).await
    );
    net.restart(0).await;

    let list: Vec<DownloadView> = net.get(0, "/v1/downloads").await;
    assert_eq!(list.len(), 2, "{list:?}");
    let find_out = |name: &str| {
        list.iter()
            .find(|d| d.out.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not restored: {list:?}"))
            .clone()
    };
    let b = find_out("two.bin");
    let c = find_out("one again.bin");
    assert_eq!(c.state, "paused");
    assert_ne!(b.state, "paused");
    let b = wait_state(&net, b.id, &["done", "failed"]).await;
    assert_eq!(b.state, "done", "{:?}", b.error);
    assert!(b.resumed_bytes > 0, "{b:?}");
    assert_eq!(
        std::fs::read(net.dir.path().join("two.bin")).unwrap(),
        second
    );
    assert_eq!(view(&net, c.id).await.state, "paused");
    change(&net, c.id, "resume").await;
    let c = wait_state(&net, c.id, &["done", "failed"]).await;
    assert_eq!(c.state, "done", "{:?}", c.error);
    assert_eq!(
        std::fs::read(net.dir.path().join("one again.bin")).unwrap(),
        first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_beyond_the_running_slots_wait_queued_and_start_in_order() {
    // A holder that accepts connections and never answers: every download runs (waiting
    // for it) until cancelled, so only the queue decides what runs. A real holder would
    // answer some with 503 once its upload slots are taken, and those would fail and
    // free their slots while the test looks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let holder = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let net = network_with(1, &[], |_, _| {}).await;
    let files: Vec<Vec<u8>> = (0..=SLOTS as u32).map(|i| content(i + 10, 1000)).collect();
    let mut ids = Vec::new();
    for (i, data) in files.iter().enumerate() {
        let hash = ContentId::of(data);
        let r = net
            .post(
                0,
                "/v1/downloads",
                json!({"hash": hash, "out": format!("kelp-{i}.bin"), "holders": [holder]}),
            )
            .await;
        assert_eq!(r.status(), 202);
        let v: DownloadView = r.json().await.unwrap();
        ids.push(v.id);
    }
    let last = *ids.last().unwrap();
    assert_eq!(view(&net, last).await.state, "queued");
    for id in &ids[..SLOTS] {
        assert_ne!(view(&net, *id).await.state, "queued");
    }
    // A slot frees up: the queued one runs.
    let r = net.delete(0, &format!("/v1/downloads/{}", ids[0])).await;
    assert_eq!(r.status(), 200);
    wait_state(&net, last, &["running"]).await;
    // Cancel everything, so the test ends quickly.
    for id in &ids[1..] {
        let _ = net.delete(0, &format!("/v1/downloads/{id}")).await;
    }
    let list: Vec<DownloadView> = net.get(0, "/v1/downloads").await;
    assert!(list.iter().all(|d| d.state == "cancelled"), "{list:?}");
}
