//! Send regions ([`Storage::servable_regions`]): only of verified pieces,
//! pointing at the right bytes through the mapping and the descriptor alike,
//! and keeping the mapping alive after the storage is gone.

use super::faults::modify;
use super::*;

/// Bytes of `regions` as `Send` and as `Splice` would send them.
fn contents(regions: &[crate::rt::Region]) -> (Vec<u8>, Vec<u8>) {
    let mapped = regions.iter().flat_map(|r| r.mapped_bytes()).collect();
    let read = regions
        .iter()
        .flat_map(|r| r.file_bytes().unwrap())
        .collect();
    (mapped, read)
}

#[test]
fn no_region_of_an_unverified_piece() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = fx.open(dir.path(), OpenMode::Create);
    // Nothing written yet.
    assert!(matches!(
        s.servable_regions(blk(1, 0, 4096)),
        Err(StoreError::NotVerified {
            piece: PieceIndex(1)
        })
    ));
    // Written but not verified: still none.
    fx.write_piece(&s, 1, 1000);
    assert!(matches!(
        s.servable_regions(blk(1, 0, 16)),
        Err(StoreError::NotVerified {
            piece: PieceIndex(1)
        })
    ));
    // Written wrong: verification fails and none is made.
    let mut bad = fx.piece(2).to_vec();
    bad[7] ^= 1;
    s.write_block(PieceIndex(2), BlockOffset(0), &bad).unwrap();
    assert!(!s.verify_piece(PieceIndex(2)).unwrap());
    assert!(matches!(
        s.servable_regions(blk(2, 0, 16)),
        Err(StoreError::NotVerified {
            piece: PieceIndex(2)
        })
    ));
    // Verified: one region per file the range touches, with its bytes.
    assert!(s.verify_piece(PieceIndex(1)).unwrap());
    let regions = s.servable_regions(blk(1, 0, 4096)).unwrap();
    // Piece 1 = bytes 4096..8192: f0[4096..5000], f2, f3[0..1192].
    assert_eq!(
        regions.iter().map(|r| r.len_bytes()).collect::<Vec<_>>(),
        vec![904, 2000, 1192]
    );
    let (mapped, read) = contents(&regions);
    assert_eq!(mapped, fx.piece(1));
    assert_eq!(read, fx.piece(1));
    // Bad ranges are the peer's fault, not a region.
    assert!(matches!(
        s.servable_regions(blk(1, 4000, 100)),
        Err(StoreError::RangeOutOfPiece { .. })
    ));
    assert!(matches!(
        s.servable_regions(blk(99, 0, 1)),
        Err(StoreError::PieceOutOfRange { .. })
    ));
}

#[test]
fn regions_keep_the_mapping_after_the_storage_is_dropped() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    fx.write_files(dir.path());
    let (s, report) = fx.open(dir.path(), OpenMode::Seed);
    assert_eq!(report.verified(), fx.piece_count());
    let regions = s.servable_regions(blk(4, 100, 3000)).unwrap();
    drop(s);
    let (mapped, read) = contents(&regions);
    assert_eq!(mapped, fx.piece(4)[100..3100]);
    assert_eq!(read, fx.piece(4)[100..3100]);
}

#[test]
fn no_region_of_a_piece_changed_on_disk() {
    let fx = multi();
    let dir = tempfile::tempdir().unwrap();
    fx.write_files(dir.path());
    let (s, _) = fx.open(dir.path(), OpenMode::Seed);
    s.servable_regions(blk(3, 0, 64)).unwrap();
    // Piece 3 is bytes 12288..16384, inside f4 (8500..20500).
    modify(&dir.path().join("dir/f4"), 12298 - 8500, &[!fx.data[12298]]);
    assert!(matches!(
        s.servable_regions(blk(3, 0, 64)),
        Err(StoreError::ChangedOnDisk {
            piece: PieceIndex(3),
            ..
        })
    ));
    assert!(matches!(
        s.servable_regions(blk(3, 0, 64)),
        Err(StoreError::PieceLost {
            piece: PieceIndex(3)
        })
    ));
    // Its neighbours in the same file are re-verified and served.
    let regions = s.servable_regions(blk(2, 0, 64)).unwrap();
    assert_eq!(contents(&regions).0, fx.piece(2)[..64]);
}
