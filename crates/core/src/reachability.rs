//! How the outside sees this peer: what its neighbours report as the source of its
//! datagrams, and what that says about the NAT (if any) in front of it.
//!
//! Each heartbeat ack carries the address the heartbeat came from, as the acking
//! neighbour saw it. Two neighbours at different IPs are two observers on different
//! paths: if both see our bound address there is no NAT; if both see one other address the
//! NAT keeps one mapping for every destination (a hole punched toward one peer works for
//! others); if they see different ports it maps per destination (symmetric). The verdict
//! is only shown and counted: traffic is never aimed at an observed address, so a
//! neighbour that lies about it can mislead the display, not the network.

use std::net::SocketAddr;

use highway_wire::NodeId;

use crate::peer::Peer;

/// Links lost without ever hearing a datagram, with none heard on any link, before the
/// peer concludes UDP does not get through at all.
pub const UNHEARD_LINKS_FOR_BLOCKED: u64 = 2;

/// What is in front of this peer's UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatClass {
    /// Observers see the address the socket is bound to.
    Public,
    /// Observers at different addresses all see one other address: one mapping for all.
    NatStablePort,
    /// Observers at different addresses see different addresses: a mapping per
    /// destination (a symmetric NAT).
    NatPerDestination,
    /// Links came up over TCP but no datagram ever arrived on any of them.
    UdpBlocked,
    /// Fewer than two observers so far.
    Unknown,
}

impl NatClass {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::NatStablePort => "nat-stable-port",
            Self::NatPerDestination => "nat-per-destination",
            Self::UdpBlocked => "udp-blocked",
            Self::Unknown => "unknown",
        }
    }
}

/// One neighbour's report of our address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub observer: NodeId,
    /// Where the observer's datagrams come from.
    pub observer_addr: SocketAddr,
    /// Where it says ours come from.
    pub observed: SocketAddr,
}

/// The peer's view of its own reachability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    pub class: NatClass,
    /// Others may dial this peer's published address (the Gatekeeper's verdict).
    pub dialable: bool,
    pub observations: Vec<Observation>,
}

/// What the peer learns of its own reachability from its links.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Some link ever carried an authenticated datagram to us.
    pub heard_on_a_link: bool,
    /// Links came up and never carried a datagram: from now on this peer's links travel
    /// over their TCP connection (see [`crate::ConnIo`]).
    pub udp_blocked: bool,
}

/// Classifies from the observations; `local` is the bound UDP address, `udp_blocked` the
/// peer's conclusion that UDP does not get through (links that never carried a datagram;
/// see [`UNHEARD_LINKS_FOR_BLOCKED`]).
pub fn classify(local: SocketAddr, observations: &[Observation], udp_blocked: bool) -> NatClass {
    if observations.is_empty() {
        return if udp_blocked {
            NatClass::UdpBlocked
        } else {
            NatClass::Unknown
        };
    }
    let first = observations[0];
    let two_observers = observations
        .iter()
        .any(|o| o.observer_addr.ip() != first.observer_addr.ip());
    if !two_observers {
        return NatClass::Unknown;
    }
    if observations.iter().any(|o| o.observed != first.observed) {
        return NatClass::NatPerDestination;
    }
    let same_as_bound = first.observed == local
        || (local.ip().is_unspecified() && first.observed.port() == local.port());
    if same_as_bound {
        NatClass::Public
    } else {
        NatClass::NatStablePort
    }
}

impl Peer {
    /// What the neighbours report, and the verdict.
    pub fn reachability(&self) -> Reachability {
        let mut observations: Vec<Observation> = self
            .links
            .values()
            // Over a TCP connection the echo is the TCP mapping: nothing about UDP.
            .filter(|l| l.conn.is_none())
            .filter_map(|l| {
                Some(Observation {
                    observer: l.id,
                    observer_addr: l.path?,
                    observed: l.observed_me?,
                })
            })
            .collect();
        observations.sort_by_key(|o| o.observer);
        let class = classify(self.addr.udp_addr(), &observations, self.reach.udp_blocked);
        Reachability {
            class,
            dialable: self.dialable,
            observations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(observer: u8, from: &str, observed: &str) -> Observation {
        Observation {
            observer: NodeId::from_key(
                &ed25519_dalek::SigningKey::from_bytes(&[observer; 32]).verifying_key(),
            ),
            observer_addr: from.parse().unwrap(),
            observed: observed.parse().unwrap(),
        }
    }

    #[test]
    fn two_observers_decide_the_class() {
        let local: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        let a = |o: &str| obs(1, "203.0.113.1:5000", o);
        let b = |o: &str| obs(2, "203.0.113.2:5000", o);
        let class = |list: &[Observation]| classify(local, list, false);
        assert_eq!(
            class(&[a("192.0.2.10:4000"), b("192.0.2.10:4000")]),
            NatClass::Public
        );
        assert_eq!(
            class(&[a("203.0.113.9:4000"), b("203.0.113.9:4000")]),
            NatClass::NatStablePort
        );
        assert_eq!(
            class(&[a("203.0.113.9:4000"), b("203.0.113.9:61234")]),
            NatClass::NatPerDestination
        );
        assert_eq!(class(&[a("203.0.113.9:4000")]), NatClass::Unknown);
        // Two neighbours behind one address are one observer.
        let a2 = obs(3, "203.0.113.1:5001", "203.0.113.9:4000");
        assert_eq!(class(&[a("203.0.113.9:4000"), a2]), NatClass::Unknown);
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(
            classify(
                any,
                &[a("198.51.100.4:4000"), b("198.51.100.4:4000")],
                false
            ),
            NatClass::Public
        );
    }

    #[test]
    fn with_no_observer_only_blocked_udp_decides() {
        let local: SocketAddr = "192.0.2.10:4000".parse().unwrap();
        assert_eq!(classify(local, &[], false), NatClass::Unknown);
        assert_eq!(classify(local, &[], true), NatClass::UdpBlocked);
    }
}
