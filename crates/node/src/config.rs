//! What a node is told at start: where to bind, whom to ask, where to keep its key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use highway_share::transfer::MIN_RATE;

use crate::NodeError;

/// Everything [`crate::start`] needs. Build it with [`NodeConfig::new`], adjust
/// fields, and let `start` validate it.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The address the UDP socket and the TCP listener bind, and the one published to
    /// other peers. Unspecified (0.0.0.0, ::): every address, publishing the one this host
    /// uses toward the Gatekeeper. Distinct loopback addresses (127.0.0.2, 127.0.0.3, ...)
    /// let many peers share one machine.
    pub bind: IpAddr,
    /// UDP port for datagrams; 0 lets the OS choose.
    pub udp_port: u16,
    /// TCP port for handshakes; 0 lets the OS choose.
    pub tcp_port: u16,
    /// The Gatekeeper's base URL, e.g. `http://127.0.0.1:7700` or `https://gk.example`.
    pub gatekeeper: String,
    /// For an `https://` Gatekeeper with a private CA: the PEM file of the certificates
    /// to trust instead of the system's roots.
    pub gatekeeper_ca: Option<PathBuf>,
    /// Holds `identity.key`; created if missing.
    pub data_dir: PathBuf,
    /// Where the control API listens. Must be a loopback address: besides its bearer
    /// token, the API relies on only local processes reaching it.
    pub control: SocketAddr,
    /// Where the control token is written (mode 0600). `None`: the default place the
    /// CLI looks, keyed by the control address ([`crate::token::default_path`]).
    pub token_file: Option<PathBuf>,
    /// Serve `GET /metrics` without the token (counters only), for a Prometheus that
    /// cannot read the node user's token file.
    pub open_metrics: bool,
    /// Protocol timers and degrees. The capacity announced to the Gatekeeper is
    /// `core.max_degree`.
    pub core: highway_core::Config,
    /// The folder to share, if any. `POST /v1/share` may switch back to it later.
    pub share: Option<PathBuf>,
    /// Folders `POST /v1/share` may share, with everything below them (besides `share`).
    pub share_roots: Vec<PathBuf>,
    /// TCP port of the file server (HTTP/1.1, on `bind`); 0 lets the OS choose.
    pub http_port: u16,
    /// Where downloads with a relative `out` path go, and (unless
    /// `allow_download_anywhere`) the only folder, with its subfolders, downloads may go.
    pub download_dir: PathBuf,
    /// Let `POST /v1/downloads` write anywhere the node's user may write.
    pub allow_download_anywhere: bool,
    /// Short share timers (rescans every 2 s, 50 ms debounce) for tests.
    pub fast_share: bool,
    /// Cap on the bytes per second the file server sends, all transfers together.
    /// `None`: no cap. At least [`MIN_RATE`](highway_share::transfer::MIN_RATE).
    pub upload_limit: Option<u64>,
    /// Cap on the bytes per second this node's downloads receive, all together.
    pub download_limit: Option<u64>,
    /// Relaying for neighbours behind NATs: on/off, circuits at once, bytes per second.
    pub relay: crate::relay::RelayConfig,
    /// The address others reach this node at, when it is not `bind` (a router that
    /// forwards the node's ports, a cloud VM's public address): published instead of
    /// `bind`, with the same ports.
    pub public_ip: Option<IpAddr>,
    /// Fault injection for tests: the fraction (0.0..=1.0) of datagrams dropped at random,
    /// both received and sent. 0 in normal use.
    pub loss: f64,
    /// Fault injection for tests: the fraction (0.0..=1.0) of file body frames the file
    /// server sends with a flipped byte, to play a corrupting holder. 0 in normal use.
    pub corrupt_uploads: f64,
}

impl NodeConfig {
    /// A node on `bind` with OS-chosen ports, default protocol settings, no loss and the
    /// control API on `127.0.0.1:0`.
    pub fn new(bind: IpAddr, gatekeeper: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind,
            udp_port: 0,
            tcp_port: 0,
            gatekeeper: gatekeeper.into(),
            gatekeeper_ca: None,
            data_dir: data_dir.into(),
            control: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            token_file: None,
            open_metrics: false,
            core: highway_core::Config::default(),
            share: None,
            share_roots: Vec::new(),
            http_port: 0,
            download_dir: PathBuf::from("."),
            allow_download_anywhere: false,
            fast_share: false,
            upload_limit: None,
            download_limit: None,
            relay: crate::relay::RelayConfig::default(),
            public_ip: None,
            loss: 0.0,
            corrupt_uploads: 0.0,
        }
    }

    /// Checks everything that can be checked without touching the network or the disk.
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.bind.is_multicast() {
            return Err(NodeError::MulticastBind(self.bind));
        }
        if !self.control.ip().is_loopback() {
            return Err(NodeError::ControlNotLoopback(self.control));
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(NodeError::Loss(self.loss));
        }
        if !(0.0..=1.0).contains(&self.corrupt_uploads) {
            return Err(NodeError::CorruptUploads(self.corrupt_uploads));
        }
        for (what, limit) in [
            ("upload", self.upload_limit),
            ("download", self.download_limit),
            ("relay", self.relay.limit),
        ] {
            if let Some(rate) = limit
                && rate < MIN_RATE
            {
                return Err(NodeError::RateTooLow { what, rate });
            }
        }
        if let Some(ip) = self.public_ip
            && highway_wire::check_dialable_ip(ip).is_err()
        {
            return Err(NodeError::PublicAddr(ip));
        }
        if self.relay.max_circuits == 0 {
            return Err(NodeError::NoRelayCircuits);
        }
        self.core.validate().map_err(NodeError::Core)?;
        Ok(())
    }

    /// The capacity announced to the Gatekeeper.
    pub fn capacity(&self) -> usize {
        self.core.max_degree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::new(
            "127.0.0.2".parse().unwrap(),
            "http://127.0.0.1:7700",
            "/tmp/x",
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn multicast_bind_addresses_are_refused() {
        for ip in ["224.0.0.1", "ff02::1"] {
            let c = NodeConfig {
                bind: ip.parse().unwrap(),
                ..config()
            };
            assert!(c.validate().is_err(), "{ip} was accepted");
        }
    }

    #[test]
    fn control_api_must_stay_on_loopback() {
        let c = NodeConfig {
            control: "0.0.0.0:7800".parse().unwrap(),
            ..config()
        };
        assert!(matches!(
            c.validate(),
            Err(NodeError::ControlNotLoopback(_))
        ));
        let v6 = NodeConfig {
            control: "[::1]:0".parse().unwrap(),
            ..config()
        };
        assert!(v6.validate().is_ok());
    }

    #[test]
    fn loss_outside_zero_to_one_and_bad_core_settings_are_refused() {
        let c = NodeConfig {
            loss: 1.5,
            ..config()
        };
        assert!(matches!(c.validate(), Err(NodeError::Loss(_))));
        let mut c = config();
        c.core.target_degree = 9;
        assert!(matches!(c.validate(), Err(NodeError::Core(_))));
    }

    #[test]
    fn rate_limits_below_the_minimum_are_refused() {
        let c = NodeConfig {
            upload_limit: Some(1000),
            ..config()
        };
        assert!(matches!(
            c.validate(),
            Err(NodeError::RateTooLow { what: "upload", .. })
        ));
        let c = NodeConfig {
            download_limit: Some(MIN_RATE - 1),
            ..config()
        };
        assert!(matches!(
            c.validate(),
            Err(NodeError::RateTooLow {
                what: "download",
                ..
            })
        ));
        let c = NodeConfig {
            upload_limit: Some(MIN_RATE),
            download_limit: Some(100 << 20),
            ..config()
        };
        assert!(c.validate().is_ok());
    }
}
