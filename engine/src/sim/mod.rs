//! Seeded deterministic discrete-event swarm simulator.
//!
//! Runs `N` downloading peers and one origin over modelled links ([`net`]: per-node upload and
//! download capacity, fair sharing, one-way latency) with no sockets and no wall clock. The same
//! [`SimConfig`] (seed included) always gives the same [`Report`] (except `wall_s`).
//!
//! Strategies ([`Strategy`]), the ones the client-server vs P2P comparison uses:
//! - `client-server`: the origin uploads the whole file to every peer at once, sharing its uplink;
//! - `replicas:K`: the origin first copies the file to `K` replica servers (uplink as the origin's),
//!   each of which then serves `N/K` peers the same way;
//! - `p2p`: every node runs a [`crate::core`] swarm state machine. Discovery
//!   ([`Discovery`]): by default the simulator plays the tracker (each peer starts connected
//!   to the origin and to random others); with [`Discovery::Tracker`] peers announce to a
//!   simulated tracker, dial through the core's dial policy ([`crate::core::dialer`]),
//!   exchange PEX and redial after churn, as p2pe nodes do.
//!
//! Node numbering: node 0 is the origin, nodes `1..=N` are the peers, further nodes are replica
//! servers or late joiners.
//!
//! Racks ([`RackSpec`], `p2p` only): peers behind shared top-of-rack links, the origin in no
//! rack; the report adds the topology bound `D_topo` and the bytes sent between racks
//! ([`racks`]).
#![deny(clippy::disallowed_methods)]

pub mod churn;
pub mod net;
pub mod queue;
pub mod racks;
pub mod report;
mod server;
mod swarm;
mod timeline;
pub mod units;

use std::str::FromStr;
use std::time::Duration;

use crate::core::Time;

pub use churn::ChurnSpec;
pub use net::{Sharing, UplinkOrder};
pub use racks::RackSpec;
pub use report::{GroupCompletion, Report};

/// How the file gets from the origin to the peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The origin uploads to every peer (seeds: "M-1").
    ClientServer,
    /// The origin copies to `K` replica servers which serve the peers (seeds: "M-2").
    Replicas(u32),
    /// Peers exchange pieces (BitTorrent; seeds: "M-4").
    P2p,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientServer => f.write_str("client-server"),
            Self::Replicas(k) => write!(f, "replicas:{k}"),
            Self::P2p => f.write_str("p2p"),
        }
    }
}

impl FromStr for Strategy {
    type Err = SimError;

    /// Parses `client-server`, `replicas:K` (K ≥ 1) or `p2p`.
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "client-server" | "cs" => Ok(Self::ClientServer),
            "p2p" => Ok(Self::P2p),
            _ => match s.strip_prefix("replicas:").map(str::parse::<u32>) {
                Some(Ok(k)) if k >= 1 => Ok(Self::Replicas(k)),
                _ => Err(SimError::BadStrategy(s.to_string())),
            },
        }
    }
}

/// How the peers of a `p2p` run find each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Discovery {
    /// Every peer starts connected to the origin and to `connections` random others;
    /// late joiners connect the same way (the simulator as the tracker).
    #[default]
    Connected,
    /// Peers announce to a tracker and dial what it and PEX tell them, bounded by
    /// `max_peers`, with the node's back-off (see `swarm::discovery`).
    Tracker,
}

impl std::fmt::Display for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connected => "connected",
            Self::Tracker => "tracker",
        })
    }
}

impl FromStr for Discovery {
    type Err = SimError;

    /// Parses `connected` or `tracker`.
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "connected" => Ok(Self::Connected),
            "tracker" => Ok(Self::Tracker),
            _ => Err(SimError::InvalidConfig(format!(
                "unknown discovery {s:?} (expected connected or tracker)"
            ))),
        }
    }
}

/// Tunables of [`Discovery::Tracker`] (ignored otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Most connections of a peer, inbound and outbound (the node's `max_peers`); the
    /// origin accepts every peer.
    pub max_peers: u32,
    /// Most peers in one tracker answer (`numwant`).
    pub numwant: u32,
    /// Interval of regular announces; a peer with fewer than a quarter of `max_peers`
    /// connections announces again after half of it (the tracker's `min interval`).
    pub announce_interval: Duration,
    /// Interval of `ut_pex` messages between peers (BEP 11; the node's datacenter one).
    pub pex_interval: Duration,
    /// The node's connection-slot policy ([`crate::core::slots`]): a dial to a frozen
    /// peer (the kernel accepts, no handshake comes) holds its slot until
    /// `handshake_timeout`; a dial to a full peer takes the slot of its oldest idle
    /// connection older than `reclaim_grace`, or is refused if none is idle.
    pub slots: crate::core::slots::SlotConfig,
}

impl Default for DiscoveryConfig {
    /// The node's defaults: 60 connections, 50 peers per answer, announces every 30 s,
    /// PEX every 2 s, the node's slot policy (10 s handshake timeout, 2 s reclaim grace).
    fn default() -> Self {
        DiscoveryConfig {
            max_peers: crate::core::dialer::DEFAULT_MAX_PEERS as u32,
            numwant: 50,
            announce_interval: Duration::from_secs(30),
            pex_interval: crate::core::pex::DATACENTER_INTERVAL,
            slots: crate::core::slots::SlotConfig::default(),
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range; the string says which.
    #[error("invalid simulation config: {0}")]
    InvalidConfig(String),
    /// Not `client-server`, `replicas:K` or `p2p`.
    #[error("unknown strategy {0:?} (expected client-server, replicas:K or p2p)")]
    BadStrategy(String),
    /// A `--churn` spec that does not parse; see [`churn`].
    #[error("bad churn spec {0}")]
    BadChurn(String),
}

/// Initial peers on other links than the rest ("a quarter of the peers on slow links"):
/// the last `count` of them. Rates in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowPeers {
    /// How many of the initial peers (0: none).
    pub count: u32,
    /// Their uplink.
    pub uplink_bytes_per_s: u64,
    /// Their downlink.
    pub downlink_bytes_per_s: u64,
}

/// Everything a run depends on. Rates in bytes per second, sizes in bytes, times in ns.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Downloading peers `N` (the origin is extra).
    pub peers: u32,
    /// File size `F` in bytes.
    pub size_bytes: u64,
    /// Piece length in bytes (see [`default_piece_len_bytes`]).
    pub piece_len_bytes: u32,
    /// Largest request, in bytes (16 KiB in BEP 3; up to a piece with the p2pe extension).
    pub block_len_bytes: u32,
    /// Each peer's uplink `u_i`.
    pub uplink_bytes_per_s: u64,
    /// The origin's (and replica servers') uplink `u_s`.
    pub seeder_uplink_bytes_per_s: u64,
    /// Each peer's downlink `d_i`.
    pub downlink_bytes_per_s: u64,
    /// A group of the initial peers on other links than `uplink_bytes_per_s` /
    /// `downlink_bytes_per_s` (default: none).
    pub slow_peers: SlowPeers,
    /// One-way latency of every connection.
    pub latency: Duration,
    /// Connections each peer opens to random other peers (`p2p`; the average degree is about
    /// twice this, plus the origin).
    pub connections: u32,
    /// Distribution strategy.
    pub strategy: Strategy,
    /// Peers leaving and joining (`p2p` only).
    pub churn: ChurnSpec,
    /// How peers find each other (`p2p` only; default: connected at start).
    pub discovery: Discovery,
    /// Tunables of tracker discovery.
    pub discovery_config: DiscoveryConfig,
    /// Peers that send corrupt data (`p2p` only).
    pub liars: u32,
    /// RNG seed.
    pub seed: u64,
    /// Give up after this much simulated time (a stuck swarm reports incomplete peers).
    pub max_time: Duration,
    /// Override of the core's `TorrentConfig::pipeline_bytes` (requests in flight per peer).
    pub pipeline_bytes: Option<u64>,
    /// Override of the core's `TorrentConfig::upload_in_flight_bytes` (blocks handed to the
    /// driver and not yet sent, per node).
    pub upload_in_flight_bytes: Option<u64>,
    /// Bytes of payload a connection's socket takes ahead of the wire (`p2p`): a block is
    /// reported sent to its core once it fits (the p2pe node reports a block when the
    /// kernel accepted it); control messages queue behind it like behind data on a TCP
    /// socket. 0 (the default): a block is reported at its last byte. See the docs of the
    /// driver's connection model.
    pub send_buffer_bytes: u64,
    /// Relay part length in bytes (`p2p`): the core's `TorrentConfig::relay_part_bytes`,
    /// negotiated by every connection; a piece then travels part by part and each verified
    /// part is forwarded at once (cut-through). 0 (the default): pieces relay whole.
    pub relay_part_bytes: u32,
    /// Override of the core's `ChokerConfig::snub_timeout` (a peer that holds our requests
    /// and sent no block for this long is snubbed and its requests re-issued elsewhere).
    pub snub_timeout: Option<Duration>,
    /// Unequal link sharing (`p2p`, water-fill): each block transfer gets a weight drawn from
    /// `1 ± sharing_jitter` (0..=1; 0, the default: fair sharing); see
    /// [`net::Net::set_jitter`]. A stand-in for TCP flows that share a bottleneck unevenly.
    pub sharing_jitter: f64,
    /// Print the state of every peer that did not complete (and why the run stopped) to stderr
    /// at the end of a `p2p` run; a debugging aid for stuck swarms.
    pub debug_stuck: bool,
    /// Link sharing model for `p2p` (the server strategies always use [`net::Sharing::Equal`],
    /// which is exact for them).
    pub sharing: net::Sharing,
    /// How a node's uplink divides itself between its block transfers (`p2p`, water-fill):
    /// fair (the default) or in the order its core handed the blocks out
    /// ([`net::UplinkOrder`]).
    pub uplink_order: net::UplinkOrder,
    /// Racks (`p2p`; `None`, the default: one flat switch).
    pub racks: Option<RackSpec>,
    /// Longest wait of a far-end link refill (`p2p`, water-fill, fair uplinks; see
    /// [`net::Net::set_far_refill_delay`]): `None` (the default) for
    /// [`SimConfig::auto_far_refill_delay`]; `Some(Duration::ZERO)` for immediate refills,
    /// the exact and O(degree²)-per-transfer model.
    pub far_refill_delay: Option<Duration>,
}

/// The automatic far-end refill delay is a block's time on a regular peer's whole uplink
/// divided by this. A block shares its uplink with ~16 others, so a far end's share is
/// stale for at most ~1/(16·this) of a block transfer.
/// Sized by measurement (`perf/sim.md`, "Deferred far-end refills").
pub const FAR_REFILL_BLOCK_DIVISOR: u64 = 8;

impl SimConfig {
    /// A config with the defaults `p2pe sim` uses, for `peers` peers, a file of `size_bytes`
    /// and `uplink_bytes_per_s` for every link.
    pub fn new(peers: u32, size_bytes: u64, uplink_bytes_per_s: u64) -> Self {
        let piece_len_bytes = default_piece_len_bytes(size_bytes);
        Self {
            peers,
            size_bytes,
            piece_len_bytes,
            block_len_bytes: piece_len_bytes,
            uplink_bytes_per_s,
            seeder_uplink_bytes_per_s: uplink_bytes_per_s,
            downlink_bytes_per_s: uplink_bytes_per_s,
            slow_peers: SlowPeers::default(),
            latency: Duration::from_micros(200),
            connections: 25,
            strategy: Strategy::P2p,
            churn: ChurnSpec::default(),
            discovery: Discovery::Connected,
            discovery_config: DiscoveryConfig::default(),
            liars: 0,
            seed: 1,
            max_time: Duration::from_secs(3_600),
            sharing: net::Sharing::WaterFill,
            uplink_order: net::UplinkOrder::Fair,
            pipeline_bytes: None,
            upload_in_flight_bytes: None,
            send_buffer_bytes: 0,
            relay_part_bytes: 0,
            sharing_jitter: 0.0,
            snub_timeout: None,
            debug_stuck: false,
            racks: None,
            far_refill_delay: None,
        }
    }

    /// The far-end refill delay used when [`SimConfig::far_refill_delay`] is `None`: one
    /// block's (with relay parts, one part's, when shorter) time on a regular peer's uplink over [`FAR_REFILL_BLOCK_DIVISOR`], at least
    /// 1 ns (e.g. 2 MiB at 40 Gbit/s: 52 us; 256 KiB at 100 Mbit/s: 2.6 ms).
    pub fn auto_far_refill_delay(&self) -> Duration {
        // With relay parts a part is what travels as one block.
        let block = match self.relay_part_bytes {
            0 => self.block_len_bytes,
            r => self.block_len_bytes.min(r),
        };
        let block_ns =
            u128::from(block) * 1_000_000_000 / u128::from(self.uplink_bytes_per_s.max(1));
        let ns = (block_ns / u128::from(FAR_REFILL_BLOCK_DIVISOR)).max(1);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.size_bytes
            .div_ceil(u64::from(self.piece_len_bytes.max(1))) as u32
    }

    /// Peers in the slow group: `slow_peers.count`, at most `peers`.
    pub fn slow_peer_count(&self) -> u32 {
        self.slow_peers.count.min(self.peers)
    }

    /// Whether initial peer `peer` (node `1..=peers`) is in the slow group: the last
    /// [`SimConfig::slow_peer_count`] of them (the graph is random, so which ones does not
    /// matter).
    pub fn is_slow_peer(&self, peer: u32) -> bool {
        peer >= 1 && peer <= self.peers && peer > self.peers - self.slow_peer_count()
    }

    /// `(uplink, downlink)` of initial peer `peer` (node `1..=peers`), bytes per second.
    /// Late joiners get the regular links.
    pub fn peer_links_bytes_per_s(&self, peer: u32) -> (u64, u64) {
        if self.is_slow_peer(peer) {
            (
                self.slow_peers.uplink_bytes_per_s,
                self.slow_peers.downlink_bytes_per_s,
            )
        } else {
            (self.uplink_bytes_per_s, self.downlink_bytes_per_s)
        }
    }

    /// `Σu_i` over the initial peers, bytes per second.
    pub fn sum_peer_uplinks_bytes_per_s(&self) -> f64 {
        (1..=self.peers)
            .map(|p| self.peer_links_bytes_per_s(p).0 as f64)
            .sum()
    }

    /// `d_min`, the smallest downlink of the initial peers, bytes per second.
    pub fn min_peer_downlink_bytes_per_s(&self) -> f64 {
        let regular = self.downlink_bytes_per_s as f64;
        if self.slow_peer_count() == 0 {
            regular
        } else if self.slow_peer_count() == self.peers {
            self.slow_peers.downlink_bytes_per_s as f64
        } else {
            regular.min(self.slow_peers.downlink_bytes_per_s as f64)
        }
    }

    /// `D_cs` for this config, in seconds.
    pub fn d_cs_s(&self) -> f64 {
        report::d_cs_s(
            self.peers,
            self.size_bytes,
            self.seeder_uplink_bytes_per_s as f64,
            self.min_peer_downlink_bytes_per_s(),
        )
    }

    /// `D_p2p` for this config, in seconds, with the actual per-peer links (`Σu_i` over every
    /// peer's uplink, `d_min` the smallest downlink).
    pub fn d_p2p_s(&self) -> f64 {
        report::d_p2p_s(
            self.peers,
            self.size_bytes,
            self.seeder_uplink_bytes_per_s as f64,
            self.sum_peer_uplinks_bytes_per_s(),
            self.min_peer_downlink_bytes_per_s(),
        )
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`SimError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |s: &str| Err(SimError::InvalidConfig(s.to_string()));
        if self.peers == 0 {
            return bad("peers must be at least 1");
        }
        if self.size_bytes == 0 {
            return bad("size must be at least 1 byte");
        }
        if self.piece_len_bytes == 0 || self.block_len_bytes == 0 {
            return bad("piece and block length must be at least 1 byte");
        }
        if self.block_len_bytes > self.piece_len_bytes {
            return bad("block length must not exceed the piece length");
        }
        if self.size_bytes.div_ceil(u64::from(self.piece_len_bytes)) > u64::from(u32::MAX) {
            return bad("too many pieces");
        }
        if self.uplink_bytes_per_s == 0
            || self.seeder_uplink_bytes_per_s == 0
            || self.downlink_bytes_per_s == 0
        {
            return bad("rates must be positive");
        }
        if self.slow_peers.count > self.peers {
            return bad("slow peers must not exceed peers");
        }
        if self.slow_peers.count > 0
            && (self.slow_peers.uplink_bytes_per_s == 0
                || self.slow_peers.downlink_bytes_per_s == 0)
        {
            return bad("slow peer rates must be positive");
        }
        if !(0.0..=1.0).contains(&self.sharing_jitter) {
            return bad("sharing jitter must be within 0..=1");
        }
        if self.liars >= self.peers {
            return bad("liars must be fewer than peers");
        }
        if self.strategy != Strategy::P2p && (!self.churn.is_none() || self.liars > 0) {
            return bad("churn and liars need --strategy p2p");
        }
        if self.discovery == Discovery::Tracker {
            if self.strategy != Strategy::P2p || self.racks.is_some() {
                return bad("tracker discovery needs --strategy p2p and no racks");
            }
            let joiners = (self.churn.join_fraction * f64::from(self.peers)).round();
            if f64::from(self.peers) + joiners >= f64::from(swarm::MAX_TRACKER_NODES) {
                return bad("tracker discovery supports fewer than 131,072 nodes");
            }
            let d = &self.discovery_config;
            if d.max_peers == 0 || d.announce_interval.is_zero() || d.pex_interval.is_zero() {
                return bad("max peers and discovery intervals must be positive");
            }
        }
        if let Strategy::Replicas(k) = self.strategy {
            if k > self.peers {
                return bad("replicas must not exceed peers");
            }
        }
        self.validate_racks()
    }
}

/// The default piece length for a file: a power of two giving about 1,000-2,000 pieces, within
/// 256 KiB..=16 MiB (BEP 3 leaves it to the creator; ~1,000 pieces keeps the picker cheap and
/// the pieces large enough that the per-piece overhead is small).
pub fn default_piece_len_bytes(size_bytes: u64) -> u32 {
    let mut len: u64 = 256 << 10;
    while len < (16 << 20) && size_bytes / len > 2_000 {
        len *= 2;
    }
    len as u32
}

/// Progress of a running simulation, for a progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Simulated time reached (the run starts at [`Time::ZERO`]).
    pub now: Time,
    /// Peers done.
    pub completed_peers: u32,
    /// Peers expected to finish.
    pub expected_peers: u32,
    /// Events processed.
    pub events: u64,
}

/// Runs one simulation.
///
/// # Errors
/// [`SimError::InvalidConfig`] when [`SimConfig::validate`] fails.
pub fn run(config: &SimConfig) -> Result<Report, SimError> {
    run_with_progress(config, &mut |_| {})
}

/// Runs one simulation, calling `progress` every so often (roughly every 2^16 events).
///
/// # Errors
/// [`SimError::InvalidConfig`] when [`SimConfig::validate`] fails.
pub fn run_with_progress(
    config: &SimConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, SimError> {
    config.validate()?;
    // The run's own wall time, reported beside its simulated time: a measurement
    // of the simulator, not an input to it.
    #[allow(clippy::disallowed_methods)]
    let wall = std::time::Instant::now();
    let mut report = match config.strategy {
        Strategy::ClientServer | Strategy::Replicas(_) => server::run(config, progress),
        Strategy::P2p => swarm::run(config, progress),
    };
    report.wall_s = wall.elapsed().as_secs_f64();
    Ok(report)
}

/// Builds a report from per-peer completion times and totals.
pub(crate) struct Outcome {
    /// Completion time of each expected peer that completed, and whether it is a slow peer.
    pub completions: Vec<(Time, bool)>,
    pub incomplete_peers: u32,
    /// Slow peers expected to complete (completed or not).
    pub slow_expected: u32,
    pub origin_up_bytes: f64,
    pub total_up_bytes: f64,
    /// Payload bytes sent from a peer in one rack to a peer in another.
    pub cross_rack_bytes: f64,
    pub events: u64,
}

/// Ascending completion times in seconds of the peers with `slow == which`.
fn sorted_secs(completions: &[(Time, bool)], which: Option<bool>) -> Vec<f64> {
    let mut secs: Vec<f64> = completions
        .iter()
        .filter(|(_, slow)| which.is_none_or(|w| w == *slow))
        .map(|&(t, _)| t.as_secs_f64())
        .collect();
    secs.sort_by(f64::total_cmp);
    secs
}

impl Outcome {
    pub(crate) fn into_report(self, config: &SimConfig) -> Report {
        let secs = sorted_secs(&self.completions, None);
        let max_s = secs.last().copied().unwrap_or(0.0);
        let d_p2p_s = config.d_p2p_s();
        let f = config.size_bytes as f64;
        let (slow, regular) = if self.slow_expected > 0 {
            let incomplete_slow = self
                .slow_expected
                .saturating_sub(self.completions.iter().filter(|(_, slow)| *slow).count() as u32);
            let slow = sorted_secs(&self.completions, Some(true));
            let regular = sorted_secs(&self.completions, Some(false));
            (
                Some(report::GroupCompletion::of(&slow, incomplete_slow)),
                Some(report::GroupCompletion::of(
                    &regular,
                    self.incomplete_peers.saturating_sub(incomplete_slow),
                )),
            )
        } else {
            (None, None)
        };
        Report {
            strategy: config.strategy.to_string(),
            seed: config.seed,
            peers: config.peers,
            size_bytes: config.size_bytes,
            piece_length_bytes: config.piece_len_bytes,
            completed_peers: secs.len() as u32,
            incomplete_peers: self.incomplete_peers,
            min_s: report::quantile(&secs, 0.0),
            median_s: report::quantile(&secs, 0.5),
            p99_s: report::quantile(&secs, 0.99),
            max_s,
            total_s: max_s,
            d_p2p_s,
            d_cs_s: config.d_cs_s(),
            ratio: max_s / d_p2p_s,
            origin_upload_copies: self.origin_up_bytes / f,
            racks: config.racks.map_or(0, |r| r.racks),
            rack_oblivious: config.racks.is_some_and(|r| r.oblivious),
            d_topo_s: config.d_topo_s(),
            ratio_topo: max_s / config.d_topo_s(),
            cross_rack_copies: self.cross_rack_bytes / f,
            upload_overhead: self.total_up_bytes / (f * config.peers as f64),
            slow_peers: config.slow_peer_count(),
            slow,
            regular,
            events: self.events,
            wall_s: 0.0,
            liars: config.liars,
            hash_failures: 0,
            bans: 0,
            protocol_errors: 0,
            integrity_violations: 0,
            peers_left: 0,
            peers_joined: 0,
            peers_frozen: 0,
            origin_left_s: None,
            discovery: config.discovery.to_string(),
            dials: 0,
            connections_made: 0,
            failed_dials: 0,
            refused_dials: 0,
            timed_out_dials: 0,
            reclaimed_slots: 0,
            joiner_connections: 0,
            peak_peer_connections: 0,
            pex_learned: 0,
            tracker_learned: 0,
            announces: 0,
            timeline_bin_s: 0.0,
            upload_timeline: Vec::new(),
            origin_timeline: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_print() {
        for s in ["client-server", "replicas:10", "p2p"] {
            assert_eq!(s.parse::<Strategy>().unwrap().to_string(), s);
        }
        assert!("replicas:0".parse::<Strategy>().is_err());
        assert!("replicas:".parse::<Strategy>().is_err());
        assert!("mesh".parse::<Strategy>().is_err());
    }

    #[test]
    fn auto_far_refill_delay_is_an_eighth_of_a_block_on_the_uplink() {
        // 2 MiB at 40 Gbit/s (5 GB/s): 419,430 ns per block.
        let mut c = SimConfig::new(10, 500_000_000, 5_000_000_000);
        c.piece_len_bytes = 2 << 20;
        c.block_len_bytes = 2 << 20;
        assert_eq!(c.auto_far_refill_delay(), Duration::from_nanos(52_428));
        // 16 KiB blocks at 1 Tbit/s: under a nanosecond, kept at 1 ns.
        c.block_len_bytes = 16 << 10;
        c.uplink_bytes_per_s = 125_000_000_000;
        assert_eq!(c.auto_far_refill_delay(), Duration::from_nanos(16));
        c.block_len_bytes = 1;
        assert_eq!(c.auto_far_refill_delay(), Duration::from_nanos(1));
    }

    #[test]
    fn default_piece_lengths() {
        assert_eq!(default_piece_len_bytes(5_000_000_000), 4 << 20);
        assert_eq!(default_piece_len_bytes(500_000_000), 256 << 10);
        assert_eq!(default_piece_len_bytes(2_000_000_000), 1 << 20);
        assert_eq!(default_piece_len_bytes(1000), 256 << 10);
        assert_eq!(default_piece_len_bytes(u64::MAX / 2), 16 << 20);
    }

    #[test]
    fn slow_peers_set_d_min_and_sum_of_uplinks() {
        // The issue-5 row: 14 peers at 100 Mbit/s, 4 of them at 20, origin 400, 64 MiB.
        let mut c = SimConfig::new(14, 64 << 20, 12_500_000);
        c.seeder_uplink_bytes_per_s = 50_000_000;
        c.slow_peers = SlowPeers {
            count: 4,
            uplink_bytes_per_s: 2_500_000,
            downlink_bytes_per_s: 2_500_000,
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.slow_peer_count(), 4);
        assert!(!c.is_slow_peer(10) && c.is_slow_peer(11) && c.is_slow_peer(14));
        assert!(!c.is_slow_peer(0) && !c.is_slow_peer(15));
        assert_eq!(c.peer_links_bytes_per_s(14), (2_500_000, 2_500_000));
        assert_eq!(c.peer_links_bytes_per_s(1), (12_500_000, 12_500_000));
        assert_eq!(
            c.sum_peer_uplinks_bytes_per_s(),
            10.0 * 12.5e6 + 4.0 * 2.5e6
        );
        let f = (64u64 << 20) as f64;
        // F/d_min binds: 26.84 s.
        assert!((c.d_p2p_s() - f / 2.5e6).abs() < 1e-9);
        assert!((c.d_cs_s() - (14.0 * f / 5e7).max(f / 2.5e6)).abs() < 1e-9);
        // The aggregate term sees the slow uplinks (fast downlinks and origin).
        c.slow_peers.downlink_bytes_per_s = 1_000_000_000;
        c.downlink_bytes_per_s = 1_000_000_000;
        c.seeder_uplink_bytes_per_s = 1_000_000_000;
        assert!((c.d_p2p_s() - 14.0 * f / (1e9 + 10.0 * 12.5e6 + 4.0 * 2.5e6)).abs() < 1e-9);
        c.slow_peers.count = 15;
        assert!(c.validate().is_err());
        c.slow_peers = SlowPeers {
            count: 1,
            ..SlowPeers::default()
        };
        assert!(c.validate().is_err(), "zero slow rates");
    }

    #[test]
    fn client_server_reports_the_slow_group() {
        // 4 peers, one on a 10x slower downlink: it finishes at F/d_slow, the others at
        // 4F/u_s while it is still downloading (equal split, then the slow one's share).
        let mut c = SimConfig::new(4, 100_000_000, 1_000_000_000);
        c.strategy = Strategy::ClientServer;
        c.slow_peers = SlowPeers {
            count: 1,
            uplink_bytes_per_s: 10_000_000,
            downlink_bytes_per_s: 10_000_000,
        };
        let r = run(&c).unwrap();
        let slow = r.slow.unwrap();
        let regular = r.regular.unwrap();
        assert_eq!((r.slow_peers, slow.completed, regular.completed), (1, 1, 3));
        assert!((slow.max_s - 10.0002).abs() < 1e-6, "{r:?}");
        assert!(regular.max_s < slow.min_s, "{r:?}");
        assert!((r.total_s - slow.max_s).abs() < 1e-12);
        assert!((r.d_p2p_s - 10.0).abs() < 1e-9);
        // Without a slow group there are no group figures.
        c.slow_peers = SlowPeers::default();
        let r = run(&c).unwrap();
        assert!(r.slow.is_none() && r.regular.is_none() && r.slow_peers == 0);
    }
}
