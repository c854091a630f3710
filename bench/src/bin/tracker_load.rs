//! UDP tracker load generator (BEP 15 announces) measuring responses per second.
//!
//! Each of `--threads` threads owns `--sockets` UDP sockets on 127.0.0.1; each
//! socket gets a connection id, then keeps `--window` announces in flight: every
//! response received is counted and answered with a new announce. Announces
//! pick one of `--torrents` info-hashes (SHA-1 of `p2pe-load-<i>`, so a
//! whitelist can be written for opentracker with `--write-whitelist`), a random
//! peer id, port and `left` (one in ten a seeder), `numwant` `--numwant`.
//! Bounded: at most `--duration` seconds (≤ 60, the connection-id lifetime),
//! loopback targets only.
//!
//! With `--http`, the same announces go as HTTP GETs (BEP 3, `compact=1`) over
//! `--sockets` TCP connections per thread, one request in flight on each;
//! HTTP/1.1 keep-alive, reconnecting whenever the tracker closes.
//!
//! With `--idle-conns N`, N HTTP/1.1 keep-alive connections are opened first
//! (each sends one announce and reads its answer, then stays silent) and held
//! through the flood; at the end each of them sends one more announce on the
//! same socket, and the JSON reports how many were still open and answered
//! (`idle_open`, `idle_answered_after`). The process raises its soft
//! `RLIMIT_NOFILE` to the hard limit and fails if N does not fit under it.
//!
//! Every run reports the flood's answer latency (send to answer, per request)
//! as `latency_p50_ms`, `latency_p99_ms` and `latency_max_ms`, and marks the
//! flood's start and end on stderr (`flood: start`, `flood: end`).
//!
//! Run: `cargo run --release -p p2pe-bench --bin tracker_load -- --target 127.0.0.1:6969`
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use p2pe::base::{InfoHash, PeerId};
use p2pe::wire::tracker::udp::{ConnectionId, PeerFamily, Request, Response, TransactionId};
use p2pe::wire::tracker::{Announce, Event, Topology};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// The tracker's UDP address (loopback only).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Load threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sockets per thread.
    #[arg(long, default_value_t = 16)]
    sockets: usize,
    /// Announces in flight per socket.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Seconds to run (at most 60).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Distinct torrents announced.
    #[arg(long, default_value_t = 1000)]
    torrents: u32,
    /// `numwant` of each announce.
    #[arg(long, default_value_t = 50)]
    numwant: u32,
    /// Announce over HTTP (TCP) instead of UDP.
    #[arg(long)]
    http: bool,
    /// Write the info-hashes (hex, one a line) to this file and exit (opentracker whitelist).
    #[arg(long)]
    write_whitelist: Option<std::path::PathBuf>,
    /// HTTP keep-alive connections opened before the flood and held idle through it
    /// (at most 60,000).
    #[arg(long, default_value_t = 0)]
    idle_conns: usize,
}

fn info_hash(i: u32) -> InfoHash {
    InfoHash::of_info_bytes(format!("p2pe-load-{i}").as_bytes())
}

/// xorshift64*: cheap per-thread randomness for request fields.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Default, Clone)]
struct Counts {
    sent: u64,
    responses: u64,
    errors: u64,
    stalls: u64,
    /// Send-to-answer latency of each answered request, in microseconds.
    latencies_us: Vec<u32>,
}

impl Counts {
    fn answered(&mut self, sent_at: Instant) {
        let us = sent_at.elapsed().as_micros();
        self.latencies_us
            .push(u32::try_from(us).unwrap_or(u32::MAX));
    }
}

/// A random announce (see the module docs) and a random transaction id.
fn random_announce(rng: &mut Rng, hashes: &[InfoHash], numwant: u32) -> (Announce, u32) {
    let r = rng.next();
    let hash = hashes[(r % hashes.len() as u64) as usize];
    let mut peer_id = [0u8; 20];
    peer_id[..8].copy_from_slice(&rng.next().to_be_bytes());
    let announce = Announce {
        info_hash: hash,
        peer_id: PeerId(peer_id),
        port: (r >> 32) as u16 | 1,
        uploaded_bytes: 0,
        downloaded_bytes: 0,
        left_bytes: if r.is_multiple_of(10) { 0 } else { 1 << 20 },
        event: Event::None,
        numwant: Some(numwant),
        key: (r >> 16) as u32,
        topology: Topology::default(),
    };
    (announce, r as u32)
}

/// Encodes a random announce into `out`; returns its transaction id.
fn announce_packet(
    rng: &mut Rng,
    hashes: &[InfoHash],
    cid: ConnectionId,
    numwant: u32,
    out: &mut Vec<u8>,
) -> u32 {
    let (announce, tid) = random_announce(rng, hashes, numwant);
    out.clear();
    Request::Announce {
        connection_id: cid,
        transaction_id: TransactionId(tid),
        announce,
    }
    .encode(out);
    tid
}

/// Most bytes buffered of one HTTP answer (a compact answer of 50 peers is
/// ~400 bytes); past it the connection is dropped and counted as an error.
const MAX_HTTP_ANSWER_BYTES: usize = 64 * 1024;

/// One HTTP connection with a request in flight.
struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// When the request in flight was sent.
    sent_at: Instant,
}

fn http_send(
    conn: &mut HttpConn,
    rng: &mut Rng,
    hashes: &[InfoHash],
    numwant: u32,
) -> std::io::Result<()> {
    let (announce, _) = random_announce(rng, hashes, numwant);
    let req = format!(
        "GET /announce?{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        announce.to_query()
    );
    // Small enough for an empty socket buffer: one write, while non-blocking.
    conn.sent_at = Instant::now();
    conn.stream.write_all(req.as_bytes())
}

fn http_connect(target: SocketAddr) -> anyhow::Result<HttpConn> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(HttpConn {
        stream,
        buf: Vec::with_capacity(1024),
        sent_at: Instant::now(),
    })
}

/// Appends what `c`'s (non-blocking) socket has to its buffer; returns whether the
/// server closed it (end of stream or an error).
fn read_available(c: &mut HttpConn, chunk: &mut [u8]) -> bool {
    loop {
        match c.stream.read(chunk) {
            Ok(0) => return true,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// A complete answer at the start of `buf`: (its length, whether it is a
/// peer list, whether the server closes after it). `eof`: the server closed,
/// so an answer without `Content-Length` ends here.
fn http_answer(buf: &[u8], eof: bool) -> Option<(usize, bool, bool)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let close = head.contains("connection: close") || head.starts_with("http/1.0");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let end = match len {
        Some(n) if buf.len() >= head_end + n => head_end + n,
        None if eof => buf.len(),
        _ => return None,
    };
    let body = &buf[head_end..end];
    let ok = body.starts_with(b"d") && !body.windows(7).any(|w| w == b"failure");
    Some((end, ok, close || len.is_none()))
}

fn run_http_thread(
    args: &Args,
    target: SocketAddr,
    seed: u64,
    until: Instant,
) -> anyhow::Result<Counts> {
    let hashes: Vec<InfoHash> = (0..args.torrents.max(1)).map(info_hash).collect();
    let mut rng = Rng(seed | 1);
    let mut counts = Counts::default();
    let mut conns = Vec::new();
    for _ in 0..args.sockets.max(1) {
        let mut c = http_connect(target)?;
        http_send(&mut c, &mut rng, &hashes, args.numwant)?;
        counts.sent += 1;
        conns.push(c);
    }
    let mut chunk = vec![0u8; 16 * 1024];
    while Instant::now() < until {
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .map(|c| libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready == 0 {
            counts.stalls += 1;
            continue;
        }
        for (c, fd) in conns.iter_mut().zip(&fds) {
            if fd.revents == 0 {
                continue;
            }
            let eof = read_available(c, &mut chunk);
            let answer = http_answer(&c.buf, eof);
            if let Some((end, ok, _)) = answer {
                if ok {
                    counts.responses += 1;
                    counts.answered(c.sent_at);
                } else {
                    counts.errors += 1;
                }
                c.buf.drain(..end);
            } else if !eof && c.buf.len() <= MAX_HTTP_ANSWER_BYTES {
                continue; // the rest of the answer is still to come
            } else {
                counts.errors += 1;
            }
            if eof || answer.is_none_or(|(_, _, close)| close) {
                *c = http_connect(target)?;
            }
            if http_send(c, &mut rng, &hashes, args.numwant).is_ok() {
                counts.sent += 1;
            }
        }
    }
    Ok(counts)
}

fn connect(socket: &UdpSocket, target: SocketAddr) -> anyhow::Result<ConnectionId> {
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = [0u8; 64];
    for attempt in 0..5u32 {
        let mut out = Vec::new();
        Request::Connect {
            transaction_id: TransactionId(attempt),
        }
        .encode(&mut out);
        socket.send_to(&out, target)?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if let Ok(Response::Connect { connection_id, .. }) =
                Response::decode(&buf[..n], PeerFamily::V4)
            {
                return Ok(connection_id);
            }
        }
    }
    bail!("no connect response from {target}")
}

fn run_thread(
    args: &Args,
    target: SocketAddr,
    seed: u64,
    until: Instant,
) -> anyhow::Result<Counts> {
    let hashes: Vec<InfoHash> = (0..args.torrents.max(1)).map(info_hash).collect();
    let mut rng = Rng(seed | 1);
    let mut sockets = Vec::new();
    for _ in 0..args.sockets.max(1) {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        let cid = connect(&s, target)?;
        s.set_nonblocking(true)?;
        sockets.push((s, cid));
    }
    let mut counts = Counts::default();
    let mut out = Vec::with_capacity(128);
    let mut buf = vec![0u8; 65_536];
    // Send time of each request in flight, by transaction id (bounded: a refill
    // after a stall clears it, so it holds at most two windows per socket).
    let mut in_flight: HashMap<u32, Instant> = HashMap::new();
    let prime = |sockets: &[(UdpSocket, ConnectionId)],
                 rng: &mut Rng,
                 out: &mut Vec<u8>,
                 counts: &mut Counts,
                 in_flight: &mut HashMap<u32, Instant>| {
        in_flight.clear();
        for (s, cid) in sockets {
            for _ in 0..args.window.max(1) {
                let tid = announce_packet(rng, &hashes, *cid, args.numwant, out);
                if s.send_to(out, target).is_ok() {
                    counts.sent += 1;
                    in_flight.insert(tid, Instant::now());
                }
            }
        }
    };
    prime(&sockets, &mut rng, &mut out, &mut counts, &mut in_flight);
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|(s, _)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while Instant::now() < until {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready == 0 {
            counts.stalls += 1; // everything in flight was lost: refill the windows
            prime(&sockets, &mut rng, &mut out, &mut counts, &mut in_flight);
            continue;
        }
        for ((s, cid), fd) in sockets.iter().zip(&fds) {
            if fd.revents == 0 {
                continue;
            }
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                match Response::decode(&buf[..n], PeerFamily::V4) {
                    Ok(Response::Announce { transaction_id, .. }) => {
                        counts.responses += 1;
                        if let Some(at) = in_flight.remove(&transaction_id.0) {
                            counts.answered(at);
                        }
                    }
                    _ => counts.errors += 1,
                }
                let tid = announce_packet(&mut rng, &hashes, *cid, args.numwant, &mut out);
                if s.send_to(&out, target).is_ok() {
                    counts.sent += 1;
                    in_flight.insert(tid, Instant::now());
                }
            }
        }
    }
    Ok(counts)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.write_whitelist {
        let mut f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        for i in 0..args.torrents.max(1) {
            writeln!(f, "{}", info_hash(i))?;
        }
        return Ok(());
    }
    let target = args.target.context("--target is required")?;
    if !target.ip().is_loopback() {
        bail!("--target must be a loopback address (this is a load generator)");
    }
    let duration = Duration::from_secs(args.duration.clamp(1, 60));
    let mut idle = open_idle(&args, target)?;
    // Markers on stderr, so a script can take the tracker's CPU over the flood alone.
    eprintln!("flood: start");
    let start = Instant::now();
    let until = start + duration;
    let totals = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads.max(1))
            .map(|t| {
                let args = &args;
                scope.spawn(move || {
                    let seed = 0x9E37_79B9_7F4A_7C15 ^ t as u64;
                    if args.http {
                        run_http_thread(args, target, seed, until)
                    } else {
                        run_thread(args, target, seed, until)
                    }
                })
            })
            .collect();
        let mut total = Counts::default();
        for h in handles {
            let c = h
                .join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
            total.sent += c.sent;
            total.responses += c.responses;
            total.errors += c.errors;
            total.stalls += c.stalls;
            total.latencies_us.extend_from_slice(&c.latencies_us);
        }
        anyhow::Ok(total)
    })?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("flood: end");
    let (idle_open, idle_answered) = recheck_idle(&args, &mut idle);
    let mut lat = totals.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() - 1) as f64 * p).round() as usize;
        f64::from(lat[i]) / 1000.0
    };
    println!(
        "{{\"target\":\"{target}\",\"seconds\":{secs:.2},\"sent\":{},\"responses\":{},\"errors\":{},\"stalls\":{},\"responses_per_s\":{:.0},\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3},\"latency_max_ms\":{:.3},\"idle_conns\":{},\"idle_open\":{idle_open},\"idle_answered_after\":{idle_answered}}}",
        totals.sent,
        totals.responses,
        totals.errors,
        totals.stalls,
        totals.responses as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        args.idle_conns,
    );
    Ok(())
}

/// Longest wait for the idle connections' first and last answers.
const IDLE_ANSWER_BOUND: Duration = Duration::from_secs(30);

/// Opens `--idle-conns` keep-alive connections, each with one answered announce.
fn open_idle(args: &Args, target: SocketAddr) -> anyhow::Result<Vec<HttpConn>> {
    let n = args.idle_conns.min(60_000);
    if n == 0 {
        return Ok(Vec::new());
    }
    let limit = p2pe::rt::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let need = n as u64 + 64 * args.threads.max(1) as u64 + 64;
    if limit < need {
        bail!("--idle-conns {n} needs about {need} descriptors; the limit is {limit} (raise it with ulimit -n / prlimit)");
    }
    let hashes: Vec<InfoHash> = (0..args.torrents.max(1)).map(info_hash).collect();
    let mut rng = Rng(0x1D1E_C0DE);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = http_connect(target).with_context(|| format!("idle connection {i}"))?;
        http_send(&mut c, &mut rng, &hashes, args.numwant)?;
        conns.push(c);
    }
    let answered = await_answers(&mut conns, IDLE_ANSWER_BOUND);
    if answered < n {
        bail!("only {answered} of {n} idle connections got their first answer within {IDLE_ANSWER_BOUND:?}");
    }
    Ok(conns)
}

/// Waits (at most `bound`) for one answer on each connection; returns how many
/// got one and are still open after it.
fn await_answers(conns: &mut [HttpConn], bound: Duration) -> usize {
    let until = Instant::now() + bound;
    let mut done = vec![false; conns.len()];
    let mut answered = 0;
    let mut chunk = vec![0u8; 16 * 1024];
    while answered < conns.len() && Instant::now() < until {
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .zip(&done)
            .map(|(c, &d)| libc::pollfd {
                fd: if d { -1 } else { c.stream.as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready <= 0 {
            continue;
        }
        for ((c, fd), d) in conns.iter_mut().zip(&fds).zip(done.iter_mut()) {
            if fd.revents == 0 || *d {
                continue;
            }
            let eof = read_available(c, &mut chunk);
            match http_answer(&c.buf, eof) {
                Some((end, ok, close)) => {
                    c.buf.drain(..end);
                    *d = true;
                    if ok && !close && !eof {
                        answered += 1;
                    }
                }
                None if eof || c.buf.len() > MAX_HTTP_ANSWER_BYTES => *d = true,
                None => {}
            }
        }
    }
    answered
}

/// After the flood: how many idle connections the tracker still holds open, and
/// how many of them answer one more announce on the same socket.
fn recheck_idle(args: &Args, conns: &mut [HttpConn]) -> (usize, usize) {
    if conns.is_empty() {
        return (0, 0);
    }
    let mut probe = [0u8; 1];
    let open = conns
        .iter()
        .filter(|c| {
            matches!((&c.stream).read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    let hashes: Vec<InfoHash> = (0..args.torrents.max(1)).map(info_hash).collect();
    let mut rng = Rng(0x0A6A_1A57);
    for c in conns.iter_mut() {
        let _ = http_send(c, &mut rng, &hashes, args.numwant);
    }
    let answered = await_answers(conns, IDLE_ANSWER_BOUND);
    for c in conns.iter() {
        abort_on_close(&c.stream);
    }
    (open, answered)
}

/// Makes the close of `stream` a reset (`SO_LINGER` 0), so that thousands of
/// idle connections leave no `TIME_WAIT` entries behind to exhaust the ephemeral
/// ports of the next run.
fn abort_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid `struct linger` of the size passed, and the
    // descriptor is open for the duration of the call.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
