//! SHA-1 of one 4 MiB piece (BEP 3 piece hash), the inner loop of `p2pe create`
//! and of piece verification. Reports bytes/s via criterion throughput.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use p2pe::wire::metainfo::PieceHash;

fn sha1_piece(c: &mut Criterion) {
    const PIECE_LEN_BYTES: usize = 4 * 1024 * 1024;
    // Any non-constant bytes: SHA-1 speed does not depend on content.
    let piece: Vec<u8> = (0..PIECE_LEN_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut group = c.benchmark_group("store/sha1_piece");
    group.throughput(Throughput::Bytes(PIECE_LEN_BYTES as u64));
    group.bench_function("4MiB", |b| {
        b.iter(|| PieceHash::of_piece(std::hint::black_box(&piece)))
    });
    group.finish();
}

criterion_group!(benches, sha1_piece);
criterion_main!(benches);
