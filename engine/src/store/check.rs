//! Verification: piece hash (SHA-1 or BLAKE3, [`crate::base::PieceHashes`])
//! and the resume-record word of pieces (xxh3-64 for SHA-1 torrents, the
//! BLAKE3 digest's first 8 bytes for BLAKE3 torrents), on arrival (`store::arrival`) or read from the
//! mappings; the check of existing data at open; detection of files changed
//! behind our back.

use crate::base::PieceIndex;
use std::ops::Range;
use std::sync::atomic::Ordering;

use xxhash_rust::xxh3::Xxh3;

use crate::base::{PieceDigest, PieceHashKind, PieceHasher};

use super::error::StoreError;
use super::storage::{OpenMode, RecordStatus, ResumeReport, ServeCheck, Storage};

/// Hash in chunks of this size so the piece hash and xxh3 read the same
/// bytes while they are in L1/L2 (one pass over the mapping instead of two).
const CHUNK_BYTES: usize = 64 * 1024;

/// Result of [`Storage::check_files`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCheckReport {
    /// Files whose size, mtime, ctime or inode moved since they were last known good.
    pub changed_files: u32,
    /// Verified pieces that will be re-verified (piece hash) before they are served.
    pub recheck_pieces: u32,
    /// Pieces dropped because their file changed size (reading them could fault).
    pub dropped_pieces: u32,
}

/// How one piece fared at open.
#[derive(Clone, Copy)]
enum Initial {
    Fast,
    Hashed,
    Missing,
    Failed,
}

/// A file's state against its stamp.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileState {
    Unchanged,
    /// mtime, ctime or inode moved: its verified pieces are marked for
    /// re-verification.
    Touched,
    /// Size moved: all its pieces were dropped.
    Resized,
}

impl Storage {
    /// The piece hash (SHA-1 or BLAKE3, as the layout holds) and the
    /// resume-record word of piece `piece`, in one pass over the mapping.
    /// For a SHA-1 torrent the word is the xxh3-64 of the bytes and the
    /// SHA-1 is computed only when `want_digest`; for a BLAKE3 torrent the
    /// digest is always computed and the word is its prefix
    /// ([`PieceDigest::prefix_u64`]): BLAKE3 is fast enough that a second
    /// hash would cost more than it saves.
    ///
    /// # Safety
    /// The caller holds the piece's claim or the piece is verified (no writer).
    unsafe fn hash_piece(
        &self,
        piece: PieceIndex,
        want_digest: bool,
    ) -> Result<(Option<PieceDigest>, u64), StoreError> {
        let blake3 = self.layout.piece_hashes().kind() == PieceHashKind::Blake3;
        let mut digest = (want_digest || blake3).then(|| self.layout.piece_hashes().hasher());
        let mut xxh3 = (!blake3).then(Xxh3::new);
        for seg in self.layout.piece_segments(piece)? {
            // SAFETY: forwarded from this function's contract.
            let bytes = unsafe { self.segment_slice(&seg)? };
            for chunk in bytes.chunks(CHUNK_BYTES) {
                if let Some(h) = digest.as_mut() {
                    h.update(chunk);
                }
                if let Some(x) = xxh3.as_mut() {
                    x.update(chunk);
                }
            }
        }
        let digest = digest.map(PieceHasher::finalize);
        let word = match (&xxh3, &digest) {
            (Some(x), _) => x.digest(),
            (None, Some(d)) => d.prefix_u64(),
            (None, None) => 0,
        };
        Ok((digest, word))
    }

    /// Whether every byte of piece `piece` is zero.
    ///
    /// # Safety
    /// As [`Self::hash_piece`].
    unsafe fn piece_is_zero(&self, piece: PieceIndex) -> Result<bool, StoreError> {
        for seg in self.layout.piece_segments(piece)? {
            // SAFETY: forwarded from this function's contract.
            let bytes = unsafe { self.segment_slice(&seg)? };
            // Fold whole chunks (vectorizes) instead of an early-exit byte loop.
            if bytes
                .chunks(4096)
                .any(|c| c.iter().fold(0u8, |a, &b| a | b) != 0)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Verify piece `piece` against its piece hash (BEP 3 SHA-1, or the p2pe
    /// BLAKE3 where the torrent carries it); on a match mark it verified
    /// (servable) with its xxh3 for the resume record. The digest and xxh3
    /// come from the hash-on-arrival state when the piece was written in
    /// order (no read-back, see `store::arrival`), else from one read-back
    /// pass that computes both.
    /// Returns `Ok(false)` when the data does not match (the piece stays
    /// unverified and writable). An already verified piece returns `Ok(true)`
    /// without hashing.
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`], [`StoreError::PieceLost`],
    /// [`StoreError::PieceBusy`] (another thread writes or verifies it).
    pub fn verify_piece(&self, piece: PieceIndex) -> Result<bool, StoreError> {
        let expected = self.layout.piece_hash(piece)?;
        if self.lost.get(piece) {
            return Err(StoreError::PieceLost { piece });
        }
        let _claim = self.claim(piece)?;
        if self.verified.get(piece) {
            return Ok(true);
        }
        let len = self.layout.piece_len(piece)?;
        let (digest, xxh3, counter) = match self.arrivals.take_complete(piece, len) {
            Some((digest, xxh3)) => (Some(digest), xxh3, &self.arrivals.on_arrival),
            None => {
                // SAFETY: we hold the claim.
                let (digest, xxh3) = unsafe { self.hash_piece(piece, true)? };
                (digest, xxh3, &self.arrivals.read_back)
            }
        };
        if digest != Some(expected) {
            return Ok(false);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        self.set_verified(piece, xxh3, true);
        self.on_piece_done(piece);
        Ok(true)
    }

    fn set_verified(&self, piece: PieceIndex, xxh3: u64, dirty: bool) {
        if let Some(h) = self.xxh3.get(piece.0 as usize) {
            h.store(xxh3, Ordering::Release);
        }
        if dirty {
            self.dirty.try_set(piece);
        }
        self.verified.try_set(piece);
    }

    /// A piece was verified: files with no pending piece left start having
    /// their mtime and ctime watched (from now on only others move them).
    fn on_piece_done(&self, piece: PieceIndex) {
        let Ok(segments) = self.layout.piece_segments(piece) else {
            return;
        };
        for seg in segments {
            let Some(f) = self.files.get(seg.file_index) else {
                continue;
            };
            let prev = f
                .pending
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
            if prev == Ok(1) {
                if let Ok(now) = f.current_stamp() {
                    *f.stamp.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
            }
        }
    }

    /// Check every piece at open; see [`Storage::open`].
    pub(crate) fn initial_check(
        &self,
        record_hashes: &[Option<u64>],
        record: RecordStatus,
    ) -> Result<ResumeReport, StoreError> {
        let n = self.piece_count();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .clamp(1, 8)
            .min(n as usize) as u32;
        let per_thread = n.div_ceil(threads.max(1));
        let zero_hashes = self.zero_hashes();
        let counts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = t.saturating_mul(per_thread).min(n);
                    let hi = lo.saturating_add(per_thread).min(n);
                    let zero_hashes = &zero_hashes;
                    s.spawn(move || self.check_range(lo..hi, record_hashes, zero_hashes))
                })
                .collect();
            let mut total = [0u32; 4];
            for h in handles {
                let c = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
                for (t, c) in total.iter_mut().zip(c) {
                    *t += c;
                }
            }
            Ok::<_, StoreError>(total)
        })?;
        let [fast_verified, hash_verified, missing, failed] = counts;
        Ok(ResumeReport {
            fast_verified,
            hash_verified,
            missing,
            failed,
            record,
        })
    }

    /// Piece hash of an all-zero nominal piece and of an all-zero last piece.
    fn zero_hashes(&self) -> [(u32, PieceDigest); 2] {
        let nominal = self.layout.piece_len_bytes();
        let last = self
            .layout
            .piece_len(PieceIndex(self.piece_count().saturating_sub(1)))
            .unwrap_or(nominal);
        [nominal, last].map(|len| {
            let mut h = self.layout.piece_hashes().hasher();
            h.update_zeros(u64::from(len));
            (len, h.finalize())
        })
    }

    fn check_range(
        &self,
        pieces: Range<u32>,
        record_hashes: &[Option<u64>],
        zero_hashes: &[(u32, PieceDigest); 2],
    ) -> Result<[u32; 4], StoreError> {
        let mut counts = [0u32; 4];
        for piece in pieces.map(PieceIndex) {
            let record = record_hashes.get(piece.0 as usize).copied().flatten();
            let outcome = self.check_one(piece, record, zero_hashes)?;
            counts[outcome as usize] += 1;
        }
        Ok(counts)
    }

    fn check_one(
        &self,
        piece: PieceIndex,
        record: Option<u64>,
        zero_hashes: &[(u32, PieceDigest); 2],
    ) -> Result<Initial, StoreError> {
        let expected = self.layout.piece_hash(piece)?;
        let _claim = self.claim(piece)?;
        if let Some(recorded) = record {
            // SAFETY: we hold the claim.
            let (digest, word) = unsafe { self.hash_piece(piece, false)? };
            // A BLAKE3 torrent's pass computed the piece hash itself: check
            // that, a full verification at BLAKE3's speed (a record written
            // by an older p2pe, with xxh3 words, is then still usable).
            let fast = match digest {
                Some(d) => d == expected,
                None => word == recorded,
            };
            if fast {
                self.set_verified(piece, word, false);
                return Ok(Initial::Fast);
            }
        }
        // SAFETY: we hold the claim.
        if self.piece_in_fresh_files(piece)? || unsafe { self.piece_is_zero(piece)? } {
            let len = self.layout.piece_len(piece)?;
            let zero_is_content = zero_hashes.iter().any(|&(l, h)| l == len && h == expected);
            if !zero_is_content {
                return Ok(Initial::Missing);
            }
        }
        // SAFETY: we hold the claim.
        let (digest, xxh3) = unsafe { self.hash_piece(piece, true)? };
        if digest == Some(expected) {
            // Dirty: the bytes may sit only in the page cache of a process that died.
            self.set_verified(piece, xxh3, true);
            Ok(Initial::Hashed)
        } else {
            Ok(Initial::Failed)
        }
    }

    /// Whether every byte of `piece` lies in files that held no data before
    /// this open (so the piece is all zeros without looking).
    fn piece_in_fresh_files(&self, piece: PieceIndex) -> Result<bool, StoreError> {
        Ok(self
            .layout
            .piece_segments(piece)?
            .all(|seg| self.files.get(seg.file_index).is_some_and(|f| f.fresh)))
    }

    /// Serve-path gate: the piece is verified and, as far as we can tell,
    /// its bytes are still the ones that were verified: the check
    /// [`Self::read_block`], [`Self::block_slices`] and
    /// [`Self::servable_regions`] make before handing out any byte (not
    /// public: serving goes through them, so no caller can forget it).
    ///
    /// # Errors
    /// [`StoreError::NotVerified`], [`StoreError::PieceLost`], a file resized
    /// or changed under us, [`StoreError::PieceOutOfRange`].
    pub(crate) fn ensure_servable(&self, piece: PieceIndex) -> Result<(), StoreError> {
        if !self.verified.get(piece) {
            return Err(if self.lost.get(piece) {
                StoreError::PieceLost { piece }
            } else {
                StoreError::NotVerified { piece }
            });
        }
        if self.serve_check == ServeCheck::EveryRead {
            for seg in self.layout.piece_segments(piece)? {
                if self.refresh_file(seg.file_index)? == FileState::Resized {
                    return Err(self.changed(seg.file_index, piece));
                }
            }
        }
        if self.recheck.get(piece) {
            self.recheck_piece(piece)?;
        }
        if !self.verified.get(piece) {
            // Dropped by a concurrent check.
            return Err(StoreError::PieceLost { piece });
        }
        Ok(())
    }

    /// Compare every file with its stamp: mark the verified pieces of files
    /// whose mtime, ctime or inode moved for re-verification before they are
    /// next served (a write whose mtime was put back still moves the ctime),
    /// drop the pieces of files whose size moved. Call it periodically with
    /// [`ServeCheck::Periodic`] (also useful with `EveryRead`, to catch changes
    /// before a peer asks).
    ///
    /// # Errors
    /// [`StoreError::Io`] when `fstat` fails.
    pub fn check_files(&self) -> Result<FileCheckReport, StoreError> {
        let mut report = FileCheckReport::default();
        let lost_before = self.lost.count_ones();
        for i in 0..self.files.len() {
            if self.refresh_file(i)? != FileState::Unchanged {
                report.changed_files += 1;
            }
        }
        report.dropped_pieces = self.lost.count_ones().saturating_sub(lost_before);
        report.recheck_pieces = self.recheck.count_ones();
        Ok(report)
    }

    fn refresh_file(&self, file_index: usize) -> Result<FileState, StoreError> {
        let Some(f) = self.files.get(file_index) else {
            return Ok(FileState::Unchanged);
        };
        if f.map.is_none() {
            return Ok(FileState::Unchanged); // zero-length: no piece depends on it
        }
        let now = f.current_stamp()?;
        let mut stamp = f.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now == *stamp {
            return Ok(FileState::Unchanged);
        }
        if now.len_bytes != f.len_bytes {
            // Reading past a shrunk end faults (SIGBUS): drop every piece of the
            // file, verified or not, and never touch them again.
            for p in self.layout.pieces_of_file(file_index) {
                self.drop_piece(p);
            }
            *stamp = now;
            return Ok(FileState::Resized);
        }
        if self.mode == OpenMode::Create && f.pending.load(Ordering::Acquire) > 0 {
            // Still downloading: our own writes move the times; only size counts.
            // (Seed mode never writes: every time move is someone else's.)
            return Ok(FileState::Unchanged);
        }
        for p in self.layout.pieces_of_file(file_index) {
            if self.verified.get(p) {
                self.recheck.try_set(p);
            }
        }
        *stamp = now;
        Ok(FileState::Touched)
    }

    /// Hash a verified piece again; drop it if it no longer matches.
    fn recheck_piece(&self, piece: PieceIndex) -> Result<(), StoreError> {
        let expected = self.layout.piece_hash(piece)?;
        // SAFETY: the piece is verified or lost; both are never written.
        let (digest, xxh3) = unsafe { self.hash_piece(piece, true)? };
        if digest == Some(expected) {
            if let Some(h) = self.xxh3.get(piece.0 as usize) {
                h.store(xxh3, Ordering::Release);
            }
            self.recheck.clear(piece);
            return Ok(());
        }
        self.drop_piece(piece);
        let file_index = self
            .layout
            .piece_segments(piece)?
            .next()
            .map_or(0, |s| s.file_index);
        Err(self.changed(file_index, piece))
    }

    /// Mark `piece` lost. `lost` is set before `verified` is cleared, so a
    /// writer that sees it unverified also sees it lost (see `write_block`).
    fn drop_piece(&self, piece: PieceIndex) {
        self.lost.try_set(piece);
        // Never written again: its hash-on-arrival state would only hold a slot.
        self.arrivals.forget(piece);
        self.recheck.clear(piece);
        self.dirty.clear(piece);
        self.verified.clear(piece);
    }

    fn changed(&self, file_index: usize, piece: PieceIndex) -> StoreError {
        StoreError::ChangedOnDisk {
            path: self
                .files
                .get(file_index)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            piece,
        }
    }
}
