//! The keyword index of a shared folder: which files it holds, under which content hash,
//! and which names contain which keywords.
//!
//! Pure data, no I/O: the scanner and the watcher decide what is on disk and tell the index
//! with [`Index::insert`], [`Index::remove`] and [`Index::rename`]. The words of the file's
//! name and of the folders it sits in within the share are indexed (name first): hits show
//! that path, so `search jazz` finds `jazz/take five.flac` (issue 13).
//!
//! Three maps over the same entries: by relative path (one entry each), by content hash
//! (a file may be shared under several paths), and keyword → entries (the inverted index,
//! kept sorted so that prefix queries are a range scan). A [`CountingFilter`] follows the
//! keyword set, so the share summary is always at hand without a rebuild.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use highway_wire::ContentId;

use crate::summary::{CountingFilter, Summary, content_keyword};
use crate::tokenize::{all_tokens_match, token_matches, tokens};

/// Default bound on the number of indexed files.
pub const DEFAULT_MAX_FILES: usize = 1_000_000;
/// Keywords kept per file name (the first ones; names are rarely longer).
pub const MAX_TOKENS_PER_FILE: usize = 32;
/// Most results one search returns, whatever limit is asked for.
pub const MAX_SEARCH_RESULTS: usize = 1_000;

/// One shared file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedFile {
    /// BLAKE3 hash of the whole content.
    pub content: ContentId,
    /// Path relative to the share root: normal components only, valid UTF-8.
    pub rel_path: PathBuf,
    /// The last component of `rel_path`, the name shown in search hits.
    pub name: String,
    /// Size in bytes when hashed.
    pub size: u64,
    /// Modification time when hashed, in nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

/// Why an index update was refused; the index is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the index holds its maximum of {max} files; the file was not indexed")]
    Full { max: usize },
    #[error("{0:?} is not a relative path of normal UTF-8 components; nothing was indexed")]
    InvalidPath(PathBuf),
    #[error("no file is indexed at {0:?}; nothing was renamed")]
    NotFound(PathBuf),
}

/// What an [`Index::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A path the index did not hold.
    New,
    /// The path was indexed with other content, size or time; the entry was replaced.
    Replaced,
    /// The same entry was already there; nothing changed (the version did not move).
    Unchanged,
}

type EntryId = u64;

#[derive(Debug)]
struct Entry {
    file: SharedFile,
    tokens: Box<[Box<str>]>,
}

/// The index; see the [module documentation](self).
#[derive(Debug)]
pub struct Index {
    max_files: usize,
    next_id: EntryId,
    entries: HashMap<EntryId, Entry>,
    by_path: BTreeMap<PathBuf, EntryId>,
    by_content: HashMap<ContentId, BTreeSet<EntryId>>,
    by_keyword: BTreeMap<Box<str>, BTreeSet<EntryId>>,
    filter: CountingFilter,
    version: u64,
}

impl Default for Index {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FILES)
    }
}

/// Checks that `rel_path` is a non-empty relative path of normal UTF-8 components and
/// returns its last component.
pub fn file_name_of(rel_path: &Path) -> Option<&str> {
    let mut last = None;
    for c in rel_path.components() {
        match c {
            Component::Normal(part) => last = Some(part.to_str()?),
            _ => return None,
        }
    }
    last
}

impl Index {
    /// An empty index that holds at most `max_files` files.
    pub fn new(max_files: usize) -> Self {
        Self {
            max_files,
            next_id: 0,
            entries: HashMap::new(),
            by_path: BTreeMap::new(),
            by_content: HashMap::new(),
            by_keyword: BTreeMap::new(),
            filter: CountingFilter::default(),
            version: 0,
        }
    }

    /// Increases on every change to the index.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Changes whenever a bit of the keyword summary flips (see [`Index::summary`]).
    pub fn summary_generation(&self) -> u64 {
        self.filter.generation()
    }

    /// The keyword summary of the indexed names, labelled `version`.
    pub fn summary(&self, version: u64) -> Summary {
        self.filter.summary(version)
    }

    /// Number of indexed files (paths).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct keywords.
    pub fn keyword_count(&self) -> usize {
        self.by_keyword.len()
    }

    /// The distinct keywords, sorted.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.by_keyword.keys().map(|k| &**k)
    }

    /// The file indexed at `rel_path`.
    pub fn get(&self, rel_path: &Path) -> Option<&SharedFile> {
        let id = self.by_path.get(rel_path)?;
        Some(&self.entries[id].file)
    }

    /// Every path holding `content`, in order of indexing.
    pub fn by_content(&self, content: &ContentId) -> impl Iterator<Item = &SharedFile> {
        self.by_content
            .get(content)
            .into_iter()
            .flatten()
            .map(|id| &self.entries[id].file)
    }

    /// Every indexed file, in no particular order.
    pub fn files(&self) -> impl Iterator<Item = &SharedFile> {
        self.entries.values().map(|e| &e.file)
    }

    /// Every indexed path at or below `dir` (a relative path; empty means all), sorted.
    pub fn paths_under(&self, dir: &Path) -> Vec<PathBuf> {
        // Paths order component by component, so a subtree is one contiguous range.
        self.by_path
            .range::<Path, _>((std::ops::Bound::Included(dir), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every indexed path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.by_path.keys().map(PathBuf::as_path)
    }

    /// Indexes `file` at its path, replacing whatever was there.
    pub fn insert(&mut self, file: SharedFile) -> Result<Inserted, IndexError> {
        let Some(name) = file_name_of(&file.rel_path) else {
            return Err(IndexError::InvalidPath(file.rel_path));
        };
        if name != file.name {
            return Err(IndexError::InvalidPath(file.rel_path));
        }
        let outcome = match self.by_path.get(&file.rel_path) {
            Some(id) if self.entries[id].file == file => return Ok(Inserted::Unchanged),
            Some(_) => {
                self.remove(&file.rel_path);
                Inserted::Replaced
            }
            None if self.entries.len() >= self.max_files => {
                return Err(IndexError::Full {
                    max: self.max_files,
                });
            }
            None => Inserted::New,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.link(id, file);
        self.version += 1;
        Ok(outcome)
    }

    /// Removes the file at `rel_path`; returns it if it was indexed.
    pub fn remove(&mut self, rel_path: &Path) -> Option<SharedFile> {
        let id = self.by_path.remove(rel_path)?;
        let entry = self.unlink(id);
        self.version += 1;
        Some(entry.file)
    }

    /// Moves the entry at `from` to `to` (same content, size and time; new name), replacing
    /// any entry at `to`.
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<(), IndexError> {
        let Some(name) = file_name_of(to) else {
            return Err(IndexError::InvalidPath(to.to_path_buf()));
        };
        let name = name.to_owned();
        let Some(old) = self.get(from).cloned() else {
            return Err(IndexError::NotFound(from.to_path_buf()));
        };
        if from == to {
            return Ok(());
        }
        self.remove(from);
        let moved = SharedFile {
            rel_path: to.to_path_buf(),
            name,
            ..old
        };
        self.insert(moved).map(|_| ())
    }

    /// Files whose name matches every token of `query_tokens` (normalised by
    /// [`crate::tokenize::tokens`]; see [`crate::tokenize`] for the matching rule), at most
    /// one per content hash, at most `limit` (capped at [`MAX_SEARCH_RESULTS`]), in order of
    /// indexing. An empty query matches nothing.
    pub fn search<S: AsRef<str>>(&self, query_tokens: &[S], limit: usize) -> Vec<SharedFile> {
        let limit = limit.min(MAX_SEARCH_RESULTS);
        if query_tokens.is_empty() || limit == 0 {
            return Vec::new();
        }
        // Generate candidates from the most selective token, then check the others.
        let mut best: Option<(usize, Vec<&BTreeSet<EntryId>>)> = None;
        for q in query_tokens {
            let postings = self.postings(q.as_ref());
            let cost: usize = postings.iter().map(|p| p.len()).sum();
            if cost == 0 {
                return Vec::new();
            }
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, postings));
            }
        }
        let Some((_, postings)) = best else {
            return Vec::new();
        };
        let mut candidates: Vec<EntryId> = postings.into_iter().flatten().copied().collect();
        candidates.sort_unstable();
        candidates.dedup();

        let mut seen = BTreeSet::new();
        let mut hits = Vec::new();
        for id in candidates {
            let entry = &self.entries[&id];
            if all_tokens_match(query_tokens, &entry.tokens) && seen.insert(entry.file.content) {
                hits.push(entry.file.clone());
                if hits.len() == limit {
                    break;
                }
            }
        }
        hits
    }

    /// The posting sets of every keyword `query` matches: itself, and the keywords it is
    /// a long-enough prefix of.
    fn postings(&self, query: &str) -> Vec<&BTreeSet<EntryId>> {
        self.by_keyword
            .range::<str, _>((std::ops::Bound::Included(query), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(query))
            .filter(|(k, _)| token_matches(query, k))
            .map(|(_, ids)| ids)
            .collect()
    }

    fn link(&mut self, id: EntryId, file: SharedFile) {
        // The name's words first, so a deep path cannot crowd them out of the cap.
        let mut words = tokens(&file.name);
        if let Some(folders) = file.rel_path.parent().and_then(Path::to_str) {
            for word in tokens(folders) {
                if !words.contains(&word) {
                    words.push(word);
                }
            }
        }
        let toks: Box<[Box<str>]> = words
            .into_iter()
            .take(MAX_TOKENS_PER_FILE)
            .map(String::into_boxed_str)
            .collect();
        for t in toks.iter() {
            match self.by_keyword.get_mut(t) {
                Some(ids) => {
                    ids.insert(id);
                }
                None => {
                    self.filter.add(t);
                    self.by_keyword.insert(t.clone(), BTreeSet::from([id]));
                }
            }
        }
        let holders = self.by_content.entry(file.content).or_default();
        if holders.is_empty() {
            self.filter.add_exact(&content_keyword(&file.content));
        }
        holders.insert(id);
        self.by_path.insert(file.rel_path.clone(), id);
        self.entries.insert(id, Entry { file, tokens: toks });
    }

    fn unlink(&mut self, id: EntryId) -> Entry {
        let entry = self
            .entries
            .remove(&id)
            .expect("by_path points at an entry");
        for t in entry.tokens.iter() {
            if let Some(ids) = self.by_keyword.get_mut(t) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_keyword.remove(t);
                    self.filter.remove(t);
                }
            }
        }
        if let Some(ids) = self.by_content.get_mut(&entry.file.content) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_content.remove(&entry.file.content);
                self.filter
                    .remove_exact(&content_keyword(&entry.file.content));
            }
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Summary;

    fn file(path: &str, content: &[u8]) -> SharedFile {
        let rel_path = PathBuf::from(path);
        SharedFile {
            content: ContentId::of(content),
            name: file_name_of(&rel_path).unwrap().to_owned(),
            rel_path,
            size: content.len() as u64,
            mtime_ns: 1,
        }
    }

    fn names(hits: &[SharedFile]) -> Vec<&str> {
        hits.iter().map(|f| f.name.as_str()).collect()
    }

    fn q(text: &str) -> Vec<String> {
        tokens(text)
    }

    #[test]
    fn folder_names_are_searchable_and_leave_with_the_file() {
        let mut ix = Index::default();
        ix.insert(file("Jazz Classics/Miles/so what.flac", b"1"))
            .unwrap();
        ix.insert(file("rock/jazz-free.ogg", b"2")).unwrap();
        let hits = ix.search(&q("jazz"), 10);
        let mut found = names(&hits);
        found.sort();
        assert_eq!(found, ["jazz-free.ogg", "so what.flac"]);
        assert_eq!(names(&ix.search(&q("miles what"), 10)), ["so what.flac"]);
        assert!(ix.summary(1).might_match(&q("classics")));
        ix.rename(
            Path::new("Jazz Classics/Miles/so what.flac"),
            Path::new("misc/so what.flac"),
        )
        .unwrap();
        assert!(ix.search(&q("miles"), 10).is_empty());
        assert_eq!(names(&ix.search(&q("misc what"), 10)), ["so what.flac"]);
    }

    #[test]
    fn insert_makes_a_file_findable_by_each_keyword_and_prefix() {
        let mut ix = Index::default();
        ix.insert(file("music/My_Song (Live).FLAC", b"a")).unwrap();
        for query in ["song", "SONG live", "flac", "liv", "my song", "music song"] {
            assert_eq!(
                names(&ix.search(&q(query), 10)),
                ["My_Song (Live).FLAC"],
                "{query}"
            );
        }
        for query in ["musical", "so", "songs", "live mp3", ""] {
            assert!(ix.search(&q(query), 10).is_empty(), "{query}");
        }
    }

    #[test]
    fn remove_forgets_the_file_and_its_keywords() {
        let mut ix = Index::default();
        ix.insert(file("a.txt", b"a")).unwrap();
        ix.insert(file("b.txt", b"b")).unwrap();
        assert_eq!(
            ix.remove(Path::new("a.txt")).map(|f| f.name),
            Some("a.txt".into())
        );
        assert_eq!(ix.remove(Path::new("a.txt")), None);
        assert_eq!(ix.keywords().collect::<Vec<_>>(), ["b", "txt"]);
        assert_eq!(ix.by_content(&ContentId::of(b"a")).count(), 0);
        assert_eq!(names(&ix.search(&q("txt"), 10)), ["b.txt"]);
    }

    #[test]
    fn rename_moves_keywords_and_keeps_content() {
        let mut ix = Index::default();
        ix.insert(file("old name.txt", b"x")).unwrap();
        ix.rename(Path::new("old name.txt"), Path::new("dir/fresh title.txt"))
            .unwrap();
        assert!(ix.search(&q("old"), 10).is_empty());
        let hits = ix.search(&q("fresh"), 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].rel_path, Path::new("dir/fresh title.txt"));
        assert_eq!(hits[0].content, ContentId::of(b"x"));
        assert_eq!(
            ix.rename(Path::new("nope"), Path::new("x")),
            Err(IndexError::NotFound("nope".into()))
        );
    }

    #[test]
    fn replacing_a_path_updates_content_and_same_entry_is_no_change() {
        let mut ix = Index::default();
        assert_eq!(ix.insert(file("a.txt", b"1")), Ok(Inserted::New));
        let v = ix.version();
        assert_eq!(ix.insert(file("a.txt", b"1")), Ok(Inserted::Unchanged));
        assert_eq!(ix.version(), v);
        assert_eq!(ix.insert(file("a.txt", b"22")), Ok(Inserted::Replaced));
        assert!(ix.version() > v);
        assert_eq!(ix.len(), 1);
        assert_eq!(
            ix.get(Path::new("a.txt")).unwrap().content,
            ContentId::of(b"22")
        );
        assert_eq!(ix.by_content(&ContentId::of(b"1")).count(), 0);
    }

    #[test]
    fn same_content_at_two_paths_is_one_hit_but_two_entries() {
        let mut ix = Index::default();
        ix.insert(file("a/song.mp3", b"s")).unwrap();
        ix.insert(file("b/song.mp3", b"s")).unwrap();
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.by_content(&ContentId::of(b"s")).count(), 2);
        assert_eq!(ix.search(&q("song"), 10).len(), 1);
        ix.remove(Path::new("a/song.mp3"));
        assert_eq!(ix.by_content(&ContentId::of(b"s")).count(), 1);
    }

    #[test]
    fn every_change_moves_the_version() {
        let mut ix = Index::default();
        let mut last = ix.version();
        let mut step = |ix: &Index| {
            assert!(ix.version() > last);
            last = ix.version();
        };
        ix.insert(file("a.txt", b"a")).unwrap();
        step(&ix);
        ix.rename(Path::new("a.txt"), Path::new("b.txt")).unwrap();
        step(&ix);
        ix.remove(Path::new("b.txt"));
        step(&ix);
    }

    #[test]
    fn invalid_paths_are_refused() {
        let mut ix = Index::default();
        for bad in ["", "/abs.txt", "../up.txt", "a/./b", "a/../b"] {
            let mut f = file("x", b"x");
            f.rel_path = bad.into();
            assert!(
                matches!(ix.insert(f), Err(IndexError::InvalidPath(_))),
                "{bad}"
            );
        }
        let mut f = file("dir/a.txt", b"x");
        f.name = "other.txt".into();
        assert!(matches!(ix.insert(f), Err(IndexError::InvalidPath(_))));
        assert!(ix.is_empty());
    }

    #[test]
    fn paths_under_lists_exactly_a_subtree() {
        let mut ix = Index::default();
        for p in ["a.txt", "a/b.txt", "a/c/d.txt", "ab/e.txt", "b.txt"] {
            ix.insert(file(p, p.as_bytes())).unwrap();
        }
        let under = |d: &str| ix.paths_under(Path::new(d));
        assert_eq!(under("a"), [PathBuf::from("a/b.txt"), "a/c/d.txt".into()]);
        assert_eq!(under("a/c/d.txt"), [PathBuf::from("a/c/d.txt")]);
        assert_eq!(under("").len(), 5);
        assert!(under("zz").is_empty());
    }

    #[test]
    fn index_is_bounded() {
        let mut ix = Index::new(2);
        ix.insert(file("a", b"a")).unwrap();
        ix.insert(file("b", b"b")).unwrap();
        assert_eq!(ix.insert(file("c", b"c")), Err(IndexError::Full { max: 2 }));
        assert_eq!(
            ix.insert(file("b", b"bb")),
            Ok(Inserted::Replaced),
            "replacing is fine"
        );
    }

    #[test]
    fn search_limit_is_respected_and_capped() {
        let mut ix = Index::default();
        for i in 0..(MAX_SEARCH_RESULTS + 10) {
            ix.insert(file(&format!("track {i}.ogg"), i.to_string().as_bytes()))
                .unwrap();
        }
        assert_eq!(ix.search(&q("track"), 5).len(), 5);
        assert_eq!(ix.search(&q("ogg"), usize::MAX).len(), MAX_SEARCH_RESULTS);
        assert_eq!(names(&ix.search(&q("track 7"), 10)), ["track 7.ogg"]);
        assert!(ix.search(&q("track"), 0).is_empty());
    }

    #[test]
    fn summary_follows_the_keyword_set() {
        let mut ix = Index::default();
        ix.insert(file("Blue Monday.mp3", b"1")).unwrap();
        ix.insert(file("Blue Velvet.mkv", b"2")).unwrap();
        // Keywords with their prefixes, and each content hash on its own.
        let expected = |ix: &Index| {
            let mut filter = CountingFilter::default();
            for k in ix.keywords() {
                filter.add(k);
            }
            for f in ix.files() {
                filter.add_exact(&content_keyword(&f.content));
            }
            filter.summary(1)
        };
        assert_eq!(ix.summary(1), expected(&ix));
        assert!(ix.summary(1).might_match(&q("velv blue")));
        let velvet = ContentId::of(b"2");
        assert!(ix.summary(1).might_hold(&velvet));
        let g = ix.summary_generation();
        ix.remove(Path::new("Blue Velvet.mkv"));
        assert_ne!(ix.summary_generation(), g);
        assert_eq!(ix.summary(1), expected(&ix));
        assert!(!ix.summary(1).might_hold(&velvet));
        ix.remove(Path::new("Blue Monday.mp3"));
        assert_eq!(ix.summary(1), Summary::empty(1));
    }

    #[test]
    fn unicode_names_are_found_by_any_case_or_form() {
        let mut ix = Index::default();
        ix.insert(file("Ünïcödé Straße.txt", b"u")).unwrap();
        ix.insert(file("東京タワー.jpg", b"t")).unwrap();
        assert_eq!(ix.search(&q("ÜNÏCÖDÉ"), 10).len(), 1);
        assert_eq!(ix.search(&q("unicode"), 10).len(), 1, "accents are ignored");
        assert_eq!(
            ix.search(&q("strasse"), 10).len(),
            0,
            "ß is not folded to ss"
        );
        assert_eq!(ix.search(&q("straße"), 10).len(), 1);
        assert_eq!(ix.search(&q("東京"), 10).len(), 1);
    }
}
