//! Protocol timers and bounds: one plain struct, validated once.

use std::time::Duration;

use highway_wire::peer::message::MAX_HEARTBEAT_NEIGHBOURS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A peer below this many neighbours keeps looking for more.
    pub target_degree: usize,
    /// A peer never has more neighbours than this (the original's was 5).
    pub max_degree: usize,
    pub heartbeat_interval: Duration,
    /// Nothing heard from a neighbour for this long: it becomes WARNING and is probed.
    pub suspect_timeout: Duration,
    /// A WARNING neighbour no witness vouched for within this long is FAILED.
    pub probe_timeout: Duration,
    /// Witnesses asked to probe a suspect (SWIM's k).
    pub witnesses: usize,
    /// Most peers tried in one breadth-first search past full candidates.
    pub bfs_limit: usize,
    /// First wait before asking the Gatekeeper again; doubles up to the maximum.
    pub join_backoff_min: Duration,
    pub join_backoff_max: Duration,
    /// Outbound handshakes in flight at once.
    pub max_pending_links: usize,
    /// A handshake not finished within this long is abandoned.
    pub handshake_timeout: Duration,
    /// Answers to strangers (probe acks, not-your-neighbour) per heartbeat interval.
    pub stranger_replies_per_interval: u32,
    /// Probes this peer runs as a witness for others, at once.
    pub max_witness_requests: usize,
    /// How long a peer declared failed is not dialled again.
    pub failed_quarantine: Duration,
    /// A peer with two or more free slots asks the Gatekeeper about this often (±50% at
    /// random) for one more neighbour. Repair only reaches peers a peer already knows of,
    /// so without this two parts of the overlay split by a network partition never join
    /// again once it heals: each repairs itself and stops asking (`highway sim
    /// partition` showed it). Leaving one slot free keeps room for joiners.
    pub refresh_interval: Duration,
    /// Hops a search travels unless the searcher says otherwise (1..=7). 5: at 10,000
    /// peers it finds files on 1% of them 97.5% of the time and on 0.1% 60%, where 4 did
    /// 95% and 22.5%, for about 340 query datagrams a search (docs/SCALE.md, "search").
    pub default_ttl: u8,
    /// How long a peer waits for the branches it forwarded a query to, per hop still
    /// ahead: a peer forwarding with `ttl` hops left waits `(ttl - 1) ×` this, so every
    /// branch closes before the one above it gives up.
    pub query_hop_timeout: Duration,
    /// A branch still open this long after the query went to it gets the query again (and
    /// again at this interval while the route lasts):
    /// a neighbour that never saw it (the datagram was lost) takes it up, one that is still
    /// working on it ignores the copy, and one that already closed its branch says
    /// `QueryDone` again (in case that was lost). Without this one lost datagram keeps a
    /// search open until its timeout.
    pub query_resend: Duration,
    /// Once every branch of a route has closed, the route stays open this much longer
    /// for hits still on their way: datagrams can be reordered, and a branch's
    /// `QueryDone` can overtake the hits it sent just before. Only the end of a search
    /// waits for it, never a hit.
    pub query_close_grace: Duration,
    /// On the last hop, forward a query only to neighbours whose share summary might
    /// match it (the default). Off, the last hop floods like the others: the simulator
    /// compares the two.
    pub last_hop_filter: bool,
    /// Queries this peer is routing at once (each waits for its branches).
    pub max_routes: usize,
    /// Query ids remembered for duplicate suppression, and for how long.
    pub seen_queries: usize,
    pub seen_ttl: Duration,
    /// Most hits relayed back for one query (and kept by a searcher).
    pub max_hits_per_query: u32,
    /// Queries accepted from one neighbour: a token bucket refilled at this rate, up to
    /// `query_burst`. Queries beyond it are dropped (and the branch closed).
    pub queries_per_second: u32,
    pub query_burst: u32,
    /// Hit cache: queries whose answers are kept, for how long at first, and at most
    /// (each time a cached answer is used it is kept one `hit_cache_ttl` longer).
    pub hit_cache_entries: usize,
    pub hit_cache_ttl: Duration,
    pub hit_cache_max_ttl: Duration,
    /// Summary requests from one neighbour answered per heartbeat interval.
    pub summary_requests_per_interval: u32,
    /// Inbound handshakes accepted but not yet confirmed, at once. They do not count
    /// toward `max_degree` (only confirmed links do), so hellos that never confirm cannot
    /// make a peer answer "full"; this bounds them on their own.
    pub max_pending_inbound: usize,
    /// Of those, from one source address (an IPv6 /64 counts as one).
    pub max_pending_inbound_per_ip: usize,
    /// Addresses whose dial went unanswered, remembered to back off from (oldest waits
    /// dropped first past this).
    pub max_dial_failures: usize,
    /// Slots for neighbours that cannot be dialled (behind NATs), on top of `max_degree`,
    /// which stays for neighbours that can. Peers behind NATs link only by dialling out,
    /// so with most peers behind NATs each dialable peer carries several of them: at 70%,
    /// about 7 each for their 3 links apiece (docs/SCALE.md, "Peers behind NATs"). Their
    /// own pool also means they can never take the slots dialable peers need to link with
    /// each other and keep the overlay connected.
    pub undialable_slots: usize,
    /// Reverse requests ([`highway_wire::peer::PeerMsg::Reverse`]) one neighbour may make
    /// per heartbeat interval; each makes us open a TCP connection.
    pub reverse_per_interval: u32,
    /// An address whose dial went unanswered is not dialled again for this long, doubling
    /// with each further failure up to `dial_backoff_max`.
    pub dial_backoff_min: Duration,
    pub dial_backoff_max: Duration,
    /// Inbound handshake connections (hello or confirm still to come) at once; further
    /// connections are refused at once.
    pub max_inbound_handshakes: usize,
    /// Of those, from one source address (an IPv6 /64 counts as one): idle connections
    /// from one address cannot take the slots a handshake from another needs.
    pub max_inbound_handshakes_per_ip: usize,
    /// How long a new connection has to deliver its hello. An initiator writes it as
    /// soon as it is connected, so only an idle (or trickling) connection takes longer.
    pub hello_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target_degree: 3,
            max_degree: 5,
            heartbeat_interval: Duration::from_secs(1),
            suspect_timeout: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(2),
            witnesses: 3,
            bfs_limit: 16,
            join_backoff_min: Duration::from_millis(500),
            join_backoff_max: Duration::from_secs(30),
            max_pending_links: 4,
            handshake_timeout: Duration::from_secs(5),
            stranger_replies_per_interval: 32,
            max_witness_requests: 64,
            failed_quarantine: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(60),
            default_ttl: 5,
            query_hop_timeout: Duration::from_millis(1500),
            query_resend: Duration::from_secs(1),
            query_close_grace: Duration::from_millis(50),
            last_hop_filter: true,
            max_routes: 1024,
            seen_queries: 8192,
            seen_ttl: Duration::from_secs(120),
            max_hits_per_query: 200,
            queries_per_second: 20,
            query_burst: 40,
            hit_cache_entries: 512,
            hit_cache_ttl: Duration::from_secs(10),
            hit_cache_max_ttl: Duration::from_secs(60),
            summary_requests_per_interval: 2,
            max_pending_inbound: 32,
            max_pending_inbound_per_ip: 2,
            max_dial_failures: 256,
            undialable_slots: 8,
            reverse_per_interval: 64,
            dial_backoff_min: Duration::from_secs(1),
            dial_backoff_max: Duration::from_secs(300),
            max_inbound_handshakes: 64,
            max_inbound_handshakes_per_ip: 4,
            hello_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("default TTL {0} must be between 1 and 7")]
    Ttl(u8),
    #[error("target degree {target} must be between 1 and the maximum degree {max}")]
    Degree { target: usize, max: usize },
    #[error(
        "maximum degree {max} plus {undialable} slots for undialable peers exceeds the \
         {MAX_HEARTBEAT_NEIGHBOURS} neighbours a heartbeat can list"
    )]
    MaxDegree { max: usize, undialable: usize },
    #[error("suspect timeout ({suspect:?}) must exceed the heartbeat interval ({interval:?})")]
    SuspectTimeout {
        suspect: Duration,
        interval: Duration,
    },
    #[error("dial backoff maximum ({max:?}) must be at least its minimum ({min:?})")]
    DialBackoff { min: Duration, max: Duration },
    #[error("{0} must not be zero")]
    Zero(&'static str),
}

impl Config {
    /// Timers shrunk for tests: heartbeats every 100 ms, suspicion after 500 ms.
    pub fn test() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            suspect_timeout: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(400),
            join_backoff_min: Duration::from_millis(100),
            join_backoff_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            failed_quarantine: Duration::from_secs(3),
            query_hop_timeout: Duration::from_millis(500),
            query_resend: Duration::from_millis(200),
            query_close_grace: Duration::from_millis(20),
            hit_cache_ttl: Duration::from_millis(500),
            hit_cache_max_ttl: Duration::from_secs(2),
            dial_backoff_min: Duration::from_millis(200),
            dial_backoff_max: Duration::from_secs(5),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.target_degree == 0 || self.target_degree > self.max_degree {
            return Err(ConfigError::Degree {
                target: self.target_degree,
                max: self.max_degree,
            });
        }
        if self.max_degree + self.undialable_slots > MAX_HEARTBEAT_NEIGHBOURS {
            return Err(ConfigError::MaxDegree {
                max: self.max_degree,
                undialable: self.undialable_slots,
            });
        }
        if !(1..=highway_wire::peer::search::MAX_TTL).contains(&self.default_ttl) {
            return Err(ConfigError::Ttl(self.default_ttl));
        }
        if self.dial_backoff_max < self.dial_backoff_min {
            return Err(ConfigError::DialBackoff {
                min: self.dial_backoff_min,
                max: self.dial_backoff_max,
            });
        }
        if self.suspect_timeout <= self.heartbeat_interval {
            return Err(ConfigError::SuspectTimeout {
                suspect: self.suspect_timeout,
                interval: self.heartbeat_interval,
            });
        }
        for (name, zero) in [
            ("heartbeat interval", self.heartbeat_interval.is_zero()),
            ("probe timeout", self.probe_timeout.is_zero()),
            ("max pending links", self.max_pending_links == 0),
            ("handshake timeout", self.handshake_timeout.is_zero()),
            ("refresh interval", self.refresh_interval.is_zero()),
            ("query hop timeout", self.query_hop_timeout.is_zero()),
            ("query resend", self.query_resend.is_zero()),
            ("max routes", self.max_routes == 0),
            ("seen queries", self.seen_queries == 0),
            ("max hits per query", self.max_hits_per_query == 0),
            ("queries per second", self.queries_per_second == 0),
            ("query burst", self.query_burst == 0),
            ("max pending inbound", self.max_pending_inbound == 0),
            (
                "max pending inbound per ip",
                self.max_pending_inbound_per_ip == 0,
            ),
            ("max dial failures", self.max_dial_failures == 0),
            ("dial backoff", self.dial_backoff_min.is_zero()),
            ("max inbound handshakes", self.max_inbound_handshakes == 0),
            (
                "max inbound handshakes per ip",
                self.max_inbound_handshakes_per_ip == 0,
            ),
            ("hello timeout", self.hello_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}
