//! Parsing of a complete frame body whose id and length were validated.

use bytes::{Buf, Bytes};

use super::{
    Block, BlockOffset, ExtendedHandshake, ExtendedMessage, Message, MessageId, PieceIndex,
    WireError,
};

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
    Ok(match id {
        MessageId::Choke => Message::Choke,
        MessageId::Unchoke => Message::Unchoke,
        MessageId::Interested => Message::Interested,
        MessageId::NotInterested => Message::NotInterested,
        MessageId::HaveAll => Message::HaveAll,
        MessageId::HaveNone => Message::HaveNone,
        MessageId::Have => Message::Have {
            index: b.index(rules)?,
        },
        MessageId::Suggest => Message::Suggest {
            index: b.index(rules)?,
        },
        MessageId::AllowedFast => Message::AllowedFast {
            index: b.index(rules)?,
        },
        MessageId::Request => Message::Request(b.block(rules)?),
        MessageId::Cancel => Message::Cancel(b.block(rules)?),
        MessageId::Reject => Message::Reject(b.block(rules)?),
        MessageId::Port => Message::Port { port: b.u16()? },
        MessageId::Bitfield => {
            check_spare_bits(&b.bytes, rules.piece_count)?;
            Message::Bitfield(b.bytes)
        }
        MessageId::Piece => {
            let index = b.index(rules)?;
            let begin = BlockOffset(b.u32()?);
            Message::Piece {
                index,
                begin,
                data: b.bytes,
            }
        }
        MessageId::Extended => {
            let ext_id = b.u8()?;
            Message::Extended(if ext_id == 0 {
                ExtendedMessage::Handshake(ExtendedHandshake::from_bencode(&b.bytes)?)
            } else {
                ExtendedMessage::Other {
                    id: ext_id,
                    payload: b.bytes,
                }
            })
        }
    })
}

/// BEP 3: spare bits at the end of the bitfield must be zero.
fn check_spare_bits(bits: &[u8], piece_count: u32) -> Result<(), WireError> {
    let used_in_last = piece_count % 8;
    match bits.last() {
        Some(&last) if used_in_last != 0 && last & (0xff >> used_in_last) != 0 => {
            Err(WireError::BadBitfield {
                reason: "spare bits set",
            })
        }
        _ => Ok(()),
    }
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
        assert!(check_spare_bits(&[0xff], 8).is_ok());
        assert!(check_spare_bits(&[0xfe], 7).is_ok());
        assert!(check_spare_bits(&[0xff], 7).is_err());
        assert!(check_spare_bits(&[], 0).is_ok());
    }
}
