//! Peer wire messages (BEP 3, BEP 6, BEP 10) and their encoding.

use bytes::Bytes;

use super::{Block, BlockOffset, ExtendedHandshake, PeerMessage, PieceIndex, WireError};

/// Message id byte (BEP 3 §peer messages, BEP 6, BEP 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageId {
    /// BEP 3 `choke`.
    Choke = 0,
    /// BEP 3 `unchoke`.
    Unchoke = 1,
    /// BEP 3 `interested`.
    Interested = 2,
    /// BEP 3 `not interested`.
    NotInterested = 3,
    /// BEP 3 `have`.
    Have = 4,
    /// BEP 3 `bitfield`.
    Bitfield = 5,
    /// BEP 3 `request`.
    Request = 6,
    /// BEP 3 `piece`.
    Piece = 7,
    /// BEP 3 `cancel`.
    Cancel = 8,
    /// BEP 5 `port` (DHT port).
    Port = 9,
    /// BEP 6 `suggest piece`.
    Suggest = 13,
    /// BEP 6 `have all`.
    HaveAll = 14,
    /// BEP 6 `have none`.
    HaveNone = 15,
    /// BEP 6 `reject request`.
    Reject = 16,
    /// BEP 6 `allowed fast`.
    AllowedFast = 17,
    /// BEP 10 `extended`.
    Extended = 20,
}

impl MessageId {
    /// Whether this id is only valid once BEP 6 (fast extension) was
    /// negotiated in both handshakes.
    pub fn requires_fast(self) -> bool {
        matches!(
            self,
            Self::Suggest | Self::HaveAll | Self::HaveNone | Self::Reject | Self::AllowedFast
        )
    }

    /// The id for a byte, or `None` if no supported BEP defines it.
    pub fn from_byte(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::Choke,
            1 => Self::Unchoke,
            2 => Self::Interested,
            3 => Self::NotInterested,
            4 => Self::Have,
            5 => Self::Bitfield,
            6 => Self::Request,
            7 => Self::Piece,
            8 => Self::Cancel,
            9 => Self::Port,
            13 => Self::Suggest,
            14 => Self::HaveAll,
            15 => Self::HaveNone,
            16 => Self::Reject,
            17 => Self::AllowedFast,
            20 => Self::Extended,
            _ => return None,
        })
    }
}

/// Payload of a BEP 10 `extended` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendedMessage {
    /// Extended message id 0: the BEP 10 handshake dictionary, decoded.
    Handshake(ExtendedHandshake),
    /// Any other extended id (as assigned in our handshake's `m`), raw payload.
    Other {
        /// Extended message id (1..=255).
        id: u8,
        /// Payload after the extended id byte.
        payload: Bytes,
    },
}

/// One peer wire message (BEP 3, BEP 5, BEP 6, BEP 10).
///
/// The control messages are the base type [`PeerMessage`], which the core takes and
/// emits as they are; the rest are the wire's alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A control message (BEP 3, BEP 6; keep-alive included), checked by the decoder
    /// against the torrent (see [`PeerMessage`]).
    Control(PeerMessage),
    /// BEP 3 `piece`: block `data` at `begin` in piece `index`.
    Piece {
        /// The piece.
        index: PieceIndex,
        /// Offset of the block in the piece, in bytes.
        begin: BlockOffset,
        /// The block; a slice of the decoder's receive buffer (no copy).
        data: Bytes,
    },
    /// BEP 5 `port`: the sender's DHT port.
    Port {
        /// UDP port.
        port: u16,
    },
    /// BEP 10 `extended`.
    Extended(ExtendedMessage),
}

impl From<PeerMessage> for Message {
    fn from(msg: PeerMessage) -> Self {
        Self::Control(msg)
    }
}

/// The 13-byte header of a `piece` message carrying `block` (its
/// `len_bytes` of data follow): length prefix, id 7, `index`, `begin`
/// (BEP 3). The send path writes it followed by the block straight from
/// storage, in one gathered send.
///
/// # Errors
///
/// [`WireError::PayloadTooLong`] if `len_bytes + 9` overflows `u32`.
pub fn piece_header(block: &Block) -> Result<[u8; 13], WireError> {
    let len_bytes = block.len_bytes;
    let frame_len = len_bytes.checked_add(9).ok_or(WireError::PayloadTooLong {
        len_bytes: len_bytes as usize,
    })?;
    let mut h = [0u8; 13];
    h[0..4].copy_from_slice(&frame_len.to_be_bytes());
    h[4] = MessageId::Piece as u8;
    h[5..9].copy_from_slice(&block.piece.0.to_be_bytes());
    h[9..13].copy_from_slice(&block.offset.0.to_be_bytes());
    Ok(h)
}

impl Message {
    /// Appends this message, 4-byte length prefix included, to `out`.
    ///
    /// # Errors
    ///
    /// - [`WireError::PayloadTooLong`] if a payload does not fit a `u32` frame.
    /// - [`WireError::Encode`] if bencoding an extended handshake fails.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Self::Control(msg) => encode_control(msg, out),
            Self::Piece { index, begin, data } => {
                let len = u32::try_from(data.len()).map_err(|_| WireError::PayloadTooLong {
                    len_bytes: data.len(),
                })?;
                let block = Block {
                    piece: *index,
                    offset: *begin,
                    len_bytes: len,
                };
                out.extend_from_slice(&piece_header(&block)?);
                out.extend_from_slice(data);
            }
            Self::Port { port } => {
                out.extend_from_slice(&3u32.to_be_bytes());
                out.push(MessageId::Port as u8);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Self::Extended(ExtendedMessage::Handshake(hs)) => {
                let dict = hs.to_bencode()?;
                extended(out, 0, &dict)?;
            }
            Self::Extended(ExtendedMessage::Other { id, payload }) => {
                extended(out, *id, payload)?;
            }
        }
        Ok(())
    }

    /// The id byte this message is sent with; `None` for keep-alive.
    pub fn id(&self) -> Option<MessageId> {
        Some(match self {
            Self::Control(msg) => return control_id(msg),
            Self::Piece { .. } => MessageId::Piece,
            Self::Port { .. } => MessageId::Port,
            Self::Extended(_) => MessageId::Extended,
        })
    }

    /// Whether this message is only valid once BEP 6 (fast extension) was
    /// negotiated in both handshakes.
    pub fn requires_fast(&self) -> bool {
        self.id().is_some_and(MessageId::requires_fast)
    }
}

/// Appends control message `msg`, 4-byte length prefix included, to `out` (BEP 3,
/// BEP 6 layouts). Infallible: every control message fits a frame (a bitfield of
/// `u32::MAX` pieces is 512 MiB).
pub fn encode_control(msg: &PeerMessage, out: &mut Vec<u8>) {
    match msg {
        PeerMessage::KeepAlive => out.extend_from_slice(&0u32.to_be_bytes()),
        PeerMessage::Choke => simple(out, MessageId::Choke),
        PeerMessage::Unchoke => simple(out, MessageId::Unchoke),
        PeerMessage::Interested => simple(out, MessageId::Interested),
        PeerMessage::NotInterested => simple(out, MessageId::NotInterested),
        PeerMessage::HaveAll => simple(out, MessageId::HaveAll),
        PeerMessage::HaveNone => simple(out, MessageId::HaveNone),
        PeerMessage::Have(index) => with_index(out, MessageId::Have, *index),
        PeerMessage::Suggest(index) => with_index(out, MessageId::Suggest, *index),
        PeerMessage::AllowedFast(index) => with_index(out, MessageId::AllowedFast, *index),
        PeerMessage::Request(r) => block(out, MessageId::Request, r),
        PeerMessage::Cancel(r) => block(out, MessageId::Cancel, r),
        PeerMessage::Reject(r) => block(out, MessageId::Reject, r),
        PeerMessage::Bitfield(bits) => {
            let bytes = bits.to_bytes();
            // At most ceil(u32::MAX / 8) + 1: fits a u32.
            out.extend_from_slice(&(bytes.len() as u32 + 1).to_be_bytes());
            out.push(MessageId::Bitfield as u8);
            out.extend_from_slice(&bytes);
        }
    }
}

/// The id byte control message `msg` is sent with; `None` for keep-alive.
fn control_id(msg: &PeerMessage) -> Option<MessageId> {
    Some(match msg {
        PeerMessage::KeepAlive => return None,
        PeerMessage::Choke => MessageId::Choke,
        PeerMessage::Unchoke => MessageId::Unchoke,
        PeerMessage::Interested => MessageId::Interested,
        PeerMessage::NotInterested => MessageId::NotInterested,
        PeerMessage::Have(_) => MessageId::Have,
        PeerMessage::Bitfield(_) => MessageId::Bitfield,
        PeerMessage::Request(_) => MessageId::Request,
        PeerMessage::Cancel(_) => MessageId::Cancel,
        PeerMessage::Suggest(_) => MessageId::Suggest,
        PeerMessage::HaveAll => MessageId::HaveAll,
        PeerMessage::HaveNone => MessageId::HaveNone,
        PeerMessage::Reject(_) => MessageId::Reject,
        PeerMessage::AllowedFast(_) => MessageId::AllowedFast,
    })
}

/// Writes the length prefix for a frame of `header_len + payload_len` bytes.
fn prefix(out: &mut Vec<u8>, payload_len: usize, header_len: u32) -> Result<(), WireError> {
    let len = u32::try_from(payload_len)
        .ok()
        .and_then(|l| l.checked_add(header_len))
        .ok_or(WireError::PayloadTooLong {
            len_bytes: payload_len,
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn simple(out: &mut Vec<u8>, id: MessageId) {
    out.extend_from_slice(&1u32.to_be_bytes());
    out.push(id as u8);
}

fn with_index(out: &mut Vec<u8>, id: MessageId, index: PieceIndex) {
    out.extend_from_slice(&5u32.to_be_bytes());
    out.push(id as u8);
    out.extend_from_slice(&index.0.to_be_bytes());
}

fn block(out: &mut Vec<u8>, id: MessageId, b: &Block) {
    out.extend_from_slice(&13u32.to_be_bytes());
    out.push(id as u8);
    out.extend_from_slice(&b.piece.0.to_be_bytes());
    out.extend_from_slice(&b.offset.0.to_be_bytes());
    out.extend_from_slice(&b.len_bytes.to_be_bytes());
}

fn extended(out: &mut Vec<u8>, ext_id: u8, payload: &[u8]) -> Result<(), WireError> {
    prefix(out, payload.len(), 2)?;
    out.push(MessageId::Extended as u8);
    out.push(ext_id);
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_header_layout() {
        let h = piece_header(&Block {
            piece: PieceIndex(1),
            offset: BlockOffset(0x4000),
            len_bytes: 0x4000,
        })
        .unwrap();
        assert_eq!(h, [0, 0, 0x40, 9, 7, 0, 0, 0, 1, 0, 0, 0x40, 0]);
    }

    #[test]
    fn piece_header_overflow_is_err() {
        let e = piece_header(&Block {
            piece: PieceIndex(0),
            offset: BlockOffset(0),
            len_bytes: u32::MAX,
        })
        .unwrap_err();
        assert!(matches!(e, WireError::PayloadTooLong { .. }));
    }

    #[test]
    fn encodes_bep3_layouts() {
        let mut out = Vec::new();
        encode_control(&PeerMessage::KeepAlive, &mut out);
        Message::Control(PeerMessage::Interested)
            .encode(&mut out)
            .unwrap();
        encode_control(&PeerMessage::Have(PieceIndex(258)), &mut out);
        Message::Port { port: 6881 }.encode(&mut out).unwrap();
        let expected = [
            0, 0, 0, 0, //
            0, 0, 0, 1, 2, //
            0, 0, 0, 5, 4, 0, 0, 1, 2, //
            0, 0, 0, 3, 9, 0x1a, 0xe1,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn encodes_a_bitfield_high_bit_first() {
        let mut bits = crate::base::Bitfield::new(10);
        bits.set(PieceIndex(0));
        bits.set(PieceIndex(9));
        let msg = Message::from(PeerMessage::Bitfield(bits));
        assert_eq!(msg.id(), Some(MessageId::Bitfield));
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 3, 5, 0x80, 0x40]);
    }

    #[test]
    fn ids_round_trip() {
        for b in 0..=255u8 {
            if let Some(id) = MessageId::from_byte(b) {
                assert_eq!(id as u8, b);
            }
        }
    }
}
