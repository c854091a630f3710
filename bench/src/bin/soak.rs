//! Soak on the namespace bench (issue 11): a tracker, an origin `p2pe seed`
//! and `--hosts - 2` `p2pe get --seed-after` leechers, each on its own
//! emulated host ([`p2pe_bench::netns`]), distributing one file round after
//! round for `--duration-s`, while peers are SIGSTOPped (then SIGCONTinued),
//! SIGKILLed (then restarted on the same output directory, so they resume) at
//! random, and the tracker is SIGKILLed and restarted once, half way.
//!
//! A round starts every leecher on an empty directory and ends when each has
//! reported completion (after any kill, its restarted process must report it
//! again) and none is stopped or down; then every copy is compared byte for
//! byte with the origin's and the leechers are stopped. Failure of a round (a
//! copy that differs, or a leecher not complete within `--round-bound-s`) is
//! reported and makes the run exit non-zero.
//!
//! Output: one JSON object per round on stdout, then a markdown summary with
//! the counts (rounds, completions, copies verified, SIGSTOPs, SIGKILLs and
//! restarts, tracker restarts, gets that exited on their own).
//!
//! Bounds: the run ends after `--duration-s` (the round in progress is
//! finished, within `--round-bound-s`); every process is started by this
//! harness and killed and reaped by it; namespaces carry the run's prefix and
//! are deleted on exit (and stale ones of a killed earlier run first).
//!
//! Run (root): `cargo run --release -p p2pe-bench --bin soak -- [--duration-s 600] [--hosts 16]`

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use p2pe_bench::netns::{self, Lan, LinkSpec};
use p2pe_bench::swarm_bench::proc::Proc;
use p2pe_bench::swarm_bench::{install_signal_flag, is_complete, same_bytes, write_data};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// The `p2pe` binary (default: `p2pe` beside this program).
    #[arg(long, value_name = "BIN")]
    p2pe: Option<PathBuf>,
    /// Emulated hosts: tracker, origin and `hosts - 2` leechers (3..=64).
    #[arg(long, default_value_t = 16)]
    hosts: usize,
    /// Start no new round after this many seconds.
    #[arg(long, default_value_t = 600)]
    duration_s: u64,
    /// File size in MiB.
    #[arg(long, default_value_t = 128)]
    size_mib: u64,
    /// Every host's link, Mbit/s each way.
    #[arg(long, default_value_t = 40.0)]
    mbit: f64,
    /// Seed of the chaos schedule.
    #[arg(long, default_value_t = 1)]
    rng_seed: u64,
    /// Seconds between chaos events: uniform in [MIN, 3 x MIN).
    #[arg(long, default_value_t = 2.0)]
    chaos_every_s: f64,
    /// A round not complete after this many seconds fails.
    #[arg(long, default_value_t = 300)]
    round_bound_s: u64,
    /// Work directory (default: a fresh one under the temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const TRACKER_HOST: usize = 0;
const ORIGIN_HOST: usize = 1;
const PORT: u16 = 6881;
const TRACKER_PORT: u16 = 6969;
/// Announce interval of the soak's tracker: short, so that peers find each
/// other again soon after the tracker restart.
const TRACKER_INTERVAL_S: &str = "20";
const DATA_NAME: &str = "soak.bin";
/// Bound on a stopped process's exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The harness's tick.
const TICK: Duration = Duration::from_millis(50);

/// One peer host's process and what the harness did to it.
struct Peer {
    host: usize,
    proc: Option<Proc>,
    /// SIGCONT at this time.
    stopped_until: Option<Instant>,
    /// Restart at this time (killed, or exited on its own).
    restart_at: Option<Instant>,
    /// The current process reported completion.
    complete: bool,
    dir: PathBuf,
}

#[derive(Debug, Default, serde::Serialize)]
struct Counts {
    rounds: u32,
    rounds_failed: u32,
    completions: u32,
    copies_verified: u32,
    copies_differing: u32,
    sigstop: u32,
    sigstop_origin: u32,
    sigkill_restart: u32,
    sigkill_origin: u32,
    tracker_restarts: u32,
    self_exits: u32,
}

struct Soak {
    args: Args,
    bin: PathBuf,
    lan: Lan,
    work: PathBuf,
    torrent: PathBuf,
    data_file: PathBuf,
    rng: ChaCha8Rng,
    counts: Counts,
    log_seq: u32,
}

impl Soak {
    fn addr(&self, host: usize, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.lan.hosts()[host].addr, port)
    }

    fn spawn(&mut self, host: usize, argv: &[String], name: &str) -> anyhow::Result<Proc> {
        let mut cmd = self.lan.command(host, &argv[0]);
        cmd.args(&argv[1..]);
        self.log_seq += 1;
        let log = self
            .work
            .join("logs")
            .join(format!("{:05}-{name}.log", self.log_seq));
        Proc::spawn(cmd, name, &log, Stdio::null()).with_context(|| format!("spawn {name}"))
    }

    fn tracker(&mut self) -> anyhow::Result<Proc> {
        let listen = self.addr(TRACKER_HOST, TRACKER_PORT).to_string();
        let argv = [
            self.bin.display().to_string(),
            "tracker".into(),
            "--listen".into(),
            listen,
            "--interval".into(),
            TRACKER_INTERVAL_S.into(),
        ];
        self.spawn(TRACKER_HOST, &argv, "tracker")
    }

    fn peer_proc(&mut self, host: usize, dir: &Path) -> anyhow::Result<Proc> {
        let listen = self.addr(host, PORT).to_string();
        let mut argv = vec![self.bin.display().to_string()];
        if host == ORIGIN_HOST {
            argv.extend(["seed".into(), self.torrent.display().to_string()]);
            argv.extend(["--path".into(), dir.display().to_string()]);
        } else {
            argv.extend(["get".into(), self.torrent.display().to_string()]);
            argv.extend(["-o".into(), dir.display().to_string()]);
            argv.push("--seed-after".into());
        }
        argv.extend(["--listen".into(), listen, "--json".into()]);
        // The emulated hosts share this machine's two cores.
        argv.extend(["--workers".into(), "1".into()]);
        let name = if host == ORIGIN_HOST {
            "origin".to_owned()
        } else {
            format!("peer{host}")
        };
        self.spawn(host, &argv, &name)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(self.rng.random_range(lo..hi))
    }

    /// One chaos event on a random peer that is up and running.
    fn chaos(&mut self, peers: &mut [Peer], now: Instant) {
        let up: Vec<usize> = (0..peers.len())
            .filter(|&i| peers[i].proc.is_some() && peers[i].stopped_until.is_none())
            .collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.rng.random_range(0..up.len())];
        let stop = self.rng.random_bool(0.5);
        let p = &mut peers[i];
        let Some(proc) = p.proc.as_mut() else { return };
        if stop {
            proc.signal(libc::SIGSTOP);
            let secs = self.rng.random_range(2.0..12.0);
            p.stopped_until = Some(now + Duration::from_secs_f64(secs));
            self.counts.sigstop += 1;
            self.counts.sigstop_origin += u32::from(p.host == ORIGIN_HOST);
            eprintln!("soak: SIGSTOP host {} for {secs:.1} s", p.host);
        } else {
            proc.signal(libc::SIGKILL);
            let _ = proc.terminate(STOP_GRACE);
            p.proc = None;
            p.complete = false;
            let secs = self.rng.random_range(0.5..3.0);
            p.restart_at = Some(now + Duration::from_secs_f64(secs));
            self.counts.sigkill_restart += 1;
            self.counts.sigkill_origin += u32::from(p.host == ORIGIN_HOST);
            eprintln!("soak: SIGKILL host {}, restart in {secs:.1} s", p.host);
        }
    }
}

/// Keeps every peer's process state current: completion, own exits, SIGCONT
/// and restarts that are due.
fn tend(soak: &mut Soak, peers: &mut [Peer], now: Instant) -> anyhow::Result<()> {
    for p in peers.iter_mut() {
        if let Some(proc) = p.proc.as_mut() {
            proc.pump();
            if !p.complete && proc.find_json(is_complete).is_some() {
                p.complete = true;
                if p.host != ORIGIN_HOST {
                    soak.counts.completions += 1;
                }
            }
            if let Some(exit) = proc.try_reap()? {
                eprintln!("soak: host {} exited on its own: {}", p.host, exit.status);
                soak.counts.self_exits += 1;
                p.proc = None;
                p.complete = false;
                p.stopped_until = None;
                p.restart_at = Some(now + Duration::from_secs(1));
            }
        }
        if p.stopped_until.is_some_and(|t| now >= t) {
            if let Some(proc) = p.proc.as_ref() {
                proc.signal(libc::SIGCONT);
            }
            p.stopped_until = None;
        }
        if p.restart_at.is_some_and(|t| now >= t) {
            let dir = p.dir.clone();
            p.proc = Some(soak.peer_proc(p.host, &dir)?);
            p.restart_at = None;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !netns::is_root() {
        bail!("the soak needs root (network namespaces); run as root");
    }
    if !(3..=64).contains(&args.hosts) {
        bail!("--hosts must be in 3..=64");
    }
    let bin = match &args.p2pe {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("p2pe"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p p2pe-tools) or pass --p2pe",
            bin.display()
        );
    }
    let stop = install_signal_flag()?;
    let _ = netns::reap_stale("p2ps");
    let lan = Lan::create(
        &netns::run_prefix("p2ps"),
        &vec![LinkSpec::symmetric_mbit(args.mbit); args.hosts],
    )?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("p2pe-soak-{}", std::process::id())));
    let origin_dir = work.join("origin");
    std::fs::create_dir_all(&origin_dir)?;
    std::fs::create_dir_all(work.join("logs"))?;
    let data_file = origin_dir.join(DATA_NAME);
    write_data(&data_file, args.size_mib << 20, 0x50a4)?;
    let torrent = work.join("soak.torrent");
    let tracker_url = format!(
        "udp://{}",
        SocketAddrV4::new(lan.hosts()[0].addr, TRACKER_PORT)
    );
    let out = Command::new(&bin)
        .arg("create")
        .arg(&data_file)
        .arg("-o")
        .arg(&torrent)
        .args(["--force", "--tracker", &tracker_url])
        .output()?;
    if !out.status.success() {
        bail!("p2pe create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rng = ChaCha8Rng::seed_from_u64(args.rng_seed);
    let mut soak = Soak {
        args,
        bin,
        lan,
        work,
        torrent,
        data_file,
        rng,
        counts: Counts::default(),
        log_seq: 0,
    };
    let result = run(&mut soak, &stop);
    let _ = soak.lan.teardown();
    let c = &soak.counts;
    println!("\n| rounds | failed | completions | copies verified | differing | SIGSTOP (origin) | SIGKILL+restart (origin) | tracker restarts | gets exited on their own |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} | {} |",
        c.rounds,
        c.rounds_failed,
        c.completions,
        c.copies_verified,
        c.copies_differing,
        c.sigstop,
        c.sigstop_origin,
        c.sigkill_restart,
        c.sigkill_origin,
        c.tracker_restarts,
        c.self_exits
    );
    result?;
    if c.rounds_failed > 0 || c.copies_differing > 0 {
        bail!("soak failed (logs in {})", soak.work.display());
    }
    let _ = std::fs::remove_dir_all(&soak.work);
    Ok(())
}

fn run(soak: &mut Soak, stop: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
    let start = Instant::now();
    let duration = Duration::from_secs(soak.args.duration_s);
    let mut tracker = soak.tracker()?;
    let mut tracker_restart_at = None;
    let mut tracker_restarted = false;
    let origin_dir = soak.data_file.parent().context("origin dir")?.to_owned();
    let mut peers = vec![Peer {
        host: ORIGIN_HOST,
        proc: None,
        stopped_until: None,
        restart_at: Some(Instant::now()),
        complete: false,
        dir: origin_dir,
    }];
    let every = soak.args.chaos_every_s.max(0.1);
    let mut next_chaos = Instant::now() + soak.uniform(every, 3.0 * every);
    while start.elapsed() < duration {
        let round = soak.counts.rounds;
        let round_start = Instant::now();
        let round_dir = soak.work.join(format!("round{round}"));
        peers.truncate(1);
        for host in ORIGIN_HOST + 1..soak.args.hosts {
            let dir = round_dir.join(format!("peer{host}"));
            std::fs::create_dir_all(&dir)?;
            peers.push(Peer {
                host,
                proc: None,
                stopped_until: None,
                restart_at: Some(round_start),
                complete: false,
                dir,
            });
        }
        let bound = Duration::from_secs(soak.args.round_bound_s);
        let ok = loop {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let now = Instant::now();
            tend(soak, &mut peers, now)?;
            if !tracker_restarted && now.duration_since(start) >= duration / 2 {
                tracker.signal(libc::SIGKILL);
                let _ = tracker.terminate(STOP_GRACE);
                tracker_restart_at = Some(now + Duration::from_secs(2));
                tracker_restarted = true;
                eprintln!("soak: tracker killed, restart in 2 s");
            }
            if tracker_restart_at.is_some_and(|t| now >= t) {
                tracker = soak.tracker()?;
                tracker_restart_at = None;
                soak.counts.tracker_restarts += 1;
            }
            let settled = peers.iter().all(|p| {
                p.proc.is_some()
                    && p.stopped_until.is_none()
                    && (p.host == ORIGIN_HOST || p.complete)
            });
            if settled {
                break true;
            }
            if now.duration_since(round_start) > bound {
                let missing: Vec<usize> = peers
                    .iter()
                    .filter(|p| p.host != ORIGIN_HOST && !p.complete)
                    .map(|p| p.host)
                    .collect();
                eprintln!("soak: round {round} not complete in {bound:?}: hosts {missing:?}");
                break false;
            }
            if now >= next_chaos {
                soak.chaos(&mut peers, now);
                next_chaos = now + soak.uniform(every, 3.0 * every);
            }
            std::thread::sleep(TICK);
        };
        let round_s = round_start.elapsed().as_secs_f64();
        let mut differing = 0;
        for p in peers.iter_mut().skip(1) {
            if let Some(mut proc) = p.proc.take() {
                proc.signal(libc::SIGCONT);
                let _ = proc.terminate(STOP_GRACE);
            }
            if ok {
                let copy = p.dir.join(DATA_NAME);
                if same_bytes(&soak.data_file, &copy).unwrap_or(false) {
                    soak.counts.copies_verified += 1;
                } else {
                    differing += 1;
                    eprintln!("soak: {} differs from the origin's data", copy.display());
                }
            }
        }
        soak.counts.copies_differing += differing;
        soak.counts.rounds += 1;
        if !ok || differing > 0 {
            soak.counts.rounds_failed += 1;
        } else {
            let _ = std::fs::remove_dir_all(&round_dir);
        }
        // The physical bound of one round (README): the origin's upload of
        // one copy, or every leecher's copy over the swarm's total upload.
        let f_bits = (soak.args.size_mib << 20) as f64 * 8.0;
        let u_bits = soak.args.mbit * 1e6;
        let leechers = (soak.args.hosts - 2) as f64;
        let d_p2p_s = (f_bits / u_bits).max(leechers * f_bits / ((leechers + 1.0) * u_bits));
        let line = serde_json::json!({
            "event": "round",
            "d_p2p_s": d_p2p_s,
            "ratio": round_s / d_p2p_s,
            "round": round,
            "ok": ok && differing == 0,
            "seconds": round_s,
            "at_s": start.elapsed().as_secs_f64(),
            "counts": &soak.counts,
        });
        println!("{line}");
    }
    for p in peers.iter_mut() {
        if let Some(mut proc) = p.proc.take() {
            proc.signal(libc::SIGCONT);
            let _ = proc.terminate(STOP_GRACE);
        }
    }
    let _ = tracker.terminate(STOP_GRACE);
    Ok(())
}
