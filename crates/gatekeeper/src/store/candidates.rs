//! Candidate order: peers with a free slot first, then fewest neighbours, then a random
//! tie-break. Packed into one integer so an ordered index (a `BTreeSet` here, a Redis
//! sorted set there) yields candidates in O(log N + k).

/// Most index entries looked at per random point, so a region of suspected or expired
/// peers costs a bounded scan; a point that finds nothing there yields no candidate.
pub const MAX_RANDOM_SCAN: usize = 32;

/// Most peers of one network in a join answer while peers of other networks can still
/// fill it, so Sybils registered from one network cannot crowd out everyone else.
pub const MAX_PER_PREFIX: usize = 2;

/// `count` points for [`JoinOp::random_points`](super::JoinOp::random_points): `share` of
/// `want`, rounded down, each drawn uniformly from the id space. Peer ids are public keys,
/// uniform in that space, so the peer after a random point is a random peer.
pub fn random_points(rng: &mut impl rand::Rng, want: usize, share: f64) -> Vec<[u8; 32]> {
    let count = (want as f64 * share.clamp(0.0, 1.0)).floor() as usize;
    (0..count.min(want)).map(|_| rng.random()).collect()
}

/// Random picks first, then least loaded, alternating while both last.
pub fn interleave<T>(random: Vec<T>, least_loaded: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(random.len() + least_loaded.len());
    let mut random = random.into_iter();
    let mut least_loaded = least_loaded.into_iter();
    loop {
        match (random.next(), least_loaded.next()) {
            (None, None) => return out,
            (r, l) => out.extend(r.into_iter().chain(l)),
        }
    }
}

/// `full << 48 | neighbours << 32 | tiebreak`. Below 2^53, so a Redis score (an f64)
/// holds it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CandidateKey(pub u64);

/// Width of one bucket: all peers with the same fullness and neighbour count.
pub const BUCKET: u64 = 1 << 32;

impl CandidateKey {
    pub fn new(neighbours: u16, capacity: u16, tiebreak: u32) -> Self {
        let full = u64::from(neighbours >= capacity);
        Self(full << 48 | u64::from(neighbours) << 32 | u64::from(tiebreak))
    }

    pub fn bucket_start(self) -> u64 {
        self.0 & !(BUCKET - 1)
    }
}

/// The key ranges to scan, in order, for a random start `r` within the first bucket:
/// the first bucket from `r` to its end, then from its start to `r`, then everything after.
pub fn scan_ranges(first: CandidateKey, r: u32) -> [(u64, u64); 3] {
    let base = first.bucket_start();
    let start = base | u64::from(r);
    [
        (start, base + BUCKET),
        (base, start),
        (base + BUCKET, u64::MAX),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_sort_before_full_then_fewest_neighbours() {
        let free_busy = CandidateKey::new(4, 5, u32::MAX);
        let free_idle = CandidateKey::new(0, 5, u32::MAX);
        let full_small = CandidateKey::new(1, 1, 0);
        assert!(free_idle < free_busy);
        assert!(free_busy < full_small);
    }

    #[test]
    fn random_points_are_a_share_of_want_rounded_down() {
        let mut rng = rand::rng();
        assert_eq!(random_points(&mut rng, 8, 0.5).len(), 4);
        assert_eq!(random_points(&mut rng, 3, 0.5).len(), 1);
        assert_eq!(random_points(&mut rng, 8, 0.0).len(), 0);
        assert_eq!(random_points(&mut rng, 8, 1.0).len(), 8);
        let points = random_points(&mut rng, 8, 1.0);
        assert_ne!(points[0], points[1]);
    }

    #[test]
    fn interleave_alternates_and_keeps_the_rest() {
        assert_eq!(interleave(vec![1, 3], vec![2, 4, 5, 6]), [1, 2, 3, 4, 5, 6]);
        assert_eq!(interleave(vec![1, 2, 3], vec![9]), [1, 9, 2, 3]);
        assert_eq!(interleave(Vec::<u8>::new(), vec![]), Vec::<u8>::new());
    }

    #[test]
    fn key_fits_an_f64_exactly() {
        let max = CandidateKey::new(u16::MAX, 1, u32::MAX).0;
        assert!(max < 1 << 53);
        assert_eq!(max as f64 as u64, max);
    }

    #[test]
    fn scan_ranges_cover_the_first_bucket_once() {
        let first = CandidateKey::new(2, 5, 17);
        let [a, b, c] = scan_ranges(first, 100);
        assert_eq!(a.0, b.1);
        assert_eq!(a.1, c.0);
        assert_eq!(b.0, first.bucket_start());
        assert_eq!(c.0 - b.0, BUCKET);
    }
}
