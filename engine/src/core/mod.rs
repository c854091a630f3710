//! Sans-IO swarm logic: peer state, piece picker, choker, torrent state machine.
//!
//! Everything here is driven from outside: the driver (io_uring node, simulator, unit
//! test) passes events and the current [`Time`] into a [`Torrent`] via `handle_*`, drains
//! [`Action`]s with [`Torrent::poll_action`], and calls [`Torrent::handle_timeout`] at
//! [`Torrent::poll_timeout`]. No sockets, clock, threads or OS randomness: every random
//! choice comes from a ChaCha8 generator seeded by the caller and peers are kept in
//! ordered maps, so a run replays exactly from its inputs.
//!
//! # Driver obligations
//! - After the handshake, [`Torrent::handle_peer_connected`] with the negotiated
//!   [`PeerCaps`] (BEP 6 fast extension; largest request length, 16 KiB or up to a piece).
//! - Every control message to [`Torrent::handle_message`]; every `piece` message to
//!   [`Torrent::handle_block_received`] (store the payload only if
//!   [`Torrent::wants_block`] said so, so a late duplicate never overwrites a piece
//!   awaiting its hash check).
//! - [`Action::SendBlock`]: read and send the block, then report it with
//!   [`Torrent::handle_block_sent`] when it has left (the core keeps at most
//!   `upload_in_flight_bytes` unreported and chooses what to send next late; without
//!   these reports uploads stop).
//! - [`Action::VerifyPiece`]: hash, then [`Torrent::handle_piece_verified`].
//! - [`Action::Disconnect`]: close; the core has already forgotten the peer.
//! - On `Err` from a `handle_*` call the core has already queued the disconnect.
//!
//! # Invariants (property-tested)
//! - Availability counts equal the sum of connected peers' bitfields.
//! - Outside endgame a block is requested from at most one peer; in endgame from at
//!   most `endgame_max_requesters` besides peers whose requests stalled (`torrent::stall`:
//!   silent past a deadline sized on the measured waits, at least 20 ms), at most twice
//!   that in all, and the others are cancelled when it arrives.
//! - Never more unchoked peers than `unchoke_slots + 1` (optimistic).
//!
//! Modules: [`time`] (instants), [`address_book`] (peer addresses to dial: sources,
//! bounds, back-off, aging), [`dialer`] (which of them to dial now: the connection
//! bound, one connection per peer id; shared by the node and the simulator), [`claims`]
//! (piece claims shared by the torrents of one multi-worker node), [`availability`]
//! (availability counts they share for rarest-first), `message`
//! (identifiers, actions, errors; the piece sets ([`Bitfield`]) and control messages
//! ([`PeerMessage`]) are base types the wire codec shares), [`slots`] (connection timeouts,
//! per-IP caps and slot reclaiming), [`pex`] (when each peer is due its BEP 11
//! message and what it was told), [`rate_limit`] (payload rate limits shared by a
//! node's torrents), `config` (tunables), `peer`
//! (per-connection state), `picker` (random first, rarest-first, affinity, endgame),
//! `choker` (tit-for-tat, optimistic unchoke, anti-snubbing), [`rack`] (rack-aware
//! requests: one importer per piece and rack), `torrent` (the state
//! machine and the distinct-first seeder policy), [`web_seed`] (when and what a node
//! fetches from BEP 19 web seeds, their back-off), [`metadata`] (fetching a magnet
//! link's info dictionary over BEP 9 `ut_metadata`, banning peers whose bytes do not
//! hash to the info-hash).
#![deny(clippy::disallowed_methods)]

pub mod address_book;
pub mod availability;
mod choker;
pub mod claims;
mod config;
pub mod dialer;
pub mod inbound_handshakes;
mod message;
pub mod metadata;
mod peer;
pub mod pex;
mod picker;
pub mod rack;
pub mod rate_limit;
mod request_queue;
pub mod slots;
/// The sans-IO instant: [`crate::base::Time`], one type for every layer, also found here.
pub mod time {
    pub use crate::base::Time;
}
mod torrent;
pub mod upload_history;
pub mod web_seed;

pub use crate::base::{Bitfield, BitfieldError};
pub use availability::Availability;
pub use choker::{BatchChoker, ChokeCandidate, ChokeDecision};
pub use claims::AtomicBitfield;
pub use config::{
    ChokerConfig, ChokerMode, PeerCaps, SeederPolicy, TorrentConfig, BLOCK_LEN_BYTES,
    BUSY_REJECT_PENDING, DATACENTER_UPLOAD_TRANSFERS, MAX_REQUESTS_PER_PEER,
};
pub use message::{
    Action, Block, BlockOffset, DisconnectReason, PeerKey, PeerMessage, PieceIndex, ProtocolError,
};
pub use rack::Locality;
pub use time::Time;
pub use torrent::{Torrent, TorrentStats};
