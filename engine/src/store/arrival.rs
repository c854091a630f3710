//! Hashing on arrival: a piece's digest, and the word of its resume-record
//! entry (xxh3-64 for a SHA-1 torrent; for a BLAKE3 torrent the digest's
//! first 8 bytes, so no second hash runs on the hot path), computed from the bytes as [`Storage::write_block`] writes them,
//! while they are hot in the caller's receive buffer, instead of reading the
//! piece back from the page cache when it is verified.
//!
//! Invariant (per piece with a state): the state has hashed exactly bytes
//! `0..next_offset_bytes` of the piece as they now lie in storage, padding
//! (BEP 47) as the zeros storage keeps there whatever a peer sent. It holds
//! because every write of piece bytes goes through `write_block`, which,
//! under the piece's claim, feeds a write that starts at `next_offset_bytes`,
//! starts the state afresh on a write at offset 0, and drops it on any other
//! write or a failed one. A piece whose blocks arrive in order (whole-piece
//! requests from one p2pe peer, or 16 KiB blocks requested in order) is thus
//! verified without a read-back; any other piece (assembled out of order from
//! several peers, a block cut short and sent again) falls back to one
//! read-back pass that computes the digest and the xxh3 together.
//!
//! Bound: at most [`MAX_LIVE`] states at once (each ~2.5 KiB, plus a 16 KiB
//! BLAKE3 input stage once a read shorter than that arrives); pieces started beyond it
//! are read back. A state left by a piece abandoned mid-way is dropped by
//! the piece's next write or verification.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use xxhash_rust::xxh3::Xxh3;

use crate::base::{BlockOffset, PieceDigest, PieceHashKind, PieceHasher, PieceIndex};

/// Most pieces hashed on arrival at once. A node has at most a few hundred
/// pieces in flight (its peers' request queues); 256 covers that with
/// ~5 MiB of state at worst.
pub(crate) const MAX_LIVE: usize = 256;

/// A run of bytes written into a piece, as storage now holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part<'a> {
    /// Bytes written as given.
    Bytes(&'a [u8]),
    /// Bytes of a padding file: zeros in storage whatever was sent.
    Zeros(u32),
}

/// The hash state of one piece being written in order.
struct Arrival {
    digest: PieceHasher,
    /// The resume-record hash of a SHA-1 torrent; `None` for BLAKE3, whose
    /// record word is the digest's prefix ([`PieceDigest::prefix_u64`]).
    xxh3: Option<Box<Xxh3>>,
    next_offset_bytes: u32,
}

/// Per-piece hash-on-arrival states of one storage; see the module docs.
pub(crate) struct Arrivals {
    slots: Vec<Mutex<Option<Box<Arrival>>>>,
    live: AtomicUsize,
    kind: PieceHashKind,
    /// Pieces verified from their arrival state.
    pub(crate) on_arrival: AtomicU64,
    /// Pieces verified by reading them back.
    pub(crate) read_back: AtomicU64,
}

impl std::fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrivals")
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Arrivals {
    /// States for `piece_count` pieces hashed with `kind`.
    pub(crate) fn new(piece_count: u32, kind: PieceHashKind) -> Self {
        Self {
            slots: (0..piece_count).map(|_| Mutex::new(None)).collect(),
            live: AtomicUsize::new(0),
            kind,
            on_arrival: AtomicU64::new(0),
            read_back: AtomicU64::new(0),
        }
    }

    fn slot(&self, piece: PieceIndex) -> Option<std::sync::MutexGuard<'_, Option<Box<Arrival>>>> {
        self.slots
            .get(piece.0 as usize)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `parts` were written at `offset` of `piece` (the caller holds the
    /// piece's claim): feed them to the piece's state, start one at offset 0,
    /// or drop a state the write makes stale.
    pub(crate) fn on_written(&self, piece: PieceIndex, offset: BlockOffset, parts: &[Part<'_>]) {
        let offset_bytes = offset.0;
        let Some(mut slot) = self.slot(piece) else {
            return;
        };
        let continues = slot
            .as_ref()
            .is_some_and(|a| a.next_offset_bytes == offset_bytes);
        if !continues {
            if slot.take().is_some() {
                self.live.fetch_sub(1, Ordering::AcqRel);
            }
            if offset_bytes != 0 {
                return;
            }
            let admitted = self
                .live
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < MAX_LIVE).then_some(n + 1)
                });
            if admitted.is_err() {
                return;
            }
            *slot = Some(Box::new(Arrival {
                digest: PieceHasher::new(self.kind),
                xxh3: (self.kind == PieceHashKind::Sha1).then(|| Box::new(Xxh3::new())),
                next_offset_bytes: 0,
            }));
        }
        let Some(a) = slot.as_mut() else {
            return;
        };
        for part in parts {
            match *part {
                Part::Bytes(bytes) => {
                    a.digest.update(bytes);
                    if let Some(x) = a.xxh3.as_mut() {
                        x.update(bytes);
                    }
                    // A block is at most a piece (a u32) long.
                    a.next_offset_bytes = a.next_offset_bytes.saturating_add(bytes.len() as u32);
                }
                Part::Zeros(len) => {
                    a.digest.update_zeros(u64::from(len));
                    if let Some(x) = a.xxh3.as_mut() {
                        let mut left = len as usize;
                        while left > 0 {
                            let n = left.min(ZEROS.len());
                            x.update(&ZEROS[..n]);
                            left -= n;
                        }
                    }
                    a.next_offset_bytes = a.next_offset_bytes.saturating_add(len);
                }
            }
        }
    }

    /// A write of `piece` failed part way (its bytes are unknown): drop its state.
    pub(crate) fn forget(&self, piece: PieceIndex) {
        if let Some(mut slot) = self.slot(piece) {
            if slot.take().is_some() {
                self.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Takes `piece`'s state (the caller holds the claim and verifies it
    /// now); its digest and record word (xxh3-64, or the BLAKE3 digest's
    /// prefix) if it covers all `piece_len_bytes`.
    pub(crate) fn take_complete(
        &self,
        piece: PieceIndex,
        piece_len_bytes: u32,
    ) -> Option<(PieceDigest, u64)> {
        let a = self.slot(piece)?.take()?;
        self.live.fetch_sub(1, Ordering::AcqRel);
        let Arrival {
            digest,
            xxh3,
            next_offset_bytes,
        } = *a;
        if next_offset_bytes != piece_len_bytes {
            return None;
        }
        let digest = digest.finalize();
        let word = xxh3.map_or_else(|| digest.prefix_u64(), |x| x.digest());
        Some((digest, word))
    }

    /// States held now (at most [`MAX_LIVE`]).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];
