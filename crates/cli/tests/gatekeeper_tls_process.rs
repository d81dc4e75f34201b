//! `highway gatekeeper --tls-cert --tls-key` serves HTTPS itself, and the Gatekeeper client
//! (`--gatekeeper https://...`, `--gatekeeper-ca`) talks to it (issue 10, finding 7 part 1).
//! The certificate is self-signed, made at test time.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{ClientConfig, ClientError, GatekeeperClient};
use highway_wire::PeerAddr;
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_highway");

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

fn start(cert: &Path, key: &Path) -> Gatekeeper {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(BIN)
        .args(["gatekeeper", "--listen", &addr.to_string()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(["--header-timeout", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn highway gatekeeper");
    Gatekeeper { child, addr }
}

fn client(url: &str, ca: Option<&Path>) -> Result<GatekeeperClient, ClientError> {
    let config = ClientConfig {
        retries: 0,
        ca_file: ca.map(Path::to_path_buf),
        ..Default::default()
    };
    GatekeeperClient::new(url, SigningKey::from_bytes(&[9; 32]), config)
}

fn highway(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run highway")
}

#[tokio::test]
async fn a_gatekeeper_serving_tls_is_joined_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let gk = start(&cert, &key);
    let url = format!("https://{}", gk.addr);

    // Joined over HTTPS once the Gatekeeper is up, trusting only the private CA.
    let trusted = client(&url, Some(&cert)).unwrap();
    let addrs = [PeerAddr::new([127, 0, 0, 5].into(), 4000, 4001)];
    let deadline = Instant::now() + Duration::from_secs(15);
    let joined = loop {
        match trusted.join(&addrs, 0, 8, 8).await {
            Ok(joined) => break joined,
            Err(e) => {
                assert!(Instant::now() < deadline, "never joined over https: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(!joined.lease.token.is_empty());
    trusted
        .status(&addrs, 0, 8, &[])
        .await
        .expect("a status over https");

    // Without the CA the certificate is not trusted; plain HTTP to the TLS port fails.
    let untrusted = client(&url, None).unwrap();
    let err = untrusted.join(&addrs, 0, 8, 8).await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    let plain = client(&format!("http://{}", gk.addr), None).unwrap();
    assert!(plain.join(&addrs, 0, 8, 8).await.is_err());

    // A connection that never finishes its TLS handshake is closed at the header deadline.
    let mut silent = tokio::net::TcpStream::connect(gk.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a silent connection stayed open"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));

    // The CLI: `highway peers` over https with --gatekeeper-ca lists the peer.
    let out = highway(&[
        "peers",
        "--gatekeeper",
        &url,
        "--gatekeeper-ca",
        cert.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&trusted.id().to_string()));

    // A CA file that is not PEM is refused with a message naming it.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let err = client(&url, Some(&bogus)).unwrap_err();
    assert!(err.to_string().contains("bogus.pem"), "{err}");
    // A key that is not PEM stops the Gatekeeper at start, saying which file.
    let out = highway(&[
        "gatekeeper",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        bogus.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
