//! Slowloris against a real `highway node`'s file server (issue 10, finding 2): 300
//! connections from one address, each trickling a request a byte a second, held all 256
//! slots before the fix. Now a verified download from another address (a plain HTTP client,
//! then another node, which connects from its own bind address) finishes within a few
//! seconds while they trickle, and the node counts what it refused.

mod cli_support;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use cli_support::{pattern, run, share_dir, sharing_node_args, texts};
use support::{Cluster, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const ATTACKERS: usize = 300;
const FILE: &str = "obsidian-ridge-map.bin";
const SIZE: usize = 4 << 20;
/// How long the attack lasts; each connection stops by itself then.
const ATTACK_FOR: Duration = Duration::from_secs(8);

async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A request sent one byte a second, never finished; ends when the server closes the
/// connection or the attack is over.
async fn trickle(mut stream: TcpStream, until: Instant) {
    let request = b"GET /v1/files/00 HTTP/1.1\r\nhost: x\r\nx-slow: ";
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if Instant::now() >= until || stream.write_all(&[*byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_from_one_address_do_not_stop_a_download_from_another() {
    let shares = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(share_dir(shares.path(), 0)).unwrap();
    let content = pattern(SIZE, 21);
    std::fs::write(share_dir(shares.path(), 0).join(FILE), &content).unwrap();
    let root = shares.path().to_path_buf();
    // Node 0 holds the file; node 1 (on 127.0.0.3) downloads it during the attack, from its
    // own address, into its download folder.
    std::fs::create_dir_all(share_dir(shares.path(), 1)).unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let download_dir = downloads.path().display().to_string();
    let mut cluster = Cluster::start_each(2, |i, _| {
        let mut args = sharing_node_args(i, &root);
        args.extend(["--download-dir".to_string(), download_dir.clone()]);
        args
    })
    .await;
    let files: SocketAddr = cluster.nodes[0].files.parse().unwrap();
    let hash = highway_wire::ContentId::of(&content).to_string();
    let client = client_from("127.0.0.9");
    let url = format!("http://{files}/v1/files/{hash}");
    wait_until(
        Duration::from_secs(30),
        "the file is indexed and served",
        || async {
            client
                .head(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;

    // The attack comes from 127.0.0.1: the source Linux picks for a loopback connection
    // when the client does not bind one.
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let until = Instant::now() + ATTACK_FOR;
    let mut held = Vec::new();
    for _ in 0..ATTACKERS {
        if let Ok(stream) = connect_from(attacker, files).await {
            held.push(tokio::spawn(trickle(stream, until)));
        }
    }
    assert_eq!(
        held.len(),
        ATTACKERS,
        "every attacking connection was opened"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A legitimate download from another address while the attack goes on.
    // A new client: no connection kept alive from before the attack.
    let started = Instant::now();
    let body = client_from("127.0.0.9")
        .get(&url)
        .send()
        .await
        .expect("the file server answered the legitimate client")
        .error_for_status()
        .expect("a 200")
        .bytes()
        .await
        .expect("the whole body");
    let took = started.elapsed();
    assert!(
        Instant::now() < until,
        "the download finished during the attack"
    );
    assert_eq!(highway_wire::ContentId::of(&body).to_string(), hash);
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A node's own download: it connects from the address it binds (127.0.0.3), not from
    // the attacker's address, so the per-source cap does not hold it back.
    let copy = downloads.path().join("copy.bin");
    let copy_arg = copy.display().to_string();
    let holder = files.to_string();
    let node = cluster.nodes[1].control.clone();
    let output = run(
        &[
            "get", "--node", &node, &hash, "--out", &copy_arg, "--holder", &holder,
        ],
        "",
        downloads.path(),
        Duration::from_secs(20),
    )
    .await;
    let (out, err) = texts(&output);
    assert!(output.status.success(), "{out}\n{err}");
    assert!(
        Instant::now() < until,
        "the node's download finished during the attack"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), content);

    let status = cluster.nodes[0].status().await.expect("status");
    let refused = status["runtime"]["file_connections_refused_per_source"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused >= (ATTACKERS - 16) as u64,
        "connections past the per-source cap are refused at once: {}",
        status["runtime"]
    );
    for task in held {
        let _ = task.await;
    }
    cluster.stop().await;
}
