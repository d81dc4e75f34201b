//! The modelled network: where each host sits (so how long a datagram takes), what is
//! lost at random, and which directions a partition cuts.
//!
//! Each host gets a random point in a unit square and a random access delay; the one-way
//! delay between two hosts is both access delays plus the distance times the span, plus
//! up to `jitter` of that per datagram. So delays obey the triangle inequality, differ per
//! link, and nothing is stored per pair (which would cost O(n²)). The Gatekeeper sits in
//! the middle of the square.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use highway_wire::PeerAddr;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::HostId;

/// Every simulated peer uses these ports on its own address.
pub const UDP_PORT: u16 = 7000;
pub const TCP_PORT: u16 = 7001;
/// Host `i` is 10.0.0.0 + i + 1: room for 16 million hosts, and the address alone says
/// which host a datagram is for, without a lookup table.
const FIRST_ADDR: u32 = 10 << 24;

/// The address of host `h`.
pub fn addr_of(h: HostId) -> PeerAddr {
    let ip = Ipv4Addr::from(FIRST_ADDR + h.0 + 1);
    PeerAddr::new(IpAddr::V4(ip), UDP_PORT, TCP_PORT)
}

/// The host an address belongs to, if it is a simulated host's `port`.
pub fn host_at(addr: SocketAddr, port: u16) -> Option<HostId> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    if v4.port() != port {
        return None;
    }
    let n = u32::from(*v4.ip()).checked_sub(FIRST_ADDR + 1)?;
    (n < (1 << 24)).then_some(HostId(n))
}

/// How long datagrams take.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    /// One-way delay across one side of the map.
    pub span: Duration,
    /// Mean of each host's access delay (exponentially distributed), paid at both ends.
    pub access_mean: Duration,
    /// Each datagram takes up to this fraction longer than its link's delay, at random
    /// (so datagrams can overtake each other).
    pub jitter: f64,
    /// No delay is shorter. This is also how far apart in virtual time two parts of the
    /// simulation can run without hearing from each other (the lookahead of its
    /// parallel windows): a larger floor means fewer, larger windows.
    pub floor: Duration,
}

impl LatencyModel {
    /// Peers spread over a continent: one-way delays of about 10–150 ms, median ≈ 60 ms.
    pub fn wan() -> Self {
        Self {
            span: Duration::from_millis(100),
            access_mean: Duration::from_millis(5),
            jitter: 0.1,
            floor: Duration::from_millis(5),
        }
    }

    /// One data centre: about 0.2 ms one way.
    pub fn lan() -> Self {
        Self {
            span: Duration::ZERO,
            access_mean: Duration::from_micros(100),
            jitter: 0.1,
            floor: Duration::from_micros(50),
        }
    }
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self::wan()
    }
}

/// Where a host sits, and which side of a partition it is on.
#[derive(Debug, Clone, Copy)]
struct Place {
    x: f32,
    y: f32,
    access_us: u32,
    group: u16,
}

/// The Gatekeeper's group: a host in a group cut off from this one cannot reach it.
pub const GATEKEEPER_GROUP: u16 = 0;

#[derive(Debug)]
pub(crate) struct Network {
    model: LatencyModel,
    places: Vec<Place>,
    gatekeeper: Place,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Directed cuts between groups: nothing from `.0` reaches `.1`.
    cuts: BTreeSet<(u16, u16)>,
}

impl Network {
    pub fn new(model: LatencyModel) -> Self {
        Self {
            model,
            places: Vec::new(),
            gatekeeper: Place {
                x: 0.5,
                y: 0.5,
                access_us: 500,
                group: GATEKEEPER_GROUP,
            },
            loss: 0.0,
            cuts: BTreeSet::new(),
        }
    }

    /// Places a new host at random; it starts in the Gatekeeper's group.
    pub fn add_host(&mut self, rng: &mut ChaCha8Rng) {
        let u: f64 = rng.random();
        let access = -(1.0 - u).ln() * self.model.access_mean.as_micros() as f64;
        self.places.push(Place {
            x: rng.random(),
            y: rng.random(),
            access_us: access.min(f64::from(u32::MAX)) as u32,
            group: GATEKEEPER_GROUP,
        });
    }

    fn delay(&self, a: &Place, b: &Place, rng: &mut ChaCha8Rng) -> Duration {
        let dx = f64::from(a.x - b.x);
        let dy = f64::from(a.y - b.y);
        let distance = (dx * dx + dy * dy).sqrt();
        let base = f64::from(a.access_us)
            + f64::from(b.access_us)
            + distance * self.model.span.as_micros() as f64;
        let jitter = if self.model.jitter > 0.0 {
            rng.random::<f64>() * self.model.jitter
        } else {
            0.0
        };
        Duration::from_micros((base * (1.0 + jitter)) as u64).max(self.model.floor)
    }

    /// The shortest delay anything can take from one host (or the Gatekeeper) to another.
    pub fn lookahead(&self) -> Duration {
        self.model.floor.max(Duration::from_micros(1))
    }

    /// Whether host `h` has a place yet.
    pub fn knows(&self, h: HostId) -> bool {
        h.index() < self.places.len()
    }

    /// One-way delay of one datagram (or TCP segment) from `a` to `b`.
    pub fn one_way(&self, a: HostId, b: HostId, rng: &mut ChaCha8Rng) -> Duration {
        self.delay(&self.places[a.index()], &self.places[b.index()], rng)
    }

    /// One-way delay between host `h` and the Gatekeeper.
    pub fn to_gatekeeper(&self, h: HostId, rng: &mut ChaCha8Rng) -> Duration {
        self.delay(&self.places[h.index()], &self.gatekeeper, rng)
    }

    /// Whether a datagram is lost at random (drawn only when there is loss, so a run
    /// without loss does not consume the random stream for it).
    pub fn lose(&self, rng: &mut ChaCha8Rng) -> bool {
        self.loss > 0.0 && rng.random::<f64>() < self.loss
    }

    pub fn group(&self, h: HostId) -> u16 {
        self.places[h.index()].group
    }

    pub fn set_group(&mut self, h: HostId, group: u16) {
        self.places[h.index()].group = group;
    }

    /// True when nothing from `from` reaches `to`.
    pub fn cut(&self, from: HostId, to: HostId) -> bool {
        !self.cuts.is_empty() && self.cuts.contains(&(self.group(from), self.group(to)))
    }

    /// True when host `h` and the Gatekeeper cannot talk (HTTP needs both directions).
    pub fn gatekeeper_cut(&self, h: HostId) -> bool {
        let g = self.group(h);
        !self.cuts.is_empty()
            && (self.cuts.contains(&(g, GATEKEEPER_GROUP))
                || self.cuts.contains(&(GATEKEEPER_GROUP, g)))
    }

    pub fn cut_groups(&mut self, from: u16, to: u16) {
        if from != to {
            self.cuts.insert((from, to));
        }
    }

    pub fn heal(&mut self) {
        self.cuts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_map_back_to_their_host() {
        for h in [0, 1, 255, 256, 99_999, (1 << 24) - 2] {
            let addr = addr_of(HostId(h));
            assert_eq!(host_at(addr.udp_addr(), UDP_PORT), Some(HostId(h)));
            assert_eq!(host_at(addr.tcp_addr(), TCP_PORT), Some(HostId(h)));
            assert_eq!(host_at(addr.udp_addr(), TCP_PORT), None);
        }
        assert_eq!(host_at("127.0.0.1:7000".parse().unwrap(), UDP_PORT), None);
    }

    #[test]
    fn wan_delays_are_tens_of_milliseconds_and_cuts_are_directed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new(LatencyModel::wan());
        for _ in 0..100 {
            net.add_host(&mut rng);
        }
        let mut delays: Vec<Duration> = (1..100)
            .map(|i| net.one_way(HostId(0), HostId(i), &mut rng))
            .collect();
        delays.sort();
        assert!(delays[50] > Duration::from_millis(10) && delays[50] < Duration::from_millis(150));
        net.set_group(HostId(1), 1);
        net.cut_groups(1, 0);
        assert!(net.cut(HostId(1), HostId(0)));
        assert!(!net.cut(HostId(0), HostId(1)));
        assert!(net.gatekeeper_cut(HostId(1)));
        net.heal();
        assert!(!net.cut(HostId(1), HostId(0)));
    }
}
