//! Choker: which peers we upload to (BEP 3 §"Choking and optimistic unchoking").
//!
//! Every `rechoke_interval` the `unchoke_slots` interested, non-snubbed peers with the
//! best rate get the regular slots: as a leecher the rate they upload to us (tit-for-tat),
//! as a seeder the rate we upload to them (peers that take data fast spread it fast).
//! One more interested peer holds the optimistic slot, rotated every
//! `optimistic_interval`; peers connected for less than three optimistic intervals are
//! three times as likely to get it, so newcomers obtain a first piece to trade.
//! Snubbed peers (anti-snubbing) only qualify for the optimistic slot.
//!
//! Invariant: a decision never unchokes more than `unchoke_slots + 1` peers.
//!
//! Anti-snubbing deadline ([`snub_deadline`]): a peer holding our requests is snubbed
//! when it sent no block for `snub_timeout`, or, when longer, for [`SNUB_SLOWDOWN`] times
//! the time its requested bytes take at a fair share of our download rate, at most
//! [`MAX_SNUB_DEADLINE`]. With whole-piece requests a block arrives all at once, so a
//! legitimately slow sender (a slow link, or a TCP flow that gets less than its share of a
//! busy bottleneck) looks silent for a whole piece time; snubbing it cancels a piece it
//! already sent, which then arrives as waste and is fetched again.
//!
//! [`BatchChoker`] runs the same algorithm once per interval over the peers of several
//! torrents (one per runtime worker of a node), so the slots are the node's, not each
//! worker's.

use super::{ChokerConfig, PeerKey, Time};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

mod batch;

pub use batch::{BatchChoker, ChokeDecision};

/// How many times slower than expected (see [`snub_deadline`]) a peer may deliver its
/// requested bytes before it is snubbed.
///
/// Sized on `p2pe sim --sharing-jitter 0.6` (block transfers share links with weights
/// 0.4-1.6, a stand-in for uneven TCP flows): the slowest legitimate deliveries took
/// ~2.5-3x the fair time; 4 leaves a margin. A stalled peer is still snubbed within
/// [`MAX_SNUB_DEADLINE`].
pub(crate) const SNUB_SLOWDOWN: f64 = 4.0;

/// Longest anti-snubbing deadline: the BitTorrent default snub timeout (60 s), so the
/// BEP 3 profile's deadline is exactly its `snub_timeout`.
pub(crate) const MAX_SNUB_DEADLINE: Duration = Duration::from_secs(60);

/// Longest deadline of a peer that never delivered while other peers do (issue 11: a
/// frozen peer loses its requests within seconds, not at the 60 s cap): the stated
/// detection time of a peer that answers nothing.
pub(crate) const NEVER_DELIVERED_DEADLINE: Duration = Duration::from_secs(10);

/// How long a peer holding `inflight_bytes` of our requests may send no block before it
/// is snubbed (see the module docs): at least `config.snub_timeout`, and at least
/// [`SNUB_SLOWDOWN`] × the time those bytes take at the slower of two rates we expect
/// from it: `fair_rate_bytes_per_s` (our download rate ÷ the peers we have requests at)
/// and `peer_rate_bytes_per_s` (what it delivered on average since it connected; a
/// sender whose own uplink is the bottleneck, like a slow origin, is slower than a fair
/// share). That second term is at most [`MAX_SNUB_DEADLINE`]. A peer that never
/// delivered (`peer_rate_bytes_per_s` 0) gets [`NEVER_DELIVERED_DEADLINE`] while others
/// deliver, and [`MAX_SNUB_DEADLINE`] when nothing arrives from anyone (fair rate 0);
/// never below `config.snub_timeout`.
pub(crate) fn snub_deadline(
    config: &ChokerConfig,
    inflight_bytes: u64,
    fair_rate_bytes_per_s: f64,
    peer_rate_bytes_per_s: f64,
) -> Duration {
    let known = |r: f64| (r.is_finite() && r > 0.0).then_some(r);
    let Some(peer_rate) = known(peer_rate_bytes_per_s) else {
        // It never delivered. While others deliver, it gets the stated detection time
        // (a frozen peer loses its requests within seconds; a slow sender streaming
        // its first piece reports progress, which restarts the silence); with nothing
        // from anyone there is no basis (a slow origin's first piece takes long).
        return if known(fair_rate_bytes_per_s).is_some() {
            config.snub_timeout.max(NEVER_DELIVERED_DEADLINE)
        } else {
            config.snub_timeout.max(MAX_SNUB_DEADLINE)
        };
    };
    let rate = known(fair_rate_bytes_per_s).map_or(peer_rate, |f| f.min(peer_rate));
    let slow_s =
        (SNUB_SLOWDOWN * inflight_bytes as f64 / rate).min(MAX_SNUB_DEADLINE.as_secs_f64());
    config.snub_timeout.max(Duration::from_secs_f64(slow_s))
}

/// What the choker needs to know about one peer (reported by
/// [`super::Torrent::poll_choke_report`] in [`super::ChokerMode::External`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChokeCandidate {
    /// The peer (unique across the torrents one [`BatchChoker`] serves).
    pub peer: PeerKey,
    /// It is interested in us.
    pub interested: bool,
    /// It snubs us (anti-snubbing): only the optimistic slot is open to it.
    pub snubbed: bool,
    /// Rate it is ranked by, bytes per second: the rate it uploads to us as a leecher,
    /// the rate we upload to it as a seeder.
    pub rate_bytes_per_s: f64,
    /// When it connected (newcomers are favoured for the optimistic unchoke).
    pub connected_at: Time,
}

pub(crate) type Candidate = ChokeCandidate;

/// Peers to unchoke; every other peer gets choked.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    pub regular: Vec<PeerKey>,
    pub optimistic: Option<PeerKey>,
}

/// Choker timers and the current optimistic unchoke.
#[derive(Debug)]
pub(crate) struct Choker {
    pub config: ChokerConfig,
    optimistic: Option<PeerKey>,
    next_rechoke: Time,
    next_optimistic: Time,
}

impl Choker {
    pub(crate) fn new(config: ChokerConfig, now: Time) -> Self {
        Choker {
            config,
            optimistic: None,
            next_rechoke: now + config.rechoke_interval,
            next_optimistic: now + config.optimistic_interval,
        }
    }

    /// When the next rechoke is due.
    pub(crate) fn next_rechoke(&self) -> Time {
        self.next_rechoke
    }

    /// Skips the local decision of this interval (the decision is made elsewhere).
    pub(crate) fn skip_rechoke(&mut self, now: Time) {
        self.next_rechoke = now + self.config.rechoke_interval;
    }

    /// Forgets a disconnected peer.
    pub(crate) fn remove_peer(&mut self, peer: PeerKey) {
        if self.optimistic == Some(peer) {
            self.optimistic = None;
        }
    }

    /// Full re-evaluation at `now` (call when [`Choker::next_rechoke`] has passed).
    pub(crate) fn rechoke(
        &mut self,
        now: Time,
        candidates: &[Candidate],
        rng: &mut ChaCha8Rng,
    ) -> Decision {
        self.next_rechoke = now + self.config.rechoke_interval;
        let mut ranked: Vec<(f64, u64, PeerKey)> = candidates
            .iter()
            .filter(|c| c.interested && !c.snubbed)
            .map(|c| (c.rate_bytes_per_s, rng.random::<u64>(), c.peer))
            .collect();
        // Best rate first; the random key breaks ties (all zero at start).
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let regular: Vec<PeerKey> = ranked
            .iter()
            .take(self.config.unchoke_slots)
            .map(|r| r.2)
            .collect();
        let rotate = now >= self.next_optimistic;
        let keep = self.optimistic.filter(|o| {
            !rotate
                && !regular.contains(o)
                && candidates.iter().any(|c| c.peer == *o && c.interested)
        });
        self.optimistic = match keep {
            Some(o) => Some(o),
            None => {
                if rotate {
                    self.next_optimistic = now + self.config.optimistic_interval;
                }
                self.pick_optimistic(now, candidates, &regular, rng)
            }
        };
        Decision {
            regular,
            optimistic: self.optimistic,
        }
    }

    /// Weighted random choice among interested peers outside the regular set.
    fn pick_optimistic(
        &self,
        now: Time,
        candidates: &[Candidate],
        regular: &[PeerKey],
        rng: &mut ChaCha8Rng,
    ) -> Option<PeerKey> {
        let newcomer_window = self.config.optimistic_interval * 3;
        let weight = |c: &Candidate| {
            if now.saturating_duration_since(c.connected_at) < newcomer_window {
                3u64
            } else {
                1
            }
        };
        // A set: with every peer unchoked (datacenter profile) `regular` has them all.
        let regular: BTreeSet<PeerKey> = regular.iter().copied().collect();
        let pool = || {
            candidates
                .iter()
                .filter(|c| c.interested && !regular.contains(&c.peer))
        };
        let total: u64 = pool().map(weight).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rng.random_range(0..total);
        for c in pool() {
            let w = weight(c);
            if ticket < w {
                return Some(c.peer);
            }
            ticket -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::time::Duration;

    fn cand(i: u64, interested: bool, rate: f64, snubbed: bool) -> Candidate {
        Candidate {
            peer: PeerKey(i),
            interested,
            snubbed,
            rate_bytes_per_s: rate,
            connected_at: Time::ZERO,
        }
    }

    #[test]
    fn snub_deadline_scales_with_the_expected_delivery_time() {
        let dc = ChokerConfig::datacenter();
        let piece = 256 * 1024;
        // A 20 Mbit/s downlink (2.5 MB/s) shared by 14 senders of whole 256 KiB pieces: a
        // piece takes 1.47 s at a fair share, so a sender is only snubbed after ~5.9 s,
        // not after the profile's 2 s.
        let fair = 2.5e6 / 14.0;
        let d = snub_deadline(&dc, piece, fair, 1e6);
        assert!((d.as_secs_f64() - SNUB_SLOWDOWN * piece as f64 / fair).abs() < 1e-6);
        assert!(d > Duration::from_secs(5), "{d:?}");
        // A slow origin (20 Mbit/s over 14 leechers) on a fast downlink (100 Mbit/s):
        // its own average, not the fair share of our download, sets the deadline.
        let origin = 2.5e6 / 14.0;
        let d = snub_deadline(&dc, piece, 12.5e6 / 14.0, origin);
        assert!((d.as_secs_f64() - SNUB_SLOWDOWN * piece as f64 / origin).abs() < 1e-6);
        // A fast swarm keeps the profile's floor: 4 MiB pieces at 100 MB/s a sender.
        assert_eq!(snub_deadline(&dc, 4 << 20, 1e8, 1e8), dc.snub_timeout);
        // Nothing requested: the floor.
        assert_eq!(snub_deadline(&dc, 0, fair, fair), dc.snub_timeout);
        // It never delivered: the stated detection time while others deliver, the cap
        // when nothing arrives from anyone.
        assert_eq!(
            snub_deadline(&dc, piece, 1e8, 0.0),
            NEVER_DELIVERED_DEADLINE
        );
        assert_eq!(
            snub_deadline(&dc, 16 << 20, 1e3, 0.0),
            NEVER_DELIVERED_DEADLINE
        );
        assert_eq!(snub_deadline(&dc, piece, 0.0, 0.0), MAX_SNUB_DEADLINE);
        assert_eq!(snub_deadline(&dc, piece, f64::NAN, -1.0), MAX_SNUB_DEADLINE);
        // Its own average alone when we know no fair share.
        let d = snub_deadline(&dc, piece, 0.0, 1e5);
        assert!((d.as_secs_f64() - SNUB_SLOWDOWN * piece as f64 / 1e5).abs() < 1e-6);
        // A crawl is still snubbed within the cap.
        assert_eq!(snub_deadline(&dc, 16 << 20, 1e3, 1e3), MAX_SNUB_DEADLINE);
        // The BitTorrent profile keeps its 60 s whatever the rates.
        let bt = ChokerConfig::default();
        for (bytes, rate) in [(piece, fair), (16 << 20, 1e3), (piece, 1e9)] {
            assert_eq!(snub_deadline(&bt, bytes, rate, rate), bt.snub_timeout);
        }
    }

    #[test]
    fn fastest_interested_peers_win_regular_slots() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut ch = Choker::new(ChokerConfig::default(), Time::ZERO);
        let cs: Vec<Candidate> = (0..10).map(|i| cand(i, i != 9, i as f64, i == 8)).collect();
        let d = ch.rechoke(Time::ZERO + Duration::from_secs(10), &cs, &mut rng);
        // 9 is not interested, 8 is snubbed: the top four are 7, 6, 5, 4.
        assert_eq!(
            d.regular,
            vec![PeerKey(7), PeerKey(6), PeerKey(5), PeerKey(4)]
        );
        let o = d.optimistic.unwrap();
        assert!(o.0 <= 3 || o.0 == 8, "optimistic {o:?}");
    }

    #[test]
    fn optimistic_is_kept_until_rotation() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let cfg = ChokerConfig::default();
        let mut ch = Choker::new(cfg, Time::ZERO);
        let cs: Vec<Candidate> = (0..20).map(|i| cand(i, true, 0.0, false)).collect();
        let t1 = Time::ZERO + Duration::from_secs(10);
        let first = ch.rechoke(t1, &cs, &mut rng).optimistic;
        // The regular set is random among equals, so the optimistic may be displaced
        // into it; when it is not, it must persist until the 30 s rotation.
        let d = ch.rechoke(t1 + Duration::from_secs(10), &cs, &mut rng);
        if !d.regular.contains(&first.unwrap()) {
            assert_eq!(d.optimistic, first);
        }
    }

    proptest! {
        #[test]
        fn never_more_than_slots_plus_one(
            slots in 0usize..8,
            peers in proptest::collection::vec((any::<bool>(), 0u32..5, any::<bool>()), 0..40),
            seed in any::<u64>(),
            steps in 1usize..6,
        ) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let cfg = ChokerConfig { unchoke_slots: slots, ..ChokerConfig::default() };
            let mut ch = Choker::new(cfg, Time::ZERO);
            let cs: Vec<Candidate> = peers.iter().enumerate()
                .map(|(i, &(int, r, sn))| cand(i as u64, int, f64::from(r), sn)).collect();
            for s in 0..steps {
                let d = ch.rechoke(Time::ZERO + Duration::from_secs(10 * s as u64), &cs, &mut rng);
                let n = d.regular.len() + usize::from(d.optimistic.is_some());
                prop_assert!(n <= slots + 1);
                prop_assert!(d.optimistic.is_none_or(|o| !d.regular.contains(&o)));
                for p in d.regular.iter().chain(d.optimistic.iter()) {
                    prop_assert!(cs[p.0 as usize].interested);
                }
            }
        }
    }
}
