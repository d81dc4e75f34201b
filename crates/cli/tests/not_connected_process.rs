//! Issue 13: a node whose Gatekeeper is down looked healthy (`running`, degree 0) and its
//! searches returned its own files with no word about being cut off. Now `status` says
//! NOT CONNECTED and why, `search` says so on stderr even when local hits come back, and
//! the log written to a file carries no terminal colour codes.

mod cli_support;
mod support;

use std::time::Duration;

use cli_support::{run, texts};
use support::{NodeProcess, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_gatekeeper_says_it_is_not_connected() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("lighthouse-keeper-notes.txt"), b"beam\n").unwrap();
    // Nothing listens there: every Gatekeeper call fails.
    let gatekeeper = format!("http://127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let share_arg = share.display().to_string();
    let node = NodeProcess::start(
        &gatekeeper,
        "127.0.0.31",
        &data,
        &["--share", &share_arg, "--fast-share"],
    )
    .await;
    let cwd = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(20);
    let search = [
        "search",
        "--node",
        &node.control,
        "--ttl",
        "1",
        "lighthouse",
        "keeper",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        let output = run(&search, "", cwd.path(), limit).await;
        if output.status.success() || std::time::Instant::now() > deadline {
            break texts(&output);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (out, err) = last;
    assert!(out.contains("lighthouse-keeper-notes.txt"), "{out}");
    assert!(err.contains("not connected: 0 neighbours"), "{err}");
    assert!(err.contains("Gatekeeper"), "{err}");

    let output = run(&["status", "--node", &node.control], "", cwd.path(), limit).await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{err}");
    assert!(out.contains("NOT CONNECTED: 0 neighbours"), "{out}");
    assert!(out.contains("Gatekeeper"), "{out}");

    // The shell at a terminal (a pseudo-terminal from util-linux's `script`) marks its
    // prompt and says why once.
    let command = format!(
        "{} shell --node {} --token {}",
        support::BIN,
        node.control,
        node.token
    );
    let out = at_a_terminal(&command, "status\nexit\n", limit).await;
    assert!(out.contains("highway (not connected)> "), "{out:?}");
    assert_eq!(
        out.matches("not connected: 0 neighbours").count(),
        1,
        "{out:?}"
    );

    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("node started"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
    // After several failed Gatekeeper calls one warning says so; the repeats are quiet.
    let status_url = format!("http://{}/v1/status", node.control);
    support::wait_until(
        Duration::from_secs(20),
        "three Gatekeeper calls failed",
        || async {
            let status = support::get_json(&node.http, &status_url).await;
            status.is_some_and(|s| s["runtime"]["gatekeeper_errors"].as_u64() >= Some(3))
        },
    )
    .await;
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Gatekeeper"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    assert!(log.contains("repeats are logged at debug level"), "{log}");
}

/// Issue 13: a missing share folder was named with its error three times over.
#[tokio::test]
async fn a_missing_share_folder_is_named_once_and_the_node_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no such folder");
    let data = dir.path().join("data");
    let gatekeeper = format!("http://127.0.0.1:{}", free_port());
    let args = [
        "node",
        "--gatekeeper",
        &gatekeeper,
        "--bind",
        "127.0.0.32",
        "--data-dir",
        data.to_str().unwrap(),
        "--share",
        missing.to_str().unwrap(),
    ];
    let output = run(&args, "", dir.path(), Duration::from_secs(20)).await;
    let (_, err) = texts(&output);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("cannot share the folder"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Runs `command` in a pseudo-terminal (util-linux's `script`), typing `input`; what the
/// terminal showed.
async fn at_a_terminal(command: &str, input: &str, limit: Duration) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux's script runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    // `script` reads its input until it ends: closed at once, it would end the session
    // before the shell read it; never closed, `script` would wait on after the shell.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(stdin);
    });
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("the shell ended")
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}
