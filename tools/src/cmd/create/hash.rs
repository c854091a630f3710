//! Parallel piece hashing: SHA-1 of each piece of the concatenated files
//! (BEP 3 `pieces`) and, in the same read, its BLAKE3 (the p2pe
//! `p2pe blake3` key), on all cores.
//!
//! Each rayon worker reads whole pieces with positioned reads (`pread`) into
//! its own buffer, so pieces that span file boundaries need no coordination;
//! collecting an indexed parallel iterator keeps piece order. The data is
//! read once: both hashes consume each 64 KiB of the buffer in turn, while
//! it is in L1/L2.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use p2pe::wire::metainfo::{piece_count, PieceHash, BLAKE3_LEN_BYTES};
use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::walk::SourceFile;

/// Both hashes consume the piece buffer in slices of this size, so the
/// second reads what the first just pulled into cache (a 16 MiB piece does
/// not fit in L2). 64 KiB: 64 BLAKE3 chunks, enough for its widest SIMD.
const HASH_SLICE_BYTES: usize = 64 * 1024;

/// The digests of every piece, in piece order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PieceDigests {
    /// SHA-1 per piece (BEP 3 `pieces`).
    pub sha1: Vec<PieceHash>,
    /// BLAKE3 per piece (p2pe `p2pe blake3`), when asked for.
    pub blake3: Option<Vec<[u8; BLAKE3_LEN_BYTES]>>,
}

/// Per-worker state: a piece buffer and the last file opened.
struct Worker {
    buf: Vec<u8>,
    open: Option<(usize, File)>,
}

/// The open handle of `files[index]`, reusing `open` when it already is that file.
fn open_file<'a>(
    open: &'a mut Option<(usize, File)>,
    files: &[SourceFile],
    index: usize,
) -> anyhow::Result<&'a File> {
    let reuse = matches!(open, Some((open_index, _)) if *open_index == index);
    if !reuse {
        let source = files.get(index).context("file index past the end")?;
        let file = File::open(&source.path)
            .with_context(|| format!("{}: cannot open", source.path.display()))?;
        *open = Some((index, file));
    }
    match open {
        Some((_, file)) => Ok(file),
        None => bail!("no open file"),
    }
}

/// Hashes every piece of `files` (back to back, `total_len_bytes` in all) in
/// pieces of `piece_len_bytes` with SHA-1 and, when `blake3`, BLAKE3 in the
/// same read, advancing `progress` by the bytes hashed.
///
/// # Errors
/// A file that cannot be opened or read, or that shrank since it was walked.
pub(super) fn hash_pieces(
    files: &[SourceFile],
    total_len_bytes: u64,
    piece_len_bytes: u32,
    blake3: bool,
    progress: &ProgressBar,
) -> anyhow::Result<PieceDigests> {
    let count = piece_count(total_len_bytes, piece_len_bytes);
    let piece_len = u64::from(piece_len_bytes);
    let both: Vec<(PieceHash, Option<[u8; BLAKE3_LEN_BYTES]>)> = (0..count)
        .into_par_iter()
        .map_init(
            || Worker {
                buf: Vec::with_capacity(piece_len_bytes as usize),
                open: None,
            },
            |worker, piece| {
                let start = piece * piece_len;
                let end = (start + piece_len).min(total_len_bytes);
                read_range(worker, files, start, end)?;
                progress.inc(end - start);
                Ok(hash_both(&worker.buf, blake3))
            },
        )
        .collect::<anyhow::Result<_>>()?;
    let blake3 = blake3.then(|| both.iter().filter_map(|(_, b)| *b).collect());
    Ok(PieceDigests {
        sha1: both.into_iter().map(|(s, _)| s).collect(),
        blake3,
    })
}

/// SHA-1 and (when `blake3`) BLAKE3 of one piece, in one pass over `piece`.
fn hash_both(piece: &[u8], blake3: bool) -> (PieceHash, Option<[u8; BLAKE3_LEN_BYTES]>) {
    let mut sha1 = Sha1::new();
    let mut b3 = blake3.then(blake3::Hasher::new);
    for slice in piece.chunks(HASH_SLICE_BYTES) {
        sha1.update(slice);
        if let Some(b3) = b3.as_mut() {
            b3.update(slice);
        }
    }
    (
        PieceHash(sha1.finalize().into()),
        b3.map(|h| *h.finalize().as_bytes()),
    )
}

/// Fills `worker.buf` with payload bytes `start..end`.
fn read_range(
    worker: &mut Worker,
    files: &[SourceFile],
    start: u64,
    end: u64,
) -> anyhow::Result<()> {
    let len = usize::try_from(end - start).context("piece larger than memory")?;
    worker.buf.resize(len, 0);
    // First file whose end lies past `start`; zero-length files are skipped.
    let mut index = files.partition_point(|f| f.offset_bytes + f.len_bytes <= start);
    let mut pos = start;
    while pos < end {
        let source = files
            .get(index)
            .context("payload shorter than the file table")?;
        let in_file = pos - source.offset_bytes;
        let take = (source.offset_bytes + source.len_bytes).min(end) - pos;
        let at = usize::try_from(pos - start).context("offset overflow")?;
        let Worker { buf, open } = &mut *worker;
        let dst = buf
            .get_mut(at..at + take as usize)
            .context("piece buffer overflow")?;
        let file = open_file(open, files, index)?;
        file.read_exact_at(dst, in_file).with_context(|| {
            format!(
                "{}: read failed at byte {in_file} (did it shrink while hashing?)",
                source.path.display()
            )
        })?;
        pos += take;
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_span_files_and_skip_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let contents: [&[u8]; 4] = [b"abcde", b"", b"fg", b"hijklmnopq"];
        let mut files = Vec::new();
        let mut offset_bytes = 0;
        for (i, data) in contents.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, data).unwrap();
            files.push(SourceFile {
                path,
                components: vec![i.to_string()],
                offset_bytes,
                len_bytes: data.len() as u64,
            });
            offset_bytes += data.len() as u64;
        }
        let payload = contents.concat();
        let hashes = hash_pieces(&files, offset_bytes, 4, true, &ProgressBar::hidden()).unwrap();
        let expected: Vec<PieceHash> = payload
            .chunks(4)
            .map(|c| PieceHash(Sha1::digest(c).into()))
            .collect();
        let expected_b3: Vec<[u8; 32]> = payload
            .chunks(4)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect();
        assert_eq!(hashes.sha1, expected);
        assert_eq!(hashes.blake3, Some(expected_b3));
        let sha1_only =
            hash_pieces(&files, offset_bytes, 4, false, &ProgressBar::hidden()).unwrap();
        assert_eq!((sha1_only.sha1, sha1_only.blake3), (expected, None));

        std::fs::write(&files[3].path, b"short").unwrap();
        let err = hash_pieces(&files, offset_bytes, 4, true, &ProgressBar::hidden()).unwrap_err();
        assert!(format!("{err:#}").contains("shrink"), "{err:#}");
    }
}

#[cfg(test)]
mod slice_tests {
    use super::*;

    #[test]
    fn one_pass_of_both_hashes_equals_each_alone() {
        // Longer than several hash slices, not a multiple of one.
        let piece: Vec<u8> = (0..300_001u32).map(|i| (i ^ (i >> 9)) as u8).collect();
        let (sha1, b3) = hash_both(&piece, true);
        assert_eq!(sha1, PieceHash(Sha1::digest(&piece).into()));
        assert_eq!(b3, Some(*blake3::hash(&piece).as_bytes()));
    }
}
