//! Per-connection state of the node: handshake phase, decoder, outgoing
//! messages, and accounting of blocks handed to the runtime.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::base::PeerId;
use crate::core::pex::PexSchedule;
use crate::core::slots::ConnActivity;
use crate::core::{Block, PeerCaps, PeerKey, PeerMessage, Time};
use crate::wire::peer::{Decoder, Handshake, HandshakeDecoder};

/// Where a connection is in its start-up.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for the peer's 68-byte handshake.
    Handshake(HandshakeDecoder),
    /// Handshake done; messages flow through the decoder. The peer is known to
    /// the core once `registered`.
    Open { decoder: Decoder, theirs: Handshake },
}

/// Something to send to a peer, in the order the core emitted it.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// A control message.
    Msg(PeerMessage),
    /// A block to read from storage and send as a `piece` message.
    Block(Block),
}

/// Where the payload of the `piece` message being received goes.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Straight into storage, chunk by chunk, while the core still wants the
    /// block from this peer (at most one connection streams a given block).
    Store,
    /// Collected, and written whole at the end if still wanted: a duplicate
    /// of a block another connection is streaming into storage.
    Buffer(Vec<u8>),
    /// Dropped: the block is not (or no longer) wanted.
    Discard,
}

/// The `piece` message being received on a connection.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The block its header names (index, begin, payload length).
    pub(crate) block: Block,
    /// Payload bytes received so far.
    pub(crate) received_bytes: u32,
    pub(crate) sink: Sink,
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
    /// Bytes ever queued on the runtime for this connection.
    pub(crate) queued_total_bytes: u64,
    /// Blocks queued on the runtime, with the `queued_total_bytes` mark at
    /// which their last byte was queued.
    pub(crate) blocks_in_flight: VecDeque<(u64, Block)>,
    /// Payload bytes of `blocks_in_flight` (queued on the runtime, not yet all
    /// handed to the kernel).
    pub(crate) unsent_payload_bytes: u64,
    /// The address-book entry ([`crate::core::address_book`]) this connection was
    /// dialled from (the entry stays in the book while the connection is open).
    pub(crate) dial: Option<usize>,
    /// The address at the other end of the socket.
    pub(crate) remote: SocketAddr,
    /// Where the peer accepts connections: the dialled address, or the
    /// socket's IP with the BEP 10 `p` of an inbound peer.
    pub(crate) listen_addr: Option<SocketAddr>,
    /// The peer's id, once its handshake arrived.
    pub(crate) peer_id: Option<PeerId>,
    /// The peer's extended message id for `ut_pex` (BEP 11), if it speaks it.
    pub(crate) pex_id: Option<u8>,
    /// The peer's extended message id for `ut_metadata` (BEP 9), if it speaks it.
    pub(crate) metadata_id: Option<u8>,
    /// `ut_metadata` pieces sent to this peer (bounded: see `handler::metadata`).
    pub(crate) metadata_pieces_sent: u32,
    /// The peer is a p2pe node (it advertised the p2pe extension).
    pub(crate) is_p2pe: bool,
    /// Its PEX schedule and what it was told ([`crate::core::pex`]), once it
    /// advertised `ut_pex` and PEX is on.
    pub(crate) pex: Option<PexSchedule>,
    /// The `piece` message whose payload is arriving, if any.
    pub(crate) incoming: Option<Incoming>,
    /// Requests sent on this connection (the first one is logged).
    pub(crate) requests_sent: u64,
    /// `piece` payload bytes received, and payload bytes sent, not yet added
    /// to the node's per-peer book ([`super::transfers`]).
    pub(crate) unbooked_down_bytes: u64,
    pub(crate) unbooked_up_bytes: u64,
    /// The address this connection is booked under (fixed at first use).
    pub(crate) book_addr: Option<SocketAddr>,
    /// Timestamps and totals for the slot policy ([`crate::core::slots`]).
    pub(crate) activity: ConnActivity,
    /// Counted in [`super::TorrentShared::inbound_per_ip`] (an admitted inbound peer).
    pub(crate) ip_counted: bool,
    /// An extra lane to a p2pe peer whose primary connection is elsewhere
    /// (see `handler::lanes`); counted in its `PeerEntry::extra`.
    pub(crate) lane: bool,
    /// We dialled this connection as a lane (it never takes a primary's place).
    pub(crate) lane_dialled: bool,
    /// A second inbound connection from a peer whose primary had not finished
    /// its extended handshakes: a lane if its own extended handshake says so,
    /// else closed (never handed to the core meanwhile).
    pub(crate) lane_pending: bool,
}

impl PeerConn {
    pub(crate) fn new(key: PeerKey, dial: Option<usize>, remote: SocketAddr, now: Time) -> Self {
        PeerConn {
            key,
            phase: Phase::Handshake(HandshakeDecoder::new()),
            registered: false,
            dropped_by_core: false,
            caps: PeerCaps::default(),
            queued_total_bytes: 0,
            blocks_in_flight: VecDeque::new(),
            unsent_payload_bytes: 0,
            dial,
            remote,
            listen_addr: None,
            peer_id: None,
            pex_id: None,
            metadata_id: None,
            metadata_pieces_sent: 0,
            is_p2pe: false,
            pex: None,
            incoming: None,
            requests_sent: 0,
            unbooked_down_bytes: 0,
            unbooked_up_bytes: 0,
            book_addr: None,
            activity: ConnActivity::new(now),
            ip_counted: false,
            lane: false,
            lane_dialled: false,
            lane_pending: false,
        }
    }

    /// Whether this connection was dialled by us.
    pub(crate) fn outbound(&self) -> bool {
        self.dial.is_some() || self.lane_dialled
    }
}

/// Where a dialled address came from (the address book's sources).
pub(crate) use crate::core::address_book::Source;
