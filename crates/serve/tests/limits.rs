//! The serving layer's limits, over real loopback sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use highway_serve::{Limits, ServeCounters, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    counters: Arc<ServeCounters>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(ServeCounters::default());
    let router = Router::new().route("/", get(|| async { "ok" }));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        router,
        limits,
        Arc::clone(&counters),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        counters,
        stop: Some(stop),
        task,
    }
}

fn get_count(c: &std::sync::atomic::AtomicU64) -> u64 {
    ServeCounters::get(c)
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the peer closes (or errors), for at most `limit`; `None` if still open.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a request one byte every `every` for at most 4 s; returns how long until the
/// server closed the connection, or `None` if it was still open then.
async fn trickle(mut stream: TcpStream, every: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: "
        .iter()
        .chain([b'a'; 64].iter())
        .cycle()
    {
        if started.elapsed() > Duration::from_secs(4) {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
    None
}

async fn request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_trickle_is_cut_at_the_header_deadline_and_extra_connections_get_503_at_once() {
    let limits = Limits {
        max_connections: 64,
        max_per_source: 4,
        header_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_secs(30),
    };
    let server = start(limits).await;
    let mut trickles = Vec::new();
    for _ in 0..4 {
        let stream = connect_from("127.0.0.1", server.addr).await;
        trickles.push(tokio::spawn(trickle(stream, Duration::from_millis(200))));
    }

    // The fifth connection from the same address is refused at once, with a reason.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect_from("127.0.0.1", server.addr).await;
    let answer = read_until_closed(&mut extra, Duration::from_secs(2))
        .await
        .expect("the connection over the per-source cap was not closed at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many connections from your address"));

    // Another address is served meanwhile.
    let mut honest = connect_from("127.0.0.2", server.addr).await;
    assert!(request(&mut honest).await.ends_with("ok"));

    for trickle in trickles {
        let after = trickle
            .await
            .unwrap()
            .expect("a trickling connection was still open");
        // Closed by the deadline (0.8 s), long before the trickle (4 s) ended.
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }
    assert_eq!(get_count(&server.counters.refused_per_source), 1);
    assert!(get_count(&server.counters.header_timeouts) >= 4);
    assert_eq!(get_count(&server.counters.refused_total_cap), 0);
}

#[tokio::test]
async fn a_kept_alive_connection_that_sends_nothing_more_is_closed_at_the_header_deadline() {
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::file_server()
    };
    let server = start(limits).await;
    let mut stream = connect_from("127.0.0.1", server.addr).await;
    assert!(request(&mut stream).await.ends_with("ok"));
    let started = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the idle kept-alive connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(get_count(&server.counters.accepted), 1);
}

#[tokio::test]
async fn a_full_server_refuses_new_sources_with_503_and_recovers() {
    let limits = Limits {
        max_connections: 2,
        max_per_source: 2,
        ..Limits::file_server()
    };
    let mut server = start(limits).await;
    let a = connect_from("127.0.0.1", server.addr).await;
    let b = connect_from("127.0.0.1", server.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect_from("127.0.0.3", server.addr).await;
    let answer = read_until_closed(&mut c, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));
    assert_eq!(get_count(&server.counters.refused_total_cap), 1);
    drop((a, b));
    // Slots free as soon as the connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = connect_from("127.0.0.3", server.addr).await;
        if request(&mut d).await.ends_with("ok") {
            break;
        }
        assert!(Instant::now() < deadline, "the slots were never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Graceful shutdown returns although a kept-alive connection is open.
    let mut idle = connect_from("127.0.0.3", server.addr).await;
    assert!(request(&mut idle).await.ends_with("ok"));
    let _ = server.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("shutdown did not finish")
        .unwrap()
        .unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(2))
            .await
            .is_some()
    );
}
