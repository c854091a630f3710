//! Errors of the storage layer.

use std::io;
use std::path::{Path, PathBuf};

use crate::base::{BlockOffset, PieceIndex};

/// Everything that can go wrong in [`crate::store`].
///
/// Errors about the disk name the path and the operation; errors about a
/// request (from a peer or the runtime) name the piece and range, so that a
/// caller can tell "drop this peer" (`PieceOutOfRange`, `RangeOutOfPiece`,
/// `NotVerified`) from "the disk is in trouble" (`DiskFull`, `Io`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A path component of a torrent file is not a plain file name.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given (components joined with `/`).
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A torrent file would resolve (through a symlink) outside the output directory.
    #[error("path {path} resolves outside the output directory {root}")]
    PathEscapes {
        /// The offending path.
        path: PathBuf,
        /// The output directory.
        root: PathBuf,
    },
    /// The layout itself is inconsistent (piece length 0, hash count, overlapping paths).
    #[error("invalid storage layout: {0}")]
    InvalidLayout(String),
    /// A piece index at or past the piece count.
    #[error("piece {piece} out of range (piece count {piece_count})")]
    PieceOutOfRange {
        /// The requested piece.
        piece: PieceIndex,
        /// Number of pieces in the torrent.
        piece_count: u32,
    },
    /// A block range that does not fit inside its piece.
    #[error("block {offset}+{len_bytes} outside piece {piece} of {piece_len_bytes} bytes")]
    RangeOutOfPiece {
        /// The piece.
        piece: PieceIndex,
        /// Offset of the block inside the piece.
        offset: BlockOffset,
        /// Length of the block in bytes.
        len_bytes: u64,
        /// Length of this piece in bytes.
        piece_len_bytes: u32,
    },
    /// Preallocation failed with ENOSPC: the file system cannot hold the torrent.
    #[error("disk full: {path} needs {needed_bytes} more bytes")]
    DiskFull {
        /// The file (or resume record) that could not be allocated.
        path: PathBuf,
        /// Bytes that were being allocated for it.
        needed_bytes: u64,
    },
    /// EACCES / EPERM from the operating system.
    #[error("permission denied: {op} {path}")]
    PermissionDenied {
        /// The path.
        path: PathBuf,
        /// What was being done (`"open"`, `"create dir"`, ...).
        op: &'static str,
    },
    /// EROFS: the output directory is on a read-only file system.
    #[error("read-only file system: {op} {path}")]
    ReadOnlyFilesystem {
        /// The path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
    },
    /// Any other I/O error. The OS error is the [`std::error::Error::source`], not
    /// repeated in the message (a chain printer such as anyhow's `{:#}` shows it once).
    #[error("{op} {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system error.
        #[source]
        source: io::Error,
    },
    /// An existing file has a size other than the torrent says (never truncated by us).
    #[error("{path} is {actual_bytes} bytes, the torrent says {expected_bytes}")]
    FileSizeMismatch {
        /// The file.
        path: PathBuf,
        /// Length from the torrent.
        expected_bytes: u64,
        /// Length on disk.
        actual_bytes: u64,
    },
    /// Seed mode: a file of the torrent does not exist.
    #[error("seed mode: {path} does not exist")]
    FileMissing {
        /// The file.
        path: PathBuf,
    },
    /// A read of a piece that is not verified; unverified data is never served.
    #[error("piece {piece} is not verified")]
    NotVerified {
        /// The piece.
        piece: PieceIndex,
    },
    /// A write to a piece that is already verified.
    #[error("piece {piece} is already verified")]
    AlreadyVerified {
        /// The piece.
        piece: PieceIndex,
    },
    /// Another thread is writing or verifying this piece (the one-writer contract was broken).
    #[error("piece {piece} is being written or verified by another thread")]
    PieceBusy {
        /// The piece.
        piece: PieceIndex,
    },
    /// The piece was dropped after its file changed on disk; reopen the storage to fetch it again.
    #[error("piece {piece} was dropped after its data changed on disk; reopen to recover it")]
    PieceLost {
        /// The piece.
        piece: PieceIndex,
    },
    /// A seeded file changed on disk and this piece no longer matches its SHA-1; it was dropped.
    #[error("{path} changed on disk: piece {piece} no longer matches its hash and was dropped")]
    ChangedOnDisk {
        /// A file the piece lies in (the first that changed).
        path: PathBuf,
        /// The dropped piece.
        piece: PieceIndex,
    },
    /// A write in [`crate::store::OpenMode::Seed`] (files are mapped read-only).
    #[error("storage is open read-only (seed mode)")]
    ReadOnly,
}

impl StoreError {
    /// Classify an I/O error on `path` during `op` into the specific variants.
    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => Self::PermissionDenied { path, op },
            Some(libc::EROFS) => Self::ReadOnlyFilesystem { path, op },
            _ => Self::Io { path, op, source },
        }
    }
}
