//! Findings 4 and 6 of issue 10, reproduced with real sockets on loopback.
//!
//! Finding 4, the handshake port could be blocked cheaply: each test runs the attack
//! against a node (the victim) for as long as it takes, and shows a legitimate node still
//! links to it within seconds. The victim asks the Gatekeeper once (finding nobody) and
//! then not for a minute, so the only way to link is the legitimate node dialling it,
//! through the attack.
//!
//! Finding 6, an address that never answers was dialled again and again: the last test.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use highway_gatekeeper::{App, ClientConfig, EmbeddedStore, GatekeeperClient, GatekeeperConfig};
use highway_node::{NodeConfig, NodeHandle};
use highway_wire::PeerAddr;
use highway_wire::peer::handshake::{Initiator, InitiatorOutcome, Purpose, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// How long the legitimate node may take to link. Unhindered it takes well under a
/// second; the bound is generous for a loaded machine.
const LINK_WITHIN: Duration = Duration::from_secs(10);

async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

struct Setup {
    gatekeeper: String,
    gatekeeper_task: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gatekeeper = format!("http://{}", listener.local_addr().unwrap());
        let app = App::new(EmbeddedStore::in_memory(), GatekeeperConfig::test());
        let gatekeeper_task = tokio::spawn(highway_gatekeeper::run(
            listener,
            app,
            std::future::pending(),
        ));
        Self {
            gatekeeper,
            gatekeeper_task,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A node on `bind` with the test timers and `core` adjusted by `tune`.
    async fn node(&self, bind: &str, tune: impl FnOnce(&mut highway_core::Config)) -> NodeHandle {
        let mut config = NodeConfig::new(
            bind.parse().unwrap(),
            self.gatekeeper.clone(),
            self.dir.path().join(bind),
        );
        config.core = highway_core::Config::test();
        tune(&mut config.core);
        highway_node::start(config).await.expect("node starts")
    }

    /// The victim: one neighbour wanted, and after its first (empty) Gatekeeper answer
    /// it does not ask again for a minute. Returns once the Gatekeeper lists it.
    async fn victim(&self, bind: &str, max_degree: usize) -> NodeHandle {
        let victim = self
            .node(bind, |core| {
                core.target_degree = 1;
                core.max_degree = max_degree;
                core.join_backoff_min = Duration::from_secs(60);
                core.join_backoff_max = Duration::from_secs(60);
            })
            .await;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let client = GatekeeperClient::new(&self.gatekeeper, key, ClientConfig::default()).unwrap();
        let listed = wait_until(Duration::from_secs(10), || async {
            client
                .all_peers()
                .await
                .is_ok_and(|peers| peers.iter().any(|p| p.id == victim.id()))
        })
        .await;
        assert!(listed, "the victim registered with the Gatekeeper");
        victim
    }
}

async fn lists(node: &NodeHandle, other: highway_wire::NodeId) -> bool {
    let neighbours = node.neighbours().await;
    neighbours.is_some_and(|ns| ns.iter().any(|n| n.id == other))
}

async fn linked(a: &NodeHandle, b: &NodeHandle) -> bool {
    lists(a, b.id()).await && lists(b, a.id()).await
}

/// A TCP connection to `to` from `from` (port chosen by the OS).
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Reads until the other end closes (or 30 s pass).
async fn until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Keeps one handshake pending at `victim` from `from` until `stop`: sends a genuine
/// hello, reads the welcome, never confirms; when the victim gives up, starts over.
/// `accepted` counts welcomes that accepted the link.
async fn unconfirmed_hellos(
    from: IpAddr,
    seed: u8,
    victim: SocketAddr,
    victim_id: highway_wire::NodeId,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let addr = PeerAddr::new(from, 9, 9);
    let mut round = 0u8;
    while !stop.load(Ordering::Relaxed) {
        round = round.wrapping_add(1);
        let (initiator, hello) = Initiator::start(&key, addr, Purpose::Link, [round; 32]);
        let Ok(mut stream) = connect_from(from, victim).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if stream.write_all(&hello).await.is_err() {
            continue;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let welcome = loop {
            if let Ok(Some((payload, _))) = split_frame(&buf) {
                break Some(payload.to_vec());
            }
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break None,
            }
        };
        if let Some(welcome) = welcome
            && let Ok(InitiatorOutcome::Linked { .. }) =
                initiator.on_welcome(&welcome, Some(victim_id), u64::from(seed))
        {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        until_closed(&mut stream).await;
    }
}

/// "Three accepted-but-never-confirmed Hellos made a node answer 'full' to every link
/// request (pending inbound handshakes count toward max_degree for 5 s)." Here the
/// victim allows three neighbours and three attackers keep a hello each pending, all the
/// time; a legitimate node still links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_that_never_confirm_do_not_block_a_legitimate_link() {
    let setup = Setup::new().await;
    let victim = setup.victim("127.0.0.61", 3).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut attack = JoinSet::new();
    for n in 0..3u8 {
        let from: IpAddr = format!("127.0.0.{}", 62 + n).parse().unwrap();
        attack.spawn(unconfirmed_hellos(
            from,
            100 + n,
            victim.tcp_addr(),
            victim.id(),
            accepted.clone(),
            stop.clone(),
        ));
    }
    let pending = wait_until(Duration::from_secs(10), || async {
        accepted.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(pending, "the victim accepted the three hellos");

    let started = Instant::now();
    let legit = setup.node("127.0.0.65", |_| {}).await;
    let ok = wait_until(LINK_WITHIN, || linked(&victim, &legit)).await;
    let status = victim.status().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(
        ok,
        "the legitimate node did not link within {LINK_WITHIN:?} while three hellos stayed \
         unconfirmed; victim stats: {:?}",
        status.stats
    );
    eprintln!("linked after {:?}", started.elapsed());
    attack.abort_all();
    legit.shutdown().await;
    victim.shutdown().await;
    setup.gatekeeper_task.abort();
}

/// "150 idle TCP connections reset a legitimate handshake." 150 connections from
/// 127.0.0.1 that never send a byte, reopened as soon as the victim closes them, while a
/// legitimate node on another address links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_address_do_not_block_a_handshake_from_another() {
    let setup = Setup::new().await;
    let victim = setup.victim("127.0.0.71", 5).await;
    let to = victim.tcp_addr();
    let open = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut attack = JoinSet::new();
    for _ in 0..150 {
        let (open, stop) = (open.clone(), stop.clone());
        attack.spawn(async move {
            let from: IpAddr = "127.0.0.1".parse().unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut stream) = connect_from(from, to).await {
                    open.fetch_add(1, Ordering::Relaxed);
                    until_closed(&mut stream).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                // Reconnect soon, but without spinning the machine's two cores.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    // Every connection was accepted by the kernel at least once (the victim then keeps
    // some and closes the rest).
    let flooded = wait_until(Duration::from_secs(10), || async {
        victim.status().await.is_some_and(|s| {
            s.runtime.inbound_refused_busy + s.runtime.inbound_refused_per_ip >= 50
        })
    })
    .await;
    assert!(flooded, "the flood reached the victim");

    let started = Instant::now();
    let legit = setup.node("127.0.0.72", |_| {}).await;
    let ok = wait_until(LINK_WITHIN, || linked(&victim, &legit)).await;
    let status = victim.status().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(
        ok,
        "the legitimate node did not link within {LINK_WITHIN:?} under 150 idle connections; \
         victim runtime: {:?}",
        status.runtime
    );
    eprintln!(
        "linked after {:?}; {} idle connections open; victim runtime: {:?}",
        started.elapsed(),
        open.load(Ordering::Relaxed),
        status.runtime
    );
    assert!(status.runtime.inbound_refused_per_ip > 0);
    attack.abort_all();
    legit.shutdown().await;
    victim.shutdown().await;
    setup.gatekeeper_task.abort();
}

/// Finding 6 of issue 10: "real nodes then dialled the bystander 48 times in 40 s". A
/// registration names an address where nothing listens; a node that asks the Gatekeeper
/// every 100 ms (the worst case) dials it with a growing backoff, not on every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_never_answers_is_not_dialled_on_every_gatekeeper_answer() {
    let setup = Setup::new().await;
    // A port that was free a moment ago: connecting to it is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let bystander = PeerAddr::new("127.0.0.1".parse().unwrap(), port, port);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let client = GatekeeperClient::new(&setup.gatekeeper, key, ClientConfig::default()).unwrap();
    client.join(&[bystander], 0, 5, 8).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let keep = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.status(&[bystander], 0, 5, &[]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let node = setup
        .node("127.0.0.81", |core| {
            core.target_degree = 1;
            core.join_backoff_min = Duration::from_millis(100);
            core.join_backoff_max = Duration::from_millis(100);
        })
        .await;
    let span = Duration::from_secs(4);
    tokio::time::sleep(span).await;
    let status = node.status().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let _ = keep.await;
    eprintln!(
        "in {span:?}: {} dials, {} unanswered, {} candidates skipped while backing off",
        status.runtime.outbound_started,
        status.stats.dials_unanswered,
        status.stats.dials_skipped_backoff
    );
    // Backoff 200 ms doubling (the test timers): dials at about 0, 0.2, 0.6, 1.4 and 3 s.
    // Without it, one dial per Gatekeeper answer: about 40.
    assert!(status.stats.dials_unanswered >= 2, "it was dialled");
    assert!(
        status.runtime.outbound_started <= 8,
        "{} dials in {span:?}",
        status.runtime.outbound_started
    );
    assert!(status.stats.dials_skipped_backoff > 0);
    node.shutdown().await;
    setup.gatekeeper_task.abort();
}
