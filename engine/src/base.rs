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

/// Standard block length in bytes (16 KiB): the request size every BEP 3
/// client serves, the default maximum request length, and the core's
/// bookkeeping grain.
pub const BLOCK_LEN_BYTES: u32 = 16 * 1024;

mod atomic_bitfield;
mod file_spec;
mod ids;
mod piece_hash;

pub use atomic_bitfield::AtomicBitfield;
pub use file_spec::FileSpec;
pub use ids::{InfoHash, PeerId};

pub use piece_hash::{
    PieceDigest, PieceHashKind, PieceHasher, PieceHashes, BLAKE3_LEN_BYTES, SHA1_LEN_BYTES,
};
