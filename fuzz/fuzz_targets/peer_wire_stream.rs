//! Streaming peer wire decoder fuzz target (`Decoder::decode_from`, the
//! node's receive path): arbitrary bytes in arbitrary chunkings must never
//! panic, and every `piece` message yields exactly its header's `len_bytes`
//! of payload between its `PieceStart` and `PieceEnd`.
//!
//! Input layout: byte 0 picks the chunk-size seed, bytes 1..3 the piece
//! count, byte 3 the maximum request length (in 16 KiB steps); the rest is
//! the stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pe::wire::peer::{Decoded, Decoder, DecoderLimits, BLOCK_LEN_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((cfg, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let [seed, pc_hi, pc_lo, max_req] = *cfg;
    let piece_count = u32::from(u16::from_be_bytes([pc_hi, pc_lo]));
    let mut limits = DecoderLimits::new(piece_count);
    limits.max_frame_len_bytes = limits.max_frame_len_bytes.min(64 * 1024);
    let mut decoder = Decoder::new(limits);
    decoder.set_max_request_len(BLOCK_LEN_BYTES.saturating_mul(u32::from(max_req).max(1)));

    let mut rest = stream;
    let mut step = 0u8;
    // (header length, payload bytes seen) of the piece being streamed.
    let mut open: Option<(u32, u64)> = None;
    while !rest.is_empty() {
        let n = (usize::from(seed.wrapping_add(step) % 31) + 1).min(rest.len());
        step = step.wrapping_add(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut input = chunk;
        loop {
            match decoder.decode_from(&mut input) {
                Ok(Some(Decoded::Message(_))) => assert!(open.is_none()),
                Ok(Some(Decoded::PieceStart(h))) => {
                    assert!(open.is_none(), "piece inside a piece");
                    assert!(h.piece.0 < piece_count);
                    open = Some((h.len_bytes, 0));
                }
                Ok(Some(Decoded::PiecePayload(p))) => {
                    let (len, seen) = open.as_mut().expect("payload outside a piece");
                    *seen += p.len() as u64;
                    assert!(*seen <= u64::from(*len), "more payload than announced");
                }
                Ok(Some(Decoded::PieceEnd(h))) => {
                    let (len, seen) = open.take().expect("end outside a piece");
                    assert_eq!((len, seen), (h.len_bytes, u64::from(h.len_bytes)));
                }
                Ok(None) => {
                    assert!(input.is_empty(), "needs more bytes but input left");
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
