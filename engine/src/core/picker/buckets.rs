//! Availability counts and the rarest-first buckets keyed by them.

use super::{Picker, MAX_BUCKET_KEY, NOT_IN_BUCKET};
use crate::core::availability::RESYNC_INTERVAL;
use crate::core::{PieceIndex, Time};

impl Picker {
    /// One of our peers gained `piece` (`have`, or part of its bitfield); the caller
    /// counts each peer at most once per piece. Out-of-range pieces are ignored.
    pub(crate) fn inc(&mut self, piece: PieceIndex) {
        let Some(&old) = self.availability.get(piece.0 as usize) else {
            return;
        };
        let new = match &self.shared_availability {
            Some(a) => a.inc(piece),
            None => old.saturating_add(1),
        };
        self.rekey(piece, new);
    }

    /// One of our peers that had `piece` left; the caller only takes back what the peer
    /// added. Out-of-range pieces are ignored.
    pub(crate) fn dec(&mut self, piece: PieceIndex) {
        let Some(&old) = self.availability.get(piece.0 as usize) else {
            return;
        };
        let new = match &self.shared_availability {
            Some(a) => a.dec(piece),
            None => {
                debug_assert!(old > 0, "availability underflow");
                old.saturating_sub(1)
            }
        };
        self.rekey(piece, new);
    }

    /// With shared counts, re-reads the count of every untouched piece (the only ones
    /// in buckets) once [`RESYNC_INTERVAL`] has passed since the last time (other
    /// torrents' peers changed them): O(pieces / 64 + untouched pieces). Nothing to do
    /// once every piece is started or had (a seeder).
    pub(crate) fn resync_availability(&mut self, now: Time) {
        let Some(shared) = self.shared_availability.clone() else {
            return;
        };
        if now < self.next_resync || self.untouched.count_ones() == 0 {
            return;
        }
        self.next_resync = now + RESYNC_INTERVAL;
        for wi in 0..self.untouched.words().len() {
            let mut w = self.untouched.words().get(wi).copied().unwrap_or(0);
            while w != 0 {
                let p = PieceIndex(wi as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
                self.rekey(p, shared.count(p));
            }
        }
    }

    /// Sets `piece`'s count to `new` (at most [`MAX_BUCKET_KEY`]), moving it to its new
    /// bucket if it is untouched.
    fn rekey(&mut self, piece: PieceIndex, new: u32) {
        let new = new.min(MAX_BUCKET_KEY);
        let i = piece.0 as usize;
        let Some(a) = self.availability.get_mut(i) else {
            return;
        };
        let old = std::mem::replace(a, new);
        if old != new && self.pos.get(i).is_some_and(|&p| p != NOT_IN_BUCKET) {
            self.remove_from_bucket(piece, old);
            self.push_bucket(piece, new);
        }
    }

    pub(super) fn push_bucket(&mut self, piece: PieceIndex, avail: u32) {
        let a = avail as usize;
        if self.buckets.len() <= a {
            self.buckets.resize_with(a + 1, Vec::new);
            self.nonempty.resize(self.buckets.len().div_ceil(64), 0);
        }
        self.pos[piece.0 as usize] = self.buckets[a].len() as u32;
        self.buckets[a].push(piece);
        self.nonempty[a / 64] |= 1 << (a % 64);
    }

    pub(super) fn remove_from_bucket(&mut self, piece: PieceIndex, avail: u32) {
        let at = self.pos[piece.0 as usize] as usize;
        let bucket = &mut self.buckets[avail as usize];
        bucket.swap_remove(at);
        if let Some(&moved) = bucket.get(at) {
            self.pos[moved.0 as usize] = at as u32;
        }
        if bucket.is_empty() {
            let a = avail as usize;
            self.nonempty[a / 64] &= !(1 << (a % 64));
        }
        self.pos[piece.0 as usize] = NOT_IN_BUCKET;
    }

    /// Keys of the non-empty buckets above 0, in increasing order (the walk's order).
    pub(super) fn nonempty_buckets(&self) -> impl Iterator<Item = usize> + '_ {
        let words = self.nonempty.iter().enumerate();
        words.flat_map(|(wi, &word)| {
            let mut w = if wi == 0 { word & !1 } else { word };
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let k = wi * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    k
                })
            })
        })
    }
}
