//! Addresses whose dial failed, kept out of reach for a while (exponential backoff), and
//! the per-source bucket handshakes are counted in.
//!
//! Candidates come from the Gatekeeper, from neighbours' lists and from "full" answers:
//! anyone can name any address there. Without this table a peer named by a forged join
//! (a bystander, or an address where nothing listens) was dialled again on every
//! Gatekeeper answer and every repair, tens of times a minute by every peer that heard
//! of it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The bucket an address counts in for per-source limits: an IPv4 address by itself
/// (an IPv4-mapped IPv6 address as the IPv4 address it carries), an IPv6 address by its
/// /64, since one host usually owns a whole /64 and can pick any address in it.
pub fn source_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Failed {
    /// Failures in a row.
    failures: u32,
    /// Not dialled again before this instant.
    until: Instant,
}

/// A bounded table of addresses (a TCP address each) whose last dial never answered.
#[derive(Debug)]
pub(crate) struct DialBackoff {
    failed: HashMap<SocketAddr, Failed>,
    capacity: usize,
    min: Duration,
    max: Duration,
}

impl DialBackoff {
    pub fn new(capacity: usize, min: Duration, max: Duration) -> Self {
        Self {
            failed: HashMap::new(),
            capacity,
            min,
            max,
        }
    }

    /// True while `addr` is backing off.
    pub fn blocked(&self, now: Instant, addr: SocketAddr) -> bool {
        self.failed.get(&addr).is_some_and(|f| now < f.until)
    }

    /// A dial to `addr` went unanswered: wait `min`, doubling with each failure in a row
    /// up to `max`, before dialling it again.
    pub fn failed(&mut self, now: Instant, addr: SocketAddr) {
        if !self.failed.contains_key(&addr) && self.failed.len() >= self.capacity {
            self.evict(now);
        }
        let entry = self.failed.entry(addr).or_insert(Failed {
            failures: 0,
            until: now,
        });
        entry.failures = entry.failures.saturating_add(1);
        let doublings = (entry.failures - 1).min(31);
        let wait = self.min.saturating_mul(1 << doublings).min(self.max);
        entry.until = now + wait;
    }

    /// `addr` answered (a link came up, or it said full or no): forget its failures.
    pub fn answered(&mut self, addr: SocketAddr) {
        self.failed.remove(&addr);
    }

    /// Makes room for one entry: drops the entries whose wait is over, or else the one
    /// whose wait ends first (the table's size bounds memory; it is no allow-list, so
    /// losing an entry only means one more dial).
    fn evict(&mut self, now: Instant) {
        self.failed.retain(|_, f| now < f.until);
        if self.failed.len() < self.capacity {
            return;
        }
        // Ties broken by address, so the choice does not follow the map's random order.
        if let Some(addr) = self
            .failed
            .iter()
            .min_by_key(|(addr, f)| (f.until, **addr))
            .map(|(addr, _)| *addr)
        {
            self.failed.remove(&addr);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], n))
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets_on_an_answer() {
        let start = Instant::now();
        let mut table = DialBackoff::new(4, Duration::from_secs(1), Duration::from_secs(5));
        let a = addr(1);
        let mut now = start;
        for want in [1, 2, 4, 5, 5] {
            table.failed(now, a);
            let wait = Duration::from_secs(want);
            assert!(table.blocked(now + wait - Duration::from_millis(1), a));
            assert!(!table.blocked(now + wait, a), "{want} s");
            now += wait;
        }
        table.answered(a);
        assert!(!table.blocked(now, a));
        table.failed(now, a);
        assert!(
            !table.blocked(now + Duration::from_secs(1), a),
            "reset to 1 s"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut table = DialBackoff::new(4, Duration::from_secs(1), Duration::from_secs(300));
        for n in 0..100 {
            table.failed(now + Duration::from_millis(u64::from(n)), addr(n));
        }
        assert_eq!(table.len(), 4);
        // The newest entries stay: the ones whose waits end last.
        assert!(table.blocked(now, addr(99)));
        assert!(!table.blocked(now, addr(0)));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_bucket(a), source_bucket(b));
        assert_ne!(source_bucket(a), source_bucket(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            source_bucket(mapped),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
