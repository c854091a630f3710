//! Piece sets shared between threads: the claims that keep several [`Torrent`]s of one
//! node (one per runtime worker) from downloading the same piece.
//!
//! A node running one [`Torrent`] per worker gives each the same [`AtomicBitfield`] as
//! [`TorrentConfig::claims`]. Protocol (atomics are not I/O, so the core stays sans-IO):
//! - a bit is set while a piece is *claimed*: in flight on one torrent, or had;
//! - a torrent's picker claims a piece (atomic test-and-set) before it requests the
//!   piece's first block and skips pieces claimed by others; a failed claim means
//!   another torrent won the race, and the picker looks for another piece;
//! - the picker releases the claim when it abandons the piece (its requests all gone
//!   with nothing received, or a failed hash check); a verified piece stays claimed
//!   forever;
//! - the driver sets the bits of pieces it has before building the torrents.
//!
//! Without claims (`None`, the default) every claim is granted: one torrent per node,
//! as in the simulator.
//!
//! [`Torrent`]: super::Torrent
//! [`TorrentConfig::claims`]: super::TorrentConfig::claims

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
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn test_and_set_grants_once() {
        let c = AtomicBitfield::new(130);
        assert!(c.try_set(PieceIndex(129)));
        assert!(!c.try_set(PieceIndex(129)));
        assert!(c.get(PieceIndex(129)));
        assert!(!c.try_set(PieceIndex(130)), "out of range is never granted");
        assert!(!c.get(PieceIndex(130)));
        assert_eq!(c.count_ones(), 1);
        assert_eq!(c.load_word(2), 1 << 1);
        assert!(c.clear(PieceIndex(129)));
        assert!(!c.clear(PieceIndex(129)));
        assert!(c.try_set(PieceIndex(129)), "released: claimable again");
        assert!(!c.is_full());
    }

    #[test]
    fn racing_threads_claim_each_piece_exactly_once() {
        let pieces = 1000u32;
        let c = Arc::new(AtomicBitfield::new(pieces));
        let won: Vec<Arc<AtomicU32>> = (0..pieces).map(|_| Arc::new(AtomicU32::new(0))).collect();
        let won = Arc::new(won);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (c, won) = (c.clone(), won.clone());
                std::thread::spawn(move || {
                    for k in 0..pieces {
                        // Different orders per thread, so they collide mid-way.
                        let p = (k * (2 * t + 1)) % pieces;
                        if c.try_set(PieceIndex(p)) {
                            won[p as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.is_full());
        assert!(won.iter().all(|w| w.load(Ordering::Relaxed) == 1));
    }
}
