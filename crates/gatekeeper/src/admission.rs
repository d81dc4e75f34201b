//! Who is asking, from which network, and whether the addresses they publish are theirs.
//!
//! The source of a request is its TCP peer address. Only when that peer is a configured
//! trusted proxy is `X-Forwarded-For` read, right to left, skipping further trusted
//! proxies: the first other address is the client (a proxy appends the address it saw, so
//! whatever a client wrote itself sits further left and is never believed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use highway_wire::{AddrError, PeerAddr};

use crate::config::{ClaimedAddrs, GatekeeperConfig};

const FORWARDED_FOR: &str = "x-forwarded-for";

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses of trusted proxies: one address, or a block (`10.0.0.0/8`), as ingress
/// controllers in a cluster come and go within one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    pub ip: IpAddr,
    pub bits: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, v6) = match self.ip {
            IpAddr::V4(_) => (self.bits, 128),
            IpAddr::V6(_) => (32, self.bits),
        };
        let ip = canonical(ip);
        ip.is_ipv4() == self.ip.is_ipv4() && prefix_of(ip, v4, v6) == prefix_of(self.ip, v4, v6)
    }
}

impl From<IpAddr> for IpBlock {
    fn from(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        Self { ip, bits }
    }
}

impl std::str::FromStr for IpBlock {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not an IP address or block (10.0.0.7, 10.0.0.0/8, fd00::/8)");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let block = Self::from(canonical(ip.parse::<IpAddr>().map_err(|_| bad())?));
        match bits {
            Some(b) if b > block.bits => Err(bad()),
            Some(b) => Ok(Self { bits: b, ..block }),
            None => Ok(block),
        }
    }
}

/// The client's IP: the TCP peer, or what a trusted proxy says it saw.
pub fn source_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Right to left: each trusted proxy appended the address it saw. A hop that does not
    // parse ends the walk, since nothing left of it was written by a proxy we trust; then
    // the proxy itself is all we know.
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>().map(canonical) {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer
}

/// The network `ip` counts toward: its first `v4`/`v6` bits, as text (`203.0.113.0/24`).
pub fn prefix_of(ip: IpAddr, v4: u8, v6: u8) -> String {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let bits = u32::from(v4.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            format!("{}/{bits}", Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let bits = u32::from(v6.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            format!("{}/{bits}", Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Why a published address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("addrs: {0}")]
    Undialable(#[from] AddrError),
    #[error("addrs: {0} is this Gatekeeper's own address")]
    Own(SocketAddr),
}

/// Checks every published address: dialable ([`highway_wire::check_dialable_ip`]) and not
/// the Gatekeeper's own listen address. Answers whether the peer may be offered to others
/// as dialable: under [`ClaimedAddrs::MatchSource`] only when every address is the
/// sender's own IP. A peer behind a NAT publishes its LAN address, which differs: it is
/// registered, but as unreachable, so no one is ever sent to dial an address its owner
/// did not prove (a third party, or a LAN address that names someone else here).
pub fn check_addrs(
    addrs: &[PeerAddr],
    source: IpAddr,
    own: Option<SocketAddr>,
    config: &GatekeeperConfig,
) -> Result<bool, AddressError> {
    let mut reachable = !addrs.is_empty();
    for addr in addrs {
        addr.validate()?;
        if let Some(own) = own {
            for sa in [addr.tcp_addr(), addr.udp_addr()] {
                if is_own(sa, own) {
                    return Err(AddressError::Own(sa));
                }
            }
        }
        let claimed = canonical(addr.ip);
        let source = canonical(source);
        let allowed = match config.claimed_addrs {
            ClaimedAddrs::Any => true,
            ClaimedAddrs::MatchSource => {
                claimed == source || (claimed.is_loopback() && source.is_loopback())
            }
        };
        reachable &= allowed;
    }
    Ok(reachable)
}

/// `sa` names the listener `own`: the same address, or the same port on a loopback address
/// when the listener is bound to every address (it cannot list them all cheaply).
fn is_own(sa: SocketAddr, own: SocketAddr) -> bool {
    if sa.port() != own.port() {
        return false;
    }
    let ip = canonical(sa.ip());
    let own_ip = canonical(own.ip());
    ip == own_ip || (own_ip.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn blocks_parse_and_contain() {
        let block: IpBlock = "10.0.0.0/8".parse().unwrap();
        assert!(block.contains(ip("10.200.3.4")));
        assert!(block.contains(ip("::ffff:10.200.3.4")));
        assert!(!block.contains(ip("11.0.0.1")));
        let one: IpBlock = "fd00::7".parse().unwrap();
        assert!(one.contains(ip("fd00::7")) && !one.contains(ip("fd00::8")));
        let v6: IpBlock = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("10.0.0.1")));
        for bad in ["nginx", "10.0.0.0/33", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpBlock>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let trusted_proxy = [IpBlock::from(proxy)];
        let h = xff(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(
            source_ip(ip("203.0.113.9"), &h, &trusted_proxy),
            ip("203.0.113.9")
        );
        assert_eq!(source_ip(proxy, &h, &trusted_proxy), ip("198.51.100.7"));
        // Two trusted proxies in a row are skipped; a forged left part is never reached.
        let h = xff(&["6.6.6.6", "198.51.100.7, 10.0.0.2"]);
        let trusted = [IpBlock::from(proxy), "10.0.0.2".parse().unwrap()];
        assert_eq!(source_ip(proxy, &h, &trusted), ip("198.51.100.7"));
        // Garbage on the right: nothing to believe, the proxy itself is the source.
        let h = xff(&["198.51.100.7, junk"]);
        assert_eq!(source_ip(proxy, &h, &trusted_proxy), proxy);
        // Garbage a client wrote on the left never hides the address the proxy appended.
        let h = xff(&["1.2.3.4, junk", "198.51.100.7"]);
        assert_eq!(source_ip(proxy, &h, &trusted_proxy), ip("198.51.100.7"));
        assert_eq!(source_ip(proxy, &HeaderMap::new(), &trusted_proxy), proxy);
        assert_eq!(
            source_ip(
                ip("::ffff:10.0.0.1"),
                &xff(&["::ffff:198.51.100.7"]),
                &trusted_proxy
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn prefixes_mask_the_host_bits() {
        assert_eq!(prefix_of(ip("203.0.113.77"), 24, 48), "203.0.113.0/24");
        assert_eq!(prefix_of(ip("::ffff:203.0.113.77"), 16, 48), "203.0.0.0/16");
        assert_eq!(prefix_of(ip("2001:db8:1:2::5"), 24, 48), "2001:db8:1::/48");
        assert_eq!(prefix_of(ip("203.0.113.77"), 0, 0), "0.0.0.0/0");
        assert_eq!(prefix_of(ip("203.0.113.77"), 32, 128), "203.0.113.77/32");
    }

    #[test]
    fn claimed_addresses_must_be_dialable_not_ours_and_only_the_senders_are_reachable() {
        let config = GatekeeperConfig::default();
        let own: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        let check = |claimed: &str, port: u16, source: &str| {
            let addr = PeerAddr::new(ip(claimed), port, port + 1);
            check_addrs(&[addr], ip(source), Some(own), &config)
        };
        assert_eq!(check("127.0.0.5", 4000, "127.0.0.1"), Ok(true));
        assert_eq!(check("198.51.100.7", 4000, "198.51.100.7"), Ok(true));
        for bad in ["255.255.255.255", "169.254.169.254", "0.0.0.0", "224.0.0.1"] {
            assert!(matches!(
                check(bad, 4000, bad),
                Err(AddressError::Undialable(_))
            ));
        }
        assert!(matches!(
            check("127.0.0.1", 7700, "127.0.0.1"),
            Err(AddressError::Own(_))
        ));
        assert!(matches!(
            check("127.0.0.1", 7699, "127.0.0.1"),
            Err(AddressError::Own(_))
        ));
        // Behind a NAT (or claiming someone else's address): registered, never offered.
        assert_eq!(check("192.0.2.10", 4000, "198.51.100.7"), Ok(false));
        assert_eq!(check("127.0.0.5", 4000, "198.51.100.7"), Ok(false));
        let two = [
            PeerAddr::new(ip("198.51.100.7"), 4000, 4001),
            PeerAddr::new(ip("203.0.113.5"), 4000, 4001),
        ];
        assert_eq!(
            check_addrs(&two, ip("198.51.100.7"), Some(own), &config),
            Ok(false),
            "one unproven address makes the whole entry unreachable"
        );
        assert_eq!(
            check_addrs(&[], ip("198.51.100.7"), None, &config),
            Ok(false)
        );
        let any = GatekeeperConfig {
            claimed_addrs: ClaimedAddrs::Any,
            ..GatekeeperConfig::default()
        };
        let addr = PeerAddr::new(ip("203.0.113.5"), 4000, 4001);
        assert_eq!(
            check_addrs(&[addr], ip("198.51.100.7"), None, &any),
            Ok(true)
        );
        let all: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let addr = PeerAddr::new(ip("127.0.0.9"), 7700, 7701);
        assert!(check_addrs(&[addr], ip("127.0.0.1"), Some(all), &config).is_err());
    }
}
