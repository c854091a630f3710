//! What `p2pe seed`, `get` and `tracker` print, run as real processes on
//! 127.0.0.1 (port 0) off a terminal: with `--json` stdout is pure JSON (one
//! object per line), progress lines while a download runs, errors that name
//! their path once, failing before touching the output directory.
//!
//! Every child is killed by PID when its guard drops; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bound on any one wait (small payloads on loopback).
const BOUND: Duration = Duration::from_secs(60);

fn p2pe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_p2pe"))
}

/// A child killed (by PID) and reaped on drop, its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn p2pe");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first stdout line (bounded wait).
    fn first_line(&self) -> String {
        self.lines
            .recv_timeout(BOUND)
            .expect("child printed nothing in time")
    }

    /// SIGTERM by PID, then a bounded wait for exit; returns the rest of stdout.
    fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let end = Instant::now() + BOUND;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < end, "child did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(5)).ok()).collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `len` pseudo-random bytes.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A two-file payload `dir/payload/` of `len` bytes and its torrent (64 KiB pieces,
/// made by `p2pe create`).
fn payload(dir: &Path, len: usize) -> PathBuf {
    let root = dir.join("payload");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let bytes = data(len);
    std::fs::write(root.join("a.bin"), &bytes[..len / 3]).unwrap();
    std::fs::write(root.join("sub/b.bin"), &bytes[len / 3..]).unwrap();
    let torrent = dir.join("payload.torrent");
    let out = p2pe()
        .arg("create")
        .arg(&root)
        .arg("-o")
        .arg(&torrent)
        .args(["--piece-length", "65536"])
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
    torrent
}

/// Parses every stdout line as a JSON object (panics naming the first that is not).
fn all_json(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => panic!("stdout line is not a JSON object: {l:?}"),
        })
        .collect()
}

/// The address of the `{"event":"listening","addr":…}` object.
fn listening(v: &serde_json::Value) -> SocketAddr {
    assert_eq!(v["event"], "listening", "{v}");
    v["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("addr")
}

/// `p2pe seed` of `dir/payload` with `extra` options, and its listen address.
fn seed(dir: &Path, torrent: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let p = Proc::spawn(
        p2pe()
            .arg("seed")
            .arg(torrent)
            .arg("--path")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--no-tracker", "--json"])
            .args(extra),
    );
    let first = serde_json::from_str(&p.first_line()).expect("seed's first line is JSON");
    let addr = listening(&first);
    (p, addr)
}

/// `p2pe get --json` from `peer` into `out` with `extra` options, to completion.
fn get(torrent: &Path, out: &Path, peer: SocketAddr, extra: &[&str]) -> Output {
    p2pe()
        .arg("get")
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--listen", "127.0.0.1:0", "--no-tracker", "--json"])
        .args(["--peer", &peer.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run p2pe get")
}

/// Issue 15 item 5: `p2pe get … --json | jq` works: stdout holds JSON objects only
/// (the listen address as an event), for `seed`, `get` and `tracker`.
#[test]
fn json_mode_keeps_stdout_pure_json() {
    let tmp = tempfile::tempdir().unwrap();
    let torrent = payload(tmp.path(), 300_000);
    let (seeder, addr) = seed(tmp.path(), &torrent, &[]);
    let out = get(&torrent, &tmp.path().join("out"), addr, &[]);
    assert!(out.status.success(), "get: {out:?}");
    let objs = all_json(&out.stdout);
    listening(&objs[0]);
    let summary = objs.last().expect("a summary");
    assert_eq!(summary["bytes"], 300_000, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    let rest = seeder.terminate();
    let seed_objs = all_json(rest.join("\n").as_bytes());
    assert_eq!(seed_objs.len(), 1, "{rest:?}");
    let up = seed_objs[0]["uploaded_bytes"].as_u64();
    assert!(up.is_some_and(|b| b >= 300_000), "{rest:?}");

    let tracker = Proc::spawn(p2pe().args(["tracker", "--listen", "127.0.0.1:0", "--json"]));
    let first = serde_json::from_str(&tracker.first_line()).expect("tracker: JSON");
    listening(&first);
    let rest = tracker.terminate();
    assert!(rest.is_empty(), "{rest:?}");
}

/// Issue 15 item 6: off a terminal `get` reports progress while it runs: text
/// lines on stderr, or with `--json` `{"event":"progress",…}` objects on stdout
/// before the summary (a rate-limited seed makes the download last several
/// intervals).
#[test]
fn get_off_a_terminal_prints_progress_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let len = 2_000_000;
    let torrent = payload(tmp.path(), len);
    let limit = ["--upload-limit", "600KB", "--workers", "1"];
    let (_seeder, addr) = seed(tmp.path(), &torrent, &limit);
    let fast = ["--progress-interval", "0.3"];

    let out = get(&torrent, &tmp.path().join("json"), addr, &fast);
    assert!(out.status.success(), "get: {out:?}");
    let objs = all_json(&out.stdout);
    let progress: Vec<_> = objs.iter().filter(|o| o["event"] == "progress").collect();
    assert!(!progress.is_empty(), "no progress object: {objs:?}");
    for p in &progress {
        assert_eq!(p["total_bytes"], len, "{p}");
        for key in ["have_bytes", "rate_bytes_per_s", "peers", "elapsed_s"] {
            assert!(p[key].is_number(), "{key} in {p}");
        }
    }
    let summary = objs.last().expect("summary");
    assert!(summary.get("event").is_none(), "summary last: {summary}");
    assert_eq!(summary["bytes"], len, "{summary}");

    let mut cmd = p2pe();
    cmd.arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(tmp.path().join("text"))
        .args(["--listen", "127.0.0.1:0", "--no-tracker"])
        .args(["--peer", &addr.to_string()])
        .args(fast);
    let out = cmd.stdin(Stdio::null()).output().expect("run p2pe get");
    assert!(out.status.success(), "get: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err.lines().filter(|l| l.contains("progress:")).count();
    assert!(lines >= 1, "no progress line on stderr:\n{err}");
    assert!(err.contains("peers, ETA"), "{err}");
}

/// Issue 15 item 8: an I/O error names its path once and its OS error once
/// (it said "Is a directory (os error 21): Is a directory (os error 21)").
#[test]
fn an_io_error_names_its_path_and_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let torrent = payload(tmp.path(), 100_000);
    // Where the torrent's file goes, a directory.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("payload/a.bin")).unwrap();
    let r = p2pe()
        .arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args([
            "--no-tracker",
            "--peer",
            "127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run p2pe get");
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .expect("an error line");
    assert_eq!(line.matches("a.bin").count(), 1, "{line}");
    assert_eq!(line.matches("Is a directory").count(), 1, "{line}");
}

/// Issue 15 item 8: with no way to find a peer `get` fails before it creates
/// (and preallocates) any output file.
#[test]
fn get_with_no_peers_to_ask_fails_before_touching_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let torrent = payload(tmp.path(), 100_000);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = p2pe()
        .arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .arg("--no-tracker")
        .output()
        .expect("run p2pe get");
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no peers to ask"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "output written: {left:?}");
}

/// Issue 15 items 5 and 8: `p2pe swarm --json` keeps stdout pure JSON and
/// prints a line on stderr for every leecher as it finishes (it jumped from
/// 0/N to 2/N with nothing between).
#[test]
fn swarm_reports_every_leecher_and_prints_only_json() {
    let r = p2pe()
        .args(["swarm", "--peers", "3", "--size", "2MiB", "--json"])
        .args(["--timeout", "120"])
        .stdin(Stdio::null())
        .output()
        .expect("run p2pe swarm");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "swarm failed:\n{err}");
    let objs = all_json(&r.stdout);
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(objs[0]["all_copies_match"], true);
    for done in 1..=3 {
        let prefix = format!("{done}/3 leechers finished");
        let n = err.lines().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(n, 1, "one line for the leecher making {done}/3:\n{err}");
    }
    for i in 0..3 {
        let named = err.lines().any(|l| l.contains(&format!(": leecher {i},")));
        assert!(named, "no line for leecher {i}:\n{err}");
    }
}
