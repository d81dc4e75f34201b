//! How reachable the node is, and why it has no neighbours when it has none: the parts of
//! `GET /v1/status` that answer "can others reach me?" and "why am I cut off?".

use std::net::{IpAddr, SocketAddr};

use highway_wire::NodeId;
use serde::{Deserialize, Serialize};

use crate::control::RuntimeStats;
use crate::owner::Snapshot;

/// `reachability` in `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReachabilityJson {
    /// `public`, `nat-stable-port`, `nat-per-destination`, `udp-blocked` or `unknown`
    /// (fewer than two neighbours at different addresses reported yet).
    pub class: String,
    /// Others may dial this node's published address: the Gatekeeper saw its requests
    /// come from it. False behind a NAT: the node then links by dialling out.
    pub dialable: bool,
    /// The address the Gatekeeper saw this node's requests come from (its public IP
    /// behind a NAT); `null` before the first answer.
    pub observed_ip: Option<IpAddr>,
    /// What each neighbour reports as the source of this node's datagrams.
    pub observed: Vec<ObservedJson>,
}

/// One neighbour's report, in [`ReachabilityJson::observed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedJson {
    /// The reporting neighbour.
    pub by: NodeId,
    /// Where that neighbour's datagrams come from.
    pub by_addr: SocketAddr,
    /// Where it sees ours come from.
    pub addr: SocketAddr,
}

pub(crate) fn reachability_json(snap: &Snapshot) -> ReachabilityJson {
    let r = &snap.reachability;
    ReachabilityJson {
        class: r.class.name().to_string(),
        dialable: r.dialable,
        observed_ip: snap.verdict.and_then(|v| v.observed_ip),
        observed: r
            .observations
            .iter()
            .map(|o| ObservedJson {
                by: o.observer,
                by_addr: o.observer_addr,
                addr: o.observed,
            })
            .collect(),
    }
}

/// Why a node has no neighbours, in words a user can act on; `None` when it has some.
pub(crate) fn cut_off_reason(
    snap: &Snapshot,
    runtime: &RuntimeStats,
    last_dial_error: Option<&str>,
    last_gatekeeper_error: Option<&str>,
) -> Option<String> {
    if !snap.neighbours.is_empty() {
        return None;
    }
    let mut why = Vec::new();
    match snap.phase {
        highway_core::Phase::Idle => why.push("not joined yet".to_string()),
        highway_core::Phase::Left => why.push("this node left the overlay".to_string()),
        highway_core::Phase::Running => {}
    }
    if snap.verdict.is_none() {
        let mut text = format!(
            "the Gatekeeper has not answered yet ({} errors)",
            runtime.gatekeeper_errors
        );
        if let Some(e) = last_gatekeeper_error {
            text.push_str(&format!("; last: {e}"));
        }
        why.push(text);
    } else if let Some(e) = last_gatekeeper_error.filter(|_| runtime.gatekeeper_errors > 0) {
        why.push(format!(
            "{} Gatekeeper errors, last: {e}",
            runtime.gatekeeper_errors
        ));
    }
    let failed = runtime.outbound_unreachable;
    if runtime.outbound_started > 0 {
        let mut text = format!(
            "{} dials: {} unanswered, {} full, {} declined",
            runtime.outbound_started, failed, runtime.outbound_full, runtime.outbound_rejected
        );
        if let Some(e) = last_dial_error {
            text.push_str(&format!("; last failure: {e}"));
        }
        why.push(text);
    } else if snap.verdict.is_some() {
        why.push("the Gatekeeper offered no peer to dial yet".to_string());
    }
    if snap.stats.dials_skipped_undialable > 0 {
        why.push(format!(
            "{} candidates skipped because they cannot be dialled (behind a NAT)",
            snap.stats.dials_skipped_undialable
        ));
    }
    if let Some(v) = snap.verdict.filter(|v| !v.dialable) {
        let seen = v
            .observed_ip
            .map_or_else(|| "another address".to_string(), |ip| ip.to_string());
        why.push(format!(
            "others cannot dial this node (it publishes {} but the Gatekeeper sees it as \
             {seen}, a NAT), so it needs a dialable peer with a free slot",
            snap.addr.ip
        ));
    }
    if snap.reachability.class == highway_core::NatClass::UdpBlocked {
        why.push(
            "links came up but no datagram ever arrived: UDP seems blocked on this network"
                .to_string(),
        );
    }
    Some(format!("0 neighbours: {}", why.join("; ")))
}
