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
        if self.ip.is_unspecified() {
            return Err(AddrError::Unspecified(self.ip));
        }
        if self.ip.is_multicast() {
            return Err(AddrError::Multicast(self.ip));
        }
        if self.udp == 0 || self.tcp == 0 {
            return Err(AddrError::ZeroPort);
        }
        Ok(())
    }
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
