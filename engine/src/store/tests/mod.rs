//! Storage tests: write / verify / serve, resume, paths, concurrency.
//! Disk faults (tmpfs, read-only, permissions, files changed under a seeder)
//! are in `faults`.

mod arrival;
mod faults;
mod padding;
mod regions;

use std::path::Path;
use std::sync::Arc;

use crate::base::{Block, BlockOffset, InfoHash, PieceHashes, PieceIndex};
use sha1::{Digest, Sha1};

use super::*;

/// A torrent fixture: file lengths, piece length, the content and its hashes.
pub(super) struct Fixture {
    pub(super) files: Vec<FileSpec>,
    pub(super) piece_len: u32,
    pub(super) data: Vec<u8>,
}

pub(super) const HASH_A: InfoHash = InfoHash([0xaa; 20]);

impl Fixture {
    pub(super) fn new(lens: &[u64], piece_len: u32, seed: u64) -> Self {
        let files = lens
            .iter()
            .enumerate()
            .map(|(i, &len_bytes)| FileSpec {
                path_components: vec!["dir".into(), format!("f{i}")],
                len_bytes,
                padding: false,
            })
            .collect();
        let total: u64 = lens.iter().sum();
        let mut x = seed | 1;
        let data = (0..total)
            .map(|_| {
                // xorshift64: deterministic, never all-zero pieces.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        Self {
            files,
            piece_len,
            data,
        }
    }

    pub(super) fn layout(&self) -> StorageLayout {
        let hashes = self
            .data
            .chunks(self.piece_len as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        StorageLayout::new(
            self.files.clone(),
            self.piece_len,
            PieceHashes::Sha1(hashes),
        )
        .unwrap()
    }

    /// The layout with BLAKE3 piece hashes (a torrent with the p2pe key).
    pub(super) fn blake3_layout(&self) -> StorageLayout {
        let hashes = self
            .data
            .chunks(self.piece_len as usize)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect();
        StorageLayout::new(
            self.files.clone(),
            self.piece_len,
            PieceHashes::Blake3(hashes),
        )
        .unwrap()
    }

    pub(super) fn piece(&self, piece: u32) -> &[u8] {
        self.data
            .chunks(self.piece_len as usize)
            .nth(piece as usize)
            .unwrap()
    }

    pub(super) fn piece_count(&self) -> u32 {
        self.data.len().div_ceil(self.piece_len as usize) as u32
    }

    /// Write piece `piece` in blocks of `block` bytes.
    pub(super) fn write_piece(&self, s: &Storage, piece: u32, block: usize) {
        for (i, b) in self.piece(piece).chunks(block).enumerate() {
            s.write_block(PieceIndex(piece), BlockOffset((i * block) as u32), b)
                .unwrap();
        }
    }

    pub(super) fn open(&self, dir: &Path, mode: OpenMode) -> (Storage, ResumeReport) {
        Storage::open(dir, self.layout(), HASH_A, mode).unwrap()
    }

    /// Write the content as plain files (what an origin seeds).
    pub(super) fn write_files(&self, dir: &Path) {
        let mut off = 0usize;
        for f in &self.files {
            let p = f
                .path_components
                .iter()
                .fold(dir.to_path_buf(), |p, c| p.join(c));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let len = f.len_bytes as usize;
            std::fs::write(&p, &self.data[off..off + len]).unwrap();
            off += len;
        }
    }
}

/// The block of `len_bytes` bytes at `offset` of piece `piece`.
pub(super) fn blk(piece: u32, offset: u32, len_bytes: u32) -> Block {
    Block {
        piece: PieceIndex(piece),
        offset: BlockOffset(offset),
        len_bytes,
    }
}

/// 6 files incl. two empty ones; pieces of 4 KiB; piece 1 spans 3 files.
pub(super) fn multi() -> Fixture {
    Fixture::new(&[5000, 0, 2000, 1500, 12000, 0, 1], 4096, 7)
}

#[test]
fn storage_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Storage>();
}

#[test]
fn write_all_verify_complete_and_serve() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.missing, fx.piece_count());
    assert_eq!(report.record, RecordStatus::Absent);
    // Zero-length files exist, unmapped; others preallocated at full length.
    for (i, f) in fx.files.iter().enumerate() {
        let meta = std::fs::metadata(dir.path().join("dir").join(format!("f{i}"))).unwrap();
        assert_eq!(meta.len(), f.len_bytes);
    }
    for p in 0..fx.piece_count() {
        assert!(matches!(
            s.read_block(PieceIndex(p), BlockOffset(0), &mut [0; 4]),
            Err(StoreError::NotVerified { .. })
        ));
        fx.write_piece(&s, p, 1000);
        assert!(s.verify_piece(PieceIndex(p)).unwrap());
    }
    assert!(s.is_complete());
    for p in 0..fx.piece_count() {
        let mut buf = vec![0; fx.piece(p).len()];
        s.read_block(PieceIndex(p), BlockOffset(0), &mut buf)
            .unwrap();
        assert_eq!(buf, fx.piece(p));
    }
    // Piece 1 = bytes 4096..8192: f0[4096..5000], f2, f3[0..1192].
    let slices = s.block_slices(blk(1, 0, 4096)).unwrap();
    assert_eq!(
        slices.iter().map(|s| s.len()).collect::<Vec<_>>(),
        vec![904, 2000, 1192]
    );
    assert_eq!(slices.concat(), fx.piece(1));
    drop(slices);
    assert!(matches!(
        s.write_block(PieceIndex(0), BlockOffset(0), b"x"),
        Err(StoreError::AlreadyVerified {
            piece: PieceIndex(0)
        })
    ));
    assert!(matches!(
        s.read_block(PieceIndex(1), BlockOffset(4000), &mut [0; 100]),
        Err(StoreError::RangeOutOfPiece { .. })
    ));
    assert!(matches!(
        s.read_block(PieceIndex(99), BlockOffset(0), &mut [0; 1]),
        Err(StoreError::PieceOutOfRange { .. })
    ));
    // The bytes on disk are the content.
    drop(s);
    let on_disk = std::fs::read(dir.path().join("dir/f4")).unwrap();
    assert_eq!(on_disk, fx.data[8500..20500]);
}

#[test]
fn corrupt_byte_fails_verification_and_is_not_marked() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = fx.open(dir.path(), OpenMode::Create);
    let mut bad = fx.piece(2).to_vec();
    bad[1234] ^= 0x40;
    s.write_block(PieceIndex(2), BlockOffset(0), &bad).unwrap();
    assert!(!s.verify_piece(PieceIndex(2)).unwrap());
    assert!(!s.is_verified(PieceIndex(2)));
    assert!(matches!(
        s.block_slices(blk(2, 0, 16)),
        Err(StoreError::NotVerified {
            piece: PieceIndex(2)
        })
    ));
    // Still writable: re-download fixes it.
    s.write_block(PieceIndex(2), BlockOffset(1234), &fx.piece(2)[1234..1235])
        .unwrap();
    assert!(s.verify_piece(PieceIndex(2)).unwrap());
    assert_eq!(s.verified_count(), 1);
}

#[test]
fn resume_fast_path_after_flush_and_sha1_for_unrecorded() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let n = fx.piece_count();
    let half: Vec<u32> = (0..n).step_by(2).collect();
    {
        let (s, _) = fx.open(dir.path(), OpenMode::Create);
        for &p in &half {
            fx.write_piece(&s, p, 4096);
            assert!(s.verify_piece(PieceIndex(p)).unwrap());
        }
        s.flush_resume().unwrap();
    }
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(
        report.record,
        RecordStatus::Used {
            entries: half.len() as u32
        }
    );
    assert_eq!(report.fast_verified, half.len() as u32);
    assert_eq!(report.hash_verified, 0);
    assert_eq!(report.missing, n - half.len() as u32);
    assert_eq!(report.failed, 0);
    for p in 0..n {
        assert_eq!(s.is_verified(PieceIndex(p)), p % 2 == 0, "piece {p}");
    }
    // "Killed" process: piece 1 verified but never flushed, piece 3 half written.
    fx.write_piece(&s, 1, 4096);
    assert!(s.verify_piece(PieceIndex(1)).unwrap());
    s.write_block(PieceIndex(3), BlockOffset(0), &fx.piece(3)[..100])
        .unwrap();
    drop(s);
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.fast_verified, half.len() as u32);
    assert_eq!(
        report.hash_verified, 1,
        "unrecorded piece re-checked by SHA-1"
    );
    assert_eq!(report.failed, 1, "the piece in flight");
    assert_eq!(report.missing, n - half.len() as u32 - 2);
    assert!(s.is_verified(PieceIndex(1)) && !s.is_verified(PieceIndex(3)));
}

#[test]
fn the_exit_flush_lists_only_durable_pieces_and_the_rest_are_hashed_again() {
    // Issue 12 item 3: the exit does not wait for writeback. Pieces flushed earlier are
    // listed; pieces verified since are left out (their writeback only started), so a
    // restart checks them by hash instead of trusting them.
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let n = fx.piece_count();
    {
        let (s, _) = fx.open(dir.path(), OpenMode::Create);
        fx.write_piece(&s, 0, 4096);
        assert!(s.verify_piece(PieceIndex(0)).unwrap());
        s.flush_resume().unwrap();
        for p in 1..n {
            fx.write_piece(&s, p, 4096);
            assert!(s.verify_piece(PieceIndex(p)).unwrap());
        }
        s.flush_resume_nowait().unwrap();
    }
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.record, RecordStatus::Used { entries: 1 });
    assert_eq!(report.fast_verified, 1);
    assert_eq!(report.hash_verified, n - 1, "not listed: checked by hash");
    assert_eq!(report.failed, 0);
    assert!((0..n).all(|p| s.is_verified(PieceIndex(p))));
    // With the waiting flush every piece is listed.
    s.flush_resume().unwrap();
    drop(s);
    let (_, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.fast_verified, n);
    assert_eq!(report.hash_verified, 0);
}

#[test]
fn record_of_another_torrent_is_ignored() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = fx.open(dir.path(), OpenMode::Create);
        fx.write_piece(&s, 0, 4096);
        s.verify_piece(PieceIndex(0)).unwrap();
        s.flush_resume().unwrap();
    }
    // Under the legacy single name, which any torrent reads.
    std::fs::rename(
        dir.path().join(super::path::record_name(&HASH_A)),
        dir.path().join(".p2pe.resume"),
    )
    .unwrap();
    let (s, report) = Storage::open(
        dir.path(),
        fx.layout(),
        InfoHash([0xbb; 20]),
        OpenMode::Create,
    )
    .unwrap();
    assert_eq!(
        report.record,
        RecordStatus::Rejected(RecordRejected::OtherInfoHash)
    );
    assert_eq!((report.fast_verified, report.hash_verified), (0, 1));
    assert!(s.is_verified(PieceIndex(0)));
}

/// Issue 15 item 7: two torrents downloaded into one directory keep one
/// record each; the first one's second open needs no SHA-1 (with one shared
/// record the second torrent's flush clobbered the first one's).
#[test]
fn two_torrents_in_one_dir_keep_their_records() {
    let a = multi();
    let mut b = Fixture::new(&[5000, 7000], 4096, 99);
    for f in &mut b.files {
        f.path_components[0] = "other".into();
    }
    let hash_b = InfoHash([0xbb; 20]);
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = a.open(dir.path(), OpenMode::Create);
        for p in 0..a.piece_count() {
            a.write_piece(&s, p, 4096);
            assert!(s.verify_piece(PieceIndex(p)).unwrap());
        }
        s.flush_resume().unwrap();
        let (t, _) = Storage::open(dir.path(), b.layout(), hash_b, OpenMode::Create).unwrap();
        for p in 0..b.piece_count() {
            b.write_piece(&t, p, 4096);
            assert!(t.verify_piece(PieceIndex(p)).unwrap());
        }
        t.flush_resume().unwrap();
    }
    let (s, report) = a.open(dir.path(), OpenMode::Create);
    assert!(s.is_complete());
    assert_eq!(report.fast_verified, a.piece_count(), "{report:?}");
    assert_eq!(report.hash_verified, 0, "{report:?}");
    let (t, report) = Storage::open(dir.path(), b.layout(), hash_b, OpenMode::Create).unwrap();
    assert!(t.is_complete());
    assert_eq!(report.fast_verified, b.piece_count(), "{report:?}");
}

#[test]
fn garbage_or_truncated_record_is_ignored() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = fx.open(dir.path(), OpenMode::Create);
        fx.write_piece(&s, 4, 4096);
        s.verify_piece(PieceIndex(4)).unwrap();
        s.flush_resume().unwrap();
    }
    let record = dir.path().join(super::path::record_name(&HASH_A));
    let good = std::fs::read(&record).unwrap();
    for (bytes, why) in [
        (good[..good.len() - 3].to_vec(), RecordRejected::BadChecksum),
        (good[..5].to_vec(), RecordRejected::Truncated),
        (
            b"\xff garbage garbage garbage".to_vec(),
            RecordRejected::BadMagic,
        ),
    ] {
        std::fs::write(&record, bytes).unwrap();
        let (s, report) = fx.open(dir.path(), OpenMode::Create);
        assert_eq!(report.record, RecordStatus::Rejected(why));
        assert_eq!((report.fast_verified, report.hash_verified), (0, 1));
        assert!(s.is_verified(PieceIndex(4)));
    }
}

#[test]
fn record_disagreeing_with_data_falls_back_to_sha1() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = fx.open(dir.path(), OpenMode::Create);
        for p in 0..fx.piece_count() {
            fx.write_piece(&s, p, 4096);
            s.verify_piece(PieceIndex(p)).unwrap();
        }
        s.flush_resume().unwrap();
    }
    // Corrupt byte 12298 (piece 3; f4 starts at 8500) behind our back.
    let f4 = dir.path().join("dir/f4");
    let mut bytes = std::fs::read(&f4).unwrap();
    bytes[12298 - 8500] ^= 1;
    std::fs::write(&f4, bytes).unwrap();
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.fast_verified, fx.piece_count() - 1);
    assert_eq!(report.failed, 1);
    assert!(!s.is_verified(PieceIndex(3)));
}

#[test]
fn path_traversal_and_escaping_symlinks_rejected() {
    for bad in [
        &["..", "x"][..],
        &["a", "/etc"],
        &["a/../../x"],
        &[""],
        &["."],
    ] {
        let files = vec![FileSpec {
            path_components: bad.iter().map(|s| s.to_string()).collect(),
            len_bytes: 1,
            padding: false,
        }];
        assert!(
            matches!(
                StorageLayout::new(files, 1, PieceHashes::Sha1(vec![[0; 20]])),
                Err(StoreError::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("dir")).unwrap();
    let err = Storage::open(dir.path(), fx.layout(), HASH_A, OpenMode::Create).unwrap_err();
    assert!(matches!(err, StoreError::PathEscapes { .. }), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn two_paths_to_one_file_rejected() {
    let fx = Fixture {
        files: vec![
            FileSpec {
                path_components: vec!["a".into(), "x".into()],
                len_bytes: 10,
                padding: false,
            },
            FileSpec {
                path_components: vec!["b".into(), "x".into()],
                len_bytes: 10,
                padding: false,
            },
        ],
        ..Fixture::new(&[10, 10], 8, 1)
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
    let err = Storage::open(dir.path(), fx.layout(), HASH_A, OpenMode::Create).unwrap_err();
    assert!(matches!(err, StoreError::InvalidLayout(_)), "{err}");
}

#[test]
fn distinct_pieces_written_from_distinct_threads() {
    let fx = Arc::new(Fixture::new(&[70_000, 3, 50_000], 1024, 3));
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = fx.open(dir.path(), OpenMode::Create);
    let s = Arc::new(s);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (s, fx) = (Arc::clone(&s), Arc::clone(&fx));
            std::thread::spawn(move || {
                for p in (t..fx.piece_count()).step_by(4) {
                    fx.write_piece(&s, p, 256);
                    assert!(s.verify_piece(PieceIndex(p)).unwrap());
                    // Serve what we have while others write.
                    assert_eq!(
                        &*s.block_slices(blk(p, 0, 16)).unwrap().concat(),
                        &fx.piece(p)[..16]
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(s.is_complete());
}

#[test]
fn second_writer_of_a_piece_is_refused() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = fx.open(dir.path(), OpenMode::Create);
    let claim = s.claim(PieceIndex(3)).unwrap();
    assert!(matches!(
        s.write_block(PieceIndex(3), BlockOffset(0), b"x"),
        Err(StoreError::PieceBusy {
            piece: PieceIndex(3)
        })
    ));
    assert!(matches!(
        s.verify_piece(PieceIndex(3)),
        Err(StoreError::PieceBusy {
            piece: PieceIndex(3)
        })
    ));
    s.write_block(PieceIndex(2), BlockOffset(0), b"x").unwrap();
    drop(claim);
    s.write_block(PieceIndex(3), BlockOffset(0), b"x").unwrap();
}

#[test]
fn seed_mode_verifies_existing_files_read_only() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    fx.write_files(dir.path());
    let (s, report) = fx.open(dir.path(), OpenMode::Seed);
    assert_eq!(report.hash_verified, fx.piece_count());
    assert!(s.is_complete());
    assert!(matches!(
        s.write_block(PieceIndex(0), BlockOffset(0), b"x"),
        Err(StoreError::ReadOnly)
    ));
    // A seed writes nothing into its directory unless asked (issue 11).
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    s.flush_resume().unwrap();
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    s.set_write_resume(true);
    s.flush_resume().unwrap();
    drop(s);
    let (_, report) = fx.open(dir.path(), OpenMode::Seed);
    assert_eq!(report.fast_verified, fx.piece_count());
    // Missing file / wrong size.
    std::fs::write(dir.path().join("dir/f2"), b"short").unwrap();
    let err = Storage::open(dir.path(), fx.layout(), HASH_A, OpenMode::Seed).unwrap_err();
    assert!(matches!(err, StoreError::FileSizeMismatch { .. }), "{err}");
    std::fs::remove_file(dir.path().join("dir/f2")).unwrap();
    let err = Storage::open(dir.path(), fx.layout(), HASH_A, OpenMode::Seed).unwrap_err();
    assert!(matches!(err, StoreError::FileMissing { .. }), "{err}");
}

#[test]
fn create_mode_refuses_to_truncate_a_longer_file() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dir")).unwrap();
    std::fs::write(dir.path().join("dir/f6"), b"too long").unwrap();
    let err = Storage::open(dir.path(), fx.layout(), HASH_A, OpenMode::Create).unwrap_err();
    assert!(matches!(err, StoreError::FileSizeMismatch { .. }), "{err}");
}

#[test]
fn all_zero_piece_content_is_found_at_open() {
    // A torrent whose content is zeros: the "missing" shortcut must not hide it.
    let mut fx = Fixture::new(&[10_000], 4096, 1);
    fx.data.iter_mut().for_each(|b| *b = 0);
    let dir = tempfile::tempdir().unwrap();
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(report.hash_verified, 3);
    assert!(s.is_complete());
}
