//! `p2pe bench`: system benchmarks. `p2pe bench swarm` runs one origin, a
//! tracker and many leechers on emulated hosts (network namespaces shaped with
//! tbf) and compares the measured distribution time with D_p2p.
//! `p2pe bench linerate` runs `p2pe seed` -> `p2pe get` over 127.0.0.1 against
//! iperf3 (see `bench/linerate.rs`).

mod linerate;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use p2pe::sim::units::parse_size_bytes;
use p2pe_bench::netns;
use p2pe_bench::swarm_bench::{
    self, report, scenario::Racks, BenchError, Libtorrent, P2pe, P2peWebSeed, RunConfig, Scenario,
    SwarmClient, Tracker,
};

/// Arguments of `p2pe bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Swarm distribution on emulated hosts (needs root).
    Swarm(SwarmArgs),
    /// Node data-plane line rate: `p2pe seed` -> `p2pe get` on 127.0.0.1 vs iperf3.
    Linerate(linerate::LinerateArgs),
}

/// Which swarm client to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// `p2pe seed` / `p2pe get`.
    P2pe,
    /// python3-libtorrent via bench/scripts/lt_peer.py.
    Libtorrent,
    /// `p2pe get` leechers with no `p2pe seed`: the origin is nginx on the
    /// origin host, every get's web seed (BEP 19).
    P2peWebSeed,
}

/// Arguments of `p2pe bench swarm`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Hosts: host 0 runs the tracker, host 1 the origin seeder, hosts 2..N-1 the leechers; each is a \
network namespace on one bridge, addresses in 198.18.0.0/15, upload and download shaped with tbf. \
All leechers start at one instant. Reports per-leecher completion min / median / max, origin \
upload ÷ F, leecher payload per CPU-second, D_cs = max(L·F/u_s, F/d_min), \
D_p2p = max(F/u_s, F/d_min, L·F/(u_s+Σu_i)) with L = N-2 leechers, and the ratio max/D_p2p \
(TCP goodput at 1500 MTU makes ~1.046 the floor). Appends a section to perf/swarm-bench.md.

Racks (--racks R --rack-uplink MBIT): leecher host i sits in rack (i-2) mod R (round robin, as `p2pe sim --racks`), each rack a bridge joined to the core bridge of the tracker and the origin by one link shaped with tbf at MBIT each way. p2pe leechers announce --rack rK unless --rack-oblivious; libtorrent gets no labels. Rows add D_topo (the simulator's topology bound) and the wire bytes that crossed rack uplinks ÷ F (cross-rack copies).

Examples:
  p2pe bench swarm --hosts 8 --size 64MiB --rate 100 --client libtorrent --reps 3
  p2pe bench swarm --hosts 8 --size 64MiB --rate 100 --compare libtorrent
  p2pe bench swarm --hosts 10 --size 64MiB --rate 100 --origin-rate 20
  p2pe bench swarm --hosts 10 --size 64MiB --rate 100 --origin-rate 400 --slow-fraction 0.25 --slow-rate 20
  p2pe bench swarm --hosts 26 --size 64MiB --rate 100 --racks 3 --rack-uplink 200 --compare libtorrent")]
pub(crate) struct SwarmArgs {
    /// Hosts N: tracker + origin + N-2 leechers (at least 3).
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    /// File size F: bytes, or with a suffix (64MiB, 1GB).
    #[arg(long, default_value = "64MiB", value_parser = |s: &str| parse_size_bytes(s).map_err(|e| e.to_string()))]
    size: u64,
    /// Every host's link rate each way, Mbit/s.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The origin's link rate each way, Mbit/s [default: --rate].
    #[arg(long)]
    origin_rate: Option<f64>,
    /// Fraction of leechers on slow links (with --slow-rate).
    #[arg(long, default_value_t = 0.0, requires = "slow_rate")]
    slow_fraction: f64,
    /// Slow leechers' link rate each way, Mbit/s.
    #[arg(long, requires = "slow_fraction")]
    slow_rate: Option<f64>,
    /// The client to measure.
    #[arg(long, value_enum, default_value = "p2pe")]
    client: ClientKind,
    /// Also run this client on the same links, in the same run.
    #[arg(long, value_enum)]
    compare: Option<ClientKind>,
    /// Repetitions of each client.
    #[arg(long, default_value_t = 1)]
    reps: u32,
    /// Print one JSON object per row instead of a table.
    #[arg(long)]
    json: bool,
    /// Bound on one row, seconds [default: max(60, 20·D_p2p)].
    #[arg(long)]
    timeout: Option<u64>,
    /// Work directory (data, torrent, logs) [default: /tmp/p2pe-bench-<pid>].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "perf/swarm-bench.md")]
    record: PathBuf,
    /// Do not append to --record.
    #[arg(long)]
    no_record: bool,
    /// The p2pe binary for `seed`, `get` (and `tracker`) [default: this one].
    #[arg(long)]
    p2pe_bin: Option<PathBuf>,
    /// Tell each p2pe leecher every other member with `--peer` (for a node
    /// without tracker announces); the tracker still runs.
    #[arg(long)]
    static_peers: bool,
    /// Leechers leave the swarm as they complete (default: they keep seeding
    /// until the last leecher completes, as D_p2p assumes and fleets do).
    #[arg(long)]
    leechers_leave: bool,
    /// Announce over HTTP (default: UDP, BEP 15).
    #[arg(long)]
    http_announce: bool,
    /// Piece length of the swarm's torrent: `auto` (as `p2pe create`) or bytes.
    #[arg(long, default_value = "auto")]
    piece_length: String,
    /// Racks R: leechers on R rack bridges behind shaped links to a core bridge.
    #[arg(long, requires = "rack_uplink")]
    racks: Option<usize>,
    /// Each rack's link to the core, Mbit/s each way (with --racks).
    #[arg(long, requires = "racks")]
    rack_uplink: Option<f64>,
    /// p2pe leechers announce no rack label (the comparison run).
    #[arg(long, requires = "racks")]
    rack_oblivious: bool,
}

/// Runs `p2pe bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Swarm(a) => swarm(a),
        BenchCommand::Linerate(a) => linerate::run(a),
    }
}

fn scenario_of(a: &SwarmArgs) -> anyhow::Result<Scenario> {
    if a.hosts < 3 {
        bail!(
            "--hosts {}: need at least 3 (tracker, origin, one leecher)",
            a.hosts
        );
    }
    for (name, r) in [
        ("--rate", Some(a.rate)),
        ("--origin-rate", a.origin_rate),
        ("--slow-rate", a.slow_rate),
        ("--rack-uplink", a.rack_uplink),
    ] {
        if r.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("{name}: must be a positive number of Mbit/s");
        }
    }
    if !(0.0..=1.0).contains(&a.slow_fraction) {
        bail!("--slow-fraction {}: must be within 0..=1", a.slow_fraction);
    }
    let racks = match (a.racks, a.rack_uplink) {
        (Some(r), Some(uplink_mbit)) => {
            if r == 0 || r > a.hosts - 2 {
                bail!("--racks {r}: need 1..={} (the leechers)", a.hosts - 2);
            }
            Some(Racks {
                racks: r,
                uplink_mbit,
                oblivious: a.rack_oblivious,
            })
        }
        _ => None,
    };
    Ok(Scenario {
        racks,
        hosts: a.hosts,
        size_bytes: a.size,
        rate_mbit: a.rate,
        origin_rate_mbit: a.origin_rate,
        slow_fraction: a.slow_fraction,
        slow_rate_mbit: a.slow_rate,
    })
}

/// The clients to run: `--client`, then `--compare`; p2pe is skipped (with a
/// message) when this binary has no `seed`/`get` yet and another client runs.
fn clients_of(
    a: &SwarmArgs,
    bin: &std::path::Path,
    work: &std::path::Path,
    tracker: &Tracker,
) -> anyhow::Result<Vec<Box<dyn SwarmClient>>> {
    let mut kinds = vec![a.client];
    if let Some(c) = a.compare.filter(|c| *c != a.client) {
        kinds.push(c);
    }
    let mut clients: Vec<Box<dyn SwarmClient>> = Vec::new();
    let only = kinds.len() == 1;
    for kind in kinds {
        match kind {
            ClientKind::P2pe => match P2pe::prepare(bin, tracker.clone()) {
                Ok(c) => clients.push(Box::new(P2pe {
                    static_peers: a.static_peers,
                    ..c
                })),
                Err(e) if !only => tracing::warn!("p2pe bench: skipping p2pe rows: {e}"),
                Err(e) => return Err(e).context("p2pe client"),
            },
            ClientKind::P2peWebSeed => {
                let p2pe = P2pe::prepare(bin, tracker.clone()).context("p2pe client")?;
                let c = P2peWebSeed::prepare(p2pe, work).context("p2pe-web-seed client")?;
                clients.push(Box::new(c));
            }
            ClientKind::Libtorrent => {
                let c = Libtorrent::prepare(work, tracker.clone()).context("libtorrent client")?;
                clients.push(Box::new(c));
            }
        }
    }
    Ok(clients)
}

fn swarm(a: SwarmArgs) -> anyhow::Result<()> {
    if !netns::is_root() {
        bail!("p2pe bench swarm needs root: it creates network namespaces, veths, a bridge and tc qdiscs (run it with sudo)");
    }
    let scenario = scenario_of(&a)?;
    let stop = swarm_bench::install_signal_flag().context("install signal handlers")?;
    let reaped = netns::reap_stale("p2pb").context("remove namespaces of dead runs")?;
    if !reaped.is_empty() {
        tracing::info!("p2pe bench: removed leftovers of dead runs: {reaped:?}");
    }
    let bin = std::env::current_exe().context("locate the p2pe binary")?;
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("p2pe-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let node_bin = a.p2pe_bin.clone().unwrap_or_else(|| bin.clone());
    let tracker = Tracker::detect(&node_bin)?;
    let clients = clients_of(&a, &node_bin, &work, &tracker)?;
    let bounds = scenario.bounds();
    let timeout = a
        .timeout
        .unwrap_or_else(|| ((20.0 * bounds.d_p2p_s) as u64).max(60));
    let config = RunConfig {
        clients,
        reps: a.reps.max(1),
        work_dir: work.clone(),
        p2pe_bin: bin,
        tracker_name: tracker.name().to_owned(),
        row_timeout: Duration::from_secs(timeout),
        stop,
        prefix: netns::run_prefix("p2pb"),
        leechers_stay: !a.leechers_leave,
        http_announce: a.http_announce,
        piece_length: a.piece_length.clone(),
    };
    let setup = format!(
        "{} hosts ({} leechers, {} slow), F = {} bytes, rate {} Mbit/s, origin {} Mbit/s, slow {} Mbit/s, tracker {}, tbf burst ≥128 KiB, latency 50ms, leechers {}",
        scenario.hosts,
        scenario.leechers(),
        scenario.slow_leechers(),
        scenario.size_bytes,
        scenario.rate_mbit,
        scenario.origin_rate_mbit.unwrap_or(scenario.rate_mbit),
        scenario.slow_rate_mbit.map_or_else(|| "-".to_owned(), |r| r.to_string()),
        tracker.name(),
        if a.leechers_leave {
            "leave at completion"
        } else {
            "seed until the last completes"
        },
    );
    let setup = match scenario.racks {
        Some(r) => format!(
            "{setup}, {} racks (leecher i in rack (i-2) mod R) behind {} Mbit/s links to the core, {}",
            r.racks,
            r.uplink_mbit,
            if r.oblivious {
                "p2pe leechers unlabelled"
            } else {
                "p2pe leechers --rack rK"
            }
        ),
        None => setup,
    };
    if !a.json {
        let header = if scenario.racks.is_some() {
            report::table_header_racked()
        } else {
            report::table_header()
        };
        println!("{setup}\n{header}");
    }
    let json = a.json;
    let mut print = |r: &report::Row| {
        if json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            println!("{}", report::table_line(r));
        }
    };
    let result = swarm_bench::run(&scenario, &config, &mut print);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    let (rows, failures) = match result {
        Err(BenchError::Interrupted) => bail!("interrupted; namespaces and processes torn down"),
        other => other?,
    };
    if !a.no_record && !rows.is_empty() {
        let line = std::env::args().collect::<Vec<_>>().join(" ");
        report::append_markdown(&a.record, &line, &setup, &rows, &failures)
            .with_context(|| format!("append to {}", a.record.display()))?;
        tracing::info!("p2pe bench: appended to {}", a.record.display());
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} rows failed",
            failures.len(),
            failures.len() + rows.len()
        );
    }
    Ok(())
}
