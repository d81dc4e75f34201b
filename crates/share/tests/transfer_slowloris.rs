//! Slowloris against the file server, over real sockets: 300 connections from one address
//! trickling a request one byte a second must neither keep a legitimate download from
//! another address waiting nor outlive the header deadline (issue 10, finding 2).

mod transfer_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use highway_share::transfer::ServerConfig;
use highway_wire::ContentId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use transfer_support::{MapSource, random_bytes, share, start_server, url};

const ATTACKERS: usize = 300;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each attacker keeps trickling at most; well past the deadline.
const TRICKLE_FOR: Duration = Duration::from_secs(8);

async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// Sends a request one byte a second; returns how long until the server closed the
/// connection, or `None` if it was still open after [`TRICKLE_FOR`].
async fn trickle(mut stream: TcpStream) -> Option<Duration> {
    let started = Instant::now();
    let request = b"GET /v1/files/0000 HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let mut buf = [0u8; 512];
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if started.elapsed() > TRICKLE_FOR {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(1..)) => {}
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_from_one_address_do_not_keep_a_download_from_another_waiting() {
    let root = tempfile::tempdir().unwrap();
    let source = Arc::new(MapSource::default());
    let content = random_bytes(4 << 20, 7);
    let id = share(&source, root.path(), "film.bin", &content);
    let config = ServerConfig {
        header_timeout: HEADER_TIMEOUT,
        ..ServerConfig::new(root.path())
    };
    let counters = Arc::clone(&config.counters);
    let server = start_server(config, Arc::clone(&source)).await;

    let refused_at_connect = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        match connect_from("127.0.0.1", server.addr).await {
            Ok(stream) => attackers.push(tokio::spawn(trickle(stream))),
            Err(_) => {
                refused_at_connect.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // While they trickle, a download from another address completes and verifies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(url(server.addr, &format!("/v1/files/{id}")))
        .send()
        .await
        .expect("the legitimate download got no answer");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("the download was cut");
    let took = started.elapsed();
    assert_eq!(
        ContentId::of(&body),
        id,
        "the downloaded bytes do not verify"
    );
    assert!(took < Duration::from_secs(4), "the download took {took:?}");

    // Every trickling connection is closed: the extra ones at once, the admitted ones at
    // the header deadline (2 s), long before the trickle would have ended (8 s).
    let mut open = 0;
    for attacker in attackers {
        match attacker.await.unwrap() {
            Some(after) => assert!(
                after < HEADER_TIMEOUT + Duration::from_secs(3),
                "a trickling connection lasted {after:?}"
            ),
            None => open += 1,
        }
    }
    assert_eq!(
        open, 0,
        "trickling connections still open after {TRICKLE_FOR:?}"
    );
    let c = &counters.connections;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let refused = get(&c.refused_per_source) + refused_at_connect.load(Ordering::Relaxed);
    assert!(
        refused >= (ATTACKERS - 16) as u64,
        "refused per source: {}",
        get(&c.refused_per_source)
    );
    assert!(
        get(&c.header_timeouts) >= 16,
        "header timeouts: {}",
        get(&c.header_timeouts)
    );
    assert_eq!(get(&c.refused_total_cap), 0);
}
