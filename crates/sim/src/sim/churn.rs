//! Churn: peers arrive as a Poisson process and stay for an exponentially distributed
//! session, then leave gracefully or crash. Arrivals are drawn by the coordinator (a new
//! host belongs to no shard yet); a departure is drawn and carried out by the shard of
//! the peer that departs.

use std::time::Duration;

use rand::Rng;

use super::shard::{Action, Shard};
use super::world::World;
use crate::HostId;
use crate::clock::SimTime;

/// How peers come and go.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnParams {
    /// Mean arrivals per second.
    pub arrivals_per_sec: f64,
    /// Median session length (sessions are exponentially distributed).
    pub median_session: Duration,
    /// Fraction of departures that leave gracefully; the others crash.
    pub graceful: f64,
}

impl ChurnParams {
    /// Arrivals that keep `population` peers on average. By Little's law the population
    /// is the arrival rate times the mean session, and an exponential session's mean is
    /// its median / ln 2.
    pub fn steady(population: usize, median_session: Duration, graceful: f64) -> Self {
        let mean = median_session.as_secs_f64() / std::f64::consts::LN_2;
        Self {
            arrivals_per_sec: population as f64 / mean,
            median_session,
            graceful,
        }
    }

    fn mean_session_secs(&self) -> f64 {
        self.median_session.as_secs_f64() / std::f64::consts::LN_2
    }
}

/// An exponentially distributed duration with the given mean.
pub(super) fn exponential(rng: &mut impl Rng, mean_secs: f64) -> Duration {
    let u: f64 = rng.random();
    Duration::from_secs_f64(-(1.0 - u).ln() * mean_secs)
}

/// When the session of a peer arriving at `now` ends.
pub(super) fn session_end(params: &ChurnParams, rng: &mut impl Rng, now: SimTime) -> SimTime {
    now + exponential(rng, params.mean_session_secs())
}

/// The gap to the next arrival.
pub(super) fn next_arrival(params: &ChurnParams, rng: &mut impl Rng) -> Duration {
    exponential(rng, 1.0 / params.arrivals_per_sec)
}

impl Shard {
    pub(super) fn schedule_departure(&mut self, h: HostId, at: SimTime) {
        let epoch = self.host(h).epoch;
        self.agenda.push(at, Action::Departure { host: h, epoch });
    }

    pub(super) fn departure(&mut self, world: &World, h: HostId, epoch: u32) {
        let Some(params) = &world.churn else {
            return;
        };
        if !self.current(h, epoch) {
            return;
        }
        if self.rng.random::<f64>() < params.graceful {
            self.leave(world, h);
        } else {
            self.crash(h);
        }
    }
}
