//! Churn: peers arrive as a Poisson process and stay for an exponentially distributed
//! session, then leave gracefully or crash.

use std::time::Duration;

use rand::Rng;

use super::{Action, Sim};
use crate::HostId;

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
}

/// An exponentially distributed duration with the given mean.
fn exponential(rng: &mut impl Rng, mean_secs: f64) -> Duration {
    let u: f64 = rng.random();
    Duration::from_secs_f64(-(1.0 - u).ln() * mean_secs)
}

impl Sim {
    /// Starts arrivals and honours sessions from now on.
    pub fn start_churn(&mut self, params: ChurnParams) {
        let first = exponential(&mut self.rng, 1.0 / params.arrivals_per_sec);
        self.churn = Some(params);
        self.agenda.push(self.now + first, Action::Arrival);
    }

    /// No more arrivals or departures (sessions already given are ignored).
    pub fn stop_churn(&mut self) {
        self.churn = None;
    }

    /// Gives `h` a random session starting now; it departs when the session ends.
    pub fn give_session(&mut self, h: HostId) {
        let Some(params) = &self.churn else {
            return;
        };
        let mean = params.median_session.as_secs_f64() / std::f64::consts::LN_2;
        let at = self.now + exponential(&mut self.rng, mean);
        let epoch = self.hosts[h.index()].epoch;
        self.agenda.push(at, Action::Departure { host: h, epoch });
    }

    pub(super) fn churn_arrival(&mut self) {
        let Some(params) = &self.churn else {
            return;
        };
        let gap = exponential(&mut self.rng, 1.0 / params.arrivals_per_sec);
        self.agenda.push(self.now + gap, Action::Arrival);
        let h = self.add_host();
        self.join_at(h, self.now);
        self.give_session(h);
    }

    pub(super) fn churn_departure(&mut self, h: HostId, epoch: u32) {
        let Some(params) = &self.churn else {
            return;
        };
        if !self.current(h, epoch) {
            return;
        }
        let graceful = self.rng.random::<f64>() < params.graceful;
        if graceful {
            self.leave(h);
        } else {
            self.crash(h);
        }
    }
}
