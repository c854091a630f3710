//! The result of a run, and the reference bounds it is compared with.
//!
//! Bounds (Kurose & Ross, *Computer Networking*, §2.5 "Peer-to-peer file distribution"): with
//! file size `F`, `N` downloading peers, origin uplink `u_s`, peer uplinks `u_i` and smallest peer
//! downlink `d_min`,
//! - client-server: `D_cs = max(N·F/u_s, F/d_min)`;
//! - peer-to-peer: `D_p2p = max(F/u_s, F/d_min, N·F/(u_s + Σu_i))`, a lower bound for any scheme.

use serde::Serialize;

/// `D_cs` in seconds: the client-server distribution time. Rates in bytes per second.
pub fn d_cs_s(
    peers: u32,
    size_bytes: u64,
    origin_up_bytes_per_s: f64,
    d_min_bytes_per_s: f64,
) -> f64 {
    let f = size_bytes as f64;
    (peers as f64 * f / origin_up_bytes_per_s).max(f / d_min_bytes_per_s)
}

/// `D_p2p` in seconds: the peer-to-peer lower bound. `sum_peer_up_bytes_per_s` is `Σu_i`.
pub fn d_p2p_s(
    peers: u32,
    size_bytes: u64,
    origin_up_bytes_per_s: f64,
    sum_peer_up_bytes_per_s: f64,
    d_min_bytes_per_s: f64,
) -> f64 {
    let f = size_bytes as f64;
    (f / origin_up_bytes_per_s)
        .max(f / d_min_bytes_per_s)
        .max(peers as f64 * f / (origin_up_bytes_per_s + sum_peer_up_bytes_per_s))
}

/// The `q`-quantile (0..=1, nearest rank) of an ascending slice; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Completion of one group of peers, in simulated seconds (0 when none completed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GroupCompletion {
    /// Peers of the group that completed.
    pub completed: u32,
    /// Peers of the group expected to complete that did not.
    pub incomplete: u32,
    /// Earliest completion.
    pub min_s: f64,
    /// Median completion.
    pub median_s: f64,
    /// Latest completion.
    pub max_s: f64,
}

impl GroupCompletion {
    /// The completion figures of `sorted` (ascending seconds), with `incomplete` peers that
    /// did not finish.
    pub fn of(sorted: &[f64], incomplete: u32) -> Self {
        GroupCompletion {
            completed: sorted.len() as u32,
            incomplete,
            min_s: quantile(sorted, 0.0),
            median_s: quantile(sorted, 0.5),
            max_s: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// Outcome of one simulation run. Times are simulated seconds from the start of the run.
///
/// Field names are a stable interface (`p2pe sim --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Strategy that ran: `client-server`, `replicas:K` or `p2p`.
    pub strategy: String,
    /// RNG seed of the run.
    pub seed: u64,
    /// Downloading peers `N` at the start (the origin and replica servers excluded).
    pub peers: u32,
    /// File size `F` in bytes.
    pub size_bytes: u64,
    /// Piece length in bytes.
    pub piece_length_bytes: u32,
    /// Peers that were expected to finish (stayed, honest, incl. late joiners) and did.
    pub completed_peers: u32,
    /// Peers that were expected to finish but had not when the run stopped.
    pub incomplete_peers: u32,
    /// Earliest peer completion.
    pub min_s: f64,
    /// Median peer completion.
    pub median_s: f64,
    /// 99th-percentile peer completion.
    pub p99_s: f64,
    /// Latest peer completion.
    pub max_s: f64,
    /// Time until every peer that should finish has the whole file (= `max_s`).
    pub total_s: f64,
    /// `D_p2p`, the peer-to-peer lower bound (see module docs).
    pub d_p2p_s: f64,
    /// `D_cs`, the client-server distribution time (see module docs).
    pub d_cs_s: f64,
    /// `total_s / d_p2p_s`: 1.0 is optimal.
    pub ratio: f64,
    /// Bytes the origin uploaded, divided by the file size.
    pub origin_upload_copies: f64,
    /// Racks `R` (0: one flat switch; see [`super::racks`]).
    pub racks: u32,
    /// The rack labels were ignored (`--rack-oblivious`).
    pub rack_oblivious: bool,
    /// `D_topo`, the lower bound for the topology (`D_p2p` without racks; see
    /// `docs/topology.md`).
    pub d_topo_s: f64,
    /// `total_s / d_topo_s`.
    pub ratio_topo: f64,
    /// Payload sent from a peer in one rack to a peer in another (over rack uplinks),
    /// divided by the file size; the origin's uploads are not counted. At least
    /// `(R - 1)` when the origin sends one copy.
    pub cross_rack_copies: f64,
    /// Bytes uploaded by everyone, divided by `N·F` (1.0 = no duplicate data).
    pub upload_overhead: f64,
    /// Initial peers on the other links of `--slow-peers` (0: every peer alike).
    pub slow_peers: u32,
    /// Completion of the slow group (`None` without one).
    pub slow: Option<GroupCompletion>,
    /// Completion of the other peers (`None` without a slow group; then it is everyone).
    pub regular: Option<GroupCompletion>,
    /// Simulation events processed.
    pub events: u64,
    /// Wall-clock seconds the run took (the only non-deterministic field).
    pub wall_s: f64,
    /// Peers that sent corrupt data (`--liars`).
    pub liars: u32,
    /// Pieces that failed verification anywhere.
    pub hash_failures: u64,
    /// Connections closed by a ban.
    pub bans: u64,
    /// Protocol errors the core reported on peer input (0 in a correct run).
    pub protocol_errors: u64,
    /// Breaches of data integrity the simulator caught: an honest node sending a block of a
    /// piece it has not verified, or completing without verifying every piece (0 always).
    pub integrity_violations: u64,
    /// Peers that left during the run (churn).
    pub peers_left: u32,
    /// Peers that joined late (churn).
    pub peers_joined: u32,
    /// Peers that froze (churn `freeze`: connected, silent, never reading).
    pub peers_frozen: u32,
    /// When the origin left, if it did.
    pub origin_left_s: Option<f64>,
    /// How peers found each other: `connected` (at start) or `tracker`.
    pub discovery: String,
    /// Dials the peers' dial policies handed out (tracker discovery; 0 otherwise).
    pub dials: u64,
    /// Of those, the ones that opened a connection.
    pub connections_made: u64,
    /// Of those, the ones that failed because the peer had left or frozen, each followed
    /// by a back-off or, after the book's `max_failures`, retirement.
    pub failed_dials: u64,
    /// Of those, the ones the peer refused at its `max_peers` bound (backed off alike).
    pub refused_dials: u64,
    /// Of the failed dials, those to a frozen peer: the connection opened, no handshake
    /// came, and the dialler closed it after the slot policy's `handshake_timeout`.
    pub timed_out_dials: u64,
    /// Dials that reached a peer at its bound and took the slot of its oldest idle
    /// connection ([`crate::core::slots::reclaim_victim`]) instead of being refused.
    pub reclaimed_slots: u64,
    /// Connections made between a late joiner and another peer (not the origin).
    pub joiner_connections: u64,
    /// Most connections any peer (not the origin) had open at once.
    pub peak_peer_connections: u32,
    /// Addresses peers first learned from a `ut_pex` message.
    pub pex_learned: u64,
    /// Addresses peers first learned from a tracker answer.
    pub tracker_learned: u64,
    /// Tracker announces.
    pub announces: u64,
    /// Width of one bin of the timelines below, in seconds (`D_p2p / 10`; for the server
    /// strategies a twentieth of the run when that is longer).
    pub timeline_bin_s: f64,
    /// Per bin: bytes uploaded by everyone ÷ (bin × (u_s + Σu_i)), i.e. how busy all uplinks
    /// together were (`replicas:K` adds the replicas' uplinks to the capacity). Each
    /// transfer's bytes are spread evenly over its time on the link.
    pub upload_timeline: Vec<f64>,
    /// Per bin: bytes the origin uploaded ÷ (bin × u_s).
    pub origin_timeline: Vec<f64>,
}

impl Report {
    /// The same report with `wall_s` zeroed, for comparing runs for determinism.
    pub fn without_wall_time(&self) -> Self {
        Self {
            wall_s: 0.0,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_scenario_bounds() {
        // 5 GB to 1,000 peers at 40 Gbit/s everywhere: D_cs = 1000 s, D_p2p = 1 s.
        let u = 5e9;
        assert!((d_cs_s(1000, 5_000_000_000, u, u) - 1000.0).abs() < 1e-9);
        assert!((d_p2p_s(1000, 5_000_000_000, u, 1000.0 * u, u) - 1.0).abs() < 1e-9);
        // Slow peers: the aggregate term binds.
        let p2p = d_p2p_s(1000, 5_000_000_000, u, 1000.0 * 1e8, u);
        assert!((p2p - 1000.0 * 5e9 / (u + 1e11)).abs() < 1e-9);
    }

    #[test]
    fn quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
