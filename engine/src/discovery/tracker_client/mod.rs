//! The tracker client, sans-IO: whom to announce to, when, and with what
//! (BEP 3 announces and events, BEP 12 multitracker tiers, BEP 15 connect,
//! connection-id reuse and retransmit).
//!
//! The driver ([`crate::discovery::tracker_io`], or a test) sends what
//! [`TrackerClient::poll_request`] yields, feeds answers back through
//! [`TrackerClient::handle_response`] / [`TrackerClient::handle_error`], and calls
//! [`TrackerClient::handle_timeout`] at [`TrackerClient::poll_timeout`].
//!
//! # Behaviour
//!
//! - One announce is in flight at a time. A round walks the trackers in tier
//!   order (BEP 12: tiers in order, each tier shuffled once at start); the first
//!   tracker that answers ends the round and moves to the front of its tier.
//! - A tracker that times out, sends garbage, a `failure reason` or an
//!   oversized answer is skipped for this round and a warning is queued
//!   ([`TrackerClient::poll_warning`]). When every tracker failed, the next round
//!   waits `retry_base · 2^n` (n = failed rounds in a row), capped at `retry_max`.
//! - UDP (BEP 15): a connection id is reused for [`CONNECTION_ID_TTL`]; an
//!   unanswered packet is re-sent after `udp_timeout · 2^n` for n = 0 ..=
//!   `udp_max_retries` (BEP 15 uses 15 s and n ≤ 8; the default stops at n = 2 so
//!   a dead tracker costs 105 s before the next one is tried).
//! - Regular announces follow the tracker's `interval`, clamped to
//!   [`ClientConfig::interval_floor`, `interval_cap`] and never sooner than its
//!   `min interval`. `started`, `completed` and `stopped` go out at once and are
//!   repeated until one tracker accepts them. After `stopped` the client is done.
//!
//! # Invariants
//!
//! - At most one request is in flight; `poll_request` yields each packet once.
//! - A response from a tracker that is not the one in flight, or with a stale
//!   BEP 15 transaction id, is ignored (it cannot complete a round).

mod state;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::base::PeerId;
use crate::core::time::Time;
use crate::wire::metainfo::InfoHash;
use crate::wire::tracker::{Event, Topology};
use state::{InFlight, Stage, TrackerState};

/// How long a BEP 15 connection id may be used after it was received: 60 s.
pub const CONNECTION_ID_TTL: Duration = Duration::from_secs(60);

/// Most peers buffered between two [`TrackerClient::poll_peers`] calls.
pub const MAX_BUFFERED_PEERS: usize = 4096;

/// Index of a tracker in the client's list (announce-list order, flattened).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackerId(pub u32);

/// What the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// An HTTP GET of `url` (announce query included). The driver reads at most
    /// [`crate::wire::tracker::MAX_HTTP_RESPONSE_BYTES`] of body.
    Http {
        /// The full URL.
        url: String,
    },
    /// A BEP 15 datagram to `host_port` (`host:port`, IPv6 literals in brackets).
    /// The driver resolves the host preferring IPv4 and sends from a socket of
    /// that family; the answer comes back through `handle_response`.
    Udp {
        /// `host:port` of the tracker.
        host_port: String,
        /// The datagram.
        payload: Vec<u8>,
    },
}

/// Tracker client settings. Durations are wall-clock spans.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How long an HTTP announce may take before it counts as failed.
    pub http_timeout: Duration,
    /// First BEP 15 retransmit timeout (BEP 15: 15 s), doubled per retry.
    pub udp_timeout: Duration,
    /// BEP 15 retries after the first send (BEP 15 allows 8).
    pub udp_max_retries: u32,
    /// First delay after a round in which every tracker failed; doubled per failed round.
    pub retry_base: Duration,
    /// Largest delay between failed rounds.
    pub retry_max: Duration,
    /// Shortest announce interval obeyed, whatever the tracker says.
    pub interval_floor: Duration,
    /// Longest announce interval obeyed, whatever the tracker says.
    pub interval_cap: Duration,
    /// `numwant` sent with each announce.
    pub numwant: Option<u32>,
    /// Topology labels sent with each announce (p2pe extension).
    pub topology: Topology,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            http_timeout: Duration::from_secs(15),
            udp_timeout: Duration::from_secs(15),
            udp_max_retries: 2,
            // A first announce lost to a dropped SYN is retried within
            // seconds (a leecher without peers waits on it); 5 s · 2ⁿ still
            // keeps a dead tracker's load negligible.
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(30 * 60),
            interval_floor: Duration::from_secs(5),
            interval_cap: Duration::from_secs(60 * 60),
            numwant: Some(50),
            topology: Topology::default(),
        }
    }
}

/// The tracker client of one torrent (sans-IO; see the module docs).
#[derive(Debug)]
pub struct TrackerClient {
    config: ClientConfig,
    trackers: Vec<TrackerState>,
    /// BEP 12 tiers of indices into `trackers`, shuffled within each tier.
    tiers: Vec<Vec<usize>>,
    info_hash: InfoHash,
    peer_id: PeerId,
    port: u16,
    key: u32,
    rng: ChaCha8Rng,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    left_bytes: u64,
    /// The event to deliver with the next announce.
    pending_event: Event,
    /// When the next round may start (`Time::MAX`: none planned).
    next_announce: Time,
    /// Earliest time a regular announce may go out (`min interval`).
    not_before: Time,
    failed_rounds: u32,
    in_flight: Option<InFlight>,
    outbox: Option<(TrackerId, Request)>,
    peers: Vec<SocketAddr>,
    warnings: Vec<String>,
    swarm_counts: Option<(u32, u32)>,
    announces_ok: u32,
    announces_failed: u32,
    stopped: bool,
}

impl TrackerClient {
    /// A client for `tiers` of announce URLs (the metainfo's announce-list).
    /// URLs other than `http://`, `https://` and `udp://` are skipped with a
    /// warning. The first announce (`started`) is due at the first
    /// [`TrackerClient::handle_timeout`]. `seed` drives tier shuffles, the
    /// announce `key` and transaction ids.
    pub fn new(
        config: ClientConfig,
        tiers: &[Vec<String>],
        info_hash: InfoHash,
        peer_id: PeerId,
        port: u16,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut trackers = Vec::new();
        let mut warnings = Vec::new();
        let mut tier_list = Vec::new();
        for tier in tiers {
            let mut ids = Vec::new();
            for url in tier {
                match TrackerState::parse(url) {
                    Some(t) => {
                        ids.push(trackers.len());
                        trackers.push(t);
                    }
                    None => warnings.push(format!("skipping tracker {url}: unsupported URL")),
                }
            }
            ids.shuffle(&mut rng);
            if !ids.is_empty() {
                tier_list.push(ids);
            }
        }
        Self {
            config,
            trackers,
            tiers: tier_list,
            info_hash,
            peer_id,
            port,
            key: rng.random(),
            rng,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            left_bytes: 0,
            pending_event: Event::Started,
            next_announce: Time::ZERO,
            not_before: Time::ZERO,
            failed_rounds: 0,
            in_flight: None,
            outbox: None,
            peers: Vec::new(),
            warnings,
            swarm_counts: None,
            announces_ok: 0,
            announces_failed: 0,
            stopped: false,
        }
    }

    /// Records transfer progress for the next announce (bytes this session;
    /// `left_bytes` 0 means seeding).
    pub fn set_progress(&mut self, uploaded_bytes: u64, downloaded_bytes: u64, left_bytes: u64) {
        self.uploaded_bytes = uploaded_bytes;
        self.downloaded_bytes = downloaded_bytes;
        self.left_bytes = left_bytes;
    }

    /// The download completed: announce `completed` now (BEP 3).
    pub fn handle_completed(&mut self, now: Time) {
        if !self.stopped && self.pending_event != Event::Started {
            self.pending_event = Event::Completed;
            self.announce_soon(now);
        }
    }

    /// The torrent is leaving: announce `stopped` now, then go quiet. A
    /// `stopped` announce is tried once per tracker, without retry rounds.
    pub fn handle_stopped(&mut self, now: Time) {
        if self.stopped {
            return;
        }
        self.pending_event = Event::Stopped;
        self.stopped = true;
        self.failed_rounds = 0;
        // Abandon whatever is in flight: the goodbye matters more, and a
        // failing round would otherwise end without ever sending it.
        self.in_flight = None;
        self.outbox = None;
        self.next_announce = now;
    }

    /// Ask for more peers: announce as soon as the tracker's `min interval`
    /// allows. Does not cut short the back-off after failed rounds.
    pub fn handle_want_peers(&mut self, now: Time) {
        if self.in_flight.is_none() && !self.is_done() && self.failed_rounds == 0 {
            self.next_announce = self.next_announce.min(self.not_before.max(now));
        }
    }

    /// Whether the client has nothing more to do (after `stopped`, or without trackers).
    pub fn is_done(&self) -> bool {
        self.trackers.is_empty() || (self.stopped && self.pending_event != Event::Stopped)
    }

    /// The next request to send, if any; each is yielded once.
    pub fn poll_request(&mut self) -> Option<(TrackerId, Request)> {
        self.outbox.take()
    }

    /// Peers learned since the last call.
    pub fn poll_peers(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.peers)
    }

    /// The next warning to log (dead, slow or lying trackers), if any.
    pub fn poll_warning(&mut self) -> Option<String> {
        if self.warnings.is_empty() {
            None
        } else {
            Some(self.warnings.remove(0))
        }
    }

    /// When [`TrackerClient::handle_timeout`] must next be called (`Time::MAX`: never).
    pub fn poll_timeout(&self) -> Time {
        match &self.in_flight {
            Some(f) => f.deadline,
            None if self.is_done() => Time::MAX,
            None => self.next_announce,
        }
    }

    /// Seeders and leechers as last reported by a tracker.
    pub fn swarm_counts(&self) -> Option<(u32, u32)> {
        self.swarm_counts
    }

    /// Announces a tracker accepted so far (each round ends at the first).
    pub fn announces_ok(&self) -> u32 {
        self.announces_ok
    }

    /// Announces that failed so far (no answer in time, an error from the
    /// driver, a failure reason or a malformed answer), one per tracker tried.
    pub fn announces_failed(&self) -> u32 {
        self.announces_failed
    }

    /// Drives retransmits, timeouts and announce scheduling.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(flight) = &self.in_flight {
            if now >= flight.deadline {
                self.on_deadline(now);
            }
            return;
        }
        if !self.is_done() && now >= self.next_announce {
            self.start_round(now);
        }
    }

    fn announce_soon(&mut self, now: Time) {
        if self.in_flight.is_none() {
            self.next_announce = now;
        }
        // With a round in flight, the event rides on the next round, which
        // starts as soon as this one ends (see `finish_round`).
    }

    fn start_round(&mut self, now: Time) {
        let Some(first) = self.tiers.first().and_then(|t| t.first()).copied() else {
            return;
        };
        self.send_to(now, first, 0, 0);
    }

    /// A tracker failed: warn, then try the next tracker of this round or end it.
    fn fail_current(&mut self, now: Time, reason: String) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.announces_failed = self.announces_failed.saturating_add(1);
        let url = self
            .trackers
            .get(flight.tracker)
            .map_or("?", |t| t.url.as_str());
        self.warnings
            .push(format!("tracker {url}: {reason}; trying the next one"));
        if let Some(t) = self.trackers.get_mut(flight.tracker) {
            t.connection = None;
        }
        match self.next_position(flight.tier, flight.pos) {
            Some((tier, pos, idx)) => self.send_to(now, idx, tier, pos),
            None => self.finish_round(now, false),
        }
    }

    fn next_position(&self, tier: usize, pos: usize) -> Option<(usize, usize, usize)> {
        let in_tier = self.tiers.get(tier).and_then(|t| t.get(pos + 1));
        if let Some(&idx) = in_tier {
            return Some((tier, pos + 1, idx));
        }
        let next_tier = self.tiers.get(tier + 1).and_then(|t| t.first());
        next_tier.map(|&idx| (tier + 1, 0, idx))
    }

    fn finish_round(&mut self, now: Time, success: bool) {
        if success {
            self.failed_rounds = 0;
        } else if self.pending_event == Event::Stopped {
            // Nobody heard the goodbye; peers will expire from the trackers.
            self.pending_event = Event::None;
            self.next_announce = Time::MAX;
        } else {
            let backoff = self
                .config
                .retry_base
                .saturating_mul(1u32 << self.failed_rounds.min(20))
                .min(self.config.retry_max);
            self.failed_rounds = self.failed_rounds.saturating_add(1);
            self.next_announce = now + backoff;
            self.warnings.push(format!(
                "all trackers failed; retrying in {} s",
                backoff.as_secs()
            ));
        }
    }
}

impl TrackerClient {
    /// Schedules the next regular announce after a successful one.
    fn schedule_after_success(&mut self, now: Time, interval_s: u32, min_interval_s: Option<u32>) {
        let interval = Duration::from_secs(interval_s.into())
            .clamp(self.config.interval_floor, self.config.interval_cap);
        let min_interval = Duration::from_secs(min_interval_s.unwrap_or(0).into())
            .min(interval)
            .max(self.config.interval_floor.min(interval));
        self.not_before = now + min_interval;
        self.next_announce = if self.pending_event != Event::None {
            now // an event arrived during the round
        } else if self.stopped {
            Time::MAX
        } else {
            now + interval
        };
    }

    fn stage_of(&self, idx: usize, now: Time) -> Stage {
        match self.trackers.get(idx).map(|t| (&t.kind, t.connection)) {
            Some((state::Kind::Udp { .. }, Some((id, at))))
                if now.saturating_duration_since(at) < CONNECTION_ID_TTL =>
            {
                Stage::UdpAnnounce(id)
            }
            Some((state::Kind::Udp { .. }, _)) => Stage::UdpConnect,
            _ => Stage::Http,
        }
    }
}
