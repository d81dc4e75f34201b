//! `/metrics` is valid Prometheus text, checked by Prometheus's own linter
//! (`promtool check metrics`, Debian package `prometheus`), after traffic that fills every
//! family: successes, refusals of several kinds, a 404, health checks.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use highway_gatekeeper::EmbeddedStore;
use support::{addrs, key, start_gatekeeper, steady_config, wait_until};

/// `promtool`, or None (with the reason printed) when it is not installed. Under
/// `HIGHWAY_REQUIRE_TOOLS=1` (set by scripts/test, which installs it) a missing promtool
/// fails the test instead.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    let why = "promtool is not installed (apt-get install prometheus); ./scripts/test installs it";
    assert!(
        std::env::var("HIGHWAY_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{why}, and HIGHWAY_REQUIRE_TOOLS=1 forbids skipping"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs `promtool check metrics` on `text`; returns its verdict and everything it printed.
fn promtool_check(promtool: &str, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_every_kind_of_request() {
    let Some(promtool) = promtool() else { return };
    let gk = start_gatekeeper(EmbeddedStore::in_memory(), steady_config()).await;
    let raw = gk.raw();
    let peers: Vec<_> = (1..=4).map(|seed| gk.client(&key(seed))).collect();
    for (i, peer) in peers.iter().enumerate() {
        let host = i as u8 + 1;
        peer.join(&addrs(host), 0, 5, 3).await.expect("join");
        peer.status(&addrs(host), 0, 5, &[]).await.expect("status");
    }
    // Refusals: a report from a peer that is no neighbour, a status without credentials,
    // an unknown endpoint.
    let refused = peers[0].report(peers[1].id()).await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.as_str()), Some("not_a_neighbour"));
    raw.post_bytes("/v1/status", b"{}".to_vec(), &[]).await;
    assert_eq!(raw.get("/v1/nothing").await.status, 404);
    peers[3].leave().await.expect("leave");
    raw.get("/v1/peers?limit=10").await.ok();
    raw.get("/healthz").await.ok();
    raw.get("/livez").await.ok();
    wait_until(Duration::from_secs(5), "the live_peers gauge is 3", || {
        let raw = raw.clone();
        async move {
            let text = raw.get("/metrics").await.text;
            text.lines().any(|l| l == "highway_gatekeeper_live_peers 3")
        }
    })
    .await;

    let reply = raw.get("/metrics").await;
    reply.ok();
    for family in [
        "highway_gatekeeper_requests_total{",
        "highway_gatekeeper_request_duration_seconds_bucket{",
        "highway_gatekeeper_rejections_total{",
        "highway_gatekeeper_live_peers ",
        "highway_gatekeeper_store_up ",
    ] {
        assert!(
            reply.text.contains(family),
            "{family} missing:\n{}",
            reply.text
        );
    }
    let (ok, said) = promtool_check(promtool, &reply.text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}\n--- the metrics:\n{}",
        reply.text
    );
}

#[test]
fn promtool_rejects_what_is_not_prometheus_text() {
    // Guards the test above: a checker that accepts anything would prove nothing.
    let Some(promtool) = promtool() else { return };
    let bad = "# TYPE requests counter\nrequests{endpoint=\"join\" 3\n";
    let (ok, said) = promtool_check(promtool, bad);
    assert!(!ok, "promtool accepted a malformed line: {said}");
}
