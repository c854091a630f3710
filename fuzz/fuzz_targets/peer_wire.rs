//! Peer wire decoder fuzz target: arbitrary bytes, in arbitrary chunkings,
//! through the handshake decoder and the message decoder. Must never panic.
//!
//! Input layout: byte 0 picks the chunk-size seed, bytes 1..3 the piece
//! count, byte 3 the maximum request length (in 16 KiB steps), byte 4 the
//! negotiated extension bits and whether a handshake is expected; the rest
//! is the stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pe::base::{InfoHash, PeerId};
use p2pe::wire::peer::{
    Decoder, DecoderLimits, ExtendedHandshake, Handshake, HandshakeDecoder, Message,
    BLOCK_LEN_BYTES,
};

fuzz_target!(|data: &[u8]| {
    let Some((cfg, stream)) = data.split_first_chunk::<5>() else {
        return;
    };
    let [seed, pc_hi, pc_lo, max_req, flags] = *cfg;
    let piece_count = u32::from(u16::from_be_bytes([pc_hi, pc_lo]));
    let mut limits = DecoderLimits::new(piece_count);
    limits.max_frame_len_bytes = limits.max_frame_len_bytes.min(64 * 1024);

    let mut rest = stream;
    let mut decoder = if flags & 1 != 0 {
        let mut hs = HandshakeDecoder::new();
        loop {
            let n = chunk_len(seed, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            hs.extend(chunk);
            match hs.next_handshake() {
                Ok(Some(_)) => break hs.into_decoder(limits),
                Ok(None) if !rest.is_empty() => {}
                _ => return,
            }
        }
    } else {
        Decoder::new(limits)
    };
    let mut theirs = Handshake::new(InfoHash([0; 20]), PeerId([0; 20]));
    theirs.set_fast(flags & 2 != 0);
    theirs.set_extended(flags & 4 != 0);
    decoder.set_negotiated(&Handshake::new(InfoHash([0; 20]), PeerId([0; 20])), &theirs);
    decoder.set_max_request_len(BLOCK_LEN_BYTES.saturating_mul(u32::from(max_req).max(1)));

    let _ = ExtendedHandshake::from_bencode(rest);
    let mut step = 0u8;
    while !rest.is_empty() {
        let n = chunk_len(seed.wrapping_add(step), rest.len());
        step = step.wrapping_add(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        decoder.extend(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => check_round_trip(&decoder, &msg),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

/// A decoded message re-encodes to bytes that decode to the same message
/// (under the same rules, without the frame limit: re-encoding may grow an
/// extended handshake, e.g. lossy UTF-8 in `v`).
fn check_round_trip(decoder: &Decoder, msg: &Message) {
    let mut out = Vec::new();
    msg.encode(&mut out).expect("decoded message re-encodes");
    let mut limits = decoder.limits();
    limits.max_frame_len_bytes = u32::MAX;
    let mut again = Decoder::new(limits);
    again.set_max_request_len(decoder.max_request_len_bytes());
    again.extend(&out);
    assert_eq!(again.next_message(), Ok(Some(msg.clone())));
    assert_eq!(again.buffered_len_bytes(), 0);
}

/// A chunk length in `1..=remaining` derived from `seed`.
fn chunk_len(seed: u8, remaining: usize) -> usize {
    (usize::from(seed % 31) + 1).min(remaining)
}
