//! The control API's share, search and download endpoints on in-process nodes: a file
//! shared by one node is found by another's search and downloaded, verified.

mod common;

use std::time::Duration;

use common::{Files, network, network_with, wait_until};
use highway_node::StatusView;
use highway_node::views::{DownloadView, FilesView};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_is_found_and_downloaded_verified() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let net = network(
        4,
        &[(3, &[("Moon Landing 1969.mov", &big), ("notes.txt", b"hi")])],
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "node 3 indexed its share",
        async || {
            let files: FilesView = net.get(3, "/v1/files").await;
            !files.scanning && files.total_files == 2
        },
    )
    .await;
    wait_until(Duration::from_secs(10), "the overlay formed", async || {
        let mut ok = true;
        for n in &net.nodes {
            ok &= !n.neighbours().await.unwrap().is_empty();
        }
        ok
    })
    .await;

    // Summaries travel on heartbeats; a search finds the file once they arrived.
    let mut page = None;
    wait_until(
        Duration::from_secs(10),
        "a search finds the file",
        async || {
            let p = net
                .search(0, json!({"query": "moon landing", "timeout_ms": 3000}))
                .await;
            let found = p.hits.iter().any(|h| h.name == "Moon Landing 1969.mov");
            page = Some(p);
            found
        },
    )
    .await;
    let page = page.unwrap();
    let hit = page
        .hits
        .iter()
        .find(|h| h.name == "Moon Landing 1969.mov")
        .unwrap();
    assert_eq!(hit.size, big.len() as u64);
    assert_eq!(hit.holder, net.nodes[3].id());
    assert_eq!(hit.addr, net.nodes[3].file_server_addr());
    assert!(page.first_hit_ms.is_some());

    // Download by hash alone: the node finds the holder itself.
    let out = net.dir.path().join("downloaded.mov");
    let r = net
        .post(0, "/v1/downloads", json!({"hash": hit.hash, "out": out}))
        .await;
    assert_eq!(r.status(), 202);
    let view: DownloadView = r.json().await.unwrap();
    let mut last = view.clone();
    wait_until(Duration::from_secs(20), "the download ended", async || {
        last = net.get(0, &format!("/v1/downloads/{}", view.id)).await;
        last.state == "done" || last.state == "failed"
    })
    .await;
    assert_eq!(last.state, "done", "{:?}", last.error);
    assert_eq!(std::fs::read(&out).unwrap(), big);

    // The same file again to the same place is refused, clearly.
    let r = net
        .post(0, "/v1/downloads", json!({"hash": hit.hash, "out": out}))
        .await;
    assert_eq!(r.status(), 409);

    // Bad searches are refused with a message.
    let r = net.post(0, "/v1/search", json!({"query": "!!"})).await;
    assert_eq!(r.status(), 400);
    let r = net
        .post(0, "/v1/search", json!({"query": "x", "ttl": 9}))
        .await;
    assert_eq!(r.status(), 400);

    // A plain HTTP client fetches a range from the holder's file server.
    let r = net
        .http
        .get(format!(
            "http://{}/v1/files/{}",
            net.nodes[3].file_server_addr(),
            hit.hash
        ))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[100..200]);

    // The holder counted what its file server sent: the whole file to node 0 (plus its
    // outboard) and the range; node 0 counted what it fetched.
    let holder: StatusView = net.get(3, "/v1/status").await;
    assert!(holder.runtime.files_served >= 2, "{:?}", holder.runtime);
    assert!(holder.runtime.outboards_served >= 1, "{:?}", holder.runtime);
    // Its outboard was made when the file was indexed: the first download did not wait
    // for the holder to read the whole file again (issue 12).
    assert_eq!(holder.runtime.outboards_computed, 0, "{:?}", holder.runtime);
    assert!(
        holder.runtime.file_connections_accepted >= 2,
        "{:?}",
        holder.runtime
    );
    assert!(
        holder.runtime.bytes_served >= big.len() as u64 + 100,
        "{:?}",
        holder.runtime
    );
    let fetcher: StatusView = net.get(0, "/v1/status").await;
    assert_eq!(fetcher.runtime.bytes_fetched, big.len() as u64);
    assert_eq!(fetcher.runtime.downloads_done, 1);
    assert_eq!(fetcher.runtime.bytes_served, 0);
}

/// `POST /v1/downloads` writes only inside `--download-dir`, `POST /v1/share` shares only
/// the start folder or folders under a `--share-root`; the refusals say what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_and_shares_stay_in_the_folders_the_node_was_given() {
    let files: Files = &[("a.txt", b"alpha")];
    let net = network(1, &[(0, files)]).await;
    let outside = tempfile::tempdir().unwrap();
    let base = net.dir.path();
    std::os::unix::fs::symlink(outside.path(), base.join("link")).unwrap();
    let hash = "ab".repeat(32);

    let refused = [
        (json!("../escape.bin"), "`..`"),
        (json!("sub/../../escape.bin"), "`..`"),
        (
            json!(outside.path().join("planted.bin")),
            "--allow-download-anywhere",
        ),
        (
            json!(base.join("link/planted.bin")),
            "--allow-download-anywhere",
        ),
        (
            json!(base.join("../planted.bin")),
            "--allow-download-anywhere",
        ),
    ];
    for (out, hint) in refused {
        let r = net
            .post(0, "/v1/downloads", json!({"hash": hash, "out": out}))
            .await;
        assert_eq!(r.status(), 400, "{out}");
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(hint), "{out}: {message}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // Inside the download folder, relative or absolute, is accepted.
    for out in [json!("inside.bin"), json!(base.join("inside-too.bin"))] {
        let r = net
            .post(0, "/v1/downloads", json!({"hash": hash, "out": out}))
            .await;
        assert_eq!(r.status(), 202, "{out}");
    }

    // Shares: a folder outside --share and --share-root is refused, also through a link.
    std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
    std::fs::create_dir_all(base.join("roots/music")).unwrap();
    std::os::unix::fs::symlink(outside.path(), base.join("roots/escape")).unwrap();
    for root in [outside.path().to_path_buf(), base.join("roots/escape")] {
        let r = net.post(0, "/v1/share", json!({"root": root})).await;
        assert_eq!(r.status(), 403, "{}", root.display());
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("--share-root"), "{message}");
    }
    let files: FilesView = net.get(0, "/v1/files").await;
    assert_eq!(
        files.root,
        Some(std::fs::canonicalize(base.join("share-0")).unwrap())
    );

    for root in [base.join("roots/music"), base.join("share-0")] {
        let r = net.post(0, "/v1/share", json!({"root": root})).await;
        assert_eq!(r.status(), 200, "{}", root.display());
    }
}

/// Issue 13: a download could not be stopped outside the shell (Ctrl-C on `highway get`
/// left it running). `DELETE /v1/downloads/{id}` stops it at once; what it fetched stays
/// in its `.part`, and the same download started again resumes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_stops_and_the_same_download_resumes() {
    let file: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    let net = network_with(2, &[(1, &[("tide tables.bin", &file)])], |i, config| {
        if i == 0 {
            // About 6 s for the whole file: time to cancel part-way.
            config.download_limit = Some(256 * 1024);
        }
    })
    .await;
    let mut hash = None;
    wait_until(
        Duration::from_secs(15),
        "node 0 finds the file",
        async || {
            let page = net.search(0, json!({"query": "tide tables"})).await;
            hash = page.hits.first().map(|h| h.hash);
            hash.is_some()
        },
    )
    .await;
    let hash = hash.unwrap();
    let out = net.dir.path().join("tides.bin");
    let start = async || -> DownloadView {
        let r = net
            .post(0, "/v1/downloads", json!({"hash": hash, "out": out}))
            .await;
        assert_eq!(r.status(), 202);
        r.json().await.unwrap()
    };
    let first = start().await;
    let path = format!("/v1/downloads/{}", first.id);
    // Progress counts verified groups of chunks (the first MiB comes after about 4 s).
    wait_until(Duration::from_secs(30), "some bytes arrived", async || {
        let view: DownloadView = net.get(0, &path).await;
        view.done_bytes > 0
    })
    .await;

    let r = net.delete(0, &path).await;
    assert_eq!(r.status(), 200);
    let cancelled: DownloadView = r.json().await.unwrap();
    assert_eq!(cancelled.state, "cancelled");
    // It stopped: the partial file no longer grows, and the view stays cancelled.
    let part = net.dir.path().join("tides.bin.part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let size = std::fs::metadata(&part).unwrap().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        size,
        "still writing"
    );
    assert!(size < file.len() as u64);
    let view: DownloadView = net.get(0, &path).await;
    assert_eq!(view.state, "cancelled");
    // Cancelling twice, or a download that does not exist, is refused.
    assert_eq!(net.delete(0, &path).await.status(), 409);
    assert_eq!(net.delete(0, "/v1/downloads/999").await.status(), 404);

    // The same download again resumes and completes, verified.
    let second = start().await;
    let mut last = second.clone();
    wait_until(
        Duration::from_secs(30),
        "the resumed download ended",
        async || {
            last = net.get(0, &format!("/v1/downloads/{}", second.id)).await;
            last.state == "done" || last.state == "failed"
        },
    )
    .await;
    assert_eq!(last.state, "done", "{:?}", last.error);
    assert!(last.resumed_bytes > 0, "{last:?}");
    assert_eq!(std::fs::read(&out).unwrap(), file);
    let status: StatusView = net.get(0, "/v1/status").await;
    assert_eq!(status.runtime.downloads_cancelled, 1);
}

/// Issue 13: `out` in a folder that takes no files (/proc, or one the node's user may not
/// write) was accepted and then failed naming the download's own `OUT.part.outboard`. It
/// is refused at once, naming the folder and who writes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_the_node_cannot_write_is_refused_at_once_naming_the_folder() {
    let net = network_with(1, &[], |_, config| config.allow_download_anywhere = true).await;
    let hash = highway_wire::ContentId::of(b"anything");
    let r = net
        .post(
            0,
            "/v1/downloads",
            json!({"hash": hash, "out": "/proc/highway-download.bin"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("cannot write into /proc") && message.contains("the user it runs as"),
        "{message}"
    );
    assert!(!message.contains("outboard"), "{message}");

    // A file where the folder should be is named as such, not as a missing folder.
    let file = net.dir.path().join("notes.txt");
    std::fs::write(&file, b"x").unwrap();
    let r = net
        .post(
            0,
            "/v1/downloads",
            json!({"hash": hash, "out": file.join("copy.bin")}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("is a file, not a folder"), "{message}");
}
