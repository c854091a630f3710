//! A fixed-size bitmap of atomic words, one bit per piece, shared by threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// `len` bits in `AtomicU64` words. Out-of-range indices read as `false` and
/// are ignored by writes (indices are range-checked by the callers first).
#[derive(Debug)]
pub(crate) struct AtomicBitmap {
    words: Vec<AtomicU64>,
    len: u32,
}

impl AtomicBitmap {
    /// `len` cleared bits.
    pub(crate) fn new(len: u32) -> Self {
        let words = (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Self { words, len }
    }

    fn word(&self, i: u32) -> Option<(&AtomicU64, u64)> {
        if i >= self.len {
            return None;
        }
        Some((self.words.get((i / 64) as usize)?, 1u64 << (i % 64)))
    }

    /// Bit `i` (Acquire: pairs with the Release of [`Self::set`] / [`Self::clear`]).
    pub(crate) fn get(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, m)| w.load(Ordering::Acquire) & m != 0)
    }

    /// Set bit `i`; returns its previous value.
    pub(crate) fn set(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, m)| w.fetch_or(m, Ordering::AcqRel) & m != 0)
    }

    /// Clear bit `i`; returns its previous value.
    pub(crate) fn clear(&self, i: u32) -> bool {
        self.word(i)
            .is_some_and(|(w, m)| w.fetch_and(!m, Ordering::AcqRel) & m != 0)
    }

    /// Number of set bits.
    pub(crate) fn count(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum()
    }

    /// All bits as booleans.
    pub(crate) fn to_vec(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_count() {
        let b = AtomicBitmap::new(130);
        assert!(!b.set(0));
        assert!(b.set(0));
        assert!(!b.set(129));
        assert!(!b.set(130), "out of range ignored");
        assert_eq!(b.count(), 2);
        assert!(b.clear(129));
        assert!(!b.get(129));
        assert_eq!(b.to_vec().iter().filter(|&&x| x).count(), 1);
    }
}
