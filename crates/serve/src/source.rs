//! Who a connection comes from, and how many connections each source holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The unit a per-source cap applies to: one IPv4 address, or one IPv6 /64.
///
/// A /64 because one IPv6 host is normally given a whole /64 and can pick any address in
/// it, so capping single IPv6 addresses would cap nothing. An IPv4-mapped IPv6 address
/// (a dual-stack listener on `[::]`) counts as the IPv4 address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4([u8; 4]),
    V6Prefix(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source already holds its share of connections.
    PerSource,
    /// The server holds as many connections as it may.
    TotalCap,
}

/// Open connections, in total and per source. An entry exists only while its source has
/// at least one connection, so the map never holds more than `max_total` entries.
#[derive(Debug)]
pub struct SourceTable {
    max_total: usize,
    max_per_source: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_source: HashMap<SourceKey, usize>,
}

/// One admitted connection; frees its place in the table when dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<SourceTable>,
    key: SourceKey,
}

impl SourceTable {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            state: Mutex::default(),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none. The source's
    /// own cap is checked first, so an attacker's extra connections count as per-source
    /// refusals even when they also find the server full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = SourceKey::of(ip);
        let mut state = self.lock();
        let held = state.per_source.get(&key).copied().unwrap_or(0);
        if held >= self.max_per_source {
            return Err(Refusal::PerSource);
        }
        if state.total >= self.max_total {
            return Err(Refusal::TotalCap);
        }
        state.total += 1;
        state.per_source.insert(key, held + 1);
        Ok(Slot {
            table: Arc::clone(self),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Sources with at least one open connection.
    pub fn sources(&self) -> usize {
        self.lock().per_source.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two counters updated together; a panic elsewhere cannot leave
        // them half-written, so a poisoned lock is still good.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.table.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(held) = state.per_source.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                state.per_source.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:10.0.0.1")),
            SourceKey::of(ip("10.0.0.1"))
        );
        assert_ne!(SourceKey::of(ip("10.0.0.1")), SourceKey::of(ip("10.0.0.2")));
    }

    #[test]
    fn caps_hold_and_entries_leave_with_their_last_connection() {
        let table = SourceTable::new(3, 2);
        let a1 = table.admit(ip("10.0.0.1")).unwrap();
        let a2 = table.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(table.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerSource);
        let b1 = table.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(table.admit(ip("10.0.0.3")).unwrap_err(), Refusal::TotalCap);
        // Over both caps at once: the source's own cap is what is reported.
        assert_eq!(table.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerSource);
        assert_eq!((table.open(), table.sources()), (3, 2));
        drop(a1);
        assert_eq!((table.open(), table.sources()), (2, 2));
        drop((a2, b1));
        assert_eq!((table.open(), table.sources()), (0, 0));
        let _again = table.admit(ip("10.0.0.3")).unwrap();
    }
}
