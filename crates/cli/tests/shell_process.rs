//! `highway shell` driven through its standard input against real `highway gatekeeper`
//! and `highway node` processes on loopback addresses: scripts search, download and
//! verify; a shell without a node starts one, shares a folder and stops it; wrong usage
//! is explained and fails the script.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{
    ShellProcess, pattern, run, saving_node_args, share_dir, texts, wait_searchable,
};
use support::Cluster;

const PEERS: usize = 4;
/// Held only by the last peer.
const FAR_FILE: &str = "zebra-sunset-timelapse.bin";
const FAR_SIZE: usize = 3 << 20;

/// Each peer shares a file named after it; the last one also the far file.
fn write_shares(dir: &std::path::Path) -> Vec<u64> {
    (0..PEERS)
        .map(|i| {
            let share = share_dir(dir, i);
            std::fs::create_dir_all(&share).unwrap();
            std::fs::write(
                share.join(format!("notes-of-peer-{i}.txt")),
                format!("peer {i}\n"),
            )
            .unwrap();
            if i == PEERS - 1 {
                std::fs::write(share.join(FAR_FILE), pattern(FAR_SIZE, 7)).unwrap();
                2
            } else {
                1
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_script_searches_downloads_and_verifies_a_file_another_peer_holds() {
    let shares = tempfile::tempdir().unwrap();
    let files = write_shares(shares.path());
    let root = shares.path().to_path_buf();
    // The shell saves into its directory, which must be the node's download folder.
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster =
        Cluster::start_each(PEERS, |i, _| saving_node_args(i, &root, &downloads)).await;
    wait_searchable(&cluster.nodes, &files).await;

    let copy = cwd.path().join(FAR_FILE);
    let second = cwd.path().join("zebra-sunset-timelapse (1).bin");
    // `get 1` twice: the second copy gets a numbered name; naming the first copy as
    // the destination is refused (a download never overwrites).
    let script = format!(
        "search zebra sunset\nresults\nget 1\nwait\ndownloads\nget 1\nwait\nget 1 {}\nexit\n",
        copy.display()
    );
    let control = cluster.nodes[0].control.clone();
    let output = run(
        &["shell", "--node", &control],
        &script,
        cwd.path(),
        Duration::from_secs(60),
    )
    .await;
    let (out, err) = texts(&output);

    // The hit, numbered, with its holder and hash, twice (search, then results).
    let hash = blake3::hash(&pattern(FAR_SIZE, 7)).to_hex().to_string();
    let hit_lines: Vec<&str> = out.lines().filter(|l| l.contains(FAR_FILE)).collect();
    assert!(hit_lines.len() >= 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(hit_lines[0].trim_start().starts_with("1 "), "{out}");
    assert!(hit_lines[0].ends_with(&hash), "{out}");
    assert!(out.contains("1 file from 1 peer in "), "{out}");
    // The download: started, done and verified, listed by `downloads`.
    assert!(
        out.contains(&format!("started: {}", copy.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("done: {}", copy.display()))
            && out.contains(&format!("verified against BLAKE3 {hash}")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("done") && l.contains("100%")),
        "{out}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), pattern(FAR_SIZE, 7));
    assert_eq!(std::fs::read(&second).unwrap(), pattern(FAR_SIZE, 7));
    assert!(
        out.contains(&format!("done: {}", second.display())),
        "{out}"
    );
    // Naming the copy would overwrite it: refused, and the script fails.
    assert!(out.contains("exists already"), "{out}");
    assert!(!output.status.success());
    assert!(
        err.contains("1 command of the script failed"),
        "stderr:\n{err}"
    );
    assert!(
        !out.contains('\x1b'),
        "no escape sequences without a terminal"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_without_a_node_starts_one_that_shares_a_folder_and_leaves_on_stop() {
    let mut cluster = Cluster::start(0, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("my share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("kiwi-harvest-report.txt"), b"kiwis\n").unwrap();

    let mut shell = ShellProcess::spawn(
        &[
            "--gatekeeper",
            &cluster.gatekeeper_url,
            "--bind",
            "127.0.0.30",
            "--data-dir",
            &dir.path().join("data").display().to_string(),
        ],
        dir.path(),
    );
    let limit = Duration::from_secs(20);
    let started = shell.run("start 'my share'", "started:", limit).await;
    assert!(started.starts_with("node "), "{started}");
    shell.expect(&share.display().to_string(), limit).await;
    support::wait_until(limit, "the new node registered", || async {
        cluster.gatekeeper_peer_count().await == 1
    })
    .await;

    // Hashing runs in the background: ask until the file is indexed.
    let mut indexed = false;
    for _ in 0..100 {
        let files = shell.run("files", "sharing ", limit).await;
        if files.contains(": 1 file indexed") {
            indexed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(indexed, "never indexed:\n{}", shell.transcript);
    let hits = shell
        .run("search kiwi harvest", "only on this node", limit)
        .await;
    assert!(hits.contains("kiwi-harvest-report.txt"), "{hits}");

    shell.run("stop", "left the network", limit).await;
    support::wait_until(limit, "the Gatekeeper forgot the node", || async {
        cluster.gatekeeper_peer_count().await == 0
    })
    .await;
    shell.run("status", "no node yet", limit).await;
    let (status, transcript) = shell.finish(limit).await;
    assert_eq!(
        status.code(),
        Some(1),
        "status failed, so the script did:\n{transcript}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn wrong_usage_in_a_script_is_explained_and_fails_the_exit_status() {
    let cwd = tempfile::tempdir().unwrap();
    let output = run(
        &["shell", "--data-dir", &cwd.path().display().to_string()],
        "help\nget\nfrobnicate\nserch foo\nsearch\nresults\nquit\nstatus\n",
        cwd.path(),
        Duration::from_secs(20),
    )
    .await;
    let (out, err) = texts(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.starts_with("commands:\n"), "{out}");
    for line in [
        "usage: get <result number | content hash | ticket> [dest]",
        "unknown command `frobnicate`; `help` lists the commands",
        "unknown command `serch`; did you mean `search`? (`help` lists the commands)",
        "usage: search <words>",
        "no search yet; `search <words>` starts one",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert!(
        !out.contains("no node yet"),
        "`status` after `quit` never ran:\n{out}"
    );
    assert!(err.contains("4 commands of the script failed"), "{err}");
}
