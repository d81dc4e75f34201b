//! The `highway` binary as users run it: real processes on loopback.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{ClientConfig, GatekeeperClient};
use highway_wire::PeerAddr;

const BIN: &str = env!("CARGO_BIN_EXE_highway");

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A `highway gatekeeper` child process, killed (SIGKILL) on drop.
struct GatekeeperProcess {
    child: Child,
    url: String,
}

impl GatekeeperProcess {
    async fn start(port: u16, extra: &[&str]) -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], port)).to_string();
        let child = Command::new(BIN)
            .args(["gatekeeper", "--listen", &listen])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn highway gatekeeper");
        // Owned from here on, so even a failed start is killed and reaped by Drop.
        let process = Self {
            child,
            url: format!("http://{listen}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(resp) = http.get(format!("{}/healthz", process.url)).send().await
                && resp.status().is_success()
            {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "gatekeeper on {listen} never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatekeeperProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

fn client(url: &str, seed: u8) -> GatekeeperClient {
    let config = ClientConfig {
        retries: 0,
        ..Default::default()
    };
    GatekeeperClient::new(url, SigningKey::from_bytes(&[seed; 32]), config).expect("client")
}

fn addr(seed: u8) -> PeerAddr {
    PeerAddr::new([127, 0, 0, seed].into(), 4000, 4001)
}

fn highway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run highway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_gatekeeper_killed_hard_restarts_with_every_registration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("gk.journal");
    let journal_arg = journal.to_str().expect("utf-8 path");
    let port = free_port();
    let args = ["--store", journal_arg, "--status-interval", "1s"];
    let mut gk = GatekeeperProcess::start(port, &args).await;
    let peers: Vec<GatekeeperClient> = (1..=5).map(|seed| client(&gk.url, seed)).collect();
    for (i, peer) in peers.iter().enumerate() {
        peer.join(&[addr(i as u8 + 1)], i as u16, 5, 5)
            .await
            .expect("join");
    }
    peers[4].leave().await.expect("leave");

    gk.kill_hard();
    let gk = GatekeeperProcess::start(port, &args).await;
    let listed = peers[0].all_peers().await.expect("list");
    let mut listed_ids: Vec<_> = listed.iter().map(|p| p.id).collect();
    listed_ids.sort();
    let mut expected: Vec<_> = peers[..4].iter().map(GatekeeperClient::id).collect();
    expected.sort();
    assert_eq!(
        listed_ids, expected,
        "restart lost or resurrected a registration"
    );
    let third = listed
        .iter()
        .find(|p| p.id == peers[2].id())
        .expect("third peer listed");
    assert_eq!(third.neighbours, 2);
    assert_eq!(third.addrs, vec![addr(3)]);
    // The leases handed out before the crash still authenticate statuses.
    for (i, peer) in peers[..4].iter().enumerate() {
        let resp = peer
            .status(&[addr(i as u8 + 1)], 1, 5, &[])
            .await
            .expect("status");
        assert!(
            resp.lease.is_none(),
            "status should have used the restored lease"
        );
    }
    drop(gk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_command_prints_json_and_a_table() {
    let gk = GatekeeperProcess::start(free_port(), &[]).await;
    for seed in 1..=3 {
        client(&gk.url, seed)
            .join(&[addr(seed)], 0, 5, 0)
            .await
            .expect("join");
    }
    let out = highway(&["peers", "--gatekeeper", &gk.url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(peers.len(), 3);
    assert!(
        peers
            .iter()
            .all(|p| p["capacity"] == 5 && p["addrs"][0]["udp"] == 4000)
    );
    let out = highway(&["peers", "--gatekeeper", &gk.url]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("3 live peers"), "{table}");
}

fn assert_fails_saying(args: &[&str], needle: &str) {
    let out = highway(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr {stderr:?} should mention {needle:?}"
    );
}

#[test]
fn bad_use_gets_a_message_saying_what_to_fix() {
    assert_fails_saying(
        &["gatekeeper", "--redis-replica", "redis://127.0.0.1:1"],
        "--redis",
    );
    assert_fails_saying(
        &["gatekeeper", "--status-interval", "1ms"],
        "status interval",
    );
    assert_fails_saying(
        &["gatekeeper", "--status-interval", "soon"],
        "--status-interval",
    );
    assert_fails_saying(&["gatekeeper", "--report-quorum", "0"], "report quorum");
    assert_fails_saying(&["gatekeeper", "--ipv4-prefix", "33"], "prefix lengths");
    assert_fails_saying(
        &["gatekeeper", "--claimed-addrs", "mine"],
        "use match-source or any",
    );
    assert_fails_saying(
        &["gatekeeper", "--trusted-proxy", "nginx"],
        "--trusted-proxy",
    );
    assert_fails_saying(
        &["peers", "--gatekeeper", "localhost:7700"],
        "http://HOST:PORT",
    );
    assert_fails_saying(
        &["peers", "--gatekeeper", "http://127.0.0.1:1"],
        "did not answer",
    );
}

#[test]
fn a_taken_port_is_reported_as_such() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    assert_fails_saying(&["gatekeeper", "--listen", &listen], "cannot serve on");
}

#[test]
fn a_corrupt_journal_refuses_to_start_and_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("gk.journal");
    std::fs::write(&journal, "garbage\n").expect("write");
    let path = journal.to_str().expect("utf-8");
    assert_fails_saying(
        &["gatekeeper", "--listen", "127.0.0.1:0", "--store", path],
        "line 1",
    );
    assert!(
        Path::new(&journal).exists(),
        "the journal must be left for the operator"
    );
}
