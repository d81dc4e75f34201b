//! The overlay's degree and failure-detector flags, shared by `highway node` and
//! `highway sim` so both name and apply them the same way.

use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct OverlayFlags {
    /// Neighbours a peer looks for [default: 3].
    #[arg(long, value_name = "N")]
    target_degree: Option<usize>,
    /// Most neighbours that can be dialled a peer accepts [default: 5].
    #[arg(long, value_name = "N")]
    max_degree: Option<usize>,
    /// Neighbours behind NATs a peer accepts on top of --max-degree (they dial in) [default: 8].
    #[arg(long, value_name = "N")]
    undialable_slots: Option<usize>,
    /// Heartbeat period [default: 1s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Silence after which a neighbour is suspected and probed [default: 3s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    suspect_timeout: Option<Duration>,
    /// Time a suspected neighbour has to answer a probe before it is failed [default: 2s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    probe_timeout: Option<Duration>,
}

impl OverlayFlags {
    /// Overrides in `core` what was given on the command line.
    pub fn apply(&self, core: &mut highway_core::Config) {
        if let Some(n) = self.target_degree {
            core.target_degree = n;
        }
        if let Some(n) = self.max_degree {
            core.max_degree = n;
        }
        if let Some(n) = self.undialable_slots {
            core.undialable_slots = n;
        }
        if let Some(d) = self.heartbeat_interval {
            core.heartbeat_interval = d;
        }
        if let Some(d) = self.suspect_timeout {
            core.suspect_timeout = d;
        }
        if let Some(d) = self.probe_timeout {
            core.probe_timeout = d;
        }
    }
}
