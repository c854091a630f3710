//! `.torrent` metainfo (BEP 3, v1): parsing, canonical encoding, the file table.
//!
//! Pure: no file I/O. A [`Metainfo`] is only ever built validated, by
//! [`Metainfo::from_bytes`] (untrusted input) or [`Metainfo::new`] (from an
//! [`Info`] built by [`Info::new`]). Invariants of a validated [`Info`]:
//! - `piece_len_bytes > 0`, total length `> 0` and fits in `u64`;
//! - piece count == `ceil(total_len_bytes / piece_len_bytes)` and fits in `u32`;
//! - every path component is non-empty UTF-8, not `.` or `..`, and holds no `/`,
//!   `\` or NUL (so no absolute path and no path traversal);
//! - no two files share a path, and no file path is a directory of another;
//! - files lie back to back: `files()[i + 1].offset_bytes() ==
//!   files()[i].offset_bytes() + files()[i].len_bytes()`, starting at 0.
//!
//! - when the p2pe key [`BLAKE3_KEY`] (`p2pe blake3`) is present, it holds
//!   exactly one 32-byte BLAKE3 digest per piece, as many as `pieces` holds
//!   SHA-1s (checked at load: a count that disagrees is
//!   [`MetainfoError::Blake3CountMismatch`]; a length that is not a multiple
//!   of 32 is [`MetainfoError::Blake3HashesLen`]).
//!
//! # The `p2pe blake3` key
//!
//! `p2pe create` writes, beside the SHA-1 `pieces` (BEP 3), a byte string
//! `p2pe blake3` into the `info` dictionary: the BLAKE3 (256-bit, default
//! mode) digest of each piece, 32 bytes per piece, in piece order. Other
//! clients ignore unknown `info` keys, so the torrent stays a valid v1
//! torrent for libtorrent, Transmission, aria2 and rqbit; the key is part of
//! the info-hash like any other `info` key. p2pe verifies pieces with BLAKE3
//! where the key is present ([`Info::verify_hashes`]) and with SHA-1
//! otherwise. What is checked where:
//! - at load (here): the key's type (a byte string), its length (a multiple
//!   of 32) and its count (equal to the piece count); any failure rejects the
//!   torrent as malformed;
//! - on data: only the digest p2pe verifies with. A creator's two hashes
//!   must describe the same bytes; if they do not, p2pe peers accept what
//!   matches BLAKE3 and other clients reject it on SHA-1. p2pe cannot tell
//!   at load without the data; `p2pe create` computes both from one read.
//!
//! The info-hash is the SHA-1 of the `info` dictionary's raw bytes exactly as
//! they appear in the file (BEP 3); those bytes are kept and written back
//! verbatim by [`Metainfo::to_bytes`], so unknown `info` keys survive a round trip.
//! Bencode must be canonical (sorted unique keys, no leading zeros, no `-0`,
//! no trailing bytes); bendy's decoder enforces this.

mod decode;
mod encode;
mod files;

use std::fmt;

use sha1::{Digest, Sha1};

use crate::base::PieceIndex;

pub use crate::base::{
    FileSpec, InfoHash, PieceHashKind, PieceHashes, BLAKE3_LEN_BYTES, SHA1_LEN_BYTES,
};
pub use files::{FileEntry, Layout};

/// The p2pe `info` key holding one 32-byte BLAKE3 digest per piece (see the
/// [module docs](self#the-p2pe-blake3-key)). It sorts between `name` and
/// `piece length`.
pub const BLAKE3_KEY: &str = "p2pe blake3";

/// Smallest piece length [`auto_piece_len_bytes`] picks: 256 KiB.
pub const MIN_AUTO_PIECE_LEN_BYTES: u32 = 256 * 1024;
/// Largest piece length [`auto_piece_len_bytes`] picks: 16 MiB.
pub const MAX_AUTO_PIECE_LEN_BYTES: u32 = 16 * 1024 * 1024;

/// SHA-1 of one piece's data (BEP 3 `pieces`, 20 bytes per piece).
///
/// `Display` prints 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceHash(pub [u8; SHA1_LEN_BYTES]);

impl PieceHash {
    /// Hashes one piece's data.
    pub fn of_piece(data: &[u8]) -> Self {
        Self(Sha1::digest(data).into())
    }
}

impl fmt::Display for PieceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PieceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceHash({self})")
    }
}

/// Why a metainfo was rejected. Every malformed input maps to one of these; parsing never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetainfoError {
    /// Not valid canonical bencode: truncated, unsorted or duplicate keys,
    /// non-canonical integers, nesting too deep, or trailing bytes.
    #[error("invalid bencode: {0}")]
    Bencode(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds the wrong bencode type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field's key.
        field: &'static str,
        /// What the field must be ("an integer", "a dictionary", ...).
        expected: &'static str,
    },
    /// A text field is not UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    /// An integer is negative, zero where that is not allowed, or too large.
    #[error("field `{field}` is out of range: {value}")]
    OutOfRange {
        /// The field's key.
        field: &'static str,
        /// The integer as written in the file.
        value: String,
    },
    /// The sum of file lengths does not fit in a `u64`.
    #[error("total length of the files overflows 64 bits")]
    TotalLenOverflow,
    /// `pieces` is not a whole number of 20-byte SHA-1 hashes.
    #[error("`pieces` is {len_bytes} bytes, not a multiple of 20")]
    PieceHashesLen {
        /// Length of the `pieces` string in bytes.
        len_bytes: usize,
    },
    /// `p2pe blake3` is not a whole number of 32-byte BLAKE3 digests.
    #[error("`p2pe blake3` is {len_bytes} bytes, not a multiple of 32")]
    Blake3HashesLen {
        /// Length of the `p2pe blake3` string in bytes.
        len_bytes: usize,
    },
    /// `p2pe blake3` holds a different number of digests than `pieces`: the
    /// two cannot describe the same pieces.
    #[error("`p2pe blake3` holds {actual} digests but the torrent has {expected} pieces")]
    Blake3CountMismatch {
        /// BLAKE3 digests present.
        actual: u64,
        /// Pieces in the torrent (SHA-1 digests in `pieces`).
        expected: u64,
    },
    /// The number of piece hashes does not match the total length and piece length.
    #[error(
        "{actual} piece hashes, but {total_len_bytes} bytes in pieces of {piece_len_bytes} bytes need {expected}"
    )]
    PieceCountMismatch {
        /// Piece hashes present.
        actual: u64,
        /// Pieces the lengths call for.
        expected: u64,
        /// Total payload length in bytes.
        total_len_bytes: u64,
        /// Piece length in bytes.
        piece_len_bytes: u32,
    },
    /// A BitTorrent v2-only torrent (BEP 52: `meta version` 2, a `file tree` and no
    /// v1 `pieces`). Hybrid v1+v2 torrents are read as v1.
    #[error("BitTorrent v2-only torrents are not supported (BEP 52 without v1 `pieces`)")]
    V2Only,
    /// Both `length` and `files` are present in `info`, or neither.
    #[error("`info` must have exactly one of `length` (single file) and `files` (multi-file)")]
    AmbiguousLayout,
    /// A multi-file torrent lists no files, or the torrent holds zero bytes.
    #[error("torrent holds no data")]
    Empty,
    /// A file's `path` list is empty.
    #[error("a file has an empty path")]
    EmptyPath,
    /// A path component (or the `name`) is unsafe or meaningless.
    #[error("invalid path component {component:?}: {reason}")]
    BadPathComponent {
        /// The component, lossily decoded.
        component: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two files have the same path.
    #[error("duplicate file path `{0}`")]
    DuplicatePath(String),
    /// A file's path is also used as a directory by another file.
    #[error("file path `{file}` is also a directory of `{other}`")]
    PathConflict {
        /// The file used as a directory.
        file: String,
        /// The file below it.
        other: String,
    },
}

/// The `info` dictionary, validated (BEP 3). Invariants: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    name: String,
    piece_len_bytes: u32,
    piece_hashes: Vec<PieceHash>,
    /// The `p2pe blake3` digests, one per piece, when present.
    blake3_hashes: Option<Vec<[u8; BLAKE3_LEN_BYTES]>>,
    multi_file: bool,
    files: Vec<FileEntry>,
    total_len_bytes: u64,
    private: bool,
}

impl Info {
    /// Builds and validates an `info` dictionary.
    ///
    /// `name` is the file name (single file) or the top directory name
    /// (multi-file); `piece_hashes` holds one SHA-1 per piece, in order.
    ///
    /// # Errors
    /// [`MetainfoError::BadPathComponent`] for a bad `name` or path component,
    /// [`MetainfoError::EmptyPath`], [`MetainfoError::DuplicatePath`],
    /// [`MetainfoError::PathConflict`], [`MetainfoError::Empty`],
    /// [`MetainfoError::TotalLenOverflow`], [`MetainfoError::OutOfRange`] for a
    /// zero piece length, [`MetainfoError::PieceCountMismatch`].
    pub fn new(
        name: String,
        layout: Layout,
        piece_len_bytes: u32,
        piece_hashes: Vec<PieceHash>,
        private: bool,
    ) -> Result<Self, MetainfoError> {
        files::check_component(name.as_bytes())?;
        if piece_len_bytes == 0 {
            return Err(MetainfoError::OutOfRange {
                field: "piece length",
                value: "0".into(),
            });
        }
        let multi_file = matches!(layout, Layout::MultiFile(_));
        let (files, total_len_bytes) = files::file_table(&name, layout)?;
        let expected = piece_count(total_len_bytes, piece_len_bytes);
        let actual = piece_hashes.len() as u64;
        if expected != actual || expected > u64::from(u32::MAX) {
            return Err(MetainfoError::PieceCountMismatch {
                actual,
                expected,
                total_len_bytes,
                piece_len_bytes,
            });
        }
        Ok(Self {
            name,
            piece_len_bytes,
            piece_hashes,
            blake3_hashes: None,
            multi_file,
            files,
            total_len_bytes,
            private,
        })
    }

    /// Adds the p2pe BLAKE3 digests ([`BLAKE3_KEY`]), one per piece in order,
    /// hashed from the same bytes as the SHA-1 `pieces`.
    ///
    /// # Errors
    /// [`MetainfoError::Blake3CountMismatch`] when `hashes` does not hold
    /// exactly one digest per piece.
    pub fn with_blake3_hashes(
        mut self,
        hashes: Vec<[u8; BLAKE3_LEN_BYTES]>,
    ) -> Result<Self, MetainfoError> {
        if hashes.len() != self.piece_hashes.len() {
            return Err(MetainfoError::Blake3CountMismatch {
                actual: hashes.len() as u64,
                expected: self.piece_hashes.len() as u64,
            });
        }
        self.blake3_hashes = Some(hashes);
        Ok(self)
    }

    /// The suggested name: the file name (single file) or top directory (multi-file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of every piece but the last, in bytes.
    pub fn piece_len_bytes(&self) -> u32 {
        self.piece_len_bytes
    }

    /// Number of pieces; at least 1.
    pub fn piece_count(&self) -> u32 {
        // `new` checked that the count fits in a u32.
        u32::try_from(self.piece_hashes.len()).unwrap_or(u32::MAX)
    }

    /// Length of piece `piece` in bytes (the last one may be shorter); `None` past the end.
    pub fn piece_len_bytes_of(&self, piece: PieceIndex) -> Option<u32> {
        let start = u64::from(piece.0).checked_mul(u64::from(self.piece_len_bytes))?;
        if start >= self.total_len_bytes {
            return None;
        }
        let len = (self.total_len_bytes - start).min(u64::from(self.piece_len_bytes));
        u32::try_from(len).ok()
    }

    /// The SHA-1 of piece `piece`; `None` past the end.
    pub fn piece_hash(&self, piece: PieceIndex) -> Option<&PieceHash> {
        self.piece_hashes.get(usize::try_from(piece.0).ok()?)
    }

    /// All piece hashes, in piece order.
    pub fn piece_hashes(&self) -> &[PieceHash] {
        &self.piece_hashes
    }

    /// The p2pe BLAKE3 digests ([`BLAKE3_KEY`]), one per piece; `None` when
    /// the torrent has no such key (made by another tool).
    pub fn blake3_hashes(&self) -> Option<&[[u8; BLAKE3_LEN_BYTES]]> {
        self.blake3_hashes.as_deref()
    }

    /// The function p2pe verifies pieces with: BLAKE3 where the torrent
    /// carries [`BLAKE3_KEY`], SHA-1 (BEP 3 `pieces`) otherwise.
    pub fn piece_hash_kind(&self) -> PieceHashKind {
        if self.blake3_hashes.is_some() {
            PieceHashKind::Blake3
        } else {
            PieceHashKind::Sha1
        }
    }

    /// The digests p2pe verifies pieces against (of [`Self::piece_hash_kind`]).
    pub fn verify_hashes(&self) -> PieceHashes {
        match &self.blake3_hashes {
            Some(b) => PieceHashes::Blake3(b.clone()),
            None => PieceHashes::Sha1(self.piece_hashes.iter().map(|h| h.0).collect()),
        }
    }

    /// Whether this is a multi-file torrent (`files` key) rather than single-file (`length`).
    pub fn is_multi_file(&self) -> bool {
        self.multi_file
    }

    /// The file table, in payload order. Paths are relative to the download
    /// directory: `[name]` for a single file, `[name, dir.., file]` for multi-file.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Total payload length in bytes (sum of file lengths); at least 1.
    pub fn total_len_bytes(&self) -> u64 {
        self.total_len_bytes
    }

    /// Whether the torrent is private (BEP 27 `private=1`).
    pub fn is_private(&self) -> bool {
        self.private
    }
}

/// Number of pieces of `piece_len_bytes` needed for `total_len_bytes`: `ceil(total / piece)`.
///
/// # Panics
/// Never; a zero `piece_len_bytes` gives 0.
pub fn piece_count(total_len_bytes: u64, piece_len_bytes: u32) -> u64 {
    if piece_len_bytes == 0 {
        return 0;
    }
    total_len_bytes.div_ceil(u64::from(piece_len_bytes))
}

/// Chooses a piece length for `total_len_bytes`: the smallest power of two
/// giving at most 2,000 pieces (so ~1,000-2,000), clamped to 256 KiB ..= 16 MiB.
///
/// Why: fewer than ~1,000 pieces limits how early peers can trade; more than
/// ~2,000 inflates the `.torrent` and per-piece bookkeeping. The clamp keeps
/// small payloads at a sane minimum and bounds piece memory and re-download
/// cost on a hash failure.
pub fn auto_piece_len_bytes(total_len_bytes: u64) -> u32 {
    const TARGET_MAX_PIECES: u64 = 2_000;
    let mut piece_len_bytes = MIN_AUTO_PIECE_LEN_BYTES;
    while piece_len_bytes < MAX_AUTO_PIECE_LEN_BYTES
        && piece_count(total_len_bytes, piece_len_bytes) > TARGET_MAX_PIECES
    {
        piece_len_bytes *= 2;
    }
    piece_len_bytes
}

/// A parsed, validated `.torrent` (BEP 3 metainfo file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    info: Info,
    info_bytes: Vec<u8>,
    info_hash: InfoHash,
    trackers: Vec<Vec<String>>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    /// BEP 19 `url-list`: web seed URLs, at most [`MAX_WEB_SEEDS`], none empty.
    web_seeds: Vec<String>,
}

/// Most web seeds (BEP 19 `url-list` entries) a [`Metainfo`] keeps; further
/// entries are dropped at load and by [`Metainfo::with_web_seeds`]. A fleet
/// has a few origins, not hundreds, and each costs the node fetcher threads.
pub const MAX_WEB_SEEDS: usize = 16;

/// Longest web seed URL kept (bytes); longer entries are dropped at load.
pub const MAX_WEB_SEED_URL_BYTES: usize = 2048;

impl Metainfo {
    /// Wraps `info` with tracker tiers (BEP 12; empty tiers are dropped) and
    /// optional descriptive fields; encodes `info` canonically and hashes it.
    ///
    /// `creation_date` is in seconds since the Unix epoch.
    pub fn new(
        info: Info,
        trackers: Vec<Vec<String>>,
        comment: Option<String>,
        created_by: Option<String>,
        creation_date: Option<i64>,
    ) -> Self {
        let info_bytes = encode::info_bytes(&info);
        let info_hash = InfoHash::of_info_bytes(&info_bytes);
        let trackers = trackers.into_iter().filter(|t| !t.is_empty()).collect();
        Self {
            info,
            info_bytes,
            info_hash,
            trackers,
            comment,
            created_by,
            creation_date,
            web_seeds: Vec::new(),
        }
    }

    /// The same metainfo with `urls` as its BEP 19 `url-list` (web seeds);
    /// empty and over-long URLs are dropped, and URLs beyond [`MAX_WEB_SEEDS`].
    /// The `url-list` is outside `info`: the info-hash does not change.
    pub fn with_web_seeds(mut self, urls: Vec<String>) -> Self {
        self.web_seeds = urls
            .into_iter()
            .filter(|u| !u.is_empty() && u.len() <= MAX_WEB_SEED_URL_BYTES)
            .take(MAX_WEB_SEEDS)
            .collect();
        self
    }

    /// Parses a `.torrent` file's bytes (untrusted input).
    ///
    /// Trackers come from `announce-list` (BEP 12) when it holds any URL,
    /// else from `announce`. Descriptive fields (`comment`, `created by`,
    /// `creation date`) of the wrong type are ignored; everything in `info` is checked.
    ///
    /// # Errors
    /// [`MetainfoError::Bencode`] for malformed or non-canonical bencode, and
    /// every error of [`Info::new`]; also [`MetainfoError::MissingField`],
    /// [`MetainfoError::WrongType`], [`MetainfoError::NotUtf8`],
    /// [`MetainfoError::OutOfRange`] (negative or overflowing lengths),
    /// [`MetainfoError::PieceHashesLen`], [`MetainfoError::AmbiguousLayout`],
    /// [`MetainfoError::Blake3HashesLen`], [`MetainfoError::Blake3CountMismatch`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        decode::metainfo(bytes)
    }

    /// Builds a metainfo from a bare bencoded `info` dictionary, e.g. the
    /// metadata fetched for a magnet link (BEP 9), with `trackers` as BEP 12
    /// tiers (empty tiers dropped). The info-hash is the SHA-1 of
    /// `info_bytes` as given: the caller compares it with the hash it
    /// expected.
    ///
    /// # Errors
    /// [`MetainfoError::Bencode`] when `info_bytes` is not exactly one
    /// canonical dictionary (trailing bytes included), and every `info`
    /// error of [`Metainfo::from_bytes`].
    pub fn from_info_bytes(
        info_bytes: &[u8],
        trackers: Vec<Vec<String>>,
    ) -> Result<Self, MetainfoError> {
        decode::from_info(info_bytes, trackers)
    }

    /// Encodes as canonical bencode. The `info` bytes are written verbatim, so
    /// the info-hash is preserved; unknown top-level keys are not kept.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode::metainfo_bytes(self)
    }

    /// The validated `info` dictionary.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The raw bencoded `info` dictionary, as hashed.
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// The info-hash (SHA-1 of [`Self::info_bytes`]).
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Tracker URLs as tiers (BEP 12); no tier is empty.
    pub fn trackers(&self) -> &[Vec<String>] {
        &self.trackers
    }

    /// Free-form comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The program that made the torrent.
    pub fn created_by(&self) -> Option<&str> {
        self.created_by.as_deref()
    }

    /// Creation time in seconds since the Unix epoch.
    pub fn creation_date(&self) -> Option<i64> {
        self.creation_date
    }

    /// Web seed URLs (BEP 19 `url-list`), in the torrent's order; none empty.
    /// Map a file to its URL with [`crate::wire::web_seed::file_url`].
    pub fn web_seeds(&self) -> &[String] {
        &self.web_seeds
    }
}

#[cfg(test)]
mod tests;
