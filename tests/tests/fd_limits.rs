//! Descriptor exhaustion (issue 11 items 6 and 10): `p2pe seed` and
//! `p2pe tracker` run under a low `RLIMIT_NOFILE` (`prlimit`), are flooded
//! with connections until `accept` fails, and must neither spin nor die: once
//! the connections close they serve again.
//!
//! Every child is killed by PID when its guard drops; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_tests::{data, p2pe_bin, Proc};

/// Bound on any one wait in these tests.
const BOUND: Duration = Duration::from_secs(60);

/// What these tests read of a child besides its lines.
trait ProcExt {
    fn line_after(&mut self, prefix: &str) -> String;
    fn cpu_ticks(&self) -> u64;
    fn open_fds(&self) -> usize;
    fn wait_fds(&self, n: usize);
}

impl ProcExt for Proc {
    /// Waits (bounded) for a line starting with `prefix`; returns the rest.
    fn line_after(&mut self, prefix: &str) -> String {
        let pick = |l: &str| l.strip_prefix(prefix).map(|r| r.trim().to_string());
        self.line(&format!("`{prefix}` line"), pick, drop)
    }

    /// CPU time (utime + stime, in clock ticks) of the whole process.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the `(comm)`, which may contain spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after comm.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Open descriptors of the process.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the process has at least `n` descriptors open.
    fn wait_fds(&self, n: usize) {
        let end = Instant::now() + BOUND;
        while self.open_fds() < n {
            assert!(Instant::now() < end, "only {} fds open", self.open_fds());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `prlimit --nofile=N -- p2pe ARGS...`.
fn limited(nofile: u32) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(p2pe_bin());
    cmd
}

/// One file of 1 MiB and its torrent (64 KiB pieces), made by mktorrent.
fn payload(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("blob.bin"), data(1 << 20, 7)).unwrap();
    let torrent = dir.join("blob.torrent");
    let out = Command::new("mktorrent")
        .args(["-l", "16", "-a", "http://127.0.0.1:1/announce", "-o"])
        .arg(&torrent)
        .arg(dir.join("blob.bin"))
        .output()
        .expect("run mktorrent");
    assert!(out.status.success(), "mktorrent: {out:?}");
    torrent
}

/// Opens `n` connections to `addr` (they sit in the backlog once the peer
/// stops accepting).
fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect"))
        .collect()
}

/// Issue 11 item 10: at the descriptor limit the seed's accept loop backs
/// off instead of spinning (the old loop re-armed the failed accept at once,
/// 100 % of a core), and serves again once descriptors come back.
#[test]
fn seed_backs_off_at_descriptor_limit_then_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let torrent = payload(tmp.path());
    let nofile = 64;
    let mut seed = Proc::spawn_with(
        limited(nofile)
            .arg("seed")
            .arg(&torrent)
            .arg("--path")
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0", "--no-tracker", "--workers", "1"]),
        Stdio::null(),
    );
    let addr: SocketAddr = seed.line_after("listening on ").parse().unwrap();
    let conns = flood(addr, 100);
    // Accepted until the limit (a few descriptors stay free for the rest).
    seed.wait_fds(nofile as usize - 8);
    let before = seed.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = seed.cpu_ticks() - before;
    // A spinning accept burns ~200 ticks (100 Hz) in 2 s; backing off, a few.
    assert!(
        used < 50,
        "seed used {used} CPU ticks in 2 s at the fd limit"
    );
    drop(conns);
    let out = tmp.path().join("out");
    let status = Command::new(p2pe_bin())
        .arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", "127.0.0.1:0", "--no-tracker"])
        .args(["--peer", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "get after the flood failed");
    assert_eq!(
        std::fs::read(out.join("blob.bin")).unwrap(),
        data(1 << 20, 7)
    );
}
/// A raw HTTP/1.1 GET on `s`; returns the status line and the body.
fn http_get(s: &mut TcpStream, path: &str) -> std::io::Result<(String, Vec<u8>)> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let status = head.lines().next().unwrap_or_default().to_string();
            return Ok((status, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}

/// An announce query for info-hash `[n; 20]` from port `port`.
fn announce_path(n: u8, port: u16) -> String {
    let hash: String = std::iter::repeat_n(format!("%{n:02x}"), 20).collect();
    format!(
        "/announce?info_hash={hash}&peer_id=-PE0001-abcdefghijkl&port={port}\
         &uploaded=0&downloaded=0&left=0&compact=1"
    )
}

/// `p2pe tracker` on 127.0.0.1 (one HTTP worker, one UDP thread), optionally
/// under `prlimit --nofile=N`.
fn tracker(nofile: Option<u32>) -> (Proc, SocketAddr) {
    let mut cmd = match nofile {
        Some(n) => limited(n),
        None => Command::new(p2pe_bin()),
    };
    cmd.args(["tracker", "--listen", "127.0.0.1:0"]).args([
        "--udp-threads",
        "1",
        "--http-threads",
        "1",
    ]);
    let mut p = Proc::spawn_with(&mut cmd, Stdio::null());
    let addr = p.line_after("listening on ").parse().unwrap();
    (p, addr)
}

/// Announces on a fresh connection, retrying (bounded) while it fails.
fn announce_eventually(addr: SocketAddr, port: u16) -> (String, Vec<u8>) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .and_then(|mut s| http_get(&mut s, &announce_path(1, port)));
        match got {
            Ok(answer) => return answer,
            Err(e) => assert!(Instant::now() < end, "no announce answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 11 item 6: the HTTP tracker at the descriptor limit (its accept
/// failing with EMFILE) keeps running and answers again once the connections
/// are gone; tiny_http's accept loop exited for good at the first error.
#[test]
fn http_tracker_survives_descriptor_exhaustion() {
    let nofile = 256;
    let (p, addr) = tracker(Some(nofile));
    let conns = flood(addr, 400);
    p.wait_fds(nofile as usize - 8);
    drop(conns);
    let (status, body) = announce_eventually(addr, 7001);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.starts_with(b"d"), "{}", String::from_utf8_lossy(&body));
    assert!(p.open_fds() < nofile as usize);
}

/// Issue 10 item 5 / issue 11: many idle keep-alive connections do not stop a
/// new announce from being answered, and a kept-alive connection serves a
/// second request.
#[test]
fn idle_keep_alive_connections_do_not_stall_new_announces() {
    let (_p, addr) = tracker(None);
    let mut idle = Vec::new();
    for i in 0..300u16 {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let (status, _) = http_get(&mut s, &announce_path(2, 10_000 + i)).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        idle.push(s);
    }
    let (status, body) = announce_eventually(addr, 7002);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.starts_with(b"d"));
    // Keep-alive: the first connection answers again.
    let (status, _) = http_get(&mut idle[0], &announce_path(2, 10_000)).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}
