//! Block reads through the mappings, block writes with `pwrite(2)`.
//!
//! All raw access to mapped bytes lives in this file. The aliasing rules it
//! relies on are the module invariants of [`crate::store`]: bytes of a piece
//! are written only by the thread holding that piece's claim and only while
//! the piece is neither verified nor lost; `&[u8]` views and the runtime's
//! send [`Region`]s are created only of verified pieces (views also of a
//! piece whose claim the caller holds).
//!
//! Writes go through the file descriptor, not the mapping (same page cache,
//! so the mapping sees them): a store into a mapped page of a preallocated
//! (unwritten) extent faults, reads ahead and zero-fills whole folios before
//! the copy, which cost a leecher ~27 % of its CPU in a profile of
//! `p2pe get`; `pwrite` of whole pages skips both (see `perf/recv-path.md`).

use std::any::Any;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::base::{Block, BlockOffset, PieceIndex};
use crate::rt::Region;

use super::arrival::Part;
use super::error::StoreError;
use super::layout::{Segment, Segments};
use super::storage::{OpenMode, Storage};

/// A held per-piece claim; released on drop.
pub(crate) struct Claim<'a> {
    storage: &'a Storage,
    piece: PieceIndex,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.storage.claims.clear(self.piece);
    }
}

impl Storage {
    /// Take the claim of `piece` (range-checked by the caller).
    ///
    /// # Errors
    /// [`StoreError::PieceBusy`] when another thread holds it.
    pub(crate) fn claim(&self, piece: PieceIndex) -> Result<Claim<'_>, StoreError> {
        if !self.claims.try_set(piece) {
            return Err(StoreError::PieceBusy { piece });
        }
        Ok(Claim {
            storage: self,
            piece,
        })
    }

    /// Start of `seg` in its mapping, and its length, bounds-checked.
    fn segment_ptr(&self, seg: &Segment) -> Result<(*mut u8, usize), StoreError> {
        let outside = || StoreError::InvalidLayout("segment outside its mapping".into());
        let map = self
            .files
            .get(seg.file_index)
            .and_then(|f| f.map.as_ref())
            .ok_or_else(outside)?;
        let off = usize::try_from(seg.file_offset_bytes).map_err(|_| outside())?;
        let len = seg.len_bytes as usize;
        match off.checked_add(len) {
            Some(end) if end <= map.len() => {}
            _ => return Err(outside()),
        }
        // SAFETY: `off + len <= map.len()` was checked above, so the offset
        // pointer stays inside the mapping (not dereferenced here).
        Ok((unsafe { map.as_mut_ptr().add(off) }, len))
    }

    /// A shared view of the bytes of `seg`, valid while `self` lives.
    ///
    /// # Safety
    /// No thread may write these bytes while the view lives: the caller must
    /// hold the claim of the piece `seg` belongs to (and keep it while using
    /// the view), or the piece must be verified (verified pieces are never
    /// written again; see the module invariants).
    pub(crate) unsafe fn segment_slice(&self, seg: &Segment) -> Result<&[u8], StoreError> {
        let (ptr, len) = self.segment_ptr(seg)?;
        // SAFETY: `ptr..ptr+len` lies inside a live mapping owned by `self`
        // (checked by `segment_ptr`), which outlives the returned borrow; the
        // bytes are initialized (file-backed); no writer aliases them per this
        // function's contract. A concurrent truncation by another process can
        // raise SIGBUS, which is not a memory-safety issue.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Copy the `buf.len()` bytes at `offset` of piece `piece` into `buf` (a
    /// block of at most `u32::MAX` bytes). Only verified pieces are served; a
    /// piece whose file changed on disk is re-verified first.
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`], [`StoreError::RangeOutOfPiece`] (bad
    /// request: the peer's fault), [`StoreError::NotVerified`],
    /// [`StoreError::PieceLost`], [`StoreError::ChangedOnDisk`] (the piece was
    /// dropped), [`StoreError::Io`] from `fstat`.
    pub fn read_block(
        &self,
        piece: PieceIndex,
        offset: BlockOffset,
        buf: &mut [u8],
    ) -> Result<(), StoreError> {
        let mut pos = 0;
        for s in self.block_slices(block_of(piece, offset, buf.len())?)? {
            let dst = buf.get_mut(pos..pos + s.len()).ok_or_else(|| {
                StoreError::InvalidLayout("segments longer than the block".into())
            })?;
            dst.copy_from_slice(s);
            pos += s.len();
        }
        Ok(())
    }

    /// Zero-copy views of the bytes of `block`, one per file the block
    /// touches (usually one, two across a file boundary), for a vectored send.
    /// Same checks as [`Self::read_block`].
    ///
    /// # Errors
    /// As [`Self::read_block`].
    pub fn block_slices(&self, block: Block) -> Result<SmallVec<[&[u8]; 2]>, StoreError> {
        let segments = self.layout.segments(block)?;
        self.ensure_servable(block.piece)?;
        segments
            // SAFETY: the piece is verified (`ensure_servable`), and verified
            // pieces are never written again by this storage.
            .map(|seg| unsafe { self.segment_slice(&seg) })
            .collect()
    }

    /// The runtime's send regions of the bytes of `block`, one per file the
    /// block touches (usually one, two across a file boundary), for a zero-copy
    /// send
    /// ([`crate::rt::Ctx::send_region`]). The only way to get a [`Region`] of
    /// the torrent's data: it is made here, of a verified piece alone (same
    /// checks as [`Self::read_block`]), and points into this storage's own
    /// mapping, which it keeps alive while queued.
    ///
    /// # Errors
    /// As [`Self::read_block`]: [`StoreError::PieceOutOfRange`],
    /// [`StoreError::RangeOutOfPiece`], [`StoreError::NotVerified`],
    /// [`StoreError::PieceLost`], [`StoreError::ChangedOnDisk`],
    /// [`StoreError::Io`] from `fstat`.
    pub fn servable_regions(&self, block: Block) -> Result<SmallVec<[Region; 2]>, StoreError> {
        let segments = self.layout.segments(block)?;
        self.ensure_servable(block.piece)?;
        segments.map(|seg| self.region(&seg)).collect()
    }

    /// The send region of `seg`, a segment of a piece the caller found
    /// servable.
    fn region(&self, seg: &Segment) -> Result<Region, StoreError> {
        let (ptr, _) = self.segment_ptr(seg)?;
        let f = self.files.get(seg.file_index).ok_or_else(|| {
            StoreError::InvalidLayout("segment of a file not in the storage".into())
        })?;
        let owner: Arc<dyn Any + Send + Sync> = f.clone();
        // SAFETY: `ptr` starts `seg` inside `f`'s mapping (bounds-checked by
        // `segment_ptr`), a shared mapping of `f.file` from offset 0, so it
        // holds bytes `seg.file_offset_bytes..+len` of that descriptor; the
        // region holds `f`, which owns both the mapping and the descriptor;
        // the piece is verified (`servable_regions` checked it), and verified
        // (or since lost) pieces are never written through this storage again
        // (module invariants).
        Ok(unsafe {
            Region::from_raw_parts(
                owner,
                ptr,
                f.file.as_raw_fd(),
                seg.file_offset_bytes,
                u64::from(seg.len_bytes),
            )
        })
    }

    /// Copy `data` into piece `piece` at `offset` (a received block),
    /// feeding the piece's hash on arrival when the write continues it in
    /// order (see `store::arrival`): `data` is hashed while the caller's
    /// buffer is hot, so [`Self::verify_piece`] need not read the piece back.
    ///
    /// Thread contract: distinct pieces may be written concurrently from
    /// distinct threads; one piece must have one writer at a time (the
    /// runtime's claim). A second concurrent writer or verifier of the same
    /// piece gets [`StoreError::PieceBusy`] instead of racing.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] in seed mode; [`StoreError::PieceOutOfRange`],
    /// [`StoreError::RangeOutOfPiece`]; [`StoreError::AlreadyVerified`];
    /// [`StoreError::PieceLost`]; [`StoreError::PieceBusy`].
    pub fn write_block(
        &self,
        piece: PieceIndex,
        offset: BlockOffset,
        data: &[u8],
    ) -> Result<(), StoreError> {
        if self.mode == OpenMode::Seed {
            return Err(StoreError::ReadOnly);
        }
        let segments = self.layout.segments(block_of(piece, offset, data.len())?)?;
        let _claim = self.claim(piece)?;
        // Checked under the claim: `verified` is set only under the claim, and
        // `lost` is set before `verified` is cleared (Release/Acquire), so a
        // piece seen unverified here is either never-verified or seen lost.
        if self.verified.get(piece) {
            return Err(StoreError::AlreadyVerified { piece });
        }
        if self.lost.get(piece) {
            return Err(StoreError::PieceLost { piece });
        }
        // What storage holds after the write, for the hash on arrival.
        let mut parts: SmallVec<[Part<'_>; 2]> = SmallVec::new();
        let written = self.write_segments(segments, data, &mut parts);
        match written {
            Ok(()) => self.arrivals.on_written(piece, offset, &parts),
            // Some bytes may have landed: the piece's arrival state is stale.
            Err(_) => self.arrivals.forget(piece),
        }
        written
    }

    /// The copy loop of [`Self::write_block`] (the caller holds the claim and
    /// checked the piece is neither verified nor lost); `parts` receives what
    /// each segment now holds.
    fn write_segments<'d>(
        &self,
        segments: Segments<'_>,
        data: &'d [u8],
        parts: &mut SmallVec<[Part<'d>; 2]>,
    ) -> Result<(), StoreError> {
        let mut src = data;
        for seg in segments {
            // Bounds-checked against the mapping (so a write never grows the file).
            let (_, len) = self.segment_ptr(&seg)?;
            let (head, rest) = src.split_at_checked(len).ok_or_else(|| {
                StoreError::InvalidLayout("segments longer than the block".into())
            })?;
            let f = self.files.get(seg.file_index).ok_or_else(|| {
                StoreError::InvalidLayout("segment of a file not in the storage".into())
            })?;
            if f.padding {
                // BEP 47: padding is zeros, never written (what a peer sent
                // there is dropped; the hash check reads the zeros).
                parts.push(Part::Zeros(seg.len_bytes));
                src = rest;
                continue;
            }
            // We hold the piece's claim and the piece is neither verified nor
            // lost, so no other thread reads or writes these bytes (module
            // invariants); the kernel copies `head` into the page cache.
            f.file
                .write_all_at(head, seg.file_offset_bytes)
                .map_err(|e| StoreError::io(&f.path, "write", e))?;
            parts.push(Part::Bytes(head));
            src = rest;
        }
        Ok(())
    }
}

/// The block of a `len`-byte buffer at `offset` of `piece`, or the range
/// error a buffer longer than any block (`u32::MAX` bytes) deserves.
fn block_of(piece: PieceIndex, offset: BlockOffset, len: usize) -> Result<Block, StoreError> {
    let len_bytes = u32::try_from(len).map_err(|_| StoreError::RangeOutOfPiece {
        piece,
        offset,
        len_bytes: len as u64,
        piece_len_bytes: 0,
    })?;
    Ok(Block {
        piece,
        offset,
        len_bytes,
    })
}
