//! [`PeerMessage`]: the control messages of the peer wire protocol, one type for the
//! codec (`wire::peer::Message::Control`) and the core (`core::Torrent::handle_message`,
//! `core::Action::Send`), so no layer maps them variant by variant.

use super::{Bitfield, Block, PieceIndex};

/// Control messages of the peer wire protocol (BEP 3, BEP 6): every message but the
/// `piece` message, BEP 5 `port` and BEP 10 `extended`.
///
/// The decoder (`wire::peer::Decoder`) yields them checked against the torrent: piece
/// indices below the piece count, a bitfield of exactly the torrent's pieces with its
/// spare bits clear, request lengths within the negotiated maximum.
///
/// The `piece` message is not here: its arrival is `core::Torrent::handle_block_received`
/// and its sending is `core::Action::SendBlock`. Handshake and extension messages
/// (BEP 10) are the driver's business; their outcome reaches the core as
/// `core::PeerCaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// BEP 3 keep-alive (zero-length message).
    KeepAlive,
    /// BEP 3 `choke`: the sender will not serve requests.
    Choke,
    /// BEP 3 `unchoke`: the sender will serve requests.
    Unchoke,
    /// BEP 3 `interested`: the sender wants pieces the receiver has.
    Interested,
    /// BEP 3 `not interested`.
    NotInterested,
    /// BEP 3 `have`: the sender has verified this piece.
    Have(PieceIndex),
    /// BEP 3 `bitfield`: the first message after the handshake; a later one (aria2 sends
    /// them) replaces the peer's whole piece set, as libtorrent takes it.
    Bitfield(Bitfield),
    /// BEP 6 `have all`: replaces the bitfield of a seeder.
    HaveAll,
    /// BEP 6 `have none`: replaces an empty bitfield.
    HaveNone,
    /// BEP 3 `request` of a block: `len_bytes` at most 16 KiB, or the p2pe negotiated
    /// maximum.
    Request(Block),
    /// BEP 3 `cancel` of an earlier request.
    Cancel(Block),
    /// BEP 6 `reject request`: the request will not be served.
    Reject(Block),
    /// BEP 6 `allowed fast`: this piece may be requested while choked.
    AllowedFast(PieceIndex),
    /// BEP 6 `suggest piece`: a hint to download this piece (from the sender).
    Suggest(PieceIndex),
}
