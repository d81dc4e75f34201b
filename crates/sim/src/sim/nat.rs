//! Peers behind NATs, as the network sees them: a NAT'd host cannot be dialled (a TCP
//! connection to it goes nowhere), and a datagram reaches it only from a host it sent one
//! to within the mapping's lifetime (a port-restricted or symmetric NAT's filtering; which
//! of the two makes no difference here, since simulated addresses are never translated and
//! peers never aim traffic at observed addresses). Relaying and reverse connections are not
//! simulated: they carry transfers, which the simulator does not run.

use std::collections::HashMap;
use std::time::Duration;

use crate::HostId;
use crate::clock::SimTime;

/// How long a mapping lives without traffic (home routers keep UDP mappings 30 s to a few
/// minutes; heartbeats every second keep a link's mapping fresh anyway).
pub const MAPPING_LIFETIME: Duration = Duration::from_secs(60);
/// Mappings one NAT'd host keeps; past it the expired ones are dropped first, then all.
const MAX_MAPPINGS: usize = 1024;

/// One NAT'd host's mappings: whom it sent to, and when last.
#[derive(Debug, Default, Clone)]
pub(crate) struct Mappings(HashMap<HostId, SimTime>);

impl Mappings {
    /// The host sent a datagram to `to` at `now`.
    pub fn sent(&mut self, to: HostId, now: SimTime) {
        if self.0.len() >= MAX_MAPPINGS && !self.0.contains_key(&to) {
            self.0.retain(|_, at| now.since(*at) < MAPPING_LIFETIME);
            if self.0.len() >= MAX_MAPPINGS {
                self.0.clear();
            }
        }
        self.0.insert(to, now);
    }

    /// A datagram from `from` gets in at `now`.
    pub fn admits(&self, from: HostId, now: SimTime) -> bool {
        self.0
            .get(&from)
            .is_some_and(|at| now.since(*at) < MAPPING_LIFETIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hosts_sent_to_recently_get_in() {
        let mut m = Mappings::default();
        let (a, b) = (HostId::from_index(1), HostId::from_index(2));
        let t0 = SimTime::ZERO + Duration::from_secs(1);
        assert!(!m.admits(a, t0));
        m.sent(a, t0);
        assert!(m.admits(a, t0 + Duration::from_secs(59)));
        assert!(!m.admits(b, t0));
        assert!(!m.admits(a, t0 + MAPPING_LIFETIME));
    }
}
