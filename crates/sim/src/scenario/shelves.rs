//! Files on simulated peers: what each peer shares, handed to its core as a
//! [`Catalog`] and a keyword summary, exactly as a node does with its share index.
//!
//! Files are names only (no bytes): the content id is the BLAKE3 hash of the name, and
//! hits carry a made-up file-server address that nothing ever connects to.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use highway_core::{Catalog, LocalFile};
use highway_wire::ContentId;
use highway_wire::peer::QueryTarget;
use highway_wire::summary::{CountingFilter, content_keyword};
use highway_wire::tokenize::{all_tokens_match, tokens};

use crate::{HostId, Sim};

/// Size every simulated file claims.
const FILE_SIZE: u64 = 1 << 20;

/// The keyword of file number `n`: all the same length, so that one never prefix-matches
/// another and a query for it finds exactly its holders.
pub fn keyword(n: usize) -> String {
    format!("zq{n:07x}")
}

/// What every simulated peer shares.
#[derive(Debug, Default)]
pub struct Shelves {
    files: HashMap<HostId, Vec<LocalFile>>,
    /// Summary versions handed out so far: each publish gets a higher one, as a node's
    /// do (they are milliseconds since the epoch there).
    versions: u64,
}

impl Shelves {
    /// Puts a file found by `keyword` on `h`'s shelf; [`Shelves::publish`] makes it
    /// visible to the core.
    pub fn add(&mut self, h: HostId, keyword: &str) {
        let name = format!("file {keyword}.dat");
        self.files.entry(h).or_default().push(LocalFile {
            content: ContentId::of(name.as_bytes()),
            size: FILE_SIZE,
            name,
        });
    }

    /// Empties `h`'s shelf (a new peer on a restarted host starts with nothing).
    pub fn clear(&mut self, h: HostId) {
        self.files.remove(&h);
    }

    /// Hands `h`'s files to its peer: the catalog it answers from and a new summary
    /// version for its neighbours to fetch. Nothing happens when `h` is not up.
    pub fn publish(&mut self, sim: &mut Sim, h: HostId) {
        let files = self.files.get(&h).cloned().unwrap_or_default();
        let mut filter = CountingFilter::default();
        for f in &files {
            for t in tokens(&f.name) {
                filter.add(&t);
            }
            filter.add_exact(&content_keyword(&f.content));
        }
        self.versions += 1;
        let summary = filter.summary(self.versions);
        let catalog: Arc<dyn Catalog> = Arc::new(Table::new(files));
        let server = file_server(h);
        sim.with_peer(h, |peer, _| {
            peer.set_catalog(Some(catalog), Some(server));
            peer.set_summary(Some(&summary));
        });
    }
}

/// The address hits name for `h`'s file server; only ever data, never dialled.
fn file_server(h: HostId) -> SocketAddr {
    let [_, a, b, c] = h.0.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(127, a, b, c), 8000))
}

/// A peer's files as a plain list, with their names' tokens.
#[derive(Debug)]
struct Table(Vec<(LocalFile, Vec<String>)>);

impl Table {
    fn new(files: Vec<LocalFile>) -> Self {
        Self(
            files
                .into_iter()
                .map(|f| {
                    let t = tokens(&f.name);
                    (f, t)
                })
                .collect(),
        )
    }
}

impl Catalog for Table {
    fn lookup(&self, target: &QueryTarget, limit: usize) -> Vec<LocalFile> {
        let query = match target {
            QueryTarget::Keywords(text) => tokens(text),
            QueryTarget::Hash(_) => Vec::new(),
        };
        self.0
            .iter()
            .filter(|(f, names)| match target {
                QueryTarget::Hash(c) => f.content == *c,
                QueryTarget::Keywords(_) => all_tokens_match(&query, names),
            })
            .take(limit)
            .map(|(f, _)| f.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_finds_its_file_and_no_other() {
        let mut shelves = Shelves::default();
        let h = HostId(7);
        shelves.add(h, &keyword(0x10));
        shelves.add(h, &keyword(0x100));
        let table = Table::new(shelves.files[&h].clone());
        let found = table.lookup(&QueryTarget::Keywords(keyword(0x10)), 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, format!("file {}.dat", keyword(0x10)));
        assert!(
            table
                .lookup(&QueryTarget::Keywords(keyword(0x11)), 10)
                .is_empty()
        );
        let by_hash = table.lookup(&QueryTarget::Hash(found[0].content), 10);
        assert_eq!(by_hash, found);
    }
}
#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn every_keyword_matches_its_summary() {
        let mut bad = Vec::new();
        for n in 0..5000 {
            let name = format!("file {}.dat", keyword(n));
            let content = ContentId::of(name.as_bytes());
            let mut filter = CountingFilter::default();
            for t in tokens(&name) {
                filter.add(&t);
            }
            filter.add_exact(&content_keyword(&content));
            let s = filter.summary(1);
            if !s.might_match(&tokens(&keyword(n))) {
                bad.push((n, tokens(&name), tokens(&keyword(n))));
            }
        }
        assert!(
            bad.is_empty(),
            "{} bad, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(3)]
        );
    }
}
