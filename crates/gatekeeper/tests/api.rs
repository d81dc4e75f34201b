//! The Gatekeeper's HTTP API end to end: a real server on loopback, the typed
//! `GatekeeperClient` for well-behaved peers and raw requests for everything else. The
//! `api_tests!` macro at the bottom runs every case against the embedded store and against
//! Redis (a real `redis-server` per test).

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{GatekeeperClient, GatekeeperConfig, Store};
use highway_wire::gatekeeper::{
    API_VERSION, ErrorCode, Health, JoinRequest, JoinResponse, LeaveResponse, MAX_BODY_BYTES,
    PeerInfo, PeersPage, ReportResponse, SIGNATURE_HEADER, StatusResponse,
};
use highway_wire::{NodeId, PeerAddr};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use support::{
    Raw, Reply, addrs, assert_error, assert_error_shape, id_of, join_req, key, leave_req,
    report_req, sign, start_gatekeeper, status_req, steady_config, wait_until,
};

/// Joins `key` with a raw signed request and returns the answer.
async fn raw_join(raw: &Raw, key: &SigningKey, host: u8, want: u16) -> JoinResponse {
    let reply = raw
        .post_signed("/v1/join", key, &join_req(key, host, want))
        .await;
    reply.ok();
    reply.decode()
}

async fn listed(raw: &Raw, id: NodeId) -> Option<PeerInfo> {
    let mut after: Option<NodeId> = None;
    for _ in 0..1000 {
        let mut path = "/v1/peers?limit=1000".to_string();
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let reply = raw.get(&path).await;
        reply.ok();
        let page: PeersPage = reply.decode();
        if let Some(p) = page.peers.into_iter().find(|p| p.id == id) {
            return Some(p);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return None,
        }
    }
    panic!("more than 1000 pages of peers");
}

/// Sends a status for `client` every `every` until `stop`; returns how many were sent and
/// every error seen.
fn keep_sending_status(
    client: Arc<GatekeeperClient>,
    addrs: Vec<PeerAddr>,
    neighbour_ids: Vec<NodeId>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let mut sent = 0;
        let mut errors = Vec::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let n = u16::try_from(neighbour_ids.len()).unwrap();
            match client.status(&addrs, n, 8, &neighbour_ids).await {
                Ok(_) => sent += 1,
                Err(e) => errors.push(e.to_string()),
            }
        }
        (sent, errors)
    })
}

/// Value of the metric sample `name` whose labels include all of `labels` (0 when absent).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unparsable metric line {line:?}"))
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------

async fn join_status_leave_round_trip<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let [ka, kb, kc] = [key(1), key(2), key(3)];
    let (a, b, c) = (gk.client(&ka), gk.client(&kb), gk.client(&kc));

    let ra = a.join(&addrs(1), 0, 8, 8).await.unwrap();
    assert!(ra.candidates.is_empty(), "{:?}", ra.candidates);
    assert_eq!(ra.v, API_VERSION);
    assert_eq!(ra.lease.token.len(), 64);
    assert!(ra.lease.token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(ra.lease.expires_in_ms, 600_000);
    assert_eq!(ra.status_interval_ms, 5_000);
    assert_eq!(ra.expires_after_ms, 15_000);

    let rb = b.join(&addrs(2), 1, 8, 8).await.unwrap();
    let a_info = PeerInfo {
        id: a.id(),
        addrs: addrs(1),
        neighbours: 0,
        capacity: 8,
        reachable: true,
    };
    assert_eq!(rb.candidates, vec![a_info.clone()]);
    assert_ne!(rb.lease.token, ra.lease.token);

    // want 1: the idle a before b with one neighbour; never c itself.
    let rc = c.join(&addrs(3), 0, 4, 1).await.unwrap();
    assert_eq!(rc.candidates, vec![a_info]);

    // Status with the lease (the client holds it): accepted, no new lease.
    let st = a.status(&addrs(1), 2, 8, &[b.id(), c.id()]).await.unwrap();
    assert_eq!(st.lease, None);
    assert_eq!(st.status_interval_ms, 5_000);
    let raw = gk.raw();
    assert_eq!(
        listed(&raw, a.id()).await,
        Some(PeerInfo {
            id: a.id(),
            addrs: addrs(1),
            neighbours: 2,
            capacity: 8,
            reachable: true,
        })
    );

    assert!(b.leave().await.unwrap().removed);
    let mut ids: Vec<NodeId> = a.all_peers().await.unwrap().iter().map(|p| p.id).collect();
    ids.sort();
    let mut expected = vec![a.id(), c.id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(!b.leave().await.unwrap().removed, "second leave");
    let err = b.status(&addrs(2), 0, 8, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownPeer), "{err}");
    c.status(&addrs(3), 0, 4, &[]).await.unwrap();
    gk.shutdown().await;
}

async fn signed_status_renews_the_lease<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let k = key(1);
    let joined = raw_join(&raw, &k, 1, 0).await;
    let old = joined.lease.token;

    let reply = raw
        .post_signed("/v1/status", &k, &status_req(&k, 1, vec![]))
        .await;
    reply.ok();
    let st: StatusResponse = reply.decode();
    let new = st.lease.expect("a signed status brings a new lease").token;
    assert_ne!(new, old);
    assert_eq!(new.len(), 64);

    let reply = raw
        .post_bearer("/v1/status", &old, &status_req(&k, 1, vec![]))
        .await;
    assert_error(&reply, 401, "bad_lease");
    let reply = raw
        .post_bearer("/v1/status", &new, &status_req(&k, 1, vec![]))
        .await;
    reply.ok();
    let st: StatusResponse = reply.decode();
    assert_eq!(st.lease, None, "a lease status does not hand out a lease");
    assert!(!reply.text.contains("\"lease\""), "{}", reply.text);
}

async fn reports_over_http<S: Store>(store: S) {
    // One mutual neighbour's report is enough here; the quorum has its own case (abuse.rs).
    let config = GatekeeperConfig {
        report_quorum: 1,
        ..steady_config()
    };
    let gk = start_gatekeeper(store, config).await;
    let raw = gk.raw();
    let [ka, kb, kc, kd, ke] = [key(1), key(2), key(3), key(4), key(5)];
    let ta = raw_join(&raw, &ka, 1, 0).await.lease.token;
    let tb = raw_join(&raw, &kb, 2, 0).await.lease.token;
    let tc = raw_join(&raw, &kc, 3, 0).await.lease.token;
    let (a, b, c) = (id_of(&ka), id_of(&kb), id_of(&kc));
    raw.post_bearer("/v1/status", &tb, &status_req(&kb, 2, vec![a]))
        .await
        .ok();
    raw.post_bearer("/v1/status", &ta, &status_req(&ka, 1, vec![b]))
        .await
        .ok();

    // A stranger's report is refused.
    let reply = raw
        .post_bearer("/v1/report", &tc, &report_req(&kc, a))
        .await;
    assert_error(&reply, 403, "not_a_neighbour");
    // So is one from a peer that never joined (signed, so authentic).
    let reply = raw
        .post_signed("/v1/report", &ke, &report_req(&ke, a))
        .await;
    assert_error(&reply, 404, "unknown_peer");
    // A peer cannot report itself.
    let reply = raw
        .post_bearer("/v1/report", &tb, &report_req(&kb, b))
        .await;
    assert_error(&reply, 422, "invalid_field");

    // A neighbour's report: accepted, target suspected but still listed.
    let reply = raw
        .post_bearer("/v1/report", &tb, &report_req(&kb, a))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let rr: ReportResponse = reply.decode();
    assert!(rr.target_suspected);
    assert!(listed(&raw, a).await.is_some(), "one report removed a");
    let cands = raw_join(&raw, &kd, 4, 32).await.candidates;
    let cand_ids: Vec<NodeId> = cands.iter().map(|p| p.id).collect();
    assert!(!cand_ids.contains(&a), "a suspected peer was offered");
    assert!(cand_ids.contains(&b) && cand_ids.contains(&c));

    // Its next status clears the suspicion.
    raw.post_bearer("/v1/status", &ta, &status_req(&ka, 1, vec![b]))
        .await
        .ok();
    let cands = raw_join(&raw, &kd, 4, 32).await.candidates;
    assert!(cands.iter().any(|p| p.id == a), "a is a candidate again");

    // A report about a peer that is gone is not a suspicion.
    raw.post_bearer("/v1/leave", &tc, &leave_req(&kc))
        .await
        .ok();
    raw.post_bearer("/v1/status", &tb, &status_req(&kb, 2, vec![a, c]))
        .await
        .ok();
    let reply = raw
        .post_bearer("/v1/report", &tb, &report_req(&kb, c))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert!(!reply.decode::<ReportResponse>().target_suspected);

    // A signed report works as well (from a: b already reported a this interval).
    let reply = raw
        .post_signed("/v1/report", &ka, &report_req(&ka, b))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert!(reply.decode::<ReportResponse>().target_suspected);
}

async fn peers_are_paged_in_id_order<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let keys: Vec<SigningKey> = (1..=12).map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        raw_join(&raw, k, u8::try_from(i + 1).unwrap(), 0).await;
    }
    let mut expected: Vec<NodeId> = keys.iter().map(id_of).collect();
    expected.sort();

    let client = gk.client(&key(99));
    let mut got = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = client.peers(after, 5).await.unwrap();
        assert!(page.peers.len() <= 5);
        got.extend(page.peers.iter().map(|p| p.id));
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(got, expected, "pages of 5");
    assert!(pages >= 3);
    let all: Vec<NodeId> = client
        .all_peers()
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(all, expected);

    // Default page size holds all twelve; the last page has no `next`.
    let reply = raw.get("/v1/peers").await;
    reply.ok();
    let body = reply.body();
    assert_eq!(body["v"], 1);
    assert_eq!(body["peers"].as_array().unwrap().len(), 12);
    assert!(body.get("next").is_none(), "{}", reply.text);
    let first = &body["peers"][0];
    assert!(first["id"].is_string() && first["addrs"].is_array());
    assert_eq!(first["capacity"], 8);

    let reply = raw
        .get(&format!("/v1/peers?limit=4&after={}", expected[3]))
        .await;
    reply.ok();
    let page: PeersPage = reply.decode();
    let ids: Vec<NodeId> = page.peers.iter().map(|p| p.id).collect();
    assert_eq!(ids, expected[4..8].to_vec());
    assert!(page.next.is_some());
    let reply = raw.get(&format!("/v1/peers?after={}", expected[11])).await;
    let page: PeersPage = reply.decode();
    assert!(page.peers.is_empty() && page.next.is_none());
}

async fn healthz_and_metrics<S: Store>(store: S) {
    let kind = store.kind();
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();

    let reply = raw.get("/healthz").await;
    reply.ok();
    let health: Health = reply.decode();
    assert_eq!(health.status, "ok");
    assert_eq!(health.store, kind);
    assert_eq!(health.error, None);
    let client = gk.client(&key(50));
    assert_eq!(client.health().await.unwrap().status, "ok");

    // What Prometheus asks for: OpenMetrics (curl and promtool get the Prometheus text
    // format, see metrics_format.rs).
    let openmetrics = [("accept", "application/openmetrics-text".to_string())];
    let reply = raw
        .send(reqwest::Method::GET, "/metrics", None, &openmetrics)
        .await;
    reply.ok();
    let text = reply.text.clone();
    for (name, kind) in [
        ("highway_gatekeeper_requests", "counter"),
        ("highway_gatekeeper_request_duration_seconds", "histogram"),
        ("highway_gatekeeper_live_peers", "gauge"),
        ("highway_gatekeeper_purged", "counter"),
        ("highway_gatekeeper_store_up", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "metrics lack {name} ({kind}):\n{text}"
        );
    }
    assert!(text.contains("highway_gatekeeper_purged_total "), "{text}");
    assert!(text.contains("highway_gatekeeper_store_up "), "{text}");
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let peers_ok = |text: &str| {
        metric(
            text,
            "highway_gatekeeper_requests_total",
            &[("endpoint", "peers"), ("code", "200")],
        )
    };
    let join_401 = |text: &str| {
        metric(
            text,
            "highway_gatekeeper_requests_total",
            &[("endpoint", "join"), ("code", "401")],
        )
    };
    let bad_sig = |text: &str| {
        metric(
            text,
            "highway_gatekeeper_rejections_total",
            &[("reason", "bad_signature")],
        )
    };
    let before = (peers_ok(&text), join_401(&text), bad_sig(&text));

    for _ in 0..3 {
        raw.get("/v1/peers").await.ok();
    }
    let k = key(1);
    let body = serde_json::to_vec(&join_req(&k, 1, 0)).unwrap();
    let reply = raw
        .post_bytes(
            "/v1/join",
            body,
            &[(SIGNATURE_HEADER, sign(&key(2), "/v1/join", b"other"))],
        )
        .await;
    assert_error(&reply, 401, "bad_signature");
    raw_join(&raw, &k, 1, 0).await;
    raw_join(&raw, &key(2), 2, 0).await;

    let text = raw.get("/metrics").await.text;
    assert_eq!(
        peers_ok(&text) - before.0,
        3.0,
        "peers requests counted:\n{text}"
    );
    assert_eq!(
        join_401(&text) - before.1,
        1.0,
        "refused join counted:\n{text}"
    );
    assert_eq!(
        bad_sig(&text) - before.2,
        1.0,
        "rejection reason counted:\n{text}"
    );
    // The rejections family appears with its first rejection.
    assert!(
        text.contains("# TYPE highway_gatekeeper_rejections_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("highway_gatekeeper_rejections_total{reason=\"bad_signature\"} "),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "highway_gatekeeper_requests_total",
            &[("endpoint", "join"), ("code", "200")]
        ) >= 2.0
    );
    assert!(
        metric(
            &text,
            "highway_gatekeeper_request_duration_seconds_count",
            &[("endpoint", "peers")]
        ) >= 3.0,
        "latency histogram:\n{text}"
    );
    // The sweeper refreshes the gauges.
    wait_until(Duration::from_secs(5), "live_peers gauge reaches 2", || {
        let raw = raw.clone();
        async move {
            let text = raw.get("/metrics").await.text;
            metric(&text, "highway_gatekeeper_live_peers", &[]) == 2.0
                && metric(&text, "highway_gatekeeper_store_up", &[]) == 1.0
        }
    })
    .await;
}

async fn signature_failures_are_refused<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let (ka, kb) = (key(1), key(2));
    let body = |req: &JoinRequest| serde_json::to_vec(req).unwrap();

    // No credentials at all.
    let reply = raw
        .post_bytes("/v1/join", body(&join_req(&ka, 1, 0)), &[])
        .await;
    assert_error(&reply, 401, "missing_auth");
    // Signed by the wrong key.
    let bytes = body(&join_req(&ka, 1, 0));
    let reply = raw.post_signed_bytes("/v1/join", &kb, bytes).await;
    assert_error(&reply, 401, "bad_signature");
    // Signed, then tampered with.
    let bytes = body(&join_req(&ka, 1, 0));
    let signature = sign(&ka, "/v1/join", &bytes);
    let tampered = String::from_utf8(bytes)
        .unwrap()
        .replace("\"capacity\":8", "\"capacity\":9")
        .into_bytes();
    let reply = raw
        .post_bytes("/v1/join", tampered, &[(SIGNATURE_HEADER, signature)])
        .await;
    assert_error(&reply, 401, "bad_signature");
    // Signed for another path.
    let bytes = body(&join_req(&ka, 1, 0));
    let signature = sign(&ka, "/v1/status", &bytes);
    let reply = raw
        .post_bytes("/v1/join", bytes, &[(SIGNATURE_HEADER, signature)])
        .await;
    assert_error(&reply, 401, "bad_signature");
    // Garbage signatures.
    for garbage in [
        "zz".repeat(64),
        "abcd".to_string(),
        "00".repeat(64),
        String::new(),
    ] {
        let reply = raw
            .post_bytes(
                "/v1/join",
                body(&join_req(&ka, 1, 0)),
                &[(SIGNATURE_HEADER, garbage.clone())],
            )
            .await;
        assert_error(&reply, 401, "bad_signature");
    }
    // A join cannot use a bearer token, not even a real one.
    let reply = raw
        .post_bearer("/v1/join", &"ab".repeat(32), &join_req(&ka, 1, 0))
        .await;
    assert_error(&reply, 401, "bad_signature");
    let token_b = raw_join(&raw, &kb, 2, 0).await.lease.token;
    let reply = raw
        .post_bearer("/v1/join", &token_b, &join_req(&kb, 2, 0))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_error_shape(&reply);
    // Timestamps beyond the clock-skew window (30 s), either way.
    for offset in [-31_000i64, 31_000] {
        let mut req = join_req(&ka, 1, 0);
        req.ts_ms = req.ts_ms.checked_add_signed(offset).unwrap();
        let reply = raw.post_signed("/v1/join", &ka, &req).await;
        assert_error(&reply, 401, "stale_request");
    }
    assert!(
        listed(&raw, id_of(&ka)).await.is_none(),
        "a refused join registered"
    );

    // The same signed bytes twice: the second is a replay.
    let bytes = body(&join_req(&ka, 1, 0));
    raw.post_signed_bytes("/v1/join", &ka, bytes.clone())
        .await
        .ok();
    let reply = raw.post_signed_bytes("/v1/join", &ka, bytes).await;
    assert_error(&reply, 409, "replayed");
    let status_bytes = serde_json::to_vec(&status_req(&ka, 1, vec![])).unwrap();
    raw.post_signed_bytes("/v1/status", &ka, status_bytes.clone())
        .await
        .ok();
    let reply = raw.post_signed_bytes("/v1/status", &ka, status_bytes).await;
    assert_error(&reply, 409, "replayed");
    // A captured leave cannot remove the peer once it has signed anything newer.
    let leave_bytes = serde_json::to_vec(&leave_req(&ka)).unwrap();
    let reply = raw
        .post_signed_bytes("/v1/leave", &ka, leave_bytes.clone())
        .await;
    reply.ok();
    assert!(reply.decode::<LeaveResponse>().removed);
    raw_join(&raw, &ka, 1, 0).await;
    let reply = raw.post_signed_bytes("/v1/leave", &ka, leave_bytes).await;
    assert_error(&reply, 409, "replayed");
    assert!(
        listed(&raw, id_of(&ka)).await.is_some(),
        "a replayed leave removed the peer"
    );
}

async fn only_the_owner_can_change_or_remove_its_entry<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let (ka, kb, kc) = (key(1), key(2), key(3));
    let ta = raw_join(&raw, &ka, 1, 0).await.lease.token;
    let tb = raw_join(&raw, &kb, 2, 0).await.lease.token;
    raw_join(&raw, &kc, 3, 0).await;
    let (a, c) = (id_of(&ka), id_of(&kc));
    let a_before = listed(&raw, a).await.unwrap();

    // b's valid lease token does not work for a's id.
    let mut hijack = status_req(&ka, 9, vec![]);
    hijack.capacity = 1;
    let reply = raw.post_bearer("/v1/status", &tb, &hijack).await;
    assert_error(&reply, 401, "bad_lease");
    let reply = raw.post_bearer("/v1/leave", &tb, &leave_req(&ka)).await;
    assert_error(&reply, 401, "bad_lease");
    let reply = raw
        .post_bearer("/v1/report", &tb, &report_req(&ka, c))
        .await;
    assert_error(&reply, 401, "bad_lease");
    // A made-up or malformed token neither.
    for token in [
        "00".repeat(32),
        "not-a-token".to_string(),
        ta[..32].to_string(),
    ] {
        let reply = raw.post_bearer("/v1/leave", &token, &leave_req(&ka)).await;
        assert_error(&reply, 401, "bad_lease");
    }
    let reply = raw
        .post_bytes(
            "/v1/leave",
            serde_json::to_vec(&leave_req(&ka)).unwrap(),
            &[("authorization", format!("Basic {ta}"))],
        )
        .await;
    assert_error(&reply, 401, "bad_lease");
    // b's signature over a's request neither.
    let reply = raw.post_signed("/v1/leave", &kb, &leave_req(&ka)).await;
    assert_error(&reply, 401, "bad_signature");
    let reply = raw.post_signed("/v1/status", &kb, &hijack).await;
    assert_error(&reply, 401, "bad_signature");

    assert_eq!(listed(&raw, a).await, Some(a_before), "a's entry changed");
    // The owner still can.
    let reply = raw.post_bearer("/v1/leave", &ta, &leave_req(&ka)).await;
    reply.ok();
    assert!(reply.decode::<LeaveResponse>().removed);
    assert!(listed(&raw, a).await.is_none());
}

async fn bad_input_is_refused_with_json_errors<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let k = key(1);
    let id = id_of(&k);
    let signed = |path: &'static str, bytes: Vec<u8>| {
        let raw = raw.clone();
        let k = k.clone();
        async move { raw.post_signed_bytes(path, &k, bytes).await }
    };
    let join_json = |edit: &dyn Fn(&mut Value)| {
        let mut v = serde_json::to_value(join_req(&k, 1, 4)).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    };

    // Not JSON at all.
    for bytes in [&b"{not json"[..], b"", b"{\"v\":1,", b"\xff\xfe"] {
        let reply = signed("/v1/join", bytes.to_vec()).await;
        assert_error(&reply, 400, "malformed_json");
    }
    // JSON with the wrong types.
    let wrong_types: [&dyn Fn(&mut Value); 5] = [
        &|v| v["capacity"] = json!("five"),
        &|v| v["ts_ms"] = json!(-1),
        &|v| v["id"] = json!(7),
        &|v| v["addrs"] = json!("127.0.0.1:4000"),
        &|v| v["v"] = json!("one"),
    ];
    for edit in wrong_types {
        let reply = signed("/v1/join", join_json(edit)).await;
        assert_error(&reply, 422, "invalid_field");
    }
    let reply = signed(
        "/v1/join",
        join_json(&|v| {
            v.as_object_mut().unwrap().remove("capacity");
        }),
    )
    .await;
    assert_error(&reply, 422, "invalid_field");
    // Well-typed but invalid fields, correctly signed.
    let five_addrs: Vec<PeerAddr> = (1..=5).flat_map(addrs).collect();
    let invalid: [&dyn Fn(&mut Value); 5] = [
        &|v| v["capacity"] = json!(0),
        &|v| v["capacity"] = json!(257),
        &|v| v["addrs"] = json!(five_addrs),
        &|v| v["addrs"] = json!([]),
        &|v| v["want"] = json!(33),
    ];
    for edit in invalid {
        let reply = signed("/v1/join", join_json(edit)).await;
        assert_error(&reply, 422, "invalid_field");
    }
    // Addresses nobody can be dialled at have their own code.
    let undialable: [&dyn Fn(&mut Value); 2] =
        [&|v| v["addrs"][0]["ip"] = json!("0.0.0.0"), &|v| {
            v["addrs"][0]["udp"] = json!(0)
        }];
    for edit in undialable {
        let reply = signed("/v1/join", join_json(edit)).await;
        assert_error(&reply, 400, "bad_address");
    }
    let reply = signed("/v1/join", join_json(&|v| v["id"] = json!("zz"))).await;
    assert_error(&reply, 422, "invalid_field");
    // A status cannot list its sender, nor too many neighbours; a report cannot name its sender.
    let reply = signed(
        "/v1/status",
        serde_json::to_vec(&status_req(&k, 1, vec![id])).unwrap(),
    )
    .await;
    assert_error(&reply, 422, "invalid_field");
    let many: Vec<NodeId> = (100..165).map(support::id).collect();
    let reply = signed(
        "/v1/status",
        serde_json::to_vec(&status_req(&k, 1, many)).unwrap(),
    )
    .await;
    assert_error(&reply, 422, "invalid_field");
    let reply = signed(
        "/v1/report",
        serde_json::to_vec(&report_req(&k, id)).unwrap(),
    )
    .await;
    assert_error(&reply, 422, "invalid_field");
    // A version this Gatekeeper does not speak, even if the rest is a valid v1 body.
    for path in ["/v1/join", "/v1/status", "/v1/report", "/v1/leave"] {
        let reply = signed(path, join_json(&|v| v["v"] = json!(2))).await;
        assert_error(&reply, 400, "unsupported_version");
    }
    // Oversized bodies, declared (Content-Length) or streamed (chunked).
    let big = json!({ "v": 1, "pad": "x".repeat(MAX_BODY_BYTES + 4096) });
    let reply = signed("/v1/join", serde_json::to_vec(&big).unwrap()).await;
    assert_error(&reply, 413, "body_too_large");
    let reply = post_chunked(raw.base(), "/v1/status", MAX_BODY_BYTES + 1024).await;
    assert_error(&reply, 413, "body_too_large");

    // Unknown paths and wrong methods.
    for (method, path) in [
        (Method::GET, "/v1/nope"),
        (Method::POST, "/v2/join"),
        (Method::GET, "/"),
        (Method::GET, "/v1/peers/"),
    ] {
        let reply = raw.send(method, path, None, &[]).await;
        assert_error(&reply, 404, "not_found");
    }
    for (method, path) in [
        (Method::GET, "/v1/join"),
        (Method::PUT, "/v1/status"),
        (Method::DELETE, "/v1/leave"),
        (Method::POST, "/v1/peers"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ] {
        let reply = raw.send(method, path, None, &[]).await;
        assert_error(&reply, 405, "method_not_allowed");
    }
    // Bad paging parameters.
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=",
        "after=xyz",
        "after=",
        &format!("after={}", "0".repeat(63)),
        "offset=3",
        "limit=5&sort=desc",
    ] {
        let reply = raw.get(&format!("/v1/peers?{query}")).await;
        assert_error(&reply, 422, "invalid_field");
    }
    // None of that registered anything.
    assert!(raw.peer_ids().await.is_empty());
}

/// POSTs `total` bytes of JSON-ish body with chunked transfer encoding (no Content-Length)
/// over a plain TCP connection and returns the answer.
async fn post_chunked(base: &str, path: &str, total: usize) -> Reply {
    let started = Instant::now();
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    let chunk = vec![b' '; 1024];
    let mut sent = 0;
    while sent < total {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
        sent += chunk.len();
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; that is its right.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a chunked request within 10 s");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        // Decode the chunked answer.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size.min(after.len())]);
            rest = after.get(size + 2..).unwrap_or("");
        }
        out
    } else {
        body.to_string()
    };
    Reply {
        status,
        json: serde_json::from_str(&body).ok(),
        text: body,
        content_type,
        elapsed: started.elapsed(),
    }
}

async fn silent_peer_expires_while_active_peer_stays<S: Store>(store: S) {
    let config = GatekeeperConfig::test();
    let gk = start_gatekeeper(store, config.clone()).await;
    let raw = gk.raw();
    let silent = gk.client(&key(1));
    let active = Arc::new(gk.client(&key(2)));
    silent.join(&addrs(1), 0, 8, 0).await.unwrap();
    active.join(&addrs(2), 0, 8, 0).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = keep_sending_status(
        active.clone(),
        addrs(2),
        vec![],
        Duration::from_millis(50),
        stop.clone(),
    );

    let started = Instant::now();
    wait_until(Duration::from_secs(3), "the silent peer disappears", || {
        let raw = raw.clone();
        let id = silent.id();
        async move { !raw.peer_ids().await.contains(&id) }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "the silent peer vanished before it could have expired"
    );

    // For several expiry windows: never listed or offered again; the active one stays.
    let until = Instant::now() + config.expires_after() * 3;
    let mut seed = 100;
    while Instant::now() < until {
        let ids = raw.peer_ids().await;
        assert!(
            !ids.contains(&silent.id()),
            "an expired peer is listed again"
        );
        assert!(ids.contains(&active.id()), "the active peer was dropped");
        let newcomer = gk.client(&key(seed));
        let resp = newcomer
            .join(&addrs((seed % 200) as u8 + 3), 0, 8, 32)
            .await
            .unwrap();
        assert!(
            resp.candidates.iter().all(|c| c.id != silent.id()),
            "an expired peer was offered as a candidate"
        );
        seed += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let (sent, errors) = heartbeat.await.unwrap();
    assert!(
        errors.is_empty(),
        "statuses of the active peer failed: {errors:?}"
    );
    assert!(sent >= 10, "only {sent} statuses sent");

    let err = silent.status(&addrs(1), 0, 8, &[]).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(ErrorCode::Expired | ErrorCode::UnknownPeer)
        ),
        "late status of an expired peer: {err}"
    );
    // Either way it is gone now: the next one is unknown.
    let err = silent.status(&addrs(1), 0, 8, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownPeer), "{err}");
}

async fn reported_peer_that_keeps_sending_status_stays_listed<S: Store>(store: S) {
    let config = GatekeeperConfig {
        report_quorum: 1,
        ..GatekeeperConfig::test()
    };
    let gk = start_gatekeeper(store, config.clone()).await;
    let raw = gk.raw();
    let reporter = Arc::new(gk.client(&key(1)));
    let target = Arc::new(gk.client(&key(2)));
    reporter.join(&addrs(1), 0, 8, 0).await.unwrap();
    target.join(&addrs(2), 0, 8, 0).await.unwrap();
    reporter
        .status(&addrs(1), 1, 8, &[target.id()])
        .await
        .unwrap();
    target
        .status(&addrs(2), 1, 8, &[reporter.id()])
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let every = Duration::from_millis(50);
    let beats = [
        keep_sending_status(
            target.clone(),
            addrs(2),
            vec![reporter.id()],
            every,
            stop.clone(),
        ),
        keep_sending_status(
            reporter.clone(),
            addrs(1),
            vec![target.id()],
            every,
            stop.clone(),
        ),
    ];

    // Report it again and again for several grace periods.
    let until = Instant::now() + config.report_grace * 5;
    let mut reports = 0;
    let mut suspected = 0;
    let mut report_errors = Vec::new();
    while Instant::now() < until {
        match reporter.report(target.id()).await {
            Ok(resp) => {
                reports += 1;
                suspected += u32::from(resp.target_suspected);
            }
            Err(e) => report_errors.push(e.to_string()),
        }
        // Past the status interval: one report per target per interval.
        tokio::time::sleep(config.status_interval + Duration::from_millis(10)).await;
    }
    let still_listed = listed(&raw, target.id()).await.is_some();
    stop.store(true, Ordering::Relaxed);
    let mut status_errors = Vec::new();
    for beat in beats {
        let (sent, errors) = beat.await.unwrap();
        assert!(sent >= 10, "only {sent} statuses sent");
        status_errors.extend(errors);
    }
    assert!(
        status_errors.is_empty(),
        "statuses failed while being reported: {status_errors:?}"
    );
    assert!(
        report_errors.is_empty(),
        "reports failed: {report_errors:?}"
    );
    assert!(reports >= 5, "only {reports} reports");
    assert!(suspected >= 1, "no report was taken as a suspicion");
    assert!(
        still_listed,
        "a peer that keeps sending status was removed by reports"
    );
}

// ---------------------------------------------------------------------------------------
// Instantiation
// ---------------------------------------------------------------------------------------

for_both_stores!(
    join_status_leave_round_trip,
    signed_status_renews_the_lease,
    reports_over_http,
    peers_are_paged_in_id_order,
    healthz_and_metrics,
    signature_failures_are_refused,
    only_the_owner_can_change_or_remove_its_entry,
    bad_input_is_refused_with_json_errors,
    silent_peer_expires_while_active_peer_stays,
    reported_peer_that_keeps_sending_status_stays_listed,
);
