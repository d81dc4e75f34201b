//! Where a peer can be reached: one IP address (v4 or v6) with a UDP port for datagrams
//! and a TCP port for handshakes and transfers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Why an address was refused. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0} is unspecified; give the address peers should dial")]
    Unspecified(IpAddr),
    #[error("{0} is a multicast address")]
    Multicast(IpAddr),
    #[error("{0} is a broadcast address")]
    Broadcast(IpAddr),
    #[error("{0} is link-local (169.254.0.0/16, fe80::/10): it names no one beyond one link")]
    LinkLocal(IpAddr),
    #[error("port 0 is not a reachable port")]
    ZeroPort,
}

/// A reachable peer address. A peer may publish several (for example one IPv4 and one IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerAddr {
    pub ip: IpAddr,
    pub udp: u16,
    pub tcp: u16,
}

impl PeerAddr {
    pub fn new(ip: IpAddr, udp: u16, tcp: u16) -> Self {
        Self { ip, udp, tcp }
    }

    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.udp)
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.tcp)
    }

    /// Checks that another peer could dial this address at all.
    pub fn validate(&self) -> Result<(), AddrError> {
        check_dialable_ip(self.ip)?;
        if self.udp == 0 || self.tcp == 0 {
            return Err(AddrError::ZeroPort);
        }
        Ok(())
    }
}

/// Checks that an IP could name one peer: not unspecified, multicast, broadcast or
/// link-local. Link-local is refused because such an address (169.254.169.254 is the cloud
/// metadata service) aims traffic at whatever sits on the dialler's own link, not at a peer.
/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
pub fn check_dialable_ip(ip: IpAddr) -> Result<(), AddrError> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_unspecified() {
        return Err(AddrError::Unspecified(ip));
    }
    if ip.is_multicast() {
        return Err(AddrError::Multicast(ip));
    }
    let link_local = match ip {
        IpAddr::V4(v4) => {
            if v4.is_broadcast() {
                return Err(AddrError::Broadcast(ip));
            }
            v4.is_link_local()
        }
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if link_local {
        return Err(AddrError::LinkLocal(ip));
    }
    Ok(())
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp={} tcp={}", self.udp_addr(), self.tcp_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_print_in_brackets() {
        let a = PeerAddr::new("::1".parse().unwrap(), 4000, 4001);
        assert_eq!(a.to_string(), "udp=[::1]:4000 tcp=[::1]:4001");
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn undialable_addresses_are_refused() {
        let unspecified = PeerAddr::new("0.0.0.0".parse().unwrap(), 1, 2);
        assert!(matches!(
            unspecified.validate(),
            Err(AddrError::Unspecified(_))
        ));
        for (ip, want) in [
            ("255.255.255.255", "broadcast"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::", "unspecified"),
            ("ff02::1", "multicast"),
        ] {
            let err = PeerAddr::new(ip.parse().unwrap(), 1, 2)
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains(want), "{ip}: {err}");
        }
        let multicast = PeerAddr::new("224.0.0.1".parse().unwrap(), 1, 2);
        assert!(matches!(multicast.validate(), Err(AddrError::Multicast(_))));
        let zero = PeerAddr::new("127.0.0.1".parse().unwrap(), 0, 2);
        assert_eq!(zero.validate(), Err(AddrError::ZeroPort));
    }

    #[test]
    fn json_shape_is_ip_udp_tcp() {
        let a = PeerAddr::new("127.0.0.2".parse().unwrap(), 4000, 4001);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"ip":"127.0.0.2","udp":4000,"tcp":4001}"#);
    }
}
