//! Streaming decode: `piece` payloads handed out as slices of the caller's
//! input instead of being buffered, so a receiver can move block bytes from
//! its socket buffer straight to storage (one copy fewer than
//! [`Decoder::next_message`]; see `perf/recv-path.md`).
//!
//! Invariant: while streaming, the decoder's buffer holds at most the prefix
//! of one frame (the 13-byte header of a `piece` message, or a whole other
//! frame until it is complete); payload bytes are only buffered if they were
//! put there by [`Decoder::extend`] (e.g. the bytes after the handshake).

use std::borrow::Cow;

use bytes::Buf;

use super::decoder::{Decoder, PIECE_HEADER_LEN_BYTES};
use super::{Block, BlockOffset, Message, MessageId, PeerMessage, PieceIndex, WireError};

/// Bytes of a `piece` message before its payload: length prefix, id, index,
/// begin (BEP 3).
const PIECE_PREFIX_LEN_BYTES: usize = 4 + PIECE_HEADER_LEN_BYTES as usize;

/// One step of [`Decoder::decode_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete message other than `piece`.
    Message(Message),
    /// A `piece` message begins, carrying this block (its header: BEP 3
    /// `index`, `begin`, and the payload length as `len_bytes`), validated
    /// against the decoder's limits: the piece below the piece count,
    /// `len_bytes` at most the maximum request length. Exactly `len_bytes` of
    /// payload follow as [`Decoded::PiecePayload`] chunks, then
    /// [`Decoded::PieceEnd`].
    PieceStart(Block),
    /// The next bytes of the current `piece` payload, in order: a slice of the
    /// caller's input (owned only for bytes buffered by [`Decoder::extend`]).
    PiecePayload(Cow<'a, [u8]>),
    /// The current `piece` payload is complete.
    PieceEnd(Block),
}

impl Decoder {
    /// The next step of the stream `buffered bytes ++ *input`, consuming from
    /// `input`; `Ok(None)` once more bytes are needed (then `input` is empty).
    ///
    /// Unlike [`Decoder::next_message`], a `piece` message is not buffered:
    /// its header comes as [`Decoded::PieceStart`] as soon as its 13 bytes are
    /// in, its payload as slices of `input`. Other frames are buffered until
    /// complete and checked exactly as by `next_message`. Do not call
    /// `next_message` between a `PieceStart` and its `PieceEnd`.
    ///
    /// # Errors
    /// As [`Decoder::next_message`]; after an error, close the connection.
    pub fn decode_from<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<Decoded<'a>>, WireError> {
        if let Some((header, left)) = self.piece {
            return Ok(self.payload_step(header, left, input));
        }
        if !self.fill(input, 4) {
            return Ok(None);
        }
        let Some(len) = self.frame_len()? else {
            return Ok(None);
        };
        if len == 0 {
            self.buf.advance(4);
            return Ok(Some(Decoded::Message(Message::Control(
                PeerMessage::KeepAlive,
            ))));
        }
        if !self.fill(input, 5) {
            return Ok(None);
        }
        let Some(&id_byte) = self.buf.get(4) else {
            return Ok(None);
        };
        let id = self.check_header(id_byte, len)?;
        if id == MessageId::Piece {
            return self.piece_start(input, len);
        }
        if !self.fill(input, (len as usize).saturating_add(4)) {
            return Ok(None);
        }
        self.take_frame(id, len).map(|m| Some(Decoded::Message(m)))
    }

    /// Payload bytes of the current `piece` message still to come, `None`
    /// outside one (streaming only).
    pub fn payload_left_bytes(&self) -> Option<u32> {
        self.piece.map(|(_, left)| left)
    }

    /// Bytes buffered by [`Decoder::extend`] (or left by the handshake
    /// decoder) that belong to the current `piece` payload; a receiver that
    /// places payload bytes itself must take these first.
    pub fn buffered_payload_bytes(&self) -> usize {
        match self.piece {
            Some((_, left)) => self.buf.len().min(left as usize),
            None => 0,
        }
    }

    /// Records that `n` bytes of the current `piece` payload were received
    /// by the caller outside the decoder (e.g. straight into storage).
    /// Returns false, changing nothing, if that is more than
    /// [`Decoder::payload_left_bytes`] or bytes of the payload are still
    /// buffered ([`Decoder::buffered_payload_bytes`]).
    pub fn skip_payload(&mut self, n: u32) -> bool {
        match self.piece {
            Some((header, left)) if n <= left && self.buffered_payload_bytes() == 0 => {
                self.piece = Some((header, left - n));
                true
            }
            _ => false,
        }
    }

    /// Inside a `piece` payload: the next chunk, or its end.
    fn payload_step<'a>(
        &mut self,
        header: Block,
        left: u32,
        input: &mut &'a [u8],
    ) -> Option<Decoded<'a>> {
        if left == 0 {
            self.piece = None;
            return Some(Decoded::PieceEnd(header));
        }
        let chunk = if self.buf.is_empty() {
            if input.is_empty() {
                return None;
            }
            let n = (left as usize).min(input.len());
            let (chunk, rest) = input.split_at(n);
            *input = rest;
            Cow::Borrowed(chunk)
        } else {
            // Payload that arrived through `extend`: rare, copied once.
            let n = (left as usize).min(self.buf.len());
            Cow::Owned(self.buf.split_to(n).to_vec())
        };
        // `chunk.len() <= left`, a u32.
        self.piece = Some((header, left - chunk.len() as u32));
        Some(Decoded::PiecePayload(chunk))
    }

    /// A `piece` frame of length `len` (validated): waits for its 13-byte
    /// prefix, checks the index and enters the payload.
    fn piece_start<'a>(
        &mut self,
        input: &mut &'a [u8],
        len: u32,
    ) -> Result<Option<Decoded<'a>>, WireError> {
        if !self.fill(input, PIECE_PREFIX_LEN_BYTES) {
            return Ok(None);
        }
        let Some(prefix) = self.buf.first_chunk::<PIECE_PREFIX_LEN_BYTES>() else {
            return Ok(None);
        };
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(prefix.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_be_bytes(b)
        };
        let (index, begin) = (word(5), word(9));
        if index >= self.limits.piece_count {
            return Err(WireError::PieceOutOfRange {
                index,
                piece_count: self.limits.piece_count,
            });
        }
        self.buf.advance(PIECE_PREFIX_LEN_BYTES);
        let header = Block {
            piece: PieceIndex(index),
            offset: BlockOffset(begin),
            // `check_header` made sure `len >= 9`.
            len_bytes: len.saturating_sub(PIECE_HEADER_LEN_BYTES),
        };
        self.piece = Some((header, header.len_bytes));
        Ok(Some(Decoded::PieceStart(header)))
    }

    /// Moves bytes from `input` to the buffer until it holds `want` bytes;
    /// whether it does.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let have = self.buf.len();
        if have < want {
            let n = (want - have).min(input.len());
            let (head, rest) = input.split_at(n);
            self.buf.extend_from_slice(head);
            *input = rest;
        }
        self.buf.len() >= want
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::peer::DecoderLimits;

    fn piece_frame(index: u32, begin: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Message::Piece {
            index: PieceIndex(index),
            begin: BlockOffset(begin),
            data: bytes::Bytes::copy_from_slice(data),
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    #[test]
    fn piece_payload_is_borrowed_from_input() {
        let mut dec = Decoder::new(DecoderLimits::new(4));
        let frame = piece_frame(3, 16, &[7u8; 100]);
        let mut input = &frame[..];
        let h = Block {
            piece: PieceIndex(3),
            offset: BlockOffset(16),
            len_bytes: 100,
        };
        assert_eq!(
            dec.decode_from(&mut input),
            Ok(Some(Decoded::PieceStart(h)))
        );
        match dec.decode_from(&mut input) {
            Ok(Some(Decoded::PiecePayload(Cow::Borrowed(c)))) => assert_eq!(c, &[7u8; 100][..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(dec.decode_from(&mut input), Ok(Some(Decoded::PieceEnd(h))));
        assert_eq!(dec.decode_from(&mut input), Ok(None));
        assert_eq!(dec.buffered_len_bytes(), 0);
    }

    #[test]
    fn skip_payload_bounds() {
        let mut dec = Decoder::new(DecoderLimits::new(4));
        assert!(!dec.skip_payload(0));
        let frame = piece_frame(0, 0, &[1u8; 10]);
        let mut input = &frame[..13];
        assert!(matches!(
            dec.decode_from(&mut input),
            Ok(Some(Decoded::PieceStart(_)))
        ));
        assert_eq!(dec.payload_left_bytes(), Some(10));
        assert!(!dec.skip_payload(11));
        assert!(dec.skip_payload(4));
        let mut rest = &frame[17..];
        match dec.decode_from(&mut rest) {
            Ok(Some(Decoded::PiecePayload(c))) => assert_eq!(c.len(), 6),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dec.decode_from(&mut rest),
            Ok(Some(Decoded::PieceEnd(_)))
        ));
        assert_eq!(dec.payload_left_bytes(), None);
    }

    #[test]
    fn payload_buffered_by_extend_comes_first() {
        let mut dec = Decoder::new(DecoderLimits::new(4));
        let frame = piece_frame(1, 0, &[1, 2, 3, 4, 5]);
        dec.extend(&frame[..15]);
        let mut input = &frame[15..];
        assert!(matches!(
            dec.decode_from(&mut input),
            Ok(Some(Decoded::PieceStart(_)))
        ));
        assert_eq!(dec.buffered_payload_bytes(), 2);
        assert!(!dec.skip_payload(1));
        assert_eq!(
            dec.decode_from(&mut input),
            Ok(Some(Decoded::PiecePayload(Cow::Owned(vec![1, 2]))))
        );
        assert_eq!(
            dec.decode_from(&mut input),
            Ok(Some(Decoded::PiecePayload(Cow::Borrowed(&[3, 4, 5][..]))))
        );
    }

    #[test]
    fn piece_index_checked_at_header() {
        let mut dec = Decoder::new(DecoderLimits::new(4));
        let frame = piece_frame(4, 0, &[0u8; 8]);
        let mut input = &frame[..13];
        assert_eq!(
            dec.decode_from(&mut input),
            Err(WireError::PieceOutOfRange {
                index: 4,
                piece_count: 4
            })
        );
    }
}
