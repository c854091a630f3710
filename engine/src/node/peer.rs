//! Per-connection state of the node: handshake phase, decoder, outgoing FIFO
//! held back by rate limits, and accounting of blocks handed to the runtime.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::core::{Block, PeerCaps, PeerKey, PeerMessage};
use crate::wire::peer::{Decoder, Handshake, HandshakeDecoder};

/// Where a connection is in its start-up.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for the peer's 68-byte handshake.
    Handshake(HandshakeDecoder),
    /// Handshake done; messages flow through the decoder. The peer is known to
    /// the core once `registered`.
    Open {
        decoder: Decoder,
        theirs: Handshake,
        since: Instant,
    },
    /// Transition marker while the decoder is being built; never observed.
    Moving,
}

/// Something to send to a peer, in the order the core emitted it.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// A control message.
    Msg(PeerMessage),
    /// A block to read from storage and send as a `piece` message.
    Block(Block),
}

/// One connection.
#[derive(Debug)]
pub(crate) struct PeerConn {
    pub(crate) key: PeerKey,
    pub(crate) phase: Phase,
    /// Handed to the core with [`crate::core::Torrent::handle_peer_connected`].
    pub(crate) registered: bool,
    /// The core has forgotten this peer (it asked for the disconnect).
    pub(crate) dropped_by_core: bool,
    pub(crate) caps: PeerCaps,
    /// Items held back by a rate limit; everything later queues behind them.
    pub(crate) held: VecDeque<Outgoing>,
    /// Bytes ever queued on the runtime for this connection.
    pub(crate) queued_total_bytes: u64,
    /// Blocks queued on the runtime, with the `queued_total_bytes` mark at
    /// which their last byte was queued.
    pub(crate) blocks_in_flight: VecDeque<(u64, Block)>,
    /// Index of the dial (configured peer) this connection came from.
    pub(crate) dial: Option<usize>,
}

impl PeerConn {
    pub(crate) fn new(key: PeerKey, dial: Option<usize>) -> Self {
        PeerConn {
            key,
            phase: Phase::Handshake(HandshakeDecoder::new()),
            registered: false,
            dropped_by_core: false,
            caps: PeerCaps::default(),
            held: VecDeque::new(),
            queued_total_bytes: 0,
            blocks_in_flight: VecDeque::new(),
            dial,
        }
    }
}

/// A configured peer we keep connecting to.
#[derive(Debug)]
pub(crate) struct Dial {
    pub(crate) addr: SocketAddr,
    /// The live connection, if any.
    pub(crate) connected: bool,
    /// When to try again (`None`: not scheduled).
    pub(crate) retry_at: Option<Instant>,
    /// Consecutive failures, for the back-off.
    pub(crate) failures: u32,
    /// Never again (the core found the peer useless or banned it).
    pub(crate) retired: bool,
}
