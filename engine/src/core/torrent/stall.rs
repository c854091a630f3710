//! Stalled requests: a peer that holds our requests and delivers nothing for its stall
//! deadline stops counting as a source of them, long before anti-snubbing cancels them.
//!
//! Why: anti-snubbing ([`Torrent::check_snubs`]) acts only at a rechoke and only after
//! `snub_timeout` (2 s in the datacenter profile, 60 s in BEP 3's; up to 60 s in either
//! for a peer that never delivered while nothing else arrives). A frozen peer (it stops
//! sending and reading; its connection stays open) looks like any idle peer until then.
//! Traced in `p2pe sim --peers 100 --size 200MB --uplink 40Gbit --churn freeze=0.05`: our
//! last piece was requested from a peer that then froze; a reject made us top up every
//! peer in key order, and the endgame duplicate went to another frozen peer (idle, so it
//! had room). The piece then had its `endgame_max_requesters` (2), both frozen, so no
//! responsive peer could be asked until anti-snubbing cancelled both at the 3 s check:
//! one peer finished at 3.0 s, the others by 0.05 s (with a never-delivering frozen
//! peer, 61 s: `--peers 60 --size 32MiB --uplink 40Gbit --churn freeze=0.1 --seed 9`). A
//! second way in: pieces the responsive holders rejected are asked again only at the next
//! rechoke or once nothing is in flight, and a frozen peer's request is always in flight.
//!
//! Policy (the request timeout of libtorrent, mean + 4 deviations of the request round
//! trip; the estimator is RFC 6298's):
//! - Every block that arrives samples how long its peer owed us a delivery
//!   ([`crate::core::peer::DeliveryWait`]): since its previous block or payload progress,
//!   or since the request that found its pipeline empty. Samples go to the peer's estimate
//!   and to the torrent's.
//! - A peer's stall deadline ([`stall_deadline`]) is [`STALL_FACTOR`] × (mean + 4
//!   deviations) of its own waits once it has [`MIN_PEER_SAMPLES`], else of the torrent's
//!   once it has [`MIN_SAMPLES`], at least [`STALL_FLOOR`] and at most `snub_timeout`.
//!   Without samples there is no deadline (no basis: a slow origin's first piece takes
//!   long) and anti-snubbing alone applies.
//! - A peer that owes us past its deadline is *stalled* until it delivers again. Its
//!   requests stay out (it may be slow rather than gone; anti-snubbing still cancels them
//!   at its own deadline), but they no longer count: in endgame a block gets up to
//!   `endgame_max_requesters` requesters besides stalled ones (at most twice that in all,
//!   see [`crate::core::picker`]), blocks only stalled peers are fetching are picked first,
//!   a stalled peer gets no endgame duplicates, and "nothing is in flight" (which asks
//!   again for rejected pieces) disregards stalled peers' requests.
//! - When a peer stalls, every peer is topped up, those that delivered most recently
//!   first, so the duplicates go to responsive peers rather than to another frozen one.
//!
//! Cost of a false call (an honest peer slower than its deadline): in endgame, one more
//! copy of its blocks is requested elsewhere, and the first copy to arrive cancels the
//! other; outside endgame nothing changes but the re-asking of rejected pieces.
//!
//! Timer: [`Torrent::poll_timeout`] includes the earliest stall deadline of a peer that
//! owes us; [`Torrent::handle_timeout`] checks at it. Bound: `stalled` holds connected
//! peers only.

use super::Torrent;
use crate::core::peer::{DeliveryWait, PeerState};
use crate::core::{PeerKey, Time};
use std::time::Duration;

/// Shortest stall deadline. Sized for the datacenter profile: at 40 Gbit/s a 256 KiB
/// piece takes ~50 µs on the wire and an honest sender queues at most its upload window
/// and `busy_reject_pending` requests ahead of ours (~5 MiB, ~1 ms), so waits are a few
/// ms and 20 ms is well beyond them; on slower links the measured waits set the deadline.
pub(crate) const STALL_FLOOR: Duration = Duration::from_millis(20);

/// Multiple of the estimated timeout (mean + 4 deviations of the waits) a peer may owe us
/// a delivery before it is stalled: the waits of one sender vary with how many receivers
/// share its uplink, so a margin on top of RFC 6298's spread.
pub(crate) const STALL_FACTOR: f64 = 2.0;

/// Waits of a peer's own before its own estimate is used (fewer: the torrent's).
pub(crate) const MIN_PEER_SAMPLES: u32 = 2;

/// Waits over the torrent before any peer can be stalled.
pub(crate) const MIN_SAMPLES: u32 = 4;

/// How long `peer` may owe us a delivery before it is stalled (see the module docs);
/// `None` without enough samples. `torrent` is the torrent's estimate, `snub_timeout` the
/// cap.
pub(crate) fn stall_deadline(
    torrent: &DeliveryWait,
    peer: &DeliveryWait,
    snub_timeout: Duration,
) -> Option<Duration> {
    let timeout_s = peer
        .timeout_s(MIN_PEER_SAMPLES)
        .or_else(|| torrent.timeout_s(MIN_SAMPLES))?;
    let s = (STALL_FACTOR * timeout_s).min(snub_timeout.as_secs_f64());
    Some(Duration::from_secs_f64(s.max(0.0)).clamp(STALL_FLOOR.min(snub_timeout), snub_timeout))
}

impl Torrent {
    /// `key` delivered a block (`sampled`: a whole block, whose wait is sampled) or
    /// payload progress at `now`: it is no longer stalled and owes us from now on.
    pub(super) fn on_delivery(&mut self, now: Time, key: PeerKey, sampled: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if sampled {
            let waited = now.saturating_duration_since(peer.owed_since);
            peer.wait.sample(waited);
            self.wait.sample(waited);
            if self.wait.samples() == MIN_SAMPLES {
                // Deadlines exist from now on: peers that owed us before get checked.
                self.next_stall_check = Some(now);
            }
        }
        peer.owed_since = now;
        peer.delivered_at = Some(now);
        if !peer.inflight.is_empty() {
            self.arm_stall_check(key);
        }
        self.stalled.remove(&key);
    }

    /// A request to `key` found its pipeline empty at `now`: it owes us from now on.
    pub(super) fn on_first_request(&mut self, now: Time, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.owed_since = now;
        }
        self.arm_stall_check(key);
    }

    /// Brings the stall check forward to `key`'s deadline if that is sooner.
    fn arm_stall_check(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if let Some(d) = stall_deadline(&self.wait, &peer.wait, self.config.choker.snub_timeout) {
            let due = peer.owed_since + d;
            self.next_stall_check = Some(self.next_stall_check.map_or(due, |t| t.min(due)));
        }
    }

    /// Marks the peers that owe us past their deadline stalled; tops everyone up,
    /// responsive peers first, if any newly stalled. Re-arms the check at the earliest
    /// deadline of the others.
    pub(super) fn check_stalled_requests(&mut self, now: Time) {
        self.next_stall_check = None;
        if self.have.is_full() {
            return;
        }
        let snub = self.config.choker.snub_timeout;
        let mut newly = false;
        let mut next: Option<Time> = None;
        let mut stuck_pieces = Vec::new();
        for (key, peer) in &self.peers {
            if peer.inflight.is_empty() || self.stalled.contains(key) {
                continue;
            }
            let Some(d) = stall_deadline(&self.wait, &peer.wait, snub) else {
                continue;
            };
            let due = peer.owed_since + d;
            if now >= due {
                self.stalled.insert(*key);
                newly = true;
                stuck_pieces.extend(peer.inflight.iter().map(|b| b.piece));
            } else {
                next = Some(next.map_or(due, |t| t.min(due)));
            }
        }
        self.next_stall_check = next;
        for piece in stuck_pieces {
            self.relay_upstream_stalled(piece);
        }
        if newly {
            self.fill_requests_responsive_first();
        }
    }

    /// Whether no request is in flight to a peer that is not stalled (nothing is coming).
    pub(super) fn nothing_coming(&self) -> bool {
        self.peers
            .iter()
            .all(|(k, p)| p.inflight.is_empty() || self.stalled.contains(k))
    }

    /// Whether `key` is stalled.
    pub(super) fn is_stalled(&self, key: PeerKey) -> bool {
        self.stalled.contains(&key)
    }

    /// Tops up every peer, those that delivered most recently first (never last).
    fn fill_requests_responsive_first(&mut self) {
        let mut keys: Vec<(Option<Time>, PeerKey)> = self
            .peers
            .iter()
            .map(|(k, p): (&PeerKey, &PeerState)| (p.delivered_at, *k))
            .collect();
        keys.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, key) in keys {
            self.fill_requests(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_follows_the_waits_within_floor_and_cap() {
        let snub = Duration::from_secs(2);
        let mut torrent = DeliveryWait::default();
        let mut peer = DeliveryWait::default();
        assert_eq!(stall_deadline(&torrent, &peer, snub), None, "no basis yet");
        for _ in 0..MIN_SAMPLES {
            torrent.sample(Duration::from_millis(1));
        }
        // Steady 1 ms waits: 2 x 1 ms is below the floor.
        assert_eq!(stall_deadline(&torrent, &peer, snub), Some(STALL_FLOOR));
        // The peer's own waits, once it has enough: 100 ms twice -> mean 100 ms, deviation
        // 37.5 ms: 2 x (100 + 4 x 37.5) ms.
        peer.sample(Duration::from_millis(100));
        assert_eq!(stall_deadline(&torrent, &peer, snub), Some(STALL_FLOOR));
        peer.sample(Duration::from_millis(100));
        let d = stall_deadline(&torrent, &peer, snub).unwrap();
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-9, "{d:?}");
        // Never beyond anti-snubbing.
        peer.sample(Duration::from_secs(30));
        assert_eq!(stall_deadline(&torrent, &peer, snub), Some(snub));
    }
}
