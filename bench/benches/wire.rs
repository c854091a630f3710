//! Peer wire codec micro-benchmarks (criterion ids `wire/op/size`).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2pe::wire::peer::{
    piece_header, Block, BlockOffset, Decoder, DecoderLimits, Message, PeerMessage, PieceIndex,
};

const PIECE_COUNT: u32 = 4096;

fn piece_frame(len_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Piece {
        index: PieceIndex(7),
        begin: BlockOffset(0),
        data: Bytes::from(vec![0xa5; len_bytes]),
    }
    .encode(&mut out)
    .expect("encode piece");
    out
}

/// Receive-buffer copy plus decode of one `piece` frame, per block size.
fn decode_piece(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/decode_piece");
    for (name, len) in [("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let frame = piece_frame(len);
        let mut dec = Decoder::new(DecoderLimits::new(PIECE_COUNT));
        dec.set_max_request_len(1 << 20);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                dec.extend(black_box(&frame));
                black_box(dec.next_message().expect("valid").expect("complete"))
            })
        });
    }
    group.finish();
}

fn encode_piece_header(c: &mut Criterion) {
    c.bench_function("wire/encode_piece_header", |b| {
        b.iter(|| {
            piece_header(black_box(&Block {
                piece: PieceIndex(12),
                offset: BlockOffset(1 << 14),
                len_bytes: 1 << 14,
            }))
        })
    });
}

/// A leecher's typical inbound mix: requests, haves, cancels, keep-alives
/// and one 16 KiB piece per 16 control messages.
fn mixed_stream() -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut count = 0;
    for i in 0..64u32 {
        let req = Block {
            piece: PieceIndex(i % PIECE_COUNT),
            offset: BlockOffset((i % 16) << 14),
            len_bytes: 1 << 14,
        };
        let msg = match i % 16 {
            0 => Message::Piece {
                index: req.piece,
                begin: req.offset,
                data: Bytes::from(vec![1; 1 << 14]),
            },
            1..=9 => PeerMessage::Request(req).into(),
            10..=13 => PeerMessage::Have(req.piece).into(),
            14 => PeerMessage::Cancel(req).into(),
            _ => PeerMessage::KeepAlive.into(),
        };
        msg.encode(&mut out).expect("encode");
        count += 1;
    }
    (out, count)
}

fn decode_mixed(c: &mut Criterion) {
    let (stream, count) = mixed_stream();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(count));
    group.bench_function("decode_mixed", |b| {
        let mut dec = Decoder::new(DecoderLimits::new(PIECE_COUNT));
        b.iter(|| {
            // Fed in 1500-byte reads, like MTU-sized segments.
            for chunk in stream.chunks(1500) {
                dec.extend(black_box(chunk));
                while let Some(msg) = dec.next_message().expect("valid") {
                    black_box(msg);
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode_piece, encode_piece_header, decode_mixed);
criterion_main!(benches);
