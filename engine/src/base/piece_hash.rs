//! Piece hashes: the SHA-1 of BEP 3 `pieces`, or the BLAKE3 of the p2pe
//! `p2pe blake3` info key (see [`crate::wire::metainfo`] and
//! `docs/metainfo-blake3.md`), behind one type set so that the store, the
//! node and `p2pe create` have one verification path, not two.
//!
//! Invariants: a [`PieceHashes`] holds digests of one kind only; a
//! [`PieceHasher`] yields a [`PieceDigest`] of its own kind; a digest of one
//! kind never equals one of the other.

use std::fmt;

use sha1::{Digest, Sha1};

use super::PieceIndex;

/// Length of a SHA-1 digest in bytes: one BEP 3 piece hash, one info-hash.
pub const SHA1_LEN_BYTES: usize = 20;

/// Length of a BLAKE3 digest in bytes (the default 256-bit output).
pub const BLAKE3_LEN_BYTES: usize = 32;

/// BLAKE3 input is staged up to this many bytes before it is hashed: the
/// `blake3` crate hashes 1 KiB chunks of one `update` in parallel SIMD lanes
/// (16 lanes with AVX-512), so a 1.4 KiB TCP read hashed alone runs on one
/// lane at a fraction of the speed. 16 KiB = 16 chunks fills every lane.
const BLAKE3_STAGE_BYTES: usize = 16 * 1024;

/// Which function a torrent's pieces are verified with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PieceHashKind {
    /// SHA-1, 20 bytes per piece (BEP 3 `pieces`): every v1 torrent has it.
    Sha1,
    /// BLAKE3, 32 bytes per piece (the p2pe `p2pe blake3` key), used where present.
    Blake3,
}

impl PieceHashKind {
    /// Digest length in bytes: 20 for SHA-1, 32 for BLAKE3.
    pub fn len_bytes(self) -> usize {
        match self {
            Self::Sha1 => SHA1_LEN_BYTES,
            Self::Blake3 => BLAKE3_LEN_BYTES,
        }
    }
}

impl fmt::Display for PieceHashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "SHA-1",
            Self::Blake3 => "BLAKE3",
        })
    }
}

/// The digest of one piece's bytes, tagged with its function.
///
/// `Display` prints lowercase hex (40 digits for SHA-1, 64 for BLAKE3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PieceDigest {
    /// SHA-1 (BEP 3).
    Sha1([u8; SHA1_LEN_BYTES]),
    /// BLAKE3 (p2pe key).
    Blake3([u8; BLAKE3_LEN_BYTES]),
}

impl PieceDigest {
    /// Hashes `data` (one whole piece) with `kind`.
    pub fn of(kind: PieceHashKind, data: &[u8]) -> Self {
        match kind {
            PieceHashKind::Sha1 => Self::Sha1(Sha1::digest(data).into()),
            PieceHashKind::Blake3 => Self::Blake3(*blake3::hash(data).as_bytes()),
        }
    }

    /// The first 8 bytes of the digest as a little-endian `u64`: the word the
    /// resume record (`store::resume`) keeps for a piece of a BLAKE3 torrent
    /// instead of a separate xxh3-64 (BLAKE3 is already computed on arrival).
    pub fn prefix_u64(&self) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.as_bytes()[..8]);
        u64::from_le_bytes(word)
    }

    /// The function this digest was made with.
    pub fn kind(&self) -> PieceHashKind {
        match self {
            Self::Sha1(_) => PieceHashKind::Sha1,
            Self::Blake3(_) => PieceHashKind::Blake3,
        }
    }

    /// The digest's bytes (20 or 32).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sha1(d) => d,
            Self::Blake3(d) => d,
        }
    }
}

impl fmt::Display for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({self})", self.kind())
    }
}

/// An incremental piece hasher: feed a piece's bytes in order, in slices of
/// any size, then [`PieceHasher::finalize`]. Splitting the input never
/// changes the digest.
#[derive(Clone)]
pub enum PieceHasher {
    /// SHA-1 state (hardware SHA extensions when the CPU has them).
    Sha1(Sha1),
    /// BLAKE3 state and its input stage (boxed: ~1.9 KiB of chaining values).
    Blake3 {
        /// The hasher.
        hasher: Box<blake3::Hasher>,
        /// Input not hashed yet: fewer than 16 KiB, never more allocated
        /// (see `BLAKE3_STAGE_BYTES`).
        stage: Vec<u8>,
    },
}

impl PieceHasher {
    /// A fresh hasher of `kind`.
    pub fn new(kind: PieceHashKind) -> Self {
        match kind {
            PieceHashKind::Sha1 => Self::Sha1(Sha1::new()),
            PieceHashKind::Blake3 => Self::Blake3 {
                hasher: Box::new(blake3::Hasher::new()),
                stage: Vec::new(),
            },
        }
    }

    /// The function this hasher computes.
    pub fn kind(&self) -> PieceHashKind {
        match self {
            Self::Sha1(_) => PieceHashKind::Sha1,
            Self::Blake3 { .. } => PieceHashKind::Blake3,
        }
    }

    /// Feeds the next bytes of the piece.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Blake3 { hasher, stage } => {
                let mut data = data;
                if !stage.is_empty() {
                    // Top the stage up to a full stage, hash it, go on with the rest.
                    let take = (BLAKE3_STAGE_BYTES - stage.len()).min(data.len());
                    let (head, rest) = data.split_at(take);
                    stage.extend_from_slice(head);
                    data = rest;
                    if stage.len() < BLAKE3_STAGE_BYTES {
                        return;
                    }
                    hasher.update(stage);
                    stage.clear();
                }
                if data.len() >= BLAKE3_STAGE_BYTES {
                    hasher.update(data);
                } else if !data.is_empty() {
                    if stage.capacity() == 0 {
                        stage.reserve_exact(BLAKE3_STAGE_BYTES);
                    }
                    stage.extend_from_slice(data);
                }
            }
        }
    }

    /// Feeds `len_bytes` zero bytes (BEP 47 padding, which is zeros in storage
    /// whatever a peer sent).
    pub fn update_zeros(&mut self, mut len_bytes: u64) {
        static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];
        while len_bytes > 0 {
            let n = len_bytes.min(ZEROS.len() as u64) as usize;
            self.update(&ZEROS[..n]);
            len_bytes -= n as u64;
        }
    }

    /// The digest of everything fed.
    pub fn finalize(self) -> PieceDigest {
        match self {
            Self::Sha1(h) => PieceDigest::Sha1(h.finalize().into()),
            Self::Blake3 { mut hasher, stage } => {
                hasher.update(&stage);
                PieceDigest::Blake3(*hasher.finalize().as_bytes())
            }
        }
    }
}

impl fmt::Debug for PieceHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceHasher({})", self.kind())
    }
}

/// The expected digest of every piece of a torrent, in piece order, all of
/// one kind: what a node verifies received and existing data against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceHashes {
    /// One SHA-1 per piece (BEP 3 `pieces`).
    Sha1(Vec<[u8; SHA1_LEN_BYTES]>),
    /// One BLAKE3 per piece (the p2pe `p2pe blake3` key).
    Blake3(Vec<[u8; BLAKE3_LEN_BYTES]>),
}

impl PieceHashes {
    /// The function these digests were made with.
    pub fn kind(&self) -> PieceHashKind {
        match self {
            Self::Sha1(_) => PieceHashKind::Sha1,
            Self::Blake3(_) => PieceHashKind::Blake3,
        }
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        match self {
            Self::Sha1(h) => h.len(),
            Self::Blake3(h) => h.len(),
        }
    }

    /// Whether there is no digest at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The expected digest of piece `piece`; `None` past the end.
    pub fn get(&self, piece: PieceIndex) -> Option<PieceDigest> {
        let i = usize::try_from(piece.0).ok()?;
        match self {
            Self::Sha1(h) => h.get(i).copied().map(PieceDigest::Sha1),
            Self::Blake3(h) => h.get(i).copied().map(PieceDigest::Blake3),
        }
    }

    /// A fresh hasher of this kind.
    pub fn hasher(&self) -> PieceHasher {
        PieceHasher::new(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_equals_one_shot_for_any_split() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        for kind in [PieceHashKind::Sha1, PieceHashKind::Blake3] {
            let whole = PieceDigest::of(kind, &data);
            assert_eq!(whole.kind(), kind);
            assert_eq!(whole.as_bytes().len(), kind.len_bytes());
            for split in [
                1usize,
                1460,
                9000,
                16 * 1024,
                16 * 1024 + 1,
                65_536,
                200_000,
            ] {
                let mut h = PieceHasher::new(kind);
                for c in data.chunks(split) {
                    h.update(c);
                }
                assert_eq!(h.finalize(), whole, "{kind} split {split}");
            }
        }
    }

    #[test]
    fn known_answers_and_zeros() {
        assert_eq!(
            PieceDigest::of(PieceHashKind::Sha1, b"abc").to_string(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // BLAKE3 of the empty input (the reference implementation's test vector).
        assert_eq!(
            PieceDigest::of(PieceHashKind::Blake3, b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        for kind in [PieceHashKind::Sha1, PieceHashKind::Blake3] {
            let mut h = PieceHasher::new(kind);
            h.update_zeros(40_000);
            assert_eq!(h.finalize(), PieceDigest::of(kind, &[0; 40_000]));
        }
    }

    #[test]
    fn digests_of_two_kinds_never_match() {
        let hashes = PieceHashes::Blake3(vec![[0; 32]]);
        assert_eq!(
            hashes.get(PieceIndex(0)),
            Some(PieceDigest::Blake3([0; 32]))
        );
        assert_ne!(hashes.get(PieceIndex(0)), Some(PieceDigest::Sha1([0; 20])));
        assert_eq!(hashes.get(PieceIndex(1)), None);
        assert_eq!(hashes.hasher().kind(), PieceHashKind::Blake3);
    }
}
