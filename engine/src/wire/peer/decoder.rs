//! Incremental peer wire message decoder over a byte stream.

use bytes::{Buf, BytesMut};

use super::body::{parse_body, BodyRules};
use super::{Block, Handshake, Message, MessageId, PeerMessage, WireError, BLOCK_LEN_BYTES};

/// Default frame limit in bytes: 128 KiB. Comfortably above a 16 KiB block
/// plus its 9-byte header and a BEP 9 metadata piece (16 KiB plus a small
/// dictionary), small enough that a lying length prefix costs little memory.
const DEFAULT_MAX_FRAME_LEN_BYTES: u32 = 128 * 1024;

/// Bytes of a `piece` frame before the block: id, index, begin.
pub(super) const PIECE_HEADER_LEN_BYTES: u32 = 9;

/// What a [`Decoder`] accepts from one peer of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest frame accepted, in bytes, excluding the 4-byte length prefix.
    pub max_frame_len_bytes: u32,
    /// Pieces in the torrent; piece indices must be below it.
    pub piece_count: u32,
}

impl DecoderLimits {
    /// Limits for a torrent of `piece_count` pieces: frames up to 128 KiB,
    /// raised if needed so that a full bitfield fits.
    pub fn new(piece_count: u32) -> Self {
        let bitfield_frame = bitfield_len_bytes(piece_count).saturating_add(1);
        Self {
            max_frame_len_bytes: DEFAULT_MAX_FRAME_LEN_BYTES.max(bitfield_frame),
            piece_count,
        }
    }
}

/// Bitfield length in bytes for `piece_count` pieces: `ceil(piece_count / 8)`.
fn bitfield_len_bytes(piece_count: u32) -> u32 {
    piece_count.div_ceil(8)
}

/// Incremental decoder of length-prefixed peer wire messages (after the
/// handshake). Feed bytes as they arrive, in any split, then drain
/// [`Decoder::next_message`] until it returns `Ok(None)`.
///
/// Invariant: the receive buffer holds only undecoded bytes, starting at a
/// frame boundary. After an `Err` the stream is not trusted any more: close
/// the connection (further calls stay panic-free but their results are
/// meaningless).
#[derive(Debug)]
pub struct Decoder {
    pub(super) buf: BytesMut,
    pub(super) limits: DecoderLimits,
    pub(super) max_request_len_bytes: u32,
    /// BEP 6 messages allowed (both handshakes set the fast bit).
    fast: bool,
    /// BEP 10 messages allowed (both handshakes set the extension bit).
    extended: bool,
    /// Streaming ([`Decoder::decode_from`]): inside a `piece` payload, its
    /// header and the payload bytes still to come.
    pub(super) piece: Option<(Block, u32)>,
}

impl Decoder {
    /// A decoder with `limits` and the standard 16 KiB maximum request
    /// length, accepting BEP 6 and BEP 10 messages until
    /// [`Decoder::set_negotiated`] says otherwise.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            buf: BytesMut::new(),
            limits,
            max_request_len_bytes: BLOCK_LEN_BYTES,
            fast: true,
            extended: true,
            piece: None,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The receive buffer, to read into directly (saving a copy). Only append
    /// to it.
    pub fn receive_buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered_len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Largest request/cancel/reject length and `piece` block accepted, in bytes.
    pub fn max_request_len_bytes(&self) -> u32 {
        self.max_request_len_bytes
    }

    /// Sets the maximum request length, e.g. to the result of
    /// [`super::negotiated_max_request_len`] after the extended handshakes.
    /// Raises the frame limit if needed so a `piece` frame of that block
    /// length fits.
    pub fn set_max_request_len(&mut self, len_bytes: u32) {
        self.max_request_len_bytes = len_bytes;
        let piece_frame = len_bytes.saturating_add(PIECE_HEADER_LEN_BYTES);
        self.limits.max_frame_len_bytes = self.limits.max_frame_len_bytes.max(piece_frame);
    }

    /// Accepts BEP 6 (fast) and BEP 10 (extended) messages only if both
    /// handshakes advertise them; otherwise such a message is
    /// [`WireError::NotNegotiated`] (BEP 6: "the peer ... should close the
    /// connection").
    pub fn set_negotiated(&mut self, ours: &Handshake, theirs: &Handshake) {
        self.fast = ours.supports_fast() && theirs.supports_fast();
        self.extended = ours.supports_extended() && theirs.supports_extended();
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    ///
    /// A frame's length and id are checked as soon as its first 5 bytes are
    /// buffered, so an oversized or malformed frame is rejected before its
    /// body arrives.
    ///
    /// # Errors
    ///
    /// - [`WireError::FrameTooLong`]: length prefix above the frame limit.
    /// - [`WireError::UnknownMessageId`]: id not in BEP 3/5/6/10.
    /// - [`WireError::NotNegotiated`]: BEP 6 or BEP 10 message on a
    ///   connection that did not negotiate it.
    /// - [`WireError::BadLength`]: frame length wrong for the id.
    /// - [`WireError::PieceOutOfRange`]: index `>= piece_count`.
    /// - [`WireError::BadBitfield`]: bitfield of the wrong length or with
    ///   spare bits set.
    /// - [`WireError::RequestTooLarge`], [`WireError::BlockTooLarge`]: above
    ///   the maximum request length.
    /// - [`WireError::BadExtendedHandshake`]: malformed BEP 10 handshake.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(len) = self.frame_len()? else {
            return Ok(None);
        };
        if len == 0 {
            self.buf.advance(4);
            return Ok(Some(Message::Control(PeerMessage::KeepAlive)));
        }
        let Some(&id_byte) = self.buf.get(4) else {
            return Ok(None);
        };
        let id = self.check_header(id_byte, len)?;
        let frame_len = (len as usize).saturating_add(4);
        if self.buf.len() < frame_len {
            self.buf.reserve(frame_len - self.buf.len());
            return Ok(None);
        }
        self.take_frame(id, len).map(Some)
    }

    /// The buffered frame's length prefix (id byte and body, BEP 3), checked
    /// against the frame limit; `Ok(None)` while fewer than 4 bytes are buffered.
    pub(super) fn frame_len(&self) -> Result<Option<u32>, WireError> {
        let Some(prefix) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len > self.limits.max_frame_len_bytes {
            return Err(WireError::FrameTooLong {
                len_bytes: len,
                max_bytes: self.limits.max_frame_len_bytes,
            });
        }
        Ok(Some(len))
    }

    /// Takes the complete buffered frame (`4 + len` bytes, id `id` checked by
    /// [`Decoder::check_header`]) and parses its body.
    pub(super) fn take_frame(&mut self, id: MessageId, len: u32) -> Result<Message, WireError> {
        let frame_len = (len as usize).saturating_add(4);
        let mut frame = self.buf.split_to(frame_len).freeze();
        frame.advance(5);
        let rules = BodyRules {
            piece_count: self.limits.piece_count,
            max_request_len_bytes: self.max_request_len_bytes,
        };
        parse_body(id, len, frame, rules)
    }

    /// Validates the id and the frame length `len` (id byte included).
    pub(super) fn check_header(&self, id_byte: u8, len: u32) -> Result<MessageId, WireError> {
        let id =
            MessageId::from_byte(id_byte).ok_or(WireError::UnknownMessageId { id: id_byte })?;
        if (id.requires_fast() && !self.fast) || (id == MessageId::Extended && !self.extended) {
            return Err(WireError::NotNegotiated { id: id_byte });
        }
        let ok = match id {
            MessageId::Choke
            | MessageId::Unchoke
            | MessageId::Interested
            | MessageId::NotInterested
            | MessageId::HaveAll
            | MessageId::HaveNone => len == 1,
            MessageId::Have | MessageId::Suggest | MessageId::AllowedFast => len == 5,
            MessageId::Request | MessageId::Cancel | MessageId::Reject => len == 13,
            MessageId::Port => len == 3,
            MessageId::Extended => len >= 2,
            MessageId::Piece => {
                let block =
                    len.checked_sub(PIECE_HEADER_LEN_BYTES)
                        .ok_or(WireError::BadLength {
                            id: id_byte,
                            len_bytes: len,
                        })?;
                if block > self.max_request_len_bytes {
                    return Err(WireError::BlockTooLarge {
                        len_bytes: block,
                        max_bytes: self.max_request_len_bytes,
                    });
                }
                true
            }
            MessageId::Bitfield => {
                if len - 1 != bitfield_len_bytes(self.limits.piece_count) {
                    return Err(WireError::BadBitfield {
                        reason: "wrong length for the piece count",
                    });
                }
                true
            }
        };
        if ok {
            Ok(id)
        } else {
            Err(WireError::BadLength {
                id: id_byte,
                len_bytes: len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::peer::PieceIndex;

    fn decode_all(limits: DecoderLimits, bytes: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut dec = Decoder::new(limits);
        dec.extend(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn err(limits: DecoderLimits, bytes: &[u8]) -> WireError {
        decode_all(limits, bytes).unwrap_err()
    }

    #[test]
    fn frame_too_long_before_body() {
        let limits = DecoderLimits {
            max_frame_len_bytes: 100,
            piece_count: 8,
        };
        assert_eq!(
            err(limits, &[0, 0, 0, 101]),
            WireError::FrameTooLong {
                len_bytes: 101,
                max_bytes: 100
            }
        );
    }

    #[test]
    fn unknown_id() {
        assert_eq!(
            err(DecoderLimits::new(8), &[0, 0, 0, 1, 10]),
            WireError::UnknownMessageId { id: 10 }
        );
    }

    #[test]
    fn bad_lengths() {
        let l = DecoderLimits::new(8);
        assert_eq!(
            err(l, &[0, 0, 0, 2, 0]),
            WireError::BadLength {
                id: 0,
                len_bytes: 2
            }
        );
        assert_eq!(
            err(l, &[0, 0, 0, 4, 4]),
            WireError::BadLength {
                id: 4,
                len_bytes: 4
            }
        );
        assert_eq!(
            err(l, &[0, 0, 0, 12, 6]),
            WireError::BadLength {
                id: 6,
                len_bytes: 12
            }
        );
        assert_eq!(
            err(l, &[0, 0, 0, 8, 7]),
            WireError::BadLength {
                id: 7,
                len_bytes: 8
            }
        );
        assert_eq!(
            err(l, &[0, 0, 0, 1, 20]),
            WireError::BadLength {
                id: 20,
                len_bytes: 1
            }
        );
        assert_eq!(
            err(l, &[0, 0, 0, 2, 9]),
            WireError::BadLength {
                id: 9,
                len_bytes: 2
            }
        );
    }

    #[test]
    fn piece_out_of_range() {
        let l = DecoderLimits::new(8);
        let e = err(l, &[0, 0, 0, 5, 4, 0, 0, 0, 8]);
        assert_eq!(
            e,
            WireError::PieceOutOfRange {
                index: 8,
                piece_count: 8
            }
        );
        let e = err(l, &[0, 0, 0, 13, 6, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x40, 0]);
        assert_eq!(
            e,
            WireError::PieceOutOfRange {
                index: 256,
                piece_count: 8
            }
        );
    }

    #[test]
    fn bitfield_checks() {
        let l = DecoderLimits::new(10);
        assert!(matches!(
            err(l, &[0, 0, 0, 2, 5, 0xff]),
            WireError::BadBitfield { .. }
        ));
        assert!(matches!(
            err(l, &[0, 0, 0, 3, 5, 0xff, 0xe0]),
            WireError::BadBitfield { .. }
        ));
        let ok = decode_all(l, &[0, 0, 0, 3, 5, 0xff, 0xc0]).unwrap();
        let mut all = crate::base::Bitfield::new(10);
        for p in 0..10 {
            all.set(PieceIndex(p));
        }
        assert_eq!(ok, vec![Message::Control(PeerMessage::Bitfield(all))]);
    }

    #[test]
    fn request_and_block_limits() {
        let l = DecoderLimits::new(8);
        let req = [0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 1];
        assert_eq!(
            err(l, &req),
            WireError::RequestTooLarge {
                len_bytes: 0x4001,
                max_bytes: BLOCK_LEN_BYTES
            }
        );
        let mut dec = Decoder::new(l);
        dec.set_max_request_len(1 << 20);
        dec.extend(&req);
        assert!(matches!(
            dec.next_message(),
            Ok(Some(Message::Control(PeerMessage::Request(_))))
        ));
        // A piece header announcing a 16 KiB + 1 block is rejected at once.
        let hdr = [0, 0, 0x40, 10, 7];
        assert_eq!(
            err(l, &hdr),
            WireError::BlockTooLarge {
                len_bytes: 0x4001,
                max_bytes: BLOCK_LEN_BYTES
            }
        );
    }

    #[test]
    fn large_requests_raise_frame_limit() {
        let mut dec = Decoder::new(DecoderLimits::new(8));
        dec.set_max_request_len(4 << 20);
        assert_eq!(dec.limits().max_frame_len_bytes, (4 << 20) + 9);
    }

    #[test]
    fn bad_extended_handshake() {
        let e = err(DecoderLimits::new(8), &[0, 0, 0, 4, 20, 0, b'l', b'e']);
        assert!(matches!(e, WireError::BadExtendedHandshake(_)));
    }

    #[test]
    fn not_negotiated() {
        let ours = Handshake::new(crate::base::InfoHash([0; 20]), crate::base::PeerId([0; 20]));
        let mut theirs = ours;
        theirs.set_fast(false);
        let mut dec = Decoder::new(DecoderLimits::new(8));
        dec.set_negotiated(&ours, &theirs);
        dec.extend(&[0, 0, 0, 1, 14]);
        assert_eq!(dec.next_message(), Err(WireError::NotNegotiated { id: 14 }));
        let mut dec = Decoder::new(DecoderLimits::new(8));
        theirs.set_extended(false);
        theirs.set_fast(true);
        dec.set_negotiated(&ours, &theirs);
        dec.extend(&[0, 0, 0, 1, 14, 0, 0, 0, 2, 20, 1]);
        assert_eq!(
            dec.next_message(),
            Ok(Some(Message::Control(PeerMessage::HaveAll)))
        );
        assert_eq!(dec.next_message(), Err(WireError::NotNegotiated { id: 20 }));
    }

    #[test]
    fn partial_frames_wait() {
        let mut dec = Decoder::new(DecoderLimits::new(8));
        for b in [0u8, 0, 0, 5, 4, 0, 0, 0] {
            dec.extend(&[b]);
            assert_eq!(dec.next_message(), Ok(None));
        }
        dec.extend(&[3]);
        assert_eq!(
            dec.next_message(),
            Ok(Some(Message::Control(PeerMessage::Have(PieceIndex(3)))))
        );
        assert_eq!(dec.buffered_len_bytes(), 0);
    }
}
