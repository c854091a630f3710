//! Web seed policy (BEP 19): when a node may fetch pieces from an HTTP origin
//! listed in the torrent's `url-list`, which piece it fetches, and how long a
//! failing web seed is left alone.
//!
//! The goal is that the HTTP origin sends about one copy of the torrent to a
//! whole swarm, not one per machine: the swarm prefers peers once peers hold a
//! piece. So, node-wide (one [`WebSeedPolicy`] per node, shared by its fetcher
//! threads):
//! - *Waiting* ([`WebSeedMode::Waiting`]): a node that expects peers (it has
//!   `--peer` addresses, trackers or the DHT) first waits for them, at most
//!   [`PolicyConfig::peer_wait`], or [`PolicyConfig::bitfield_wait`] after its
//!   first peer connected (time for the peers' bitfields to arrive). A node
//!   that expects no peer starts at once.
//! - *Share* ([`WebSeedMode::Share`]): then only pieces that no connected
//!   peer has (availability 0, [`super::availability`]), that nobody in the
//!   node has claimed ([`super::claims`]) and that are this node's share
//!   ([`Share`]: with the node and its connected peers sorted by peer id, the
//!   node of rank `r` of `n` takes the pieces `p` with `p % n == r`) are
//!   fetched over HTTP, at random among them. Nodes that see the same peers
//!   agree on the shares, so nodes starting together do not fetch the same
//!   piece: a piece fetched over HTTP is announced with `have`, its count
//!   becomes 1 at every neighbour, and they fetch it from this node instead
//!   of the origin.
//! - *Unseen* ([`WebSeedMode::Unseen`]): when the node verified no piece for
//!   [`PolicyConfig::share_stall`] (its share is done and the others' owners
//!   are not delivering theirs), any piece no connected peer has.
//! - *Any* ([`WebSeedMode::Any`]): when the node verified no piece for
//!   [`PolicyConfig::starve_after`] while pieces are missing (its peers hold
//!   them but do not deliver: choked, stalled), any unclaimed missing piece.
//!
//! A piece is claimed in the node's claim bitmap (the one the workers' pickers
//! use) by [`WebSeedPolicy::pick`] before it is fetched, so a worker and a web
//! seed never fetch the same piece; the driver releases the claim
//! (`AtomicBitfield::clear`) when the fetch or its hash check fails, and keeps
//! it once the piece is verified (a verified piece stays claimed).
//!
//! Per web seed, a [`Backoff`]: every failure (an HTTP error, a wrong status,
//! a stall, bytes that fail the hash check) doubles the wait before the next
//! request to that seed, from [`PolicyConfig::backoff_initial`] up to
//! [`PolicyConfig::backoff_max`]; a verified piece resets it. Nothing a web
//! seed serves is trusted before its hash check.
//!
//! Sans-IO: time comes in as [`Time`], randomness from a seeded generator.

use std::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{AtomicBitfield, Availability, PieceIndex, Time};
use crate::base::PeerId;

/// Tunables of [`WebSeedPolicy`] and [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Longest wait for peers before a node that expects peers starts fetching
    /// over HTTP. Default 2 s: a tracker announce and the handshakes of its
    /// answer take well under a second on a datacenter network.
    pub peer_wait: Duration,
    /// How long after the first peer connected the wait ends anyway: its
    /// bitfield (and its neighbours') arrive within a round trip or two.
    /// Default 300 ms.
    pub bitfield_wait: Duration,
    /// No piece verified for this long: fetch the pieces no peer has beyond
    /// this node's share too. Default 1 s: a peer serving its share over a
    /// datacenter network delivers a piece well within it.
    pub share_stall: Duration,
    /// No piece verified for this long while pieces are missing: fetch any
    /// unclaimed piece over HTTP, not only those no peer has. Default 10 s
    /// (the core drops a peer's requests after 10 s of silence too).
    pub starve_after: Duration,
    /// Wait after a web seed's first failure; doubled per further failure.
    /// Default 1 s.
    pub backoff_initial: Duration,
    /// Longest wait between attempts on a failing web seed. Default 60 s.
    pub backoff_max: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            peer_wait: Duration::from_secs(2),
            bitfield_wait: Duration::from_millis(300),
            share_stall: Duration::from_secs(1),
            starve_after: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Which pieces a node may fetch from its web seeds now (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSeedMode {
    /// None yet: waiting for peers.
    Waiting,
    /// Pieces of this node's [`Share`] no connected peer has (availability 0).
    Share,
    /// Pieces no connected peer has (availability 0).
    Unseen,
    /// Any unclaimed missing piece: peers are not delivering.
    Any,
}

/// The node-wide web seed policy (see the module docs).
///
/// Driver obligations: [`WebSeedPolicy::handle_peers`] and
/// [`WebSeedPolicy::handle_progress`] with the node's current counts before
/// each [`WebSeedPolicy::pick`] (or at least every
/// [`WebSeedPolicy::poll_timeout`]); release the claim of a picked piece whose
/// fetch or hash check failed.
#[derive(Debug, Clone)]
pub struct WebSeedPolicy {
    config: PolicyConfig,
    started: Time,
    expect_peers: bool,
    first_peer_at: Option<Time>,
    verified_pieces: u32,
    last_progress_at: Time,
}

impl WebSeedPolicy {
    /// The policy of a node started at `now`; `expect_peers`: it has peer
    /// addresses, trackers or the DHT to find peers with.
    pub fn new(now: Time, config: PolicyConfig, expect_peers: bool) -> Self {
        WebSeedPolicy {
            config,
            started: now,
            expect_peers,
            first_peer_at: None,
            verified_pieces: 0,
            last_progress_at: now,
        }
    }

    /// The node has `connected` peers now.
    pub fn handle_peers(&mut self, now: Time, connected: u32) {
        if connected > 0 && self.first_peer_at.is_none() {
            self.first_peer_at = Some(now);
        }
    }

    /// The node has `verified_pieces` verified pieces now (from any source).
    pub fn handle_progress(&mut self, now: Time, verified_pieces: u32) {
        if verified_pieces > self.verified_pieces {
            self.verified_pieces = verified_pieces;
            self.last_progress_at = now;
        }
    }

    /// When the wait for peers ends (`None`: it has ended or never applied).
    fn wait_ends(&self) -> Option<Time> {
        if !self.expect_peers {
            return None;
        }
        let mut end = self.started + self.config.peer_wait;
        if let Some(t) = self.first_peer_at {
            end = end.min(t + self.config.bitfield_wait);
        }
        Some(end)
    }

    /// Since when the node counts as making no progress: its last verified
    /// piece, or the end of the wait for peers if later (waiting is not
    /// stalling).
    fn progress_at(&self) -> Time {
        self.wait_ends()
            .map_or(self.last_progress_at, |end| end.max(self.last_progress_at))
    }

    /// Which pieces may be fetched over HTTP at `now`.
    pub fn mode(&self, now: Time) -> WebSeedMode {
        if self.wait_ends().is_some_and(|end| now < end) {
            return WebSeedMode::Waiting;
        }
        let since = self.progress_at();
        if now >= since + self.config.starve_after {
            WebSeedMode::Any
        } else if now >= since + self.config.share_stall {
            WebSeedMode::Unseen
        } else {
            WebSeedMode::Share
        }
    }

    /// When [`WebSeedPolicy::mode`] next changes by itself (the end of the
    /// wait, or the start of starvation), if it can.
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        match self.mode(now) {
            WebSeedMode::Waiting => self.wait_ends(),
            WebSeedMode::Share => Some(self.progress_at() + self.config.share_stall),
            WebSeedMode::Unseen => Some(self.progress_at() + self.config.starve_after),
            WebSeedMode::Any => None,
        }
    }

    /// Claims a piece to fetch over HTTP at `now`: uniformly at random among
    /// the pieces nobody claimed (`claims` holds every piece the node has or
    /// fetches) and, but in [`WebSeedMode::Any`], no connected peer has
    /// (`availability` 0), and in [`WebSeedMode::Share`] that are in `share`.
    /// `None` while waiting or when there is none. The claim is the caller's
    /// until it releases it (see the module docs).
    pub fn pick(
        &self,
        now: Time,
        claims: &AtomicBitfield,
        availability: &Availability,
        share: Share,
        rng: &mut ChaCha8Rng,
    ) -> Option<PieceIndex> {
        let mode = self.mode(now);
        if mode == WebSeedMode::Waiting || claims.is_empty() {
            return None;
        }
        let len = claims.len();
        let words = len.div_ceil(64) as usize;
        let start = rng.random_range(0..len);
        let start_word = (start / 64) as usize;
        // One pass over the words from `start`, wrapping: the first word from
        // `start`'s bit on, the last (the same word again) below it.
        for k in 0..=words {
            let wi = (start_word + k) % words;
            let mut free = !claims.load_word(wi);
            let first = wi as u32 * 64;
            if len - first < 64 {
                free &= (1u64 << (len - first)) - 1;
            }
            if k == 0 {
                free &= u64::MAX << (start % 64);
            } else if k == words {
                free &= !(u64::MAX << (start % 64));
            }
            while free != 0 {
                let piece = PieceIndex(first + free.trailing_zeros());
                free &= free - 1;
                if mode == WebSeedMode::Share && !share.holds(piece) {
                    continue;
                }
                if mode != WebSeedMode::Any && availability.count(piece) != 0 {
                    continue;
                }
                if claims.try_set(piece) {
                    return Some(piece);
                }
            }
        }
        None
    }
}

/// A node's share of the pieces to fetch over HTTP: with the node and its
/// connected peers sorted by peer id, the node is `rank` of `of`, and its
/// share is the pieces `p` with `p % of == rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The node's position, `0..of`.
    pub rank: u32,
    /// The node and its connected peers.
    pub of: u32,
}

impl Share {
    /// Every piece (a node alone).
    pub const ALL: Share = Share { rank: 0, of: 1 };

    /// The share of the node with peer id `ours` among connected `peers`
    /// (BEP 3 peer ids; duplicates of `ours` are ignored).
    pub fn of_peer_ids<'a>(ours: &PeerId, peers: impl IntoIterator<Item = &'a PeerId>) -> Self {
        let mut rank = 0u32;
        let mut of = 1u32;
        for p in peers {
            if p == ours {
                continue;
            }
            of = of.saturating_add(1);
            if p < ours {
                rank = rank.saturating_add(1);
            }
        }
        Share { rank, of }
    }

    /// Whether `piece` is in the share.
    pub fn holds(&self, piece: PieceIndex) -> bool {
        piece.0 % self.of.max(1) == self.rank
    }
}

/// Exponential, bounded back-off of one web seed (see the module docs).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: PolicyConfig,
    /// Failures since the last success.
    failures: u32,
    retry_at: Time,
}

impl Backoff {
    /// A web seed that has not failed.
    pub fn new(config: PolicyConfig) -> Self {
        Backoff {
            config,
            failures: 0,
            retry_at: Time::ZERO,
        }
    }

    /// Whether the seed may be asked at `now`.
    pub fn is_ready(&self, now: Time) -> bool {
        now >= self.retry_at
    }

    /// When the seed may be asked again.
    pub fn retry_at(&self) -> Time {
        self.retry_at
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A request succeeded (its piece verified): no wait.
    pub fn handle_success(&mut self) {
        self.failures = 0;
        self.retry_at = Time::ZERO;
    }

    /// A request failed at `now`: the seed is left alone for the returned
    /// wait, `backoff_initial * 2^(failures - 1)` capped at `backoff_max`.
    pub fn handle_failure(&mut self, now: Time) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(30);
        let wait = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.config.backoff_max);
        self.retry_at = self.retry_at.max(now + wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn t(ms: u64) -> Time {
        Time::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn waits_for_peers_only_when_it_expects_them() {
        let c = PolicyConfig::default();
        let alone = WebSeedPolicy::new(t(0), c, false);
        assert_eq!(alone.mode(t(0)), WebSeedMode::Share);
        let mut p = WebSeedPolicy::new(t(0), c, true);
        assert_eq!(p.mode(t(0)), WebSeedMode::Waiting);
        assert_eq!(p.poll_timeout(t(0)), Some(t(2000)));
        assert_eq!(p.mode(t(1999)), WebSeedMode::Waiting);
        // Waiting is not stalling: the share comes first.
        assert_eq!(p.mode(t(2000)), WebSeedMode::Share);
        assert_eq!(p.poll_timeout(t(2000)), Some(t(3000)));
        assert_eq!(p.mode(t(3000)), WebSeedMode::Unseen);
        // A peer at 100 ms ends the wait 300 ms later.
        p.handle_peers(t(100), 1);
        assert_eq!(p.mode(t(399)), WebSeedMode::Waiting);
        assert_eq!(p.mode(t(400)), WebSeedMode::Share);
    }

    #[test]
    fn starving_opens_every_piece_and_progress_closes_it() {
        let c = PolicyConfig::default();
        let mut p = WebSeedPolicy::new(t(0), c, false);
        assert_eq!(p.poll_timeout(t(0)), Some(t(1_000)));
        assert_eq!(p.mode(t(1_000)), WebSeedMode::Unseen);
        assert_eq!(p.poll_timeout(t(1_000)), Some(t(10_000)));
        assert_eq!(p.mode(t(10_000)), WebSeedMode::Any);
        assert_eq!(p.poll_timeout(t(10_000)), None);
        p.handle_progress(t(10_500), 3);
        assert_eq!(p.mode(t(10_500)), WebSeedMode::Share);
        p.handle_progress(t(15_000), 3); // no new piece: no progress
        assert_eq!(p.mode(t(11_500)), WebSeedMode::Unseen);
        assert_eq!(p.mode(t(20_500)), WebSeedMode::Any);
    }

    #[test]
    fn picks_only_unclaimed_pieces_no_peer_has() {
        let claims = AtomicBitfield::new(130);
        let avail = Availability::new(130);
        for i in 0..130 {
            if i % 3 == 0 {
                claims.try_set(PieceIndex(i));
            } else if i % 3 == 1 {
                avail.inc(PieceIndex(i));
            }
        }
        let p = WebSeedPolicy::new(t(0), PolicyConfig::default(), false);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut got = Vec::new();
        while let Some(piece) = p.pick(t(0), &claims, &avail, Share::ALL, &mut rng) {
            assert_eq!(piece.0 % 3, 2, "{piece:?}");
            assert!(claims.get(piece));
            got.push(piece.0);
        }
        got.sort_unstable();
        let want: Vec<u32> = (0..130).filter(|i| i % 3 == 2).collect();
        assert_eq!(got, want, "each exactly once, then none");
        // Starving: the pieces peers have are fair game too.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut more = 0;
        while p
            .pick(t(10_000), &claims, &avail, Share::ALL, &mut rng)
            .is_some()
        {
            more += 1;
        }
        assert_eq!(more, (0..130).filter(|i| i % 3 == 1).count());
        assert!(claims.is_full());
    }

    #[test]
    fn picks_spread_over_the_torrent() {
        // Nodes starting together should rarely pick the same piece: the first
        // picks of differently seeded nodes are spread, not all piece 0.
        let avail = Availability::new(1000);
        let p = WebSeedPolicy::new(t(0), PolicyConfig::default(), false);
        let firsts: std::collections::BTreeSet<u32> = (0..8)
            .map(|seed| {
                let claims = AtomicBitfield::new(1000);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                p.pick(t(0), &claims, &avail, Share::ALL, &mut rng)
                    .unwrap()
                    .0
            })
            .collect();
        assert!(firsts.len() >= 7, "{firsts:?}");
    }

    #[test]
    fn nothing_while_waiting() {
        let claims = AtomicBitfield::new(10);
        let avail = Availability::new(10);
        let p = WebSeedPolicy::new(t(0), PolicyConfig::default(), true);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(p.pick(t(5), &claims, &avail, Share::ALL, &mut rng), None);
        assert_eq!(claims.count_ones(), 0);
    }

    #[test]
    fn nodes_that_see_the_same_peers_split_the_pieces() {
        let ids: Vec<PeerId> = (0..5u8).map(|i| PeerId([i.wrapping_mul(37); 20])).collect();
        let shares: Vec<Share> = ids
            .iter()
            .map(|me| Share::of_peer_ids(me, ids.iter()))
            .collect();
        for piece in (0..100).map(PieceIndex) {
            let owners = shares.iter().filter(|s| s.holds(piece)).count();
            assert_eq!(owners, 1, "{piece:?}: {shares:?}");
        }
        assert!(shares.iter().all(|s| s.of == 5));
        // In its share, a node takes only its own unseen pieces until its
        // progress stalls, then the others' too.
        let claims = AtomicBitfield::new(100);
        let avail = Availability::new(100);
        let p = WebSeedPolicy::new(t(0), PolicyConfig::default(), false);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s = shares[2];
        let mut mine = 0;
        while let Some(piece) = p.pick(t(0), &claims, &avail, s, &mut rng) {
            assert!(s.holds(piece));
            mine += 1;
        }
        assert_eq!(mine, 20);
        let mut rest = 0;
        while p.pick(t(1_000), &claims, &avail, s, &mut rng).is_some() {
            rest += 1;
        }
        assert_eq!(rest, 80);
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_and_resets() {
        let mut b = Backoff::new(PolicyConfig::default());
        assert!(b.is_ready(t(0)));
        let waits: Vec<u64> = (0..9).map(|_| b.handle_failure(t(0)).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!b.is_ready(t(59_999)));
        assert!(b.is_ready(t(60_000)));
        assert_eq!(b.failures(), 9);
        b.handle_success();
        assert!(b.is_ready(t(0)));
        assert_eq!(b.handle_failure(t(0)), Duration::from_secs(1));
    }
}
