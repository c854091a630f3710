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
//! 3. a random tie-break, so load spreads over equally good peers.
//!
//! In swarms of more than [`FULL_SCAN_PEERS`] peers the ranking runs over
//! `4 × numwant` consecutive slots from a random start, so an announce costs
//! O(numwant), not O(swarm).
//!
//! # Invariants
//!
//! - A swarm's `index` maps each peer address to its position in `peers`, and
//!   back: `peers[index[a]].addr == a` for every key.
//! - A peer that has not announced for `peer_ttl` is gone after the next
//!   [`Tracker::handle_timeout`]; an empty swarm is dropped.
//! - The announcer never receives itself.
//!
//! # Memory bound (issue 11 item 9)
//!
//! Announces are unauthenticated, so every structure they grow is capped
//! ([`TrackerConfig`]): at most `max_peers_per_swarm` peers in one swarm,
//! `max_peers` over all swarms and `max_swarms` swarms. A peer costs about
//! 180 bytes (entry, index slot, labels; 3 M peers measured 520 MiB), so the
//! defaults (1,000,000 peers, 100,000 per swarm, 100,000 swarms) bound the
//! swarm state near 200 MiB. At a cap:
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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use conn_id::ConnectionIds;

use crate::core::time::Time;
use crate::wire::metainfo::InfoHash;
use crate::wire::tracker::{Announce, AnnounceResponse, Event, ScrapeStats, Topology};

/// Swarms up to this many peers are ranked in full; larger ones by sampling.
pub const FULL_SCAN_PEERS: usize = 1024;

/// Peers looked at to choose one to evict at a cap (the one closest to expiry
/// goes): 8 random draws find a peer from the oldest quarter of the swarm
/// with probability 1 − 0.75⁸ ≈ 90 %.
pub const EVICTION_SAMPLE: usize = 8;

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

/// One peer in a swarm.
#[derive(Clone, Debug)]
struct PeerEntry {
    addr: SocketAddr,
    left_bytes: u64,
    topology: Topology,
    expires_at: Time,
}

/// One torrent's peers.
#[derive(Default, Debug)]
struct Swarm {
    peers: Vec<PeerEntry>,
    index: HashMap<SocketAddr, usize>,
    seeders: u32,
    downloaded: u32,
}

impl Swarm {
    /// Removes the peer at `addr`; whether it was there.
    fn remove(&mut self, addr: &SocketAddr) -> bool {
        let Some(pos) = self.index.remove(addr) else {
            return false;
        };
        let removed = self.peers.swap_remove(pos);
        if removed.left_bytes == 0 {
            self.seeders = self.seeders.saturating_sub(1);
        }
        if let Some(moved) = self.peers.get(pos) {
            self.index.insert(moved.addr, pos);
        }
        true
    }

    /// Removes the peer closest to expiry among [`EVICTION_SAMPLE`] random
    /// ones; whether one was removed (`false`: the swarm is empty).
    fn evict_one(&mut self, rng: &mut ChaCha8Rng) -> bool {
        if self.peers.is_empty() {
            return false;
        }
        let n = self.peers.len();
        let victim = (0..EVICTION_SAMPLE)
            .filter_map(|_| self.peers.get(rng.random_range(0..n)))
            .min_by_key(|p| p.expires_at)
            .map(|p| p.addr);
        victim.is_some_and(|a| self.remove(&a))
    }

    fn upsert(&mut self, entry: PeerEntry) -> Option<u64> {
        let seeder = entry.left_bytes == 0;
        if let Some(&pos) = self.index.get(&entry.addr) {
            if let Some(slot) = self.peers.get_mut(pos) {
                let old_left = slot.left_bytes;
                match (old_left == 0, seeder) {
                    (false, true) => self.seeders += 1,
                    (true, false) => self.seeders = self.seeders.saturating_sub(1),
                    _ => {}
                }
                *slot = entry;
                return Some(old_left);
            }
        }
        self.index.insert(entry.addr, self.peers.len());
        self.peers.push(entry);
        if seeder {
            self.seeders += 1;
        }
        None
    }

    fn stats(&self) -> ScrapeStats {
        let total = u32::try_from(self.peers.len()).unwrap_or(u32::MAX);
        ScrapeStats {
            complete: self.seeders,
            downloaded: self.downloaded,
            incomplete: total.saturating_sub(self.seeders),
        }
    }
}

/// The tracker state: swarms keyed by info-hash (sans-IO; BEP 3, BEP 15 semantics).
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    swarms: HashMap<InfoHash, Swarm>,
    /// Peers over all swarms (kept, so the `max_peers` check is O(1)).
    peers: usize,
    rng: ChaCha8Rng,
    next_sweep: Time,
    /// Earliest time a refused new swarm may trigger a sweep of expired
    /// peers (a full sweep is O(peers): at most one per [`FORCED_SWEEP_GAP`]).
    next_forced_sweep: Time,
}

/// Least time between two sweeps forced by the `max_swarms` cap.
const FORCED_SWEEP_GAP: Duration = Duration::from_secs(1);

impl Tracker {
    /// An empty tracker; `seed` drives the random tie-breaks.
    pub fn new(config: TrackerConfig, seed: u64) -> Self {
        Self {
            config,
            swarms: HashMap::new(),
            peers: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_sweep: Time::ZERO,
            next_forced_sweep: Time::ZERO,
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
        let addr = SocketAddr::new(source, announce.port);
        let stopped = announce.event == Event::Stopped;
        if !stopped && !self.swarms.contains_key(&announce.info_hash) && !self.room_for_swarm(now) {
            return AnnounceResponse {
                warning_message: Some("tracker full: too many torrents".into()),
                ..self.response(ScrapeStats::default(), Vec::new())
            };
        }
        if !stopped {
            self.make_room(&announce.info_hash, &addr);
        }
        let swarm = self.swarms.entry(announce.info_hash).or_default();
        let mut peers = Vec::new();
        if stopped {
            if swarm.remove(&addr) {
                self.peers -= 1;
            }
        } else {
            let old_left = swarm.upsert(PeerEntry {
                addr,
                left_bytes: announce.left_bytes,
                topology: announce.topology.clone(),
                expires_at: now + self.config.peer_ttl,
            });
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
            peers = select_peers(swarm, announce, addr, want as usize, &mut self.rng);
        }
        let stats = swarm.stats();
        if swarm.peers.is_empty() {
            self.swarms.remove(&announce.info_hash);
        }
        self.response(stats, peers)
    }

    fn response(&self, stats: ScrapeStats, peers: Vec<SocketAddr>) -> AnnounceResponse {
        AnnounceResponse {
            interval_s: secs(self.config.interval),
            min_interval_s: Some(secs(self.config.min_interval)),
            complete: Some(stats.complete),
            incomplete: Some(stats.incomplete),
            warning_message: None,
            peers,
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
        let own_len = own.as_ref().map_or(0, |s| s.peers.len());
        if own.as_ref().is_some_and(|s| s.index.contains_key(addr)) {
            return; // a re-announce takes no new room
        }
        let swarm_full = own_len >= self.config.max_peers_per_swarm.max(1);
        let total_full = self.peers >= self.config.max_peers.max(1);
        if !swarm_full && !total_full {
            return;
        }
        if let Some(own) = own.filter(|s| !s.peers.is_empty()) {
            if own.evict_one(&mut self.rng) {
                self.peers -= 1;
            }
            return;
        }
        // An empty (new) swarm at the total cap: take from another one.
        let Some((&victim, swarm)) = self.swarms.iter_mut().find(|(_, s)| !s.peers.is_empty())
        else {
            return;
        };
        if swarm.evict_one(&mut self.rng) {
            self.peers -= 1;
        }
        if swarm.peers.is_empty() {
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
            let expired: Vec<SocketAddr> = swarm
                .peers
                .iter()
                .filter(|p| p.expires_at <= now)
                .map(|p| p.addr)
                .collect();
            for addr in &expired {
                if swarm.remove(addr) {
                    self.peers -= 1;
                }
            }
        }
        self.swarms.retain(|_, s| !s.peers.is_empty());
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

/// Rank of `peer` for `announce` (lower is better): (topology, usefulness).
fn rank(peer: &PeerEntry, announce: &Announce, near_left_bytes: u64) -> (u8, u8) {
    let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
    let topo = &announce.topology;
    if topo.rack.is_none() && topo.zone.is_none() {
        return (2, usefulness(peer, announce, near_left_bytes));
    }
    // Rack labels may repeat across zones: a rack matches only if the zones
    // do not contradict each other.
    let zone_eq = same(&peer.topology.zone, &topo.zone);
    let zone_conflict = peer.topology.zone.is_some() && topo.zone.is_some() && !zone_eq;
    let place = if same(&peer.topology.rack, &topo.rack) && !zone_conflict {
        0
    } else if zone_eq {
        1
    } else {
        2
    };
    (place, usefulness(peer, announce, near_left_bytes))
}

/// 0 best: for a leecher seeders, then near-complete peers; for a seeder, leechers.
fn usefulness(peer: &PeerEntry, announce: &Announce, near_left_bytes: u64) -> u8 {
    if announce.left_bytes == 0 {
        u8::from(peer.left_bytes == 0)
    } else if peer.left_bytes == 0 {
        0
    } else if peer.left_bytes <= near_left_bytes {
        1
    } else {
        2
    }
}

/// A cheap 64-bit mix (splitmix64 finaliser) for per-candidate tie-breaks:
/// one ChaCha draw per announce, not one per candidate.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Picks up to `want` peers of `swarm` for the announcer at `me` (see module docs).
fn select_peers(
    swarm: &Swarm,
    announce: &Announce,
    me: SocketAddr,
    want: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<SocketAddr> {
    let n = swarm.peers.len();
    if want == 0 || n <= 1 {
        return Vec::new();
    }
    // Small swarms: every peer. Large: a window of 4·want slots at a random
    // start (slot order is arrival order reshuffled by removals).
    let (start, len) = if n <= FULL_SCAN_PEERS {
        (0, n)
    } else {
        (rng.random_range(0..n), want.saturating_mul(4).min(n))
    };
    let candidates = || {
        swarm
            .peers
            .iter()
            .cycle()
            .skip(start)
            .take(len)
            .filter(|p| p.addr != me)
    };
    let max_left = candidates().map(|p| p.left_bytes).max().unwrap_or(0);
    let near_left_bytes = max_left / 4;
    let salt: u64 = rng.random();
    let mut ranked: Vec<(u64, SocketAddr)> = Vec::with_capacity(len);
    for (i, p) in candidates().enumerate() {
        let (place, usefulness) = rank(p, announce, near_left_bytes);
        // Key: 2 bits place, 2 bits usefulness, 60 bits random tie-break.
        let tie = mix(salt ^ i as u64) >> 4;
        ranked.push((
            (u64::from(place) << 62) | (u64::from(usefulness) << 60) | tie,
            p.addr,
        ));
    }
    if ranked.len() > want {
        ranked.select_nth_unstable_by_key(want - 1, |(key, _)| *key);
        ranked.truncate(want);
    }
    ranked.sort_unstable_by_key(|(key, _)| *key);
    // Best first: clients that connect in list order reach the best peers first.
    ranked.into_iter().map(|(_, addr)| addr).collect()
}

#[cfg(test)]
mod tests;
