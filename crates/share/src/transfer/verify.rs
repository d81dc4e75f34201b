//! The outboard and the streaming verifier built on it (see the module doc of
//! [`crate::transfer`] for the scheme).

use std::io::{self, Read};

use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::Outboard;
use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

/// Chunk group size of every outboard Highway makes or accepts: 16 chunks of 1 KiB.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);

/// Bytes in one chunk group: the unit of verification.
pub const GROUP_BYTES: u64 = 16 * 1024;

/// Length of the little-endian size that precedes the outboard on the wire.
pub const SIZE_PREFIX_LEN: usize = 8;

const CHUNK_BYTES: u64 = 1024;

/// The shape of the tree for a file of `size` bytes.
pub(crate) fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// Length in bytes of the pre-order outboard of a file of `size` bytes (no size prefix).
pub fn outboard_len(size: u64) -> u64 {
    tree(size).outboard_size()
}

/// An outboard computed from a file's bytes.
#[derive(Debug, Clone)]
pub struct ComputedOutboard {
    /// BLAKE3 root of the data: its content id.
    pub root: blake3::Hash,
    /// Size of the data in bytes.
    pub size: u64,
    /// The pre-order outboard, [`outboard_len`]`(size)` bytes.
    pub outboard: Vec<u8>,
}

impl ComputedOutboard {
    /// The wire form served at `/v1/outboard/{id}`: the size as a little-endian `u64`, then
    /// the outboard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIZE_PREFIX_LEN + self.outboard.len());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.outboard);
        out
    }
}

/// Hashes `size` bytes read from `data` and returns their outboard and root.
///
/// Reads exactly `size` bytes; a shorter source is an `UnexpectedEof` error. Blocking: run
/// it on a blocking thread. `data` should be buffered (reads are one group at a time).
pub fn compute_outboard(data: impl Read, size: u64) -> io::Result<ComputedOutboard> {
    let tree = tree(size);
    let len = usize::try_from(tree.outboard_size())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    let mut ob = PreOrderMemOutboard {
        root: blake3::Hash::from([0; 32]),
        tree,
        data: vec![0u8; len],
    };
    let root = bao_tree::io::sync::outboard(data, tree, &mut ob)?;
    Ok(ComputedOutboard {
        root,
        size,
        outboard: ob.data,
    })
}

/// True when every pair in `outboard` is consistent with its parent all the way up to the
/// outboard's root (which the caller sets to the content id).
///
/// For a file of one chunk group there are no pairs and nothing to check here; the data
/// itself is hashed against the root when it arrives.
pub(crate) fn outboard_is_valid(outboard: impl Outboard) -> io::Result<bool> {
    let chunks = outboard.tree().chunks();
    let mut covered = ChunkNum(0);
    for range in bao_tree::io::sync::valid_outboard_ranges(outboard, &ChunkRanges::all()) {
        let range = range?;
        if range.start != covered {
            return Ok(false);
        }
        covered = range.end;
    }
    Ok(covered == chunks)
}

/// BLAKE3 chaining value of the subtree holding `data`, which starts at chunk `start_chunk`.
fn hash_subtree(start_chunk: u64, data: &[u8], is_root: bool) -> blake3::Hash {
    if is_root {
        blake3::hash(data)
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start_chunk * CHUNK_BYTES);
        hasher.update(data);
        let cv: ChainingValue = hasher.finalize_non_root();
        blake3::Hash::from(cv)
    }
}

fn parent_cv(left: &blake3::Hash, right: &blake3::Hash, is_root: bool) -> blake3::Hash {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if is_root {
        merge_subtrees_root(left, right, Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(left, right, Mode::Hash))
    }
}

/// Why data stopped verifying.
#[derive(Debug)]
pub(crate) enum VerifyError {
    /// The chunk group starting at `offset` does not hash to its entry in the outboard.
    Corrupt { offset: u64 },
    /// The outboard itself is inconsistent (it was validated, so the file changed under us).
    Outboard { offset: u64 },
    /// Reading the outboard failed.
    Io(io::Error),
}

/// The result of feeding bytes to a [`RangeVerifier`].
#[derive(Debug)]
pub(crate) struct Fed {
    /// Bytes at the start of the input that verified (whole groups).
    pub verified: usize,
    /// Why verification stopped before the end of the input, if it did for a reason other
    /// than running out of input mid-group.
    pub error: Option<VerifyError>,
}

/// Verifies a file's bytes from a group-aligned offset to its end, as they arrive in order.
///
/// Walks bao-tree's pre-order traversal of the requested range: each parent pair comes from
/// the outboard and is checked against the hash expected for it (starting from the root),
/// each group is hashed and checked against the hash its parent gave. No allocation after
/// construction besides the hash stack (bounded by the tree depth).
pub(crate) struct RangeVerifier {
    iter: ResponseIter,
    stack: Vec<blake3::Hash>,
    pending: Option<BaoChunk>,
    /// File offset of the next byte to be fed.
    offset: u64,
    size: u64,
}

impl std::fmt::Debug for RangeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeVerifier")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl RangeVerifier {
    /// A verifier for bytes `start..size` of the file with BLAKE3 root `root`.
    ///
    /// `start` is rounded down to a group boundary; callers only ever resume from one.
    pub fn new(root: blake3::Hash, size: u64, start: u64) -> Self {
        let start = (start.min(size) / GROUP_BYTES) * GROUP_BYTES;
        // Open-ended, as bao-tree's own decoder has it after truncation: a range that runs
        // to the end of the file is what makes the traversal emit whole groups.
        let ranges = if size > 0 && start >= size {
            ChunkRanges::empty()
        } else {
            ChunkRanges::from(ChunkNum(start / CHUNK_BYTES)..)
        };
        let mut stack = Vec::with_capacity(64);
        stack.push(root);
        Self {
            iter: ResponseIter::new(tree(size), ranges),
            stack,
            pending: None,
            offset: start,
            size,
        }
    }

    /// True once every byte up to the size has verified.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.offset >= self.size
    }

    /// Verifies the bytes of `data`, which continue the file at [`Self::offset`].
    ///
    /// Consumes whole groups; a group cut off at the end of `data` is left for the next call
    /// only if the caller feeds its remainder, which callers never do (they feed
    /// group-aligned buffers and drop the tail of a short response).
    pub fn feed(&mut self, outboard: &impl Outboard, data: &[u8]) -> Fed {
        let mut used = 0usize;
        loop {
            let item = match self.pending.take().or_else(|| self.iter.next()) {
                Some(item) => item,
                None => {
                    return Fed {
                        verified: used,
                        error: None,
                    };
                }
            };
            match item {
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    let offset = self.offset;
                    let pair = match outboard.load(node) {
                        Ok(Some(pair)) => pair,
                        Ok(None) => {
                            return Fed {
                                verified: used,
                                error: Some(VerifyError::Outboard { offset }),
                            };
                        }
                        Err(e) => {
                            return Fed {
                                verified: used,
                                error: Some(VerifyError::Io(e)),
                            };
                        }
                    };
                    let expected = self.stack.pop();
                    if expected != Some(parent_cv(&pair.0, &pair.1, is_root)) {
                        return Fed {
                            verified: used,
                            error: Some(VerifyError::Outboard { offset }),
                        };
                    }
                    if right {
                        self.stack.push(pair.1);
                    }
                    if left {
                        self.stack.push(pair.0);
                    }
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size,
                    is_root,
                    ..
                } => {
                    let offset = start_chunk.to_bytes();
                    if data.len() - used < size {
                        self.pending = Some(item);
                        return Fed {
                            verified: used,
                            error: None,
                        };
                    }
                    let group = &data[used..used + size];
                    let expected = self.stack.pop();
                    if offset != self.offset
                        || expected != Some(hash_subtree(start_chunk.0, group, is_root))
                    {
                        // Put nothing back: after a mismatch this verifier is finished.
                        self.stack.clear();
                        return Fed {
                            verified: used,
                            error: Some(VerifyError::Corrupt { offset }),
                        };
                    }
                    used += size;
                    self.offset += size as u64;
                }
            }
        }
    }
}

/// The checks of fuzz/fuzz_targets/outboard.rs on one input, also run on its corpus by
/// this module's tests, so CI checks exactly what the fuzzer checks. A holder is hostile:
/// an honest outboard must verify, a flipped bit anywhere must be caught, and arbitrary
/// bytes must never panic. Returns false when the input is too short to mean anything.
///
/// Input: mode | size (3 bytes LE) | resume group | bit position (3 bytes LE) | data or
/// outboard.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_fuzz_input(bytes: &[u8]) -> bool {
    /// Largest file tried: 20 groups, so trees have a few levels.
    const MAX_SIZE: u64 = 20 * GROUP_BYTES;
    let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    let size = u64::from(u32::from_le_bytes([head[1], head[2], head[3], 0])) % (MAX_SIZE + 1);
    let start = (u64::from(head[4]) * GROUP_BYTES).min(size / GROUP_BYTES * GROUP_BYTES);
    let bit = u32::from_le_bytes([head[5], head[6], head[7], 0]) as usize;
    let tree = tree(size);
    if head[0] % 4 == 3 {
        // A hostile holder: arbitrary outboard bytes (of the length the size implies) and
        // arbitrary data, checked against an arbitrary root.
        let len = usize::try_from(tree.outboard_size()).expect("small tree");
        let mut outboard: Vec<u8> = rest.iter().copied().cycle().take(len).collect();
        outboard.resize(len, 0);
        let root = blake3::hash(rest);
        let ob = PreOrderMemOutboard {
            root,
            tree,
            data: outboard,
        };
        let _ = outboard_is_valid(&ob);
        let data = vec![0xa5; usize::try_from(size - start).expect("small file")];
        let fed = RangeVerifier::new(root, size, start).feed(&ob, &data);
        assert!(fed.verified <= data.len());
        return true;
    }
    let data: Vec<u8> = if rest.is_empty() {
        vec![0; usize::try_from(size).expect("small file")]
    } else {
        rest.iter()
            .copied()
            .cycle()
            .take(usize::try_from(size).expect("small file"))
            .collect()
    };
    let honest = compute_outboard(&data[..], size).expect("in memory");
    let ob = PreOrderMemOutboard {
        root: honest.root,
        tree,
        data: honest.outboard.clone(),
    };
    let tail = &data[usize::try_from(start).expect("small file")..];
    match head[0] % 4 {
        0 => {
            // Honest holder: the outboard is valid and every byte from `start` verifies.
            assert!(outboard_is_valid(&ob).expect("in memory"));
            let fed = RangeVerifier::new(honest.root, size, start).feed(&ob, tail);
            assert!(fed.error.is_none(), "{size} from {start}: {:?}", fed.error);
            assert_eq!(fed.verified, tail.len(), "{size} from {start}");
        }
        1 if !ob.data.is_empty() => {
            // One bit of the outboard flipped: the outboard no longer validates.
            let mut bad = ob.data.clone();
            let i = bit / 8 % bad.len();
            bad[i] ^= 1 << (bit % 8);
            let bad = PreOrderMemOutboard {
                root: honest.root,
                tree,
                data: bad,
            };
            assert!(
                !outboard_is_valid(&bad).expect("in memory"),
                "{size}: byte {i}"
            );
        }
        2 if !tail.is_empty() => {
            // One bit of the data flipped: nothing from its group on verifies.
            let mut bad = tail.to_vec();
            let i = bit / 8 % bad.len();
            bad[i] ^= 1 << (bit % 8);
            let fed = RangeVerifier::new(honest.root, size, start).feed(&ob, &bad);
            assert!(fed.error.is_some(), "{size} from {start}: byte {i}");
            assert!(fed.verified as u64 <= i as u64 / GROUP_BYTES * GROUP_BYTES);
        }
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bao_tree::io::outboard::PreOrderOutboard;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    fn outboard_for(bytes: &[u8]) -> PreOrderOutboard<Vec<u8>> {
        let ob = compute_outboard(bytes, bytes.len() as u64).unwrap();
        assert_eq!(
            ob.root,
            blake3::hash(bytes),
            "outboard root is the BLAKE3 hash"
        );
        assert_eq!(ob.outboard.len() as u64, outboard_len(bytes.len() as u64));
        PreOrderOutboard {
            root: ob.root,
            tree: tree(bytes.len() as u64),
            data: ob.outboard,
        }
    }

    const SIZES: &[usize] = &[
        1,
        1023,
        1024,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        32 * 1024,
        48 * 1024 + 5,
        5 * 16 * 1024,
        7 * 16 * 1024 + 1000,
        1 << 20,
        (1 << 20) + 3 * 16 * 1024 + 17,
    ];

    #[test]
    fn every_size_verifies_from_every_group_boundary_in_any_feed_sizes() {
        for &len in SIZES {
            let bytes = data(len);
            let ob = outboard_for(&bytes);
            assert!(outboard_is_valid(&ob).unwrap(), "len {len}");
            let groups = (len as u64).div_ceil(GROUP_BYTES);
            for g in 0..groups {
                let start = g * GROUP_BYTES;
                let mut v = RangeVerifier::new(ob.root, len as u64, start);
                // Feed in pieces of three groups, the way the downloader's buffers do.
                let mut pos = start as usize;
                while pos < len {
                    let end = (pos + 3 * GROUP_BYTES as usize).min(len);
                    let fed = v.feed(&ob, &bytes[pos..end]);
                    assert!(fed.error.is_none(), "len {len} start {start}: {fed:?}");
                    assert_eq!(fed.verified, end - pos, "len {len} start {start}");
                    pos = end;
                }
                assert!(v.is_done());
            }
        }
    }

    #[test]
    fn a_flipped_byte_stops_verification_at_its_group() {
        for &len in SIZES {
            let bytes = data(len);
            let ob = outboard_for(&bytes);
            for flip in [0, len / 2, len - 1] {
                let mut bad = bytes.clone();
                bad[flip] ^= 0x40;
                let mut v = RangeVerifier::new(ob.root, len as u64, 0);
                let fed = v.feed(&ob, &bad);
                let group_start = (flip as u64 / GROUP_BYTES) * GROUP_BYTES;
                assert_eq!(fed.verified as u64, group_start, "len {len} flip {flip}");
                assert!(
                    matches!(fed.error, Some(VerifyError::Corrupt { offset }) if offset == group_start),
                    "len {len} flip {flip}: {:?}",
                    fed.error
                );
            }
        }
    }

    #[test]
    fn a_wrong_root_or_a_lying_size_never_verifies_the_final_group() {
        let bytes = data(5 * 16 * 1024 + 100);
        let ob = outboard_for(&bytes);
        let mut wrong = ob.clone();
        wrong.root = blake3::hash(b"something else");
        assert!(!outboard_is_valid(&wrong).unwrap());

        // Same tree shape (the final group is still the sixth), so the pairs are the same,
        // yet the final group cut to the claimed size cannot hash to its entry.
        let lie = bytes.len() as u64 - 50;
        let liar = PreOrderOutboard {
            root: ob.root,
            tree: tree(lie),
            data: ob.data.clone(),
        };
        assert!(
            outboard_is_valid(&liar).unwrap(),
            "the pairs alone do not prove size"
        );
        let last = (lie - 1) / GROUP_BYTES * GROUP_BYTES;
        let mut v = RangeVerifier::new(liar.root, lie, last);
        let fed = v.feed(&liar, &bytes[last as usize..lie as usize]);
        assert_eq!(fed.verified, 0);
        assert!(matches!(fed.error, Some(VerifyError::Corrupt { .. })));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn verification_stops_exactly_at_the_first_damaged_group(
            len in 1usize..200_000,
            flip in proptest::option::of(0usize..200_000),
            piece_groups in 1usize..5,
        ) {
            let bytes = data(len);
            let ob = outboard_for(&bytes);
            let mut received = bytes.clone();
            let flip = flip.map(|f| f % len);
            if let Some(f) = flip {
                received[f] ^= 0x80;
            }
            let mut v = RangeVerifier::new(ob.root, len as u64, 0);
            let mut verified = 0usize;
            for piece in received.chunks(piece_groups * GROUP_BYTES as usize) {
                let fed = v.feed(&ob, piece);
                verified += fed.verified;
                if fed.error.is_some() {
                    break;
                }
            }
            let expected = flip.map_or(len, |f| f / GROUP_BYTES as usize * GROUP_BYTES as usize);
            proptest::prop_assert_eq!(verified, expected);
        }
    }

    #[test]
    fn a_tampered_outboard_is_invalid() {
        let bytes = data(9 * 16 * 1024);
        let mut ob = outboard_for(&bytes);
        for i in [0, 64 * 3 + 7, ob.data.len() - 1] {
            let mut bad = ob.clone();
            bad.data[i] ^= 1;
            assert!(!outboard_is_valid(&bad).unwrap(), "byte {i}");
        }
        ob.data.truncate(64);
        assert!(
            !outboard_is_valid(&ob).unwrap(),
            "a short outboard reads as zeros"
        );
    }

    /// Replays fuzz/corpus/outboard on every test run through the fuzz target's checks.
    #[test]
    fn the_fuzz_corpus_checks_out() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/outboard");
        let mut inputs = 0;
        for entry in std::fs::read_dir(dir).expect("fuzz/corpus/outboard exists") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
            if super::check_fuzz_input(&bytes) {
                inputs += 1;
            }
        }
        assert!(
            inputs >= 5,
            "the outboard corpus is missing ({inputs} inputs)"
        );
    }
}
