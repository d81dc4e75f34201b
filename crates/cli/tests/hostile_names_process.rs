//! A peer shares a file whose name carries terminal escape sequences (set the window title,
//! ring the bell, clear the screen). `highway search` and the shell, run against real node
//! processes, must print the name with those characters made visible, never raw; the JSON
//! form keeps the exact name (JSON escapes control characters itself).

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{run, saving_node_args, share_dir, texts, wait_searchable};
use serde_json::Value;
use support::Cluster;

/// OSC 0 (window title) ended by BEL, then CSI 2J (clear screen), then a C1 CSI.
const HOSTILE: &str = "zircon\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m-notes.txt";
/// How the text forms must show it (tables cut long names in the middle, so its start
/// and its end).
const SHOWN: [&str; 2] = ["zircon\\u{1b}]", "\\u{9b}31m-notes.txt"];
/// The copy's name: the node makes control characters `_`.
const SAVED: &str = "zircon_]0;pwned__[2J_31m-notes.txt";

fn shows_escaped(text: &str) -> bool {
    SHOWN.iter().all(|part| text.contains(part))
}

fn assert_no_raw_controls(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        raw.is_empty(),
        "{what} printed raw control characters {raw:?}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_remote_file_names_never_reach_the_terminal_raw() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..2 {
        std::fs::create_dir_all(share_dir(shares.path(), i)).unwrap();
    }
    std::fs::write(
        share_dir(shares.path(), 1).join(HOSTILE),
        b"a hostile name\n",
    )
    .unwrap();
    let root = shares.path().to_path_buf();
    // The node writes downloads, and only into its download folder: the shell's folder.
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster = Cluster::start_each(2, |i, _| saving_node_args(i, &root, &downloads)).await;
    wait_searchable(&cluster.nodes, &[0, 1]).await;
    let node = cluster.nodes[0].control.clone();
    let limit = Duration::from_secs(40);

    // One-shot search, as lines.
    let output = run(
        &["search", "--node", &node, "zircon"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert!(shows_escaped(&out), "the name is shown escaped:\n{out}");
    assert_no_raw_controls("highway search", &out);
    assert_no_raw_controls("highway search (stderr)", &err);

    // JSON keeps the exact name.
    let output = run(
        &["search", "--node", &node, "--json", "zircon"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, _) = texts(&output);
    let hits: Vec<Value> = serde_json::from_str(&out).expect("stdout is one JSON array");
    assert_eq!(hits[0]["name"], HOSTILE, "{out}");

    // The shell: search, list, download (the copy is named after the hit, made safe),
    // list downloads.
    let script = "search zircon\nresults\nget 1\nwait\ndownloads\nexit\n";
    let output = run(&["shell", "--node", &node], script, cwd.path(), limit).await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(shows_escaped(&out), "{out}");
    assert!(out.contains("verified against BLAKE3"), "{out}");
    assert_no_raw_controls("the shell", &out);
    assert_no_raw_controls("the shell (stderr)", &err);
    assert_eq!(
        std::fs::read(cwd.path().join(SAVED)).unwrap(),
        b"a hostile name\n"
    );
    cluster.stop().await;
}
