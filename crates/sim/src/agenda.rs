//! The agenda: everything that will happen, ordered by virtual time. Ties are broken by
//! insertion order, so the run is the same every time whatever the heap does inside.
//!
//! The heap holds only 16-byte keys — the instant, and the insertion number packed with
//! the slot where the item waits — so the sifting that dominates a priority queue moves
//! little memory; items stay put in a slab whose slots are reused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::clock::SimTime;

/// Bits of the packed key that name the slot; the insertion number takes the rest.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

/// A priority queue of items due at instants, earliest (then first pushed) first.
#[derive(Debug)]
pub(crate) struct Agenda<T> {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Agenda<T> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }

    pub fn push(&mut self, at: SimTime, item: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(item);
                slot
            }
            None => {
                assert!(
                    (self.slots.len() as u64) < SLOT_MASK,
                    "more than 2^24 actions pending at once"
                );
                self.slots.push(Some(item));
                (self.slots.len() - 1) as u32
            }
        };
        self.seq += 1;
        let key = self.seq << SLOT_BITS | u64::from(slot);
        self.heap.push(Reverse((at.as_micros(), key)));
    }

    pub fn next_at(&self) -> Option<SimTime> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| SimTime::from_micros(*at))
    }

    pub fn pop(&mut self) -> Option<(SimTime, T)> {
        let Reverse((at, key)) = self.heap.pop()?;
        let slot = (key & SLOT_MASK) as u32;
        let item = self.slots[slot as usize].take()?;
        self.free.push(slot);
        Some((SimTime::from_micros(at), item))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut a = Agenda::new();
        a.push(SimTime::from_millis(5), "late");
        a.push(SimTime::from_millis(1), "first");
        a.push(SimTime::from_millis(1), "second");
        assert_eq!(a.next_at(), Some(SimTime::from_millis(1)));
        assert_eq!(a.pop(), Some((SimTime::from_millis(1), "first")));
        // A reused slot keeps insertion order.
        a.push(SimTime::from_millis(1), "third");
        let order: Vec<_> = std::iter::from_fn(|| a.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["second", "third", "late"]);
        assert_eq!(a.len(), 0);
    }
}
