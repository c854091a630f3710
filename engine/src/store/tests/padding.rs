//! BEP 47 padding files: zeros that belong to the pieces but are never written
//! to disk nor required there (libtorrent's default torrents have them).

use super::*;

/// `a` (5000 bytes), padding to 12 KiB, `b` (3000 bytes), padding to 16 KiB,
/// in 4 KiB pieces: piece 1 is `a`'s tail and padding, piece 2 all padding.
fn padded() -> Fixture {
    let mut fx = Fixture::new(&[5000, 7288, 3000, 1096], 4096, 3);
    let pad = |name: &str| vec![".pad".to_string(), name.to_string()];
    fx.files[1].path_components = pad("7288");
    fx.files[1].padding = true;
    fx.files[3].path_components = pad("1096");
    fx.files[3].padding = true;
    // The padding bytes are zeros.
    fx.data[5000..12288].fill(0);
    fx.data[15288..].fill(0);
    fx
}

fn no_pad_dir(dir: &Path) {
    let pad = dir.join("dir").join(".pad");
    assert!(!pad.exists(), "{} was created", pad.display());
}

#[test]
fn padding_is_never_written_and_never_required() {
    let fx = padded();
    assert!(fx.piece(2).iter().all(|&b| b == 0));
    let dir = tempfile::tempdir().unwrap();
    let (s, report) = fx.open(dir.path(), OpenMode::Create);
    no_pad_dir(dir.path());
    // All-zero piece 2 (padding only) is verified at once, the rest is missing.
    assert_eq!(report.verified(), 1);
    for piece in 0..fx.piece_count() {
        if !s.is_verified(PieceIndex(piece)) {
            // A peer may send anything in the padding: it is dropped.
            let mut bytes = fx.piece(piece).to_vec();
            if piece == 1 {
                bytes[4095] = 0xff;
            }
            s.write_block(PieceIndex(piece), BlockOffset(0), &bytes)
                .unwrap();
            assert!(s.verify_piece(PieceIndex(piece)).unwrap(), "piece {piece}");
        }
    }
    let mut buf = vec![1u8; 4096];
    s.read_block(PieceIndex(1), BlockOffset(0), &mut buf)
        .unwrap();
    assert_eq!(buf, fx.piece(1));
    s.flush_resume().unwrap();
    drop(s);
    no_pad_dir(dir.path());
    let on_disk: Vec<_> = std::fs::read_dir(dir.path().join("dir")).unwrap().collect();
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");

    // The original folder, without padding files, seeds: every piece verifies.
    let origin = tempfile::tempdir().unwrap();
    let mut real = fx.files.clone();
    real.retain(|f| !f.padding);
    Fixture {
        files: real,
        piece_len: 4096,
        data: [&fx.data[..5000], &fx.data[12288..15288]].concat(),
    }
    .write_files(origin.path());
    let (s, report) = fx.open(origin.path(), OpenMode::Seed);
    assert_eq!(report.verified(), fx.piece_count());
    no_pad_dir(origin.path());
    let mut buf = vec![1u8; 4096];
    s.read_block(PieceIndex(2), BlockOffset(0), &mut buf)
        .unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn padding_paths_may_repeat() {
    let mut fx = padded();
    fx.files[3].path_components = fx.files[1].path_components.clone();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = fx.open(dir.path(), OpenMode::Create);
    assert_eq!(s.layout().file_count(), 4);
    // Not for real files.
    fx.files[1].padding = false;
    fx.files[3].padding = false;
    assert!(matches!(
        StorageLayout::new(fx.files.clone(), 4096, PieceHashes::Sha1(vec![[0; 20]; 4])),
        Err(StoreError::InvalidLayout(_))
    ));
}
