//! Node line-rate benchmark: one `p2pe seed` process serving a page-cache-warm
//! file to M `p2pe get` processes over 127.0.0.1, against `iperf3` measured in
//! the same run.
//!
//! Per repetition: the seeder starts (and verifies its data), the M gets
//! start at once with `--seed-after --json`; every [`procfs::SAMPLE_EVERY`]
//! the harness samples each get's `RssAnon` (peak) and watches the stderr
//! logs: a get's CPU window opens at `first peer connected` and closes at
//! `download complete` (utime + stime from `/proc/PID/stat`, so start-up
//! preallocation and the final durable flush are excluded); the seeder's
//! window spans the first opening to the last close. Payload Gbit/s come
//! from each get's `--json` summary `seconds` (node start to completion).
//! Then `iperf3 -l 1M` runs once (the TCP ceiling of that moment).
//!
//! Bounds: every wait has a deadline (`rep_timeout`); children are
//! [`Proc`]s, killed and reaped by PID on every exit path (drop included).

pub mod iperf;
pub mod procfs;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::swarm_bench::proc::Proc;
use crate::swarm_bench::write_data;

pub use report::{Rep, Summary};

/// Errors of a line-rate run.
#[derive(Debug, thiserror::Error)]
pub enum LinerateError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A repetition did not complete (timeout, crash, incomplete download).
    #[error("rep {rep}: {detail} (logs in {logs})")]
    Rep {
        /// Repetition.
        rep: u32,
        /// What went wrong.
        detail: String,
        /// The repetition's directory.
        logs: String,
    },
    /// SIGINT/SIGTERM/SIGHUP arrived; children were killed.
    #[error("interrupted")]
    Interrupted,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinerateError {
    let context = context.into();
    move |source| LinerateError::Io { context, source }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of the served file in bytes.
    pub size_bytes: u64,
    /// Repetitions (medians are reported).
    pub reps: u32,
    /// `p2pe get` processes served at once by the one seeder.
    pub leechers: usize,
    /// The `p2pe` executable (release build).
    pub p2pe_bin: PathBuf,
    /// Work directory: data, torrent, per-repetition logs and downloads.
    pub work_dir: PathBuf,
    /// Seconds of each iperf3 run; 0 skips iperf3.
    pub iperf_secs: u32,
    /// Bound on one repetition, seeder start to last completion.
    pub rep_timeout: Duration,
    /// Set by a signal handler; checked in every wait.
    pub stop: Arc<AtomicBool>,
}

/// The served file and its torrent.
struct Payload {
    data: PathBuf,
    torrent: PathBuf,
}

/// Runs the benchmark, calling `on_rep` after each repetition.
///
/// # Errors
/// [`LinerateError::Io`] (data, torrent, processes), [`LinerateError::Rep`]
/// (a repetition failed; its children are killed), or
/// [`LinerateError::Interrupted`].
pub fn run(config: &Config, on_rep: &mut dyn FnMut(&Rep)) -> Result<Summary, LinerateError> {
    let payload = prepare(config)?;
    let mut reps = Vec::new();
    for rep in 1..=config.reps.max(1) {
        let mut r = run_rep(config, &payload, rep)?;
        if config.iperf_secs > 0 {
            let dir = config.work_dir.join(format!("rep{rep}"));
            match iperf::measure(config.iperf_secs, &dir) {
                Ok(g) => r.set_iperf(g),
                Err(e) => eprintln!("p2pe bench linerate: iperf3 skipped this rep: {e}"),
            }
        }
        on_rep(&r);
        reps.push(r);
    }
    Ok(Summary::of(config, reps))
}

/// Creates the data file (seeded random bytes; reused if it has the right
/// size), its torrent, and reads it once so the page cache is warm.
fn prepare(config: &Config) -> Result<Payload, LinerateError> {
    let data_dir = config.work_dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(io_err("create the data directory"))?;
    let data = data_dir.join(format!("linerate-{}.bin", config.size_bytes));
    let fresh = std::fs::metadata(&data).map_or(true, |m| m.len() != config.size_bytes);
    let torrent = config
        .work_dir
        .join(format!("linerate-{}.torrent", config.size_bytes));
    if fresh {
        eprintln!(
            "p2pe bench linerate: writing {} bytes to {}",
            config.size_bytes,
            data.display()
        );
        write_data(&data, config.size_bytes, 0x6c72).map_err(io_err("write the data file"))?;
    }
    if fresh || !torrent.exists() {
        let out = Command::new(&config.p2pe_bin)
            .arg("create")
            .arg(&data)
            .arg("-o")
            .arg(&torrent)
            .arg("--force")
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("run p2pe create"))?;
        if !out.status.success() {
            return Err(LinerateError::Io {
                context: "p2pe create".into(),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
    }
    warm(&data).map_err(io_err("warm the page cache"))?;
    Ok(Payload { data, torrent })
}

/// Reads `path` once (1 MiB at a time) so its pages are cached.
fn warm(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// One get process and what the sampler saw of it.
struct Get {
    proc: Proc,
    log: PathBuf,
    cpu_start_s: Option<f64>,
    cpu_end_s: Option<f64>,
    rss_anon_peak_bytes: u64,
    vm_hwm_bytes: u64,
}

/// One repetition: seeder, M gets, sampling, teardown.
fn run_rep(config: &Config, payload: &Payload, rep: u32) -> Result<Rep, LinerateError> {
    let dir = config.work_dir.join(format!("rep{rep}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err("create the repetition directory"))?;
    let fail = |detail: String| LinerateError::Rep {
        rep,
        detail,
        logs: dir.display().to_string(),
    };
    let port = iperf::free_port().map_err(io_err("pick a port"))?;
    let mut seed = spawn_seed(config, payload, &dir, port)?;
    let deadline = Instant::now() + config.rep_timeout;
    let seed_log = dir.join("seed.log");
    wait_for(config, deadline, &mut seed, &seed_log, "seeding ")
        .map_err(|e| fail(format!("seeder did not start: {e}")))?;
    let mut gets = Vec::new();
    for i in 0..config.leechers.max(1) {
        gets.push(spawn_get(config, payload, &dir, port, i)?);
    }
    let seed_window = sample(config, deadline, &mut gets, seed.pid()).map_err(|e| match e {
        SampleError::Interrupted => LinerateError::Interrupted,
        SampleError::Failed(d) => fail(d),
    })?;
    let mut seconds = Vec::new();
    for g in &mut gets {
        // The get flushes its download durably before it prints its summary.
        let _ = g.proc.terminate(Duration::from_secs(120));
        let summary = g.proc.find_json(|v| v.get("seconds").is_some());
        let Some((_, v)) = summary else {
            return Err(fail(format!("{}: no JSON summary", g.proc.name)));
        };
        if v.get("complete") != Some(&serde_json::Value::Bool(true)) {
            return Err(fail(format!("{}: incomplete download", g.proc.name)));
        }
        seconds.push(v.get("seconds").and_then(|s| s.as_f64()).unwrap_or(0.0));
    }
    let _ = seed.terminate(Duration::from_secs(10));
    let uploaded = uploaded_bytes(&seed_log);
    let request = first_request_bytes(&gets);
    let rep_row = Rep::new(
        config,
        rep,
        &seconds,
        &gets_cpu(&gets),
        seed_window,
        uploaded,
    )
    .with_memory(
        gets.iter()
            .map(|g| g.rss_anon_peak_bytes)
            .max()
            .unwrap_or(0),
        gets.iter().map(|g| g.vm_hwm_bytes).max().unwrap_or(0),
    )
    .with_request_bytes(request);
    for i in 0..gets.len() {
        let _ = std::fs::remove_dir_all(dir.join(format!("get{i}")));
    }
    Ok(rep_row)
}

fn gets_cpu(gets: &[Get]) -> Vec<f64> {
    gets.iter()
        .map(|g| match (g.cpu_start_s, g.cpu_end_s) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        })
        .collect()
}

fn spawn_seed(
    config: &Config,
    payload: &Payload,
    dir: &Path,
    port: u16,
) -> Result<Proc, LinerateError> {
    let mut cmd = Command::new(&config.p2pe_bin);
    cmd.arg("seed")
        .arg(&payload.torrent)
        .arg("--path")
        .arg(payload.data.parent().unwrap_or(Path::new(".")))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // The record makes the next repetition's start-up check fast.
        .arg("--write-resume");
    Proc::spawn(cmd, "seeder", &dir.join("seed.log"), Stdio::null())
        .map_err(io_err("start p2pe seed"))
}

fn spawn_get(
    config: &Config,
    payload: &Payload,
    dir: &Path,
    port: u16,
    i: usize,
) -> Result<Get, LinerateError> {
    let log = dir.join(format!("get{i}.log"));
    let mut cmd = Command::new(&config.p2pe_bin);
    cmd.arg("get")
        .arg(&payload.torrent)
        .arg("-o")
        .arg(dir.join(format!("get{i}")))
        .arg("--peer")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--listen", "127.0.0.1:0", "--json", "--seed-after"]);
    let proc = Proc::spawn(cmd, &format!("get {i}"), &log, Stdio::null())
        .map_err(io_err("start p2pe get"))?;
    Ok(Get {
        proc,
        log,
        cpu_start_s: None,
        cpu_end_s: None,
        rss_anon_peak_bytes: 0,
        vm_hwm_bytes: 0,
    })
}

/// Waits until `log` contains `needle`, `p` exits, the deadline passes or a
/// stop is requested.
fn wait_for(
    config: &Config,
    deadline: Instant,
    p: &mut Proc,
    log: &Path,
    needle: &str,
) -> Result<(), String> {
    loop {
        if procfs::log_contains(log, needle) {
            return Ok(());
        }
        if config.stop.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        match p.try_reap() {
            Ok(Some(e)) => return Err(format!("exited ({})", e.status)),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
        std::thread::sleep(procfs::SAMPLE_EVERY);
    }
}

enum SampleError {
    Interrupted,
    Failed(String),
}

/// Samples until every get completed: their memory, their CPU windows, and
/// the seeder's CPU over the union of the windows (returned, seconds).
fn sample(
    config: &Config,
    deadline: Instant,
    gets: &mut [Get],
    seed_pid: u32,
) -> Result<f64, SampleError> {
    let mut seed_start = None;
    loop {
        for g in gets.iter_mut() {
            let pid = g.proc.pid();
            if let Some(m) = procfs::memory(pid) {
                g.rss_anon_peak_bytes = g.rss_anon_peak_bytes.max(m.rss_anon_bytes);
                if g.cpu_end_s.is_none() {
                    g.vm_hwm_bytes = m.vm_hwm_bytes;
                }
            }
            if g.cpu_start_s.is_none() && procfs::log_contains(&g.log, "first peer connected") {
                g.cpu_start_s = procfs::cpu_s(pid);
                seed_start = seed_start.or_else(|| procfs::cpu_s(seed_pid));
            }
            if g.cpu_end_s.is_none() && procfs::log_contains(&g.log, "download complete") {
                g.cpu_end_s = procfs::cpu_s(pid);
            }
            if let Ok(Some(e)) = g.proc.try_reap() {
                let status = e.status.clone();
                return Err(SampleError::Failed(format!(
                    "{} exited early ({status})",
                    g.proc.name
                )));
            }
        }
        if gets.iter().all(|g| g.cpu_end_s.is_some()) {
            let end = procfs::cpu_s(seed_pid).unwrap_or(f64::NAN);
            return Ok(end - seed_start.unwrap_or(f64::NAN));
        }
        if config.stop.load(Ordering::Relaxed) {
            return Err(SampleError::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(SampleError::Failed("timed out".into()));
        }
        std::thread::sleep(procfs::SAMPLE_EVERY);
    }
}

/// The seeder's "uploaded N bytes" line, if it printed one.
fn uploaded_bytes(seed_log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(seed_log).ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("uploaded "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The largest first request a get logged (`first request of N bytes`).
fn first_request_bytes(gets: &[Get]) -> Option<u64> {
    gets.iter()
        .filter_map(|g| std::fs::read_to_string(&g.log).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| {
                    let rest = l.split("first request of ").nth(1)?;
                    rest.split_whitespace().next()?.parse::<u64>().ok()
                })
                .collect::<Vec<_>>()
        })
        .max()
}
