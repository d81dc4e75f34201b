//! Gatekeeper configuration: one plain struct, validated once.

use std::time::Duration;

use crate::admission::IpBlock;

/// Timers and limits of the registry. Every replica of one deployment must use the same
/// values, because they all judge the same entries.
#[derive(Debug, Clone, PartialEq)]
pub struct GatekeeperConfig {
    /// How often peers are told to send a status.
    pub status_interval: Duration,
    /// Missed statuses after which an entry expires.
    pub missed_statuses: u32,
    /// Lifetime of a lease token; a signed status renews it.
    pub lease_ttl: Duration,
    /// How far a signed request's timestamp may be from the Gatekeeper's clock.
    pub max_clock_skew: Duration,
    /// How long a reported peer keeps its entry without sending a status.
    pub report_grace: Duration,
    /// How often expired entries are purged.
    pub sweep_interval: Duration,
    /// Share of each join answer drawn at random from all live peers (the rest are the
    /// least loaded). Random links are the shortcuts that keep the overlay's
    /// paths short; least-loaded ones keep newcomers from staying alone (docs/SCALE.md).
    pub random_candidates: f64,
    /// Distinct reporters (each a mutual neighbour of the target) needed within the report
    /// window before a live peer is hidden from join answers.
    pub report_quorum: u32,
    /// Most live registrations from one network (see `ipv4_prefix`, `ipv6_prefix`).
    pub max_peers_per_prefix: u32,
    /// Most joins from one network per [`JOIN_WINDOW`].
    pub max_joins_per_prefix: u32,
    /// Length of the IPv4 prefix that counts as one network (24: a /24).
    pub ipv4_prefix: u8,
    /// Length of the IPv6 prefix that counts as one network (48: a /48).
    pub ipv6_prefix: u8,
    /// Proxies (addresses or blocks) whose `X-Forwarded-For` header is believed; for
    /// everyone else the source of a request is the TCP peer address.
    pub trusted_proxies: Vec<IpBlock>,
    /// Which claimed addresses a join or status may publish.
    pub claimed_addrs: ClaimedAddrs,
}

/// Which addresses a peer may publish, beyond being dialable and not the Gatekeeper's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimedAddrs {
    /// Every published IP must be the request's source IP (behind a trusted proxy: the
    /// client's, from `X-Forwarded-For`), or loopback when the source is loopback too. A
    /// peer cannot aim other peers at a bystander.
    #[default]
    MatchSource,
    /// Any dialable address (for deployments where peers reach the Gatekeeper through
    /// address translation and publish addresses it cannot see).
    Any,
}

impl std::str::FromStr for ClaimedAddrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "match-source" => Ok(Self::MatchSource),
            "any" => Ok(Self::Any),
            other => Err(format!(
                "{other:?} is not a claimed-address rule; use match-source or any"
            )),
        }
    }
}

/// Window of the per-network join limit ([`GatekeeperConfig::max_joins_per_prefix`]).
pub const JOIN_WINDOW: Duration = Duration::from_secs(60);
/// Most reports one peer may send per status interval (and at most one per target).
pub const REPORTS_PER_INTERVAL: u32 = 8;
/// Largest report quorum accepted (a target keeps at most this many recent reporters).
pub const MAX_REPORT_QUORUM: u32 = 16;

impl Default for GatekeeperConfig {
    fn default() -> Self {
        Self {
            status_interval: Duration::from_secs(5),
            missed_statuses: 3,
            lease_ttl: Duration::from_secs(600),
            max_clock_skew: Duration::from_secs(30),
            report_grace: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(1),
            random_candidates: 0.5,
            report_quorum: 2,
            // Live registrations, not joins: 20-40 node tests on 127.0.0.1 stay far below.
            max_peers_per_prefix: 256,
            max_joins_per_prefix: 600,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            trusted_proxies: Vec::new(),
            claimed_addrs: ClaimedAddrs::MatchSource,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("status interval must be at least 10ms, got {0:?}")]
    StatusInterval(Duration),
    #[error("missed statuses must be at least 1")]
    MissedStatuses,
    #[error("lease ttl ({lease:?}) must be longer than the status interval ({interval:?})")]
    LeaseTtl { lease: Duration, interval: Duration },
    #[error("sweep interval must be at least 10ms, got {0:?}")]
    SweepInterval(Duration),
    #[error("the random share of candidates must be between 0 and 1, got {0}")]
    RandomCandidates(f64),
    #[error("the report quorum must be between 1 and {MAX_REPORT_QUORUM}, got {0}")]
    ReportQuorum(u32),
    #[error("{what} must be at least 1")]
    ZeroLimit { what: &'static str },
    #[error("prefix lengths must be at most 32 (IPv4) and 128 (IPv6), got /{v4} and /{v6}")]
    PrefixLength { v4: u8, v6: u8 },
}

impl GatekeeperConfig {
    /// Short timers for tests: status every 100 ms, expiry after 300 ms.
    pub fn test() -> Self {
        Self {
            status_interval: Duration::from_millis(100),
            missed_statuses: 3,
            lease_ttl: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(30),
            report_grace: Duration::from_millis(250),
            sweep_interval: Duration::from_millis(50),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.status_interval < Duration::from_millis(10) {
            return Err(ConfigError::StatusInterval(self.status_interval));
        }
        if self.missed_statuses == 0 {
            return Err(ConfigError::MissedStatuses);
        }
        if self.lease_ttl <= self.status_interval {
            return Err(ConfigError::LeaseTtl {
                lease: self.lease_ttl,
                interval: self.status_interval,
            });
        }
        if self.sweep_interval < Duration::from_millis(10) {
            return Err(ConfigError::SweepInterval(self.sweep_interval));
        }
        if !(0.0..=1.0).contains(&self.random_candidates) {
            return Err(ConfigError::RandomCandidates(self.random_candidates));
        }
        if !(1..=MAX_REPORT_QUORUM).contains(&self.report_quorum) {
            return Err(ConfigError::ReportQuorum(self.report_quorum));
        }
        if self.max_peers_per_prefix == 0 {
            return Err(ConfigError::ZeroLimit {
                what: "max peers per prefix",
            });
        }
        if self.max_joins_per_prefix == 0 {
            return Err(ConfigError::ZeroLimit {
                what: "max joins per prefix",
            });
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err(ConfigError::PrefixLength {
                v4: self.ipv4_prefix,
                v6: self.ipv6_prefix,
            });
        }
        Ok(())
    }

    /// Time without a status after which an entry expires.
    pub fn expires_after(&self) -> Duration {
        self.status_interval * self.missed_statuses
    }

    /// How long a signed request's timestamp is remembered after its entry is gone, so
    /// the request cannot be replayed while it would still look fresh.
    pub fn tombstone_ttl(&self) -> Duration {
        self.max_clock_skew * 2
    }

    /// How long a report counts toward the quorum: one expiry window, after which a peer
    /// that really died is gone anyway.
    pub fn report_window(&self) -> Duration {
        self.expires_after()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_expiry_is_interval_times_misses() {
        assert_eq!(GatekeeperConfig::default().validate(), Ok(()));
        assert_eq!(GatekeeperConfig::test().validate(), Ok(()));
        assert_eq!(
            GatekeeperConfig::default().expires_after(),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn nonsense_is_refused() {
        let mut c = GatekeeperConfig {
            missed_statuses: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::MissedStatuses));
        c = GatekeeperConfig {
            lease_ttl: Duration::from_secs(1),
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::LeaseTtl { .. })));
        for share in [-0.1, 1.5, f64::NAN] {
            c = GatekeeperConfig {
                random_candidates: share,
                ..Default::default()
            };
            assert!(matches!(
                c.validate(),
                Err(ConfigError::RandomCandidates(_))
            ));
        }
    }
}
