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
//! Both nodes run in this process (the engine's [`Node`]), on 127.0.0.1, with
//! the default configuration (2 workers here); time is from the get's start
//! to its completion. Scenarios alternate within each repetition; medians of
//! `--reps` and the ratio to the baseline median are printed as a markdown
//! table. RSS is not separable per node in one process and is not reported.
//!
//! Run: `cargo run --release -p p2pe-bench --bin hostile -- [--size-mib 64] [--reps 3]`

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
    let (s, _) = Storage::open(dir, layout, meta.info_hash().0, mode)?;
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
) -> anyhow::Result<Hostile> {
    let ih = meta.info_hash().0;
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
            "stalled at {}/{} pieces, {} peers; the get's log:",
            p.verified_pieces, p.piece_count, p.peers
        );
        while let Some(e) = get.poll_event() {
            eprintln!("  {e}");
        }
        if let Some(e) = get.take_error() {
            eprintln!("  fatal: {e:?}");
        }
    }
    get.shutdown()?;
    Ok(done)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("p2pe-hostile-{}", std::process::id()));
    let src = tmp.join("src");
    let piece_len = args.piece_kib * 1024;
    let size = args.size_mib as usize * 1024 * 1024;
    let pieces = (size as u64).div_ceil(u64::from(piece_len)) as u32;
    let meta = make_torrent(&src, size, piece_len)?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); SCENARIOS.len()];
    let mut failures = vec![0usize; SCENARIOS.len()];
    for rep in 0..args.reps.max(1) {
        for (i, name) in SCENARIOS.iter().enumerate() {
            if i > 0 && !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
                continue;
            }
            let seed = start(&meta, open(&meta, &src, OpenMode::Seed)?, listen())?;
            let seed_addr = seed.local_addr().context("seed address")?;
            let h = set_up(name, &meta, &src, seed_addr, pieces, piece_len)?;
            let mut peers = h.first_peers.clone();
            peers.push(seed_addr);
            let t = one_get(
                &meta,
                &tmp.join("get"),
                peers,
                Duration::from_secs(args.bound_s),
            )?;
            eprintln!("rep {rep} {name}: {t:?} s");
            match t {
                Some(s) => times[i].push(s),
                None => failures[i] += 1,
            }
            if let Some((stop, t)) = h.flood {
                stop.store(true, Ordering::Release);
                drop(h.sockets);
                let _ = t.join();
            }
            drop(h.listener);
            if let Some(s) = h.slow_seed {
                s.shutdown()?;
            }
            seed.shutdown()?;
        }
    }
    let base = median(&mut times[0].clone());
    println!(
        "| scenario | median s | / baseline | failed (> {} s) |",
        args.bound_s
    );
    println!("|---|---|---|---|");
    for (i, name) in SCENARIOS.iter().enumerate() {
        if times[i].is_empty() {
            println!("| {name} | - | - | {} |", failures[i]);
            continue;
        }
        let m = median(&mut times[i]);
        println!("| {name} | {m:.3} | {:.2} | {} |", m / base, failures[i]);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
