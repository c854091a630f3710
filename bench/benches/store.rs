//! Piece storage micro-benchmarks: hashing a 4 MiB piece from the mapping,
//! writing and serving 16 KiB blocks. Results: perf/store.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use p2pe::base::{Block, BlockOffset, PieceHashes, PieceIndex};
use p2pe::store::{FileSpec, OpenMode, ServeCheck, Storage, StorageLayout};
use sha1::{Digest, Sha1};

const PIECE_BYTES: usize = 4 << 20;
const BLOCK_BYTES: usize = 16 << 10;

/// The block of `len_bytes` bytes at `offset` of piece `piece`.
fn blk(piece: u32, offset: u32, len_bytes: u32) -> Block {
    Block {
        piece: PieceIndex(piece),
        offset: BlockOffset(offset),
        len_bytes,
    }
}

/// A two-piece torrent: piece 0 written and verified, piece 1 left unverified.
fn storage(dir: &std::path::Path) -> Storage {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..2 * PIECE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let hashes = data
        .chunks(PIECE_BYTES)
        .map(|c| Sha1::digest(c).into())
        .collect();
    let files = vec![FileSpec {
        path_components: vec!["data".into()],
        len_bytes: data.len() as u64,
        padding: false,
    }];
    let layout =
        StorageLayout::new(files, PIECE_BYTES as u32, PieceHashes::Sha1(hashes)).expect("layout");
    let (s, _) =
        Storage::open(dir, layout, p2pe::base::InfoHash([1; 20]), OpenMode::Create).expect("open");
    s.write_block(PieceIndex(0), BlockOffset(0), &data[..PIECE_BYTES])
        .expect("write");
    assert!(s.verify_piece(PieceIndex(0)).expect("verify"));
    s
}

fn hashing(c: &mut Criterion, s: &Storage) {
    let piece = s
        .block_slices(blk(0, 0, PIECE_BYTES as u32))
        .expect("slices");
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(PIECE_BYTES as u64));
    g.bench_function("sha1_piece/4MiB", |b| {
        b.iter(|| {
            let mut h = Sha1::new();
            piece.iter().for_each(|s| h.update(s));
            black_box(h.finalize())
        })
    });
    g.bench_function("blake3_piece/4MiB", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            piece.iter().for_each(|s| {
                h.update(s);
            });
            black_box(h.finalize())
        })
    });
    g.bench_function("xxh3_piece/4MiB", |b| {
        b.iter(|| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            piece.iter().for_each(|s| h.update(s));
            black_box(h.digest())
        })
    });
    // Piece 1 holds zeros, not its content: every call hashes (SHA-1 + xxh3,
    // one pass) and fails, the full cost of `verify_piece`.
    g.bench_function("verify_piece/4MiB", |b| {
        b.iter(|| black_box(s.verify_piece(PieceIndex(1)).expect("verify")))
    });
    g.finish();
}

fn blocks(c: &mut Criterion, s: &mut Storage) {
    let blocks_per_piece = (PIECE_BYTES / BLOCK_BYTES) as u32;
    let block = vec![0x5au8; BLOCK_BYTES];
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(BLOCK_BYTES as u64));
    let mut i = 0u32;
    g.bench_function("write_block/16KiB", |b| {
        b.iter(|| {
            i = (i + 1) % blocks_per_piece;
            s.write_block(PieceIndex(1), BlockOffset(i * BLOCK_BYTES as u32), &block)
                .expect("write")
        })
    });
    g.bench_function("read_block/16KiB", |b| {
        b.iter(|| {
            i = (i + 1) % blocks_per_piece;
            s.read_block(PieceIndex(0), BlockOffset(i * BLOCK_BYTES as u32), &mut buf)
                .expect("read");
            black_box(&buf);
        })
    });
    g.bench_function("block_slices/16KiB", |b| {
        b.iter(|| {
            i = (i + 1) % blocks_per_piece;
            black_box(
                s.block_slices(blk(0, i * BLOCK_BYTES as u32, BLOCK_BYTES as u32))
                    .expect("slices"),
            );
        })
    });
    s.set_serve_check(ServeCheck::Periodic);
    g.bench_function("read_block_periodic_check/16KiB", |b| {
        b.iter(|| {
            i = (i + 1) % blocks_per_piece;
            s.read_block(PieceIndex(0), BlockOffset(i * BLOCK_BYTES as u32), &mut buf)
                .expect("read");
            black_box(&buf);
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = storage(dir.path());
    hashing(c, &s);
    blocks(c, &mut s);
}

criterion_group!(benches, bench);
criterion_main!(benches);
