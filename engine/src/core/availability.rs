//! Piece availability shared between threads: how many peers of a whole node have each
//! piece, so the rarest-first picker of each of the node's torrents (one per runtime
//! worker) ranks pieces over the whole swarm the node sees, not over its own peers only.
//!
//! A node running one [`Torrent`] per worker gives each the same [`Availability`] as
//! [`TorrentConfig::availability`]. Protocol (atomics are not I/O, so the core stays
//! sans-IO):
//! - a torrent adds 1 to a piece's count when one of its peers announces the piece (its
//!   bitfield, BEP 6 `have all`, or a `have` for a piece the peer's bitfield lacked; a
//!   duplicate `have` adds nothing), and subtracts 1 per piece of the peer's bitfield when
//!   the peer leaves, so a peer only ever takes back what it added;
//! - so at any quiescent moment `count(p)` equals the number of peers, over all the
//!   torrents sharing it, whose bitfield has `p` (property-tested in the torrent tests);
//! - counts saturate at 0 and `u32::MAX` instead of wrapping, so even a bookkeeping bug
//!   cannot turn a rare piece into the most common one.
//!
//! Each torrent's picker keeps its rarest-first buckets keyed by the counts as it last
//! read them: a piece's entry is refreshed whenever one of the torrent's own peers changes
//! it and every [`RESYNC_INTERVAL`] for the changes made by the other torrents.
//!
//! Without sharing (`None`, the default) each torrent counts its own peers, as in the
//! simulator.
//!
//! [`Torrent`]: super::Torrent
//! [`TorrentConfig::availability`]: super::TorrentConfig::availability

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::PieceIndex;

/// How often a torrent's picker re-reads every piece's shared count (the changes its own
/// peers make are seen at once). A piece of a swarm moving a few GB/s changes hands every
/// few milliseconds, so a few tens of ms keeps the ranking current; a resync reads one
/// counter per piece not yet started (at most ~20 µs for a 20,000-piece torrent), i.e.
/// at most ~0.1 % of a core at 50 per second.
pub const RESYNC_INTERVAL: Duration = Duration::from_millis(20);

/// Per piece, the number of peers (over every torrent sharing it) that have it.
///
/// Out-of-range pieces read as 0 and are ignored by writes. Each update is one atomic
/// read-modify-write on one counter (`Relaxed`: the counts order nothing else, the
/// picker only ranks by them).
#[derive(Debug)]
pub struct Availability {
    counts: Box<[AtomicU32]>,
}

impl Availability {
    /// Counts for `piece_count` pieces, all 0.
    pub fn new(piece_count: u32) -> Self {
        Availability {
            counts: (0..piece_count).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Number of pieces counted.
    pub fn len(&self) -> u32 {
        self.counts.len() as u32
    }

    /// Whether no piece is counted (`len() == 0`).
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Peers having `piece` (0 when out of range).
    pub fn count(&self, piece: PieceIndex) -> u32 {
        self.counts
            .get(piece.0 as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// One more peer has `piece`; returns the new count (saturating at `u32::MAX`; 0 when
    /// out of range).
    pub fn inc(&self, piece: PieceIndex) -> u32 {
        self.update(piece, |c| c.checked_add(1))
    }

    /// One peer that had `piece` left; returns the new count (saturating at 0).
    pub fn dec(&self, piece: PieceIndex) -> u32 {
        self.update(piece, |c| c.checked_sub(1))
    }

    /// Applies `f` unless it returns `None` (saturated); returns the count after.
    fn update(&self, piece: PieceIndex, f: impl Fn(u32) -> Option<u32>) -> u32 {
        let Some(c) = self.counts.get(piece.0 as usize) else {
            return 0;
        };
        match c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, &f) {
            Ok(old) => f(old).unwrap_or(old),
            Err(saturated) => saturated,
        }
    }
}

impl PartialEq for Availability {
    /// Identity: two shared count arrays are equal only when they are the same one
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
    fn counts_saturate_and_ignore_out_of_range() {
        let a = Availability::new(3);
        assert_eq!(a.len(), 3);
        assert_eq!(a.inc(PieceIndex(1)), 1);
        assert_eq!(a.inc(PieceIndex(1)), 2);
        assert_eq!(a.dec(PieceIndex(1)), 1);
        assert_eq!(a.dec(PieceIndex(0)), 0, "no underflow");
        assert_eq!(a.count(PieceIndex(0)), 0);
        assert_eq!(a.inc(PieceIndex(3)), 0, "out of range ignored");
        assert_eq!(a.count(PieceIndex(3)), 0);
        a.counts[2].store(u32::MAX, Ordering::Relaxed);
        assert_eq!(a.inc(PieceIndex(2)), u32::MAX, "no overflow");
        assert_eq!(a.dec(PieceIndex(2)), u32::MAX - 1);
    }

    #[test]
    fn racing_threads_leave_exact_counts() {
        let a = Arc::new(Availability::new(100));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let a = Arc::clone(&a);
                std::thread::spawn(move || {
                    for round in 0..50u32 {
                        for p in 0..100 {
                            a.inc(PieceIndex((p + t * 7 + round) % 100));
                        }
                        // Every thread takes back half of what it added.
                        if round % 2 == 1 {
                            for p in 0..100 {
                                a.dec(PieceIndex(p));
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!((0..100).all(|p| a.count(PieceIndex(p)) == 4 * 25));
    }
}
