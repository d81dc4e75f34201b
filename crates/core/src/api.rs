//! What goes into the state machine and what comes out of it.

use std::net::SocketAddr;
use std::time::Duration;

use highway_wire::peer::NeighbourEntry;
use highway_wire::peer::handshake::LinkKeys;
use highway_wire::{NodeId, PeerAddr};

/// Inputs besides datagrams and time: what the runtime was asked to do, and how it went.
#[derive(Debug)]
pub enum Command {
    /// Start joining the overlay (the peer asks the Gatekeeper for candidates).
    Join,
    /// The Gatekeeper's candidates, answering [`Event::GatekeeperJoin`].
    Candidates(Vec<NeighbourEntry>),
    /// The Gatekeeper could not be asked; try again after a backoff.
    GatekeeperFailed,
    /// Leave the overlay: neighbours and the Gatekeeper are told.
    Leave,
}

/// A verified link, for the overlay to install.
#[derive(Debug, Clone)]
pub(crate) struct LinkUp {
    pub my_link_id: u64,
    pub their_link_id: u64,
    pub peer: NodeId,
    pub addr: PeerAddr,
    pub keys: LinkKeys,
    pub their_neighbours: Vec<NeighbourEntry>,
    /// True when the other peer initiated the handshake.
    pub inbound: bool,
    /// The other peer can be dialled at `addr` (its hello said so; true for peers we
    /// dialled ourselves). Undialable peers are never handed on as dialable.
    pub dialable: bool,
    /// The handshake's connection (and its remote address) stays open and carries the
    /// link's datagrams; `None`: they travel over UDP.
    pub carrier: Option<(crate::ConnId, SocketAddr)>,
}

/// How one of our dials ended without a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectOutcome {
    /// No TCP connection, a timeout, or a broken handshake.
    Unreachable,
    /// The peer has no free slot; its neighbours are where to look next.
    Full { neighbours: Vec<NeighbourEntry> },
    /// The peer declined (already linked, leaving, or it was ourselves), or accepted
    /// and then had no room left when we confirmed.
    Rejected { neighbours: Vec<NeighbourEntry> },
}

/// Outputs besides datagrams: work for the runtime, and news for whoever watches.
#[derive(Debug)]
pub enum Event {
    /// Ask the Gatekeeper for candidates; answer with [`Command::Candidates`] or
    /// [`Command::GatekeeperFailed`].
    GatekeeperJoin,
    NeighbourUp {
        id: NodeId,
        addr: PeerAddr,
    },
    NeighbourDown {
        id: NodeId,
        reason: DownReason,
    },
    /// The failure detector moved a neighbour to `state` (`okay` or `warning`).
    StateChanged {
        id: NodeId,
        state: &'static str,
    },
    /// Tell the Gatekeeper that `id` was found dead.
    ReportFailed {
        id: NodeId,
    },
    /// Tell the Gatekeeper this peer is leaving.
    GatekeeperLeave,
    /// Hits for search `id` ([`crate::Peer::start_search`]), new ones only.
    SearchHits {
        id: highway_wire::peer::QueryId,
        hits: Vec<highway_wire::peer::Hit>,
    },
    /// Search `id` ended: every branch answered, or (`timed_out`) its time ran out.
    SearchDone {
        id: highway_wire::peer::QueryId,
        timed_out: bool,
    },
    /// Neighbour `via` asks us to open a TCP connection to `to` and present `token` (we
    /// cannot be dialled; see [`crate::Peer::request_reverse`]). The runtime connects,
    /// writes `hello` (the framed, signed reverse hello) and serves the file server over
    /// the connection.
    ReverseConnect {
        token: [u8; 16],
        to: SocketAddr,
        via: NodeId,
        hello: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Declared dead by the failure detector.
    Failed,
    /// It said it was leaving.
    Left,
    /// It says it has no link with us.
    NotNeighbour,
    /// A second link to the same peer replaced this one.
    Replaced,
    /// We are leaving.
    Leaving,
    /// An inbound link whose initiator never sent a datagram, so it never had a path: a
    /// half-open link (the initiator gave up, or cannot reach us over UDP). Not a failure
    /// of the peer: not reported to the Gatekeeper.
    Silent,
}

impl DownReason {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Left => "left",
            Self::NotNeighbour => "not_neighbour",
            Self::Replaced => "replaced",
            Self::Leaving => "leaving",
            Self::Silent => "silent",
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// A neighbour as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourView {
    pub id: NodeId,
    pub addr: PeerAddr,
    /// Where this link's datagrams go: the address authenticated datagrams from the
    /// neighbour last came from (for a peer behind a NAT, its mapping), or the dialled
    /// address until it has spoken. `None` for an inbound link not yet heard from.
    pub udp_path: Option<SocketAddr>,
    /// The neighbour can be dialled at `addr`.
    pub dialable: bool,
    /// The link's datagrams travel over a kept TCP connection (UDP blocked at one end).
    pub over_tcp: bool,
    /// How the neighbour sees our UDP socket (its last heartbeat ack).
    pub observed_me: Option<SocketAddr>,
    pub state: &'static str,
    pub inbound: bool,
    pub linked_for: Duration,
    pub last_heard_ago: Duration,
    pub sent_seq: u64,
    pub last_acked_seq: u64,
    pub incarnation: u64,
    pub summary_version: u64,
    pub their_neighbours: Vec<NodeId>,
}

/// Counters of what happened, for metrics, the control API and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Stats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub decode_errors: u64,
    pub bad_tags: u64,
    pub replays: u64,
    pub unknown_links: u64,
    /// Datagrams on a link we dialled, arriving before our side installed it (held, and
    /// read once it is).
    pub early_link_datagrams: u64,
    pub stranger_replies: u64,
    pub stranger_dropped: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    pub suspicions: u64,
    pub refuted: u64,
    pub failures: u64,
    pub probes_as_witness: u64,
    pub queue_overflows: u64,
    /// Searches this peer started.
    pub queries_started: u64,
    /// Queries from neighbours, and what became of them.
    pub queries_received: u64,
    pub queries_duplicate: u64,
    pub queries_rate_limited: u64,
    /// Queries not forwarded because too many were being routed.
    pub queries_dropped: u64,
    /// Queries answered from the hit cache instead of being forwarded.
    pub queries_cache_answered: u64,
    /// Queries the local share had hits for.
    pub queries_answered: u64,
    /// Query datagrams sent to neighbours (a query to three neighbours counts three).
    pub queries_forwarded: u64,
    /// Of those, copies sent again to a branch still open after `query_resend`.
    pub queries_resent: u64,
    /// Copies of a query received from the neighbour it is being routed for (its resend
    /// while the branch is still open): ignored.
    pub queries_resend_ignored: u64,
    pub hits_sent: u64,
    pub hits_received: u64,
    /// Hits over a query's cap or already passed on.
    pub hits_dropped: u64,
    /// Hits for a query with no route (ended, unknown, or not from a branch of it).
    pub hits_unroutable: u64,
    /// Routes (searches, relayed queries) closed by their deadline.
    pub routes_timed_out: u64,
    pub summary_requests_sent: u64,
    pub summary_requests_refused: u64,
    pub summary_chunks_sent: u64,
    pub summary_chunks_received: u64,
    pub summaries_completed: u64,
    pub summary_errors: u64,
    /// Hellos answered "full" because `max_pending_inbound` handshakes were waiting for
    /// their confirm, or `max_pending_inbound_per_ip` from the same source.
    pub hellos_refused_pending: u64,
    pub hellos_refused_per_ip: u64,
    /// Hellos rejected because the address they name could not be dialled (unspecified,
    /// multicast, broadcast, link-local, port 0).
    pub hellos_refused_address: u64,
    /// Confirmed inbound handshakes not installed because the confirmed links (and our
    /// own dials in flight) had reached `max_degree` meanwhile: the initiator is refused.
    pub links_refused_full: u64,
    /// Candidates not dialled because their address's last dial went unanswered and its
    /// backoff runs, or because the address cannot be dialled at all.
    pub dials_skipped_backoff: u64,
    pub dials_refused_address: u64,
    /// Dials that went unanswered (the address then backs off).
    pub dials_unanswered: u64,
    /// Search hits dropped because their file server address cannot be dialled.
    pub hits_refused_address: u64,
    /// Candidates not dialled because they said they cannot be dialled (behind a NAT).
    pub dials_skipped_undialable: u64,
    /// Hellos from undialable peers answered "full" because their own slots
    /// ([`crate::Config::undialable_slots`]) were taken, or refused when they confirmed
    /// because hellos accepted together had taken them meanwhile.
    pub hellos_refused_undialable: u64,
    /// Datagrams not sent because the link has no known path yet (an inbound link whose
    /// peer has not spoken).
    pub sends_without_path: u64,
    /// Times a link's path moved to a new source address (a NAT rebinding).
    pub link_path_changes: u64,
    /// Links that went down without a single authenticated datagram from the other side
    /// (UDP between us is blocked, or the other side vanished at once).
    pub links_lost_unheard: u64,
    /// Reverse requests sent to neighbours behind NATs (as their relay), received from
    /// neighbours, and refused: over the link's budget, or naming an undialable address.
    pub reverse_requests_sent: u64,
    pub reverse_requests_received: u64,
    pub reverse_refused_budget: u64,
    pub reverse_refused_address: u64,
    /// Our dials: started, linked, answered "full", refused (also: accepted, then closed
    /// without "established"), and welcomes that failed verification (a different or no
    /// peer at the address). Unanswered ones are `dials_unanswered`.
    pub dials_started: u64,
    pub dials_linked: u64,
    pub dials_full: u64,
    pub dials_rejected: u64,
    pub dial_bad_welcomes: u64,
    /// Inbound handshake connections: linked, failed (broken, closed, bad frames or
    /// signatures), refused at once (too many in progress, in total or from one source),
    /// and closed for sending no hello in time.
    pub inbound_linked: u64,
    pub inbound_failed: u64,
    pub inbound_refused_busy: u64,
    pub inbound_refused_per_ip: u64,
    pub inbound_hello_timeouts: u64,
    /// Reverse hellos handed to the runtime, and refused (bytes followed the frame).
    pub reverse_hellos: u64,
    pub reverse_hellos_refused: u64,
    /// Connections closed for a frame over the size limit.
    pub conn_frame_errors: u64,
    /// Link datagrams carried over TCP, each way.
    pub carried_datagrams_in: u64,
    pub carried_datagrams_out: u64,
    /// Early link datagrams dropped: more than [`crate::MAX_EARLY_DATAGRAMS`] for one dial.
    pub early_link_dropped: u64,
}
