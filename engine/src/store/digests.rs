//! Per-block digests of a piece as it lies in storage: what smart ban
//! (issue 11 item 4, after libtorrent's `smart_ban` plugin) compares between a
//! copy that failed its hash check and the copy that passed, to find which
//! peer sent the wrong block.

use sha1::{Digest, Sha1};

use super::{Storage, StoreError};
use crate::base::PieceIndex;

impl Storage {
    /// SHA-1 of each `block_len_bytes` block of piece `piece` (the last one may
    /// be short), read from the mapping: `ceil(piece_len / block_len_bytes)`
    /// digests of 20 bytes. SHA-1 rather than a faster hash because a peer
    /// controls the bytes: it must not be able to make a wrong block look right.
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`], [`StoreError::PieceBusy`] (another
    /// thread writes or verifies an unverified piece), errors of the layout.
    ///
    /// # Panics
    /// Never; `block_len_bytes` 0 is treated as 1.
    pub fn block_digests(
        &self,
        piece: PieceIndex,
        block_len_bytes: u32,
    ) -> Result<Vec<[u8; 20]>, StoreError> {
        let block = block_len_bytes.max(1) as usize;
        // An unverified piece may be written: hold its claim while reading.
        let _claim = if self.is_verified(piece) {
            None
        } else {
            Some(self.claim(piece)?)
        };
        let mut out = Vec::new();
        let mut hasher = Sha1::new();
        let mut filled = 0usize;
        for seg in self.layout.piece_segments(piece)? {
            // SAFETY: the piece is verified (never written again) or we hold
            // its claim for the whole loop.
            let mut bytes = unsafe { self.segment_slice(&seg)? };
            while !bytes.is_empty() {
                let take = (block - filled).min(bytes.len());
                hasher.update(&bytes[..take]);
                bytes = &bytes[take..];
                filled += take;
                if filled == block {
                    out.push(std::mem::take(&mut hasher).finalize().into());
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            out.push(hasher.finalize().into());
        }
        Ok(out)
    }
}
