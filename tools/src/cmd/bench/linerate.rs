//! `p2pe bench linerate`: one `p2pe seed` serving a page-cache-warm file to M
//! `p2pe get` processes over 127.0.0.1, compared with iperf3 in the same run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use p2pe::sim::units::parse_size_bytes;
use p2pe_bench::node_linerate::{self, iperf, report, Config, LinerateError, Summary};
use p2pe_bench::swarm_bench;

/// Arguments of `p2pe bench linerate`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Creates (or reuses) a file of --size random bytes and its torrent in --work-dir, warms the page \
cache, then per repetition starts one `p2pe seed` and --leechers `p2pe get --seed-after --json` \
processes (this executable) on 127.0.0.1 and reports: payload Gbit/s (leechers x size / the \
slowest get's `seconds`), the ratio to `iperf3 -c 127.0.0.1 -l 1M` run right after, CPU seconds \
per GiB of each side over the transfer (/proc/PID/stat utime+stime), the gets' peak RssAnon \
(sampled every 20 ms) and VmHWM, and the size of the first request (piece-sized between p2pe \
nodes). Medians of --reps; appends one row to --record. Goal: >= 0.95x iperf3, <= 0.5 CPU-s/GiB \
per side, peak RssAnon < 64 MiB independent of the size.

Examples:
  p2pe bench linerate                      # 2 GiB, 1 get, 3 reps
  p2pe bench linerate --leechers 8 --size 1GiB
  p2pe bench linerate --size 4GiB --reps 1 --iperf-secs 0")]
pub struct LinerateArgs {
    /// File size: bytes, or with a suffix (2GiB, 512MiB).
    #[arg(long, default_value = "2GiB", value_parser = |s: &str| parse_size_bytes(s).map_err(|e| e.to_string()))]
    size: u64,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// `p2pe get` processes served at once by the one seeder (fan-out).
    #[arg(long, default_value_t = 1)]
    leechers: usize,
    /// Print one JSON object (every repetition and the medians) on stdout.
    #[arg(long)]
    json: bool,
    /// Seconds of each iperf3 run (0: skip iperf3).
    #[arg(long, default_value_t = 5)]
    iperf_secs: u32,
    /// Bound on one repetition, seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Work directory; the data file and torrent are reused between runs.
    #[arg(long, default_value = "/tmp/p2pe-linerate")]
    work_dir: PathBuf,
    /// Markdown file the medians are appended to.
    #[arg(long, default_value = "perf/node-linerate.md")]
    record: PathBuf,
    /// Do not append to --record.
    #[arg(long)]
    no_record: bool,
    /// The p2pe binary for `create`, `seed` and `get` [default: this one].
    #[arg(long)]
    p2pe_bin: Option<PathBuf>,
}

/// Runs `p2pe bench linerate`.
pub fn run(a: LinerateArgs) -> anyhow::Result<()> {
    if a.leechers == 0 || a.leechers > 64 {
        bail!("--leechers {}: must be within 1..=64", a.leechers);
    }
    if a.size == 0 {
        bail!("--size must be positive");
    }
    let mut iperf_secs = a.iperf_secs;
    if iperf_secs > 0 && !iperf::available() {
        eprintln!("p2pe bench linerate: warning: iperf3 not found on PATH; the iperf3 and ratio columns are skipped (apt-get install iperf3)");
        iperf_secs = 0;
    }
    let stop = swarm_bench::install_signal_flag().context("install signal handlers")?;
    let p2pe_bin = match &a.p2pe_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locate the p2pe binary")?,
    };
    if cfg!(debug_assertions) && a.p2pe_bin.is_none() {
        eprintln!("p2pe bench linerate: warning: this is a debug build; measure with `cargo build --release -p p2pe-tools`");
    }
    let config = Config {
        size_bytes: a.size,
        reps: a.reps.max(1),
        leechers: a.leechers,
        p2pe_bin,
        work_dir: a.work_dir.clone(),
        iperf_secs,
        rep_timeout: Duration::from_secs(a.timeout.max(1)),
        stop,
    };
    let json = a.json;
    let summary = match node_linerate::run(&config, &mut |r| {
        if !json {
            println!("{}", r.line());
        }
    }) {
        Err(LinerateError::Interrupted) => bail!("interrupted; children killed"),
        other => other?,
    };
    print_summary(&summary, json)?;
    if !a.no_record {
        let row = summary.markdown_row(&utc_now(), &git_commit(), &load_avg());
        report::append_markdown(&a.record, &row)
            .with_context(|| format!("append to {}", a.record.display()))?;
        eprintln!("p2pe bench linerate: appended to {}", a.record.display());
    }
    Ok(())
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
    } else {
        println!(
            "\nmedians of {} reps:\n{}",
            s.reps.len(),
            Summary::markdown_header()
        );
        println!("{}", s.markdown_row(&utc_now(), &git_commit(), &load_avg()));
    }
    Ok(())
}

/// `git rev-parse --short HEAD` of the current directory, or `?`.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("?".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// The 1-minute load average from /proc/loadavg, or `?`.
fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Current UTC time as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
