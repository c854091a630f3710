//! Parsing of a complete frame body whose id and length were validated.

use bytes::{Buf, Bytes};

use super::{
    Bitfield, Block, BlockOffset, ExtendedHandshake, ExtendedMessage, Message, MessageId,
    PeerMessage, PieceIndex, WireError,
};
use crate::base::BitfieldError;

/// What a body is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyRules {
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Largest request/cancel/reject length in bytes.
    pub max_request_len_bytes: u32,
}

/// A frame body after the id byte, with the id and frame length kept for
/// errors.
struct Body {
    bytes: Bytes,
    id: u8,
    frame_len_bytes: u32,
}

impl Body {
    /// A short body is a `BadLength`. The header check makes this
    /// unreachable, but the body is parsed defensively rather than trusted.
    fn short(&self) -> WireError {
        WireError::BadLength {
            id: self.id,
            len_bytes: self.frame_len_bytes,
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.bytes.try_get_u8().map_err(|_| self.short())
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.bytes.try_get_u16().map_err(|_| self.short())
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.bytes.try_get_u32().map_err(|_| self.short())
    }

    fn index(&mut self, rules: BodyRules) -> Result<PieceIndex, WireError> {
        let index = self.u32()?;
        if index < rules.piece_count {
            Ok(PieceIndex(index))
        } else {
            Err(WireError::PieceOutOfRange {
                index,
                piece_count: rules.piece_count,
            })
        }
    }

    fn block(&mut self, rules: BodyRules) -> Result<Block, WireError> {
        let piece = self.index(rules)?;
        let offset = BlockOffset(self.u32()?);
        let len_bytes = self.u32()?;
        if len_bytes > rules.max_request_len_bytes {
            return Err(WireError::RequestTooLarge {
                len_bytes,
                max_bytes: rules.max_request_len_bytes,
            });
        }
        Ok(Block {
            piece,
            offset,
            len_bytes,
        })
    }
}

/// Parses the body `bytes` (after the id byte) of a frame of
/// `frame_len_bytes` with id `id`. Payloads are slices of `bytes` (no copy).
pub(super) fn parse_body(
    id: MessageId,
    frame_len_bytes: u32,
    bytes: Bytes,
    rules: BodyRules,
) -> Result<Message, WireError> {
    let mut b = Body {
        bytes,
        id: id as u8,
        frame_len_bytes,
    };
    let control = |m: PeerMessage| -> Result<Message, WireError> { Ok(Message::Control(m)) };
    match id {
        MessageId::Choke => control(PeerMessage::Choke),
        MessageId::Unchoke => control(PeerMessage::Unchoke),
        MessageId::Interested => control(PeerMessage::Interested),
        MessageId::NotInterested => control(PeerMessage::NotInterested),
        MessageId::HaveAll => control(PeerMessage::HaveAll),
        MessageId::HaveNone => control(PeerMessage::HaveNone),
        MessageId::Have => control(PeerMessage::Have(b.index(rules)?)),
        MessageId::Suggest => control(PeerMessage::Suggest(b.index(rules)?)),
        MessageId::AllowedFast => control(PeerMessage::AllowedFast(b.index(rules)?)),
        MessageId::Request => control(PeerMessage::Request(b.block(rules)?)),
        MessageId::Cancel => control(PeerMessage::Cancel(b.block(rules)?)),
        MessageId::Reject => control(PeerMessage::Reject(b.block(rules)?)),
        MessageId::Bitfield => control(PeerMessage::Bitfield(bitfield(&b.bytes, rules)?)),
        MessageId::Port => Ok(Message::Port { port: b.u16()? }),
        MessageId::Piece => {
            let index = b.index(rules)?;
            let begin = BlockOffset(b.u32()?);
            Ok(Message::Piece {
                index,
                begin,
                data: b.bytes,
            })
        }
        MessageId::Extended => {
            let ext_id = b.u8()?;
            Ok(Message::Extended(if ext_id == 0 {
                ExtendedMessage::Handshake(ExtendedHandshake::from_bencode(&b.bytes)?)
            } else {
                ExtendedMessage::Other {
                    id: ext_id,
                    payload: b.bytes,
                }
            }))
        }
    }
}

/// The BEP 3 bitfield of `bits`: exactly `ceil(piece_count / 8)` bytes (the
/// header check saw to that), piece 0 in the high bit, spare bits zero.
fn bitfield(bits: &[u8], rules: BodyRules) -> Result<Bitfield, WireError> {
    Bitfield::from_bytes(bits, rules.piece_count).map_err(|e| WireError::BadBitfield {
        reason: match e {
            BitfieldError::Length { .. } => "wrong length for the piece count",
            BitfieldError::SpareBits => "spare bits set",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: BodyRules = BodyRules {
        piece_count: 8,
        max_request_len_bytes: 16384,
    };

    #[test]
    fn short_body_is_bad_length_not_panic() {
        let e = parse_body(MessageId::Request, 13, Bytes::from_static(&[0, 0]), RULES);
        assert_eq!(
            e,
            Err(WireError::BadLength {
                id: 6,
                len_bytes: 13
            })
        );
        let e = parse_body(MessageId::Extended, 2, Bytes::new(), RULES);
        assert_eq!(
            e,
            Err(WireError::BadLength {
                id: 20,
                len_bytes: 2
            })
        );
    }

    #[test]
    fn spare_bits() {
        let rules = |piece_count| BodyRules {
            piece_count,
            max_request_len_bytes: 16384,
        };
        assert_eq!(bitfield(&[0xff], rules(8)).unwrap().count_ones(), 8);
        assert_eq!(bitfield(&[0xfe], rules(7)).unwrap().count_ones(), 7);
        assert_eq!(
            bitfield(&[0xff], rules(7)),
            Err(WireError::BadBitfield {
                reason: "spare bits set"
            })
        );
        assert!(bitfield(&[], rules(0)).unwrap().is_empty());
        assert!(bitfield(&[0, 0], rules(8)).is_err());
    }
}
