//! The swarm benchmark: one tracker, one origin seeder and N-2 leechers, each
//! on its own emulated host ([`crate::netns`]), all leechers released at one
//! instant; per-leecher completion, origin upload, CPU, and the D_cs / D_p2p
//! references.
//!
//! Host layout: host 0 runs the tracker, host 1 the origin, hosts 2.. the
//! leechers (slow ones last). The same [`Lan`] serves every client and
//! repetition of a run, so clients are compared on identical links.
//!
//! Racks (`Scenario::racks`): leechers sit on rack bridges joined to the core bridge of
//! the tracker and the origin through shaped links ([`Lan::create_racked`]); a row adds
//! the bytes that crossed rack uplinks ÷ F and the simulator's `D_topo`.
//!
//! Bounds: every wait has a deadline; a row that misses one fails with the
//! log directory named, and all its processes are killed and reaped.

pub mod client;
pub mod from_whom;
pub mod proc;
pub mod report;
mod row;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use client::{
    Libtorrent, P2pe, P2peWebSeed, PeerCommand, PeerCtx, SwarmClient, Tracker, TrackerCtx,
};
pub use report::{Row, SimPrediction};
pub use row::is_complete;
pub use scenario::{Bounds, Scenario};

use crate::netns::{Lan, NetnsError};

/// Port every peer and the tracker listen on (each host has its own address).
pub const PEER_PORT: u16 = 6881;
/// Tracker port.
pub const TRACKER_PORT: u16 = 6969;

/// Errors of a swarm bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up or tearing down the emulated hosts failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A row did not complete correctly (timeout, crash, mismatched copy).
    #[error("{client} rep {rep}: {detail} (logs in {logs})")]
    Row {
        /// Client name.
        client: String,
        /// Repetition.
        rep: u32,
        /// What went wrong.
        detail: String,
        /// The row's log directory.
        logs: String,
    },
    /// SIGINT/SIGTERM/SIGHUP arrived; everything was torn down.
    #[error("interrupted")]
    Interrupted,
    /// The scenario is not runnable.
    #[error("bad scenario: {0}")]
    Scenario(String),
}

/// Wraps an I/O error with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let context = context.into();
    move |source| BenchError::Io { context, source }
}

/// Everything one run needs besides the scenario.
pub struct RunConfig {
    /// Clients to measure, in order; every rep runs each of them.
    pub clients: Vec<Box<dyn SwarmClient>>,
    /// Repetitions per client.
    pub reps: u32,
    /// Work directory (data, torrent, per-row logs and downloads).
    pub work_dir: PathBuf,
    /// The p2pe binary (for `create` and `sim`).
    pub p2pe_bin: PathBuf,
    /// Tracker name for reports.
    pub tracker_name: String,
    /// Bound on one row from the start barrier to the last leecher.
    pub row_timeout: Duration,
    /// Set by a signal handler; checked in every wait.
    pub stop: Arc<AtomicBool>,
    /// Name prefix of namespaces and links (see [`crate::netns::run_prefix`]).
    pub prefix: String,
    /// Leechers keep seeding after they complete until the last one does
    /// (what `D_p2p` assumes: every peer uploads until the swarm is done).
    pub leechers_stay: bool,
    /// Announce over HTTP instead of UDP (BEP 15, the default: what large
    /// fleets use, one round trip cheaper).
    pub http_announce: bool,
    /// `p2pe create --piece-length` of the swarm's torrent (`auto` or bytes).
    pub piece_length: String,
}

/// Registers SIGINT, SIGTERM and SIGHUP to set the returned flag (instead of
/// killing the process), so a run can tear down before exiting.
///
/// # Errors
/// A handler cannot be registered.
pub fn install_signal_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Creates the data file: `size_bytes` of seeded pseudo-random bytes
/// (xorshift64*, so copies cannot be faked by zero pages).
///
/// # Errors
/// The file cannot be written.
pub fn write_data(path: &Path, size_bytes: u64, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut left = size_bytes;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(buf.get(..n).unwrap_or(&buf))?;
        left -= n as u64;
    }
    out.flush()
}

/// Whether two files have identical bytes.
///
/// # Errors
/// Either cannot be read.
pub fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (fa, fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (std::io::BufReader::new(fa), std::io::BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = ra.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        let slice = ba.get(..n).unwrap_or(&[]);
        let other = bb
            .get_mut(..n)
            .ok_or_else(|| std::io::Error::other("buffer"))?;
        rb.read_exact(other)?;
        if slice != other {
            return Ok(false);
        }
    }
}

/// Runs `p2pe sim` for the scenario with the torrent's `piece_length` (`auto` or a
/// size, as given to `p2pe create`), if the binary has it and the scenario fits it.
pub fn sim_prediction(
    p2pe_bin: &Path,
    scenario: &Scenario,
    piece_length: &str,
) -> Option<SimPrediction> {
    let args = scenario.sim_args_with_piece_length(piece_length)?;
    let out = std::process::Command::new(p2pe_bin)
        .args(&args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let total_s = v.get("total_s")?.as_f64()?;
    Some(SimPrediction {
        total_s,
        // Against the row's D_p2p at the shaped rates, as the measured ratio is (the
        // simulator's own D_p2p is at the goodput it was given).
        ratio: total_s / scenario.bounds().d_p2p_s,
        origin_upload_copies: v.get("origin_upload_copies")?.as_f64()?,
    })
}

/// Runs every client `reps` times on one set of emulated hosts. Each row is
/// passed to `on_row` as it finishes; failed rows are collected as messages.
///
/// # Errors
/// Set-up fails (not root, namespaces, data, torrent), or the run is
/// interrupted. Failing rows do not stop the run; they are in the second list.
pub fn run(
    scenario: &Scenario,
    config: &RunConfig,
    on_row: &mut dyn FnMut(&Row),
) -> Result<(Vec<Row>, Vec<String>), BenchError> {
    if scenario.hosts < 3 {
        return Err(BenchError::Scenario(
            "need at least 3 hosts (tracker, origin, 1 leecher)".into(),
        ));
    }
    if scenario.size_bytes == 0 {
        return Err(BenchError::Scenario("size must be > 0".into()));
    }
    let prepared = row::prepare(scenario, config)?;
    if let Some(r) = scenario.racks {
        if r.racks == 0 || r.racks > scenario.leechers() {
            return Err(BenchError::Scenario(format!(
                "--racks {}: need 1..={} (the leechers)",
                r.racks,
                scenario.leechers()
            )));
        }
        if !(r.uplink_mbit > 0.0 && r.uplink_mbit.is_finite()) {
            return Err(BenchError::Scenario(
                "--rack-uplink: must be a positive number of Mbit/s".into(),
            ));
        }
    }
    let mut lan = match scenario.rack_plan() {
        Some(plan) => Lan::create_racked(&config.prefix, &scenario.links(), &plan)?,
        None => Lan::create(&config.prefix, &scenario.links())?,
    };
    let sim = sim_prediction(&config.p2pe_bin, scenario, &config.piece_length);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    'reps: for rep in 1..=config.reps {
        for client in &config.clients {
            if config.stop.load(Ordering::Relaxed) {
                break 'reps;
            }
            match row::run_row(&lan, scenario, config, &prepared, client.as_ref(), rep) {
                Ok(mut r) => {
                    r.sim = sim;
                    on_row(&r);
                    rows.push(r);
                }
                Err(BenchError::Interrupted) => break 'reps,
                Err(e) => {
                    eprintln!("swarm bench: {e}");
                    failures.push(e.to_string());
                }
            }
        }
    }
    lan.teardown()?;
    if config.stop.load(Ordering::Relaxed) {
        return Err(BenchError::Interrupted);
    }
    Ok((rows, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        write_data(&a, 100_001, 7).unwrap();
        write_data(&b, 100_001, 7).unwrap();
        write_data(&c, 100_001, 8).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 100_001);
        assert!(same_bytes(&a, &b).unwrap());
        assert!(!same_bytes(&a, &c).unwrap());
    }
}
