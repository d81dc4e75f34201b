//! The attacks of issue 10's findings 3, 6 and 7 (Gatekeeper side), reproduced against a
//! real Gatekeeper on loopback with signed requests, each refused, and the honest path
//! still working. Every case runs against the embedded store and against Redis.
//!
//! Other networks are other loopback addresses: a client bound to 127.0.N.1 comes from
//! the network 127.0.N.0/24.

#[macro_use]
mod support;

use std::net::{IpAddr, Ipv4Addr};

use ed25519_dalek::SigningKey;
use highway_gatekeeper::{GatekeeperConfig, Store};
use highway_wire::gatekeeper::{JoinResponse, ReportResponse, SIGNATURE_HEADER, StatusRequest};
use highway_wire::{NodeId, PeerAddr};
use serde_json::json;

use support::{
    Raw, Reply, addrs, assert_error, fresh_ts, id_of, join_req, key, report_req, start_gatekeeper,
    status_req, steady_config,
};

fn loopback(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

async fn join_from(raw: &Raw, key: &SigningKey, host: u8, want: u16) -> Reply {
    raw.post_signed("/v1/join", key, &join_req(key, host, want))
        .await
}

async fn joined(raw: &Raw, key: &SigningKey, host: u8, want: u16) -> JoinResponse {
    let reply = join_from(raw, key, host, want).await;
    reply.ok();
    reply.decode()
}

/// Candidate ids a fresh joiner gets.
async fn candidates(raw: &Raw, seed: u64) -> Vec<NodeId> {
    joined(raw, &key(seed), 200, 32)
        .await
        .candidates
        .iter()
        .map(|p| p.id)
        .collect()
}

/// Value of `highway_gatekeeper_rejections_total{reason}`.
async fn rejections(raw: &Raw, reason: &str) -> u64 {
    let text = raw.get("/metrics").await.text;
    let prefix = format!("highway_gatekeeper_rejections_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn status_bearer(raw: &Raw, token: &str, req: &StatusRequest) -> Reply {
    raw.post_bearer("/v1/status", token, req).await
}

/// Finding 3: "a status listing the victim in `neighbour_ids` (unchecked) and a report of
/// it every 0.5 s kept the victim out of all 19 join answers while it was alive".
async fn one_peer_cannot_hide_another<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let (kv, ka) = (key(1), key(2));
    let v = id_of(&kv);
    let tv = joined(&raw, &kv, 1, 0).await.lease.token;
    let ta = joined(&raw, &ka, 2, 0).await.lease.token;
    status_bearer(&raw, &tv, &status_req(&kv, 1, vec![]))
        .await
        .ok();
    // The attacker lists its victim, then reports it again and again.
    status_bearer(&raw, &ta, &status_req(&ka, 2, vec![v]))
        .await
        .ok();
    for round in 0..19 {
        let reply = raw
            .post_bearer("/v1/report", &ta, &report_req(&ka, v))
            .await;
        // Refused every time: not mutual, and after the first also over the reporter's
        // rate (unless this machine is so slow that a status interval passed).
        match (round, reply.status) {
            (0, _) | (_, 403) => assert_error(&reply, 403, "not_a_neighbour"),
            _ => assert_error(&reply, 429, "rate_limited"),
        }
        assert!(
            candidates(&raw, 100 + round).await.contains(&v),
            "round {round}: the victim was hidden"
        );
    }
    let refused =
        rejections(&raw, "not_a_neighbour").await + rejections(&raw, "rate_limited").await;
    assert_eq!(refused, 19);

    // Even a real (mutual) neighbour alone cannot hide a live peer: the quorum is 2.
    let kb = key(3);
    let b = id_of(&kb);
    let tb = joined(&raw, &kb, 3, 0).await.lease.token;
    let d = id_of(&key(5));
    status_bearer(&raw, &tv, &status_req(&kv, 1, vec![b, d]))
        .await
        .ok();
    status_bearer(&raw, &tb, &status_req(&kb, 3, vec![v]))
        .await
        .ok();
    let reply = raw
        .post_bearer("/v1/report", &tb, &report_req(&kb, v))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let rr: ReportResponse = reply.decode();
    assert_eq!((rr.target_suspected, rr.reporters), (false, 1));
    assert!(
        candidates(&raw, 200).await.contains(&v),
        "one reporter hid v"
    );

    // The honest path: v really died (no more statuses) and a second mutual neighbour
    // confirms: v is no longer offered. c lists v, but v's last status does not list c.
    let kc = key(4);
    let tc = joined(&raw, &kc, 4, 0).await.lease.token;
    status_bearer(&raw, &tc, &status_req(&kc, 4, vec![v]))
        .await
        .ok();
    let reply = raw
        .post_bearer("/v1/report", &tc, &report_req(&kc, v))
        .await;
    assert_error(&reply, 403, "not_a_neighbour");
    let kd = key(5);
    let td = joined(&raw, &kd, 5, 0).await.lease.token;
    status_bearer(&raw, &td, &status_req(&kd, 5, vec![v]))
        .await
        .ok();
    let reply = raw
        .post_signed("/v1/report", &kd, &report_req(&kd, v))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let rr: ReportResponse = reply.decode();
    assert_eq!((rr.target_suspected, rr.reporters), (true, 2));
    assert!(!candidates(&raw, 201).await.contains(&v), "v still offered");
}

/// Finding 3: "2,000 ids registered from one IP in 5 s; with 100 such ids alive a joiner
/// got 0-1 real peers among 32 candidates".
async fn sybils_from_one_network_are_limited_and_outnumbered<S: Store>(store: S) {
    let config = GatekeeperConfig {
        max_peers_per_prefix: 100,
        max_joins_per_prefix: 110,
        ..steady_config()
    };
    let gk = start_gatekeeper(store, config).await;
    let sybil_raw = gk.raw();
    let mut sybils = Vec::new();
    for seed in 1000..1100u64 {
        let k = key(seed);
        // Idle, with room to spare: first in least-loaded order.
        let mut req = join_req(&k, 1, 0);
        req.capacity = 256;
        sybil_raw.post_signed("/v1/join", &k, &req).await.ok();
        sybils.push(id_of(&k));
    }
    // The 101st live id from that network is refused, and soon every join from it.
    let reply = join_from(&sybil_raw, &key(1100), 1, 0).await;
    assert_error(&reply, 429, "too_many_peers");
    for seed in 1101..1110u64 {
        join_from(&sybil_raw, &key(seed), 1, 0).await;
    }
    let reply = join_from(&sybil_raw, &key(1110), 1, 0).await;
    assert_error(&reply, 429, "rate_limited");

    // 40 honest peers, each from its own network, each with a few neighbours.
    for n in 1..=40u8 {
        let raw = Raw::from_source(&gk.url, loopback(n, 1));
        let k = key(u64::from(n));
        let mut req = join_req(&k, 1, 0);
        req.addrs = vec![PeerAddr::new(loopback(n, 1), 20_000, 20_001)];
        req.neighbours = 4;
        raw.post_signed("/v1/join", &k, &req).await.ok();
    }
    // Joiners from yet other networks: almost every candidate is honest.
    for round in 0..10u8 {
        let raw = Raw::from_source(&gk.url, loopback(100 + round, 1));
        let k = key(5000 + u64::from(round));
        let mut req = join_req(&k, 1, 32);
        req.addrs = vec![PeerAddr::new(loopback(100 + round, 1), 20_000, 20_001)];
        let reply = raw.post_signed("/v1/join", &k, &req).await;
        reply.ok();
        let answer: JoinResponse = reply.decode();
        assert_eq!(answer.candidates.len(), 32, "round {round}");
        let honest = answer
            .candidates
            .iter()
            .filter(|p| !sybils.contains(&p.id))
            .count();
        assert!(
            honest >= 30,
            "round {round}: only {honest} of 32 candidates are not Sybils"
        );
    }
}

/// Finding 6: "The Gatekeeper accepted joins claiming 255.255.255.255, 169.254.169.254,
/// its own address and a bystander's". Since issue 11 a peer may publish an address other
/// than its source (its LAN address behind a NAT): it is registered as unreachable and
/// never offered to anyone, so a bystander's address still reaches no one.
async fn published_addresses_are_checked<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let own: std::net::SocketAddr = gk.url.trim_start_matches("http://").parse().unwrap();
    let k = key(1);
    let bad: Vec<PeerAddr> = [
        "255.255.255.255",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "ff02::1",
        "fe80::1",
        "::",
    ]
    .iter()
    .map(|ip| PeerAddr::new(ip.parse().unwrap(), 4000, 4001))
    .chain([
        PeerAddr::new(own.ip(), 4000, own.port()),
        PeerAddr::new(own.ip(), own.port(), 4001),
    ])
    .collect();
    for addr in &bad {
        let mut req = join_req(&k, 1, 0);
        req.addrs = vec![*addr];
        let reply = raw.post_signed("/v1/join", &k, &req).await;
        assert_error(&reply, 400, "bad_address");
    }
    assert!(raw.peer_ids().await.is_empty(), "a refused join registered");
    assert_eq!(rejections(&raw, "bad_address").await, bad.len() as u64);

    // A bystander's address (not where the request comes from): registered, unreachable.
    let bystander = PeerAddr::new("203.0.113.5".parse().unwrap(), 4000, 4001);
    let mut req = join_req(&k, 1, 0);
    req.addrs = vec![bystander];
    let reply = raw.post_signed("/v1/join", &k, &req).await;
    assert_eq!(
        reply.body()["reachable"],
        json!(false),
        "{:?}",
        reply.body()
    );
    assert_eq!(reply.body()["observed_ip"], json!("127.0.0.1"));
    let listed = raw.get("/v1/peers").await.body()["peers"][0].clone();
    assert_eq!(listed["reachable"], json!(false));
    // Others joining are never offered it.
    for seed in 2..6 {
        let offered = joined(&raw, &key(seed), 1, 8).await.candidates;
        assert!(
            offered.iter().all(|c| c.id != id_of(&k)),
            "an unreachable peer was offered as a candidate"
        );
    }
    // Its own address, signed: reachable again, and offered.
    let mut req = status_req(&k, 1, vec![]);
    req.addrs = addrs(1);
    let reply = raw.post_signed("/v1/status", &k, &req).await;
    assert_eq!(reply.body()["reachable"], json!(true), "{:?}", reply.body());
    let offered = joined(&raw, &key(9), 1, 8).await.candidates;
    assert!(offered.iter().any(|c| c.id == id_of(&k) && c.reachable));
    // A signed status moving to a bystander: unreachable again, never offered.
    let mut req = status_req(&k, 1, vec![]);
    req.addrs = vec![bystander];
    let reply = raw.post_signed("/v1/status", &k, &req).await;
    assert_eq!(reply.body()["reachable"], json!(false));
    let offered = joined(&raw, &key(10), 1, 8).await.candidates;
    assert!(offered.iter().all(|c| c.id != id_of(&k)));
    // From another network, that network's address is the one it may publish.
    let other = Raw::from_source(&gk.url, loopback(7, 7));
    let k2 = key(2);
    let mut req = join_req(&k2, 1, 0);
    req.addrs = vec![PeerAddr::new(loopback(7, 7), 4000, 4001)];
    other.post_signed("/v1/join", &k2, &req).await.ok();
}

/// Finding 7 part 2: "A lease-token status with new addresses and a 20 s old timestamp was
/// accepted, and a verbatim replayed status too".
async fn status_replays_and_unsigned_moves_are_refused<S: Store>(store: S) {
    let gk = start_gatekeeper(store, steady_config()).await;
    let raw = gk.raw();
    let k = key(1);
    let token = joined(&raw, &k, 1, 0).await.lease.token;
    let auth = [("authorization", format!("Bearer {token}"))];

    let body = serde_json::to_vec(&status_req(&k, 1, vec![])).unwrap();
    raw.post_bytes("/v1/status", body.clone(), &auth).await.ok();
    let reply = raw.post_bytes("/v1/status", body, &auth).await;
    assert_error(&reply, 409, "replayed");

    // New addresses, an older timestamp, the lease token: refused.
    let mut moved = status_req(&k, 2, vec![]);
    moved.ts_ms = fresh_ts() - 20_000;
    let reply = status_bearer(&raw, &token, &moved).await;
    assert_error(&reply, 409, "replayed");
    moved.ts_ms = fresh_ts();
    let reply = status_bearer(&raw, &token, &moved).await;
    assert_error(&reply, 401, "signature_required");
    let listed = raw.get("/v1/peers").await.body()["peers"][0]["addrs"].clone();
    assert_eq!(listed, json!(addrs(1)), "a lease token moved the peer");

    // A signed status replayed verbatim is refused as well.
    let signed = serde_json::to_vec(&status_req(&k, 1, vec![])).unwrap();
    raw.post_signed_bytes("/v1/status", &k, signed.clone())
        .await
        .ok();
    let reply = raw.post_signed_bytes("/v1/status", &k, signed).await;
    assert_error(&reply, 409, "replayed");
    assert_eq!(rejections(&raw, "replayed").await, 3);
    assert_eq!(rejections(&raw, "signature_required").await, 1);

    // The honest path: the typed client moves by signing when the lease is refused.
    // (Another key: this process's own timestamps for `k` may run ahead of the clock.)
    let k = key(2);
    let id = id_of(&k);
    raw.post_signed("/v1/leave", &key(1), &support::leave_req(&key(1)))
        .await
        .ok();
    let client = gk.client(&k);
    client.join(&addrs(1), 0, 8, 0).await.unwrap();
    client.status(&addrs(3), 0, 8, &[]).await.unwrap();
    let page = raw.get("/v1/peers").await;
    assert_eq!(page.body()["peers"][0]["id"], json!(id));
    assert_eq!(page.body()["peers"][0]["addrs"], json!(addrs(3)));
}

/// `X-Forwarded-For` names the source only when a configured trusted proxy sent it.
async fn forwarded_for_is_believed_only_from_trusted_proxies<S: Store>(store: S) {
    let config = GatekeeperConfig {
        max_peers_per_prefix: 1,
        trusted_proxies: vec![loopback(0, 1).into()],
        ..steady_config()
    };
    let gk = start_gatekeeper(store, config).await;
    let proxy = gk.raw();
    let join_via = |raw: Raw, seed: u64, client: &'static str| async move {
        let k = key(seed);
        let mut req = join_req(&k, 1, 0);
        req.addrs = vec![PeerAddr::new(client.parse().unwrap(), 4000, 4001)];
        let body = serde_json::to_vec(&req).unwrap();
        let signature = support::sign(&k, "/v1/join", &body);
        raw.post_bytes(
            "/v1/join",
            body,
            &[
                (SIGNATURE_HEADER, signature),
                ("x-forwarded-for", format!("6.6.6.6, {client}")),
            ],
        )
        .await
    };
    // Through the proxy: two clients of two networks, each publishing its own address.
    join_via(proxy.clone(), 1, "198.51.100.7").await.ok();
    join_via(proxy.clone(), 2, "203.0.113.9").await.ok();
    // The same network again is over its limit of 1.
    let reply = join_via(proxy.clone(), 3, "203.0.113.10").await;
    assert_error(&reply, 429, "too_many_peers");
    // Not from the proxy: the header is ignored, the TCP peer is the source, so the
    // claimed address is not the source's: registered as unreachable.
    let direct = Raw::from_source(&gk.url, loopback(9, 9));
    let reply = join_via(direct, 4, "192.0.2.1").await;
    assert_eq!(
        reply.body()["reachable"],
        json!(false),
        "{:?}",
        reply.body()
    );
    assert_eq!(
        reply.body()["observed_ip"],
        json!(loopback(9, 9).to_string())
    );
    let reply = join_via(proxy.clone(), 5, "192.0.2.77").await;
    assert_eq!(reply.body()["reachable"], json!(true), "{:?}", reply.body());
    assert_eq!(reply.body()["observed_ip"], json!("192.0.2.77"));
}

for_both_stores!(
    one_peer_cannot_hide_another,
    sybils_from_one_network_are_limited_and_outnumbered,
    published_addresses_are_checked,
    status_replays_and_unsigned_moves_are_refused,
    forwarded_for_is_believed_only_from_trusted_proxies,
);
