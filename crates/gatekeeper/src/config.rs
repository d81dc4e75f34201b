//! Gatekeeper configuration: one plain struct, validated once.

use std::time::Duration;

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
}

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
            random_candidates: 0.5,
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
