//! Relay parts: cut-through relay of verified parts between p2pe peers (issue 13 item 1).
//!
//! With [`TorrentConfig::relay_part_len`] set and a peer that negotiated the same length
//! ([`crate::core::PeerCaps::relay_part_bytes`]):
//! - a request from that peer is served as parts of that length, in order
//!   ([`Torrent::hand_parts`]); the parts go out on one connection, so they arrive in
//!   order too;
//! - each part that arrives whole from such a peer is verified on its own
//!   ([`Action::VerifyPart`], answered by [`Torrent::handle_part_verified`]);
//! - once a part of a piece is verified, the piece is announced (BEP 3 `have`) to such
//!   peers that lack it, before the piece is whole, and their requests for it are
//!   accepted: each verified part is handed to the driver as soon as it is verified, and
//!   a request waits (`waiting`) for the parts that are not;
//! - when the peer we fetch such a piece from stalls ([`super::stall`]), the requests
//!   waiting for it are rejected (BEP 6) and new ones refused until a part of it arrives
//!   again ([`Torrent::relay_upstream_stalled`]), so a frozen source cannot hold a chain
//!   of relays behind it;
//! - a relay peer's part that matches no request (it trailed our cancel, or its sender's
//!   reject overtook it) is discarded, not a protocol violation.
//!
//! Why: a relay can forward only what it verified. With whole pieces a hop costs one
//! piece's time on a shared uplink (4 MiB at 1/16 of 40 Gbit/s: 13 ms, 1.3 % of the
//! seeds' 1 s run, per hop, ~10 hops deep); with parts it costs one part's. Nothing
//! unverified is ever handed out: a part is sent only when it was verified here or the
//! whole piece was (`perf/sim.md`, "Relay parts").
//!
//! Bounds: `verified`, `told` and `blocked` hold pieces in progress that have a verified
//! part (cleared when the piece is had), `told` at most one entry per relay peer each;
//! `waiting` holds at most one entry per relay peer and piece announced early (a second
//! request of a peer for a piece it already waits for is rejected).

use std::collections::{HashMap, HashSet};

use super::Torrent;
use crate::core::{Action, Block, BlockOffset, PeerKey, PeerMessage, PieceIndex, Time};

/// Per-torrent relay-part state (see the module docs).
#[derive(Debug, Default)]
pub(super) struct RelayState {
    /// Pieces not yet had: bit `i` set when part `i` was verified.
    verified: HashMap<PieceIndex, u64>,
    /// Pieces not yet had that we announced early, and to whom.
    told: HashMap<PieceIndex, Vec<PeerKey>>,
    /// Accepted requests of which the first bytes went out: what is left, waiting for
    /// parts to be verified; oldest first.
    waiting: Vec<(PeerKey, Block)>,
    /// Pieces announced early whose source stalled ([`Torrent::relay_upstream_stalled`]):
    /// requests for them are refused until one of their parts is verified again.
    blocked: HashSet<PieceIndex>,
}

impl RelayState {
    /// Whether part `index` of `piece` was verified here.
    fn part_verified(&self, piece: PieceIndex, index: u64) -> bool {
        index < 64
            && self
                .verified
                .get(&piece)
                .is_some_and(|m| m >> index & 1 == 1)
    }

    /// Whether we announced `piece` early (a part of it is verified, the piece is not).
    pub(super) fn announced(&self, piece: PieceIndex) -> bool {
        self.told.contains_key(&piece)
    }

    /// Whether `piece`'s source stalled since we announced it: requests are rejected.
    pub(super) fn blocked(&self, piece: PieceIndex) -> bool {
        self.blocked.contains(&piece)
    }

    /// Whether a request of `key` for `piece` is partly sent and waiting for parts: a
    /// second one is refused, which bounds `waiting` to one entry per peer and piece
    /// announced early.
    pub(super) fn is_waiting(&self, key: PeerKey, piece: PieceIndex) -> bool {
        self.waiting
            .iter()
            .any(|(k, w)| *k == key && w.piece == piece)
    }

    /// `key` left: its waiting requests go, and it is forgotten as told.
    pub(super) fn remove_peer(&mut self, key: PeerKey) {
        self.waiting.retain(|(k, _)| *k != key);
        for v in self.told.values_mut() {
            v.retain(|k| *k != key);
        }
    }

    /// `key` cancelled (BEP 3) `b`, the rest of one of its requests as it sees it: the
    /// waiting remainder of that request (the one overlapping `b`; a peer's requests for
    /// one piece never overlap) goes. Whether one was there.
    pub(super) fn cancel(&mut self, key: PeerKey, b: Block) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|(k, w)| {
            !(*k == key
                && w.piece == b.piece
                && u64::from(w.offset.0) < b.end_bytes()
                && u64::from(b.offset.0) < w.end_bytes())
        });
        self.waiting.len() != before
    }

    /// Panics unless: no piece we have is still tracked, and every waiting request and
    /// told peer is connected (`connected`).
    #[cfg(test)]
    pub(super) fn check_invariants(
        &self,
        have: &crate::core::Bitfield,
        connected: impl Fn(PeerKey) -> bool,
    ) {
        for p in self
            .verified
            .keys()
            .chain(self.told.keys())
            .chain(&self.blocked)
        {
            assert!(!have.get(*p), "relay state kept for had piece {p:?}");
        }
        assert!(
            self.waiting.iter().all(|(k, _)| connected(*k)),
            "waiting for a gone peer"
        );
        assert!(
            self.told.values().flatten().all(|k| connected(*k)),
            "told a gone peer"
        );
    }
}

impl Torrent {
    /// The relay part length toward `key`, if both sides use the same one.
    pub(super) fn relay_part_for(&self, key: PeerKey) -> Option<u32> {
        let r = self.config.relay_part_len()?;
        self.peers
            .get(&key)
            .is_some_and(|p| p.caps.relay_part_bytes == r)
            .then_some(r)
    }

    /// Whether `key` may request `piece` though we do not have it whole: it is a relay
    /// peer and we announced the piece early.
    pub(super) fn relay_may_serve(&self, key: PeerKey, piece: PieceIndex) -> bool {
        self.relay_part_for(key).is_some() && self.relay.announced(piece)
    }

    /// Hands `b` (an accepted request of `key`, a relay peer with parts of `r` bytes) to
    /// the driver part by part while the parts are verified; returns the rest, if any.
    pub(super) fn hand_parts(
        &mut self,
        now: Time,
        key: PeerKey,
        b: Block,
        r: u32,
    ) -> Option<Block> {
        let whole = self.have.get(b.piece);
        let r = u64::from(r);
        let end = b.end_bytes();
        let mut off = u64::from(b.offset.0);
        while off < end {
            let index = off / r;
            if !whole && !self.relay.part_verified(b.piece, index) {
                break;
            }
            let part_end = end.min((index + 1) * r);
            let part = Block {
                piece: b.piece,
                offset: BlockOffset(off as u32),
                len_bytes: (part_end - off) as u32,
            };
            self.uploads.hand_part(now, key, u64::from(part.len_bytes));
            self.actions.push_back(Action::SendBlock {
                peer: key,
                block: part,
            });
            off = part_end;
        }
        (off < end).then(|| Block {
            piece: b.piece,
            offset: BlockOffset(off as u32),
            len_bytes: (end - off) as u32,
        })
    }

    /// Queues what [`Torrent::hand_parts`] could not hand yet; rejects it (BEP 6, naming
    /// the whole piece) if the piece's source stalled.
    pub(super) fn relay_wait(&mut self, key: PeerKey, rest: Block) {
        if !self.relay.blocked.contains(&rest.piece) {
            self.relay.waiting.push((key, rest));
            return;
        }
        if self.peers.get(&key).is_some_and(|p| p.caps.fast_extension) {
            let whole = Block {
                piece: rest.piece,
                offset: BlockOffset(0),
                len_bytes: self.config.piece_len(rest.piece),
            };
            self.send(key, PeerMessage::Reject(whole));
        }
    }

    /// The driver verified (or failed) a part that arrived whole from a relay peer.
    pub(super) fn on_part_verified(&mut self, now: Time, part: Block, valid: bool) {
        let Some(r) = self.config.relay_part_len() else {
            return;
        };
        if !valid || self.check_piece(part.piece).is_err() || self.have.get(part.piece) {
            // A part that fails is not relayed; the piece's own check finds the sender.
            return;
        }
        let r = u64::from(r);
        let off = u64::from(part.offset.0);
        let piece_len = u64::from(self.config.piece_len(part.piece));
        if off % r != 0 || part.end_bytes() != piece_len.min(off + r) {
            return; // not one whole part
        }
        let index = off / r;
        let mask = self.relay.verified.entry(part.piece).or_insert(0);
        *mask |= 1 << index;
        self.relay.blocked.remove(&part.piece);
        if !self.relay.told.contains_key(&part.piece) {
            self.announce_early(now, part.piece);
        }
        self.relay_release(now, part.piece);
    }

    /// Announces `piece` to the relay peers that lack it.
    fn announce_early(&mut self, now: Time, piece: PieceIndex) {
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.have.get(piece))
            .map(|(k, _)| *k)
            .filter(|k| self.relay_part_for(*k).is_some())
            .collect();
        for &key in &keys {
            if let Some(p) = self.peers.get_mut(&key) {
                p.last_sent_at = now;
            }
            self.send(key, PeerMessage::Have(piece));
        }
        self.relay.told.insert(piece, keys);
    }

    /// Hands the parts of `piece` that waiting requests can now have.
    pub(super) fn relay_release(&mut self, now: Time, piece: PieceIndex) {
        if !self.relay.waiting.iter().any(|(_, b)| b.piece == piece) {
            return;
        }
        let waiting = std::mem::take(&mut self.relay.waiting);
        for (key, b) in waiting {
            let rest = match (b.piece == piece, self.relay_part_for(key)) {
                (true, Some(r)) => self.hand_parts(now, key, b, r),
                (true, None) => None,
                (false, _) => Some(b),
            };
            if let Some(rest) = rest {
                self.relay.waiting.push((key, rest));
            }
        }
    }

    /// The peer we were fetching `piece` from stalled ([`super::stall`]). If we announced
    /// the piece early, the requests waiting for its parts are rejected (BEP 6; the
    /// reject names the whole piece, which holds what each requester still awaits) and
    /// further ones refused until a part of it arrives again: requesters fetch it from a
    /// holder that is moving rather than wait on a chain behind a frozen source.
    pub(super) fn relay_upstream_stalled(&mut self, piece: PieceIndex) {
        if !self.relay.told.contains_key(&piece) || self.have.get(piece) {
            return;
        }
        self.relay.blocked.insert(piece);
        let whole = Block {
            piece,
            offset: BlockOffset(0),
            len_bytes: self.config.piece_len(piece),
        };
        let mut rejected = Vec::new();
        self.relay.waiting.retain(|&(k, b)| {
            if b.piece == piece {
                rejected.push(k);
            }
            b.piece != piece
        });
        for key in rejected {
            if self.peers.get(&key).is_some_and(|p| p.caps.fast_extension) {
                self.send(key, PeerMessage::Reject(whole));
            }
        }
    }

    /// `piece` is had: its parts' state goes; returns the peers told early (they need
    /// no second `have`).
    pub(super) fn relay_piece_had(&mut self, now: Time, piece: PieceIndex) -> Vec<PeerKey> {
        self.relay_release(now, piece);
        self.relay.verified.remove(&piece);
        self.relay.blocked.remove(&piece);
        self.relay.told.remove(&piece).unwrap_or_default()
    }
}
