//! The seam between the protocol and the share: how a peer looks up its own files.

use highway_wire::ContentId;
use highway_wire::peer::QueryTarget;

/// One of this peer's files that matches a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub content: ContentId,
    pub size: u64,
    /// Path relative to the share root, `/`-separated.
    pub name: String,
}

/// This peer's own files, as searches see them. The runtime implements it over its share
/// index; the simulator over a table. Lookups are synchronous and must be quick (an
/// index lookup, not a disk walk): the protocol waits for them.
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// At most `limit` files matching `target`.
    fn lookup(&self, target: &QueryTarget, limit: usize) -> Vec<LocalFile>;
}
