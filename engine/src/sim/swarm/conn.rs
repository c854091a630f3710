//! Connections between simulated nodes: per-direction send queues and in-flight items.
//!
//! A connection `c` between nodes `a` and `b` has two directions: `2c` (a → b) and `2c + 1`
//! (b → a). Both nodes know the connection as `PeerKey(c)`. The transfer id of the block a
//! direction is sending in [`crate::sim::net`] is the direction id, so each direction sends one
//! block at a time, in FIFO order.
//!
//! Ordering per direction: blocks leave in the order the core emitted them; a control message
//! cannot overtake the block being sent (it waits for its last byte, as behind a `piece`
//! message on the socket), nor blocks already in the socket buffer (`send_buffer_bytes`,
//! see [`crate::sim::SimConfig::send_buffer_bytes`]), but does overtake the rest.
//!
//! Socket buffer model: a block is reported sent to its core
//! ([`crate::core::Torrent::handle_block_sent`]) once it fits in the direction's send buffer,
//! i.e. once at most `send_buffer_bytes` of queued payload, itself included, has not left
//! yet; with 0 (the default) at its last byte. The p2pe node reports a block when the kernel
//! accepted it, so its upload window bounds only what waits in user space. Everything sent arrives `latency` later,
//! in send order. Because every connection has the same latency, arrival order is global send
//! order, so arrivals need no heap: one FIFO of `(arrival time, direction)` for the whole swarm.

use std::collections::VecDeque;

use crate::core::address_book::EntryId;
use crate::core::{Block, PeerMessage, Time};

/// Something travelling over one direction of a connection.
#[derive(Debug)]
pub(super) enum Item {
    /// A control message (no bandwidth).
    Ctl(PeerMessage),
    /// A `piece` message; `corrupt` when the sender is a liar.
    Block { block: Block, corrupt: bool },
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub(super) struct Dir {
    /// Blocks waiting for the link: (block, corrupt, rank on the sender's uplink).
    pub blocks: VecDeque<(Block, bool, u64)>,
    /// Control messages waiting for blocks ahead of them: `(blocks that must have left
    /// first, message)`, in send order.
    pub ctl_waiting: VecDeque<(u64, PeerMessage)>,
    /// The block being sent (its transfer is active in the net), and since when.
    pub sending: Option<(Block, bool)>,
    pub sending_since: Time,
    /// Blocks started / fully sent on this direction since it opened.
    pub started: u64,
    pub done: u64,
    /// Blocks reported sent to the core.
    pub reported: u64,
    /// Payload bytes queued since the direction opened, and of those, bytes fully sent.
    pub queued_bytes: u64,
    pub sent_bytes: u64,
    /// Blocks not yet reported to the core, with their end mark in `queued_bytes`.
    pub unreported: VecDeque<(u64, Block)>,
    /// Sent items, in send order; their arrival times are in the swarm's wire queue.
    pub in_flight: VecDeque<Item>,
}

impl Dir {
    /// Drops everything (the connection closed).
    pub(super) fn clear(&mut self) {
        self.blocks.clear();
        self.ctl_waiting.clear();
        self.sending = None;
        self.unreported.clear();
        self.in_flight.clear();
    }
}

/// A connection between nodes `a` and `b`.
#[derive(Debug)]
pub(super) struct Conn {
    pub a: u32,
    pub b: u32,
    pub open: bool,
    /// The node that dialled it and its address-book entry (tracker discovery).
    pub dialler: Option<(u32, EntryId)>,
    /// When it opened (the slot policy's age of a connection).
    pub opened_at: Time,
}

impl Conn {
    /// The direction `node` sends on; `None` if `node` is not an end of this connection.
    pub(super) fn out_dir(&self, id: u32, node: u32) -> Option<u32> {
        if node == self.a {
            Some(2 * id)
        } else if node == self.b {
            Some(2 * id + 1)
        } else {
            None
        }
    }
}
