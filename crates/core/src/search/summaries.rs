//! Share summaries between neighbours: the version rides on heartbeats; a neighbour whose
//! cached copy is older asks with `SummaryRequest { version, chunk }` and gets every chunk
//! from `chunk` on. The request repeats at each heartbeat until the copy is complete, so a
//! lost chunk costs one heartbeat interval.

use highway_wire::NodeId;
use highway_wire::peer::{PeerMsg, QueryTarget};
use highway_wire::summary::{Summary, SummaryAssembler};

use super::tables::QueryBudget;
use crate::link::Link;
use crate::peer::Peer;

/// This peer's published summary, cut into chunks once.
#[derive(Debug, Clone)]
pub(crate) struct LocalSummary {
    version: u64,
    chunks: Vec<(u16, u16, Vec<u8>)>,
}

impl LocalSummary {
    pub fn new(summary: &Summary) -> Self {
        Self {
            version: summary.version,
            chunks: summary.chunks(),
        }
    }
}

/// What a link knows for search: the neighbour's summary and its query budget.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkSearch {
    /// Whether a heartbeat told us its summary version yet.
    heard_version: bool,
    /// Its last complete summary.
    summary: Option<Summary>,
    assembler: SummaryAssembler,
    /// Summary requests from it we still answer in this heartbeat interval.
    pub summary_budget: u32,
    pub budget: QueryBudget,
}

impl LinkSearch {
    pub fn with_budget(summary_budget: u32) -> Self {
        Self {
            summary_budget,
            ..Self::default()
        }
    }

    /// Whether a query on its last hop should go to this neighbour: not when it shares
    /// nothing, nor when its current summary rules the query out; yes when in doubt
    /// (no heartbeat yet, or a newer summary still being fetched).
    pub fn might_have(&self, link: &Link, target: &QueryTarget, tokens: &[String]) -> bool {
        if !self.heard_version {
            return true;
        }
        if link.their_summary_version == 0 {
            return false;
        }
        match &self.summary {
            Some(s) if s.version == link.their_summary_version => match target {
                QueryTarget::Keywords(_) => s.might_match(tokens),
                QueryTarget::Hash(content) => s.might_hold(content),
            },
            _ => true,
        }
    }
}

impl Peer {
    /// A heartbeat announced `version`: ask for it if our copy is older.
    pub(crate) fn on_summary_version(&mut self, peer: NodeId, version: u64) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.search.heard_version = true;
        if version == 0 {
            link.search.summary = None;
            link.search.assembler.reset();
            return;
        }
        if link
            .search
            .summary
            .as_ref()
            .is_some_and(|s| s.version >= version)
        {
            return;
        }
        let from_chunk = match link.search.assembler.assembling() {
            Some(v) if v == version => link
                .search
                .assembler
                .missing()
                .first()
                .copied()
                .unwrap_or(0),
            _ => 0,
        };
        self.stats.summary_requests_sent += 1;
        self.send(
            &peer,
            &PeerMsg::SummaryRequest {
                version,
                chunk: from_chunk,
            },
        );
    }

    /// A neighbour asks for our summary: send the chunks from `chunk` on (all of them
    /// when it names another version), within its per-interval budget.
    pub(crate) fn on_summary_request(&mut self, peer: NodeId, version: u64, chunk: u16) {
        let Some(local) = self.search.summary.clone() else {
            return;
        };
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.search.summary_budget == 0 {
            self.stats.summary_requests_refused += 1;
            return;
        }
        link.search.summary_budget -= 1;
        let from = if version == local.version { chunk } else { 0 };
        for (index, count, data) in local.chunks.into_iter().filter(|c| c.0 >= from) {
            self.stats.summary_chunks_sent += 1;
            self.send(
                &peer,
                &PeerMsg::SummaryChunk {
                    version: local.version,
                    chunk: index,
                    chunks: count,
                    data,
                },
            );
        }
    }

    pub(crate) fn on_summary_chunk(
        &mut self,
        peer: NodeId,
        version: u64,
        chunk: u16,
        chunks: u16,
        data: &[u8],
    ) {
        self.stats.summary_chunks_received += 1;
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        match link.search.assembler.accept(version, chunk, chunks, data) {
            Ok(Some(summary)) => {
                link.search.summary = Some(summary);
                self.stats.summaries_completed += 1;
            }
            Ok(None) => {}
            Err(_) => self.stats.summary_errors += 1,
        }
    }

    /// Each heartbeat interval, every neighbour may ask for our summary again.
    pub(crate) fn refill_summary_budgets(&mut self) {
        let budget = self.config.summary_requests_per_interval;
        for link in self.links.values_mut() {
            link.search.summary_budget = budget;
        }
    }
}
