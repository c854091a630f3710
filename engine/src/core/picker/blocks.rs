//! Block-level bookkeeping of started pieces: arrivals, cancellations, hash results.

use super::{chunk_range, BlockOutcome, CheckedCopy, Picker, RECEIVED};
use crate::core::{Block, PeerKey, PieceIndex};

impl Picker {
    /// Whether `block` would bring at least one chunk not yet received.
    pub(crate) fn wants(&self, block: &Block) -> bool {
        let Some(pp) = self
            .partial
            .get(block.piece.0 as usize)
            .and_then(|p| p.as_ref())
        else {
            return false;
        };
        let (lo, hi) = chunk_range(block);
        !pp.verifying && pp.chunks.iter().take(hi).skip(lo).any(|&c| c != RECEIVED)
    }

    /// Records the arrival of `block` from `peer`, whose request the caller has matched.
    #[cfg(test)]
    pub(crate) fn on_block(&mut self, peer: PeerKey, block: Block) -> BlockOutcome {
        self.on_block_from(peer, block, false)
    }

    /// [`Picker::on_block`]; with `relay_part`, a block that is the head of a longer
    /// request of `peer` (a relay part, [`crate::core::TorrentConfig::relay_part_bytes`])
    /// shrinks that request to its rest.
    pub(crate) fn on_block_from(
        &mut self,
        peer: PeerKey,
        block: Block,
        relay_part: bool,
    ) -> BlockOutcome {
        let mut out = BlockOutcome::default();
        let Some(pp) = self
            .partial
            .get_mut(block.piece.0 as usize)
            .and_then(|p| p.as_mut())
        else {
            out.duplicate = true;
            return out;
        };
        if let Some(i) = pp.requests.iter().position(|r| *r == (peer, block)) {
            pp.requests.swap_remove(i);
        } else if let Some((_, b)) = pp.requests.iter_mut().find(|(k, b)| {
            relay_part && *k == peer && b.offset == block.offset && block.len_bytes < b.len_bytes
        }) {
            // A relay peer's part, the head of the request: the request stands for the rest.
            b.offset.0 += block.len_bytes;
            b.len_bytes -= block.len_bytes;
        }
        let (lo, hi) = chunk_range(&block);
        let mut fresh = 0;
        for (c, src) in pp
            .chunks
            .iter_mut()
            .zip(pp.chunk_sources.iter_mut())
            .take(hi)
            .skip(lo)
        {
            if *c != RECEIVED {
                *c = RECEIVED;
                *src = Some(peer);
                fresh += 1;
            }
        }
        pp.received += fresh;
        out.duplicate = fresh == 0;
        if fresh > 0 && !pp.contributors.contains(&peer) {
            pp.contributors.push(peer);
        }
        // Requests overlapping what just arrived are redundant (endgame duplicates).
        let overlapping: Vec<(PeerKey, Block)> = pp
            .requests
            .iter()
            .filter(|(_, b)| {
                let (l, h) = chunk_range(b);
                l < hi && lo < h
            })
            .copied()
            .collect();
        for (p, b) in &overlapping {
            self.cancel_request(*p, *b);
        }
        out.cancels = overlapping;
        if let Some(pp) = self
            .partial
            .get_mut(block.piece.0 as usize)
            .and_then(|p| p.as_mut())
        {
            if pp.received as usize == pp.chunks.len() && !pp.verifying {
                pp.verifying = true;
                out.piece_complete = true;
            }
        }
        out
    }

    /// Forgets `peer`'s request of `block` (reject, choke, cancel, disconnect, snub):
    /// its unreceived chunks lose a requester and become free when none is left.
    pub(crate) fn cancel_request(&mut self, peer: PeerKey, block: Block) {
        let piece = block.piece;
        let Some(pp) = self
            .partial
            .get_mut(piece.0 as usize)
            .and_then(|p| p.as_mut())
        else {
            return;
        };
        let Some(i) = pp.requests.iter().position(|r| *r == (peer, block)) else {
            return;
        };
        // A parole piece's pin lapses with its peer's last request (`active_pin`).
        pp.requests.swap_remove(i);
        let (lo, hi) = chunk_range(&block);
        let was_open = pp.free > 0;
        for c in pp.chunks.iter_mut().take(hi).skip(lo) {
            if *c != RECEIVED && *c > 0 {
                *c -= 1;
                if *c == 0 {
                    pp.free += 1;
                    self.free_chunks += 1;
                }
            }
        }
        if pp.received == 0 && pp.requests.is_empty() {
            // Nothing of it is here or coming: back to rarest-first as an untouched piece.
            let owned = pp.owns_claim;
            self.partial[piece.0 as usize] = None;
            self.partial_list.retain(|&p| p != piece);
            self.open.retain(|&p| p != piece);
            self.return_untouched(piece, owned);
        } else if !was_open && pp.free > 0 {
            self.open.push(piece);
        }
    }

    /// Another torrent of this node verified `piece`: it is no longer needed. Returns the
    /// outstanding requests covering it (to cancel); its claim is left set (had).
    pub(crate) fn on_had_elsewhere(&mut self, piece: PieceIndex) -> Vec<(PeerKey, Block)> {
        self.parole.remove(&piece);
        let i = piece.0 as usize;
        if self.untouched.get(piece) {
            self.remove_from_bucket(piece, self.bucket_key(piece));
            self.untouched.clear(piece);
            self.free_chunks -= u64::from(self.chunk_count(piece));
            return Vec::new();
        }
        let Some(pp) = self.partial.get_mut(i).and_then(Option::take) else {
            return Vec::new();
        };
        self.partial_list.retain(|&p| p != piece);
        self.open.retain(|&p| p != piece);
        self.free_chunks -= u64::from(pp.free);
        pp.requests
    }

    /// The hash check of `piece` finished. Returns who supplied its blocks (to blame on
    /// failure, see smart ban in `core::torrent`); empty when the piece was not awaiting
    /// its check. On failure the piece is needed again from scratch; on success it
    /// leaves parole.
    pub(crate) fn on_verified(&mut self, piece: PieceIndex, valid: bool) -> CheckedCopy {
        let Some(slot) = self.partial.get_mut(piece.0 as usize) else {
            return CheckedCopy::default();
        };
        if !slot.as_ref().is_some_and(|pp| pp.verifying) {
            return CheckedCopy::default();
        }
        let Some(pp) = slot.take() else {
            return CheckedCopy::default();
        };
        self.partial_list.retain(|&p| p != piece);
        if valid {
            self.parole.remove(&piece);
        } else {
            self.free_chunks += pp.chunks.len() as u64;
            self.return_untouched(piece, pp.owns_claim);
        }
        CheckedCopy {
            contributors: pp.contributors,
            chunk_sources: pp.chunk_sources,
        }
    }
}
