//! Search hits grouped by content hash: one row per file however many peers hold it,
//! numbered in the order files first turned up (the numbers `get` takes). The JSON keeps
//! one hit per holder; people see files (issue 13).

use std::collections::{BTreeSet, HashMap};

use highway_node::views::HitJson;
use highway_wire::{ContentId, NodeId};

/// One file the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGroup {
    pub hash: ContentId,
    pub size: u64,
    /// The first hit's name: the path within that holder's share.
    pub name: String,
    /// Other peers holding it (the searching node itself is not counted).
    pub sources: usize,
    /// Hops to the nearest other peer holding it; `None` when only this node has it.
    pub nearest: Option<u8>,
    /// The searching node holds it too.
    pub here: bool,
}

/// What [`HitGroups::add`] did with a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A file not seen before: it is group `number` (from 1).
    NewFile(usize),
    /// Another holder (or a repeat) of group `number`.
    Known(usize),
}

/// Hits grouped as they arrive.
#[derive(Debug, Clone, Default)]
pub struct HitGroups {
    groups: Vec<FileGroup>,
    by_hash: HashMap<ContentId, usize>,
    holders: Vec<BTreeSet<NodeId>>,
}

impl HitGroups {
    pub fn of(hits: &[HitJson]) -> Self {
        let mut groups = Self::default();
        for hit in hits {
            groups.add(hit);
        }
        groups
    }

    pub fn add(&mut self, hit: &HitJson) -> Added {
        let (index, new) = match self.by_hash.get(&hit.hash) {
            Some(&index) => (index, false),
            None => {
                self.groups.push(FileGroup {
                    hash: hit.hash,
                    size: hit.size,
                    name: hit.name.clone(),
                    sources: 0,
                    nearest: None,
                    here: false,
                });
                self.holders.push(BTreeSet::new());
                let index = self.groups.len() - 1;
                self.by_hash.insert(hit.hash, index);
                (index, true)
            }
        };
        let first_from_holder = self.holders[index].insert(hit.holder);
        let group = &mut self.groups[index];
        // Hop 0 is the searching node's own share: not a source.
        if hit.hops == 0 {
            group.here = true;
        } else if first_from_holder {
            group.sources += 1;
            group.nearest = Some(group.nearest.map_or(hit.hops, |n| n.min(hit.hops)));
        }
        if new {
            Added::NewFile(index + 1)
        } else {
            Added::Known(index + 1)
        }
    }

    /// Group `number` (from 1).
    pub fn get(&self, number: usize) -> Option<&FileGroup> {
        self.groups.get(number.checked_sub(1)?)
    }

    pub fn files(&self) -> &[FileGroup] {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Distinct other peers that answered with at least one file.
    pub fn peers(&self) -> usize {
        let all: BTreeSet<&NodeId> = self.holders.iter().flatten().collect();
        all.len() - usize::from(self.groups.iter().any(|g| g.here))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::hit;

    #[test]
    fn holders_of_one_file_make_one_group_and_the_searcher_is_not_a_source() {
        let a = hit("jazz/so what.flac", 10, 2, 1);
        let mut a2 = hit("other/so what.flac", 10, 1, 2);
        a2.hash = a.hash;
        let mut mine = hit("mine/so what.flac", 10, 0, 3);
        mine.hash = a.hash;
        let b = hit("blue.mp3", 20, 3, 4);
        let mut groups = HitGroups::default();
        assert_eq!(groups.add(&a), Added::NewFile(1));
        assert_eq!(groups.add(&b), Added::NewFile(2));
        assert_eq!(groups.add(&a2), Added::Known(1));
        assert_eq!(groups.add(&a2), Added::Known(1), "a repeated hit");
        assert_eq!(groups.add(&mine), Added::Known(1));
        let first = groups.get(1).unwrap();
        assert_eq!(
            (
                first.sources,
                first.nearest,
                first.here,
                first.name.as_str()
            ),
            (2, Some(1), true, "jazz/so what.flac")
        );
        assert_eq!(groups.get(2).unwrap().sources, 1);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups.peers(), 3);
        assert!(groups.get(0).is_none() && groups.get(3).is_none());

        let only_mine = HitGroups::of(&[hit("x.txt", 1, 0, 9)]);
        let group = only_mine.get(1).unwrap();
        assert_eq!((group.sources, group.nearest, group.here), (0, None, true));
        assert_eq!(only_mine.peers(), 0);
    }
}
