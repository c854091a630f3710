//! Per-peer payload totals of a node: how many bytes (and whole pieces) it
//! downloaded from, and uploaded to, each remote peer over its run — the
//! "who got which pieces from whom" of a swarm.
//!
//! Accounting, per remote peer, keyed by its listen address (the dialled
//! address, or for an inbound peer the socket's IP with its BEP 10 `p`; the
//! socket's address when the peer sent no `p`), so reconnects of one peer add
//! up:
//! - `downloaded_bytes`: every `piece` payload byte received from it in a
//!   complete `piece` message, wanted or not: endgame duplicates, blocks that
//!   crossed our `cancel` and blocks of pieces that then failed their hash
//!   count too. Over all peers the sum is at least the bytes fetched, and
//!   exceeds it by exactly those duplicates.
//! - `pieces`: verified pieces every block of which was stored from this
//!   peer (a piece assembled from several peers is credited to none).
//! - `uploaded_bytes`: payload of blocks handed to the kernel for it (as the
//!   node's `uploaded_bytes`).
//!
//! Cost on the hot path: one counter add per block on the connection, and one
//! small map update per block received for the piece attribution. Each worker
//! adds its connections' counts to the node's [`TransferBook`] (one lock)
//! every tick, before a verified piece becomes visible (so the totals are
//! current when the node reports completion), when a connection closes, and
//! when the worker exits; the book sums the workers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::handler::NodeHandler;
use super::peer::PeerConn;
use super::TorrentShared;
use crate::base::PeerId;
use crate::core::PieceIndex;

/// Payload exchanged with one remote peer over a node's run, summed over its
/// connections and the node's workers (see the module docs for what counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTransfer {
    /// The peer's listen address (or its socket address when unknown).
    pub addr: SocketAddr,
    /// The peer id of its latest connection (BEP 3), once its handshake arrived.
    pub peer_id: Option<PeerId>,
    /// `piece` payload bytes received from it, duplicates included.
    pub downloaded_bytes: u64,
    /// Payload bytes sent to it.
    pub uploaded_bytes: u64,
    /// Verified pieces whose blocks all came from it.
    pub pieces: u32,
}

impl PeerTransfer {
    fn new(addr: SocketAddr) -> Self {
        PeerTransfer {
            addr,
            peer_id: None,
            downloaded_bytes: 0,
            uploaded_bytes: 0,
            pieces: 0,
        }
    }
}

/// The node's per-peer totals, by peer address (shared by the workers).
pub(crate) type TransferBook = Mutex<BTreeMap<SocketAddr, PeerTransfer>>;

/// A handle on a node's per-peer totals that outlives the node, so the totals
/// can be read after [`super::Node::shutdown`] (when every worker has added
/// its last counts).
#[derive(Clone)]
pub struct Transfers {
    pub(crate) shared: Arc<TorrentShared>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").finish_non_exhaustive()
    }
}

impl Transfers {
    /// Every peer we exchanged payload with so far, ordered by address.
    pub fn snapshot(&self) -> Vec<PeerTransfer> {
        let book = self
            .shared
            .transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        book.values().copied().collect()
    }
}

/// Where the blocks of a piece being downloaded came from: one peer, or
/// several (`None`). Per worker; claims keep a piece on one worker.
#[derive(Debug, Default)]
pub(crate) struct PieceSources {
    by_piece: HashMap<u32, Option<SocketAddr>>,
    /// Verified pieces credited to a peer, not yet in the book.
    credited: HashMap<SocketAddr, u32>,
}

impl PieceSources {
    /// A block of `piece` from `from` was stored.
    fn block_stored(&mut self, piece: PieceIndex, from: SocketAddr) {
        self.by_piece
            .entry(piece.0)
            .and_modify(|s| {
                if *s != Some(from) {
                    *s = None;
                }
            })
            .or_insert(Some(from));
    }

    /// `piece` was hash-checked: a valid one is credited to its only source.
    fn checked(&mut self, piece: PieceIndex, valid: bool) {
        if let Some(Some(from)) = self.by_piece.remove(&piece.0) {
            if valid {
                *self.credited.entry(from).or_insert(0) += 1;
            }
        }
    }
}

impl PeerConn {
    /// The address this connection's payload is booked under, fixed at its
    /// first use (a later-learned listen address does not split the totals).
    fn book_addr(&mut self) -> SocketAddr {
        *self
            .book_addr
            .get_or_insert(self.listen_addr.unwrap_or(self.remote))
    }

    /// Adds this connection's unbooked counts to `book` and clears them.
    fn book_into(&mut self, book: &mut BTreeMap<SocketAddr, PeerTransfer>) {
        if self.unbooked_down_bytes == 0 && self.unbooked_up_bytes == 0 {
            return;
        }
        let addr = self.book_addr();
        let t = book.entry(addr).or_insert_with(|| PeerTransfer::new(addr));
        t.peer_id = self.peer_id.or(t.peer_id);
        t.downloaded_bytes += self.unbooked_down_bytes;
        t.uploaded_bytes += self.unbooked_up_bytes;
        self.unbooked_down_bytes = 0;
        self.unbooked_up_bytes = 0;
    }
}

impl NodeHandler {
    /// A complete `piece` message of `len_bytes` payload arrived on `pc`;
    /// `stored`: its payload went to storage (the piece's attribution).
    pub(super) fn count_piece_received(
        sources: &mut PieceSources,
        pc: &mut PeerConn,
        piece: PieceIndex,
        len_bytes: u32,
        stored: bool,
    ) {
        pc.unbooked_down_bytes += u64::from(len_bytes);
        pc.activity.down_payload_bytes += u64::from(len_bytes);
        if stored {
            sources.block_stored(piece, pc.book_addr());
        }
    }

    /// `piece` was hash-checked on this worker.
    pub(super) fn count_piece_checked(&mut self, piece: PieceIndex, valid: bool) {
        self.piece_sources.checked(piece, valid);
    }

    /// Adds every connection's unbooked counts and the credited pieces to the
    /// node's book (one lock; nothing when there is nothing to add).
    pub(super) fn publish_transfers(&mut self) {
        let dirty = self
            .conns
            .values()
            .any(|pc| pc.unbooked_down_bytes > 0 || pc.unbooked_up_bytes > 0);
        if !dirty && self.piece_sources.credited.is_empty() {
            return;
        }
        let mut book = self
            .shared
            .transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for pc in self.conns.values_mut() {
            pc.book_into(&mut book);
        }
        for (addr, n) in self.piece_sources.credited.drain() {
            book.entry(addr)
                .or_insert_with(|| PeerTransfer::new(addr))
                .pieces += n;
        }
    }

    /// Adds a closed connection's unbooked counts to the node's book.
    pub(super) fn publish_closed(&self, pc: &mut PeerConn) {
        let mut book = self
            .shared
            .transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pc.book_into(&mut book);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_piece_from_one_peer_is_credited_to_it() {
        let mut s = PieceSources::default();
        s.block_stored(PieceIndex(3), a(1));
        s.block_stored(PieceIndex(3), a(1));
        s.block_stored(PieceIndex(4), a(1));
        s.block_stored(PieceIndex(4), a(2));
        s.block_stored(PieceIndex(5), a(2));
        s.checked(PieceIndex(3), true);
        s.checked(PieceIndex(4), true);
        s.checked(PieceIndex(5), false);
        assert_eq!(s.credited.get(&a(1)), Some(&1));
        assert_eq!(s.credited.get(&a(2)), None);
        assert!(s.by_piece.is_empty());
    }

    #[test]
    fn reconnects_add_up_under_the_listen_address() {
        let mut book = BTreeMap::new();
        for remote_port in [40001, 40002] {
            let mut pc = PeerConn::new(
                crate::core::PeerKey(1),
                None,
                a(remote_port),
                crate::core::Time::ZERO,
            );
            pc.listen_addr = Some(a(6881));
            pc.peer_id = Some(PeerId([7; 20]));
            pc.unbooked_down_bytes = 100;
            pc.unbooked_up_bytes = 5;
            pc.book_into(&mut book);
            assert_eq!(pc.unbooked_down_bytes, 0);
        }
        let t = book.get(&a(6881)).copied().unwrap();
        assert_eq!((t.downloaded_bytes, t.uploaded_bytes), (200, 10));
        assert_eq!(t.peer_id, Some(PeerId([7; 20])));
        assert_eq!(book.len(), 1);
    }
}
