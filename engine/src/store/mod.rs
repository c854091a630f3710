//! Piece storage: memory-mapped files, piece/file mapping, resume record.
//!
//! - [`StorageLayout`] maps pieces (BEP 3) onto the torrent's files, across
//!   file boundaries; zero-length files are legal and never mapped.
//! - [`Storage`] owns one preallocated, memory-mapped file per non-empty
//!   torrent file below one output directory: the only mapping of the data
//!   in the process (the runtime maps nothing; it sends from this one through
//!   [`Storage::servable_regions`]). BEP 47 padding files are never
//!   created nor required on disk: each is an anonymous in-memory file of
//!   zeros (never written), so hashing and serving read zeros there. Serving and hashing read from
//!   the mappings; writes go through `pwrite(2)` into the same page cache
//!   (cheaper than faulting fresh pages of the mapping; see `store::io`).
//! - A small resume record (`.p2pe.resume.<hex info-hash>` in the output
//!   directory, one per torrent, see `resume`) lists verified pieces with
//!   their xxh3-64, so a restart re-checks
//!   at memory speed and falls back to the piece hash only where the record
//!   is missing or disagrees.
//! - Piece hashes are SHA-1 (BEP 3) or, for torrents that carry the p2pe
//!   `p2pe blake3` key, BLAKE3 ([`crate::base::PieceHashes`]); the store
//!   verifies with whichever its layout holds. A piece written in order is
//!   hashed as it is written (`arrival`), its xxh3 in the same pass; others
//!   are read back once for both.
//!
//! Invariants, per piece (all kept in atomic bitmaps, so `Storage: Sync`):
//! - A piece is served ([`Storage::read_block`], [`Storage::block_slices`],
//!   [`Storage::servable_regions`]) only while *verified*: its piece hash
//!   matched. Nothing else is ever served. The runtime's send regions
//!   ([`crate::rt::Region`]) need `unsafe` to make, which every module but
//!   `rt` and `store` forbids, so a region of an unverified piece cannot be
//!   made outside this module.
//! - A verified piece is never written through the storage again. Together
//!   with the rule above, bytes that are handed out as `&[u8]` or as a send
//!   region are never written by this process while the view or region
//!   lives.
//! - Writing and verifying take a per-piece *claim*: at most one thread at a
//!   time writes or verifies a given piece (the runtime's claim bitmap makes
//!   that true by construction; a violation is a [`StoreError::PieceBusy`], not
//!   a data race). Distinct pieces may be written from distinct threads.
//! - A verified piece whose file changed on disk (size, mtime, ctime or inode,
//!   checked per read or by [`Storage::check_files`]; the ctime catches a
//!   write whose mtime was put back) is re-verified before it is served;
//!   if it no longer matches it becomes *lost*: unverified and not writable
//!   until the storage is reopened (so no stale `&[u8]` can alias a new write).
//!
//! What the mapping cannot protect against: another process writing or
//! truncating the files while we serve (the memmap caveat). Writes are caught
//! by the stamp check and re-verification; a truncation between the check and
//! the copy can still raise SIGBUS.

mod arrival;
mod check;
mod digests;
mod dir;
mod error;
mod file;
mod io;
mod layout;
mod path;
mod resume;
mod storage;

pub use crate::base::FileSpec;
pub use check::FileCheckReport;
pub use error::StoreError;
pub use layout::{Segment, Segments, StorageLayout};
pub use resume::RecordRejected;
pub use storage::{OpenMode, RecordStatus, ResumeReport, ServeCheck, Storage, VerifyCounts};

#[cfg(test)]
mod tests;
