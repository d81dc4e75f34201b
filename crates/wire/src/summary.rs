//! The share summary: a compact keyword filter a peer publishes to its neighbours, so they
//! can answer "might this peer have it?" without asking (Gnutella's QRP table, simplified).
//!
//! # Filter
//!
//! A bitmap of [`SUMMARY_BITS`] = 2^16 bits ([`SUMMARY_BYTES`] = 8 KiB). For every keyword
//! of every indexed file name (see [`crate::tokenize`]) and for every prefix of it that a
//! query token could match with ([`crate::tokenize::matchable_prefixes`]: the keyword
//! itself and its prefixes of at least 3 characters, 2 in CJK scripts), the bit
//! [`bit_index`]`(s)` is set, where
//!
//! ```text
//! bit_index(s) = u16::from_le_bytes([d[0], d[1]])   with d = BLAKE3(UTF-8 bytes of s)
//! ```
//!
//! which is the little-endian `u32` of the digest's first four bytes, modulo 2^16. Bit `i`
//! is bit `i % 8` (least significant first) of byte `i / 8`.
//!
//! A query (a list of tokens from [`crate::tokenize::tokens`]) *might match* when the
//! bit of every token is set ([`Summary::might_match`]); an empty query matches nothing.
//! False positives happen (a neighbour is then asked for nothing); false negatives never do,
//! because every query token that matches a file token is one of the strings whose bit was
//! set.
//!
//! # Version
//!
//! A `u64`, never 0 (0 in a heartbeat means "no summary"). The publisher changes it
//! whenever the bitmap changes, and only then, and makes it increase across restarts (the
//! share uses `max(previous + 1, milliseconds since the Unix epoch)`), so "newer" is a
//! plain comparison.
//!
//! # Encoding
//!
//! The payload is one tag byte followed by the body:
//!
//! - `0x00` **dense**: exactly 8,192 bytes, the bitmap as above. Total 8,193 bytes.
//! - `0x01` **sparse**: the indices of the set bits in strictly increasing order, as
//!   unsigned LEB128 varints (7 bits per byte, least significant group first, high bit =
//!   "more bytes follow"), each at most 3 bytes and minimally encoded. The first varint is
//!   the first index; each later one is the gap to the previous index minus one
//!   (`index[k] - index[k-1] - 1`). Every index must be at most 65,535. An empty body is
//!   the empty filter.
//!
//! The encoder sends the sparse form when its payload (tag included) is at most 8,192 bytes,
//! else the dense one; a decoder accepts either. docs/PROTOCOL.md ("Share summary
//! encoding") is the normative text, docs/vectors/summary.json has examples. The
//! payload is then cut into chunks for [`PeerMsg::SummaryChunk`]: `chunks` =
//! ceil(len / 1,024) (1 to [`MAX_SUMMARY_CHUNKS`] = 9), chunk `i` carries bytes
//! `[1,024·i, min(1,024·(i+1), len))`. Every chunk but the last is exactly
//! [`MAX_SUMMARY_CHUNK`] = 1,024 bytes; the last holds 1 to 1,024 bytes. A receiver
//! ([`SummaryAssembler`]) rejects a chunk whose count, index or size breaks these rules,
//! a chunk of a version not newer than the last summary it completed or older than the
//! one it is assembling, and a payload that does not decode exactly as above.
//!
//! [`PeerMsg::SummaryChunk`]: crate::peer::message::PeerMsg::SummaryChunk

use crate::peer::message::MAX_SUMMARY_CHUNK;

use crate::tokenize::matchable_prefixes;

/// Number of bits in a summary's bitmap.
pub const SUMMARY_BITS: usize = 1 << 16;
/// Size of a summary's bitmap in bytes.
pub const SUMMARY_BYTES: usize = SUMMARY_BITS / 8;
/// Longest encoded summary: the dense form.
pub const MAX_ENCODED_LEN: usize = 1 + SUMMARY_BYTES;
/// Most chunks a summary is split into.
pub const MAX_SUMMARY_CHUNKS: u16 = MAX_ENCODED_LEN.div_ceil(MAX_SUMMARY_CHUNK) as u16;

const TAG_DENSE: u8 = 0x00;
const TAG_SPARSE: u8 = 0x01;
/// Longest LEB128 varint of an index (16 bits need 3 groups of 7).
const MAX_VARINT_LEN: usize = 3;

/// Why a summary or one of its chunks was rejected. Nothing is stored for a rejected
/// chunk, and a partly assembled summary is kept unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("summary version 0 is reserved for \"no summary\"; the chunk was dropped")]
    ZeroVersion,
    #[error("summary version {got} is not newer than {have}; the chunk was dropped")]
    Stale { got: u64, have: u64 },
    #[error("chunk count {0} is outside 1..={MAX_SUMMARY_CHUNKS}; the chunk was dropped")]
    BadChunkCount(u16),
    #[error("chunk {chunk} is out of range for {chunks} chunks; the chunk was dropped")]
    ChunkOutOfRange { chunk: u16, chunks: u16 },
    #[error(
        "chunk {chunk} of version {version} says {got} chunks, earlier ones said {expected}; the chunk was dropped"
    )]
    InconsistentChunkCount {
        version: u64,
        chunk: u16,
        expected: u16,
        got: u16,
    },
    #[error("chunk {chunk} of {chunks} has {len} bytes; the chunk was dropped")]
    WrongChunkSize { chunk: u16, chunks: u16, len: usize },
    #[error(
        "chunk {chunk} of version {version} arrived twice with different bytes; the second copy was dropped"
    )]
    ConflictingChunk { version: u64, chunk: u16 },
    #[error("malformed summary payload: {0}; the summary was discarded")]
    Malformed(&'static str),
}

/// The bit a keyword (or keyword prefix) sets in a summary.
pub fn bit_index(keyword: &str) -> u16 {
    let digest = blake3::hash(keyword.as_bytes());
    let d = digest.as_bytes();
    u16::from_le_bytes([d[0], d[1]])
}

/// The string whose bit marks that a share holds `content`, so that hash queries can use
/// the summary too. Only its own bit is set (no prefixes), and `#` never starts a token.
pub fn content_keyword(content: &crate::ContentId) -> String {
    format!("#{content}")
}

/// A versioned keyword bitmap; see the [module documentation](self) for its meaning and
/// its encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Summary {
    /// The publisher's version of this bitmap; never 0 for a published summary.
    pub version: u64,
    bits: Vec<u8>,
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("version", &self.version)
            .field("bits_set", &self.count_ones())
            .finish()
    }
}

impl Summary {
    /// A summary with no bit set: matches no query.
    pub fn empty(version: u64) -> Self {
        Self {
            version,
            bits: vec![0; SUMMARY_BYTES],
        }
    }

    /// The summary of a set of file-name keywords (each as produced by
    /// [`crate::tokenize::tokens`]), including their matchable prefixes.
    pub fn from_keywords<'a>(version: u64, keywords: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Self::empty(version);
        for keyword in keywords {
            for prefix in matchable_prefixes(keyword) {
                s.set(bit_index(prefix));
            }
        }
        s
    }

    /// A summary from a raw bitmap; `None` unless it is exactly [`SUMMARY_BYTES`] long.
    pub fn from_bits(version: u64, bits: Vec<u8>) -> Option<Self> {
        (bits.len() == SUMMARY_BYTES).then_some(Self { version, bits })
    }

    /// The bitmap, [`SUMMARY_BYTES`] long.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// Whether bit `index` is set.
    pub fn bit(&self, index: u16) -> bool {
        let i = usize::from(index);
        self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    fn set(&mut self, index: u16) {
        let i = usize::from(index);
        self.bits[i / 8] |= 1 << (i % 8);
    }

    /// Number of bits set: a measure of how full (and how false-positive prone) it is.
    pub fn count_ones(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether a file whose name has every one of `query_tokens` (normalised by
    /// [`crate::tokenize::tokens`]) might be in the summarised share. Never false for a
    /// query the share's index would answer; sometimes true for one it would not. An
    /// empty query matches nothing.
    pub fn might_match<S: AsRef<str>>(&self, query_tokens: &[S]) -> bool {
        !query_tokens.is_empty() && query_tokens.iter().all(|t| self.bit(bit_index(t.as_ref())))
    }

    /// Whether the summarised share might hold the file with this content hash.
    pub fn might_hold(&self, content: &crate::ContentId) -> bool {
        self.bit(bit_index(&content_keyword(content)))
    }

    /// The payload: a tag byte and the dense or sparse body, whichever is shorter.
    pub fn encode(&self) -> Vec<u8> {
        let mut sparse = Vec::with_capacity(64);
        sparse.push(TAG_SPARSE);
        let mut previous: Option<usize> = None;
        for index in (0..SUMMARY_BITS).filter(|&i| self.bits[i / 8] & (1 << (i % 8)) != 0) {
            let value = match previous {
                None => index,
                Some(p) => index - p - 1,
            };
            write_varint(&mut sparse, value as u32);
            previous = Some(index);
            if sparse.len() >= MAX_ENCODED_LEN {
                break;
            }
        }
        if sparse.len() <= SUMMARY_BYTES {
            return sparse;
        }
        let mut dense = Vec::with_capacity(MAX_ENCODED_LEN);
        dense.push(TAG_DENSE);
        dense.extend_from_slice(&self.bits);
        dense
    }

    /// Parses a payload produced by [`Summary::encode`] (either form).
    pub fn decode(version: u64, payload: &[u8]) -> Result<Self, SummaryError> {
        let (&tag, body) = payload
            .split_first()
            .ok_or(SummaryError::Malformed("empty payload"))?;
        match tag {
            TAG_DENSE => {
                if body.len() != SUMMARY_BYTES {
                    return Err(SummaryError::Malformed("dense bitmap of the wrong length"));
                }
                Ok(Self {
                    version,
                    bits: body.to_vec(),
                })
            }
            TAG_SPARSE => {
                let mut s = Self::empty(version);
                let mut rest = body;
                let mut next_min = 0usize;
                while !rest.is_empty() {
                    let (value, used) = read_varint(rest)?;
                    rest = &rest[used..];
                    let index = next_min + value as usize;
                    if index >= SUMMARY_BITS {
                        return Err(SummaryError::Malformed("bit index beyond 65535"));
                    }
                    s.set(index as u16);
                    next_min = index + 1;
                }
                Ok(s)
            }
            _ => Err(SummaryError::Malformed("unknown encoding tag")),
        }
    }

    /// The encoded summary cut for [`PeerMsg::SummaryChunk`]: `(chunk, chunks, data)` for
    /// each chunk in order; at least one, at most [`MAX_SUMMARY_CHUNKS`].
    ///
    /// [`PeerMsg::SummaryChunk`]: crate::peer::message::PeerMsg::SummaryChunk
    pub fn chunks(&self) -> Vec<(u16, u16, Vec<u8>)> {
        let payload = self.encode();
        let count = payload.len().div_ceil(MAX_SUMMARY_CHUNK) as u16;
        payload
            .chunks(MAX_SUMMARY_CHUNK)
            .enumerate()
            .map(|(i, data)| (i as u16, count, data.to_vec()))
            .collect()
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let group = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(group);
            return;
        }
        out.push(group | 0x80);
    }
}

/// One minimal varint of at most [`MAX_VARINT_LEN`] bytes: its value and length.
fn read_varint(bytes: &[u8]) -> Result<(u32, usize), SummaryError> {
    let mut value = 0u32;
    for (i, &b) in bytes.iter().take(MAX_VARINT_LEN).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(SummaryError::Malformed("non-minimal varint"));
            }
            return Ok((value, i + 1));
        }
    }
    Err(SummaryError::Malformed("truncated or overlong varint"))
}

/// Collects the chunks of a neighbour's summary and yields it when complete.
///
/// Holds at most one version in progress ([`MAX_SUMMARY_CHUNKS`] × 1 KiB). A chunk of a
/// newer version discards the partial one; chunks of the version already yielded or of an
/// older one are [`SummaryError::Stale`].
#[derive(Debug, Clone, Default)]
pub struct SummaryAssembler {
    completed: Option<u64>,
    partial: Option<Partial>,
}

#[derive(Debug, Clone)]
struct Partial {
    version: u64,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
}

impl SummaryAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one chunk; returns the summary when this chunk completes it.
    pub fn accept(
        &mut self,
        version: u64,
        chunk: u16,
        chunks: u16,
        data: &[u8],
    ) -> Result<Option<Summary>, SummaryError> {
        if version == 0 {
            return Err(SummaryError::ZeroVersion);
        }
        if chunks == 0 || chunks > MAX_SUMMARY_CHUNKS {
            return Err(SummaryError::BadChunkCount(chunks));
        }
        if chunk >= chunks {
            return Err(SummaryError::ChunkOutOfRange { chunk, chunks });
        }
        let size_ok = if chunk + 1 < chunks {
            data.len() == MAX_SUMMARY_CHUNK
        } else {
            (1..=MAX_SUMMARY_CHUNK).contains(&data.len())
        };
        if !size_ok {
            return Err(SummaryError::WrongChunkSize {
                chunk,
                chunks,
                len: data.len(),
            });
        }
        let newest = self
            .completed
            .into_iter()
            .chain(self.partial.as_ref().map(|p| p.version))
            .max();
        if let Some(have) = self.completed.filter(|&c| version <= c) {
            return Err(SummaryError::Stale { got: version, have });
        }
        if let Some(have) = newest.filter(|&n| version < n) {
            return Err(SummaryError::Stale { got: version, have });
        }
        let partial = match &mut self.partial {
            Some(p) if p.version == version => p,
            slot => slot.insert(Partial {
                version,
                parts: vec![None; usize::from(chunks)],
                received: 0,
            }),
        };
        if partial.parts.len() != usize::from(chunks) {
            return Err(SummaryError::InconsistentChunkCount {
                version,
                chunk,
                expected: partial.parts.len() as u16,
                got: chunks,
            });
        }
        match &partial.parts[usize::from(chunk)] {
            Some(existing) if existing == data => return Ok(None),
            Some(_) => return Err(SummaryError::ConflictingChunk { version, chunk }),
            None => {}
        }
        partial.parts[usize::from(chunk)] = Some(data.to_vec());
        partial.received += 1;
        if partial.received < partial.parts.len() {
            return Ok(None);
        }
        let done = self.partial.take().expect("partial was just filled");
        let payload: Vec<u8> = done.parts.into_iter().flatten().flatten().collect();
        let summary = Summary::decode(version, &payload)?;
        self.completed = Some(version);
        Ok(Some(summary))
    }

    /// The version being assembled, if any.
    pub fn assembling(&self) -> Option<u64> {
        self.partial.as_ref().map(|p| p.version)
    }

    /// The chunk indices still missing from the version being assembled (to re-request).
    pub fn missing(&self) -> Vec<u16> {
        self.partial
            .as_ref()
            .map(|p| {
                (0..p.parts.len() as u16)
                    .filter(|&i| p.parts[usize::from(i)].is_none())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The version last yielded.
    pub fn completed(&self) -> Option<u64> {
        self.completed
    }

    /// Forgets everything, e.g. when the link to the neighbour is re-established.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// A summary bitmap maintained incrementally: a counter per bit, so keywords can be added
/// and removed as files come and go without rebuilding from the whole index.
#[derive(Clone)]
pub struct CountingFilter {
    counts: Vec<u32>,
    generation: u64,
}

impl std::fmt::Debug for CountingFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingFilter")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Default for CountingFilter {
    fn default() -> Self {
        Self {
            counts: vec![0; SUMMARY_BITS],
            generation: 0,
        }
    }
}

impl CountingFilter {
    /// Counts one more keyword (with its matchable prefixes).
    pub fn add(&mut self, keyword: &str) {
        for prefix in matchable_prefixes(keyword) {
            let c = &mut self.counts[usize::from(bit_index(prefix))];
            *c = c.saturating_add(1);
            if *c == 1 {
                self.generation += 1;
            }
        }
    }

    /// Counts one exact string (no prefixes), such as a [`content_keyword`].
    pub fn add_exact(&mut self, keyword: &str) {
        let c = &mut self.counts[usize::from(bit_index(keyword))];
        *c = c.saturating_add(1);
        if *c == 1 {
            self.generation += 1;
        }
    }

    /// Uncounts a string previously [added exactly](Self::add_exact).
    pub fn remove_exact(&mut self, keyword: &str) {
        let c = &mut self.counts[usize::from(bit_index(keyword))];
        if *c != 0 && *c != u32::MAX {
            *c -= 1;
            if *c == 0 {
                self.generation += 1;
            }
        }
    }

    /// Uncounts a keyword previously [added](Self::add).
    pub fn remove(&mut self, keyword: &str) {
        for prefix in matchable_prefixes(keyword) {
            let c = &mut self.counts[usize::from(bit_index(prefix))];
            // A saturated counter stays set forever: a false positive, never a negative.
            if *c != 0 && *c != u32::MAX {
                *c -= 1;
                if *c == 0 {
                    self.generation += 1;
                }
            }
        }
    }

    /// Changes every time a bit flips (it may flip back: compare bitmaps to be sure).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The current bitmap as a summary at `version`.
    pub fn summary(&self, version: u64) -> Summary {
        let mut bits = vec![0u8; SUMMARY_BYTES];
        for (i, &c) in self.counts.iter().enumerate() {
            if c != 0 {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        Summary { version, bits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::{token_matches, tokens};
    use proptest::prelude::*;

    fn assemble(chunks: &[(u16, u16, Vec<u8>)], version: u64) -> Summary {
        let mut a = SummaryAssembler::new();
        let mut out = None;
        for (i, n, data) in chunks {
            if let Some(s) = a.accept(version, *i, *n, data).unwrap() {
                out = Some(s);
            }
        }
        out.expect("all chunks given")
    }

    #[test]
    fn bit_index_is_blake3_first_bytes_little_endian() {
        let d = blake3::hash(b"song");
        assert_eq!(
            u32::from(bit_index("song")),
            u32::from_le_bytes(d.as_bytes()[..4].try_into().unwrap()) % (1 << 16)
        );
    }

    #[test]
    fn empty_summary_is_one_byte_in_one_chunk() {
        let s = Summary::empty(7);
        assert_eq!(s.encode(), [TAG_SPARSE]);
        assert_eq!(s.chunks(), [(0, 1, vec![TAG_SPARSE])]);
        assert_eq!(assemble(&s.chunks(), 7), s);
        assert!(!s.might_match(&["a"]));
    }

    #[test]
    fn sparse_encoding_matches_the_documented_bytes() {
        let mut s = Summary::empty(1);
        for i in [0u16, 1, 200, 65535] {
            s.set(i);
        }
        // 0 → 00; gap 0 → 00; 200-1-1 = 198 → c6 01; 65535-200-1 = 65334 → b6 fe 03
        assert_eq!(
            hex::encode(s.encode()),
            "01".to_owned() + "00" + "00" + "c601" + "b6fe03"
        );
        assert_eq!(Summary::decode(1, &s.encode()).unwrap(), s);
    }

    #[test]
    fn full_summary_is_dense_in_nine_chunks() {
        let s = Summary::from_bits(3, vec![0xff; SUMMARY_BYTES]).unwrap();
        let payload = s.encode();
        assert_eq!(payload.len(), MAX_ENCODED_LEN);
        assert_eq!(payload[0], TAG_DENSE);
        let chunks = s.chunks();
        assert_eq!(chunks.len(), usize::from(MAX_SUMMARY_CHUNKS));
        assert!(chunks[..8].iter().all(|c| c.2.len() == MAX_SUMMARY_CHUNK));
        assert_eq!(chunks[8].2.len(), 1);
        assert_eq!(assemble(&chunks, 3), s);
    }

    #[test]
    fn might_match_requires_every_token() {
        let s = Summary::from_keywords(
            1,
            tokens("Daft Punk - Around the World.mp3")
                .iter()
                .map(String::as_str),
        );
        assert!(s.might_match(&["daft", "punk"]));
        assert!(
            s.might_match(&["aroun", "wor"]),
            "prefixes of 3+ chars are in"
        );
        assert!(!s.might_match::<&str>(&[]));
        // A token absent from the name is (almost surely) absent from a sparse filter.
        assert!(!s.might_match(&["daft", "zzzqqq"]));
    }

    #[test]
    fn a_summary_of_an_accented_name_lets_unaccented_queries_through() {
        // The last-hop filter must not hide "Café" from a search for "cafe".
        let s = Summary::from_keywords(1, tokens("Café İstanbul.mp3").iter().map(String::as_str));
        for query in ["cafe", "CAFE", "café", "caf", "istanbul", "İSTANBUL"] {
            assert!(s.might_match(&tokens(query)), "{query}");
        }
    }

    #[test]
    fn decode_rejects_malformed_payloads() {
        let bad: &[&[u8]] = &[
            &[],
            &[0x02],
            &[TAG_DENSE, 0, 0],
            &[TAG_SPARSE, 0x80],                   // truncated varint
            &[TAG_SPARSE, 0x80, 0x80, 0x80, 0x01], // overlong
            &[TAG_SPARSE, 0x80, 0x00],             // non-minimal
            &[TAG_SPARSE, 0xff, 0xff, 0x03],       // 65535: fine alone…
        ];
        for payload in &bad[..6] {
            assert!(Summary::decode(1, payload).is_err(), "{payload:?}");
        }
        assert!(Summary::decode(1, bad[6]).is_ok());
        // …but one more index after 65535 is out of range.
        assert_eq!(
            Summary::decode(1, &[TAG_SPARSE, 0xff, 0xff, 0x03, 0x00]),
            Err(SummaryError::Malformed("bit index beyond 65535"))
        );
    }

    #[test]
    fn assembler_rejects_bad_counts_indices_and_sizes() {
        let mut a = SummaryAssembler::new();
        let full = vec![0u8; MAX_SUMMARY_CHUNK];
        assert_eq!(a.accept(0, 0, 1, &[1]), Err(SummaryError::ZeroVersion));
        assert_eq!(a.accept(1, 0, 0, &[1]), Err(SummaryError::BadChunkCount(0)));
        assert_eq!(
            a.accept(1, 0, 10, &full),
            Err(SummaryError::BadChunkCount(10))
        );
        assert_eq!(
            a.accept(1, 2, 2, &[1]),
            Err(SummaryError::ChunkOutOfRange {
                chunk: 2,
                chunks: 2
            })
        );
        assert!(matches!(
            a.accept(1, 0, 2, &[1]),
            Err(SummaryError::WrongChunkSize { .. })
        ));
        assert!(matches!(
            a.accept(1, 1, 2, &[]),
            Err(SummaryError::WrongChunkSize { .. })
        ));
        let too_big = vec![0u8; MAX_SUMMARY_CHUNK + 1];
        assert!(matches!(
            a.accept(1, 0, 1, &too_big),
            Err(SummaryError::WrongChunkSize { .. })
        ));
        assert_eq!(a.assembling(), None, "nothing was stored");

        assert_eq!(a.accept(1, 0, 3, &full), Ok(None));
        assert_eq!(a.missing(), [1, 2]);
        assert!(matches!(
            a.accept(1, 1, 2, &[1]),
            Err(SummaryError::InconsistentChunkCount {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert_eq!(
            a.accept(1, 0, 3, &full),
            Ok(None),
            "an identical duplicate is harmless"
        );
        let mut other = full.clone();
        other[0] = 1;
        assert_eq!(
            a.accept(1, 0, 3, &other),
            Err(SummaryError::ConflictingChunk {
                version: 1,
                chunk: 0
            })
        );
        assert_eq!(a.missing(), [1, 2]);
    }

    #[test]
    fn assembler_drops_old_versions_and_newer_ones_replace_partial() {
        let old = Summary::from_keywords(5, ["alpha"]);
        let new = Summary::from_bits(9, vec![0xaa; SUMMARY_BYTES]).unwrap();
        let mut a = SummaryAssembler::new();
        let new_chunks = new.chunks();
        // Start version 9, then a chunk of version 5 arrives late: stale.
        let (i, n, d) = &new_chunks[0];
        assert_eq!(a.accept(9, *i, *n, d), Ok(None));
        let (i, n, d) = &old.chunks()[0];
        assert_eq!(
            a.accept(5, *i, *n, d),
            Err(SummaryError::Stale { got: 5, have: 9 })
        );
        // Version 10 supersedes the partial 9.
        let newer = Summary::from_keywords(10, ["beta"]);
        let (i, n, d) = &newer.chunks()[0];
        assert_eq!(a.accept(10, *i, *n, d), Ok(Some(newer.clone())));
        assert_eq!(a.completed(), Some(10));
        assert_eq!(
            a.accept(10, *i, *n, d),
            Err(SummaryError::Stale { got: 10, have: 10 })
        );
        let (i, n, d) = &new_chunks[1];
        assert_eq!(
            a.accept(9, *i, *n, d),
            Err(SummaryError::Stale { got: 9, have: 10 })
        );
    }

    #[test]
    fn a_malformed_complete_payload_is_discarded() {
        let mut a = SummaryAssembler::new();
        assert_eq!(
            a.accept(4, 0, 1, &[0x07]),
            Err(SummaryError::Malformed("unknown encoding tag"))
        );
        assert_eq!(a.assembling(), None);
        assert_eq!(a.completed(), None);
    }

    #[test]
    fn counting_filter_tracks_adds_and_removes() {
        let mut f = CountingFilter::default();
        f.add("songs");
        f.add("song");
        f.remove("songs");
        assert_eq!(f.summary(1), Summary::from_keywords(1, ["song"]));
        let g = f.generation();
        f.remove("song");
        assert!(f.generation() > g);
        assert_eq!(f.summary(1), Summary::empty(1));
    }

    fn arb_summary() -> impl Strategy<Value = Summary> {
        prop_oneof![
            // Sparse: a few bits.
            (1u64.., proptest::collection::vec(any::<u16>(), 0..3000)).prop_map(|(v, idx)| {
                let mut s = Summary::empty(v);
                for i in idx {
                    s.set(i);
                }
                s
            }),
            // Dense: random bytes.
            (
                1u64..,
                proptest::collection::vec(any::<u8>(), SUMMARY_BYTES)
            )
                .prop_map(|(v, bits)| Summary::from_bits(v, bits).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn encode_chunk_assemble_round_trips(s in arb_summary(), reverse in any::<bool>()) {
            let mut chunks = s.chunks();
            prop_assert!(!chunks.is_empty() && chunks.len() <= usize::from(MAX_SUMMARY_CHUNKS));
            let payload_len: usize = chunks.iter().map(|c| c.2.len()).sum();
            prop_assert!(payload_len <= MAX_ENCODED_LEN);
            if reverse {
                chunks.reverse();
            }
            prop_assert_eq!(assemble(&chunks, s.version), s);
        }

        #[test]
        fn decode_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Summary::decode(1, &payload);
        }

        #[test]
        fn might_match_has_no_false_negatives(
            names in proptest::collection::vec("[a-zA-Zéß東京 ._-]{1,24}", 1..40),
            pick in any::<prop::sample::Index>(),
            cut in 0usize..8,
        ) {
            let keywords: Vec<String> = names.iter().flat_map(|n| tokens(n)).collect();
            prop_assume!(!keywords.is_empty());
            let s = Summary::from_keywords(1, keywords.iter().map(String::as_str));
            // Any query built from one name's tokens, each possibly cut to a matching prefix.
            let name = pick.get(&names);
            let query: Vec<String> = tokens(name)
                .into_iter()
                .map(|t| {
                    let chars: Vec<char> = t.chars().collect();
                    let keep = chars.len().saturating_sub(cut).max(1);
                    let q: String = chars[..keep].iter().collect();
                    if token_matches(&q, &t) { q } else { t }
                })
                .collect();
            prop_assume!(!query.is_empty());
            prop_assert!(s.might_match(&query));
        }

        #[test]
        fn counting_filter_equals_rebuild(ops in proptest::collection::vec((any::<bool>(), "[a-e]{1,5}"), 0..60)) {
            let mut f = CountingFilter::default();
            let mut live: Vec<String> = Vec::new();
            for (add, kw) in ops {
                if add {
                    f.add(&kw);
                    live.push(kw);
                } else if let Some(pos) = live.iter().position(|k| *k == kw) {
                    f.remove(&kw);
                    live.remove(pos);
                }
            }
            prop_assert_eq!(f.summary(1), Summary::from_keywords(1, live.iter().map(String::as_str)));
        }
    }
}
