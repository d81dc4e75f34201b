//! Where a download fetches from: each hit becomes one source, reached directly, pushed
//! (the holder connects to us on a relay's word) or relayed, whichever the two ends allow.

use std::net::SocketAddr;

use highway_share::transfer::Holder;

use rand::seq::SliceRandom;

use crate::views::{HitJson, RelayJson, SourceJson};

/// The ways to reach the holder of `hit`: directly, or one per relay it names, in random
/// order so that downloads spread over a holder's relays. `me` is this node's TCP address
/// (its relay and push endpoint) and `dialable` whether others can connect to it. Empty
/// when the hit names no way in (a holder behind a NAT with no relay).
pub(crate) fn sources_for(
    hit: &HitJson,
    me: SocketAddr,
    dialable: bool,
) -> Vec<(Holder, SourceJson)> {
    if hit.dialable {
        let url = format!("http://{}", hit.addr);
        return vec![(Holder::from(hit.addr), direct(url))];
    }
    let mut out: Vec<(Holder, SourceJson)> = hit
        .relays
        .iter()
        .filter_map(|relay| via_relay(hit, relay, me, dialable))
        .collect();
    out.shuffle(&mut rand::rng());
    out
}

fn via_relay(
    hit: &HitJson,
    relay: &RelayJson,
    me: SocketAddr,
    dialable: bool,
) -> Option<(Holder, SourceJson)> {
    let (url, path) = if dialable {
        // The holder can reach us: only the request for it goes through the relay.
        (
            format!(
                "http://{me}/v1/pushed/{}/{}/{}",
                hit.holder,
                relay.addr.ip(),
                relay.addr.port()
            ),
            format!("pushed via {}", relay.id.short()),
        )
    } else {
        (
            format!("http://{}/v1/relay/{}", relay.addr, hit.holder),
            format!("relayed via {}", relay.id.short()),
        )
    };
    let holder: Holder = url.parse().ok()?;
    Some((
        holder,
        SourceJson {
            url,
            path,
            bytes: 0,
        },
    ))
}

fn direct(url: String) -> SourceJson {
    SourceJson {
        url,
        path: "direct".to_string(),
        bytes: 0,
    }
}

/// Sources for holders given by address (`--holder`): direct.
pub(crate) fn direct_source(addr: SocketAddr) -> (Holder, SourceJson) {
    (Holder::from(addr), direct(format!("http://{addr}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use highway_wire::NodeId;

    fn node(seed: u8) -> NodeId {
        NodeId::from_key(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    fn hit(dialable: bool, relays: Vec<RelayJson>) -> HitJson {
        HitJson {
            name: "a".into(),
            size: 1,
            hash: highway_wire::ContentId::from_bytes([1; 32]),
            holder: node(1),
            addr: "192.0.2.10:8080".parse().unwrap(),
            hops: 1,
            at_ms: 0,
            dialable,
            relays,
        }
    }

    #[test]
    fn each_hit_is_reached_the_best_way_both_ends_allow() {
        let me: SocketAddr = "203.0.113.5:7001".parse().unwrap();
        let relay = RelayJson {
            id: node(2),
            addr: "203.0.113.9:7001".parse().unwrap(),
        };
        let one = |hit: HitJson, dialable: bool| {
            let mut all = sources_for(&hit, me, dialable);
            assert_eq!(all.len(), 1);
            all.remove(0)
        };
        let (_, s) = one(hit(true, vec![relay.clone()]), false);
        assert_eq!(
            (s.url.as_str(), s.path.as_str()),
            ("http://192.0.2.10:8080", "direct")
        );
        let (_, s) = one(hit(false, vec![relay.clone()]), true);
        assert_eq!(
            s.url,
            format!(
                "http://203.0.113.5:7001/v1/pushed/{}/203.0.113.9/7001",
                node(1)
            )
        );
        assert!(s.path.starts_with("pushed via "));
        let (holder, s) = one(hit(false, vec![relay.clone()]), false);
        assert_eq!(
            s.url,
            format!("http://203.0.113.9:7001/v1/relay/{}", node(1))
        );
        assert!(s.path.starts_with("relayed via "));
        assert_eq!(
            holder.url().as_str(),
            format!("http://203.0.113.9:7001/v1/relay/{}", node(1))
        );
        assert!(sources_for(&hit(false, vec![]), me, false).is_empty());
        let second = RelayJson {
            id: node(3),
            addr: "203.0.113.10:7001".parse().unwrap(),
        };
        let both = sources_for(&hit(false, vec![relay, second]), me, false);
        assert_eq!(
            both.len(),
            2,
            "a source per relay, so a failed relay has a stand-in"
        );
    }
}
