//! The upload window as a budget per peer as well as per node (issue 11 item 3): one
//! peer that never reads its socket must not hold the whole window while everyone else
//! gets nothing.
//!
//! Bytes handed to the driver as [`crate::core::Action::SendBlock`] and not yet
//! reported sent are *outstanding* for their peer. Rules:
//! - a peer may have at most `per_peer_bytes` outstanding (one block of any size is
//!   always allowed when it has none, so a whole-piece request is never starved);
//! - a peer whose outstanding bytes have not moved (no block reported sent) for
//!   [`UPLOAD_STALL`] is *stalled*: its bytes stop counting against the node window,
//!   so the others get its share, and it is handed nothing more until a block of it is
//!   reported sent;
//! - the node window counts the outstanding bytes of peers that are not stalled.
//!
//! Bounds: one entry per peer with outstanding bytes; each peer holds at most
//! `per_peer_bytes` plus one block.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::{PeerKey, Time};

/// How long a peer's outstanding upload may stand still before it yields its share of
/// the window. Sized above the longest honest hand-over of one block: a 4 MiB block to
/// a 20 Mbit/s peer leaves in ~1.7 s, so an honest slow peer is rarely called stalled
/// (and a false call only lets one more transfer into the window).
pub(crate) const UPLOAD_STALL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct PeerOut {
    bytes: u64,
    /// When a block of this peer last left (or its first block was handed out).
    moved_at: Time,
    stalled: bool,
}

/// Outstanding upload bytes per peer and in the node window (see the module docs).
#[derive(Debug, Default)]
pub(super) struct UploadBudget {
    peers: BTreeMap<PeerKey, PeerOut>,
    /// Outstanding bytes of peers that are not stalled.
    counted_bytes: u64,
}

impl UploadBudget {
    /// Outstanding bytes counted against the node window.
    pub(super) fn counted_bytes(&self) -> u64 {
        self.counted_bytes
    }

    /// Whether a block of `len` bytes may be handed out for `key` now.
    pub(super) fn may_hand(&self, key: PeerKey, len: u64, per_peer_bytes: u64) -> bool {
        match self.peers.get(&key) {
            None => true,
            Some(p) => !p.stalled && (p.bytes == 0 || p.bytes + len <= per_peer_bytes),
        }
    }

    /// A block of `len` bytes was handed out for `key`.
    pub(super) fn handed(&mut self, now: Time, key: PeerKey, len: u64) {
        let p = self.peers.entry(key).or_insert(PeerOut {
            bytes: 0,
            moved_at: now,
            stalled: false,
        });
        if p.bytes == 0 {
            p.moved_at = now;
        }
        p.bytes += len;
        if !p.stalled {
            self.counted_bytes += len;
        }
    }

    /// A block of `len` bytes of `key` was reported sent: its queue moves again.
    pub(super) fn sent(&mut self, now: Time, key: PeerKey, len: u64) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let dec = len.min(p.bytes);
        if p.stalled {
            p.stalled = false;
            self.counted_bytes += p.bytes - dec;
        } else {
            self.counted_bytes = self.counted_bytes.saturating_sub(dec);
        }
        p.bytes -= dec;
        p.moved_at = now;
        if p.bytes == 0 {
            self.peers.remove(&key);
        }
    }

    /// `key` left: forget its outstanding bytes.
    pub(super) fn remove(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.remove(&key) {
            if !p.stalled {
                self.counted_bytes = self.counted_bytes.saturating_sub(p.bytes);
            }
        }
    }

    /// Marks peers whose outstanding bytes stood still for [`UPLOAD_STALL`] as stalled;
    /// true if any was newly stalled (the window has room again).
    pub(super) fn check_stalls(&mut self, now: Time) -> bool {
        let mut freed = false;
        for p in self.peers.values_mut() {
            if !p.stalled
                && p.bytes > 0
                && now.saturating_duration_since(p.moved_at) >= UPLOAD_STALL
            {
                p.stalled = true;
                self.counted_bytes = self.counted_bytes.saturating_sub(p.bytes);
                freed = true;
            }
        }
        freed
    }

    /// Whether `key` is stalled.
    #[cfg(test)]
    pub(super) fn is_stalled(&self, key: PeerKey) -> bool {
        self.peers.get(&key).is_some_and(|p| p.stalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerKey = PeerKey(1);
    const B: PeerKey = PeerKey(2);

    fn at(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    #[test]
    fn per_peer_cap_allows_one_block_beyond_when_empty() {
        let mut u = UploadBudget::default();
        assert!(u.may_hand(A, 10, 4));
        u.handed(at(0), A, 10);
        assert!(!u.may_hand(A, 1, 4));
        assert!(u.may_hand(B, 3, 4));
        u.sent(at(1), A, 10);
        assert!(u.may_hand(A, 4, 4));
        assert_eq!(u.counted_bytes(), 0);
    }

    #[test]
    fn a_peer_that_does_not_drain_yields_its_share_and_gets_it_back_when_it_moves() {
        let mut u = UploadBudget::default();
        u.handed(at(0), A, 100);
        u.handed(at(0), B, 50);
        assert_eq!(u.counted_bytes(), 150);
        assert!(!u.check_stalls(at(4)));
        u.sent(at(4), B, 50);
        assert!(u.check_stalls(at(5)), "A stood still for 5 s");
        assert!(u.is_stalled(A));
        assert_eq!(u.counted_bytes(), 0);
        assert!(!u.may_hand(A, 1, 1000), "nothing more for a stalled peer");
        // A's socket drains 40 bytes: it counts again with what is left.
        u.sent(at(9), A, 40);
        assert!(!u.is_stalled(A));
        assert_eq!(u.counted_bytes(), 60);
        u.remove(A);
        assert_eq!(u.counted_bytes(), 0);
    }
}
