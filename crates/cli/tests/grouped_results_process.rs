//! Issue 13, items 7 and 8, against real node processes: a file two peers hold is one
//! row with its source count (the JSON keeps one hit per holder), rows show the path
//! within the share, folder names are searchable, the shell's `get` takes the hash
//! prefix its tables print, and a failed download fails a shell script.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{pattern, run, run_ok, saving_node_args, share_dir, texts, wait_searchable};
use serde_json::Value;
use support::Cluster;

const PEERS: usize = 3;
/// Shared by peers 1 and 2, in a folder whose name is the only place "bebop" appears.
const FOLDER: &str = "Bebop Sessions";
const FILE: &str = "night in tunisia.flac";
const SIZE: usize = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_per_file_with_its_sources_found_by_folder_and_fetched_by_prefix() {
    let shares = tempfile::tempdir().unwrap();
    for i in 0..PEERS {
        std::fs::create_dir_all(share_dir(shares.path(), i)).unwrap();
    }
    for i in 1..PEERS {
        let folder = share_dir(shares.path(), i).join(FOLDER);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(FILE), pattern(SIZE, 11)).unwrap();
    }
    let root = shares.path().to_path_buf();
    let cwd = tempfile::tempdir().unwrap();
    let downloads = cwd.path().display().to_string();
    let mut cluster =
        Cluster::start_each(PEERS, |i, _| saving_node_args(i, &root, &downloads)).await;
    wait_searchable(&cluster.nodes, &[0, 1, 1]).await;
    let node = cluster.nodes[0].control.clone();
    let limit = Duration::from_secs(40);
    let hash = blake3::hash(&pattern(SIZE, 11)).to_hex().to_string();

    // Found by the folder's name alone; one row, the path within the share shown.
    let (out, _) = run_ok(&["search", "--node", &node, "bebop"], "", cwd.path(), limit).await;
    let rows: Vec<&str> = out.lines().filter(|l| l.ends_with(&hash)).collect();
    assert_eq!(rows.len(), 1, "one row for the file:\n{out}");
    assert!(rows[0].contains(&format!("{FOLDER}/{FILE}")), "{out}");
    assert!(out.contains("1 file (2 sources) from 2 peers in "), "{out}");

    // The JSON keeps one hit per holder, each naming the path.
    let output = run(
        &["search", "--node", &node, "--json", "bebop", "tunisia"],
        "",
        cwd.path(),
        limit,
    )
    .await;
    let (out, _) = texts(&output);
    let hits: Vec<Value> = serde_json::from_str(&out).expect("one JSON array");
    assert_eq!(hits.len(), 2, "{out}");
    for hit in &hits {
        assert_eq!(hit["name"], format!("{FOLDER}/{FILE}"), "{hit}");
    }

    // The shell: `results` counts sources; `get` takes the 10-character prefix shown by
    // tables, and an ambiguous or unknown prefix is refused saying why.
    let prefix = &hash[..10];
    // A download nobody can serve fails after its search: the script's exit status says
    // so too (issue 13, item 5).
    let nobody = "ab".repeat(32);
    let script = format!(
        "search tunisia\nresults\nget {prefix}\nwait\nget 000000\nget {nobody}\nwait\nexit\n"
    );
    let output = run(&["shell", "--node", &node], &script, cwd.path(), limit).await;
    let (out, err) = texts(&output);
    let is_header = |l: &&str| l.contains("sources") && l.contains("hops");
    let row = out
        .lines()
        .skip_while(|l| !is_header(l))
        .find(|l| l.ends_with(&hash))
        .unwrap_or_else(|| panic!("no results row:\n{out}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[3], "2", "sources column: {row}");
    let copy = cwd.path().join(FILE);
    assert!(
        out.contains(&format!("done: {}", copy.display())),
        "{out}\n{err}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), pattern(SIZE, 11));
    assert!(
        out.contains("no file the shell knows of has a hash starting with 000000"),
        "{out}"
    );
    assert!(out.contains("failed: no peer answered a search"), "{out}");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err.contains("1 command of the script failed and 1 download failed"),
        "{err}"
    );
    cluster.stop().await;
}
