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
//! - `p2p`: every node runs a [`crate::core`] swarm state machine; the simulator plays the
//!   tracker (each peer connects to the origin and to random others).
//!
//! Node numbering: node 0 is the origin, nodes `1..=N` are the peers, further nodes are replica
//! servers or late joiners.

pub mod churn;
pub mod net;
pub mod queue;
pub mod report;
mod server;
mod swarm;
pub mod units;

use std::str::FromStr;

pub use churn::ChurnSpec;
pub use net::Sharing;
pub use queue::Nanos;
pub use report::Report;

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
    /// One-way latency of every connection.
    pub latency_ns: Nanos,
    /// Connections each peer opens to random other peers (`p2p`; the average degree is about
    /// twice this, plus the origin).
    pub connections: u32,
    /// Distribution strategy.
    pub strategy: Strategy,
    /// Peers leaving and joining (`p2p` only).
    pub churn: ChurnSpec,
    /// Peers that send corrupt data (`p2p` only).
    pub liars: u32,
    /// RNG seed.
    pub seed: u64,
    /// Give up after this much simulated time (a stuck swarm reports incomplete peers).
    pub max_time_ns: Nanos,
    /// Override of the core's `TorrentConfig::pipeline_bytes` (requests in flight per peer).
    pub pipeline_bytes: Option<u64>,
    /// Override of the core's `TorrentConfig::upload_in_flight_bytes` (blocks handed to the
    /// driver and not yet sent, per node).
    pub upload_in_flight_bytes: Option<u64>,
    /// Print the state of every peer that did not complete (and why the run stopped) to stderr
    /// at the end of a `p2p` run; a debugging aid for stuck swarms.
    pub debug_stuck: bool,
    /// Link sharing model for `p2p` (the server strategies always use [`net::Sharing::Equal`],
    /// which is exact for them).
    pub sharing: net::Sharing,
}

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
            latency_ns: 200_000,
            connections: 25,
            strategy: Strategy::P2p,
            churn: ChurnSpec::default(),
            liars: 0,
            seed: 1,
            max_time_ns: 3_600 * 1_000_000_000,
            sharing: net::Sharing::WaterFill,
            pipeline_bytes: None,
            upload_in_flight_bytes: None,
            debug_stuck: false,
        }
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.size_bytes
            .div_ceil(u64::from(self.piece_len_bytes.max(1))) as u32
    }

    /// `D_cs` for this config, in seconds.
    pub fn d_cs_s(&self) -> f64 {
        report::d_cs_s(
            self.peers,
            self.size_bytes,
            self.seeder_uplink_bytes_per_s as f64,
            self.downlink_bytes_per_s as f64,
        )
    }

    /// `D_p2p` for this config, in seconds.
    pub fn d_p2p_s(&self) -> f64 {
        report::d_p2p_s(
            self.peers,
            self.size_bytes,
            self.seeder_uplink_bytes_per_s as f64,
            self.peers as f64 * self.uplink_bytes_per_s as f64,
            self.downlink_bytes_per_s as f64,
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
        if self.liars >= self.peers {
            return bad("liars must be fewer than peers");
        }
        if self.strategy != Strategy::P2p && (!self.churn.is_none() || self.liars > 0) {
            return bad("churn and liars need --strategy p2p");
        }
        if let Strategy::Replicas(k) = self.strategy {
            if k > self.peers {
                return bad("replicas must not exceed peers");
            }
        }
        Ok(())
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
    /// Simulated time reached.
    pub now_ns: Nanos,
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
    let wall = std::time::Instant::now();
    let mut report = match config.strategy {
        Strategy::ClientServer | Strategy::Replicas(_) => server::run(config, progress),
        Strategy::P2p => swarm::run(config, progress),
    };
    report.wall_s = wall.elapsed().as_secs_f64();
    Ok(report)
}

/// Builds a report from per-peer completion times (ns) and totals.
pub(crate) struct Outcome {
    pub completion_ns: Vec<Nanos>,
    pub incomplete_peers: u32,
    pub origin_up_bytes: f64,
    pub total_up_bytes: f64,
    pub events: u64,
}

impl Outcome {
    pub(crate) fn into_report(self, config: &SimConfig) -> Report {
        let mut secs: Vec<f64> = self
            .completion_ns
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .collect();
        secs.sort_by(f64::total_cmp);
        let max_s = secs.last().copied().unwrap_or(0.0);
        let d_p2p_s = config.d_p2p_s();
        let f = config.size_bytes as f64;
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
            upload_overhead: self.total_up_bytes / (f * config.peers as f64),
            events: self.events,
            wall_s: 0.0,
            liars: config.liars,
            hash_failures: 0,
            bans: 0,
            protocol_errors: 0,
            integrity_violations: 0,
            peers_left: 0,
            peers_joined: 0,
            origin_left_s: None,
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
    fn default_piece_lengths() {
        assert_eq!(default_piece_len_bytes(5_000_000_000), 4 << 20);
        assert_eq!(default_piece_len_bytes(500_000_000), 256 << 10);
        assert_eq!(default_piece_len_bytes(2_000_000_000), 1 << 20);
        assert_eq!(default_piece_len_bytes(1000), 256 << 10);
        assert_eq!(default_piece_len_bytes(u64::MAX / 2), 16 << 20);
    }
}
