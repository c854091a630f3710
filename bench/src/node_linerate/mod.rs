//! Node line-rate benchmark over 127.0.0.1, against `iperf3` measured in the
//! same run, in two parts.
//!
//! The headline ([`whole`], [`headline`]): each client's download timed as a
//! user sees it, spawn to exit of one downloader on an empty directory of
//! each `--dir` (tmpfs and disk), p2pe against rqbit, python3-libtorrent and
//! aria2, each against a seeder of its own, interleaved within every
//! repetition; then `iperf3 -l 1M` and `iperf3 -l 1M -P K` (K = the get's
//! workers).
//!
//! The transfer window (the second table): per repetition the seeder starts (and verifies its data), the M gets
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

pub mod clients;
pub mod headline;
pub mod host;
pub mod iperf;
pub mod procfs;
pub mod report;
pub mod whole;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::swarm_bench::proc::Proc;
use crate::swarm_bench::write_data;

pub use clients::Client;
pub use headline::Headline;
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
    /// Output directories of the whole-process gets (and the other clients'
    /// downloads), e.g. `/dev/shm` and a disk path; each pair writes into a
    /// fresh subdirectory and removes it.
    pub dirs: Vec<PathBuf>,
    /// Clients of the whole-process comparison, in run order.
    pub clients: Vec<Client>,
    /// Run the whole-process comparison (the headline).
    pub whole: bool,
    /// Run the transfer-window measurement (the second table).
    pub window: bool,
    /// K of `iperf3 -P K`: the get's workers.
    pub iperf_streams: usize,
    /// Make the torrent with SHA-1 `pieces` only (`p2pe create --no-blake3`),
    /// as another tool would: p2pe then verifies with SHA-1 (issue 12's
    /// "≤ 0.9 CPU-s/GiB with a SHA-1-only torrent").
    pub sha1_only: bool,
}

/// The served file and its torrent.
pub(crate) struct Payload {
    data: PathBuf,
    torrent: PathBuf,
    /// The file's name in the torrent (the data file's name).
    name: String,
    /// Info-hash, 40 hex digits (`p2pe inspect --json`).
    info_hash_hex: String,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// CPU, vCPUs and kernel.
    pub machine: host::Machine,
    /// The whole-process comparison (`None` if not run).
    pub headline: Option<Headline>,
    /// The transfer-window medians (`None` if not run).
    pub window: Option<Summary>,
    /// The torrent's piece hashes: `"blake3+sha1"` (`p2pe create`'s
    /// default) or `"sha1"` ([`Config::sha1_only`]).
    pub piece_hashes: &'static str,
}

/// Runs the benchmark, calling `on_line` with a progress line after each
/// measurement.
///
/// Per repetition: every client on every directory (whole process), then
/// the transfer-window repetition, then iperf3 with one stream and with
/// [`Config::iperf_streams`].
///
/// # Errors
/// [`LinerateError::Io`] (data, torrent, processes), [`LinerateError::Rep`]
/// (a transfer-window repetition failed; its children are killed), or
/// [`LinerateError::Interrupted`]. A whole-process pair that fails is
/// reported in its row, not as an error.
pub fn run(config: &Config, on_line: &mut dyn FnMut(&str)) -> Result<Outcome, LinerateError> {
    let payload = prepare(config)?;
    let mut dirs = Vec::new();
    for d in &config.dirs {
        std::fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        dirs.push(headline::DirInfo {
            path: d.display().to_string(),
            fs_type: host::fs_type(d),
        });
    }
    let mut whole = if config.whole {
        Some(whole::Whole::start(config, &payload)?)
    } else {
        None
    };
    let mut samples = Vec::new();
    let mut window_reps = Vec::new();
    let (mut one_stream, mut parallel) = (Vec::new(), Vec::new());
    for rep in 1..=config.reps.max(1) {
        if let Some(w) = &mut whole {
            for (d, info) in dirs.iter().enumerate() {
                for &client in &config.clients {
                    if let Some(s) = w.run_pair(config, &payload, rep, d, client)? {
                        on_line(&sample_line(config.size_bytes, &s, info));
                        samples.push(s);
                    }
                }
            }
        }
        let mut window_rep = if config.window {
            Some(run_rep(config, &payload, rep)?)
        } else {
            None
        };
        if config.iperf_secs > 0 {
            let dir = config.work_dir.join("iperf");
            let _ = std::fs::create_dir_all(&dir);
            let mut line = format!("rep {rep}: iperf3 -l 1M");
            for (streams, into) in [(1, &mut one_stream), (config.iperf_streams, &mut parallel)] {
                match iperf::measure(config.iperf_secs, streams, &dir) {
                    Ok(g) => {
                        let sep = if streams == 1 { ":" } else { ", -P" };
                        let p = if streams == 1 {
                            String::new()
                        } else {
                            format!(" {streams}:")
                        };
                        line.push_str(&format!("{sep}{p} {g:.2} Gbit/s"));
                        into.push(g);
                        if let (1, Some(r)) = (streams, window_rep.as_mut()) {
                            r.set_iperf(g);
                        }
                    }
                    Err(e) => {
                        eprintln!("p2pe bench linerate: iperf3 -P {streams} skipped this rep: {e}")
                    }
                }
            }
            on_line(&line);
        }
        if let Some(r) = window_rep {
            on_line(&r.line());
            window_reps.push(r);
        }
    }
    let headline = whole.as_mut().map(|w| {
        w.stop();
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| crate::swarm_bench::report::median(&v))
        };
        Headline::of(
            config.size_bytes,
            config.reps.max(1),
            dirs.clone(),
            w.status(),
            &samples,
            headline::Ceiling {
                one_stream_gbit_s: median(&one_stream),
                parallel_gbit_s: median(&parallel),
                streams: config.iperf_streams,
            },
        )
    });
    Ok(Outcome {
        machine: host::Machine::detect(),
        headline,
        window: config.window.then(|| Summary::of(config, window_reps)),
        piece_hashes: if config.sha1_only {
            "sha1"
        } else {
            "blake3+sha1"
        },
    })
}

fn sample_line(size_bytes: u64, s: &whole::Sample, dir: &headline::DirInfo) -> String {
    format!(
        "rep {}: {} into {} ({}): whole process {:.2} s, {:.2} Gbit/s, CPU {:.3} s/GiB",
        s.rep,
        s.client.name(),
        dir.path,
        dir.fs_type,
        s.seconds,
        size_bytes as f64 * 8.0 / s.seconds.max(1e-9) / 1e9,
        s.cpu_s / (size_bytes as f64 / f64::from(1u32 << 30)),
    )
}

/// Creates the data file (seeded random bytes; reused if it has the right
/// size), its torrent, and reads it once so the page cache is warm.
fn prepare(config: &Config) -> Result<Payload, LinerateError> {
    let data_dir = config.work_dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(io_err("create the data directory"))?;
    let data = data_dir.join(format!("linerate-{}.bin", config.size_bytes));
    let fresh = std::fs::metadata(&data).map_or(true, |m| m.len() != config.size_bytes);
    let torrent = config.work_dir.join(format!(
        "linerate-{}{}.torrent",
        config.size_bytes,
        if config.sha1_only { "-sha1" } else { "" }
    ));
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
            .args(config.sha1_only.then_some("--no-blake3"))
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
    let info_hash_hex = info_hash_hex(config, &torrent)?;
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Payload {
        data,
        torrent,
        name,
        info_hash_hex,
    })
}

/// The torrent's info-hash as `p2pe inspect --json` prints it.
fn info_hash_hex(config: &Config, torrent: &Path) -> Result<String, LinerateError> {
    let out = Command::new(&config.p2pe_bin)
        .arg("inspect")
        .arg(torrent)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("run p2pe inspect"))?;
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["info_hash"].as_str().map(str::to_owned))
        .ok_or_else(|| LinerateError::Io {
            context: "p2pe inspect --json".into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
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
