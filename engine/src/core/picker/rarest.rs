//! Rarest-first choice of a fresh (untouched) piece: a walk over the availability
//! buckets, rarest first, from a random offset in each; a scan of the peer's bitfield
//! when the walk finds nothing within its budget.
//!
//! Invariant: whichever path answers, the same inputs draw the same random numbers and
//! give the same piece as the walk, so a run stays replayable from its seed. When the
//! peer has few untouched pieces (the usual case after a `have`: the piece just
//! announced), [`Picker::rarest_among_few`] computes the walk's answer from those pieces
//! and their bucket positions instead of examining the bucket entries one by one.

use super::{PickContext, Picker};
use crate::core::PieceIndex;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Candidates examined by the rarest-first bucket walk before falling back to a scan of
/// the peer's bitfield; sized so the walk wins when the peer has most pieces.
const WALK_BUDGET: usize = 64;

/// Most untouched pieces a peer may have for [`Picker::rarest_among_few`] to answer.
/// Collecting them costs one bitfield word scan plus one reject-list check each; the walk
/// it replaces examines up to [`WALK_BUDGET`] bucket entries, each a bitfield lookup and
/// a reject-list check, when the peer has few of them. Sized at a quarter of the budget
/// so both paths cost about the same at the bound.
const FEW_CANDIDATES: usize = 16;

impl Picker {
    /// Rarest untouched piece the peer has, ties broken at random.
    pub(super) fn rarest_untouched(
        &self,
        ctx: &PickContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Option<PieceIndex> {
        match self.rarest_among_few(ctx, rng) {
            Some(answer) => answer,
            None => self.rarest_walk(ctx, rng),
        }
    }

    /// The walk itself: buckets rarest first, each from a random offset, examining at
    /// most [`WALK_BUDGET`] entries before [`Picker::rarest_by_scan`].
    fn rarest_walk(&self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<PieceIndex> {
        let mut budget = WALK_BUDGET;
        for bucket in self.buckets.iter().skip(1) {
            if bucket.is_empty() {
                continue;
            }
            let start = rng.random_range(0..bucket.len());
            // `start..len` then `0..start`: the rotation, without a division per step.
            let (tail, head) = bucket.split_at(start);
            for &p in head.iter().chain(tail) {
                if ctx.usable(p) && self.claimable(p) {
                    return Some(p);
                }
                budget -= 1;
                if budget == 0 {
                    return self.rarest_by_scan(ctx, rng);
                }
            }
        }
        None
    }

    /// What [`Picker::rarest_untouched`]'s walk answers, computed from the peer's usable
    /// untouched pieces (the candidates) when it has at most [`FEW_CANDIDATES`]: the same
    /// draws, one per non-empty bucket reached, and the same pick, the first candidate
    /// in the rotated order of the rarest bucket holding one, or the scan's answer where
    /// the walk's budget runs out first. O(pieces / 64 + candidates + buckets reached).
    ///
    /// `None` when it does not answer: shared claims or a rack import filter (whose
    /// word form leaves out its suggestions), more candidates, or a candidate keyed in
    /// bucket 0 (which the walk skips; only a stale shared count puts one there).
    fn rarest_among_few(
        &self,
        ctx: &PickContext<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Option<Option<PieceIndex>> {
        if self.claims.is_some() || ctx.import.is_some() {
            return None;
        }
        let have = ctx.peer_have.words();
        let mut found = [PieceIndex(0); FEW_CANDIDATES];
        let (mut owned, mut n) = (0, 0);
        for (wi, (&u, &h)) in self.untouched.words().iter().zip(have).enumerate() {
            let mut w = u & h;
            if w == 0 {
                continue;
            }
            owned += w.count_ones() as usize;
            if owned > FEW_CANDIDATES {
                return None;
            }
            while w != 0 {
                let p = PieceIndex(wi as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
                if !ctx.rejected.contains(&p) {
                    found[n] = p;
                    n += 1;
                }
            }
        }
        let candidates = &found[..n];
        let rarest = candidates.iter().map(|&p| self.bucket_key(p)).min();
        if rarest == Some(0) {
            return None;
        }
        let rarest = rarest.map_or(usize::MAX, |k| k as usize);
        let mut budget = WALK_BUDGET;
        for key in self.nonempty_buckets() {
            let bucket = &self.buckets[key];
            let len = bucket.len();
            let start = rng.random_range(0..len);
            if key == rarest {
                // Entries the walk examines before the first candidate in rotated order.
                let skipped = candidates
                    .iter()
                    .filter(|&&p| self.bucket_key(p) as usize == key)
                    .map(|&p| (self.pos[p.0 as usize] as usize + len - start) % len)
                    .min()
                    .unwrap_or(len);
                if skipped < budget {
                    return Some(bucket.get((start + skipped) % len).copied());
                }
                return Some(self.rarest_of(candidates.iter().copied(), rng));
            }
            if len >= budget {
                // The scan's answer; it draws nothing without candidates.
                return Some(self.rarest_of(candidates.iter().copied(), rng));
            }
            budget -= len;
        }
        Some(None)
    }

    /// Fallback: scan (peer bitfield & untouched) word by word, keep the rarest
    /// (reservoir sampling among ties). O(pieces / 64 + candidates).
    fn rarest_by_scan(&self, ctx: &PickContext<'_>, rng: &mut ChaCha8Rng) -> Option<PieceIndex> {
        let words = self.untouched.words().iter().enumerate();
        let candidates = words.flat_map(|(wi, &u)| {
            let mut w = u & ctx.have_word(wi);
            if let Some(c) = &self.claims {
                w &= !c.load_word(wi);
            }
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let p = PieceIndex(wi as u32 * 64 + w.trailing_zeros());
                    w &= w - 1;
                    p
                })
            })
        });
        self.rarest_of(candidates.filter(|p| !ctx.rejected.contains(p)), rng)
    }

    /// The rarest of `candidates` (in piece order), ties broken by reservoir sampling:
    /// one draw per tie met after the first.
    fn rarest_of(
        &self,
        candidates: impl Iterator<Item = PieceIndex>,
        rng: &mut ChaCha8Rng,
    ) -> Option<PieceIndex> {
        let mut best: Option<(u32, PieceIndex)> = None;
        let mut ties = 0u32;
        for p in candidates {
            let a = self.availability(p);
            match best {
                Some((ba, _)) if a > ba => {}
                Some((ba, _)) if a == ba => {
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((a, p));
                    }
                }
                _ => {
                    best = Some((a, p));
                    ties = 1;
                }
            }
        }
        best.map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Bitfield, PeerKey, TorrentConfig};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    static NO_STALLED: BTreeSet<PeerKey> = BTreeSet::new();

    proptest! {
        /// The candidate replay answers as the walk does, with the same draws: same
        /// piece, same generator state after, over random bucket layouts, started pieces,
        /// sparse peer bitfields (around the [`FEW_CANDIDATES`] bound) and rejects.
        #[test]
        fn candidate_replay_is_the_walk(
            pieces in 1u32..400,
            others in proptest::collection::vec(any::<u64>(), 0..12),
            mine in proptest::collection::vec(any::<u32>(), 0..24),
            rejects in proptest::collection::vec(any::<u32>(), 0..6),
            starts in 0usize..40,
            seed in any::<u64>(),
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let config = TorrentConfig::new(u64::from(pieces) * 16_384, 16_384);
            let mut picker = Picker::new(&config, &Bitfield::new(pieces), &mut rng);
            for mask in &others {
                for i in 0..pieces {
                    // Dense peers (about half the pieces each) spread the buckets.
                    if mask.rotate_left(i) & 1 == 1 {
                        picker.inc(PieceIndex(i));
                    }
                }
            }
            let mut have = Bitfield::new(pieces);
            for &m in &mine {
                if have.set(PieceIndex(m % pieces)) {
                    picker.inc(PieceIndex(m % pieces));
                }
            }
            // Take some pieces out of the buckets (started elsewhere).
            for k in 0..starts.min(pieces as usize) {
                let p = PieceIndex(rng.random_range(0..pieces));
                if picker.untouched.get(p) && k % 2 == 0 {
                    picker.start_piece(p, true);
                }
            }
            let rejected: Vec<PieceIndex> = rejects
                .iter()
                .map(|&r| PieceIndex(mine.get(r as usize % mine.len().max(1)).copied().unwrap_or(r) % pieces))
                .collect();
            let ctx = PickContext {
                peer: PeerKey(1),
                peer_have: &have,
                max_request_len_bytes: 16_384,
                suggested: &[],
                rejected: &rejected,
                allowed_only: None,
                random_first: false,
                endgame_ok: true,
                shadow_ok: false,
                fresh_ok: true,
                import: None,
                stalled: &NO_STALLED,
            };
            let (mut a, mut b) = (rng.clone(), rng);
            let replayed = picker.rarest_untouched(&ctx, &mut a);
            let walked = picker.rarest_walk(&ctx, &mut b);
            prop_assert_eq!(replayed, walked);
            prop_assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
