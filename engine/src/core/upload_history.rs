//! The distinct-first seeder's per-piece upload history, shareable between the torrents
//! of one node (one per runtime worker), so that an origin running several workers still
//! sends each piece about once before any piece a second time.
//!
//! Without sharing, each worker's torrent counted only its own uploads and two workers
//! could each send the same piece first: in a 16-host netns swarm the origin's upload rose
//! from ~1.08 to ~1.18 copies of the file with 2 workers. Atomics are not I/O, so the core
//! stays sans-IO; a torrent without a shared history makes its own.

use std::sync::atomic::{AtomicI32, AtomicU16, AtomicU64, Ordering};

use super::{PeerKey, PieceIndex};

/// Copy counts at or above this share the last histogram bucket (the round counter then
/// stops advancing: irrelevant in practice, an origin sends a few copies at most).
const HIST_LEN: usize = 64;

/// No peer has received a copy of the piece yet.
const NO_OWNER: u64 = u64::MAX;

/// Per piece: copies started (offset-0 blocks handed to the driver, saturating at
/// `u16::MAX`) and the peer that received the latest; plus the lowest copy count over
/// all pieces (the current "round" of distinct-first).
///
/// Updates are single atomic operations per field; concurrent recorders may leave
/// [`UploadHistory::min_copies`] one step behind for a moment (it only moves up), which
/// at worst serves one request as if the round had not advanced yet.
#[derive(Debug)]
pub struct UploadHistory {
    copies: Box<[AtomicU16]>,
    owner: Box<[AtomicU64]>,
    /// `hist[c]`: pieces with exactly `c` copies (`HIST_LEN - 1`: that many or more).
    hist: Box<[AtomicI32]>,
    min_copies: AtomicU16,
}

impl UploadHistory {
    /// A history of `piece_count` pieces, none uploaded.
    pub fn new(piece_count: u32) -> Self {
        let n = piece_count as usize;
        let hist: Box<[AtomicI32]> = (0..HIST_LEN).map(|_| AtomicI32::new(0)).collect();
        hist[0].store(
            i32::try_from(piece_count).unwrap_or(i32::MAX),
            Ordering::Relaxed,
        );
        UploadHistory {
            copies: (0..n).map(|_| AtomicU16::new(0)).collect(),
            owner: (0..n).map(|_| AtomicU64::new(NO_OWNER)).collect(),
            hist,
            min_copies: AtomicU16::new(0),
        }
    }

    /// Copies of `piece` started so far (0 for an out-of-range piece).
    pub fn copies(&self, piece: PieceIndex) -> u16 {
        self.copies
            .get(piece.0 as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Copies of `piece` that went to peers other than `key`: 0 if `key` got the latest.
    pub fn copies_elsewhere(&self, piece: PieceIndex, key: PeerKey) -> u16 {
        let i = piece.0 as usize;
        match self.owner.get(i) {
            Some(o) if o.load(Ordering::Relaxed) == key.0 => 0,
            _ => self.copies(piece),
        }
    }

    /// The lowest copy count over all pieces (0 until every piece left once).
    pub fn min_copies(&self) -> u16 {
        self.min_copies.load(Ordering::SeqCst)
    }

    /// Records that a copy of `piece` started going to `key`.
    pub fn record_copy(&self, piece: PieceIndex, key: PeerKey) {
        let i = piece.0 as usize;
        let (Some(c), Some(o)) = (self.copies.get(i), self.owner.get(i)) else {
            return;
        };
        let Ok(old) = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_add(1))
        else {
            return; // saturated
        };
        o.store(key.0, Ordering::Relaxed);
        let (from, to) = (
            usize::from(old).min(HIST_LEN - 1),
            (usize::from(old) + 1).min(HIST_LEN - 1),
        );
        if from != to {
            self.hist[to].fetch_add(1, Ordering::SeqCst);
            self.hist[from].fetch_sub(1, Ordering::SeqCst);
        }
        self.advance_round();
    }

    /// Moves `min_copies` past empty histogram buckets (monotone; racing callers agree
    /// through compare-exchange).
    fn advance_round(&self) {
        loop {
            let m = self.min_copies.load(Ordering::SeqCst);
            let idx = usize::from(m);
            if idx >= HIST_LEN - 1 || self.hist[idx].load(Ordering::SeqCst) > 0 {
                return;
            }
            let _ = self
                .min_copies
                .compare_exchange(m, m + 1, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

impl PartialEq for UploadHistory {
    /// Identity: two shared histories are equal only when they are the same one
    /// (comparing counts that other threads change would mean nothing).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_round_advances_once_every_piece_left_once() {
        let h = UploadHistory::new(3);
        h.record_copy(PieceIndex(0), PeerKey(1));
        h.record_copy(PieceIndex(1), PeerKey(2));
        assert_eq!(h.min_copies(), 0);
        assert_eq!(h.copies_elsewhere(PieceIndex(0), PeerKey(1)), 0);
        assert_eq!(h.copies_elsewhere(PieceIndex(0), PeerKey(9)), 1);
        h.record_copy(PieceIndex(2), PeerKey(3));
        assert_eq!(h.min_copies(), 1);
        h.record_copy(PieceIndex(2), PeerKey(4));
        assert_eq!(h.copies(PieceIndex(2)), 2);
        assert_eq!(h.min_copies(), 1);
        // Out of range: ignored.
        h.record_copy(PieceIndex(7), PeerKey(1));
        assert_eq!(h.copies(PieceIndex(7)), 0);
    }

    #[test]
    fn threads_recording_every_piece_leave_exact_counts_and_round() {
        let h = Arc::new(UploadHistory::new(500));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for p in 0..500 {
                        h.record_copy(PieceIndex(p), PeerKey(t));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!((0..500).all(|p| h.copies(PieceIndex(p)) == 4));
        assert_eq!(h.min_copies(), 4);
    }
}
