//! Interop with aria2 and Transmission on 127.0.0.1, real processes. Neither
//! client can be told a peer address on its command line, so every peer
//! finds the others through an embedded `p2pe tracker` named in the torrent:
//! - `p2pe seed` → `aria2c` leecher (issue 15 item 1: aria2 sends `bitfield`
//!   again mid-connection);
//! - `p2pe get` ← Transmission seed (`transmission-daemon`; issue 15 item 2);
//! - a mixed swarm: a p2pe seed, two p2pe gets, aria2, libtorrent and
//!   Transmission leechers; every copy byte-identical. Each client's
//!   completion time is printed (stderr), never asserted.
//!
//! A test whose tool is missing prints `SKIP …` naming the package and passes
//! (`.ci/run` installs them all). Every child is killed by PID when its guard
//! drops; every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use p2pe_tests::{
    command_available, data, free_port, libtorrent_available, listen_addr_in, p2pe_bin,
    tracker_seeders, wait_for_tcp, SYSTEM_PYTHON,
};

/// Bound on any one wait (a transfer of [`SIZE`] on loopback takes seconds).
const BOUND: Duration = Duration::from_secs(120);
/// Payload length in bytes: 16 MiB and a partial last piece.
const SIZE: usize = (16 << 20) + 12_345;
/// The payload's file name (a single-file torrent).
const NAME: &str = "payload.bin";

/// A child ([`p2pe_tests::Proc`]: killed by PID and reaped on drop), with the
/// stdout lines read so far kept in `seen`.
struct Proc {
    p: p2pe_tests::Proc,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        Proc {
            p: p2pe_tests::Proc::spawn(cmd),
            seen: Vec::new(),
        }
    }

    /// Moves the stdout lines printed so far into `seen`.
    fn drain(&mut self) {
        self.seen.extend(self.p.lines.try_iter());
    }

    /// Waits (bounded) for the "listening on ADDR" line; earlier lines go to `seen`.
    fn listen_addr(&mut self) -> SocketAddr {
        let seen = &mut self.seen;
        self.p
            .line("listen address", listen_addr_in, |l| seen.push(l))
    }

    /// Exit status if the child has exited (stdout drained into `seen`).
    fn exited(&mut self) -> Option<bool> {
        let status = self.p.child.try_wait().expect("try_wait")?;
        // The reader thread ends at EOF, soon after the exit.
        while let Ok(l) = self.p.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        Some(status.success())
    }
}

/// Polls `done` every 50 ms until it holds; panics with `what` after [`BOUND`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < end, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints why the test is skipped and returns true when a tool is missing.
fn skip_without(test: &str, tools: &[(&str, &str)]) -> bool {
    let missing: Vec<_> = tools
        .iter()
        .filter(|(cmd, _)| !command_available(cmd))
        .map(|(cmd, pkg)| format!("{cmd} (apt-get install {pkg})"))
        .collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!("SKIP {test}: not installed: {}", missing.join(", "));
    true
}

/// A payload in `src/`, a `p2pe tracker` on 127.0.0.1 and the torrent
/// (made by `p2pe create`) that names it.
struct Fixture {
    dir: tempfile::TempDir,
    tracker_addr: SocketAddr,
    torrent: PathBuf,
    info_hash_hex: String,
    bytes: Vec<u8>,
    _tracker: Proc,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let bytes = data(SIZE, 15);
        std::fs::write(src.join(NAME), &bytes).unwrap();
        // A short interval: a client that announced before the seed did
        // learns of it on its next announce.
        let mut tracker = Proc::spawn(Command::new(p2pe_bin()).args([
            "tracker",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "5",
        ]));
        let tracker_addr = tracker.listen_addr();
        let torrent = dir.path().join("payload.torrent");
        let out = Command::new(p2pe_bin())
            .arg("create")
            .arg(src.join(NAME))
            .arg("-o")
            .arg(&torrent)
            .args(["--tracker", &format!("http://{tracker_addr}/announce")])
            .output()
            .expect("run p2pe create");
        assert!(out.status.success(), "p2pe create: {out:?}");
        let info_hash_hex = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("info-hash ").map(str::to_owned))
            .expect("p2pe create printed the info-hash");
        Fixture {
            dir,
            tracker_addr,
            torrent,
            info_hash_hex,
            bytes,
            _tracker: tracker,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Waits until the tracker counts `n` seeders of the torrent.
    fn wait_seeders(&self, n: u64) {
        wait_until("seeders announced to the tracker", || {
            tracker_seeders(self.tracker_addr, &self.info_hash_hex).is_some_and(|c| c >= n)
        });
    }

    /// Whether `dir/NAME` holds exactly the payload.
    fn is_copy(&self, dir: &Path) -> bool {
        std::fs::read(dir.join(NAME)).is_ok_and(|got| got == self.bytes)
    }

    fn assert_copy(&self, who: &str, dir: &Path) {
        let got = std::fs::read(dir.join(NAME)).unwrap_or_default();
        assert!(
            got == self.bytes,
            "{who}: copy differs ({} vs {} bytes)",
            got.len(),
            self.bytes.len()
        );
    }

    fn p2pe_seed(&self) -> Proc {
        let mut p = Proc::spawn(
            Command::new(p2pe_bin())
                .arg("seed")
                .arg(&self.torrent)
                .arg("--path")
                .arg(self.path("src"))
                .args(["--listen", "127.0.0.1:0"]),
        );
        p.listen_addr();
        p
    }

    /// `p2pe get` into `out`; with `--json` its completion is a stdout line
    /// with `"complete":true` (it keeps seeding with `--seed-after`).
    fn p2pe_get(&self, out: &Path, seed_after: bool) -> Proc {
        let mut cmd = Command::new(p2pe_bin());
        cmd.arg("get")
            .arg(&self.torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--json"])
            .args(["--connect-timeout", "60"]);
        if seed_after {
            cmd.arg("--seed-after");
        }
        Proc::spawn(&mut cmd)
    }

    /// An `aria2c` leecher into `out`: no DHT, LPD or PEX; exits 0 once
    /// complete (`--seed-time=0`).
    fn aria2(&self, out: &Path) -> Proc {
        Proc::spawn(
            Command::new("aria2c")
                .arg(format!("--dir={}", out.display()))
                .args([
                    "--enable-dht=false",
                    "--enable-dht6=false",
                    "--bt-enable-lpd=false",
                    "--enable-peer-exchange=false",
                    "--seed-time=0",
                    "--bt-external-ip=127.0.0.1",
                    "--file-allocation=none",
                    "--summary-interval=0",
                    "--console-log-level=warn",
                    "--bt-save-metadata=false",
                ])
                .arg(format!("--listen-port={}", free_port()))
                .arg(&self.torrent),
        )
    }
}

/// A `transmission-daemon` (config in its own directory: RPC and peer port
/// on 127.0.0.1, no DHT, LPD, PEX, µTP or port forwarding, plaintext
/// preferred) driven with `transmission-remote`.
struct Transmission {
    rpc: String,
    _daemon: Proc,
}

impl Transmission {
    fn start(config_dir: &Path, download_dir: &Path) -> Transmission {
        std::fs::create_dir_all(config_dir).unwrap();
        std::fs::create_dir_all(download_dir).unwrap();
        let rpc_port = free_port();
        let settings = serde_json::json!({
            "rpc-enabled": true, "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1",
            "rpc-authentication-required": false, "rpc-whitelist-enabled": false,
            "rpc-host-whitelist-enabled": false,
            "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
            "utp-enabled": false, "port-forwarding-enabled": false,
            "peer-port": free_port(), "peer-port-random-on-start": false,
            "bind-address-ipv4": "127.0.0.1",
            "download-dir": download_dir, "incomplete-dir-enabled": false,
            "rename-partial-files": false, "start-added-torrents": true,
            "encryption": 0, "message-level": 1, "watch-dir-enabled": false,
            "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
            "speed-limit-up-enabled": false, "speed-limit-down-enabled": false,
            "alt-speed-enabled": false,
        });
        std::fs::write(config_dir.join("settings.json"), settings.to_string()).unwrap();
        let daemon = Proc::spawn(
            Command::new("transmission-daemon")
                .arg("-f")
                .arg("-g")
                .arg(config_dir),
        );
        wait_for_tcp(SocketAddr::from(([127, 0, 0, 1], rpc_port)), BOUND);
        Transmission {
            rpc: format!("127.0.0.1:{rpc_port}"),
            _daemon: daemon,
        }
    }

    /// Runs `transmission-remote RPC ARGS…`; its stdout.
    fn remote(&self, args: &[&str]) -> String {
        let out = Command::new("transmission-remote")
            .arg(&self.rpc)
            .args(args)
            .output()
            .expect("run transmission-remote");
        assert!(
            out.status.success(),
            "transmission-remote {args:?}: {out:?}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds (and starts) the torrent; it gets id 1 in a fresh daemon.
    fn add(&self, torrent: &Path) {
        self.remote(&["-a", torrent.to_str().expect("UTF-8 path")]);
    }

    /// Whether torrent 1 is 100% done (verified data, for a seed).
    fn is_done(&self) -> bool {
        self.remote(&["-t", "1", "-i"])
            .lines()
            .any(|l| l.trim() == "Percent Done: 100%")
    }
}

#[test]
fn aria2_leecher_downloads_from_p2pe_seed() {
    if skip_without(
        "aria2_leecher_downloads_from_p2pe_seed",
        &[("aria2c", "aria2")],
    ) {
        return;
    }
    let f = Fixture::new();
    let _seed = f.p2pe_seed();
    f.wait_seeders(1);
    let out = f.path("aria2");
    let start = Instant::now();
    let mut aria2 = f.aria2(&out);
    let mut ok = None;
    wait_until("aria2c leecher exits", || {
        ok = aria2.exited();
        ok.is_some()
    });
    assert_eq!(ok, Some(true), "aria2c failed: {:?}", aria2.seen);
    // aria2 exits a second or two after completing (its 1 s ticks).
    eprintln!(
        "aria2c from p2pe seed: exited after {:.2?}",
        start.elapsed()
    );
    f.assert_copy("aria2c", &out);
}

#[test]
fn p2pe_get_downloads_from_transmission_seed() {
    let test = "p2pe_get_downloads_from_transmission_seed";
    let tools = [
        ("transmission-daemon", "transmission-daemon"),
        ("transmission-remote", "transmission-cli"),
    ];
    if skip_without(test, &tools) {
        return;
    }
    let f = Fixture::new();
    let tr = Transmission::start(&f.path("tr-config"), &f.path("src"));
    tr.add(&f.torrent);
    // Transmission checks the data it finds on add, then announces as a seed.
    wait_until("Transmission verified its data", || tr.is_done());
    f.wait_seeders(1);
    let out = f.path("out");
    let start = Instant::now();
    let mut get = f.p2pe_get(&out, false);
    let mut ok = None;
    wait_until("p2pe get exits", || {
        ok = get.exited();
        ok.is_some()
    });
    assert_eq!(ok, Some(true), "p2pe get failed: {:?}", get.seen);
    eprintln!("p2pe get from Transmission seed: {:.2?}", start.elapsed());
    f.assert_copy("p2pe get", &out);
}

/// libtorrent leecher: `TORRENT SAVE BOUND_S`; peers from the torrent's
/// tracker; exits 0 once complete.
const LT_LEECH: &str = r#"
import sys, time
import libtorrent as lt
torrent, save, bound = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.error_notification,
})
added = time.monotonic()
h = s.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': save})
end = time.time() + bound
while not h.status().is_seeding:
    if time.time() > end:
        st = h.status()
        sys.exit('libtorrent leecher incomplete: %.3f, %d peers' % (st.progress, st.num_peers))
    time.sleep(0.01)
print('done %.6f' % (time.monotonic() - added), flush=True)
"#;

/// One leecher of the mixed swarm: its name, output directory and how to
/// tell it has finished.
struct Leecher {
    name: &'static str,
    out: PathBuf,
    kind: Kind,
    done_after: Option<Duration>,
}

enum Kind {
    /// Done when the process exits 0 (aria2c, libtorrent).
    Exits(Proc),
    /// `p2pe get --seed-after --json`: done at the `"complete":true` line.
    P2pe(Proc),
    Transmission(Transmission),
}

impl Leecher {
    /// Whether it has finished with a byte-identical copy; panics if it failed.
    fn poll(&mut self, f: &Fixture) -> bool {
        match &mut self.kind {
            Kind::Exits(p) => match p.exited() {
                None => false,
                Some(ok) => {
                    assert!(ok, "{} failed: {:?}", self.name, p.seen);
                    true
                }
            },
            Kind::P2pe(p) => {
                p.drain();
                if let Some(ok) = p.exited() {
                    panic!(
                        "{} exited ({ok}) while seeding after: {:?}",
                        self.name, p.seen
                    );
                }
                p.seen.iter().any(|l| l.contains(r#""complete":true"#))
            }
            // Transmission may still hold blocks in its cache at 100%.
            Kind::Transmission(t) => t.is_done() && f.is_copy(&self.out),
        }
    }
}

#[test]
fn mixed_swarm_of_p2pe_aria2_libtorrent_transmission_all_copies_match() {
    let test = "mixed_swarm_of_p2pe_aria2_libtorrent_transmission_all_copies_match";
    let tools = [
        ("aria2c", "aria2"),
        ("transmission-daemon", "transmission-daemon"),
        ("transmission-remote", "transmission-cli"),
    ];
    if skip_without(test, &tools) {
        return;
    }
    if !libtorrent_available() {
        eprintln!("SKIP {test}: python3-libtorrent is not importable from {SYSTEM_PYTHON} (apt-get install python3-libtorrent)");
        return;
    }
    // Issue 15: the same swarm seeded by p2pe and by libtorrent, in one run; each
    // client's time is printed for both (times are recorded, never asserted).
    let by_p2pe = mixed_swarm("p2pe");
    let by_lt = mixed_swarm("libtorrent");
    for ((name, a), (_, b)) in by_p2pe.iter().zip(&by_lt) {
        eprintln!("mixed swarm: {name}: {a:.2?} seeded by p2pe, {b:.2?} seeded by libtorrent");
    }
}

/// One mixed swarm seeded by `seeder` (`p2pe` or `libtorrent`): every copy is
/// checked; returns each leecher's completion time.
fn mixed_swarm(seeder: &str) -> Vec<(&'static str, Duration)> {
    let f = Fixture::new();
    let script = f.path("lt_leech.py");
    std::fs::write(&script, LT_LEECH).unwrap();
    let _seed = if seeder == "p2pe" {
        f.p2pe_seed()
    } else {
        let lt_peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/scripts/lt_peer.py");
        Proc::spawn(
            Command::new(SYSTEM_PYTHON)
                .arg(lt_peer)
                .args(["seed", "--torrent"])
                .arg(&f.torrent)
                .arg("--save")
                .arg(f.path("src"))
                .args(["--listen", "127.0.0.1:0", "--timeout"])
                .arg(BOUND.as_secs().to_string()),
        )
    };
    f.wait_seeders(1);
    // Transmission first: its daemon takes a moment to come up.
    let tr = Transmission::start(&f.path("tr-config"), &f.path("transmission"));
    let start = Instant::now();
    tr.add(&f.torrent);
    let mut leechers = vec![Leecher {
        name: "transmission",
        out: f.path("transmission"),
        kind: Kind::Transmission(tr),
        done_after: None,
    }];
    for (name, dir) in [("p2pe get 1", "get1"), ("p2pe get 2", "get2")] {
        let p = f.p2pe_get(&f.path(dir), true);
        leechers.push(Leecher {
            name,
            out: f.path(dir),
            kind: Kind::P2pe(p),
            done_after: None,
        });
    }
    let aria2 = f.aria2(&f.path("aria2"));
    let lt_out = f.path("libtorrent");
    std::fs::create_dir_all(&lt_out).unwrap();
    let lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg(&f.torrent)
            .arg(&lt_out)
            .arg(BOUND.as_secs().to_string()),
    );
    let exits = [
        ("aria2c (at exit)", "aria2", aria2),
        ("libtorrent", "libtorrent", lt),
    ];
    for (name, out, p) in exits {
        leechers.push(Leecher {
            name,
            out: f.path(out),
            kind: Kind::Exits(p),
            done_after: None,
        });
    }
    wait_until("every leecher of the mixed swarm completes", || {
        for l in leechers.iter_mut().filter(|l| l.done_after.is_none()) {
            if l.poll(&f) {
                l.done_after = Some(start.elapsed());
            }
        }
        leechers.iter().all(|l| l.done_after.is_some())
    });
    let mut times = Vec::new();
    for l in &leechers {
        let t = l.done_after.unwrap_or_default();
        eprintln!(
            "mixed swarm ({seeder} seed): {} complete after {t:.2?}",
            l.name
        );
        f.assert_copy(l.name, &l.out);
        times.push((l.name, t));
        // libtorrent's time from start to exit is mostly Python's and the
        // session's start-up (0.05-0.12 s of import alone, then libtorrent's
        // own 0.5 s before its first announce), which no seeder affects: also
        // record its own clock from adding the torrent to seeding.
        if let (Kind::Exits(p), "libtorrent") = (&l.kind, l.name) {
            if let Some(s) = p.seen.iter().find_map(|l| l.strip_prefix("done ")) {
                let secs: f64 = s.trim().parse().expect("libtorrent leecher's done line");
                times.push(("libtorrent (add to seeding)", Duration::from_secs_f64(secs)));
            }
        }
    }
    times
}
