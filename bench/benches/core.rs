//! Criterion micro-benchmarks of the sans-IO core: piece picker decisions (as the
//! torrent makes them: a block arrives, the piece verifies, the next request is
//! chosen), the node-wide availability counts its workers share, and bitmap operations
//! (`Bitfield`, the node's shared `AtomicBitfield`).
//!
//! Run: `cargo bench -p p2pe-bench --bench core`. Results: `perf/core-bench.md`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use p2pe::core::{
    Action, AtomicBitfield, Availability, Bitfield, ChokerConfig, PeerCaps, PeerKey, PeerMessage,
    PieceIndex, Time, Torrent, TorrentConfig,
};

const PIECE_LEN: u32 = 256 * 1024;
const PIECES: u32 = 2000;
const PEERS: u64 = 20;

const CAPS: PeerCaps = PeerCaps {
    fast_extension: true,
    max_request_len_bytes: PIECE_LEN,
    reqq: None,
    distinct_first: true,
    locality: None,
    node_endgame: true,
    relay_part_bytes: 0,
};

/// A leecher torrent of `PIECES` pieces, counting availability in `shared` if given.
fn empty_leecher(shared: Option<&Arc<Availability>>) -> Torrent {
    let mut tc = TorrentConfig::new(u64::from(PIECES) * u64::from(PIECE_LEN), PIECE_LEN);
    tc.choker = ChokerConfig::datacenter();
    tc.availability = shared.cloned();
    Torrent::new(tc, Bitfield::new(PIECES), 7)
}

/// A leecher with `PEERS` seeders connected (fast extension, whole-piece requests),
/// every one unchoking it, its first requests drained.
fn leecher(shared: Option<&Arc<Availability>>) -> (Torrent, Vec<(PeerKey, p2pe::core::Block)>) {
    let mut t = empty_leecher(shared);
    let caps = CAPS;
    for k in 0..PEERS {
        t.handle_peer_connected(Time::ZERO, PeerKey(k), caps);
        let _ = t.handle_message(Time::ZERO, PeerKey(k), PeerMessage::HaveAll);
        let _ = t.handle_message(Time::ZERO, PeerKey(k), PeerMessage::Unchoke);
    }
    let mut requests = Vec::new();
    drain(&mut t, &mut requests);
    (t, requests)
}

/// Takes the torrent's actions: requests are collected, verifications answered.
fn drain(t: &mut Torrent, requests: &mut Vec<(PeerKey, p2pe::core::Block)>) {
    while let Some(a) = t.poll_action() {
        match a {
            Action::Send {
                peer,
                msg: PeerMessage::Request(b),
            } => requests.push((peer, b)),
            Action::VerifyPiece { piece } => t.handle_piece_verified(Time::ZERO, piece, true),
            _ => {}
        }
    }
}

/// The whole download as the core sees it: every requested block arrives, each
/// piece verifies, the picker chooses the next request, until complete.
fn download(mut t: Torrent, mut requests: Vec<(PeerKey, p2pe::core::Block)>) -> Torrent {
    let mut now = Time::ZERO;
    while let Some((peer, b)) = requests.pop() {
        now += std::time::Duration::from_micros(10);
        let _ = t.handle_block_received(now, peer, b);
        drain(&mut t, &mut requests);
    }
    assert!(t.is_complete(), "the bench download did not complete");
    t
}

fn picker(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/picker");
    g.throughput(Throughput::Elements(u64::from(PIECES)));
    g.sample_size(20);
    g.bench_function("download_2000_pieces_20_peers", |b| {
        b.iter_batched(
            || leecher(None),
            |(t, r)| download(t, r),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("download_2000_pieces_20_peers_shared_counts", |b| {
        b.iter_batched(
            || leecher(Some(&Arc::new(Availability::new(PIECES)))),
            |(t, r)| download(t, r),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A peer with every piece (BEP 6 `have all`) joins a leecher and leaves: each of its
/// pieces is counted and taken back, in the torrent's own counts or in the node-wide
/// shared ones (atomic), the cost a worker pays per peer and piece.
fn availability(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/availability");
    g.throughput(Throughput::Elements(u64::from(PIECES)));
    let shared = Arc::new(Availability::new(PIECES));
    for (name, counts) in [("local", None), ("shared", Some(&shared))] {
        let mut t = empty_leecher(counts);
        g.bench_function(format!("have_all_join_leave/{name}/2000"), |b| {
            b.iter(|| {
                t.handle_peer_connected(Time::ZERO, PeerKey(1), CAPS);
                let _ = t.handle_message(Time::ZERO, PeerKey(1), PeerMessage::HaveAll);
                t.handle_peer_disconnected(Time::ZERO, PeerKey(1));
                while t.poll_action().is_some() {}
            })
        });
    }
    g.bench_function("inc_dec/2000", |b| {
        b.iter(|| {
            for i in 0..PIECES {
                black_box(shared.inc(PieceIndex(i)));
            }
            for i in 0..PIECES {
                black_box(shared.dec(PieceIndex(i)));
            }
        })
    });
    g.finish();
}

fn bitmaps(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/bitmap");
    let n = 100_000u32;
    let mut half = Bitfield::new(n);
    for i in (0..n).step_by(2) {
        half.set(PieceIndex(i));
    }
    let bytes = half.to_bytes();
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_function("bitfield_set_get/100k", |b| {
        b.iter(|| {
            let mut f = Bitfield::new(n);
            for i in (0..n).step_by(3) {
                f.set(PieceIndex(i));
            }
            (0..n).filter(|&i| f.get(PieceIndex(i))).count()
        })
    });
    g.bench_function("bitfield_count_ones/100k", |b| {
        b.iter(|| black_box(&half).count_ones())
    });
    g.bench_function("bitfield_iter_ones/100k", |b| {
        b.iter(|| black_box(&half).iter_ones().count())
    });
    g.bench_function("bitfield_from_to_bytes/100k", |b| {
        b.iter(|| Bitfield::from_bytes(black_box(&bytes), n).map(|f| f.to_bytes().len()))
    });
    g.bench_function("atomic_try_set_get/100k", |b| {
        b.iter(|| {
            let f = AtomicBitfield::new(n);
            for i in (0..n).step_by(3) {
                f.try_set(PieceIndex(i));
            }
            (0..n).filter(|&i| f.get(PieceIndex(i))).count()
        })
    });
    g.finish();
}

criterion_group!(benches, picker, availability, bitmaps);
criterion_main!(benches);
