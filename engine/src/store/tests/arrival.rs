//! Hash on arrival (`store::arrival`) and BLAKE3 layouts: in-order writes
//! verify without a read-back, anything else reads back, and the result is
//! the same as hashing what lies in storage.

use super::*;
use crate::store::arrival::MAX_LIVE;
use crate::store::VerifyCounts;

fn counts(on_arrival: u64, read_back: u64) -> VerifyCounts {
    VerifyCounts {
        on_arrival,
        read_back,
    }
}

fn open_blake3(fx: &Fixture, dir: &Path) -> (Storage, ResumeReport) {
    Storage::open(dir, fx.blake3_layout(), HASH_A, OpenMode::Create).unwrap()
}

#[test]
fn in_order_pieces_verify_on_arrival_with_sha1_and_blake3() {
    let fx = multi();
    for blake3 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = if blake3 {
            open_blake3(&fx, dir.path())
        } else {
            fx.open(dir.path(), OpenMode::Create)
        };
        for p in 0..fx.piece_count() {
            // Uneven chunks, as a streamed `piece` payload arrives.
            fx.write_piece(&s, p, 1000);
            assert!(
                s.verify_piece(PieceIndex(p)).unwrap(),
                "piece {p} blake3 {blake3}"
            );
        }
        assert!(s.is_complete());
        assert_eq!(s.verify_counts(), counts(fx.piece_count().into(), 0));
        assert_eq!(s.arrivals.live(), 0);
        // The xxh3 came from the same pass: the record lets a reopen skip hashing.
        s.flush_resume().unwrap();
        drop(s);
        let (s, report) = if blake3 {
            open_blake3(&fx, dir.path())
        } else {
            fx.open(dir.path(), OpenMode::Create)
        };
        assert!(s.is_complete());
        assert_eq!(report.fast_verified, fx.piece_count(), "{report:?}");
    }
}

/// A BLAKE3 torrent's record holds the digests' prefixes (no xxh3 on the hot
/// path); its reopen checks the pieces with BLAKE3, so a byte changed behind
/// our back is caught though the record still lists the piece.
#[test]
fn blake3_record_reopen_checks_with_blake3_and_catches_a_changed_byte() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = open_blake3(&fx, dir.path());
        for p in 0..fx.piece_count() {
            fx.write_piece(&s, p, 4096);
            assert!(s.verify_piece(PieceIndex(p)).unwrap());
        }
        s.flush_resume().unwrap();
    }
    let record = std::fs::read(dir.path().join(crate::store::path::record_name(&HASH_A))).unwrap();
    let prefix = blake3::hash(fx.piece(0)).as_bytes()[..8].to_vec();
    assert!(
        record.windows(8).any(|w| w == prefix.as_slice()),
        "the record carries piece 0's BLAKE3 prefix"
    );
    // Corrupt byte 12298 (piece 3; f4 starts at 8500) behind our back.
    let f4 = dir.path().join("dir/f4");
    let mut bytes = std::fs::read(&f4).unwrap();
    bytes[12298 - 8500] ^= 1;
    std::fs::write(&f4, bytes).unwrap();
    let (s, report) = open_blake3(&fx, dir.path());
    assert_eq!(report.fast_verified, fx.piece_count() - 1, "{report:?}");
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(!s.is_verified(PieceIndex(3)));
}

#[test]
fn out_of_order_pieces_are_read_back_once() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_blake3(&fx, dir.path());
    // Piece 0 back to front; piece 1 from the middle; piece 2 in order but its
    // middle block sent again (a truncated block re-sent by another peer).
    let p0 = fx.piece(0);
    s.write_block(PieceIndex(0), BlockOffset(2048), &p0[2048..])
        .unwrap();
    s.write_block(PieceIndex(0), BlockOffset(0), &p0[..2048])
        .unwrap();
    let p1 = fx.piece(1);
    s.write_block(PieceIndex(1), BlockOffset(1024), &p1[1024..])
        .unwrap();
    s.write_block(PieceIndex(1), BlockOffset(0), &p1[..1024])
        .unwrap();
    fx.write_piece(&s, 2, 1024);
    s.write_block(PieceIndex(2), BlockOffset(1024), &fx.piece(2)[1024..2048])
        .unwrap();
    for p in 0..3 {
        assert!(s.verify_piece(PieceIndex(p)).unwrap(), "piece {p}");
    }
    assert_eq!(s.verify_counts(), counts(0, 3));
    s.flush_resume().unwrap();
    drop(s);
    let (_, report) = open_blake3(&fx, dir.path());
    assert_eq!(report.fast_verified, 3, "{report:?}");
}

#[test]
fn a_wrong_block_fails_on_both_paths_and_a_rewrite_fixes_it() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_blake3(&fx, dir.path());
    let mut bad = fx.piece(3).to_vec();
    bad[100] ^= 1;
    // In order: the digest computed on arrival is wrong.
    s.write_block(PieceIndex(3), BlockOffset(0), &bad).unwrap();
    assert!(!s.verify_piece(PieceIndex(3)).unwrap());
    assert_eq!(s.verify_counts(), counts(0, 0), "a failure is not a verify");
    // Rewriting the whole piece in order verifies it on arrival.
    fx.write_piece(&s, 3, 4096);
    assert!(s.verify_piece(PieceIndex(3)).unwrap());
    // Out of order: the bad byte lands after an in-order run; read back, caught.
    s.write_block(PieceIndex(4), BlockOffset(0), &fx.piece(4)[..2000])
        .unwrap();
    s.write_block(PieceIndex(4), BlockOffset(2000), &fx.piece(4)[2000..])
        .unwrap();
    s.write_block(PieceIndex(4), BlockOffset(100), &[fx.piece(4)[100] ^ 1])
        .unwrap();
    assert!(!s.verify_piece(PieceIndex(4)).unwrap());
    s.write_block(PieceIndex(4), BlockOffset(100), &fx.piece(4)[100..101])
        .unwrap();
    assert!(s.verify_piece(PieceIndex(4)).unwrap());
    assert_eq!(s.verify_counts(), counts(1, 1));
}

#[test]
fn blake3_layout_checks_existing_data_with_blake3() {
    let fx = multi();
    let origin = tempfile::tempdir().unwrap();
    fx.write_files(origin.path());
    let (s, report) =
        Storage::open(origin.path(), fx.blake3_layout(), HASH_A, OpenMode::Seed).unwrap();
    assert!(s.is_complete());
    assert_eq!(report.hash_verified, fx.piece_count(), "{report:?}");
    // Digests of another content: nothing verifies.
    let other = Fixture::new(&[5000, 0, 2000, 1500, 12000, 0, 1], 4096, 8);
    let layout = StorageLayout::new(
        fx.files.clone(),
        fx.piece_len,
        other.blake3_layout().piece_hashes().clone(),
    )
    .unwrap();
    let (s, report) = Storage::open(origin.path(), layout, HASH_A, OpenMode::Seed).unwrap();
    assert_eq!(s.verified_count(), 0);
    assert_eq!(report.failed, fx.piece_count(), "{report:?}");
}

#[test]
fn arrival_states_are_bounded_and_freed() {
    // More pieces started than the bound: the extra ones are read back.
    let n = MAX_LIVE as u64 + 8;
    let fx = Fixture::new(&[n * 64], 64, 5);
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_blake3(&fx, dir.path());
    for p in 0..fx.piece_count() {
        s.write_block(PieceIndex(p), BlockOffset(0), &fx.piece(p)[..32])
            .unwrap();
    }
    assert_eq!(s.arrivals.live(), MAX_LIVE);
    for p in 0..fx.piece_count() {
        s.write_block(PieceIndex(p), BlockOffset(32), &fx.piece(p)[32..])
            .unwrap();
        assert!(s.verify_piece(PieceIndex(p)).unwrap());
    }
    assert_eq!(s.verify_counts(), counts(MAX_LIVE as u64, 8));
    assert_eq!(s.arrivals.live(), 0);
    // A state left by an abandoned piece is dropped by its next stray write.
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open_blake3(&fx, dir.path());
    s.write_block(PieceIndex(0), BlockOffset(0), &fx.piece(0)[..10])
        .unwrap();
    assert_eq!(s.arrivals.live(), 1);
    s.write_block(PieceIndex(0), BlockOffset(500), &fx.piece(0)[500..510])
        .unwrap();
    assert_eq!(s.arrivals.live(), 0);
}
