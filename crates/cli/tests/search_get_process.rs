//! `highway search` and `highway get` against real node processes: hits as lines and as
//! the documented JSON, a verified download, and the failures that must not exit 0.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{pattern, run, saving_node_args, share_dir, texts, wait_searchable};
use serde_json::Value;
use support::Cluster;

const PEERS: usize = 3;
const FILE: &str = "quartz-canyon-survey.bin";
const SIZE: usize = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_prints_hits_and_json_and_get_exits_zero_only_for_a_verified_copy() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..PEERS {
        let share = share_dir(shares.path(), i);
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(share.join(format!("readme-{i}.txt")), b"hello\n").unwrap();
    }
    std::fs::write(
        share_dir(shares.path(), PEERS - 1).join(FILE),
        pattern(SIZE, 3),
    )
    .unwrap();
    let root = shares.path().to_path_buf();
    // `get --out` names files in this directory, which must be the node's download folder.
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster =
        Cluster::start_each(PEERS, |i, _| saving_node_args(i, &root, &downloads)).await;
    wait_searchable(&cluster.nodes, &[1, 1, 2]).await;
    let node = cluster.nodes[0].control.clone();
    let limit = Duration::from_secs(30);

    // Lines: a header, the hit, the end-of-search summary.
    let output = run(
        &["search", "--node", &node, "quartz", "canyon"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("size") && lines[0].ends_with("hash"),
        "{out}"
    );
    assert!(
        lines[1].contains("2.0 MiB") && lines[1].contains(FILE),
        "{out}"
    );
    assert!(lines[2].starts_with("1 file from 1 peer in "), "{out}");

    // JSON: one array of HitJson, nothing else on stdout.
    let output = run(
        &[
            "search",
            "--node",
            &node,
            "--json",
            "--ttl",
            "3",
            "--timeout",
            "3s",
            "quartz",
        ],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{err}");
    let hits: Vec<Value> = serde_json::from_str(&out).expect("stdout is one JSON array");
    assert_eq!(hits.len(), 1, "{out}");
    let hit = &hits[0];
    assert_eq!(hit["name"], FILE);
    assert_eq!(hit["size"].as_u64(), Some(SIZE as u64));
    assert_eq!(
        hit["holder"].as_str(),
        Some(cluster.nodes[PEERS - 1].id.as_str())
    );
    for field in ["hash", "addr", "hops", "at_ms"] {
        assert!(!hit[field].is_null(), "{field} missing: {hit}");
    }
    let hash = hit["hash"].as_str().unwrap().to_string();
    let holder = hit["addr"].as_str().unwrap().to_string();

    // No hits is not an error, but scripts tell it apart: exit status 3 (issue 13).
    let output = run(
        &["search", "--node", &node, "xylophone"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert_eq!(output.status.code(), Some(3), "{out}\n{err}");
    assert!(out.starts_with("no hits (the search ended after "), "{out}");
    assert!(!err.contains("error"), "{err}");

    // The download, relative to this directory, verified.
    let output = run(
        &[
            "get", "--node", &node, &hash, "--out", "copy.bin", "--holder", &holder,
        ],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{out}\n{err}");
    let copy = cwd.path().join("copy.bin");
    assert!(
        out.starts_with(&format!("download 1 done: {}", copy.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("verified against BLAKE3 {hash}")),
        "{out}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), pattern(SIZE, 3));

    // Without --holder the node searches by hash first.
    let output = run(
        &["get", "--node", &node, &hash, "--out", "again.bin"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    assert!(output.status.success(), "{:?}", texts(&output));
    assert_eq!(
        std::fs::read(cwd.path().join("again.bin")).unwrap(),
        pattern(SIZE, 3)
    );

    // Without --out: into the node's download folder under the hit's name; a second
    // time under a numbered name; a folder (`sub/`) means into it (issue 13).
    std::fs::create_dir(cwd.path().join("sub")).unwrap();
    for (out, expect) in [
        (None, FILE.to_string()),
        (None, FILE.replace(".bin", " (1).bin")),
        (Some("sub/"), format!("sub/{FILE}")),
        (
            Some("sub"),
            format!("sub/{}", FILE.replace(".bin", " (1).bin")),
        ),
    ] {
        let mut args = vec!["get", "--node", &node, &hash];
        args.extend(out.iter().flat_map(|out| ["--out", *out]));
        let output = run(&args, "", cwd.path(), limit).await;
        let (text, err) = texts(&output);
        assert!(output.status.success(), "{out:?}: {text}\n{err}");
        let path = cwd.path().join(&expect);
        assert!(
            text.contains(&format!("done: {}", path.display())),
            "{out:?}: {text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), pattern(SIZE, 3), "{expect}");
    }

    // An existing destination is refused before anything starts.
    let output = run(
        &["get", "--node", &node, &hash, "--out", "copy.bin"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (_, err) = texts(&output);
    assert!(!output.status.success());
    assert!(err.contains("exists already"), "{err}");

    // Outside the node's download folder: refused by the node, saying what to do.
    let output = run(
        &["get", "--node", &node, &hash, "--out", "../outside.bin"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (_, err) = texts(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("outside the node's download folder") && err.contains("--download-dir"),
        "{err}"
    );

    // Nobody holds this hash: the download fails and so does the command.
    let nobody = "ab".repeat(32);
    let output = run(
        &["get", "--node", &node, &nobody, "--out", "nothing.bin"],
        "",
        cwd.path(),
        Duration::from_secs(60),
    )
    .await;
    let (_, err) = texts(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("error: download") && err.contains("failed: "),
        "{err}"
    );
    assert!(!cwd.path().join("nothing.bin").exists());
    cluster.stop().await;
}

#[tokio::test]
async fn a_node_that_is_not_running_is_named_with_what_to_do() {
    let cwd = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    for args in [
        vec!["search", "--node", &addr, "anything"],
        vec!["get", "--node", &addr, "--out", "x", &"cd".repeat(32)],
        vec!["status", "--node", &addr],
    ] {
        let output = run(&args, "", cwd.path(), Duration::from_secs(20)).await;
        let (_, err) = texts(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            err.contains(&format!("cannot reach a node's control API at {addr}"))
                && err.contains("is `highway node` running?"),
            "{args:?}: {err}"
        );
    }
}

/// Issue 13: Ctrl-C on `highway get` left the download running in the node (its `.part`
/// kept growing) and a rerun said "already running". Now Ctrl-C cancels it in the node
/// (exit 130), `highway downloads` lists it as cancelled, `highway cancel` says it is
/// over, and the same `get` again resumes it to a verified copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_get_cancels_the_download_and_the_same_get_resumes_it() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..2 {
        std::fs::create_dir_all(share_dir(shares.path(), i)).unwrap();
    }
    let content = pattern(2 * SIZE, 5);
    std::fs::write(share_dir(shares.path(), 1).join(FILE), &content).unwrap();
    let root = shares.path().to_path_buf();
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster = Cluster::start_each(2, |i, _| {
        let mut args = saving_node_args(i, &root, &downloads);
        // 4 MiB take 8 s at this rate, and the first verified MiB (progress is counted in
        // verified groups of chunks) comes after 2: time to interrupt part-way.
        args.extend(["--download-limit".to_string(), "512KiB".to_string()]);
        args
    })
    .await;
    wait_searchable(&cluster.nodes, &[0, 1]).await;
    let node = cluster.nodes[0].control.clone();
    let limit = Duration::from_secs(30);
    let output = run(
        &["search", "--node", &node, "--json", "quartz", "canyon"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let hits: Value = serde_json::from_slice(&output.stdout).unwrap();
    let hash = hits[0]["hash"].as_str().expect("a hit").to_string();

    let get = ["get", "--node", &node, &hash, "--out", "copy.bin"];
    let child = tokio::process::Command::new(support::BIN)
        .args(get)
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let part = cwd.path().join("copy.bin.part");
    let list = ["downloads", "--node", &node, "--json"];
    support::wait_until(Duration::from_secs(40), "verified bytes arrive", || async {
        let output = run(&list, "", cwd.path(), limit).await;
        let list: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let view = &list[0];
        assert!(
            view.is_null() || view["state"] == "searching" || view["state"] == "running",
            "{view}"
        );
        view["done_bytes"].as_u64().is_some_and(|n| n > 0)
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (out, err) = texts(&output);
    assert_eq!(output.status.code(), Some(130), "{out}\n{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );

    // The node stopped it: listed as cancelled, the partial file no longer grows.
    let output = run(
        &["downloads", "--node", &node, "--json"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list[0]["state"], "cancelled", "{list}");
    let id = list[0]["id"].to_string();
    let size = std::fs::metadata(&part).unwrap().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        size,
        "still writing"
    );
    let output = run(&["cancel", "--node", &node, &id], "", cwd.path(), limit).await;
    let (out, err) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("already cancelled"), "{err}");
    let output = run(&["downloads", "--node", &node], "", cwd.path(), limit).await;
    let (out, _) = texts(&output);
    assert!(
        out.contains("cancelled") && out.contains("copy.bin"),
        "{out}"
    );

    // The same command again resumes where it stopped, to a verified copy.
    let output = run(&get, "", cwd.path(), Duration::from_secs(60)).await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert_eq!(std::fs::read(cwd.path().join("copy.bin")).unwrap(), content);
    cluster.stop().await;
}
