//! `highway search`, `get` and `status` against a stand-in control API that answers
//! exactly what each test needs: the long-poll is followed hit by hit, the node's error
//! messages reach the user, and `get` exits 0 only for a finished, verified download.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use highway_node::views::{DownloadRequest, DownloadView, HitJson, SearchPage, SearchRequest};
use highway_wire::{ContentId, NodeId};
use serde_json::json;
use support::BIN;

/// What the stand-in saw.
#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<String>>>,
    search: Arc<Mutex<Option<SearchRequest>>>,
    download: Arc<Mutex<Option<DownloadRequest>>>,
}

impl Seen {
    fn note(&self, what: String) {
        self.requests.lock().unwrap().push(what);
    }
}

fn node_id(seed: u8) -> NodeId {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    NodeId::from_key(&key.verifying_key())
}

fn hit(name: &str, holder: u8, at_ms: u64) -> HitJson {
    HitJson {
        name: name.to_string(),
        size: 4096,
        hash: ContentId::of(name.as_bytes()),
        holder: node_id(holder),
        addr: SocketAddr::from(([127, 0, 0, holder], 4000)),
        hops: holder,
        at_ms,
        dialable: true,
        relays: Vec::new(),
    }
}

fn download(id: u64, state: &str, error: Option<&str>) -> DownloadView {
    DownloadView {
        id,
        hash: ContentId::of(b"file"),
        out: PathBuf::from("/tmp/file"),
        state: state.to_string(),
        size: Some(1 << 20),
        done_bytes: if state == "done" { 1 << 20 } else { 0 },
        resumed_bytes: 0,
        rate_bps: 0,
        eta_ms: None,
        holders: vec![SocketAddr::from(([127, 0, 0, 9], 1))],
        corrupt_holders: if state == "failed" {
            vec![SocketAddr::from(([127, 0, 0, 9], 1))]
        } else {
            Vec::new()
        },
        faults: Vec::new(),
        error: error.map(str::to_string),
        elapsed_ms: 500,
        sources: Vec::new(),
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    after: usize,
    wait_ms: u64,
}

async fn start_search(State(seen): State<Seen>, body: axum::Json<SearchRequest>) -> Response {
    *seen.search.lock().unwrap() = Some(body.0);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"search": "0f".repeat(16)})),
    )
        .into_response()
}

/// Hits arrive in two batches, then the end.
async fn search_page(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    seen.note(format!("page {id} after={} wait_ms={}", q.after, q.wait_ms));
    let all = [
        hit("first.txt", 2, 12),
        hit("second.txt", 3, 40),
        hit("third.txt", 2, 41),
    ];
    let (hits, done) = match q.after {
        0 => (all[..1].to_vec(), false),
        1 => (all[1..].to_vec(), false),
        _ => (Vec::new(), true),
    };
    let page = SearchPage {
        search: id,
        query: "two words".to_string(),
        done,
        next: q.after + hits.len(),
        hits,
        elapsed_ms: 1234,
        first_hit_ms: Some(12),
    };
    axum::Json(page).into_response()
}

async fn start_download(State(seen): State<Seen>, body: axum::Json<DownloadRequest>) -> Response {
    let id = if body
        .0
        .out
        .as_ref()
        .is_some_and(|out| out.ends_with("good.bin"))
    {
        8
    } else {
        7
    };
    *seen.download.lock().unwrap() = Some(body.0);
    (
        StatusCode::ACCEPTED,
        axum::Json(download(id, "searching", None)),
    )
        .into_response()
}

async fn one_download(Path(id): Path<u64>) -> Response {
    let view = match id {
        8 => download(8, "done", None),
        _ => download(
            7,
            "failed",
            Some("every holder sent bytes that failed verification"),
        ),
    };
    axum::Json(view).into_response()
}

async fn refuse() -> Response {
    let body =
        json!({"error": "bad_request", "message": "the query has no keywords (letters or digits)"});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Serves `router` on 127.0.0.1; its address.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn highway(args: &[&str], cwd: &std::path::Path) -> (Option<i32>, String, String) {
    highway_with(args, cwd, &[]).await
}

/// [`highway`] with environment variables set (and `HIGHWAY_NODE` cleared otherwise).
async fn highway_with(
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("HIGHWAY_NODE")
        .envs(env.iter().copied())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("highway finishes")
        .expect("highway runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_follows_the_long_poll_and_numbers_hits_as_they_arrive() {
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/search", post(start_search))
        .route("/v1/search/{id}", get(search_page))
        .with_state(seen.clone());
    let addr = serve(router).await.to_string();
    let cwd = tempfile::tempdir().unwrap();
    let args = [
        "search",
        "--node",
        &addr,
        "--ttl",
        "2",
        "--timeout",
        "1500ms",
        "two",
        "words",
    ];
    let (code, out, err) = highway(&args, cwd.path()).await;
    assert_eq!(code, Some(0), "{err}");

    let request = seen.search.lock().unwrap().clone().unwrap();
    assert_eq!(request.query.as_deref(), Some("two words"));
    assert_eq!(
        (request.ttl, request.timeout_ms, request.hash),
        (Some(2), Some(1500), None)
    );
    let id = "0f".repeat(16);
    assert_eq!(
        *seen.requests.lock().unwrap(),
        [0, 1, 3].map(|after| format!("page {id} after={after} wait_ms=10000"))
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, (number, name)) in
        lines[1..4]
            .iter()
            .zip([(1, "first.txt"), (2, "second.txt"), (3, "third.txt")])
    {
        assert!(
            line.trim_start().starts_with(&format!("{number} ")),
            "{line}"
        );
        assert!(line.contains(name), "{line}");
    }
    assert_eq!(
        lines[4],
        "3 files from 2 peers in 1.2s; first hit after 12ms"
    );

    let (code, out, _) = highway(&[&args[..], &["--json"]].concat(), cwd.path()).await;
    assert_eq!(code, Some(0));
    let hits: Vec<HitJson> = serde_json::from_str(&out).expect("one JSON array of hits");
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["first.txt", "second.txt", "third.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_s_error_message_reaches_the_user_with_a_failing_exit() {
    let router = Router::new().route("/v1/search", post(refuse));
    let addr = serve(router).await;
    let cwd = tempfile::tempdir().unwrap();
    let (code, out, err) =
        highway(&["search", "--node", &addr.to_string(), "..."], cwd.path()).await;
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: the query has no keywords (letters or digits) (the node at {addr} \
             answered POST /v1/search with 400 bad_request)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_exits_zero_only_when_the_download_is_done_and_verified() {
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/downloads", post(start_download))
        .route("/v1/downloads/{id}", get(one_download))
        .with_state(seen.clone());
    let addr = serve(router).await.to_string();
    let cwd = tempfile::tempdir().unwrap();
    let hash = ContentId::of(b"file").to_string();

    let (code, out, err) = highway(
        &[
            "get",
            "--node",
            &addr,
            &hash,
            "--out",
            "bad.bin",
            "--holder",
            "127.0.0.9:1",
        ],
        cwd.path(),
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains(
            "error: download 7 failed: every holder sent bytes that failed verification \
             (peers caught sending bad bytes: 127.0.0.9:1)"
        ),
        "{err}"
    );
    let request = seen.download.lock().unwrap().clone().unwrap();
    assert_eq!(
        request.out,
        Some(cwd.path().join("bad.bin")),
        "made absolute here"
    );
    assert_eq!(request.holders, [SocketAddr::from(([127, 0, 0, 9], 1))]);

    let (code, out, err) = highway(
        &["get", "--node", &addr, &hash, "--out", "good.bin"],
        cwd.path(),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("download 8 done: /tmp/file (1.0 MiB in 500ms"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_a_node_is_named_as_such() {
    let router = Router::new().route("/v1/status", get(|| async { "<html>hello</html>" }));
    let addr = serve(router).await;
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, err) = highway(&["status", "--node", &addr.to_string()], cwd.path()).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "answered GET /v1/status with 200 and no JSON (expected value at line 1 column 1); \
             is {addr} the control address of a Highway node?"
        )),
        "{err}"
    );
}

/// Issue 13: every command needed `--node`. `HIGHWAY_NODE` names the node once for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highway_node_in_the_environment_stands_for_the_node_flag() {
    let router = Router::new().route("/v1/search", post(refuse));
    let addr = serve(router).await.to_string();
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, err) =
        highway_with(&["search", "..."], cwd.path(), &[("HIGHWAY_NODE", &addr)]).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("the node at {addr} answered POST /v1/search")),
        "{err}"
    );
    let (code, _, err) = highway(&["search", "..."], cwd.path()).await;
    assert_eq!(code, Some(2), "without either, a usage error: {err}");
    assert!(err.contains("--node"), "{err}");
}
