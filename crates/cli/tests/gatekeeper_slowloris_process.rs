//! Slowloris against a real `highway gatekeeper` process (issue 10, finding 2): 500
//! connections from one address trickling requests, and one trickling a body, must all
//! be cut at the deadline while a signed join from another address succeeds.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use highway_wire::gatekeeper::{
    API_VERSION, JoinRequest, JoinResponse, SIGNATURE_HEADER, signing_message,
};
use highway_wire::{NodeId, PeerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_highway");
const ATTACKERS: usize = 500;
const PER_IP: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each attacker keeps trickling at most; well past the deadline.
const TRICKLE_FOR: Duration = Duration::from_secs(8);

/// A `highway gatekeeper` child process, killed on drop.
struct Gatekeeper {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_gatekeeper(extra: &[&str]) -> Gatekeeper {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(BIN)
        .args(["gatekeeper", "--listen", &addr.to_string()])
        .args(extra)
        .env("HIGHWAY_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn highway gatekeeper");
    let gk = Gatekeeper { child, addr };
    let http = client_from("127.0.0.9");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the Gatekeeper never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gk
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(addr).await
}

/// Sends `burst` at once, then `head` and endless padding one byte a second, reading
/// whatever comes back; returns what the server sent and how long until it closed, or
/// `None` if it was still open after [`TRICKLE_FOR`].
async fn trickle(mut stream: TcpStream, burst: &[u8], head: Vec<u8>) -> Option<(Duration, String)> {
    let started = Instant::now();
    stream.write_all(burst).await.ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in head.iter().chain(std::iter::repeat(&b'a')) {
        if started.elapsed() > TRICKLE_FOR {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some((
        started.elapsed(),
        String::from_utf8_lossy(&seen).into_owned(),
    ))
}

/// A signed join, built and sent by hand so it can come from `from`.
async fn join_from(from: &str, addr: SocketAddr) -> reqwest::Response {
    let key = SigningKey::from_bytes(&[42; 32]);
    let request = JoinRequest {
        v: API_VERSION,
        id: NodeId::from_key(&key.verifying_key()),
        ts_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        addrs: vec![PeerAddr::new([127, 0, 0, 2].into(), 4000, 4001)],
        neighbours: 0,
        capacity: 8,
        want: 8,
    };
    let body = serde_json::to_vec(&request).unwrap();
    let signature = key.sign(&signing_message("/v1/join", &body));
    client_from(from)
        .post(format!("http://{addr}/v1/join"))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, hex::encode(signature.to_bytes()))
        .body(body)
        .send()
        .await
        .expect("the signed join got no answer")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_are_cut_while_a_signed_join_from_elsewhere_succeeds() {
    let timeout = format!("{}s", HEADER_TIMEOUT.as_secs());
    let gk = start_gatekeeper(&["--header-timeout", &timeout]).await;

    let head = format!(
        "POST /v1/join HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nx-slow: ",
        gk.addr
    );
    let gk_addr = gk.addr;
    let mut attackers = Vec::new();
    let mut refused_at_connect = 0;
    for _ in 0..ATTACKERS {
        match connect_from("127.0.0.1", gk.addr).await {
            Ok(s) => attackers.push(tokio::spawn(trickle(s, b"", head.clone().into_bytes()))),
            Err(_) => refused_at_connect += 1,
        }
    }
    // A body trickled after complete headers is cut too, with a 408 that says why.
    let body_head = format!(
        "POST /v1/join HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n{{",
        gk.addr
    );
    let body_trickle = tokio::spawn(async move {
        let stream = connect_from("127.0.0.3", gk_addr).await.unwrap();
        trickle(stream, body_head.as_bytes(), Vec::new()).await
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let response = join_from("127.0.0.2", gk.addr).await;
    assert_eq!(response.status(), 200);
    let joined: JoinResponse = response.json().await.expect("a join answer");
    assert!(!joined.lease.token.is_empty());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "the join took {took:?}");

    let mut open = 0;
    for attacker in attackers {
        match attacker.await.unwrap() {
            Some((after, _)) => assert!(
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
    let (after, answer) = body_trickle
        .await
        .unwrap()
        .expect("the trickled body kept its connection");
    assert!(
        after < HEADER_TIMEOUT * 2 + Duration::from_secs(3),
        "{after:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"), "{answer:?}");

    let metrics = client_from("127.0.0.2")
        .get(format!("http://{}/metrics", gk.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metric(
        &metrics,
        "highway_gatekeeper_connections_refused_per_source_total",
    );
    assert!(
        refused + f64::from(refused_at_connect) >= (ATTACKERS - PER_IP) as f64,
        "refused per source: {refused}"
    );
    let timeouts = metric(
        &metrics,
        "highway_gatekeeper_connections_header_timeouts_total",
    );
    assert!(timeouts >= PER_IP as f64, "header timeouts: {timeouts}");
    assert_eq!(
        metric(
            &metrics,
            "highway_gatekeeper_rejections_total{reason=\"request_timeout\"}"
        ),
        1.0
    );
}
