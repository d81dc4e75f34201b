//! Helpers for the process tests of `highway shell`, `search`, `get` and `demo`: peers
//! that share folders, waiting until searches can work, and driving a shell through its
//! standard input.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::support::{BIN, NodeProcess, wait_until};

/// [`sharing_node_args`], saving downloads into `downloads` (the node's --download-dir).
pub fn saving_node_args(i: usize, dir: &Path, downloads: &str) -> Vec<String> {
    let mut args = sharing_node_args(i, dir);
    args.extend(["--download-dir".to_string(), downloads.to_string()]);
    args
}

/// Fast timers and share reactions for node `i`, sharing `dir/share-i`.
pub fn sharing_node_args(i: usize, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--heartbeat-interval",
        "100ms",
        "--suspect-timeout",
        "500ms",
        "--probe-timeout",
        "400ms",
        "--target-degree",
        "2",
        "--max-degree",
        "3",
        "--fast-share",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--share".into());
    args.push(share_dir(dir, i).display().to_string());
    args
}

pub fn share_dir(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("share-{i}"))
}

/// Deterministic bytes that do not compress.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn get_json(http: &reqwest::Client, node: &NodeProcess, path: &str) -> Option<Value> {
    let url = format!("http://{}{path}", node.control);
    let response = http
        .get(&url)
        .bearer_auth(&node.token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

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

/// True when the nodes form one overlay, node `i` indexed `files[i]` files, and every
/// node has its neighbours' keyword summaries (searches filter the last hop by them).
async fn searchable(http: &reqwest::Client, nodes: &[NodeProcess], files: &[u64]) -> bool {
    let mut graph = BTreeMap::new();
    for (node, &expected) in nodes.iter().zip(files) {
        let Some(index) = get_json(http, node, "/v1/files").await else {
            return false;
        };
        if index["scanning"] != Value::Bool(false) || index["total_files"].as_u64() < Some(expected)
        {
            return false;
        }
        let Some(neighbours) = get_json(http, node, "/v1/neighbors").await else {
            return false;
        };
        let Some(list) = neighbours.as_array() else {
            return false;
        };
        if list.is_empty()
            || list
                .iter()
                .any(|n| n["summary_version"].as_u64() == Some(0))
        {
            return false;
        }
        let ids = list
            .iter()
            .filter_map(|n| n["id"].as_str().map(str::to_string))
            .collect();
        graph.insert(node.id.clone(), ids);
    }
    connected(&graph)
}

/// Waits until searches can reach every share (see [`searchable`]).
pub async fn wait_searchable(nodes: &[NodeProcess], files: &[u64]) {
    let http = reqwest::Client::new();
    wait_until(
        Duration::from_secs(60),
        "the nodes form one overlay with every share indexed and summarised",
        || searchable(&http, nodes, files),
    )
    .await;
}

/// Runs `highway ARGS` in `cwd` with `stdin` as its input, and checks that it succeeded;
/// its stdout and stderr.
pub async fn run_ok(args: &[&str], stdin: &str, cwd: &Path, limit: Duration) -> (String, String) {
    let output = run(args, stdin, cwd, limit).await;
    let (out, err) = texts(&output);
    assert!(
        output.status.success(),
        "highway {args:?} failed ({:?}):\n{out}\n{err}",
        output.status.code()
    );
    (out, err)
}

/// Runs `highway ARGS` in `cwd` with `stdin` as its input; panics after `limit`.
pub async fn run(args: &[&str], stdin: &str, cwd: &Path, limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn highway");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("highway {args:?} did not finish within {limit:?}"))
        .expect("wait for highway")
}

/// Standard output and error of a finished process, for assertions and messages.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `highway shell` fed one command at a time, its output read line by line.
pub struct ShellProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far, for failure messages.
    pub transcript: String,
}

impl ShellProcess {
    pub fn spawn(args: &[&str], cwd: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("shell")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn highway shell");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            transcript: String::new(),
        }
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the shell");
        stdin.flush().await.expect("flush the shell's stdin");
    }

    /// Reads lines until one contains `needle`; returns the lines read (that one last).
    pub async fn expect(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut read = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!(
                    "the shell ended before printing {needle:?}; it printed:\n{}",
                    self.transcript
                ),
                Err(_) => panic!(
                    "the shell did not print {needle:?} within {limit:?}; it printed:\n{}",
                    self.transcript
                ),
            };
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            read.push_str(&line);
            read.push('\n');
            if line.contains(needle) {
                return read;
            }
        }
    }

    /// Sends `command` and waits for a line containing `needle`.
    pub async fn run(&mut self, command: &str, needle: &str, limit: Duration) -> String {
        self.send(command).await;
        self.expect(needle, limit).await
    }

    /// Closes standard input (end of the script) and waits for the exit; the rest of
    /// the output is added to the transcript.
    pub async fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let rest = async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                self.transcript.push_str(&line);
                self.transcript.push('\n');
            }
            self.child.wait().await.expect("wait for the shell")
        };
        let status = tokio::time::timeout(limit, rest)
            .await
            .unwrap_or_else(|_| panic!("the shell did not exit within {limit:?}"));
        (status, self.transcript)
    }
}
