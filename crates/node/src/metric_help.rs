//! The HELP text of each counter `GET /metrics` exports from `highway_core::Stats` and
//! [`crate::RuntimeStats`]: what it counts, in words (issue 13: every HELP line read
//! "counter FIELD"). A test checks that every field of both structs has one, so a new
//! counter cannot ship without its description.

/// `(field, help)` for the core's counters (`highway_node_<field>_total`).
const CORE: &[(&str, &str)] = &[
    ("datagrams_in", "UDP datagrams received"),
    ("datagrams_out", "UDP datagrams sent"),
    (
        "decode_errors",
        "Datagrams or messages that did not decode (dropped)",
    ),
    (
        "bad_tags",
        "Link datagrams whose authentication tag did not verify (dropped)",
    ),
    (
        "replays",
        "Link datagrams with an old or repeated counter (dropped as replays)",
    ),
    (
        "unknown_links",
        "Datagrams for a link this peer does not have (dropped)",
    ),
    (
        "early_link_datagrams",
        "Datagrams on a link we dialled that arrived before our side installed it (held, then read)",
    ),
    (
        "stranger_replies",
        "Answers sent to datagrams from peers without a link (within the per-interval budget)",
    ),
    (
        "stranger_dropped",
        "Datagrams from peers without a link left unanswered over the per-interval budget",
    ),
    ("heartbeats_sent", "Heartbeats sent to neighbours"),
    ("heartbeats_received", "Heartbeats received from neighbours"),
    (
        "suspicions",
        "Neighbours suspected by the failure detector (okay to warning)",
    ),
    ("refuted", "Suspicions refuted (warning back to okay)"),
    ("failures", "Neighbours declared failed (warning to failed)"),
    (
        "probes_as_witness",
        "Indirect probes this peer carried out for a neighbour (as a witness)",
    ),
    (
        "queue_overflows",
        "Outputs or connection writes dropped because their bounded queue was full",
    ),
    ("queries_started", "Searches this peer started"),
    ("queries_received", "Queries received from neighbours"),
    (
        "queries_duplicate",
        "Queries received again (same id) and not routed twice",
    ),
    (
        "queries_rate_limited",
        "Queries dropped over a neighbour's query rate limit",
    ),
    (
        "queries_dropped",
        "Queries not forwarded because too many were being routed",
    ),
    (
        "queries_cache_answered",
        "Queries answered from the hit cache instead of being forwarded",
    ),
    ("queries_answered", "Queries the local share had hits for"),
    (
        "queries_forwarded",
        "Query datagrams sent to neighbours (one per neighbour)",
    ),
    (
        "queries_resent",
        "Query copies sent again to a branch still open after the resend time",
    ),
    (
        "queries_resend_ignored",
        "Resent copies of a query from the neighbour it is routed for (ignored)",
    ),
    ("hits_sent", "Search hits sent toward searchers"),
    ("hits_received", "Search hits received from neighbours"),
    (
        "hits_dropped",
        "Hits over a query's cap or already passed on",
    ),
    (
        "hits_unroutable",
        "Hits for a query with no route (ended, unknown, or not from one of its branches)",
    ),
    (
        "routes_timed_out",
        "Query routes (searches, relayed queries) closed by their deadline",
    ),
    (
        "summary_requests_sent",
        "Share summary chunk requests sent to neighbours",
    ),
    (
        "summary_requests_refused",
        "Share summary requests from neighbours refused over the link's budget",
    ),
    (
        "summary_chunks_sent",
        "Share summary chunks sent to neighbours",
    ),
    (
        "summary_chunks_received",
        "Share summary chunks received from neighbours",
    ),
    (
        "summaries_completed",
        "Neighbours' share summaries received whole",
    ),
    (
        "summary_errors",
        "Share summary chunks or summaries that were malformed (dropped)",
    ),
    (
        "hellos_refused_pending",
        "Hellos answered full: too many inbound handshakes waiting for their confirm (in total or from one source)",
    ),
    (
        "hellos_refused_per_ip",
        "Hellos answered full: their source had max_pending_inbound_per_ip handshakes waiting",
    ),
    (
        "hellos_refused_address",
        "Hellos rejected because the address they name cannot be dialled",
    ),
    (
        "links_refused_full",
        "Confirmed inbound handshakes not installed because the links reached max_degree meanwhile",
    ),
    (
        "dials_skipped_backoff",
        "Candidates not dialled: their address backs off after an unanswered dial, or cannot be dialled",
    ),
    (
        "dials_refused_address",
        "Candidates not dialled because their address is not valid to dial",
    ),
    (
        "dials_unanswered",
        "Dials that went unanswered (the address then backs off)",
    ),
    (
        "hits_refused_address",
        "Search hits dropped because their file server address cannot be dialled",
    ),
    (
        "dials_skipped_undialable",
        "Candidates not dialled because they said they cannot be dialled (behind a NAT)",
    ),
    (
        "hellos_refused_undialable",
        "Hellos from peers behind NATs refused because their own slots were taken",
    ),
    (
        "sends_without_path",
        "Datagrams not sent because the link has no known path yet",
    ),
    (
        "link_path_changes",
        "Times a link's path moved to a new source address (a NAT rebinding)",
    ),
    (
        "links_lost_unheard",
        "Links lost without one authenticated datagram from the other side (UDP blocked)",
    ),
    (
        "reverse_requests_sent",
        "Reverse requests sent to neighbours behind NATs, as their relay",
    ),
    (
        "reverse_requests_received",
        "Reverse requests received from relays",
    ),
    (
        "reverse_refused_budget",
        "Reverse requests refused over the link's budget",
    ),
    (
        "reverse_refused_address",
        "Reverse requests refused for naming an undialable address",
    ),
    ("dials_started", "Dials this peer started"),
    ("dials_linked", "Dials that ended with a link"),
    ("dials_full", "Dials answered full by the other peer"),
    (
        "dials_rejected",
        "Dials refused by the other peer (or closed before established)",
    ),
    (
        "dial_bad_welcomes",
        "Dials whose welcome failed verification (another or no peer at the address)",
    ),
    (
        "inbound_linked",
        "Inbound handshake connections that ended with a link",
    ),
    (
        "inbound_failed",
        "Inbound handshake connections that failed (broken, closed, bad frames or signatures)",
    ),
    (
        "inbound_refused_busy",
        "Inbound connections closed at once: too many handshakes in progress",
    ),
    (
        "inbound_refused_per_ip",
        "Inbound connections closed at once: too many handshakes from their source (IPv6: its /64)",
    ),
    (
        "inbound_hello_timeouts",
        "Inbound connections closed for sending no hello in time",
    ),
    ("reverse_hellos", "Reverse hellos handed to the runtime"),
    (
        "reverse_hellos_refused",
        "Reverse hellos refused (bytes followed the frame)",
    ),
    (
        "conn_frame_errors",
        "Connections closed for a frame over the size limit",
    ),
    (
        "carried_datagrams_in",
        "Link datagrams received over TCP (UDP blocked at one end)",
    ),
    (
        "carried_datagrams_out",
        "Link datagrams sent over TCP (UDP blocked at one end)",
    ),
    (
        "early_link_dropped",
        "Early link datagrams dropped over the per-dial limit",
    ),
];

/// `(field, help)` for the runtime's counters (`highway_node_runtime_<field>_total`).
const RUNTIME: &[(&str, &str)] = &[
    ("outbound_started", "Outbound handshakes started"),
    (
        "outbound_linked",
        "Outbound handshakes that ended with a link",
    ),
    ("outbound_full", "Outbound handshakes answered full"),
    (
        "outbound_rejected",
        "Outbound handshakes refused by the other peer",
    ),
    (
        "outbound_unreachable",
        "Outbound handshakes whose connection failed or went unanswered",
    ),
    (
        "outbound_refused_busy",
        "Always 0: the core caps its own dials (kept for scripts)",
    ),
    (
        "inbound_linked",
        "Inbound handshakes that ended with a link",
    ),
    ("inbound_failed", "Inbound handshakes that failed part-way"),
    (
        "inbound_refused_busy",
        "Inbound connections closed at once: too many handshakes running",
    ),
    (
        "inbound_refused_per_ip",
        "Inbound connections closed at once: too many handshakes from their source",
    ),
    (
        "inbound_hello_timeouts",
        "Inbound connections closed for sending no hello in time",
    ),
    (
        "early_datagrams",
        "Datagrams held until their outbound link was up",
    ),
    (
        "loss_dropped_in",
        "Received datagrams dropped on purpose by --loss",
    ),
    (
        "loss_dropped_out",
        "Datagrams to send dropped on purpose by --loss",
    ),
    ("udp_send_errors", "UDP sends the operating system refused"),
    (
        "gatekeeper_errors",
        "Gatekeeper requests that failed (join, status, report)",
    ),
    ("timer_wakeups", "Times the core's timer fired"),
    (
        "control_unauthorized",
        "Control API requests refused (401) for a missing or wrong token",
    ),
    (
        "bytes_fetched",
        "Verified file bytes fetched by downloads (resumed bytes not counted)",
    ),
    (
        "downloads_done",
        "Downloads that ended complete and verified",
    ),
    ("downloads_failed", "Downloads that ended failed"),
    (
        "downloads_cancelled",
        "Downloads cancelled (DELETE /v1/downloads/ID, Ctrl-C on highway get)",
    ),
    (
        "files_served",
        "File server responses with a file body (200 or 206)",
    ),
    ("bytes_served", "File bytes the file server sent"),
    ("outboards_served", "BLAKE3 outboards the file server sent"),
    (
        "outboards_computed",
        "Outboards the file server made by reading a whole file (none kept from indexing)",
    ),
    (
        "file_requests_not_found",
        "File server requests for content ids not shared (404)",
    ),
    (
        "file_requests_busy",
        "File server requests refused as busy (503)",
    ),
    (
        "file_connections_accepted",
        "File server connections admitted",
    ),
    (
        "file_connections_refused_per_source",
        "File server connections closed at once over the per-source cap",
    ),
    (
        "file_connections_refused_total_cap",
        "File server connections closed at once over the total cap",
    ),
    (
        "file_header_timeouts",
        "File server connections cut at the request-header deadline",
    ),
    (
        "file_idle_timeouts",
        "File server connections cut for idleness",
    ),
    (
        "control_connections_refused",
        "Control API connections closed at once over its cap",
    ),
    (
        "control_header_timeouts",
        "Control API connections cut at the request-header deadline",
    ),
    (
        "relay_circuits",
        "Transfers this node carried as a relay for a peer behind a NAT",
    ),
    (
        "relay_pushes",
        "Pushed connections received as a downloader",
    ),
    ("relay_bytes", "Bytes relayed for peers behind NATs"),
    (
        "relay_refused_off",
        "Relay requests refused because relaying is off",
    ),
    (
        "relay_refused_full",
        "Relay requests refused because all relay slots were busy",
    ),
    (
        "relay_refused_unknown_peer",
        "Relay requests refused because the holder is not a neighbour",
    ),
    (
        "relay_holder_timeouts",
        "Relay requests whose holder did not connect back in time",
    ),
    ("relay_bad_requests", "Malformed relay requests"),
    (
        "reverse_attached",
        "Reverse connections accepted and attached to a waiting transfer",
    ),
    (
        "reverse_refused",
        "Reverse connections refused (bad signature, unknown token)",
    ),
    (
        "reverse_served",
        "Reverse connections this node served as a holder behind a NAT",
    ),
    (
        "reverse_failed",
        "Reverse connections this node failed to serve as a holder behind a NAT",
    ),
];

/// The help text of core counter `field`.
pub(crate) fn core(field: &str) -> Option<&'static str> {
    lookup(CORE, field)
}

/// The help text of runtime counter `field`.
pub(crate) fn runtime(field: &str) -> Option<&'static str> {
    lookup(RUNTIME, field)
}

fn lookup(table: &[(&str, &'static str)], field: &str) -> Option<&'static str> {
    table.iter().find(|(f, _)| *f == field).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: serde_json::Value) -> Vec<String> {
        value
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_u64())
            .map(|(k, _)| k.clone())
            .collect()
    }

    #[test]
    fn every_counter_has_its_own_help_and_no_help_is_left_over() {
        let core_fields = fields(serde_json::to_value(highway_core::Stats::default()).unwrap());
        for field in &core_fields {
            assert!(core(field).is_some(), "no help for core counter {field}");
        }
        for (field, _) in CORE {
            assert!(
                core_fields.contains(&field.to_string()),
                "help for no counter: {field}"
            );
        }
        let runtime_fields = fields(serde_json::to_value(crate::RuntimeStats::default()).unwrap());
        for field in &runtime_fields {
            assert!(
                runtime(field).is_some(),
                "no help for runtime counter {field}"
            );
        }
        for (field, _) in RUNTIME {
            assert!(
                runtime_fields.contains(&field.to_string()),
                "help for no counter: {field}"
            );
        }
    }
}
