//! Sans-IO swarm logic: peer state, piece picker, choker, torrent state machine.
//!
//! Everything here is driven from outside: the driver (io_uring node, simulator, unit
//! test) passes events and the current [`Time`] into a [`Torrent`] via `handle_*`, drains
//! [`Action`]s with [`Torrent::poll_action`], and calls [`Torrent::handle_timeout`] at
//! [`Torrent::poll_timeout`]. No sockets, clock, threads or OS randomness: every random
//! choice comes from a ChaCha8 generator seeded by the caller, so a run replays exactly.
//!
//! Modules: [`time`] (instants), [`bitfield`] (piece sets, BEP 3 wire form), `message`
//! (identifiers, control messages, actions, errors), `config` (tunables), `peer`
//! (per-connection state), `picker` (rarest-first, endgame), `choker` (tit-for-tat and
//! optimistic unchoke), `torrent` (the state machine and the seeder policy).

pub mod bitfield;
mod choker;
mod config;
mod message;
mod peer;
mod picker;
pub mod time;
mod torrent;

pub use bitfield::{Bitfield, BitfieldError};
pub use config::{ChokerConfig, PeerCaps, SeederPolicy, TorrentConfig, BLOCK_LEN_BYTES};
pub use message::{
    Action, Block, DisconnectReason, PeerKey, PeerMessage, PieceIndex, ProtocolError,
};
pub use time::Time;
pub use torrent::{Torrent, TorrentStats};
