//! Identifiers, the actions the core asks its driver to take, and protocol errors; the
//! control messages it exchanges are [`PeerMessage`], a base type the wire codec shares.

use crate::base::BitfieldError;
use thiserror::Error;

pub use crate::base::{Block, BlockOffset, PeerMessage, PieceIndex};

/// Driver-chosen handle of one peer connection; unique among live connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerKey(pub u64);

/// Why the core asks the driver to close a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer broke the protocol; see the error.
    ProtocolViolation(ProtocolError),
    /// The peer sent data failing the piece hash too often: never reconnect to it.
    Banned,
    /// Both sides are seeders: nothing to exchange.
    NotUseful,
}

/// Something the core asks its driver to do; drained with [`super::Torrent::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a control message to `peer`.
    Send {
        /// Destination connection.
        peer: PeerKey,
        /// Message to send.
        msg: PeerMessage,
    },
    /// Read `block` from storage and send it to `peer` as a BEP 3 `piece` message, then
    /// report it with [`super::Torrent::handle_block_sent`].
    SendBlock {
        /// Destination connection.
        peer: PeerKey,
        /// Block to read and send.
        block: Block,
    },
    /// Every block of `piece` has been received: hash it, then report the outcome with
    /// [`super::Torrent::handle_piece_verified`].
    VerifyPiece {
        /// Piece to hash.
        piece: PieceIndex,
    },
    /// A relay part of `piece` (see [`super::TorrentConfig::relay_part_bytes`]) arrived
    /// whole: hash it against the piece's part hashes, then report the outcome with
    /// [`super::Torrent::handle_part_verified`]. Only emitted for peers that negotiated
    /// relay parts.
    VerifyPart {
        /// The part as a block of its piece: offset a multiple of the part length, length the part
        /// length (shorter only at the end of the piece).
        part: Block,
    },
    /// Close the connection to `peer`; the core has already forgotten it, so the driver
    /// need not call [`super::Torrent::handle_peer_disconnected`] (doing so is harmless).
    Disconnect {
        /// Connection to close.
        peer: PeerKey,
        /// Why; [`DisconnectReason::Banned`] means never reconnect to this peer.
        reason: DisconnectReason,
    },
}

/// A peer broke the wire protocol (BEP 3, BEP 6); the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A `have`, `request`, `cancel`, `reject`, `allowed fast` or `suggest` named a piece
    /// index `>= piece_count`.
    #[error("piece {piece} out of range (torrent has {piece_count} pieces)")]
    PieceOutOfRange {
        /// Index received.
        piece: u32,
        /// Pieces in the torrent.
        piece_count: u32,
    },
    /// A block's offset/length lies outside its piece, is empty, or is longer than allowed.
    #[error("bad block {0:?}")]
    BadBlock(Block),
    /// The bitfield's length does not match the torrent's piece count.
    #[error("bitfield of {got} pieces, torrent has {expected}")]
    BitfieldLength {
        /// Pieces in the received bitfield.
        got: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
    /// The bitfield failed to decode.
    #[error("bad bitfield: {0}")]
    Bitfield(#[from] BitfieldError),
    /// A BEP 6 message arrived though the fast extension was not negotiated.
    #[error("fast extension message without BEP 6 negotiated")]
    FastExtensionNotNegotiated,
    /// The peer requested a piece we do not have (we never advertised it).
    #[error("request for piece {0:?} we do not have")]
    RequestForMissingPiece(PieceIndex),
    /// The peer kept requesting while choked, beyond what a choke/request race explains.
    #[error("requests while choked")]
    RequestWhileChoked,
    /// The peer queued more requests than we allow (`max_requests_per_peer`, twice over).
    #[error("too many outstanding requests")]
    TooManyRequests,
    /// A block arrived that we never requested from this peer (nor recently cancelled).
    #[error("unrequested block {0:?}")]
    UnrequestedBlock(Block),
    /// A `reject` arrived for a block we never requested from this peer.
    #[error("reject of unrequested block {0:?}")]
    UnrequestedReject(Block),
}
