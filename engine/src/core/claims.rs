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

pub use crate::base::AtomicBitfield;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::PieceIndex;
    use std::sync::atomic::{AtomicU32, Ordering};
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
