//! The resume record: which pieces were verified, each with a 64-bit word of
//! its bytes, so a restart re-checks a multi-GB copy at memory speed. For a
//! SHA-1 torrent the word is the xxh3-64 of the piece; for a torrent with
//! BLAKE3 piece hashes it is the first 8 bytes of the piece's BLAKE3 (the
//! restart check then recomputes BLAKE3 and compares it with the torrent's,
//! a full verification, and no second hash runs while downloading).
//!
//! Format (version 1, all integers little-endian):
//!
//! ```text
//! magic      8  b"P2PERSM\0"
//! version    4  u32 = 1
//! info_hash 20  SHA-1 of the info dictionary (BEP 3)
//! piece_len  4  u32 nominal piece length in bytes
//! total_len  8  u64 total length in bytes
//! pieces     4  u32 piece count
//! entries    4  u32 n
//! n × 12        (u32 piece index, u64 word: xxh3-64 or BLAKE3 prefix, see above)
//! check      8  u64 xxh3-64 of every byte above
//! ```
//!
//! The record is written to a temp file, fsynced, renamed over the old one and
//! the directory fsynced: a reader sees the old or the new record, never a mix.
//! Both names are opened through the directory's descriptor without following
//! symlinks (see `store::dir`): a symlink planted at either name is replaced,
//! never written through.
//! A record that fails any check (magic, version, info-hash, layout, trailing
//! checksum, piece range) is ignored as a whole: the pieces fall back to SHA-1.

use std::io::Write;

use xxhash_rust::xxh3::xxh3_64;

use super::dir::Dir;
use super::error::StoreError;
use super::path::{record_name, record_tmp_name, RECORD_PREFIX};
use crate::base::{InfoHash, PieceIndex};

const MAGIC: &[u8; 8] = b"P2PERSM\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 20 + 4 + 8 + 4 + 4;
const ENTRY_LEN: usize = 12;

/// What a record must match to be used: the torrent and its geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordKey {
    pub(crate) info_hash: InfoHash,
    pub(crate) piece_len_bytes: u32,
    pub(crate) total_len_bytes: u64,
    pub(crate) piece_count: u32,
}

/// Why a record found on disk was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordRejected {
    /// Shorter than its header and checksum, or its length disagrees with its entry count.
    Truncated,
    /// Wrong magic bytes: not a p2pe resume record.
    BadMagic,
    /// A version this build does not read.
    UnknownVersion(u32),
    /// The trailing xxh3 does not match: torn or corrupted.
    BadChecksum,
    /// The record belongs to another torrent.
    OtherInfoHash,
    /// Same info-hash, different piece length / total length / piece count.
    LayoutMismatch,
    /// An entry names a piece past the piece count.
    PieceOutOfRange,
    /// The record's name is a symlink or not a regular file: not followed.
    NotRegularFile,
}

/// Encode a record for `key` with `(piece, xxh3)` entries.
pub(crate) fn encode(key: &RecordKey, entries: &[(PieceIndex, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY_LEN + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&key.info_hash.0);
    out.extend_from_slice(&key.piece_len_bytes.to_le_bytes());
    out.extend_from_slice(&key.total_len_bytes.to_le_bytes());
    out.extend_from_slice(&key.piece_count.to_le_bytes());
    // Entry count fits u32: at most one per piece.
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (piece, hash) in entries {
        out.extend_from_slice(&piece.0.to_le_bytes());
        out.extend_from_slice(&hash.to_le_bytes());
    }
    let check = xxh3_64(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

/// Take `N` bytes off the front of `buf`.
fn take<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], RecordRejected> {
    let (head, rest) = buf
        .split_first_chunk::<N>()
        .ok_or(RecordRejected::Truncated)?;
    *buf = rest;
    Ok(*head)
}

/// Decode and check a record against `key`; returns its entries.
///
/// # Errors
/// The [`RecordRejected`] reason; never panics on any input.
pub(crate) fn decode(
    bytes: &[u8],
    key: &RecordKey,
) -> Result<Vec<(PieceIndex, u64)>, RecordRejected> {
    let (body, check) = bytes
        .split_last_chunk::<8>()
        .ok_or(RecordRejected::Truncated)?;
    let mut buf = body;
    if &take::<8>(&mut buf)? != MAGIC {
        return Err(RecordRejected::BadMagic);
    }
    let version = u32::from_le_bytes(take(&mut buf)?);
    if version != VERSION {
        return Err(RecordRejected::UnknownVersion(version));
    }
    if xxh3_64(body) != u64::from_le_bytes(*check) {
        return Err(RecordRejected::BadChecksum);
    }
    if take::<20>(&mut buf)? != key.info_hash.0 {
        return Err(RecordRejected::OtherInfoHash);
    }
    let piece_len = u32::from_le_bytes(take(&mut buf)?);
    let total_len = u64::from_le_bytes(take(&mut buf)?);
    let piece_count = u32::from_le_bytes(take(&mut buf)?);
    if (piece_len, total_len, piece_count)
        != (key.piece_len_bytes, key.total_len_bytes, key.piece_count)
    {
        return Err(RecordRejected::LayoutMismatch);
    }
    let n = u32::from_le_bytes(take(&mut buf)?) as usize;
    if n.checked_mul(ENTRY_LEN) != Some(buf.len()) {
        return Err(RecordRejected::Truncated);
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let piece = u32::from_le_bytes(take(&mut buf)?);
        let hash = u64::from_le_bytes(take(&mut buf)?);
        if piece >= piece_count {
            return Err(RecordRejected::PieceOutOfRange);
        }
        entries.push((PieceIndex(piece), hash));
    }
    Ok(entries)
}

/// Read the record of torrent `info_hash` in `dir` (`.p2pe.resume.<hex>`, or
/// else the single `.p2pe.resume` of older versions, which `decode` accepts
/// only if it names this torrent); `Ok(None)` when there is none,
/// `Ok(Some(Err))` when the name is a symlink or not a regular file (never
/// followed).
///
/// # Errors
/// I/O errors other than "not found".
pub(crate) fn read(
    dir: &Dir,
    info_hash: &InfoHash,
) -> Result<Option<Result<Vec<u8>, RecordRejected>>, StoreError> {
    for name in [record_name(info_hash), RECORD_PREFIX.to_owned()] {
        match dir.read_plain(&name) {
            Ok(None) => continue,
            Ok(Some(bytes)) => return Ok(Some(Ok(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(Some(Err(RecordRejected::NotRegularFile)))
            }
            Err(e) => {
                return Err(StoreError::io(
                    &dir.path().join(&name),
                    "read resume record",
                    e,
                ))
            }
        }
    }
    Ok(None)
}

/// Atomically replace the record of torrent `info_hash` in `dir` with
/// `bytes` (temp file created anew without following symlinks, fsync,
/// rename, fsync of the directory). A legacy `.p2pe.resume` is left alone:
/// it may be another torrent's.
///
/// # Errors
/// [`StoreError::DiskFull`] on ENOSPC, else the classified I/O error.
pub(crate) fn write_atomic(
    dir: &Dir,
    info_hash: &InfoHash,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let (tmp_name, name) = (record_tmp_name(info_hash), record_name(info_hash));
    let tmp = dir.path().join(&tmp_name);
    let dst = dir.path().join(&name);
    let classify = |path: &std::path::Path, op, e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            StoreError::DiskFull {
                path: path.to_path_buf(),
                needed_bytes: bytes.len() as u64,
            }
        } else {
            StoreError::io(path, op, e)
        }
    };
    let mut f = dir
        .create_new(&tmp_name)
        .map_err(|e| classify(&tmp, "create", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| classify(&tmp, "write", e))?;
    drop(f);
    dir.rename(&tmp_name, &name)
        .map_err(|e| classify(&dst, "rename", e))?;
    dir.sync().map_err(|e| classify(dir.path(), "fsync dir", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: RecordKey = RecordKey {
        info_hash: InfoHash([7; 20]),
        piece_len_bytes: 16384,
        total_len_bytes: 100_000,
        piece_count: 7,
    };

    #[test]
    fn round_trip_and_rejections() {
        let entries = vec![(PieceIndex(0), 11), (PieceIndex(6), u64::MAX)];
        let b = encode(&KEY, &entries);
        assert_eq!(decode(&b, &KEY).unwrap(), entries);
        let other = RecordKey {
            info_hash: InfoHash([8; 20]),
            ..KEY
        };
        assert_eq!(decode(&b, &other), Err(RecordRejected::OtherInfoHash));
        let geom = RecordKey {
            piece_count: 8,
            ..KEY
        };
        assert_eq!(decode(&b, &geom), Err(RecordRejected::LayoutMismatch));
        assert_eq!(
            decode(&b[..b.len() - 1], &KEY),
            Err(RecordRejected::BadChecksum)
        );
        assert_eq!(decode(&b[..10], &KEY), Err(RecordRejected::Truncated));
        assert_eq!(
            decode(b"garbage!garbage!", &KEY),
            Err(RecordRejected::BadMagic)
        );
        let mut flipped = b.clone();
        flipped[HEADER_LEN + 3] ^= 1;
        assert_eq!(decode(&flipped, &KEY), Err(RecordRejected::BadChecksum));
        let bad_piece = encode(&KEY, &[(PieceIndex(7), 1)]);
        assert_eq!(
            decode(&bad_piece, &KEY),
            Err(RecordRejected::PieceOutOfRange)
        );
    }

    fn open_dir(d: &tempfile::TempDir) -> Dir {
        Dir::open(&std::fs::canonicalize(d.path()).unwrap()).unwrap()
    }

    const H: InfoHash = KEY.info_hash;

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let dir = open_dir(&d);
        assert_eq!(read(&dir, &H).unwrap(), None);
        write_atomic(&dir, &H, b"one").unwrap();
        write_atomic(&dir, &H, b"two").unwrap();
        assert_eq!(read(&dir, &H).unwrap(), Some(Ok(b"two".to_vec())));
        assert!(!d.path().join(record_tmp_name(&H)).exists());
    }

    /// Issue 15 item 7: one record per torrent; the legacy single name is
    /// read when the torrent has no record of its own, never written.
    #[test]
    fn one_record_per_torrent_and_legacy_name_read() {
        let d = tempfile::tempdir().unwrap();
        let dir = open_dir(&d);
        std::fs::write(d.path().join(RECORD_PREFIX), b"legacy").unwrap();
        assert_eq!(read(&dir, &H).unwrap(), Some(Ok(b"legacy".to_vec())));
        write_atomic(&dir, &H, b"mine").unwrap();
        write_atomic(&dir, &InfoHash([9; 20]), b"other").unwrap();
        assert_eq!(read(&dir, &H).unwrap(), Some(Ok(b"mine".to_vec())));
        assert_eq!(
            read(&dir, &InfoHash([9; 20])).unwrap(),
            Some(Ok(b"other".to_vec()))
        );
        assert_eq!(
            std::fs::read(d.path().join(RECORD_PREFIX)).unwrap(),
            b"legacy"
        );
        assert!(d
            .path()
            .join(format!(".p2pe.resume.{}", hex::encode(H.0)))
            .exists());
    }

    /// Issue 11 item 7: symlinks planted at the temp name and at the record's
    /// name, pointing outside the directory, are replaced, never written
    /// through (the old code truncated and overwrote their targets).
    #[test]
    fn planted_symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (tmp_target, rec_target) = (outside.path().join("a"), outside.path().join("b"));
        std::fs::write(&tmp_target, b"precious a").unwrap();
        std::fs::write(&rec_target, b"precious b").unwrap();
        std::os::unix::fs::symlink(&tmp_target, d.path().join(record_tmp_name(&H))).unwrap();
        std::os::unix::fs::symlink(&rec_target, d.path().join(record_name(&H))).unwrap();
        let dir = open_dir(&d);
        assert_eq!(
            read(&dir, &H).unwrap(),
            Some(Err(RecordRejected::NotRegularFile))
        );
        write_atomic(&dir, &H, b"record").unwrap();
        assert_eq!(std::fs::read(&tmp_target).unwrap(), b"precious a");
        assert_eq!(std::fs::read(&rec_target).unwrap(), b"precious b");
        assert_eq!(read(&dir, &H).unwrap(), Some(Ok(b"record".to_vec())));
        assert!(!d.path().join(record_name(&H)).is_symlink());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &KEY);
        }

        #[test]
        fn round_trips(entries in proptest::collection::vec((0u32..7, any::<u64>()), 0..20)) {
            let entries: Vec<_> = entries.into_iter().map(|(p, h)| (PieceIndex(p), h)).collect();
            prop_assert_eq!(decode(&encode(&KEY, &entries), &KEY).unwrap(), entries);
        }
    }
}
