//! `p2pe swarm`: one seeder and N leechers as local processes on 127.0.0.1,
//! checked byte for byte, with completion times, throughput and CPU cost.

mod make;
mod proc;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use p2pe::sim::units::parse_size_bytes;
use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::seed::SendStrategyArg;
use proc::Child;

/// How long a child may take to print its listen address.
const STARTUP_BOUND: Duration = Duration::from_secs(60);

/// Announce interval of the embedded tracker, seconds: the tracker client's
/// floor, so a leecher that announced before anyone else asks again soon.
const TRACKER_INTERVAL_S: &str = "5";

/// Arguments of `p2pe swarm`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Number of leechers.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Size of the random payload (ignored with --file), e.g. `256MiB`, `1GB`.
    #[arg(long, default_value = "256MiB", value_name = "BYTES")]
    pub size: String,
    /// Distribute this file or directory instead of a random file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Keep the temporary directory (payload, torrent, copies, logs).
    #[arg(long)]
    pub keep: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Give up (and kill every child) after this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    /// Upload limit passed to the seeder (`--upload-limit`).
    #[arg(long, value_name = "RATE")]
    pub seed_upload_limit: Option<String>,
    /// Runtime workers of each process (seeder and leechers): the processes
    /// share this machine, so one each unless told.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Send strategy of every process (`--send-strategy` of seed and get).
    #[arg(long, value_enum, default_value_t = SendStrategyArg::Send, value_name = "HOW")]
    pub send_strategy: SendStrategyArg,
}

/// Removes the work directory on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            tracing::info!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn work_dir(keep: bool) -> anyhow::Result<WorkDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!("p2pe-swarm-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    Ok(WorkDir { path, keep })
}

/// Runs `p2pe swarm`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.peers == 0 {
        bail!("--peers must be at least 1");
    }
    let wd = work_dir(args.keep)?;
    let dir = wd.path.clone();
    let payload = match &args.file {
        Some(p) => std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?,
        None => {
            let size =
                parse_size_bytes(&args.size).with_context(|| format!("--size {:?}", args.size))?;
            std::fs::create_dir_all(dir.join("src"))?;
            let p = dir.join("src").join("payload.bin");
            tracing::info!("writing {size} random bytes to {}", p.display());
            make::random_file(&p, size)?;
            p
        }
    };
    let exe = std::env::current_exe().context("own executable")?;
    let tracker_args: Vec<String> = ["tracker", "--listen", "127.0.0.1:0", "--interval"]
        .iter()
        .map(|a| (*a).to_string())
        .chain([TRACKER_INTERVAL_S.to_string()])
        .collect();
    let (mut tracker, tracker_addr) =
        Child::spawn(&exe, &tracker_args, &dir.join("tracker.log"), STARTUP_BOUND)?;
    let result = run_with_tracker(&args, &exe, &dir, &payload, tracker_addr);
    tracker.stop();
    result
}

/// Everything after the tracker is up: torrent, seeder, leechers, report.
fn run_with_tracker(
    args: &Args,
    exe: &Path,
    dir: &Path,
    payload: &Path,
    tracker_addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    tracing::info!("hashing {}", payload.display());
    let url = format!("http://{tracker_addr}/announce");
    let meta = make::torrent_of(payload, &url)?;
    let torrent = dir.join("swarm.torrent");
    std::fs::write(&torrent, meta.to_bytes())?;
    let total = meta.info().total_len_bytes();
    let root = payload
        .parent()
        .context("payload has no parent directory")?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut seed_args = vec![
        "seed".into(),
        s(&torrent),
        "--path".into(),
        s(root),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    if let Some(l) = &args.seed_upload_limit {
        seed_args.extend(["--upload-limit".into(), l.clone()]);
    }
    seed_args.extend(["--workers".into(), args.workers.to_string()]);
    seed_args.extend(["--send-strategy".into(), args.send_strategy.as_arg().into()]);
    let (mut seeder, _seed_addr) =
        Child::spawn(exe, &seed_args, &dir.join("seed.log"), STARTUP_BOUND)?;
    let result = run_leechers(args, exe, dir, &torrent);
    seeder.stop();
    let leechers = result?;
    let seed_cpu = seeder.exit.map_or(0.0, |(_, cpu)| cpu);
    report(args, &meta, payload, dir, total, &leechers, seed_cpu)
}

/// Starts the leechers (they find the seeder and each other through the
/// tracker: no peer lists) and waits for all of them, bounded.
fn run_leechers(args: &Args, exe: &Path, dir: &Path, torrent: &Path) -> anyhow::Result<Vec<Child>> {
    let mut kids: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..args.peers {
        let a = vec![
            "get".to_string(),
            torrent.to_string_lossy().into_owned(),
            "-o".into(),
            dir.join(format!("peer{i}")).to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--json".into(),
            "--workers".into(),
            args.workers.to_string(),
            "--send-strategy".into(),
            args.send_strategy.as_arg().into(),
        ];
        match Child::spawn(exe, &a, &dir.join(format!("peer{i}.log")), STARTUP_BOUND) {
            Ok((c, _addr)) => kids.push(c),
            Err(e) => {
                kids.iter_mut().for_each(Child::kill_and_reap);
                return Err(e);
            }
        }
    }
    let bound = Duration::from_secs(args.timeout);
    tracing::info!("0/{} leechers finished", kids.len());
    let mut reported = vec![false; kids.len()];
    let mut done = 0;
    loop {
        // One line per leecher as it finishes, even when several finish
        // between two polls.
        for (i, k) in kids.iter_mut().enumerate() {
            if k.try_reap() && !reported[i] {
                reported[i] = true;
                done += 1;
                tracing::info!(
                    "{done}/{} leechers finished ({:.1}s): leecher {i}{}",
                    reported.len(),
                    t0.elapsed().as_secs_f64(),
                    leecher_note(k)
                );
            }
        }
        if done == kids.len() {
            break;
        }
        if t0.elapsed() >= bound {
            kids.iter_mut().for_each(Child::kill_and_reap);
            bail!(
                "leechers not finished within {}s; logs in {}",
                args.timeout,
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, k) in kids.iter().enumerate() {
        if let Some((code, _)) = k.exit {
            if code != 0 {
                bail!(
                    "leecher {i} exited with {code}; see {}",
                    dir.join(format!("peer{i}.log")).display()
                );
            }
        }
    }
    Ok(kids)
}

/// How a reaped leecher ended: its own completion time, or its exit status.
fn leecher_note(k: &Child) -> String {
    let summary = k
        .output
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j.get("event").is_none());
    match (k.exit, summary.and_then(|j| j["seconds"].as_f64())) {
        (Some((0, _)), Some(s)) => format!(", complete after {s:.1}s of its own"),
        (Some((code, _)), _) => format!(", exit status {code}"),
        (None, _) => String::new(),
    }
}

/// SHA-1 of every file of `root`'s tree (or of the single file), sorted by path.
fn digest_tree(path: &Path) -> anyhow::Result<Vec<(PathBuf, [u8; 20])>> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else {
            let mut f = std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
            let mut h = Sha1::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            let rel = p.strip_prefix(path).unwrap_or(&p).to_path_buf();
            out.push((rel, h.finalize().into()));
        }
    }
    out.sort();
    Ok(out)
}

/// Per leecher: seconds from the first leecher's start until it had every
/// piece verified (its own `seconds`, counted from its start); and the last
/// exit (after the durable flush of its copy as well).
fn completion_times(leechers: &[Child]) -> (Vec<f64>, f64) {
    let t0 = leechers
        .iter()
        .map(|k| k.started)
        .min()
        .unwrap_or_else(Instant::now);
    let times = leechers
        .iter()
        .map(|k| {
            let secs = k
                .output
                .iter()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|j| j.get("event").is_none())
                .and_then(|j| j["seconds"].as_f64());
            let exit = k
                .finished
                .map_or(0.0, |f| f.duration_since(t0).as_secs_f64());
            secs.map_or(exit, |s| k.started.duration_since(t0).as_secs_f64() + s)
        })
        .collect();
    let last_exit = leechers
        .iter()
        .map(|k| {
            k.finished
                .map_or(0.0, |f| f.duration_since(t0).as_secs_f64())
        })
        .fold(0.0, f64::max);
    (times, last_exit)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn report(
    args: &Args,
    meta: &p2pe::wire::metainfo::Metainfo,
    payload: &Path,
    dir: &Path,
    total: u64,
    leechers: &[Child],
    seed_cpu: f64,
) -> anyhow::Result<()> {
    tracing::info!("checking {} copies", leechers.len());
    let want = digest_tree(payload)?;
    let name = meta.info().name();
    let mismatches: Vec<usize> = (0..leechers.len())
        .into_par_iter()
        .filter(|i| {
            digest_tree(&dir.join(format!("peer{i}")).join(name))
                .ok()
                .as_ref()
                != Some(&want)
        })
        .collect();
    let (mut times, last_exit) = completion_times(leechers);
    let cpu: f64 = seed_cpu
        + leechers
            .iter()
            .map(|k| k.exit.map_or(0.0, |e| e.1))
            .sum::<f64>();
    let moved = total as f64 * leechers.len() as f64;
    let gib = moved / f64::from(1u32 << 30);
    let max = times.iter().copied().fold(0.0, f64::max);
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    let agg = moved / max.max(1e-9);
    let all_match = mismatches.is_empty();
    if args.json {
        let j = serde_json::json!({
            "peers": leechers.len(),
            "workers": args.workers,
            "bytes": total,
            "completion_s": {"min": min, "median": med, "max": max},
            "last_exit_s": last_exit,
            "aggregate_rate_bytes_per_s": agg,
            "cpu_s": cpu,
            "cpu_s_per_gib": cpu / gib.max(1e-12),
            "all_copies_match": all_match,
        });
        println!("{j}");
    } else {
        println!("{} leechers x {} bytes", leechers.len(), total);
        println!(
            "completion s: min {min:.2}  median {med:.2}  max {max:.2}  (last exit, after flushing: {last_exit:.2})"
        );
        println!(
            "aggregate throughput: {:.1} MB/s ({:.2} Gbit/s)",
            agg / 1e6,
            agg * 8.0 / 1e9
        );
        println!(
            "cpu: {cpu:.2} s total, {:.2} s per GiB moved",
            cpu / gib.max(1e-12)
        );
        if all_match {
            println!("all {} copies match the source", leechers.len());
        }
    }
    if !all_match {
        bail!("copies of leechers {mismatches:?} differ from the source");
    }
    Ok(())
}
