//! Virtual time. The simulator counts microseconds from the start of a run; the core wants
//! `Instant`s, so a [`Clock`] maps one onto the other from a fixed base. Only differences
//! between instants ever reach a result, so the base (read once from the OS) cannot make
//! two runs differ.

use std::fmt;
use std::ops::Add;
use std::time::{Duration, Instant};

/// An instant of virtual time: microseconds since the start of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: Self = Self(0);

    pub fn from_micros(us: u64) -> Self {
        Self(us)
    }

    pub fn from_millis(ms: u64) -> Self {
        Self(ms * 1_000)
    }

    pub fn from_secs(s: u64) -> Self {
        Self(s * 1_000_000)
    }

    /// The instant `d` after the start of the run.
    pub fn at(d: Duration) -> Self {
        Self(micros(d))
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Time since the start of the run.
    pub fn since_start(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// Whole microseconds in `d`, rounded up so a wake-up never comes before its deadline.
fn micros(d: Duration) -> u64 {
    let us = d.as_nanos().div_ceil(1_000);
    u64::try_from(us).unwrap_or(u64::MAX)
}

impl Add<Duration> for SimTime {
    type Output = SimTime;

    fn add(self, d: Duration) -> SimTime {
        SimTime(self.0.saturating_add(micros(d)))
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1_000_000, (self.0 / 1_000) % 1_000)
    }
}

/// Maps virtual time to the `Instant`s the core takes, and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    pub fn instant(&self, t: SimTime) -> Instant {
        self.base + Duration::from_micros(t.0)
    }

    /// The virtual time of `at`, rounded up to the next microsecond.
    pub fn sim_time(&self, at: Instant) -> SimTime {
        SimTime(micros(at.saturating_duration_since(self.base)))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_and_round_up() {
        let clock = Clock::new();
        let t = SimTime::from_millis(1_500);
        assert_eq!(clock.sim_time(clock.instant(t)), t);
        let just_after = clock.instant(t) + Duration::from_nanos(1);
        assert_eq!(clock.sim_time(just_after), SimTime::from_micros(1_500_001));
    }

    #[test]
    fn display_is_seconds_with_milliseconds() {
        assert_eq!(SimTime::from_micros(61_234_999).to_string(), "61.234s");
    }
}
