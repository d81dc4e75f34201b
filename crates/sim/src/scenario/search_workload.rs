//! Searches as a [`Workload`] for the churn scenario: search success over time while
//! peers come and go.
//!
//! Every tick it places a few new files, each on its own random `held_by` share of the
//! peers running at that moment, and searches for each once its keyword summaries have
//! had time to spread, from a random running peer that does not hold it, at the default
//! TTL. A search succeeds when it finds at least one holder; holders that left in the
//! meantime are what churn costs.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use highway_core::{Event, SearchRequest};
use highway_wire::peer::{QueryId, QueryTarget};
use rand::Rng;
use rand::seq::index::sample;

use crate::scenario::shelves::{Shelves, keyword};
use crate::scenario::{Summary, Workload, running};
use crate::{HostId, Sim, SimTime};

#[derive(Debug)]
pub struct SearchWorkload {
    /// Share of the running peers holding each file.
    pub held_by: f64,
    /// Files placed (and searched for) per tick.
    pub per_tick: usize,
    pub tick_every: Duration,
    /// From placing a file to searching for it.
    pub spread_time: Duration,
    pub timeout: Duration,
    shelves: Shelves,
    next_file: usize,
    /// Searches waiting for their files' summaries to spread: (due, keyword, holders).
    due: VecDeque<(SimTime, String, Vec<HostId>)>,
    live: HashMap<(HostId, QueryId), (SimTime, bool)>,
    // This sampling interval's figures.
    ended: usize,
    found: usize,
    first_hit_ms: Vec<f64>,
}

impl SearchWorkload {
    /// Files held by 1% of the peers, 2 searches a second.
    pub fn new() -> Self {
        Self {
            held_by: 0.01,
            per_tick: 4,
            tick_every: Duration::from_secs(2),
            spread_time: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            shelves: Shelves::default(),
            next_file: 0,
            due: VecDeque::new(),
            live: HashMap::new(),
            ended: 0,
            found: 0,
            first_hit_ms: Vec::new(),
        }
    }

    fn place(&mut self, sim: &mut Sim) {
        let up: Vec<HostId> = sim.hosts_up().filter(|&h| running(sim, h)).collect();
        if up.len() < 2 {
            return;
        }
        let holders = ((self.held_by * up.len() as f64).round() as usize).clamp(1, up.len() - 1);
        let mut touched = Vec::new();
        for _ in 0..self.per_tick {
            let word = keyword(self.next_file);
            self.next_file += 1;
            let chosen: Vec<HostId> = sample(sim.rng(), up.len(), holders)
                .iter()
                .map(|i| up[i])
                .collect();
            for &h in &chosen {
                self.shelves.add(h, &word);
            }
            touched.extend(chosen.iter().copied());
            self.due
                .push_back((sim.now() + self.spread_time, word, chosen));
        }
        touched.sort_unstable();
        touched.dedup();
        for h in touched {
            self.shelves.publish(sim, h);
        }
    }

    fn start_due(&mut self, sim: &mut Sim) {
        let up: Vec<HostId> = sim.hosts_up().filter(|&h| running(sim, h)).collect();
        while self.due.front().is_some_and(|(at, _, _)| *at <= sim.now()) {
            let Some((_, word, holders)) = self.due.pop_front() else {
                break;
            };
            let searcher = (0..16)
                .map(|_| up[sim.rng().random_range(0..up.len())])
                .find(|h| !holders.contains(h));
            let Some(searcher) = searcher else {
                continue;
            };
            let request = SearchRequest {
                target: QueryTarget::Keywords(word),
                ttl: None,
                timeout: self.timeout,
                max_results: 50,
            };
            let started = sim.now();
            if let Some(Ok(id)) =
                sim.with_peer(searcher, |peer, now| peer.start_search(now, request))
            {
                self.live.insert((searcher, id), (started, false));
            }
        }
    }

    fn absorb(&mut self, sim: &mut Sim) {
        for e in sim.drain_app_events() {
            match e.event {
                Event::SearchHits { id, hits } if !hits.is_empty() => {
                    if let Some((started, hit)) = self.live.get_mut(&(e.host, id))
                        && !*hit
                    {
                        *hit = true;
                        self.first_hit_ms
                            .push(e.at.since(*started).as_secs_f64() * 1e3);
                    }
                }
                Event::SearchDone { id, .. } => {
                    if let Some((_, hit)) = self.live.remove(&(e.host, id)) {
                        self.ended += 1;
                        self.found += usize::from(hit);
                    }
                }
                _ => {}
            }
        }
    }
}

impl Default for SearchWorkload {
    fn default() -> Self {
        Self::new()
    }
}

impl Workload for SearchWorkload {
    fn columns(&self) -> Vec<String> {
        vec![
            "search success (%)".into(),
            "searches ended".into(),
            "first hit median (ms)".into(),
        ]
    }

    fn tick_every(&self) -> Duration {
        self.tick_every
    }

    fn tick(&mut self, sim: &mut Sim) {
        self.absorb(sim);
        // A searcher that crashed never reports its end: forget it after its timeout.
        let stale = sim.now();
        let timeout = self.timeout + Duration::from_secs(5);
        self.live
            .retain(|_, (started, _)| *started + timeout > stale);
        self.start_due(sim);
        self.place(sim);
    }

    fn sample(&mut self) -> Vec<f64> {
        let success = if self.ended == 0 {
            0.0
        } else {
            self.found as f64 / self.ended as f64 * 100.0
        };
        let first = Summary::of(&self.first_hit_ms).median;
        let out = vec![success, self.ended as f64, first];
        self.ended = 0;
        self.found = 0;
        self.first_hit_ms.clear();
        out
    }
}
