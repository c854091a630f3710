//! `p2pe bench linerate`: the whole-process time of a get (spawn to exit) on
//! tmpfs and disk against rqbit, libtorrent and aria2, and the transfer
//! window of one `p2pe seed` serving M `p2pe get` processes, over 127.0.0.1,
//! compared with iperf3 in the same run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use p2pe::sim::units::parse_size_bytes;
use p2pe_bench::node_linerate::{
    self, headline, iperf, report, Client, Config, Headline, LinerateError, Outcome, Summary,
};
use p2pe_bench::swarm_bench;

/// Arguments of `p2pe bench linerate`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Creates (or reuses) a file of --size random bytes and its torrent in --work-dir and warms the page \
cache. Then, per repetition, interleaved:

Headline (whole process, as a user sees it): for each --dir and each client (p2pe, rqbit, \
python3-libtorrent, aria2), one downloader is spawned on an empty directory in DIR against a seeder \
of the same client (started once, serving the same file and .torrent on 127.0.0.1) and timed from \
spawn to exit (preallocation, hashing and the final flush included); CPU from its wait4 rusage. \
Reported: median seconds, Gbit/s, CPU-s/GiB, and the speed-up over the fastest other client on the \
same directory (target for p2pe: 2x). A client that is not installed is reported with its install \
command. Use --dir /dev/shm (tmpfs) and --dir on a disk; the table names each filesystem.

TCP ceiling: iperf3 -c 127.0.0.1 -l 1M, and -P K with K = the get's workers.

Transfer window (second table): one `p2pe seed` and --leechers `p2pe get --seed-after --json`; \
Gbit/s from the slowest get's `seconds`, ratio to iperf3, CPU s/GiB per side over the transfer \
(/proc/PID/stat), the gets' peak RssAnon and VmHWM, and the first request's size.

Medians of --reps; appends to --record with machine, kernel, commit and filesystem.

Examples:
  p2pe bench linerate --dir /dev/shm --dir /var/tmp     # 2 GiB, tmpfs and disk, 3 reps
  p2pe bench linerate --no-whole --leechers 8 --size 1GiB
  p2pe bench linerate --no-window --clients p2pe,rqbit --size 4GiB --reps 1
  p2pe bench linerate --no-blake3 --dir /dev/shm     # a SHA-1-only torrent, as other tools make")]
pub(super) struct LinerateArgs {
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
    /// Output directory of the whole-process gets (repeatable: e.g.
    /// `--dir /dev/shm --dir /var/tmp`) [default: --work-dir].
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Clients of the whole-process comparison, in run order.
    #[arg(long, value_delimiter = ',', default_value = "p2pe,rqbit,libtorrent,aria2", value_parser = Client::parse)]
    clients: Vec<Client>,
    /// Skip the whole-process comparison (the headline).
    #[arg(long)]
    no_whole: bool,
    /// Skip the transfer-window measurement (the second table).
    #[arg(long)]
    no_window: bool,
    /// Make the torrent with SHA-1 `pieces` only (`p2pe create --no-blake3`),
    /// as another tool would, so every client verifies with SHA-1; the
    /// record's commit column says "SHA-1 only".
    #[arg(long)]
    no_blake3: bool,
}

/// Runs `p2pe bench linerate`.
pub(super) fn run(a: LinerateArgs) -> anyhow::Result<()> {
    if a.leechers == 0 || a.leechers > 64 {
        bail!("--leechers {}: must be within 1..=64", a.leechers);
    }
    if a.size == 0 {
        bail!("--size must be positive");
    }
    let mut iperf_secs = a.iperf_secs;
    if iperf_secs > 0 && !iperf::available() {
        tracing::warn!("p2pe bench linerate: iperf3 not found on PATH; the iperf3 and ratio columns are skipped (apt-get install iperf3)");
        iperf_secs = 0;
    }
    let stop = swarm_bench::install_signal_flag().context("install signal handlers")?;
    let p2pe_bin = match &a.p2pe_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locate the p2pe binary")?,
    };
    if cfg!(debug_assertions) && a.p2pe_bin.is_none() {
        tracing::warn!("p2pe bench linerate: this is a debug build; measure with `cargo build --release -p p2pe-tools`");
    }
    if a.no_whole && a.no_window {
        bail!("--no-whole and --no-window: nothing left to measure");
    }
    let mut clients = Vec::new();
    for c in a.clients {
        if !clients.contains(&c) {
            clients.push(c);
        }
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
        dirs: if a.dirs.is_empty() {
            vec![a.work_dir.clone()]
        } else {
            a.dirs
        },
        clients,
        whole: !a.no_whole,
        window: !a.no_window,
        iperf_streams: p2pe::node::default_workers(),
        sha1_only: a.no_blake3,
    };
    let json = a.json;
    let outcome = match node_linerate::run(&config, &mut |line| {
        if !json {
            println!("{line}");
        }
    }) {
        Err(LinerateError::Interrupted) => bail!("interrupted; children killed"),
        other => other?,
    };
    let (when, mut commit, load) = (utc_now(), git_commit(), load_avg());
    if a.no_blake3 {
        commit.push_str(", SHA-1 only");
    }
    print_outcome(&outcome, json, &when, &commit, &load)?;
    if !a.no_record {
        record(&a.record, &outcome, &when, &commit, &load)
            .with_context(|| format!("append to {}", a.record.display()))?;
        tracing::info!("p2pe bench linerate: appended to {}", a.record.display());
    }
    Ok(())
}

fn print_outcome(
    o: &Outcome,
    json: bool,
    when: &str,
    commit: &str,
    load: &str,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(o)?);
        return Ok(());
    }
    let m = &o.machine;
    println!(
        "\n{} ({} vCPUs), kernel {}, commit {commit}, load {load}",
        m.cpu_model, m.vcpus, m.kernel
    );
    if let Some(h) = &o.headline {
        println!(
            "\nwhole-process get of {}, spawn to exit (preallocation and flush included), medians of {} reps:\n{}",
            headline::size_text(h.size_bytes),
            h.reps,
            Headline::table_header(&[])
        );
        for r in h.table_rows(&[]) {
            println!("{r}");
        }
    }
    if let Some(s) = &o.window {
        println!(
            "\ntransfer window (first peer to last piece verified), medians of {} reps:\n{}",
            s.reps.len(),
            Summary::markdown_header()
        );
        println!("{}", s.markdown_row(when, commit, load));
    }
    Ok(())
}

/// Appends the headline rows (with machine, kernel, commit, size, reps and
/// load) and the transfer-window row to their tables in `path`.
fn record(
    path: &std::path::Path,
    o: &Outcome,
    when: &str,
    commit: &str,
    load: &str,
) -> anyhow::Result<()> {
    if let Some(h) = &o.headline {
        let machine = format!("{}, {} vCPUs", o.machine.cpu_model, o.machine.vcpus);
        let size = headline::size_text(h.size_bytes);
        let reps = h.reps.to_string();
        let lead = [
            when,
            commit,
            machine.as_str(),
            o.machine.kernel.as_str(),
            size.as_str(),
            reps.as_str(),
            load,
        ];
        let header = Headline::table_header(&LEAD_COLUMNS);
        report::insert_rows(
            path,
            "Whole-process runs (appended by `p2pe bench linerate`)",
            &header,
            &h.table_rows(&lead),
        )?;
    }
    if let Some(s) = &o.window {
        report::append_markdown(path, &s.markdown_row(when, commit, load))?;
    }
    Ok(())
}

/// The leading columns of a recorded headline row.
const LEAD_COLUMNS: [&str; 7] = [
    "when (UTC)",
    "commit",
    "machine",
    "kernel",
    "size",
    "reps",
    "load avg",
];

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
