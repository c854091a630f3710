//! Smart ban (issue 11 item 4; libtorrent's `smart_ban` plugin): blame for a piece
//! that fails its hash check goes only to the peer whose blocks were wrong, never to an
//! honest peer that happened to send part of the piece.
//!
//! - A failed copy from a single peer strikes that peer (it sent every byte).
//! - A failed copy from several peers strikes nobody yet: the piece goes on parole
//!   (its next download comes from one peer, see the picker), and the failed copy's
//!   per-block SHA-1 digests and senders are kept.
//! - When a copy of that piece passes, its per-block digests are compared with the
//!   failed copy's: the sender of every block that differs is struck, once per piece.
//! - A peer reaching `max_hash_failures_per_peer` strikes is banned.
//!
//! Over TCP a peer cannot forge another peer's blocks, so a liar can never get an
//! honest peer struck: an honest block is identical in the failed and the good copy.
//!
//! The driver supplies digests with [`Torrent::handle_block_digests`] before reporting
//! a failed check, and before reporting a passed check of a piece for which
//! [`Torrent::wants_block_digests`] is true. Without digests a multi-peer failure still
//! strikes nobody and still goes on parole.
//!
//! Bounds: at most [`MAX_FAILED_COPIES`] failed copies are kept (the oldest is dropped
//! beyond it) and at most one set of pending digests per piece awaiting its report.

use std::collections::BTreeMap;

use super::Torrent;
use crate::core::picker::CheckedCopy;
use crate::core::{DisconnectReason, PeerKey, PieceIndex, Time};

/// Most failed copies kept for comparison: each is ~28 bytes per 16 KiB block, so 64
/// copies of 16 MiB pieces are ~1.8 MiB.
pub(crate) const MAX_FAILED_COPIES: usize = 64;

/// A copy of a piece that failed its hash check, from several peers.
#[derive(Debug)]
struct FailedCopy {
    chunk_sources: Vec<Option<PeerKey>>,
    digests: Vec<[u8; 20]>,
    /// Insertion order, for eviction.
    seq: u64,
}

/// Smart-ban state of one torrent.
#[derive(Debug, Default)]
pub(super) struct SmartBan {
    failed: BTreeMap<PieceIndex, FailedCopy>,
    /// Digests reported for a piece whose check result is about to be reported.
    pending: BTreeMap<PieceIndex, Vec<[u8; 20]>>,
    seq: u64,
}

impl Torrent {
    /// Per-block SHA-1 digests (16 KiB blocks, the last one maybe short) of `piece` as
    /// stored, for the check result reported next ([`Torrent::handle_piece_verified`]).
    /// Ignored for a piece out of range; replaces earlier digests of the piece.
    pub fn handle_block_digests(&mut self, piece: PieceIndex, digests: Vec<[u8; 20]>) {
        if self.check_piece(piece).is_ok() && self.smart_ban.pending.len() < MAX_FAILED_COPIES {
            self.smart_ban.pending.insert(piece, digests);
        }
    }

    /// Whether the driver should report block digests
    /// ([`Torrent::handle_block_digests`]) before a passed check of `piece`: an
    /// earlier copy of it from several peers failed, and the good copy shows who lied.
    pub fn wants_block_digests(&self, piece: PieceIndex) -> bool {
        self.smart_ban.failed.contains_key(&piece)
    }

    /// A check result that was not awaited: drop digests reported for it.
    pub(super) fn smart_ban_forget(&mut self, piece: PieceIndex) {
        self.smart_ban.pending.remove(&piece);
    }

    /// A hash check failed: strike the sole sender, or keep the copy for comparison.
    pub(super) fn smart_ban_failed(&mut self, now: Time, piece: PieceIndex, copy: CheckedCopy) {
        let digests = self.smart_ban.pending.remove(&piece);
        if copy.contributors.len() <= 1 {
            for key in copy.contributors {
                self.strike(now, key);
            }
            return;
        }
        self.picker.put_on_parole(piece);
        let Some(digests) = digests else {
            return;
        };
        let sb = &mut self.smart_ban;
        if sb.failed.len() >= MAX_FAILED_COPIES && !sb.failed.contains_key(&piece) {
            if let Some(oldest) = sb.failed.iter().min_by_key(|(_, c)| c.seq).map(|(p, _)| *p) {
                sb.failed.remove(&oldest);
            }
        }
        sb.seq += 1;
        sb.failed.insert(
            piece,
            FailedCopy {
                chunk_sources: copy.chunk_sources,
                digests,
                seq: sb.seq,
            },
        );
    }

    /// A hash check passed: strike the senders of blocks that differed in the failed
    /// copy of this piece, if one is kept.
    pub(super) fn smart_ban_passed(&mut self, now: Time, piece: PieceIndex) {
        let good = self.smart_ban.pending.remove(&piece);
        let Some(failed) = self.smart_ban.failed.remove(&piece) else {
            return;
        };
        let Some(good) = good else {
            return;
        };
        let mut liars: Vec<PeerKey> = Vec::new();
        for ((bad, ok), src) in failed.digests.iter().zip(&good).zip(&failed.chunk_sources) {
            if let Some(key) = src {
                if bad != ok && !liars.contains(key) {
                    liars.push(*key);
                }
            }
        }
        for key in liars {
            self.strike(now, key);
        }
    }

    /// One strike against `key` for corrupt data; banned at
    /// `max_hash_failures_per_peer`.
    fn strike(&mut self, now: Time, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.hash_failures += 1;
        if peer.hash_failures >= self.config.max_hash_failures_per_peer {
            self.stats.peers_banned += 1;
            self.drop_peer(now, key, DisconnectReason::Banned);
        }
    }
}
