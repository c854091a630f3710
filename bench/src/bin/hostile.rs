//! Hostile-peer benchmark (issue 11 targets): how much longer an honest
//! `get` takes from an honest seed when one hostile peer is among them,
//! against the same get with no hostile peer, in one run.
//!
//! Scenarios, each with the hostile peer(s) set up before the get starts:
//! - `baseline`: seed only;
//! - `frozen`: a peer that says it has everything, unchokes, and never
//!   answers (a SIGSTOPped seeder), dialled first;
//! - `liar`: a peer that BEP 6-rejects block 0 of each piece and garbles the
//!   rest;
//! - `idle`: 60 sockets (the default connection bound) that send nothing or
//!   only a handshake, holding every slot of the seed;
//! - `zero-window`: two leechers of the seed that ask for every block again
//!   and again and never read;
//! - `flood`: a leecher of the seed that floods valid requests while never
//!   reading, during the get;
//! - `slow`: an honest seeder limited to 2 MB/s, dialled first.
//!
//! By default both nodes run in this process (the engine's [`Node`]), on
//! 127.0.0.1, with the default configuration (2 workers here); time is from
//! the get's start to its completion. With `--p2pe BIN` the seed (and the slow
//! seed) are `p2pe seed` processes and the get is a `p2pe get` process, timed
//! from spawn to exit as a user times it, and each process's peak anonymous
//! RSS (`RssAnon` of `/proc/PID/status`, sampled every 20 ms) is reported:
//! the memory bound under each attack. The hostile peers stay in this process
//! either way. Scenarios alternate within each repetition; medians of `--reps`
//! and the ratio to the baseline median are printed as a markdown table.
//!
//! Run: `cargo run --release -p p2pe-bench --bin hostile -- [--size-mib 64] [--reps 3] [--p2pe target/release/p2pe]`
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use p2pe::node::fake_peer::{FakeListener, FakePeer, Script};
use p2pe::node::{storage_layout, Node, NodeConfig, MAX_PEERS};
use p2pe::store::{OpenMode, Storage};
use p2pe::wire::metainfo::{FileSpec, Info, Layout, Metainfo, PieceHash};

#[derive(Parser, Debug)]
struct Args {
    /// File size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u32,
    /// Piece length in KiB.
    #[arg(long, default_value_t = 1024)]
    piece_kib: u32,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Give up on one get after this many seconds (reported as a failure).
    #[arg(long, default_value_t = 120)]
    bound_s: u64,
    /// Run only these scenarios (and the baseline); repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Run seed and get as processes of this `p2pe` binary (whole-process
    /// time, peak RSS per process) instead of in this process.
    #[arg(long, value_name = "BIN")]
    p2pe: Option<std::path::PathBuf>,
}

const SCENARIOS: [&str; 7] = [
    "baseline",
    "frozen",
    "liar",
    "idle",
    "zero-window",
    "flood",
    "slow",
];

fn make_torrent(dir: &Path, size: usize, piece_len: u32) -> anyhow::Result<Metainfo> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::create_dir_all(dir.join("t"))?;
    std::fs::write(dir.join("t").join("f0"), &data)?;
    let hashes = data
        .chunks(piece_len as usize)
        .map(PieceHash::of_piece)
        .collect();
    let spec = FileSpec {
        path_components: vec!["f0".into()],
        len_bytes: size as u64,
        padding: false,
    };
    let info = Info::new(
        "t".into(),
        Layout::MultiFile(vec![spec]),
        piece_len,
        hashes,
        false,
    )?;
    Ok(Metainfo::new(info, vec![], None, None, None))
}

fn open(meta: &Metainfo, dir: &Path, mode: OpenMode) -> anyhow::Result<Arc<Storage>> {
    let layout = storage_layout(meta)?;
    let (s, _) = Storage::open(dir, layout, meta.info_hash(), mode)?;
    Ok(Arc::new(s))
}

fn start(meta: &Metainfo, store: Arc<Storage>, config: NodeConfig) -> anyhow::Result<Node> {
    Node::start(meta, store, config).context("start node")
}

fn listen() -> NodeConfig {
    NodeConfig {
        listen: Some("127.0.0.1:0".parse().expect("address")),
        ..NodeConfig::new()
    }
}

/// Whatever a scenario keeps alive while the get runs.
#[derive(Default)]
struct Hostile {
    listener: Option<FakeListener>,
    sockets: Vec<FakePeer>,
    slow_seed: Option<Node>,
    slow_proc: Option<procs::NodeProc>,
    flood: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    first_peers: Vec<SocketAddr>,
}

fn set_up(
    name: &str,
    meta: &Metainfo,
    src: &Path,
    seed: SocketAddr,
    pieces: u32,
    piece_len: u32,
    procs: Option<&procs::Files>,
) -> anyhow::Result<Hostile> {
    let ih = meta.info_hash();
    let mut h = Hostile::default();
    match name {
        "baseline" => {}
        "frozen" | "liar" => {
            let script = if name == "frozen" {
                Script::FrozenSeeder
            } else {
                Script::Liar
            };
            let l = FakeListener::spawn(ih, script, 16);
            h.first_peers.push(l.addr);
            h.listener = Some(l);
        }
        "idle" => {
            for i in 0..MAX_PEERS {
                let p = if i % 2 == 0 {
                    FakePeer::connect_silent(seed)
                } else {
                    FakePeer::connect(seed, ih, (i % 200) as u8 + 1)
                };
                h.sockets.extend(p);
            }
            // Past the slot policy's reclaim grace, as an attacker would be.
            std::thread::sleep(Duration::from_secs(2));
        }
        "zero-window" => {
            for i in 0..2 {
                if let Some(p) = FakePeer::connect_leecher(seed, ih, 40 + i) {
                    h.sockets.push(p);
                }
            }
            for _ in 0..8 {
                for s in &mut h.sockets {
                    s.request_all(pieces, piece_len);
                }
            }
        }
        "flood" => {
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let mut p = FakePeer::connect_leecher(seed, ih, 9).context("flood peer")?;
            let t = std::thread::spawn(move || {
                while !stop2.load(Ordering::Acquire) && p.request_all(pieces, piece_len) {}
            });
            h.flood = Some((stop, t));
        }
        "slow" if procs.is_some() => {
            let files = procs.context("process mode")?;
            let p = procs::NodeProc::seed(files, &["--upload-limit", "2MB"])?;
            h.first_peers.push(p.addr);
            h.slow_proc = Some(p);
        }
        "slow" => {
            let slow = start(
                meta,
                open(meta, src, OpenMode::Seed)?,
                NodeConfig {
                    upload_limit_bytes_per_s: Some(2_000_000),
                    ..listen()
                },
            )?;
            h.first_peers.extend(slow.local_addr());
            h.slow_seed = Some(slow);
        }
        other => bail!("unknown scenario {other}"),
    }
    Ok(h)
}

fn one_get(
    meta: &Metainfo,
    dir: &Path,
    peers: Vec<SocketAddr>,
    bound: Duration,
) -> anyhow::Result<Option<f64>> {
    let _ = std::fs::remove_dir_all(dir);
    let started = Instant::now();
    let get = start(
        meta,
        open(meta, dir, OpenMode::Create)?,
        NodeConfig {
            peers,
            ..NodeConfig::new()
        },
    )?;
    let mut done = None;
    while started.elapsed() < bound {
        if get.progress().complete {
            done = Some(started.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if done.is_none() {
        let p = get.progress();
        eprintln!(
            "stalled at {}/{} pieces, {} peers (the node's events: RUST_LOG=p2pe=info)",
            p.verified_pieces, p.piece_count, p.peers
        );
        if let Some(e) = get.take_error() {
            eprintln!("  fatal: {e:?}");
        }
    }
    get.shutdown()?;
    Ok(done)
}

/// Process mode (`--p2pe BIN`): `p2pe seed` / `p2pe get` children with their
/// peak memory.
mod procs {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _};
    use p2pe_bench::node_linerate::procfs::{Memory, PeakSampler};

    /// Bound on a seed opening its port, and on it exiting after SIGTERM.
    const START_BOUND: Duration = Duration::from_secs(20);

    /// What every process of a run shares.
    pub(crate) struct Files {
        /// The `p2pe` binary.
        pub bin: PathBuf,
        /// The `.torrent`.
        pub torrent: PathBuf,
        /// The seed's data directory.
        pub src: PathBuf,
        /// Where stderr logs go.
        pub logs: PathBuf,
    }

    /// A running `p2pe seed` with its memory sampler.
    pub(crate) struct NodeProc {
        /// Its listen address.
        pub addr: SocketAddr,
        child: Child,
        sampler: Option<PeakSampler>,
    }

    fn free_port() -> anyhow::Result<SocketAddr> {
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
    }

    impl NodeProc {
        /// Starts `p2pe seed TORRENT --path SRC --listen 127.0.0.1:PORT EXTRA…`
        /// and waits (bounded) until it accepts connections.
        pub(crate) fn seed(files: &Files, extra: &[&str]) -> anyhow::Result<NodeProc> {
            let addr = free_port()?;
            let log = std::fs::File::create(files.logs.join(format!("seed-{}.log", addr.port())))?;
            let child = Command::new(&files.bin)
                .arg("seed")
                .arg(&files.torrent)
                .arg("--path")
                .arg(&files.src)
                .args(["--listen", &addr.to_string()])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("spawn p2pe seed")?;
            let mut p = NodeProc {
                addr,
                sampler: Some(PeakSampler::start(child.id())),
                child,
            };
            let started = Instant::now();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if started.elapsed() > START_BOUND || p.child.try_wait()?.is_some() {
                    bail!("p2pe seed did not come up on {addr}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(p)
        }

        /// SIGTERM, bounded wait (then SIGKILL); returns the peak memory.
        pub(crate) fn stop(mut self) -> Memory {
            // SAFETY: kill takes no pointers; the pid is our unreaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let started = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && started.elapsed() < START_BOUND {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.sampler
                .take()
                .map(PeakSampler::finish)
                .unwrap_or_default()
        }
    }

    impl Drop for NodeProc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Runs `p2pe get TORRENT -o DIR --peer …` to exit, bounded: the wall time
    /// from spawn to a successful exit (`None` on failure or timeout) and its
    /// peak memory.
    pub(crate) fn get(
        files: &Files,
        dir: &Path,
        peers: &[SocketAddr],
        bound: Duration,
    ) -> anyhow::Result<(Option<f64>, Memory)> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let log_path = files.logs.join("get.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&files.bin);
        cmd.arg("get").arg(&files.torrent).arg("-o").arg(dir);
        for p in peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        let started = Instant::now();
        let mut child = cmd
            .arg("--no-tracker")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn p2pe get")?;
        let sampler = PeakSampler::start(child.id());
        let mut done = None;
        while started.elapsed() < bound {
            if let Some(status) = child.try_wait()? {
                if status.success() {
                    done = Some(started.elapsed().as_secs_f64());
                } else {
                    eprintln!("get failed ({status}); log {}", log_path.display());
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok((done, sampler.finish()))
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The nodes' events (peers, disconnects, bans) on stderr with RUST_LOG=p2pe=info.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let tmp = std::env::temp_dir().join(format!("p2pe-hostile-{}", std::process::id()));
    let src = tmp.join("src");
    let piece_len = args.piece_kib * 1024;
    let size = args.size_mib as usize * 1024 * 1024;
    let pieces = (size as u64).div_ceil(u64::from(piece_len)) as u32;
    let meta = make_torrent(&src, size, piece_len)?;
    let files = match &args.p2pe {
        Some(bin) => {
            let torrent = tmp.join("t.torrent");
            std::fs::write(&torrent, meta.to_bytes())?;
            let logs = tmp.join("logs");
            std::fs::create_dir_all(&logs)?;
            Some(procs::Files {
                bin: bin.clone(),
                torrent,
                src: src.clone(),
                logs,
            })
        }
        None => None,
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); SCENARIOS.len()];
    let mut failures = vec![0usize; SCENARIOS.len()];
    // Peak RssAnon over all reps, bytes: (seed, get).
    let mut rss = vec![(0u64, 0u64); SCENARIOS.len()];
    for rep in 0..args.reps.max(1) {
        for (i, name) in SCENARIOS.iter().enumerate() {
            if i > 0 && !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
                continue;
            }
            let bound = Duration::from_secs(args.bound_s);
            let (t, mem) = if let Some(files) = &files {
                let seed = procs::NodeProc::seed(files, &[])?;
                let h = set_up(name, &meta, &src, seed.addr, pieces, piece_len, Some(files))?;
                let mut peers = h.first_peers.clone();
                peers.push(seed.addr);
                let (t, get_mem) = procs::get(files, &tmp.join("get"), &peers, bound)?;
                tear_down(h)?;
                let seed_mem = seed.stop();
                (t, Some((seed_mem.rss_anon_bytes, get_mem.rss_anon_bytes)))
            } else {
                let seed = start(&meta, open(&meta, &src, OpenMode::Seed)?, listen())?;
                let seed_addr = seed.local_addr().context("seed address")?;
                let h = set_up(name, &meta, &src, seed_addr, pieces, piece_len, None)?;
                let mut peers = h.first_peers.clone();
                peers.push(seed_addr);
                let t = one_get(&meta, &tmp.join("get"), peers, bound)?;
                tear_down(h)?;
                seed.shutdown()?;
                (t, None)
            };
            eprintln!("rep {rep} {name}: {t:?} s, peak RssAnon (seed, get) bytes {mem:?}");
            match t {
                Some(s) => times[i].push(s),
                None => failures[i] += 1,
            }
            if let Some((s, g)) = mem {
                rss[i] = (rss[i].0.max(s), rss[i].1.max(g));
            }
        }
    }
    let base = median(&mut times[0].clone());
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let procs_mode = files.is_some();
    if procs_mode {
        println!(
            "| scenario | median s (whole get process) | / baseline | failed (> {} s) | seed peak RssAnon MiB | get peak RssAnon MiB |",
            args.bound_s
        );
        println!("|---|---|---|---|---|---|");
    } else {
        println!(
            "| scenario | median s | / baseline | failed (> {} s) |",
            args.bound_s
        );
        println!("|---|---|---|---|");
    }
    for (i, name) in SCENARIOS.iter().enumerate() {
        let (m, ratio) = if times[i].is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let m = median(&mut times[i]);
            (format!("{m:.3}"), format!("{:.2}", m / base))
        };
        if procs_mode {
            println!(
                "| {name} | {m} | {ratio} | {} | {:.1} | {:.1} |",
                failures[i],
                mib(rss[i].0),
                mib(rss[i].1)
            );
        } else {
            println!("| {name} | {m} | {ratio} | {} |", failures[i]);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Stops whatever a scenario kept alive.
fn tear_down(h: Hostile) -> anyhow::Result<()> {
    if let Some((stop, t)) = h.flood {
        stop.store(true, Ordering::Release);
        drop(h.sockets);
        let _ = t.join();
    }
    drop(h.listener);
    if let Some(s) = h.slow_seed {
        s.shutdown()?;
    }
    if let Some(p) = h.slow_proc {
        p.stop();
    }
    Ok(())
}
