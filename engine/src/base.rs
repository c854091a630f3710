//! Protocol types every layer shares (issue 10: one set of protocol types, so
//! that `wire`, `core`, `store` and `node` do not each define their own).
//!
//! Everything here is plain data with no I/O: BEP 3 names and units.

/// Zero-based index of a piece in the torrent (BEP 3 `index`), `0..piece_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PieceIndex(pub u32);

/// Byte offset of a block within its piece (BEP 3 `begin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockOffset(pub u32);

impl std::fmt::Display for PieceIndex {
    /// The index as a decimal number (`7`), as BEP 3 messages and logs name a piece.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for BlockOffset {
    /// The offset in bytes as a decimal number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A byte range of one piece: `len_bytes` bytes at `offset` in piece `piece`. What a BEP 3
/// `request` and `cancel`, a BEP 6 `reject request` and the header of a BEP 3 `piece`
/// message (`index`, `begin`, payload length) name; also the core's request unit.
///
/// `offset + len_bytes` never exceeds the piece's length for blocks the core emits; the
/// peer-wire decoder checks `piece` against the piece count and `len_bytes` against the
/// negotiated request length, and the core checks the rest before use. Ordered by piece,
/// then offset, then length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    /// Piece the block belongs to (BEP 3 `index`).
    pub piece: PieceIndex,
    /// Offset of the block's first byte within the piece (BEP 3 `begin`).
    pub offset: BlockOffset,
    /// Length in bytes (BEP 3 `length`): 16 KiB normally; up to the piece length between
    /// p2pe peers (the negotiated maximum request length).
    pub len_bytes: u32,
}

impl Block {
    /// Offset one past the block's last byte within its piece, in bytes (as `u64`: no
    /// overflow for any peer-supplied values).
    pub fn end_bytes(&self) -> u64 {
        u64::from(self.offset.0) + u64::from(self.len_bytes)
    }
}

/// Standard block length in bytes (16 KiB): the request size every BEP 3
/// client serves, the default maximum request length, and the core's
/// bookkeeping grain.
pub const BLOCK_LEN_BYTES: u32 = 16 * 1024;

mod atomic_bitfield;
mod bitfield;
mod file_spec;
mod ids;
mod peer_message;
mod piece_hash;
mod time;

pub use atomic_bitfield::AtomicBitfield;
pub use bitfield::{Bitfield, BitfieldError};
pub use file_spec::FileSpec;
pub use ids::{InfoHash, PeerId};
pub use peer_message::PeerMessage;
pub use time::Time;

pub use piece_hash::{
    PieceDigest, PieceHashKind, PieceHasher, PieceHashes, BLAKE3_LEN_BYTES, SHA1_LEN_BYTES,
};
