//! Conversion between wire [`Message`]s and core [`PeerMessage`]s. Both carry the
//! same [`Block`] and [`PieceIndex`](crate::base::PieceIndex) payloads; what
//! differs is the bitfield (bytes on the wire, a checked [`Bitfield`] in the
//! core) and the messages only one side has (`piece`, `port`, `extended`).

use bytes::Bytes;

use crate::core::{Bitfield, BitfieldError, Block, PeerMessage};
use crate::wire::peer::Message;

/// What a received wire message means to the node.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A control message for the core.
    Core(PeerMessage),
    /// A `piece` message: block `block` with its bytes.
    Piece(Block, Bytes),
    /// Nothing for the core (BEP 5 `port`, BEP 10 messages other than the
    /// handshake are handled by the caller).
    Ignore,
}

/// Converts a received message (already validated by the decoder against the
/// piece count and the request length).
///
/// # Errors
/// [`BitfieldError`] for a bitfield the core's decoding rejects.
pub(crate) fn inbound(msg: Message, piece_count: u32) -> Result<Inbound, BitfieldError> {
    let core = |m| Ok(Inbound::Core(m));
    match msg {
        Message::KeepAlive => core(PeerMessage::KeepAlive),
        Message::Choke => core(PeerMessage::Choke),
        Message::Unchoke => core(PeerMessage::Unchoke),
        Message::Interested => core(PeerMessage::Interested),
        Message::NotInterested => core(PeerMessage::NotInterested),
        Message::Have { index } => core(PeerMessage::Have(index)),
        Message::Bitfield(bytes) => core(PeerMessage::Bitfield(Bitfield::from_bytes(
            &bytes,
            piece_count,
        )?)),
        Message::Request(b) => core(PeerMessage::Request(b)),
        Message::Cancel(b) => core(PeerMessage::Cancel(b)),
        Message::Reject(b) => core(PeerMessage::Reject(b)),
        Message::Suggest { index } => core(PeerMessage::Suggest(index)),
        Message::AllowedFast { index } => core(PeerMessage::AllowedFast(index)),
        Message::HaveAll => core(PeerMessage::HaveAll),
        Message::HaveNone => core(PeerMessage::HaveNone),
        Message::Piece { index, begin, data } => {
            // The decoder bounds a block by the negotiated request length (a u32).
            let len_bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
            let block = Block {
                piece: index,
                offset: begin,
                len_bytes,
            };
            Ok(Inbound::Piece(block, data))
        }
        Message::Port { .. } | Message::Extended(_) => Ok(Inbound::Ignore),
    }
}

/// The wire form of a core message.
pub(crate) fn outbound(msg: &PeerMessage) -> Message {
    match *msg {
        PeerMessage::KeepAlive => Message::KeepAlive,
        PeerMessage::Choke => Message::Choke,
        PeerMessage::Unchoke => Message::Unchoke,
        PeerMessage::Interested => Message::Interested,
        PeerMessage::NotInterested => Message::NotInterested,
        PeerMessage::Have(index) => Message::Have { index },
        PeerMessage::Bitfield(ref b) => Message::Bitfield(Bytes::from(b.to_bytes())),
        PeerMessage::HaveAll => Message::HaveAll,
        PeerMessage::HaveNone => Message::HaveNone,
        PeerMessage::Request(b) => Message::Request(b),
        PeerMessage::Cancel(b) => Message::Cancel(b),
        PeerMessage::Reject(b) => Message::Reject(b),
        PeerMessage::AllowedFast(index) => Message::AllowedFast { index },
        PeerMessage::Suggest(index) => Message::Suggest { index },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{BlockOffset, PieceIndex};

    #[test]
    fn control_messages_round_trip() {
        let b = Block {
            piece: PieceIndex(3),
            offset: BlockOffset(16384),
            len_bytes: 16384,
        };
        let mut bf = Bitfield::new(10);
        bf.set(PieceIndex(9));
        let msgs = [
            PeerMessage::KeepAlive,
            PeerMessage::Choke,
            PeerMessage::Unchoke,
            PeerMessage::Interested,
            PeerMessage::NotInterested,
            PeerMessage::Have(PieceIndex(7)),
            PeerMessage::Bitfield(bf),
            PeerMessage::HaveAll,
            PeerMessage::HaveNone,
            PeerMessage::Request(b),
            PeerMessage::Cancel(b),
            PeerMessage::Reject(b),
            PeerMessage::AllowedFast(PieceIndex(1)),
            PeerMessage::Suggest(PieceIndex(2)),
        ];
        for m in msgs {
            match inbound(outbound(&m), 10) {
                Ok(Inbound::Core(back)) => assert_eq!(back, m),
                other => panic!("{m:?} -> {other:?}"),
            }
        }
    }

    #[test]
    fn bad_bitfield_is_an_error() {
        let msg = Message::Bitfield(Bytes::from_static(&[0xff, 0xff]));
        assert!(inbound(msg, 10).is_err());
    }
}
