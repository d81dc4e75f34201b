//! A real node relaying for a peer behind a NAT, that peer played by this test from its
//! own sockets with the wire protocol: it links by dialling out (naming a LAN address),
//! speaks first over UDP, answers the relay's reverse request by connecting back with a
//! signed reverse hello, and serves one canned HTTP answer. Checks what goes through the
//! relay (the request rewritten to the holder's path, `Range` kept, closed after one
//! answer; the answer passed byte for byte) and the refusals: a full relay, an unknown
//! holder, a forged reverse hello, a push naming a third party, garbage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use highway_gatekeeper::{App, EmbeddedStore, GatekeeperConfig};
use highway_node::relay::RelayConfig;
use highway_node::{NodeConfig, NodeHandle};
use highway_wire::peer::handshake::{Initiator, InitiatorOutcome, LinkKeys, Purpose, split_frame};
use highway_wire::peer::reverse::ReverseHello;
use highway_wire::peer::{Datagram, Heartbeat, PeerMsg, decode, seal};
use highway_wire::{NodeId, PeerAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    loop {
        if let Some((payload, _)) = split_frame(&buf).unwrap() {
            return payload.to_vec();
        }
        let mut chunk = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("the node answers")
            .unwrap();
        assert!(n > 0, "the node closed the handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The peer behind a NAT, as seen from its own side.
struct Holder {
    key: ed25519_dalek::SigningKey,
    id: NodeId,
    udp: UdpSocket,
    keys: LinkKeys,
    my_link_id: u64,
    their_link_id: u64,
    counter: u64,
}

impl Holder {
    /// Links with `node` from 127.0.0.31, naming a LAN address, as a peer behind a NAT.
    async fn link(node: &NodeHandle) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&[31; 32]);
        let lan = PeerAddr::new("192.0.2.31".parse().unwrap(), 4000, 4001);
        let (initiator, hello) = Initiator::start_from(&key, lan, false, Purpose::Link, [3; 32]);
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.31:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(node.tcp_addr()).await.unwrap();
        stream.write_all(&hello).await.unwrap();
        let welcome = read_frame(&mut stream).await;
        let my_link_id = 0x5151;
        let InitiatorOutcome::Linked {
            responder_link_id,
            keys,
            confirm,
            ..
        } = initiator
            .on_welcome(&welcome, Some(node.id()), my_link_id)
            .unwrap()
        else {
            panic!("the relay did not accept a peer behind a NAT");
        };
        stream.write_all(&confirm).await.unwrap();
        read_frame(&mut stream).await;
        let mut holder = Self {
            id: NodeId::from_key(&key.verifying_key()),
            key,
            udp: UdpSocket::bind("127.0.0.31:0").await.unwrap(),
            keys,
            my_link_id,
            their_link_id: responder_link_id,
            counter: 0,
        };
        // Speak first: the relay learns where this peer's datagrams come from.
        holder.heartbeat(node).await;
        holder
    }

    async fn heartbeat(&mut self, node: &NodeHandle) {
        self.counter += 1;
        let msg = PeerMsg::Heartbeat(Heartbeat {
            seq: self.counter,
            incarnation: 0,
            summary_version: 0,
            neighbours: Vec::new(),
        });
        let bytes = seal(self.their_link_id, self.counter, &msg, &self.keys.send);
        self.udp.send_to(&bytes, node.udp_addr()).await.unwrap();
    }

    /// Waits for the relay's reverse request; answers the relay's heartbeats meanwhile.
    async fn reverse_request(&mut self, node: &NodeHandle) -> ([u8; 16], SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, _) = tokio::time::timeout(left, self.udp.recv_from(&mut buf))
                .await
                .expect("a reverse request arrives")
                .unwrap();
            let Ok(Datagram::Link(frame)) = decode(&buf[..n]) else {
                continue;
            };
            if frame.link_id != self.my_link_id {
                continue;
            }
            match frame.open(&self.keys.recv) {
                Ok(PeerMsg::Reverse { token, to }) => return (token, to),
                Ok(PeerMsg::Heartbeat(_)) => self.heartbeat(node).await,
                _ => {}
            }
        }
    }

    /// Connects back to `to` with `hello`, returning the connection.
    async fn connect_back(to: SocketAddr, hello: &ReverseHello) -> TcpStream {
        let mut stream = TcpStream::connect(to).await.unwrap();
        stream.write_all(&hello.encode_framed()).await.unwrap();
        stream
    }
}

/// Sends `request` to `to` and reads the whole answer (the relay closes after one).
async fn exchange(to: SocketAddr, request: String) -> String {
    let mut stream = TcpStream::connect(to).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the relay answers")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(holder: &NodeId) -> String {
    format!(
        "GET /v1/relay/{holder}/v1/files/{HASH} HTTP/1.1\r\nhost: x\r\nrange: bytes=2-\r\nconnection: keep-alive\r\n\r\n"
    )
}

async fn relay_node() -> (
    NodeHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
    tempfile::TempDir,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gatekeeper = format!("http://{}", listener.local_addr().unwrap());
    let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
    let task = tokio::spawn(highway_gatekeeper::run(
        listener,
        app,
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(
        "127.0.0.30".parse().unwrap(),
        gatekeeper,
        dir.path().join("r"),
    );
    config.core = highway_core::Config::test();
    config.relay = RelayConfig {
        max_circuits: 1,
        ..RelayConfig::default()
    };
    (
        highway_node::start(config).await.expect("the relay starts"),
        task,
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_one_request_to_a_holder_behind_a_nat_and_refuses_the_rest() {
    let (relay, gatekeeper, _dir) = relay_node().await;
    let mut holder = Holder::link(&relay).await;

    // The first circuit: the holder answers with a canned file.
    let client = tokio::spawn(exchange(relay.tcp_addr(), get(&holder.id)));
    let (token, to) = holder.reverse_request(&relay).await;
    assert_eq!(
        to,
        relay.tcp_addr(),
        "the holder is asked to connect to the relay"
    );
    let mut back = Holder::connect_back(to, &ReverseHello::sign(&holder.key, token)).await;
    let mut request = Vec::new();
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = back.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        request.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8(request).unwrap().to_lowercase();
    assert!(
        request.starts_with(&format!("get /v1/files/{HASH} http/1.1\r\n")),
        "{request}"
    );
    assert!(request.contains("range: bytes=2-\r\n"), "{request}");
    assert!(request.contains("connection: close\r\n") && !request.contains("keep-alive"));

    // While that circuit is open, the relay (max 1) is full.
    let full = exchange(relay.tcp_addr(), get(&holder.id)).await;
    assert!(
        full.starts_with("HTTP/1.1 503") && full.contains("relay_full"),
        "{full}"
    );

    let canned =
        "HTTP/1.1 206 Partial Content\r\ncontent-length: 3\r\nconnection: close\r\n\r\nllo";
    back.write_all(canned.as_bytes()).await.unwrap();
    back.shutdown().await.unwrap();
    drop(back);
    let answer = client.await.unwrap();
    assert_eq!(answer, canned, "the answer is passed on byte for byte");

    // A holder the relay has no link with.
    let stranger =
        NodeId::from_key(&ed25519_dalek::SigningKey::from_bytes(&[77; 32]).verifying_key());
    let unknown = exchange(relay.tcp_addr(), get(&stranger)).await;
    assert!(
        unknown.starts_with("HTTP/1.1 404") && unknown.contains("unknown_peer"),
        "{unknown}"
    );

    // A reverse hello signed by another key does not take the holder's place.
    let client = tokio::spawn(exchange(relay.tcp_addr(), get(&holder.id)));
    let (token, to) = holder.reverse_request(&relay).await;
    let impostor = ed25519_dalek::SigningKey::from_bytes(&[66; 32]);
    let forged = ReverseHello {
        holder: holder.id,
        ..ReverseHello::sign(&impostor, token)
    };
    let _forged = Holder::connect_back(to, &forged).await;
    let silent = client.await.unwrap();
    assert!(
        silent.starts_with("HTTP/1.1 504") && silent.contains("holder_silent"),
        "{silent}"
    );

    // A push may only name the asker's own address.
    let body = format!(
        r#"{{"token":"{}","to":"198.51.100.7:7001"}}"#,
        "00".repeat(16)
    );
    let push = format!(
        "POST /v1/relay/{}/push HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
        holder.id,
        body.len()
    );
    let third_party = exchange(relay.tcp_addr(), push).await;
    assert!(
        third_party.starts_with("HTTP/1.1 403") && third_party.contains("not_yours"),
        "{third_party}"
    );

    // Garbage, and paths that are not a file.
    for bad in [
        "GET /v1/relay/nothex/v1/files/x HTTP/1.1\r\n\r\n".to_string(),
        format!(
            "GET /v1/relay/{}/../../etc/passwd HTTP/1.1\r\n\r\n",
            holder.id
        ),
        "BREW /coffee HTTP/1.1\r\n\r\n".to_string(),
        "GET / HTTP/9\r\n\r\n".to_string(),
    ] {
        let answer = exchange(relay.tcp_addr(), bad.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{bad:?} got {answer}");
    }

    let status = relay.status().await.unwrap();
    let r = &status.runtime;
    assert_eq!(r.relay_circuits, 1);
    assert_eq!(r.relay_refused_full, 1);
    assert_eq!(r.relay_refused_unknown_peer, 1);
    assert_eq!(r.reverse_attached, 1);
    assert!(r.reverse_refused >= 1, "the forged hello was counted");
    assert_eq!(r.relay_holder_timeouts, 1);
    assert!(r.relay_bad_requests >= 5, "{}", r.relay_bad_requests);
    assert_eq!(r.relay_bytes, canned.len() as u64);
    // The relay is still running after all that (the test's holder stopped heartbeating
    // long ago, so its link is gone by now).
    assert_eq!(status.phase, "running");
    relay.shutdown().await;
    gatekeeper.abort();
}
