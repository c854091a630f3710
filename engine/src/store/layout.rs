//! Piece ↔ file mapping (BEP 3 §Info dictionary: pieces are cut from the
//! concatenation of all files in order, so a piece may span several files).
//!
//! Invariants of a [`StorageLayout`]: `piece_len_bytes > 0`; the files' byte
//! ranges are contiguous, in order, and sum to `total_len_bytes > 0`;
//! `piece_hashes.len() == ceil(total_len_bytes / piece_len_bytes)` (of one
//! kind, SHA-1 or BLAKE3: [`PieceHashes`]) and fits
//! `u32`; every path passed [`super::path::validate_components`] and no file
//! path equals or is a directory prefix of another (padding files excepted:
//! they never reach the disk).

use std::collections::BTreeSet;

use super::error::StoreError;
use super::path::validate_components;
use crate::base::{Block, BlockOffset, FileSpec, PieceDigest, PieceHashes, PieceIndex};

/// A file with its position in the torrent's byte stream.
#[derive(Debug, Clone)]
struct FileEntry {
    spec: FileSpec,
    offset_bytes: u64,
}

impl FileEntry {
    fn end_bytes(&self) -> u64 {
        self.offset_bytes + self.spec.len_bytes
    }
}

/// A contiguous run of bytes inside one file: part of a block or piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`StorageLayout::files`].
    pub file_index: usize,
    /// Offset inside that file, in bytes.
    pub file_offset_bytes: u64,
    /// Length in bytes (never 0).
    pub len_bytes: u32,
}

/// The files of a torrent, its piece length and piece hashes (BEP 3).
#[derive(Debug, Clone)]
pub struct StorageLayout {
    files: Vec<FileEntry>,
    piece_len_bytes: u32,
    total_len_bytes: u64,
    piece_hashes: PieceHashes,
}

impl StorageLayout {
    /// Build a layout from the files in torrent order, the nominal piece
    /// length in bytes and one expected digest per piece (SHA-1, or BLAKE3
    /// where the torrent carries it: what the store verifies with).
    ///
    /// # Errors
    /// [`StoreError::InvalidPath`] for a bad path component;
    /// [`StoreError::InvalidLayout`] for a zero piece length, a zero total
    /// length, a total that overflows, a hash count other than
    /// `ceil(total / piece_len)`, or duplicate / nested file paths.
    pub fn new(
        files: Vec<FileSpec>,
        piece_len_bytes: u32,
        piece_hashes: PieceHashes,
    ) -> Result<Self, StoreError> {
        let bad = |s: String| Err(StoreError::InvalidLayout(s));
        if piece_len_bytes == 0 {
            return bad("piece length is 0".into());
        }
        let mut entries = Vec::with_capacity(files.len());
        let mut offset_bytes = 0u64;
        for spec in files {
            validate_components(&spec.path_components)?;
            let Some(end) = offset_bytes.checked_add(spec.len_bytes) else {
                return bad("total length overflows u64".into());
            };
            entries.push(FileEntry { spec, offset_bytes });
            offset_bytes = end;
        }
        let total_len_bytes = offset_bytes;
        if total_len_bytes == 0 {
            return bad("total length is 0".into());
        }
        let expected = total_len_bytes.div_ceil(u64::from(piece_len_bytes));
        if u64::try_from(piece_hashes.len()) != Ok(expected) || u32::try_from(expected).is_err() {
            return bad(format!(
                "{} piece hashes for {total_len_bytes} bytes in pieces of {piece_len_bytes} \
                 (need {expected}, at most u32::MAX)",
                piece_hashes.len()
            ));
        }
        check_no_nested_paths(&entries)?;
        Ok(Self {
            files: entries,
            piece_len_bytes,
            total_len_bytes,
            piece_hashes,
        })
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        // Fits: checked in `new`.
        self.piece_hashes.len() as u32
    }

    /// Nominal piece length in bytes (all pieces but the last).
    pub fn piece_len_bytes(&self) -> u32 {
        self.piece_len_bytes
    }

    /// Sum of all file lengths in bytes.
    pub fn total_len_bytes(&self) -> u64 {
        self.total_len_bytes
    }

    /// Length of piece `piece` in bytes (the last one may be short).
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`].
    pub fn piece_len(&self, piece: PieceIndex) -> Result<u32, StoreError> {
        self.check_piece(piece)?;
        let start = u64::from(piece.0) * u64::from(self.piece_len_bytes);
        let len = (self.total_len_bytes - start).min(u64::from(self.piece_len_bytes));
        // Fits: at most piece_len_bytes.
        Ok(len as u32)
    }

    /// Expected digest of piece `piece` (of [`Self::piece_hashes`]' kind).
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`].
    pub fn piece_hash(&self, piece: PieceIndex) -> Result<PieceDigest, StoreError> {
        self.piece_hashes
            .get(piece)
            .ok_or(StoreError::PieceOutOfRange {
                piece,
                piece_count: self.piece_count(),
            })
    }

    /// The expected digests of all pieces, and so the function the store
    /// verifies with.
    pub fn piece_hashes(&self) -> &PieceHashes {
        &self.piece_hashes
    }

    /// The files in torrent order.
    pub fn files(&self) -> impl ExactSizeIterator<Item = &FileSpec> + '_ {
        self.files.iter().map(|f| &f.spec)
    }

    /// Number of files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// File segments covering the bytes of `block` (`block.len_bytes` bytes
    /// at `block.offset` of `block.piece`), in stream order. Zero-length files
    /// never appear.
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`]; [`StoreError::RangeOutOfPiece`] when
    /// the block does not fit inside its piece.
    pub fn segments(&self, block: Block) -> Result<Segments<'_>, StoreError> {
        let Block {
            piece,
            offset,
            len_bytes,
        } = block;
        let piece_len_bytes = self.piece_len(piece)?;
        if block.end_bytes() > u64::from(piece_len_bytes) {
            return Err(StoreError::RangeOutOfPiece {
                piece,
                offset,
                len_bytes: u64::from(len_bytes),
                piece_len_bytes,
            });
        }
        let start = u64::from(piece.0) * u64::from(self.piece_len_bytes) + u64::from(offset.0);
        // First file whose end lies past `start` (ends are non-decreasing).
        let file_index = self.files.partition_point(|f| f.end_bytes() <= start);
        Ok(Segments {
            files: &self.files,
            file_index,
            pos_bytes: start,
            end_bytes: start + u64::from(len_bytes),
        })
    }

    /// Segments covering the whole of piece `piece`.
    ///
    /// # Errors
    /// [`StoreError::PieceOutOfRange`].
    pub fn piece_segments(&self, piece: PieceIndex) -> Result<Segments<'_>, StoreError> {
        self.segments(Block {
            piece,
            offset: BlockOffset(0),
            len_bytes: self.piece_len(piece)?,
        })
    }

    /// Pieces that hold bytes of file `file_index`, in increasing order (none
    /// for zero-length files and out-of-range indices).
    pub fn pieces_of_file(
        &self,
        file_index: usize,
    ) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator + Clone {
        let range = match self.files.get(file_index) {
            Some(f) if f.spec.len_bytes > 0 => {
                let pl = u64::from(self.piece_len_bytes);
                // Both fit u32: below ceil(total / piece_len), checked in `new`.
                let first = (f.offset_bytes / pl) as u32;
                let last = ((f.end_bytes() - 1) / pl) as u32;
                first..last + 1
            }
            _ => 0..0,
        };
        range.map(PieceIndex)
    }

    fn check_piece(&self, piece: PieceIndex) -> Result<(), StoreError> {
        if piece.0 < self.piece_count() {
            Ok(())
        } else {
            Err(StoreError::PieceOutOfRange {
                piece,
                piece_count: self.piece_count(),
            })
        }
    }
}

/// Refuse `a` twice, and `a` as a file next to `a/b` (it would need to be a directory).
fn check_no_nested_paths(entries: &[FileEntry]) -> Result<(), StoreError> {
    let on_disk = || entries.iter().filter(|e| !e.spec.padding);
    let paths: BTreeSet<&[String]> = on_disk()
        .map(|e| e.spec.path_components.as_slice())
        .collect();
    if paths.len() != on_disk().count() {
        return Err(StoreError::InvalidLayout("duplicate file path".into()));
    }
    for e in on_disk() {
        let comps = &e.spec.path_components;
        for n in 1..comps.len() {
            if let Some(prefix) = comps.get(..n) {
                if paths.contains(prefix) {
                    return Err(StoreError::InvalidLayout(format!(
                        "{} is both a file and a directory",
                        prefix.join("/")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Iterator over the [`Segment`]s of a byte range; see [`StorageLayout::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    files: &'a [FileEntry],
    file_index: usize,
    pos_bytes: u64,
    end_bytes: u64,
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        while self.pos_bytes < self.end_bytes {
            let f = self.files.get(self.file_index)?;
            if f.end_bytes() <= self.pos_bytes {
                self.file_index += 1;
                continue;
            }
            let seg_end = f.end_bytes().min(self.end_bytes);
            let seg = Segment {
                file_index: self.file_index,
                file_offset_bytes: self.pos_bytes - f.offset_bytes,
                // Fits: bounded by the requested u32 length.
                len_bytes: (seg_end - self.pos_bytes) as u32,
            };
            self.pos_bytes = seg_end;
            return Some(seg);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(piece: u32, offset: u32, len_bytes: u32) -> Block {
        Block {
            piece: PieceIndex(piece),
            offset: BlockOffset(offset),
            len_bytes,
        }
    }

    fn pieces_of_file(l: &StorageLayout, file_index: usize) -> Vec<u32> {
        l.pieces_of_file(file_index).map(|p| p.0).collect()
    }

    pub(crate) fn layout(lens: &[u64], piece_len_bytes: u32) -> StorageLayout {
        let files = lens
            .iter()
            .enumerate()
            .map(|(i, &len_bytes)| FileSpec {
                path_components: vec![format!("f{i}")],
                len_bytes,
                padding: false,
            })
            .collect();
        let total: u64 = lens.iter().sum();
        let n = total.div_ceil(u64::from(piece_len_bytes)) as usize;
        StorageLayout::new(files, piece_len_bytes, PieceHashes::Sha1(vec![[0; 20]; n])).unwrap()
    }

    fn seg(file_index: usize, file_offset_bytes: u64, len_bytes: u32) -> Segment {
        Segment {
            file_index,
            file_offset_bytes,
            len_bytes,
        }
    }

    #[test]
    fn piece_spanning_three_files_and_zero_length_files() {
        // Files: 3, 0, 2, 0, 4, 7 bytes; pieces of 8 bytes.
        let l = layout(&[3, 0, 2, 0, 4, 7], 8);
        assert_eq!(l.piece_count(), 2);
        assert_eq!(l.piece_len(PieceIndex(1)).unwrap(), 8);
        let p0: Vec<_> = l.piece_segments(PieceIndex(0)).unwrap().collect();
        assert_eq!(p0, vec![seg(0, 0, 3), seg(2, 0, 2), seg(4, 0, 3)]);
        let p1: Vec<_> = l.piece_segments(PieceIndex(1)).unwrap().collect();
        assert_eq!(p1, vec![seg(4, 3, 1), seg(5, 0, 7)]);
        let b: Vec<_> = l.segments(block(0, 2, 4)).unwrap().collect();
        assert_eq!(b, vec![seg(0, 2, 1), seg(2, 0, 2), seg(4, 0, 1)]);
        assert_eq!(pieces_of_file(&l, 1), Vec::<u32>::new());
        assert_eq!(pieces_of_file(&l, 4), vec![0, 1]);
        assert_eq!(pieces_of_file(&l, 5), vec![1]);
        assert_eq!(pieces_of_file(&l, 6), Vec::<u32>::new());
    }

    #[test]
    fn short_last_piece_and_range_errors() {
        let l = layout(&[10], 4);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_len(PieceIndex(2)).unwrap(), 2);
        assert!(matches!(
            l.segments(block(2, 1, 2)),
            Err(StoreError::RangeOutOfPiece { .. })
        ));
        assert!(matches!(
            l.segments(block(3, 0, 1)),
            Err(StoreError::PieceOutOfRange { .. })
        ));
        assert!(matches!(
            l.segments(block(0, u32::MAX, 2)),
            Err(StoreError::RangeOutOfPiece { .. })
        ));
        assert_eq!(l.segments(block(0, 4, 0)).unwrap().count(), 0);
    }

    #[test]
    fn rejects_bad_layouts() {
        let f = |p: &[&str], len_bytes| FileSpec {
            path_components: p.iter().map(|s| s.to_string()).collect(),
            len_bytes,
            padding: false,
        };
        let err = |files, pl, n| {
            StorageLayout::new(files, pl, PieceHashes::Sha1(vec![[0; 20]; n])).unwrap_err()
        };
        assert!(matches!(
            err(vec![f(&["a"], 4)], 0, 1),
            StoreError::InvalidLayout(_)
        ));
        assert!(matches!(
            err(vec![f(&["a"], 4)], 2, 1),
            StoreError::InvalidLayout(_)
        ));
        assert!(matches!(
            err(vec![f(&["a"], 0)], 2, 0),
            StoreError::InvalidLayout(_)
        ));
        assert!(matches!(
            err(vec![f(&["a"], 1), f(&["a"], 1)], 2, 1),
            StoreError::InvalidLayout(_)
        ));
        assert!(matches!(
            err(vec![f(&["a"], 1), f(&["a", "b"], 1)], 2, 1),
            StoreError::InvalidLayout(_)
        ));
        assert!(matches!(
            err(vec![f(&["a", ".."], 1)], 2, 1),
            StoreError::InvalidPath { .. }
        ));
        assert!(matches!(
            err(vec![f(&["a"], u64::MAX), f(&["b"], 1)], 2, 1),
            StoreError::InvalidLayout(_)
        ));
    }

    proptest! {
        #[test]
        fn segments_cover_exactly_the_range(
            lens in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..40], 1..8),
            piece_len in 1u32..17,
            pick in any::<(u32, u32, u32)>(),
        ) {
            let total: u64 = lens.iter().sum();
            prop_assume!(total > 0);
            let l = layout(&lens, piece_len);
            let piece = pick.0 % l.piece_count();
            let plen = l.piece_len(PieceIndex(piece)).unwrap();
            let off = pick.1 % (plen + 1);
            let len = pick.2 % (plen - off + 1);
            let mut pos = u64::from(piece) * u64::from(piece_len) + u64::from(off);
            let mut sum = 0u64;
            let mut last_file = None;
            for s in l.segments(block(piece, off, len)).unwrap() {
                prop_assert!(s.len_bytes > 0);
                let f = &l.files[s.file_index];
                // In order, contiguous, inside the file.
                prop_assert_eq!(f.offset_bytes + s.file_offset_bytes, pos);
                prop_assert!(s.file_offset_bytes + u64::from(s.len_bytes) <= f.spec.len_bytes);
                prop_assert!(last_file < Some(s.file_index));
                last_file = Some(s.file_index);
                pos += u64::from(s.len_bytes);
                sum += u64::from(s.len_bytes);
            }
            prop_assert_eq!(sum, u64::from(len));
        }
    }
}
