//! The file server over real sockets: ranges, HEAD, curl, and everything it must refuse.

mod transfer_support;

use std::sync::Arc;
use std::time::Duration;

use highway_share::transfer::ServerConfig;
use highway_wire::ContentId;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use transfer_support::{MapSource, random_bytes, raw_get, share, start_server, url};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

struct Fixture {
    _root: tempfile::TempDir,
    _outside: tempfile::TempDir,
    server: transfer_support::Server,
    source: Arc<MapSource>,
    id: ContentId,
    content: Vec<u8>,
    secret_id: ContentId,
}

async fn fixture(config: impl FnOnce(ServerConfig) -> ServerConfig) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(300_000, 1);
    let id = share(&source, root.path(), "song.bin", &content);
    let secret_path = outside.path().join("secret.txt");
    std::fs::write(&secret_path, SECRET).unwrap();
    let secret_id = ContentId::of(SECRET.as_bytes());
    let server = start_server(config(ServerConfig::new(root.path())), Arc::clone(&source)).await;
    Fixture {
        _root: root,
        _outside: outside,
        server,
        source,
        id,
        content,
        secret_id,
    }
}

fn files(f: &Fixture, id: &ContentId) -> String {
    url(f.server.addr, &format!("/v1/files/{id}"))
}

#[tokio::test]
async fn get_serves_the_whole_file_with_content_headers_and_head_gives_the_length() {
    let f = fixture(|c| c).await;
    let client = reqwest::Client::new();
    let response = client.get(files(&f, &f.id)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["etag"], format!("\"{}\"", f.id).as_str());
    assert_eq!(
        headers["content-length"],
        f.content.len().to_string().as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), f.content);

    let head = client.head(files(&f, &f.id)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        f.content.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn single_ranges_get_206_and_unsatisfiable_or_multiple_ranges_get_416() {
    let f = fixture(|c| c).await;
    let client = reqwest::Client::new();
    let size = f.content.len();
    let get = |range: &'static str| client.get(files(&f, &f.id)).header("range", range).send();

    let r = get("bytes=0-99").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-99/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), &f.content[..100]);

    let r = get("bytes=100-").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 100-{}/{size}", size - 1).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), &f.content[100..]);

    let r = get("bytes=-50").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &f.content[size - 50..]);

    for bad in [
        "bytes=300000-",
        "bytes=999999-1000000",
        "bytes=-0",
        "bytes=0-1,5-6",
    ] {
        let r = get(bad).await.unwrap();
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
    }

    // An If-Range for other content means "send it all".
    let r = client
        .get(files(&f, &f.id))
        .header("range", "bytes=0-9")
        .header("if-range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), size);
}

#[tokio::test]
async fn curl_fetches_a_shared_file_by_content_hash_with_a_range() {
    let f = fixture(|c| c).await;
    let Ok(which) = std::process::Command::new("which").arg("curl").output() else {
        eprintln!("skipping: cannot run `which`");
        return;
    };
    if !which.status.success() {
        eprintln!("skipping the curl check: curl is not installed");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let part = out.path().join("first100");
    let whole = out.path().join("whole");
    let target = files(&f, &f.id);
    let (part_s, whole_s) = (part.clone(), whole.clone());
    let status = tokio::task::spawn_blocking(move || {
        let ranged = std::process::Command::new("curl")
            .args(["-sS", "--fail", "-r", "0-99", "-o"])
            .arg(&part_s)
            .arg(&target)
            .status()
            .unwrap();
        let full = std::process::Command::new("curl")
            .args(["-sS", "--fail", "-o"])
            .arg(&whole_s)
            .arg(&target)
            .status()
            .unwrap();
        (ranged, full)
    })
    .await
    .unwrap();
    assert!(status.0.success() && status.1.success(), "{status:?}");
    assert_eq!(std::fs::read(&part).unwrap(), &f.content[..100]);
    assert_eq!(std::fs::read(&whole).unwrap(), f.content);
}

#[tokio::test]
async fn traversal_attempts_are_refused_and_never_leak_a_file_outside_the_root() {
    let f = fixture(|c| c).await;
    let attempts = [
        "/v1/files/../../etc/passwd",
        "/v1/files/%2e%2e%2fetc%2fpasswd",
        "/v1/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/v1/files/..%2f..%2fetc%2fpasswd",
        "/v1/files/%2e%2e/%2e%2e/etc/passwd",
        "/v1/files//etc/passwd",
        "/v1/files/%2fetc%2fpasswd",
        "/v1/files/song.bin",
        "/v1/outboard/../../etc/passwd",
        "/v1/outboard/%2e%2e%2fetc%2fpasswd",
        "/etc/passwd",
        "/../../etc/passwd",
    ];
    for path in attempts {
        let (status, response) = raw_get(f.server.addr, path).await;
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(!response.contains("root:"), "{path} leaked /etc/passwd");
    }
    // An id with a path glued on is not an id.
    let glued = format!("/v1/files/{}/../../etc/passwd", f.id);
    let (status, response) = raw_get(f.server.addr, &glued).await;
    assert!((400..500).contains(&status), "{glued}: {status}");
    assert!(!response.contains("root:"));
}

#[tokio::test]
async fn index_entries_that_escape_the_root_or_are_not_regular_files_are_refused() {
    let f = fixture(|c| c).await;
    let root = f._root.path();
    let secret = f._outside.path().join("secret.txt");
    let client = reqwest::Client::new();

    // A symlink inside the root pointing outside it.
    let link = root.join("innocent.txt");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    f.source.insert(f.secret_id, link, SECRET.len() as u64);
    for endpoint in ["files", "outboard"] {
        let target = url(f.server.addr, &format!("/v1/{endpoint}/{}", f.secret_id));
        let r = client.get(&target).send().await.unwrap();
        assert_eq!(r.status(), 404, "symlink escape via {endpoint}");
        assert!(!r.text().await.unwrap().contains(SECRET));
    }

    // A `..` path that resolves outside the root.
    let dotted = root
        .join("..")
        .join(f._outside.path().file_name().unwrap())
        .join("secret.txt");
    f.source.insert(f.secret_id, dotted, SECRET.len() as u64);
    let r = client.get(files(&f, &f.secret_id)).send().await.unwrap();
    assert_eq!(r.status(), 404, "dot-dot escape");
    assert!(!r.text().await.unwrap().contains(SECRET));

    // The root itself, a directory, and a file whose size changed since indexing.
    let dir_id = ContentId::of(b"a directory");
    std::fs::create_dir(root.join("sub")).unwrap();
    f.source.insert(dir_id, root.join("sub"), 0);
    let root_id = ContentId::of(b"the root");
    f.source.insert(root_id, root.to_path_buf(), 0);
    let stale_id = ContentId::of(b"stale");
    std::fs::write(root.join("stale.bin"), b"now longer than indexed").unwrap();
    f.source.insert(stale_id, root.join("stale.bin"), 3);
    for id in [dir_id, root_id, stale_id] {
        let r = client.get(files(&f, &id)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{id}");
    }

    // A symlink inside the root pointing inside it is fine.
    let inner = root.join("alias.bin");
    std::os::unix::fs::symlink(root.join("song.bin"), &inner).unwrap();
    f.source.insert(f.id, inner, f.content.len() as u64);
    let r = client.get(files(&f, &f.id)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), f.content);
}

#[tokio::test]
async fn unknown_ids_are_404_and_malformed_ids_are_400() {
    let f = fixture(|c| c).await;
    let client = reqwest::Client::new();
    let unknown = ContentId::of(b"nobody has this");
    for endpoint in ["files", "outboard"] {
        let r = client
            .get(url(f.server.addr, &format!("/v1/{endpoint}/{unknown}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        for bad in ["abc", "zz".repeat(32).as_str(), &format!("{unknown}0")] {
            let r = client
                .get(url(f.server.addr, &format!("/v1/{endpoint}/{bad}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{endpoint}/{bad}");
        }
    }
}

#[tokio::test]
async fn the_outboard_endpoint_serves_the_size_and_an_outboard_that_hashes_to_the_id() {
    let f = fixture(|c| c).await;
    let body = reqwest::get(url(f.server.addr, &format!("/v1/outboard/{}", f.id)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let expected =
        highway_share::transfer::compute_outboard(&f.content[..], f.content.len() as u64).unwrap();
    assert_eq!(expected.root.as_bytes(), f.id.as_bytes());
    assert_eq!(&body[..], &expected.encode()[..]);
    assert_eq!(
        u64::from_le_bytes(body[..8].try_into().unwrap()),
        f.content.len() as u64
    );
    assert_eq!(
        body.len() as u64 - 8,
        highway_share::transfer::outboard_len(f.content.len() as u64)
    );
}

#[tokio::test]
async fn idle_connections_are_closed_and_a_full_server_answers_503() {
    let f = fixture(|c| ServerConfig {
        idle_timeout: Duration::from_millis(200),
        max_transfers: 1,
        ..c
    })
    .await;
    // A connection that never sends a request is closed after the idle timeout.
    let mut idle = TcpStream::connect(f.server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("the idle connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)));

    // A transfer that is not being read holds the only slot, so the next one gets 503.
    let big = random_bytes(32 << 20, 2);
    let big_id = share(&f.source, f._root.path(), "big.bin", &big);
    let client = reqwest::Client::new();
    let hog = client.get(files(&f, &big_id)).send().await.unwrap();
    assert_eq!(hog.status(), 200);
    let r = client.get(files(&f, &f.id)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    drop(hog);
}

/// Issue 12: an outboard kept since indexing is served without reading the file; a kept
/// one that does not check out is never served: the server makes the outboard again and
/// keeps the good one in its place.
#[tokio::test]
async fn a_kept_outboard_is_served_as_is_and_a_damaged_one_is_replaced() {
    let root = tempfile::tempdir().unwrap();
    let kept_dir = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(300_000, 9);
    let id = share(&source, root.path(), "tape.bin", &content);
    let good =
        highway_share::transfer::compute_outboard(&content[..], content.len() as u64).unwrap();
    let kept = kept_dir.path().join(format!("{id}.obao"));
    let mut damaged = good.outboard.clone();
    damaged[40] ^= 0x80;
    std::fs::write(&kept, &damaged).unwrap();
    source.0.lock().unwrap().get_mut(&id).unwrap().outboard = Some(kept.clone());

    for computed in [1, 0] {
        // A new server each time: nothing in its memory cache.
        let config = ServerConfig::new(root.path());
        let counters = Arc::clone(&config.counters);
        let server = start_server(config, Arc::clone(&source)).await;
        let body = reqwest::get(url(server.addr, &format!("/v1/outboard/{id}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], &good.encode()[..]);
        assert_eq!(
            counters
                .outboards_computed
                .load(std::sync::atomic::Ordering::Relaxed),
            computed
        );
        assert_eq!(std::fs::read(&kept).unwrap(), good.outboard);
    }
}
