//! Property tests: every message round-trips through encode and the
//! incremental decoder under any split of the stream; arbitrary input never
//! panics.

use std::net::IpAddr;

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::*;
use crate::base::{InfoHash, PeerId};

const PIECE_COUNT: u32 = 77;
const MAX_REQUEST: u32 = 64 * 1024;

fn index() -> impl Strategy<Value = PieceIndex> {
    (0..PIECE_COUNT).prop_map(PieceIndex)
}

fn block() -> impl Strategy<Value = Block> {
    (index(), any::<u32>(), 0..=MAX_REQUEST).prop_map(|(piece, begin, len_bytes)| Block {
        piece,
        offset: BlockOffset(begin),
        len_bytes,
    })
}

fn bitfield() -> impl Strategy<Value = Bitfield> {
    vec(any::<bool>(), PIECE_COUNT as usize).prop_map(|flags| {
        let mut b = Bitfield::new(PIECE_COUNT);
        for (p, _) in (0..PIECE_COUNT).zip(flags).filter(|(_, set)| *set) {
            b.set(PieceIndex(p));
        }
        b
    })
}

fn control() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        Just(PeerMessage::KeepAlive),
        Just(PeerMessage::Choke),
        Just(PeerMessage::Unchoke),
        Just(PeerMessage::Interested),
        Just(PeerMessage::NotInterested),
        Just(PeerMessage::HaveAll),
        Just(PeerMessage::HaveNone),
        index().prop_map(PeerMessage::Have),
        index().prop_map(PeerMessage::Suggest),
        index().prop_map(PeerMessage::AllowedFast),
        bitfield().prop_map(PeerMessage::Bitfield),
        block().prop_map(PeerMessage::Request),
        block().prop_map(PeerMessage::Cancel),
        block().prop_map(PeerMessage::Reject),
    ]
}

fn extended_handshake() -> impl Strategy<Value = ExtendedHandshake> {
    (
        btree_map("[a-z_]{1,12}", any::<u8>(), 0..5),
        any::<Option<u16>>(),
        proptest::option::of(".{0,20}"),
        any::<Option<u32>>(),
        proptest::option::of(any::<IpAddr>()),
        any::<Option<u64>>(),
        proptest::option::of((1..=255u8, any::<u32>(), 1..=MAX_LANES)),
        proptest::option::of(".{0,16}"),
        proptest::option::of("[a-z0-9-]{0,64}"),
    )
        .prop_map(
            |(m, p, v, reqq, yourip, metadata_size, p2pe, p2pe_rack, p2pe_zone)| {
                ExtendedHandshake {
                    p2pe_rack,
                    p2pe_zone,
                    m,
                    p,
                    v,
                    reqq,
                    yourip,
                    metadata_size,
                    p2pe: p2pe.map(|(id, max_request_len_bytes, lanes)| P2peExt {
                        id,
                        max_request_len_bytes,
                        lanes,
                    }),
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        // Every variant equally likely: 14 control messages and 4 others.
        14 => control().prop_map(Message::Control),
        1 => (index(), any::<u32>(), vec(any::<u8>(), 0..2048)).prop_map(|(index, begin, data)| {
            Message::Piece {
                index,
                begin: BlockOffset(begin),
                data: Bytes::from(data),
            }
        }),
        1 => any::<u16>().prop_map(|port| Message::Port { port }),
        1 => extended_handshake().prop_map(|hs| Message::Extended(ExtendedMessage::Handshake(hs))),
        1 => (1..=255u8, vec(any::<u8>(), 0..64)).prop_map(|(id, payload)| {
            Message::Extended(ExtendedMessage::Other {
                id,
                payload: Bytes::from(payload),
            })
        }),
    ]
}

/// Feeds `stream` in chunks of the given sizes (cycled), draining after each.
fn decode_chunked(
    dec: &mut Decoder,
    stream: &[u8],
    chunks: &[usize],
) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        dec.extend(chunk);
        while let Some(m) = dec.next_message()? {
            out.push(m);
        }
    }
    Ok(out)
}

/// Streams `stream` in chunks through [`Decoder::decode_from`], reassembling
/// `piece` payloads into messages.
fn stream_chunked(
    dec: &mut Decoder,
    stream: &[u8],
    chunks: &[usize],
) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().cycle();
    let mut payload = Vec::new();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut input = chunk;
        while let Some(d) = dec.decode_from(&mut input)? {
            match d {
                Decoded::Message(m) => out.push(m),
                Decoded::PieceStart(_) => payload.clear(),
                Decoded::PiecePayload(c) => payload.extend_from_slice(&c),
                Decoded::PieceEnd(h) => {
                    assert_eq!(payload.len(), h.len_bytes as usize);
                    out.push(Message::Piece {
                        index: h.piece,
                        begin: h.offset,
                        data: Bytes::from(std::mem::take(&mut payload)),
                    });
                }
            }
        }
        assert!(input.is_empty());
    }
    Ok(out)
}

/// `msgs` encoded back to back, and a decoder for them (test limits).
fn encoded_with_decoder(msgs: &[Message]) -> (Vec<u8>, Decoder) {
    let mut stream = Vec::new();
    for m in msgs {
        m.encode(&mut stream).unwrap();
    }
    let mut dec = Decoder::new(DecoderLimits::new(PIECE_COUNT));
    dec.set_max_request_len(MAX_REQUEST);
    (stream, dec)
}

proptest! {
    #[test]
    fn streaming_matches_messages_any_split(
        msgs in vec(message(), 1..12),
        chunks in vec(1usize..300, 1..8),
    ) {
        let (stream, mut dec) = encoded_with_decoder(&msgs);
        let decoded = stream_chunked(&mut dec, &stream, &chunks).unwrap();
        prop_assert_eq!(decoded, msgs);
        prop_assert_eq!(dec.buffered_len_bytes(), 0);
    }

    #[test]
    fn streaming_arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        chunks in vec(1usize..64, 1..8),
        piece_count in 0u32..100,
        max_request in any::<u32>(),
    ) {
        let mut dec = Decoder::new(DecoderLimits { max_frame_len_bytes: 512, piece_count });
        dec.set_max_request_len(max_request);
        let _ = stream_chunked(&mut dec, &bytes, &chunks);
    }

    #[test]
    fn messages_round_trip_any_split(
        msgs in vec(message(), 1..12),
        chunks in vec(1usize..300, 1..8),
    ) {
        let (stream, mut dec) = encoded_with_decoder(&msgs);
        let decoded = decode_chunked(&mut dec, &stream, &chunks).unwrap();
        prop_assert_eq!(decoded, msgs);
        prop_assert_eq!(dec.buffered_len_bytes(), 0);
    }

    #[test]
    fn handshake_then_messages_round_trip(
        info_hash in any::<[u8; 20]>(),
        peer_id in any::<[u8; 20]>(),
        reserved in any::<[u8; 8]>(),
        msgs in vec(message(), 0..4),
        split in 0usize..200,
    ) {
        let hs = Handshake { reserved, info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id) };
        let mut stream = hs.to_bytes().to_vec();
        for m in &msgs {
            m.encode(&mut stream).unwrap();
        }
        let (a, b) = stream.split_at(split.min(stream.len()));
        let mut hdec = HandshakeDecoder::new();
        hdec.extend(a);
        let got = match hdec.next_handshake().unwrap() {
            Some(got) => got,
            None => {
                hdec.extend(b);
                hdec.next_handshake().unwrap().unwrap()
            }
        };
        prop_assert_eq!(got, hs);
        let mut dec = hdec.into_decoder(DecoderLimits::new(PIECE_COUNT));
        dec.set_max_request_len(MAX_REQUEST);
        if split >= Handshake::LEN_BYTES {
            dec.extend(b);
        }
        let mut decoded = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            decoded.push(m);
        }
        prop_assert_eq!(decoded, msgs);
    }

    #[test]
    fn id_matches_encoded_byte(msg in message()) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        prop_assert_eq!(msg.id().map(|id| id as u8), out.get(4).copied());
    }

    #[test]
    fn piece_header_matches_encode(index in any::<u32>(), begin in any::<u32>(), data in vec(any::<u8>(), 0..64)) {
        let msg = Message::Piece { index: PieceIndex(index), begin: BlockOffset(begin), data: Bytes::from(data.clone()) };
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        let block = Block { piece: PieceIndex(index), offset: BlockOffset(begin), len_bytes: data.len() as u32 };
        let header = piece_header(&block).unwrap();
        prop_assert_eq!(&out[..13], &header[..]);
        prop_assert_eq!(&out[13..], &data[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..600),
        chunks in vec(1usize..64, 1..8),
        piece_count in 0u32..100,
        max_request in any::<u32>(),
    ) {
        let mut dec = Decoder::new(DecoderLimits { max_frame_len_bytes: 512, piece_count });
        dec.set_max_request_len(max_request);
        let _ = decode_chunked(&mut dec, &bytes, &chunks);
        let mut hdec = HandshakeDecoder::new();
        hdec.extend(&bytes);
        let _ = hdec.next_handshake();
        let _ = ExtendedHandshake::from_bencode(&bytes);
    }

    #[test]
    fn arbitrary_bencode_prefix_never_panics(tail in vec(any::<u8>(), 0..200)) {
        let mut payload = b"d1:md".to_vec();
        payload.extend_from_slice(&tail);
        let _ = ExtendedHandshake::from_bencode(&payload);
    }
}
