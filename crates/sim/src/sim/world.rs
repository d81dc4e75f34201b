//! What every shard reads and none changes while a window runs: the network, the
//! configurations, and the switches a scenario sets between steps.

use highway_core::Config;
use highway_gatekeeper::GatekeeperConfig;

use super::churn::ChurnParams;
use crate::clock::Clock;
use crate::network::Network;

#[derive(Debug)]
pub(crate) struct World {
    pub clock: Clock,
    pub net: Network,
    /// Every peer's protocol configuration.
    pub core: Config,
    pub gatekeeper: GatekeeperConfig,
    /// False while the Gatekeeper is down.
    pub gatekeeper_up: bool,
    /// Record membership changes for [`super::Sim::drain_membership`].
    pub recording: bool,
    pub churn: Option<ChurnParams>,
    /// The configuration of hosts that can be dialled (`core` with their max degree).
    pub public_core: Config,
    /// Fraction of new hosts put behind a NAT.
    pub nat: f64,
    /// Per host: behind a NAT (it cannot be dialled; see `nat.rs`).
    pub behind_nat: Vec<bool>,
}

impl World {
    pub fn is_behind_nat(&self, h: crate::HostId) -> bool {
        self.behind_nat.get(h.index()).copied().unwrap_or(false)
    }
}
