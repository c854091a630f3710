//! Send-path line-rate benchmark of `p2pe::rt`.
//!
//! Creates a file (2 GiB by default) in /tmp, warms the page cache, opens it
//! as a one-file seed-mode `p2pe::store::Storage` (4 MiB pieces, BLAKE3
//! digests computed while warming; the store's own verification at open
//! faults its mapping in), then for
//! each [`SendStrategy`] serves the whole file as BEP 3 `piece` messages
//! (13-byte header + block, `--block-bytes`, from the store's
//! `servable_regions`) over one TCP connection on
//! 127.0.0.1 to a client process (this binary re-executed with `--client`)
//! that receives and discards. Reports Gbit/s and CPU seconds per GiB for each
//! side, and iperf3 (`-l 1M -t 5`) measured in the same run as the TCP
//! ceiling. Repeats `--reps` times and prints medians as a markdown table.
//!
//! Run: `cargo run --release -p p2pe-bench --bin linerate -- [--size-gib 2]`
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use p2pe::base::{
    Block, BlockOffset, InfoHash, PieceDigest, PieceHashKind, PieceHashes, PieceIndex,
};
use p2pe::rt::{self, ConnId, Ctx, Handler, RuntimeConfig, SendStrategy};
use p2pe::store::{FileSpec, OpenMode, ServeCheck, Storage, StorageLayout};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Size of the served file in GiB.
    #[arg(long, default_value_t = 2.0)]
    size_gib: f64,
    /// Path of the served file (created or resized if needed).
    #[arg(long, default_value = "/tmp/p2pe-linerate.bin")]
    file: PathBuf,
    /// Repetitions per strategy (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Block size of each `piece` message in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    block_bytes: u64,
    /// Strategies to run, comma-separated: send,splice,sendzc.
    #[arg(long, default_value = "send,splice,sendzc")]
    strategies: String,
    /// Seconds of each iperf3 run (0: skip iperf3).
    #[arg(long, default_value_t = 5)]
    iperf_secs: u32,
    /// Internal: run as the receiving client, connecting to this address.
    #[arg(long)]
    client: Option<SocketAddr>,
    /// Internal (client): bytes to receive.
    #[arg(long, default_value_t = 0)]
    bytes: u64,
}

const GIB: f64 = (1u64 << 30) as f64;
/// Piece length of the served storage; a block never spans two pieces (the
/// default 16 KiB blocks divide it).
const PIECE_BYTES: u64 = 4 << 20;
/// Bytes kept queued per connection by the seeder: deep enough that the
/// runtime always has a full gather (64 iovecs) or splice chunk ready.
const WINDOW_BYTES: u64 = 8 << 20;

/// User + system CPU seconds of this process (all threads, io-wq included).
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Client: receive `bytes` bytes, discard, print "elapsed_s cpu_s".
fn client(addr: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let cpu0 = cpu_seconds();
    let mut s = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("server closed after {got} of {bytes} bytes");
        }
        got += n as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    println!("{elapsed} {}", cpu_seconds() - cpu0);
    Ok(())
}

/// Serves the whole file as `piece` messages to each inbound connection.
struct Seeder {
    storage: Arc<Storage>,
    block_bytes: u64,
    next: u64,
    closed: mpsc::Sender<()>,
}

impl Seeder {
    fn fill(&mut self, ctx: &mut Ctx<()>, conn: ConnId) {
        let total = self.storage.layout().total_len_bytes();
        while self.next < total && ctx.queued_bytes(conn) < WINDOW_BYTES {
            let (piece, offset) = (self.next / PIECE_BYTES, self.next % PIECE_BYTES);
            let len = self
                .block_bytes
                .min(total - self.next)
                .min(PIECE_BYTES - offset);
            let mut h = [0u8; 13];
            h[0..4].copy_from_slice(&(9 + len as u32).to_be_bytes());
            h[4] = 7;
            h[5..9].copy_from_slice(&(piece as u32).to_be_bytes());
            h[9..13].copy_from_slice(&(offset as u32).to_be_bytes());
            let block = Block {
                piece: PieceIndex(piece as u32),
                offset: BlockOffset(offset as u32),
                len_bytes: len as u32,
            };
            let Ok(regions) = self.storage.servable_regions(block) else {
                return;
            };
            for (i, region) in regions.into_iter().enumerate() {
                ctx.send_region(conn, if i == 0 { &h } else { &[] }, region);
            }
            self.next += len;
        }
    }
}

impl Handler for Seeder {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, conn: ConnId, _: SocketAddr, _: bool) {
        self.next = 0;
        self.fill(ctx, conn);
    }
    fn on_recv(&mut self, _: &mut Ctx<()>, _: ConnId, _: &[u8]) {}
    fn on_sent(&mut self, ctx: &mut Ctx<()>, conn: ConnId) {
        self.fill(ctx, conn);
    }
    fn on_close(&mut self, _: &mut Ctx<()>, _: ConnId, _: Option<std::io::Error>) {
        let _ = self.closed.send(());
    }
    fn on_timer(&mut self, _: &mut Ctx<()>, _: Instant) {}
    fn is_done(&self) -> bool {
        false
    }
}

/// One measurement: throughput and CPU per GiB of both sides.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    gbit_s: f64,
    server_cpu_s_per_gib: f64,
    client_cpu_s_per_gib: f64,
}

fn run_strategy(
    args: &Args,
    storage: &Arc<Storage>,
    strategy: SendStrategy,
) -> anyhow::Result<Sample> {
    let (tx, rx) = mpsc::channel();
    let config = RuntimeConfig {
        workers: 1,
        listen: Some("127.0.0.1:0".parse()?),
        send_strategy: strategy,
        pin_cores: false,
        ..RuntimeConfig::default()
    };
    let (storage2, block) = (storage.clone(), args.block_bytes);
    let server = rt::run(config, move |_| Seeder {
        storage: storage2.clone(),
        block_bytes: block,
        next: 0,
        closed: tx.clone(),
    })?;
    let addr = server.local_addr().context("no listen address")?;
    let len_bytes = storage.layout().total_len_bytes();
    let blocks: u64 = (0..storage.piece_count())
        .map(|p| storage.layout().piece_len(PieceIndex(p)).unwrap_or(0))
        .map(|len| u64::from(len).div_ceil(args.block_bytes))
        .sum();
    let wire_bytes = len_bytes + 13 * blocks;
    let cpu0 = cpu_seconds();
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--client",
            &addr.to_string(),
            "--bytes",
            &wire_bytes.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()?;
    rx.recv_timeout(Duration::from_secs(60))
        .context("server did not see the close")?;
    let server_cpu = cpu_seconds() - cpu0;
    server.shutdown()?;
    if !out.status.success() {
        bail!("client failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    let (Some(Ok(elapsed)), Some(Ok(client_cpu))) = (it.next(), it.next()) else {
        bail!("bad client output {text:?}");
    };
    let gib = len_bytes as f64 / GIB;
    Ok(Sample {
        gbit_s: len_bytes as f64 * 8.0 / elapsed / 1e9,
        server_cpu_s_per_gib: server_cpu / gib,
        client_cpu_s_per_gib: client_cpu / gib,
    })
}

/// `iperf3 -c 127.0.0.1 -l 1M -t N` against a one-off server we start and
/// stop by PID.
fn iperf(secs: u32) -> anyhow::Result<Sample> {
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let mut srv = Command::new("iperf3")
        .args(["-s", "-1", "--forceflush", "-p", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Wait (bounded by iperf3 itself exiting) for it to listen.
    let mut out = srv.stdout.take().context("iperf3 stdout")?;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("listening") {
        if out.read(&mut byte)? == 0 {
            bail!("iperf3 -s exited before listening");
        }
        seen.push(byte[0]);
    }
    let c = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-l", "1M", "-J"])
        .args(["-t", &secs.to_string()])
        .output();
    // SAFETY: kill(2) on the PID of the child we spawned and have not reaped.
    unsafe { libc::kill(srv.id() as libc::pid_t, libc::SIGTERM) };
    let _ = srv.wait();
    let c = c?;
    let v: serde_json::Value = serde_json::from_slice(&c.stdout)?;
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 json")?;
    let bytes = end["sum_received"]["bytes"]
        .as_f64()
        .context("iperf3 json")?;
    let secs_f = end["sum_received"]["seconds"]
        .as_f64()
        .context("iperf3 json")?;
    let cpu = &end["cpu_utilization_percent"];
    let per_gib = |pct: f64| pct / 100.0 * secs_f / (bytes / GIB);
    Ok(Sample {
        gbit_s: bps / 1e9,
        server_cpu_s_per_gib: per_gib(cpu["host_total"].as_f64().unwrap_or(f64::NAN)),
        client_cpu_s_per_gib: per_gib(cpu["remote_total"].as_f64().unwrap_or(f64::NAN)),
    })
}

/// Creates (or resizes) the file with pseudo-random bytes and reads it once
/// so it sits in the page cache, returning the BLAKE3 digest of each
/// [`PIECE_BYTES`] piece.
fn prepare(path: &Path, len: u64) -> anyhow::Result<Vec<[u8; 32]>> {
    let ok = std::fs::metadata(path)
        .map(|m| m.len() == len)
        .unwrap_or(false);
    if !ok {
        let mut f = std::fs::File::create(path)?;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 8 << 20];
        let mut left = len;
        while left > 0 {
            for w in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; PIECE_BYTES as usize];
    let mut digests = Vec::new();
    loop {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        match PieceDigest::of(PieceHashKind::Blake3, &buf[..n]) {
            PieceDigest::Blake3(d) => digests.push(d),
            PieceDigest::Sha1(_) => bail!("BLAKE3 asked, SHA-1 made"),
        }
    }
    Ok(digests)
}

/// Opens `path` as a one-file seed-mode storage with `digests`, every piece
/// verified (the store hashes it through its mapping, which faults the
/// mapping in so no strategy pays the first touch).
fn open_storage(path: &Path, len: u64, digests: Vec<[u8; 32]>) -> anyhow::Result<Storage> {
    let dir = path.parent().context("file has no directory")?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("file name is not UTF-8")?;
    let spec = FileSpec {
        path_components: vec![name.to_string()],
        len_bytes: len,
        padding: false,
    };
    let layout = StorageLayout::new(vec![spec], PIECE_BYTES as u32, PieceHashes::Blake3(digests))?;
    let (mut storage, report) = Storage::open(dir, layout, InfoHash([0x11; 20]), OpenMode::Seed)?;
    if report.verified() != storage.piece_count() {
        bail!(
            "{} of {} pieces verified",
            report.verified(),
            storage.piece_count()
        );
    }
    // The runtime is measured, not the store's per-read fstat.
    storage.set_serve_check(ServeCheck::Periodic);
    Ok(storage)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn parse_strategy(s: &str) -> anyhow::Result<SendStrategy> {
    Ok(match s {
        "send" => SendStrategy::Send,
        "splice" => SendStrategy::Splice,
        "sendzc" => SendStrategy::SendZc,
        _ => bail!("unknown strategy {s:?}"),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.client {
        return client(addr, args.bytes);
    }
    let len = (args.size_gib * GIB) as u64;
    let digests = prepare(&args.file, len)?;
    let storage = Arc::new(open_storage(&args.file, len, digests)?);
    eprintln!("storage open, {} pieces verified", storage.verified_count());
    let strategies: Vec<SendStrategy> = args
        .strategies
        .split(',')
        .map(parse_strategy)
        .collect::<anyhow::Result<_>>()?;
    let mut rows: Vec<(String, Vec<Sample>)> = strategies
        .iter()
        .map(|s| (format!("rt {s:?}"), Vec::new()))
        .collect();
    rows.push(("iperf3 -l 1M".into(), Vec::new()));
    for rep in 0..args.reps {
        for (i, &s) in strategies.iter().enumerate() {
            let sample = run_strategy(&args, &storage, s)?;
            eprintln!("rep {rep} {s:?}: {sample:?}");
            rows[i].1.push(sample);
        }
        if args.iperf_secs > 0 {
            let sample = iperf(args.iperf_secs)?;
            eprintln!("rep {rep} iperf3: {sample:?}");
            rows[strategies.len()].1.push(sample);
        }
    }
    let ceiling = median(rows[strategies.len()].1.iter().map(|s| s.gbit_s).collect());
    println!("| path | Gbit/s | ratio to iperf3 | sender CPU s/GiB | receiver CPU s/GiB |");
    println!("|---|---:|---:|---:|---:|");
    for (name, samples) in &rows {
        if samples.is_empty() {
            continue;
        }
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let g = m(|s| s.gbit_s);
        println!(
            "| {name} | {g:.2} | {:.2} | {:.3} | {:.3} |",
            g / ceiling,
            m(|s| s.server_cpu_s_per_gib),
            m(|s| s.client_cpu_s_per_gib)
        );
    }
    Ok(())
}
