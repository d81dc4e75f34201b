//! The downloader's check of what a holder serves: the outboard (validated against the
//! content id before use) and the file's bytes (verified group by group). A holder is
//! hostile: an honest outboard must verify, a flipped bit anywhere must be caught, and
//! arbitrary bytes must never panic.
#![no_main]

// The verifier is a self-contained module of highway-share; compiling it here keeps the
// fuzz build free of the file server's dependencies (axum, tokio, ...).
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/share/src/transfer/verify.rs"]
mod verify;

use bao_tree::io::outboard::PreOrderMemOutboard;
use libfuzzer_sys::fuzz_target;
use verify::{GROUP_BYTES, RangeVerifier, compute_outboard, outboard_is_valid, tree};

/// Largest file tried: 20 groups, so trees have a few levels.
const MAX_SIZE: u64 = 20 * GROUP_BYTES;

fuzz_target!(|bytes: &[u8]| {
    // mode | size (3 bytes LE) | resume group | bit position (3 bytes LE) | data or outboard
    let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from(u32::from_le_bytes([head[1], head[2], head[3], 0])) % (MAX_SIZE + 1);
    let start = (u64::from(head[4]) * GROUP_BYTES).min(size / GROUP_BYTES * GROUP_BYTES);
    let bit = u32::from_le_bytes([head[5], head[6], head[7], 0]) as usize;
    let tree = tree(size);
    if head[0] % 4 == 3 {
        // A hostile holder: arbitrary outboard bytes (of the length the size implies) and
        // arbitrary data, checked against an arbitrary root.
        let len = tree.outboard_size() as usize;
        let mut outboard: Vec<u8> = rest.iter().copied().cycle().take(len).collect();
        outboard.resize(len, 0);
        let root = blake3::hash(rest);
        let ob = PreOrderMemOutboard {
            root,
            tree,
            data: outboard,
        };
        let _ = outboard_is_valid(&ob);
        let data = vec![0xa5; (size - start) as usize];
        let fed = RangeVerifier::new(root, size, start).feed(&ob, &data);
        assert!(fed.verified <= data.len());
        return;
    }
    let data: Vec<u8> = if rest.is_empty() {
        vec![0; size as usize]
    } else {
        rest.iter().copied().cycle().take(size as usize).collect()
    };
    let honest = compute_outboard(&data[..], size).expect("in memory");
    let ob = PreOrderMemOutboard {
        root: honest.root,
        tree,
        data: honest.outboard.clone(),
    };
    let tail = &data[start as usize..];
    match head[0] % 4 {
        0 => {
            // Honest holder: the outboard is valid and every byte from `start` verifies.
            assert!(outboard_is_valid(&ob).expect("in memory"));
            let fed = RangeVerifier::new(honest.root, size, start).feed(&ob, tail);
            assert!(fed.error.is_none(), "{size} from {start}: {:?}", fed.error);
            assert_eq!(fed.verified, tail.len(), "{size} from {start}");
        }
        1 => {
            // One bit of the outboard flipped: the outboard no longer validates.
            if ob.data.is_empty() {
                return;
            }
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
        _ => {
            // One bit of the data flipped: nothing from its group on verifies.
            if tail.is_empty() {
                return;
            }
            let mut bad = tail.to_vec();
            let i = bit / 8 % bad.len();
            bad[i] ^= 1 << (bit % 8);
            let fed = RangeVerifier::new(honest.root, size, start).feed(&ob, &bad);
            assert!(fed.error.is_some(), "{size} from {start}: byte {i}");
            assert!(fed.verified as u64 <= i as u64 / GROUP_BYTES * GROUP_BYTES);
        }
    }
});
