//! [`AtomicBitfield`]: one bit per piece in atomic words, shared by threads
//! (the node's claims and availability in `core`, the storage's verified,
//! claimed, lost, recheck and dirty sets in `store`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::PieceIndex;

/// A fixed-size set of pieces in atomic 64-bit words, shared between threads.
///
/// Out-of-range pieces read as absent and are ignored by writes. Every operation is one
/// atomic instruction on one word (`Acquire` loads, `AcqRel` read-modify-writes).
#[derive(Debug)]
pub struct AtomicBitfield {
    words: Box<[AtomicU64]>,
    len: u32,
}

impl AtomicBitfield {
    /// An empty set of `len` pieces.
    pub fn new(len: u32) -> Self {
        let words = (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        AtomicBitfield { words, len }
    }

    /// Number of pieces (bits) in the set.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set has room for no piece at all (`len() == 0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, piece: PieceIndex) -> Option<(&AtomicU64, u64)> {
        if piece.0 >= self.len {
            return None;
        }
        let w = self.words.get((piece.0 / 64) as usize)?;
        Some((w, 1u64 << (piece.0 % 64)))
    }

    /// Whether `piece` is in the set.
    pub fn get(&self, piece: PieceIndex) -> bool {
        self.slot(piece)
            .is_some_and(|(w, m)| w.load(Ordering::Acquire) & m != 0)
    }

    /// Adds `piece` (test-and-set); true if this call added it, false if it was already
    /// there (or out of range). Of threads racing for one piece exactly one gets true.
    pub fn try_set(&self, piece: PieceIndex) -> bool {
        self.slot(piece)
            .is_some_and(|(w, m)| w.fetch_or(m, Ordering::AcqRel) & m == 0)
    }

    /// Removes `piece`; true if it was there.
    pub fn clear(&self, piece: PieceIndex) -> bool {
        self.slot(piece)
            .is_some_and(|(w, m)| w.fetch_and(!m, Ordering::AcqRel) & m != 0)
    }

    /// Word `i` (pieces `64 i .. 64 i + 63`, least significant bit first), 0 past the end.
    pub fn load_word(&self, i: usize) -> u64 {
        self.words.get(i).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Number of pieces in the set (a snapshot: concurrent writers may change it).
    pub fn count_ones(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum()
    }

    /// Whether every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.count_ones() == self.len
    }

    /// One flag per piece, `len()` of them (BEP 3 bitfield order; a snapshot).
    pub fn to_vec(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(PieceIndex(i))).collect()
    }
}

impl PartialEq for AtomicBitfield {
    /// Identity: two shared sets are equal only when they are the same set (comparing
    /// contents that other threads change would mean nothing).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_count_and_snapshot() {
        let b = AtomicBitfield::new(130);
        assert!(b.try_set(PieceIndex(0)));
        assert!(!b.try_set(PieceIndex(0)), "already there");
        assert!(b.try_set(PieceIndex(129)));
        assert!(!b.try_set(PieceIndex(130)), "out of range ignored");
        assert_eq!(b.count_ones(), 2);
        assert!(b.clear(PieceIndex(0)));
        assert!(!b.clear(PieceIndex(0)));
        let v = b.to_vec();
        assert_eq!(v.len(), 130);
        assert!(v[129] && !v[0]);
        assert_eq!(b.load_word(2), 1 << 1);
    }
}
