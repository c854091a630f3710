//! Rack-aware piece selection: each piece should cross a rack's shared uplink about once
//! (issue 13, "Topology"; the bound and its derivation are in `docs/topology.md`).
//!
//! A node with a [`Locality`] ([`super::TorrentConfig::locality`]) sorts its peers into
//! *rack-mates* (their [`super::PeerCaps::locality`] has the same `rack_token`) and *remote*
//! peers (another rack, no label, the origin). From a rack-mate it requests as usual. From a
//! remote peer it only *imports* a piece that
//! - no connected rack-mate has (a rack-mate that has it is the cheaper source), and
//! - this node is the piece's importer for its rack: among itself and its connected
//!   rack-mates, its `node_token` ranks first for the piece by rendezvous (highest random
//!   weight) hashing, so every member of a fully connected rack agrees on one importer per
//!   piece without messages, and the imports spread evenly over the rack's members; or the
//!   remote peer suggested the piece (BEP 6: the distinct-first origin suggests pieces
//!   nobody has yet, so taking them duplicates nothing).
//!
//! A rack-mate that holds our requests and has sent nothing for the snub floor
//! (`ChokerConfig::snub_timeout`; frozen, or far behind) is taken out of the view until it
//! sends a block again: its pieces count as
//! missing and its importer roles fall to the others, so a frozen rack-mate neither hides
//! a piece nor keeps it from being imported. A node with nothing in flight from anyone may
//! import any piece no rack-mate has (*relaxed*): an importer that lacks a remote source for
//! its pieces then delays them instead of stalling the rack.
//!
//! Invariants: `rack_have[p]` is the number of connected rack-mates whose bitfield has `p`
//! and `rack_missing` has bit `p` exactly when it is 0; `mate_best[p]` is the smallest
//! weight of `p` over the connected rack-mates (`u64::MAX` without any) and `mine` has bit
//! `p` exactly when our own weight is smaller. Sizes are bounded by the piece count and the
//! connected peers.

use super::{Bitfield, PeerKey, PieceIndex};
use std::collections::BTreeMap;

/// Where a node sits: its rack and its identity for ranking importers.
///
/// Tokens are stable hashes ([`Locality::token`]) so that every node computes the same ones
/// from the same labels: the rack label (`--rack`, the BEP 10 handshake's `rack`, the
/// tracker's) and the peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Locality {
    /// Hash of the rack label: peers with equal tokens share a rack uplink.
    pub rack_token: u64,
    /// Hash of the node's identity (its peer id): ranks the rack's members per piece.
    pub node_token: u64,
}

impl Locality {
    /// The locality of a node in rack `rack` with peer id `peer_id`.
    pub fn new(rack: &[u8], peer_id: &[u8]) -> Self {
        Locality {
            rack_token: Self::token(rack),
            node_token: Self::token(peer_id),
        }
    }

    /// The locality of a node labelled `rack` within `zone` (the `--rack` / `--zone`
    /// labels, also sent in the BEP 10 handshake and the announce): rack labels may
    /// repeat across zones, so the zone is part of the rack's token.
    pub fn labelled(rack: &str, zone: Option<&str>, peer_id: &[u8]) -> Self {
        let mut scoped = Vec::with_capacity(rack.len() + 1 + zone.map_or(0, str::len));
        scoped.extend_from_slice(zone.unwrap_or("").as_bytes());
        scoped.push(0);
        scoped.extend_from_slice(rack.as_bytes());
        Self::new(&scoped, peer_id)
    }

    /// FNV-1a of `bytes`, mixed: the same on every node and platform (no per-process
    /// random state), which is what lets rack members agree on importers.
    pub fn token(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        mix(h)
    }

    /// Whether `other` is in the same rack.
    pub fn same_rack(&self, other: &Locality) -> bool {
        self.rack_token == other.rack_token
    }
}

/// splitmix64's finaliser: a bijection that spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Rendezvous weight of `node_token` for `piece`: the lowest weight imports it.
pub(crate) fn weight(node_token: u64, piece: PieceIndex) -> u64 {
    mix(node_token ^ mix(u64::from(piece.0).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// This node's view of its rack (see the module docs).
#[derive(Debug)]
pub(crate) struct RackView {
    me: Locality,
    /// Connected rack-mates and their node tokens.
    mates: BTreeMap<PeerKey, u64>,
    rack_have: Vec<u16>,
    rack_missing: Bitfield,
    mate_best: Vec<u64>,
    mine: Bitfield,
}

impl RackView {
    /// A view of a rack with no rack-mate connected yet: every piece is missing and ours.
    pub(crate) fn new(me: Locality, piece_count: u32) -> Self {
        RackView {
            me,
            mates: BTreeMap::new(),
            rack_have: vec![0; piece_count as usize],
            rack_missing: Bitfield::full(piece_count),
            mate_best: vec![u64::MAX; piece_count as usize],
            mine: Bitfield::full(piece_count),
        }
    }

    /// Whether a peer with `locality` is a rack-mate.
    pub(crate) fn is_mate_locality(&self, locality: Option<Locality>) -> bool {
        locality.is_some_and(|l| l.same_rack(&self.me))
    }

    /// Whether `key` is a connected rack-mate.
    pub(crate) fn is_mate(&self, key: PeerKey) -> bool {
        self.mates.contains_key(&key)
    }

    /// Rack-mates connected.
    #[cfg(test)]
    pub(crate) fn mate_count(&self) -> usize {
        self.mates.len()
    }

    /// A rack-mate connected (before its bitfield): it may now be a piece's importer.
    /// O(pieces).
    pub(crate) fn add_mate(&mut self, key: PeerKey, node_token: u64) {
        if self.mates.insert(key, node_token).is_some() {
            return;
        }
        for (i, best) in self.mate_best.iter_mut().enumerate() {
            let p = PieceIndex(i as u32);
            let w = weight(node_token, p);
            if w < *best {
                *best = w;
                if w < weight(self.me.node_token, p) {
                    self.mine.clear(p);
                }
            }
        }
    }

    /// A rack-mate left; `have` is its bitfield (taken back from the counts). O(pieces ×
    /// rack-mates).
    pub(crate) fn remove_mate(&mut self, key: PeerKey, have: &Bitfield) {
        if self.mates.remove(&key).is_none() {
            return;
        }
        for p in have.iter_ones() {
            self.lost(p);
        }
        for (i, best) in self.mate_best.iter_mut().enumerate() {
            let p = PieceIndex(i as u32);
            *best = self
                .mates
                .values()
                .map(|&t| weight(t, p))
                .min()
                .unwrap_or(u64::MAX);
            if weight(self.me.node_token, p) < *best {
                self.mine.set(p);
            } else {
                self.mine.clear(p);
            }
        }
    }

    /// A rack-mate announced `piece`.
    pub(crate) fn gained(&mut self, piece: PieceIndex) {
        if let Some(c) = self.rack_have.get_mut(piece.0 as usize) {
            *c = c.saturating_add(1);
            self.rack_missing.clear(piece);
        }
    }

    /// A rack-mate no longer has `piece` (it left, or sent a smaller bitfield).
    pub(crate) fn lost(&mut self, piece: PieceIndex) {
        if let Some(c) = self.rack_have.get_mut(piece.0 as usize) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.rack_missing.set(piece);
            }
        }
    }

    /// The filter for requests to a remote peer that suggested `suggested`.
    pub(crate) fn import_filter<'a>(
        &'a self,
        suggested: &'a [PieceIndex],
        relaxed: bool,
    ) -> ImportFilter<'a> {
        ImportFilter {
            rack_missing: &self.rack_missing,
            mine: (!relaxed).then_some(&self.mine),
            suggested,
        }
    }

    /// Panics unless the counts match `mates_have`, the bitfields of the peers in the
    /// view, and the importer set matches the tokens (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants<'a>(&self, mates_have: impl Iterator<Item = &'a Bitfield>) {
        let mut counts = vec![0u16; self.rack_have.len()];
        for have in mates_have {
            for p in have.iter_ones() {
                counts[p.0 as usize] += 1;
            }
        }
        assert_eq!(counts, self.rack_have, "rack-mates' piece counts");
        for (i, &c) in counts.iter().enumerate() {
            let p = PieceIndex(i as u32);
            assert_eq!(self.rack_missing.get(p), c == 0, "rack_missing {p:?}");
            let best = self.mates.values().map(|&t| weight(t, p)).min();
            let mine = best.is_none_or(|b| weight(self.me.node_token, p) < b);
            assert_eq!(self.mine.get(p), mine, "importer of {p:?}");
        }
    }

    /// Whether we are `piece`'s importer (tests and debugging).
    #[cfg(test)]
    pub(crate) fn is_importer(&self, piece: PieceIndex) -> bool {
        self.mine.get(piece)
    }

    /// Rack-mates holding `piece` (tests).
    #[cfg(test)]
    pub(crate) fn rack_have(&self, piece: PieceIndex) -> u16 {
        self.rack_have.get(piece.0 as usize).copied().unwrap_or(0)
    }
}

/// Which pieces may be requested from one remote peer (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ImportFilter<'a> {
    rack_missing: &'a Bitfield,
    /// `None` when relaxed: any piece missing from the rack.
    mine: Option<&'a Bitfield>,
    suggested: &'a [PieceIndex],
}

impl ImportFilter<'_> {
    /// Whether `piece` may be imported.
    pub(crate) fn allows(&self, piece: PieceIndex) -> bool {
        self.rack_missing.get(piece)
            && (self.mine.is_none_or(|m| m.get(piece)) || self.suggested.contains(&piece))
    }

    /// Word `wi` of the allowed set, without the suggestions (for word-wise scans; the
    /// suggestions are tried first, one by one).
    pub(crate) fn word(&self, wi: usize) -> u64 {
        let missing = self.rack_missing.words().get(wi).copied().unwrap_or(0);
        match self.mine {
            Some(m) => missing & m.words().get(wi).copied().unwrap_or(0),
            None => missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(rack: &str, id: &str) -> Locality {
        Locality::new(rack.as_bytes(), id.as_bytes())
    }

    #[test]
    fn members_of_a_rack_agree_on_one_importer_per_piece() {
        // Four fully connected rack-mates: every piece has exactly one importer, and each
        // member imports about a quarter of the pieces.
        let ids = ["a", "b", "c", "d"];
        let n = 4000;
        let views: Vec<RackView> = ids
            .iter()
            .map(|me| {
                let mut v = RackView::new(loc("r1", me), n);
                for (k, other) in ids.iter().enumerate().filter(|(_, o)| *o != me) {
                    v.add_mate(PeerKey(k as u64), loc("r1", other).node_token);
                }
                v
            })
            .collect();
        let mut counts = [0u32; 4];
        for p in 0..n {
            let importers: Vec<usize> = (0..4)
                .filter(|&i| views[i].is_importer(PieceIndex(p)))
                .collect();
            assert_eq!(importers.len(), 1, "piece {p}: {importers:?}");
            counts[importers[0]] += 1;
        }
        for c in counts {
            assert!((850..1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn importer_role_returns_when_a_mate_leaves_and_counts_follow_bitfields() {
        let mut v = RackView::new(loc("r", "me"), 64);
        let mate = loc("r", "other");
        v.add_mate(PeerKey(1), mate.node_token);
        let theirs: Vec<u32> = (0..64).filter(|&p| !v.is_importer(PieceIndex(p))).collect();
        assert!(!theirs.is_empty() && theirs.len() < 64);
        let mut have = Bitfield::new(64);
        have.set(PieceIndex(3));
        v.gained(PieceIndex(3));
        assert_eq!(v.rack_have(PieceIndex(3)), 1);
        let f = v.import_filter(&[], false);
        assert!(!f.allows(PieceIndex(3)), "a rack-mate has it");
        // A suggested piece is importable unless a rack-mate has it.
        let p = PieceIndex(theirs[0]);
        if p != PieceIndex(3) {
            assert!(!v.import_filter(&[], false).allows(p));
            assert!(v.import_filter(&[p], false).allows(p));
            assert!(v.import_filter(&[], true).allows(p), "relaxed");
        }
        v.remove_mate(PeerKey(1), &have);
        assert_eq!(v.rack_have(PieceIndex(3)), 0);
        assert!((0..64).all(|p| v.is_importer(PieceIndex(p))));
        assert_eq!(v.mate_count(), 0);
    }

    #[test]
    fn tokens_are_stable() {
        // The same labels give the same tokens on every node (FNV-1a, fixed mixing).
        assert_eq!(Locality::token(b"rack-1"), Locality::token(b"rack-1"));
        assert_ne!(Locality::token(b"rack-1"), Locality::token(b"rack-2"));
        assert_eq!(Locality::token(b""), mix(0xcbf2_9ce4_8422_2325));
        assert!(loc("x", "1").same_rack(&loc("x", "2")));
        assert!(!loc("x", "1").same_rack(&loc("y", "1")));
        let a = Locality::labelled("r1", Some("z1"), b"id-a");
        assert!(a.same_rack(&Locality::labelled("r1", Some("z1"), b"id-b")));
        assert!(!a.same_rack(&Locality::labelled("r1", Some("z2"), b"id-b")));
        assert!(!a.same_rack(&Locality::labelled("r1", None, b"id-b")));
    }
}
