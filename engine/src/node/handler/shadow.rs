//! Shadow pieces in the node: blocks of a node-wide endgame duplicate
//! ([`crate::core::Torrent::is_shadow`]) are kept in a per-piece buffer, not
//! written to storage, because the worker that owns the piece's claim may be
//! writing the same piece. A complete shadow is hashed from its buffer and,
//! if right, committed to storage under the store's piece claim (retried on
//! the next tick while the owner holds it), then reported verified.
//!
//! Bound: at most [`MAX_SHADOW_BUFFERS`] buffers of one piece each, and at
//! most [`MAX_SHADOW_BUFFER_BYTES`] in all per worker (or one piece, when a
//! piece is larger).

use sha1::{Digest, Sha1};

use crate::base::PieceDigest;
use crate::core::{BlockOffset, PieceIndex, BLOCK_LEN_BYTES};
use crate::node::dispatch::Ctx;
use crate::store::StoreError;

use super::NodeHandler;

/// Most shadow buffers a worker holds: the core's `MAX_SHADOW_PIECES` (8), twice,
/// for buffers of shadows the core abandoned and not yet reused.
pub(super) const MAX_SHADOW_BUFFERS: usize = 16;

/// Most bytes of shadow buffers a worker holds: 8 pieces of 4 MiB (what
/// `p2pe create` picks for files of 4-8 GB), so the anonymous memory a
/// node-wide endgame costs stays bounded whatever the piece length; at least
/// one buffer is always allowed.
pub(super) const MAX_SHADOW_BUFFER_BYTES: usize = 32 << 20;

/// How many times a commit retries within one call when a write loses to the
/// owner's verification of the same bytes.
const COMMIT_ATTEMPTS: usize = 3;

impl NodeHandler {
    /// Copies wanted payload (a block or a streamed chunk of one) of shadow
    /// `piece` into its buffer; false if the
    /// buffer cannot be had (bound reached) or the range is outside the piece.
    pub(super) fn store_shadow(
        &mut self,
        piece: PieceIndex,
        offset: BlockOffset,
        data: &[u8],
    ) -> bool {
        let len = self.torrent.config().piece_len(piece) as usize;
        if !self.shadow_bufs.contains_key(&piece) {
            let full = |bufs: &std::collections::HashMap<PieceIndex, Vec<u8>>| {
                let used: usize = bufs.values().map(Vec::len).sum();
                bufs.len() >= MAX_SHADOW_BUFFERS
                    || (used > 0 && used + len > MAX_SHADOW_BUFFER_BYTES)
            };
            if full(&self.shadow_bufs) {
                let torrent = &self.torrent;
                self.shadow_bufs.retain(|p, _| torrent.is_shadow(*p));
            }
            if full(&self.shadow_bufs) {
                return false;
            }
            self.shadow_bufs.insert(piece, vec![0; len]);
        }
        let Some(buf) = self.shadow_bufs.get_mut(&piece) else {
            return false;
        };
        let start = offset.0 as usize;
        match buf.get_mut(start..start + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// The core asks to verify shadow `piece`: hash its buffer; commit it if
    /// right (now, or on a later tick), report it wrong with its block digests
    /// otherwise.
    pub(super) fn verify_shadow(&mut self, ctx: &mut Ctx, piece: PieceIndex) {
        let Some(buf) = self.shadow_bufs.get(&piece) else {
            // Nothing buffered (bound reached): a failed copy, blaming nobody.
            let now = self.now();
            self.torrent.handle_piece_verified(now, piece, false);
            return;
        };
        let hashes = self.storage.layout().piece_hashes();
        let expected = hashes.get(piece);
        if Some(PieceDigest::of(hashes.kind(), buf)) != expected {
            let digests = buf
                .chunks(BLOCK_LEN_BYTES as usize)
                .map(|c| Sha1::digest(c).into())
                .collect();
            self.shadow_bufs.remove(&piece);
            self.torrent.handle_block_digests(piece, digests);
            let now = self.now();
            self.torrent.handle_piece_verified(now, piece, false);
            return;
        }
        self.shadow_commits.insert(piece);
        self.commit_shadows(ctx);
    }

    /// Commits verified shadow buffers to storage; those whose piece the owner
    /// is busy with stay for the next tick.
    pub(super) fn commit_shadows(&mut self, ctx: &mut Ctx) {
        let pending: Vec<PieceIndex> = self.shadow_commits.iter().copied().collect();
        for piece in pending {
            let Some(buf) = self.shadow_bufs.get(&piece) else {
                self.shadow_commits.remove(&piece);
                continue;
            };
            match self.commit(piece, buf) {
                Ok(()) => {}
                Err(StoreError::PieceBusy { .. }) => continue,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
            self.shadow_commits.remove(&piece);
            self.shadow_bufs.remove(&piece);
            self.on_verified(ctx, piece, true);
        }
    }

    /// Writes `data` as piece `piece` and verifies it; `Ok` once the piece is
    /// verified in storage (by us or, meanwhile, by its owner).
    fn commit(&self, piece: PieceIndex, data: &[u8]) -> Result<(), StoreError> {
        for _ in 0..COMMIT_ATTEMPTS {
            for (i, block) in data.chunks(BLOCK_LEN_BYTES as usize).enumerate() {
                let offset = BlockOffset((i as u32) * BLOCK_LEN_BYTES);
                match self.storage.write_block(piece, offset, block) {
                    Ok(()) => {}
                    Err(StoreError::AlreadyVerified { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            match self.storage.verify_piece(piece) {
                Ok(true) => return Ok(()),
                // The owner wrote a block of its own copy in between: again.
                Ok(false) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::PieceBusy { piece })
    }
}
