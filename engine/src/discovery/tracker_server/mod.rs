//! The embedded tracker (`p2pe tracker`): in-memory swarms, sans-IO.
//!
//! [`Tracker`] takes announces and scrapes and answers them; [`io`] runs it
//! on real sockets (UDP BEP 15 and HTTP on the same port number).
//!
//! # Peer hand-out policy (for a cluster)
//!
//! Candidates are ranked by, in order:
//! 1. topology: same rack as the announcer, then same zone, then the rest
//!    (labels from `p2pe_rack` / `p2pe_zone`; a peer without labels is "the rest");
//! 2. usefulness: for a leecher, seeders first, then near-complete leechers
//!    (`left` at most a quarter of the largest `left` in the swarm, a proxy for
//!    the torrent size the tracker does not know), then other leechers; for a
//!    seeder, leechers first (seeders have nothing to trade);
//! 3. random among equals, so load spreads over equally good peers.
//!
//! The swarm keeps its peers in these classes, and labelled peers also in
//! their (rack, zone) group (see `swarm`), so an announce takes peers tier by
//! tier in O(numwant) (plus one pass over the swarm's label groups for a
//! labelled announcer), never ranking the whole swarm.
//!
//! # Invariants
//!
//! - A swarm's index maps each peer address to its place in the swarm's
//!   lists and back (`swarm` states it exactly).
//! - A peer that has not announced for `peer_ttl` is gone after the next
//!   [`Tracker::handle_timeout`]; an empty swarm is dropped.
//! - The announcer never receives itself.
//!
//! # Memory bound (issue 11 item 9)
//!
//! Announces are unauthenticated, so every structure they grow is capped
//! ([`TrackerConfig`]): at most `max_peers_per_swarm` peers in one swarm,
//! `max_peers` over all swarms and `max_swarms` swarms. A peer costs about
//! 180 bytes (entry, index slot, labels; 3 M peers measured 520 MiB with the
//! previous layout; the class lists take less: 22 + 16 bytes of lists, ~40 of
//! index, 20 more in a label group), so the defaults (1,000,000 peers, 100,000
//! per swarm, 100,000 swarms) bound the swarm state near 200 MiB. Labels are
//! stored once per (rack, zone) group, at most [`MAX_GROUPS`] per swarm and
//! never more groups than peers: at worst (every peer with its own two
//! 64-byte labels) ~300 bytes more per peer. At a cap:
//! - a new peer evicts the peer closest to expiry (the one that announced
//!   longest ago) among [`EVICTION_SAMPLE`] random peers of its own swarm, or,
//!   when its swarm is empty, of another swarm: eviction is O(1) and an old
//!   peer goes first, so a flood of fake peers displaces itself, and honest
//!   peers, which re-announce every interval, keep their place;
//! - a new swarm, once expired peers are swept, is refused: the announce
//!   is answered with no peers and a warning, and nothing is stored.

mod conn_id;
mod http;
pub mod io;
mod swarm;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use conn_id::ConnectionIds;

use crate::core::time::Time;
use crate::wire::metainfo::InfoHash;
use crate::wire::tracker::udp::PeerFamily;
use crate::wire::tracker::{Announce, AnnounceResponse, Event, ScrapeStats};
use swarm::Swarm;

pub use swarm::{EVICTION_SAMPLE, MAX_GROUPS};

/// Tracker settings.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// `interval` told to clients.
    pub interval: Duration,
    /// `min interval` told to clients (HTTP only; BEP 15 has no field).
    pub min_interval: Duration,
    /// A peer not heard from for this long is dropped (default 2 × interval).
    pub peer_ttl: Duration,
    /// Peers handed out when the client gives no `numwant`.
    pub default_numwant: u32,
    /// Most peers handed out in one response.
    pub max_numwant: u32,
    /// Most peers kept in one swarm (default 100,000); see the module docs
    /// for eviction.
    pub max_peers_per_swarm: usize,
    /// Most peers kept over all swarms (default 1,000,000, about 180 MiB).
    pub max_peers: usize,
    /// Most swarms (torrents) kept (default 100,000).
    pub max_swarms: usize,
}

impl TrackerConfig {
    /// Defaults for an announce interval: `min_interval` = interval / 2,
    /// `peer_ttl` = 2 × interval, 50 peers by default, at most 200.
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            min_interval: interval / 2,
            peer_ttl: interval * 2,
            default_numwant: 50,
            max_numwant: 200,
            max_peers_per_swarm: 100_000,
            max_peers: 1_000_000,
            max_swarms: 100_000,
        }
    }
}

/// The tracker state: swarms keyed by info-hash (sans-IO; BEP 3, BEP 15 semantics).
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    swarms: HashMap<InfoHash, Swarm, foldhash::fast::RandomState>,
    /// Peers over all swarms (kept, so the `max_peers` check is O(1)).
    peers: usize,
    rng: ChaCha8Rng,
    next_sweep: Time,
    /// Earliest time a refused new swarm may trigger a sweep of expired
    /// peers (a full sweep is O(peers): at most one per [`FORCED_SWEEP_GAP`]).
    next_forced_sweep: Time,
    /// Scratch for [`Swarm::select`] (one entry per label group of a swarm).
    places: Vec<u8>,
}

/// The answer to an announce besides its peers ([`Tracker::announce_into`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceOutcome {
    /// The swarm's counters after the announce (zeros when refused).
    pub stats: ScrapeStats,
    /// Why the announce was refused (a cap), for the response's warning.
    pub warning: Option<&'static str>,
}

/// Where an announce's hand-out goes: addresses (HTTP, tests) or a BEP 15
/// answer's compact entries.
enum Peers<'a, 'b> {
    Addrs(&'a mut Vec<SocketAddr>),
    Compact(&'a mut swarm::CompactPeers<'b>),
}

/// Least time between two sweeps forced by the `max_swarms` cap.
const FORCED_SWEEP_GAP: Duration = Duration::from_secs(1);

impl Tracker {
    /// An empty tracker; `seed` drives the random tie-breaks.
    pub fn new(config: TrackerConfig, seed: u64) -> Self {
        Self {
            config,
            swarms: HashMap::default(),
            peers: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_sweep: Time::ZERO,
            next_forced_sweep: Time::ZERO,
            places: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Handles an announce from `source` (the packet's source IP with the
    /// announced port). A `stopped` announce removes the peer and gets no
    /// peers. At a cap a new peer evicts an old one, and a new swarm is
    /// refused with a warning (see the module docs).
    pub fn handle_announce(
        &mut self,
        now: Time,
        source: IpAddr,
        announce: &Announce,
    ) -> AnnounceResponse {
        let mut peers = Vec::new();
        let outcome = self.announce_into(now, source, announce, &mut peers);
        AnnounceResponse {
            interval_s: secs(self.config.interval),
            min_interval_s: Some(secs(self.config.min_interval)),
            complete: Some(outcome.stats.complete),
            incomplete: Some(outcome.stats.incomplete),
            warning_message: outcome.warning.map(Into::into),
            peers,
        }
    }

    /// [`Tracker::handle_announce`] without allocating: the peers handed out
    /// are appended to `peers` (best first, at most the announce's `numwant`
    /// capped by `max_numwant`), the rest of the answer is returned.
    pub fn announce_into(
        &mut self,
        now: Time,
        source: IpAddr,
        announce: &Announce,
        peers: &mut Vec<SocketAddr>,
    ) -> AnnounceOutcome {
        self.announce_to(now, source, announce, Peers::Addrs(peers))
    }

    /// [`Tracker::announce_into`] for a BEP 15 answer: the peers of `family`
    /// handed out are appended to `out` in compact form (4-byte IPv4 or 16-byte
    /// IPv6 address, then the port, network byte order), straight from the
    /// swarm's lists; the other family's peers take their place in the
    /// hand-out but are left out, as BEP 15 answers carry one family.
    pub fn announce_compact(
        &mut self,
        now: Time,
        source: IpAddr,
        announce: &Announce,
        family: PeerFamily,
        out: &mut Vec<u8>,
    ) -> AnnounceOutcome {
        let mut peers = swarm::CompactPeers::new(out, family == PeerFamily::V6);
        self.announce_to(now, source, announce, Peers::Compact(&mut peers))
    }

    fn announce_to(
        &mut self,
        now: Time,
        source: IpAddr,
        announce: &Announce,
        peers: Peers<'_, '_>,
    ) -> AnnounceOutcome {
        let addr = SocketAddr::new(source, announce.port);
        let stopped = announce.event == Event::Stopped;
        if !stopped {
            // One lookup in the common case (a known swarm below the caps).
            let own_len = self.swarms.get(&announce.info_hash).map(Swarm::len);
            if own_len.is_none() && !self.room_for_swarm(now) {
                return AnnounceOutcome {
                    stats: ScrapeStats::default(),
                    warning: Some("tracker full: too many torrents"),
                };
            }
            let swarm_full = own_len.unwrap_or(0) >= self.config.max_peers_per_swarm.max(1);
            if swarm_full || self.peers >= self.config.max_peers.max(1) {
                self.make_room(&announce.info_hash, &addr);
            }
        }
        let swarm = self.swarms.entry(announce.info_hash).or_default();
        if stopped {
            if swarm.remove(&addr).is_some() {
                self.peers -= 1;
            }
        } else {
            let expires_at = now + self.config.peer_ttl;
            let old_left = swarm.upsert(addr, announce.left_bytes, &announce.topology, expires_at);
            if old_left.is_none() {
                self.peers += 1;
            }
            let finished = announce.left_bytes == 0 && old_left.is_some_and(|l| l > 0);
            if announce.event == Event::Completed || finished {
                swarm.downloaded = swarm.downloaded.saturating_add(1);
            }
            let want = announce
                .numwant
                .unwrap_or(self.config.default_numwant)
                .min(self.config.max_numwant);
            if want > 0 && swarm.len() > 1 {
                let salt: u64 = self.rng.random();
                let (want, places) = (want as usize, &mut self.places);
                match peers {
                    Peers::Addrs(out) => swarm.select(addr, announce, want, salt, places, out),
                    Peers::Compact(out) => {
                        swarm.select_compact(addr, announce, want, salt, places, out)
                    }
                }
            }
        }
        let stats = swarm.stats();
        if swarm.is_empty() {
            self.swarms.remove(&announce.info_hash);
        }
        AnnounceOutcome {
            stats,
            warning: None,
        }
    }

    /// Whether a new swarm may be created: below `max_swarms`, after
    /// sweeping expired peers if at it (at most once per [`FORCED_SWEEP_GAP`]).
    fn room_for_swarm(&mut self, now: Time) -> bool {
        if self.swarms.len() < self.config.max_swarms {
            return true;
        }
        if now >= self.next_forced_sweep {
            self.next_forced_sweep = now + FORCED_SWEEP_GAP;
            self.expire(now);
        }
        self.swarms.len() < self.config.max_swarms
    }

    /// Before `addr` joins swarm `hash`: if it is new and a peer cap is
    /// reached, evict one old peer (its own swarm first).
    fn make_room(&mut self, hash: &InfoHash, addr: &SocketAddr) {
        let own = self.swarms.get_mut(hash);
        let own_len = own.as_ref().map_or(0, |s| s.len());
        if own.as_ref().is_some_and(|s| s.contains(addr)) {
            return; // a re-announce takes no new room
        }
        let swarm_full = own_len >= self.config.max_peers_per_swarm.max(1);
        let total_full = self.peers >= self.config.max_peers.max(1);
        if !swarm_full && !total_full {
            return;
        }
        let rng = &mut self.rng;
        if let Some(own) = own.filter(|s| !s.is_empty()) {
            if own.evict_one(|n| rng.random_range(0..n)) {
                self.peers -= 1;
            }
            return;
        }
        // An empty (new) swarm at the total cap: take from another one.
        let Some((&victim, swarm)) = self.swarms.iter_mut().find(|(_, s)| !s.is_empty()) else {
            return;
        };
        if swarm.evict_one(|n| rng.random_range(0..n)) {
            self.peers -= 1;
        }
        if swarm.is_empty() {
            self.swarms.remove(&victim);
        }
    }

    /// Counters for each of `info_hashes` (zeros for an unknown torrent).
    pub fn handle_scrape(&self, info_hashes: &[InfoHash]) -> Vec<ScrapeStats> {
        info_hashes
            .iter()
            .map(|h| self.swarms.get(h).map(Swarm::stats).unwrap_or_default())
            .collect()
    }

    /// Drops peers whose time-to-live has passed, and empty swarms.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_sweep {
            return;
        }
        self.expire(now);
        self.next_sweep = now + self.sweep_period();
    }

    fn expire(&mut self, now: Time) {
        for swarm in self.swarms.values_mut() {
            self.peers -= swarm.expire(now);
        }
        self.swarms.retain(|_, s| !s.is_empty());
    }

    /// When [`Tracker::handle_timeout`] next has work: every quarter `peer_ttl`,
    /// so a peer lingers at most 1.25 × `peer_ttl`.
    pub fn poll_timeout(&self) -> Time {
        self.next_sweep
    }

    fn sweep_period(&self) -> Duration {
        (self.config.peer_ttl / 4).max(Duration::from_millis(100))
    }

    /// Number of torrents with at least one peer.
    pub fn swarm_count(&self) -> usize {
        self.swarms.len()
    }

    /// Number of peers over all swarms.
    pub fn peer_count(&self) -> usize {
        self.peers
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
