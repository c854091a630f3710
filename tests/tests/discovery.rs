//! Peer discovery end to end, real processes on 127.0.0.1: p2pe nodes finding
//! each other through `p2pe tracker`, through Debian's opentracker, through
//! BEP 11 peer exchange once the tracker is gone, and libtorrent downloading
//! from a p2pe seeder it found through `p2pe tracker`.
//!
//! opentracker and python3-libtorrent are required: if missing these tests
//! FAIL (they are installed by `.ci/run`). Every child is killed by PID when
//! its guard drops; every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use p2pe_tests::{
    data, free_port, libtorrent_available, listen_addr_in, p2pe_bin, wait_for_tcp, SYSTEM_PYTHON,
};

/// Bound on any one wait in these tests (small payloads on loopback).
const BOUND: Duration = Duration::from_secs(120);

/// A child process whose stdout and stderr lines (stderr prefixed `E: `)
/// arrive on one channel; killed by PID and reaped on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn pump(r: impl Read + Send + 'static, prefix: &'static str, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(format!("{prefix}{l}")).is_err() {
                break;
            }
        }
    });
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let (tx, lines) = mpsc::channel();
        pump(child.stdout.take().expect("stdout"), "", tx.clone());
        pump(child.stderr.take().expect("stderr"), "E: ", tx);
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line satisfying `pred`; returns it.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let end = Instant::now() + BOUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no {what} within {BOUND:?}; output: {:#?}", self.seen),
            }
        }
    }

    /// Waits (bounded) for the "listening on ADDR" line.
    fn listen_addr(&mut self) -> SocketAddr {
        let addr = |l: &str| listen_addr_in(l.trim_start_matches("E: "));
        let l = self.wait_line("listen address", |l| addr(l).is_some());
        addr(&l).expect("listen address")
    }

    /// Waits (bounded) for exit; returns success and the JSON summary (if any).
    fn wait(&mut self) -> (bool, serde_json::Value) {
        let end = Instant::now() + BOUND;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < end,
                "child did not exit within {BOUND:?}; output: {:#?}",
                self.seen
            );
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at EOF; give them a bound too.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        let json = self
            .seen
            .iter()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(serde_json::Value::Null);
        (status.success(), json)
    }

    /// SIGTERM by PID, then a bounded wait.
    fn terminate(&mut self) -> (bool, serde_json::Value) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/src/blob.bin` of `len` bytes and its torrent (64 KiB pieces)
/// announcing to `trackers` (one tier); returns the torrent path and the bytes.
fn payload(dir: &Path, len: usize, trackers: &[String]) -> (PathBuf, Vec<u8>) {
    let bytes = data(len, 42);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/blob.bin"), &bytes).unwrap();
    let torrent = dir.join("blob.torrent");
    let out = Command::new(p2pe_bin())
        .arg("create")
        .arg(dir.join("src/blob.bin"))
        .args(["--piece-length", "65536"])
        .args(if trackers.is_empty() {
            vec![]
        } else {
            vec!["--tracker".to_string(), trackers.join(",")]
        })
        .arg("-o")
        .arg(&torrent)
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
    (torrent, bytes)
}

fn start_p2pe_tracker() -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(Command::new(p2pe_bin()).args([
        "tracker",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "5",
    ]));
    let addr = p.listen_addr();
    (p, addr)
}

fn seed(torrent: &Path, dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg(torrent)
            .arg("--path")
            .arg(dir.join("src"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra),
    );
    let addr = p.listen_addr();
    (p, addr)
}

fn get(torrent: &Path, out: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--json"])
            .args(["--connect-timeout", "100"])
            .args(extra),
    );
    let addr = p.listen_addr();
    (p, addr)
}

fn assert_copy(out: &Path, bytes: &[u8]) {
    let got = std::fs::read(out.join("blob.bin")).unwrap_or_default();
    assert!(
        got == bytes,
        "copy in {} differs ({} vs {} bytes)",
        out.display(),
        got.len(),
        bytes.len()
    );
}

/// One seeder and three leechers that know nothing but the torrent (no
/// `--peer`): all complete byte-exact.
fn swarm_through(tracker_urls: &[String], tmp: &Path) {
    let (torrent, bytes) = payload(tmp, 2 * 1024 * 1024 + 12_345, tracker_urls);
    let (_seeder, _) = seed(&torrent, tmp, &[]);
    let mut leechers: Vec<Proc> = (0..3)
        .map(|i| get(&torrent, &tmp.join(format!("l{i}")), &[]).0)
        .collect();
    for (i, l) in leechers.iter_mut().enumerate() {
        let (ok, json) = l.wait();
        assert!(ok, "leecher {i} failed: {json}; {:#?}", l.seen);
        assert_eq!(json["complete"], true, "{json}");
        assert!(
            json["tracker_peers_learned"].as_u64() > Some(0) || json["peers"].as_u64() > Some(0),
            "{json}"
        );
        assert!(json["announces_ok"].as_u64() > Some(0), "{json}");
        assert_copy(&tmp.join(format!("l{i}")), &bytes);
    }
}

#[test]
fn seeder_and_three_leechers_find_each_other_through_p2pe_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_p2pe_tracker();
    swarm_through(&[format!("http://{addr}/announce")], tmp.path());
}

#[test]
fn seeder_and_leechers_find_each_other_over_udp_announces() {
    let tmp = tempfile::tempdir().unwrap();
    let (_tracker, addr) = start_p2pe_tracker();
    swarm_through(&[format!("udp://{addr}")], tmp.path());
}

#[test]
fn after_the_tracker_dies_a_new_leecher_learns_peers_through_pex() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let (mut tracker, addr) = start_p2pe_tracker();
    let (torrent, bytes) = payload(tmp, 8 * 1024 * 1024, &[format!("http://{addr}/announce")]);
    // 2 MB/s: the seeder needs ~4 s to upload one copy, so the distribution
    // is still running when the tracker dies and the late leecher arrives.
    let (_seeder, _) = seed(&torrent, tmp, &["--upload-limit", "2MB"]);
    let mut leechers = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let (p, a) = get(&torrent, &tmp.join(format!("l{i}")), &["--seed-after"]);
        leechers.push(p);
        addrs.push(a);
    }
    for l in &mut leechers {
        l.wait_line("first peer", |l| l == "E: first peer connected");
    }
    let (ok, _) = tracker.terminate();
    assert!(ok, "tracker exit");
    drop(tracker);
    let peer = addrs[0].to_string();
    let (mut late, _) = get(&torrent, &tmp.join("late"), &["--peer", &peer]);
    let (ok, late_json) = late.wait();
    assert!(ok, "late leecher failed: {late_json}; {:#?}", late.seen);
    assert_copy(&tmp.join("late"), &bytes);
    // It was given one peer and never reached a tracker, yet it was connected
    // to the seeder and all three leechers: the addresses went around through
    // PEX (whichever side dialled, the dialler learned it from a `ut_pex`).
    assert_eq!(late_json["announces_ok"].as_u64(), Some(0), "{late_json}");
    assert_eq!(
        late_json["tracker_peers_learned"].as_u64(),
        Some(0),
        "{late_json}"
    );
    assert!(late_json["peers"].as_u64() >= Some(4), "{late_json}");
    let mut pex_learned = late_json["pex_peers_learned"].as_u64().unwrap_or(0);
    for (i, l) in leechers.iter_mut().enumerate() {
        l.wait_line("completion", |l| {
            l == "E: download complete; seeding until killed"
        });
        let (ok, json) = l.terminate();
        assert!(ok && json["complete"] == true, "leecher {i}: {json}");
        assert_copy(&tmp.join(format!("l{i}")), &bytes);
        pex_learned += json["pex_peers_learned"].as_u64().unwrap_or(0);
    }
    assert!(pex_learned > 0, "no peer learned through PEX");
}

#[test]
fn closed_cluster_finds_peers_through_its_own_dht() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    // No tracker in the torrent: the DHT is the only way to meet.
    let (torrent, bytes) = payload(tmp, 2 * 1024 * 1024 + 3, &[]);
    let dht_local = [
        "--dht",
        "--dht-listen",
        "127.0.0.1:0",
        "--dht-interval",
        "2",
    ];
    let mut seed_args = dht_local.to_vec();
    seed_args.push("--dht-no-bootstrap");
    let (mut seeder, _) = seed(&torrent, tmp, &seed_args);
    let line = seeder.wait_line("DHT address", |l| l.starts_with("E: dht listening on "));
    let boot = line.trim_start_matches("E: dht listening on ").to_string();
    let mut args = dht_local.to_vec();
    args.extend(["--dht-bootstrap", &boot]);
    let mut leechers: Vec<Proc> = (0..2)
        .map(|i| get(&torrent, &tmp.join(format!("l{i}")), &args).0)
        .collect();
    let mut dht_learned = 0;
    for (i, l) in leechers.iter_mut().enumerate() {
        let (ok, json) = l.wait();
        assert!(ok, "leecher {i} failed: {json}; {:#?}", l.seen);
        assert_eq!(json["announces_ok"].as_u64(), Some(0), "{json}");
        dht_learned += json["dht_peers_learned"].as_u64().unwrap_or(0);
        assert_copy(&tmp.join(format!("l{i}")), &bytes);
    }
    assert!(dht_learned > 0, "no peer came from the DHT");
}

fn info_hash(torrent: &Path) -> String {
    let bytes = std::fs::read(torrent).unwrap();
    let meta = p2pe::wire::metainfo::Metainfo::from_bytes(&bytes).unwrap();
    meta.info_hash().to_string()
}

#[test]
fn p2pe_nodes_find_each_other_through_opentracker() {
    let ok = Command::new("opentracker").arg("-h").output().is_ok();
    assert!(
        ok,
        "opentracker is not on PATH; install it (`apt-get install opentracker`)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let port = free_port();
    let urls = [
        format!("http://127.0.0.1:{port}/announce"),
        format!("udp://127.0.0.1:{port}"),
    ];
    let (torrent, bytes) = payload(tmp, 1024 * 1024 + 7, &urls);
    // Debian's build serves only whitelisted info-hashes; the whitelist path
    // is relative to the chroot (-d).
    let root = tmp.join("ot");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("whitelist.txt"), info_hash(&torrent) + "\n").unwrap();
    let port_s = port.to_string();
    let mut cmd = Command::new("opentracker");
    cmd.args(["-i", "127.0.0.1", "-p", &port_s, "-P", &port_s])
        .args(["-w", "whitelist.txt", "-d"])
        .arg(&root);
    let _ot = Proc::spawn(&mut cmd);
    wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], port)), BOUND);
    let (_seeder, _) = seed(&torrent, tmp, &[]);
    let mut leechers: Vec<Proc> = (0..2)
        .map(|i| get(&torrent, &tmp.join(format!("l{i}")), &[]).0)
        .collect();
    for (i, l) in leechers.iter_mut().enumerate() {
        let (ok, json) = l.wait();
        assert!(ok, "leecher {i} failed: {json}; {:#?}", l.seen);
        assert!(json["announces_ok"].as_u64() > Some(0), "{json}");
        assert_copy(&tmp.join(format!("l{i}")), &bytes);
    }
}

/// A libtorrent leecher of argv[1] saving to argv[2]; it knows no peer, only
/// the torrent's tracker. Prints DONE when complete.
const LT_LEECH: &str = r#"
import sys, time, libtorrent as lt
torrent, save = sys.argv[1], sys.argv[2]
s = lt.session({
    "listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
    "enable_upnp": False, "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification,
})
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
deadline = time.time() + 100
while time.time() < deadline:
    for a in s.pop_alerts():
        print("alert:", a.message(), file=sys.stderr)
    if h.status().is_seeding:
        print("DONE"); sys.stdout.flush(); sys.exit(0)
    time.sleep(0.1)
st = h.status()
print("leecher state", st.state, st.progress, st.num_peers, file=sys.stderr)
sys.exit(1)
"#;

#[test]
fn libtorrent_downloads_from_p2pe_seed_found_through_p2pe_tracker() {
    assert!(
        libtorrent_available(),
        "python3-libtorrent is not importable from {SYSTEM_PYTHON}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let (_tracker, addr) = start_p2pe_tracker();
    let (torrent, bytes) = payload(
        tmp,
        3 * 1024 * 1024 + 99,
        &[format!("http://{addr}/announce")],
    );
    let (_seeder, _) = seed(&torrent, tmp, &[]);
    let out = tmp.join("lt");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .args(["-c", LT_LEECH])
            .arg(&torrent)
            .arg(&out),
    );
    let (ok, _) = lt.wait();
    assert!(ok, "libtorrent leecher failed: {:#?}", lt.seen);
    assert!(lt.seen.iter().any(|l| l == "DONE"), "{:#?}", lt.seen);
    assert_copy(&out, &bytes);
}

/// `p2pe seed x.torrent y.torrent --dht`: one DHT node for the process,
/// each torrent announced on it; a get of each, bootstrapped from that node
/// and with no tracker, finds the seed through the DHT.
#[test]
fn a_seed_of_two_torrents_announces_both_on_one_dht_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    let mut payloads = Vec::new();
    for (name, len) in [("x", 1_000_000usize), ("y", 700_001)] {
        let bytes = data(len, len as u64);
        let file = dir.join(format!("{name}.bin"));
        std::fs::write(&file, &bytes).unwrap();
        let torrent = dir.join(format!("{name}.torrent"));
        let out = Command::new(p2pe_bin())
            .arg("create")
            .arg(&file)
            .args(["--piece-length", "65536", "-o"])
            .arg(&torrent)
            .output()
            .expect("run p2pe create");
        assert!(out.status.success(), "p2pe create: {out:?}");
        payloads.push((name, torrent, bytes));
    }
    let dht_local = [
        "--dht",
        "--dht-listen",
        "127.0.0.1:0",
        "--dht-interval",
        "2",
    ];
    let mut seeder = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("seed")
            .args(payloads.iter().map(|(_, t, _)| t))
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .args(dht_local)
            .arg("--dht-no-bootstrap"),
    );
    let line = seeder.wait_line("DHT address", |l| l.starts_with("E: dht listening on "));
    let boot = line.trim_start_matches("E: dht listening on ").to_string();
    let mut args = dht_local.to_vec();
    args.extend(["--dht-bootstrap", &boot]);
    let mut gets: Vec<Proc> = payloads
        .iter()
        .map(|(name, t, _)| get(t, &tmp.path().join(format!("out-{name}")), &args).0)
        .collect();
    for (g, (name, _, bytes)) in gets.iter_mut().zip(&payloads) {
        let (ok, json) = g.wait();
        assert!(ok, "get of {name} failed: {json}; {:#?}", g.seen);
        // No tracker and no --peer: the get and the seed met through the
        // DHT (the get found the seed, or the seed found the get's announce
        // and dialled it).
        assert_eq!(json["announces_ok"].as_u64(), Some(0), "{json}");
        assert_eq!(json["tracker_peers_learned"].as_u64(), Some(0), "{json}");
        assert!(json["peers"].as_u64() > Some(0), "{json}");
        let got = std::fs::read(tmp.path().join(format!("out-{name}/{name}.bin"))).unwrap();
        assert!(got == *bytes, "copy of {name} differs");
    }
}
