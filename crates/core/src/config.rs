//! Protocol timers and bounds: one plain struct, validated once.

use std::time::Duration;

use highway_wire::peer::message::MAX_HEARTBEAT_NEIGHBOURS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A peer below this many neighbours keeps looking for more.
    pub target_degree: usize,
    /// A peer never has more neighbours than this (the original's was 5).
    pub max_degree: usize,
    pub heartbeat_interval: Duration,
    /// Nothing heard from a neighbour for this long: it becomes WARNING and is probed.
    pub suspect_timeout: Duration,
    /// A WARNING neighbour no witness vouched for within this long is FAILED.
    pub probe_timeout: Duration,
    /// Witnesses asked to probe a suspect (SWIM's k).
    pub witnesses: usize,
    /// Most peers tried in one breadth-first search past full candidates.
    pub bfs_limit: usize,
    /// First wait before asking the Gatekeeper again; doubles up to the maximum.
    pub join_backoff_min: Duration,
    pub join_backoff_max: Duration,
    /// Outbound handshakes in flight at once.
    pub max_pending_links: usize,
    /// A handshake not finished within this long is abandoned.
    pub handshake_timeout: Duration,
    /// Answers to strangers (probe acks, not-your-neighbour) per heartbeat interval.
    pub stranger_replies_per_interval: u32,
    /// Probes this peer runs as a witness for others, at once.
    pub max_witness_requests: usize,
    /// How long a peer declared failed is not dialled again.
    pub failed_quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target_degree: 3,
            max_degree: 5,
            heartbeat_interval: Duration::from_secs(1),
            suspect_timeout: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(2),
            witnesses: 3,
            bfs_limit: 16,
            join_backoff_min: Duration::from_millis(500),
            join_backoff_max: Duration::from_secs(30),
            max_pending_links: 4,
            handshake_timeout: Duration::from_secs(5),
            stranger_replies_per_interval: 32,
            max_witness_requests: 64,
            failed_quarantine: Duration::from_secs(30),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("target degree {target} must be between 1 and the maximum degree {max}")]
    Degree { target: usize, max: usize },
    #[error("maximum degree {0} exceeds the {MAX_HEARTBEAT_NEIGHBOURS} a heartbeat can list")]
    MaxDegree(usize),
    #[error("suspect timeout ({suspect:?}) must exceed the heartbeat interval ({interval:?})")]
    SuspectTimeout {
        suspect: Duration,
        interval: Duration,
    },
    #[error("{0} must not be zero")]
    Zero(&'static str),
}

impl Config {
    /// Timers shrunk for tests: heartbeats every 100 ms, suspicion after 500 ms.
    pub fn test() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            suspect_timeout: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(400),
            join_backoff_min: Duration::from_millis(100),
            join_backoff_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            failed_quarantine: Duration::from_secs(3),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.target_degree == 0 || self.target_degree > self.max_degree {
            return Err(ConfigError::Degree {
                target: self.target_degree,
                max: self.max_degree,
            });
        }
        if self.max_degree > MAX_HEARTBEAT_NEIGHBOURS {
            return Err(ConfigError::MaxDegree(self.max_degree));
        }
        if self.suspect_timeout <= self.heartbeat_interval {
            return Err(ConfigError::SuspectTimeout {
                suspect: self.suspect_timeout,
                interval: self.heartbeat_interval,
            });
        }
        for (name, zero) in [
            ("heartbeat interval", self.heartbeat_interval.is_zero()),
            ("probe timeout", self.probe_timeout.is_zero()),
            ("max pending links", self.max_pending_links == 0),
            ("handshake timeout", self.handshake_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}
