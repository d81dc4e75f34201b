//! The overlay as a graph, for measuring it: components, degrees, path lengths.
//!
//! A link counts only when both ends list each other: a half-link (one side dropped it,
//! or restarted) carries no query, so it connects nothing. Built in O(n + links) from the
//! hosts' neighbour lists, as a compressed adjacency list.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{HostId, Sim};

const ABSENT: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct Graph {
    /// The hosts in the graph, in id order; node `i` is `hosts[i]`.
    pub hosts: Vec<HostId>,
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

/// The connected components of a graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Components {
    pub count: usize,
    /// Nodes in the largest component.
    pub largest: usize,
    /// Nodes with no link at all.
    pub isolated: usize,
}

/// Shortest paths from a sample of sources in the largest component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathStats {
    pub sources: usize,
    /// Mean hop count over every (source, reachable node) pair.
    pub mean: f64,
    /// The longest shortest path found: a lower bound of the diameter.
    pub diameter: u32,
    /// Pairs at each hop count.
    pub histogram: Vec<u64>,
}

impl Graph {
    /// The overlay of the peers that are up and running (joined, not left).
    pub fn of(sim: &Sim) -> Self {
        Self::of_hosts(sim, |h| {
            sim.is_up(h) && sim.peer(h).phase() == highway_core::Phase::Running
        })
    }

    /// The overlay among the hosts `include` accepts.
    pub fn of_hosts(sim: &Sim, include: impl Fn(HostId) -> bool) -> Self {
        let mut index = vec![ABSENT; sim.host_count()];
        let hosts: Vec<HostId> = (0..sim.host_count())
            .map(HostId::from_index)
            .filter(|&h| include(h))
            .collect();
        for (i, h) in hosts.iter().enumerate() {
            index[h.index()] = i as u32;
        }
        let mut offsets = Vec::with_capacity(hosts.len() + 1);
        let mut targets = Vec::new();
        offsets.push(0);
        for &h in &hosts {
            for &(_, n) in sim.neighbours(h) {
                let j = index.get(n.index()).copied().unwrap_or(ABSENT);
                if j != ABSENT && sim.neighbours(n).iter().any(|&(_, m)| m == h) {
                    targets.push(j);
                }
            }
            offsets.push(targets.len() as u32);
        }
        Self {
            hosts,
            offsets,
            targets,
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The node of host `h`, when it is in the graph.
    pub fn index_of(&self, h: HostId) -> Option<usize> {
        // Hosts are added in id order.
        self.hosts.binary_search(&h).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn neighbours(&self, i: usize) -> &[u32] {
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn degree(&self, i: usize) -> usize {
        self.neighbours(i).len()
    }

    /// Links (each counted once).
    pub fn links(&self) -> usize {
        self.targets.len() / 2
    }

    /// Nodes per degree: `histogram[d]` nodes have degree `d`.
    pub fn degree_histogram(&self) -> Vec<u64> {
        let mut hist = Vec::new();
        for i in 0..self.len() {
            let d = self.degree(i);
            if hist.len() <= d {
                hist.resize(d + 1, 0);
            }
            hist[d] += 1;
        }
        hist
    }

    /// The component of every node (numbered from 0) and the components' sizes.
    pub fn component_labels(&self) -> (Vec<u32>, Vec<usize>) {
        let mut label = vec![ABSENT; self.len()];
        let mut sizes = Vec::new();
        let mut stack = Vec::new();
        for start in 0..self.len() {
            if label[start] != ABSENT {
                continue;
            }
            let c = sizes.len() as u32;
            label[start] = c;
            stack.push(start as u32);
            let mut size = 0;
            while let Some(i) = stack.pop() {
                size += 1;
                for &j in self.neighbours(i as usize) {
                    if label[j as usize] == ABSENT {
                        label[j as usize] = c;
                        stack.push(j);
                    }
                }
            }
            sizes.push(size);
        }
        (label, sizes)
    }

    pub fn components(&self) -> Components {
        let (_, sizes) = self.component_labels();
        Components {
            count: sizes.len(),
            largest: sizes.iter().copied().max().unwrap_or(0),
            isolated: (0..self.len()).filter(|&i| self.degree(i) == 0).count(),
        }
    }

    /// Hop counts from `source` (`u32::MAX`: unreachable).
    pub fn distances(&self, source: usize) -> Vec<u32> {
        let mut dist = vec![ABSENT; self.len()];
        let mut queue = std::collections::VecDeque::new();
        dist[source] = 0;
        queue.push_back(source as u32);
        while let Some(i) = queue.pop_front() {
            let d = dist[i as usize] + 1;
            for &j in self.neighbours(i as usize) {
                if dist[j as usize] == ABSENT {
                    dist[j as usize] = d;
                    queue.push_back(j);
                }
            }
        }
        dist
    }

    /// Breadth-first searches from `sources` random nodes of the largest component, plus
    /// one from the farthest node the first search found (a double sweep, which finds
    /// the diameter or comes close on graphs like these).
    pub fn sample_paths(&self, sources: usize, rng: &mut ChaCha8Rng) -> PathStats {
        let (label, sizes) = self.component_labels();
        let Some(biggest) = (0..sizes.len()).max_by_key(|&c| (sizes[c], std::cmp::Reverse(c)))
        else {
            return PathStats::default();
        };
        let mut members: Vec<usize> = (0..self.len())
            .filter(|&i| label[i] == biggest as u32)
            .collect();
        members.shuffle(rng);
        members.truncate(sources.max(1));
        let mut stats = PathStats::default();
        let mut total: u128 = 0;
        let mut pairs: u64 = 0;
        let mut extra = None;
        let mut queue = members;
        while let Some(source) = queue.pop() {
            let dist = self.distances(source);
            let mut farthest = source;
            for (i, &d) in dist.iter().enumerate() {
                if d == ABSENT || d == 0 {
                    continue;
                }
                if stats.histogram.len() <= d as usize {
                    stats.histogram.resize(d as usize + 1, 0);
                }
                stats.histogram[d as usize] += 1;
                total += u128::from(d);
                pairs += 1;
                if d > dist[farthest] || dist[farthest] == 0 {
                    farthest = i;
                }
                stats.diameter = stats.diameter.max(d);
            }
            stats.sources += 1;
            if extra.is_none() {
                extra = Some(farthest);
                queue.insert(0, farthest);
            }
        }
        stats.mean = if pairs == 0 {
            0.0
        } else {
            total as f64 / pairs as f64
        };
        stats
    }

    /// A random node, for scenario choices.
    pub fn random_node(&self, rng: &mut ChaCha8Rng) -> Option<usize> {
        (!self.is_empty()).then(|| rng.random_range(0..self.len()))
    }
}
