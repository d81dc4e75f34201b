//! Failed downloads are reported whole, with real node processes: a holder that serves bytes
//! which fail verification (`--corrupt-uploads`) is named in `corrupt_holders` also when it
//! was the only holder,
//! and every failed download (corrupt holder, nobody holds the hash) is counted in
//! `downloads_failed`.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{pattern, run, saving_node_args, share_dir, texts, wait_searchable};
use serde_json::Value;
use support::Cluster;

const FILE: &str = "basalt-column-survey.bin";
const SIZE: usize = 1 << 20;

async fn downloads_failed(node: &str, cwd: &std::path::Path) -> u64 {
    let output = run(
        &["status", "--node", node, "--json"],
        "",
        cwd,
        Duration::from_secs(10),
    )
    .await;
    let (out, err) = texts(&output);
    let status: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    status["runtime"]["downloads_failed"]
        .as_u64()
        .unwrap_or_else(|| panic!("no runtime.downloads_failed in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_corrupt_holder_is_named_and_every_failed_download_is_counted() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..2 {
        std::fs::create_dir_all(share_dir(shares.path(), i)).unwrap();
    }
    let content = pattern(SIZE, 11);
    let path = share_dir(shares.path(), 1).join(FILE);
    std::fs::write(&path, &content).unwrap();
    let root = shares.path().to_path_buf();
    // The node writes downloads, and only into its download folder: the CLI's folder here.
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    // Node 1 plays a holder that corrupts what it sends (its outboard stays right, so the
    // damage is caught per chunk group).
    let mut cluster = Cluster::start_each(2, |i, _| {
        let mut args = saving_node_args(i, &root, &downloads);
        if i == 1 {
            args.extend(["--corrupt-uploads".to_string(), "1".to_string()]);
        }
        args
    })
    .await;
    wait_searchable(&cluster.nodes, &[0, 1]).await;
    let hash = highway_wire::ContentId::of(&content).to_string();
    let holder = cluster.nodes[1].files.clone();

    let node = cluster.nodes[0].control.clone();
    let limit = Duration::from_secs(40);
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
    assert!(!output.status.success(), "{out}\n{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains(&format!("peers caught sending bad bytes: {holder}")),
        "the only holder, which sent bad bytes, is named:\n{said}"
    );
    assert!(!cwd.path().join("copy.bin").exists(), "no unverified file");
    assert_eq!(downloads_failed(&node, cwd.path()).await, 1);

    // Nobody holds this hash: the node searches, finds no one, and counts the failure.
    let nobody = highway_wire::ContentId::of(b"held by no peer").to_string();
    let output = run(
        &["get", "--node", &node, &nobody, "--out", "none.bin"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert!(!output.status.success(), "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("no peer answered"),
        "{out}{err}"
    );
    assert_eq!(downloads_failed(&node, cwd.path()).await, 2);
    cluster.stop().await;
}
