//! Web seeds (BEP 19) against a real HTTP server: Debian's `nginx`, started
//! by each test on 127.0.0.1 with a config written into a temp dir (no
//! daemon, one process, pid, logs and temp paths in the temp dir, `root` at
//! the test's data; nginx answers `Range` requests by default) and killed by
//! PID when its guard drops. Without nginx a test prints `SKIP …` and passes.
//!
//! The access log records `$status $body_bytes_sent "$request"` per request:
//! the origin's HTTP bytes are summed from it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_bench::nginx;
use p2pe_tests::{command_available, data, free_port, p2pe_bin, wait_for_tcp, Proc};

/// Bound on any one get in these tests (a few MiB on loopback).
const BOUND: Duration = Duration::from_secs(120);

/// An nginx serving `root` on 127.0.0.1, killed (by PID) on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    /// `https` when started with [`Nginx::start_tls`], else `http`.
    scheme: &'static str,
    access_log: PathBuf,
    _dir: tempfile::TempDir,
}

/// One line of the access log.
#[derive(Debug)]
struct Logged {
    status: u16,
    body_bytes: u64,
    request: String,
}

impl Nginx {
    /// Starts nginx on a free loopback port serving `root`; `None` (after a
    /// `SKIP` line naming `test`) when nginx is not installed.
    fn start(root: &Path, test: &str) -> Option<Nginx> {
        Self::start_with(root, test, None)
    }

    /// As [`Nginx::start`], serving HTTPS with the certificate `cert` and
    /// its key `key` (PEM files).
    fn start_tls(root: &Path, test: &str, cert: &Path, key: &Path) -> Option<Nginx> {
        Self::start_with(root, test, Some((cert, key)))
    }

    fn start_with(root: &Path, test: &str, tls: Option<(&Path, &Path)>) -> Option<Nginx> {
        let Some(bin) = nginx::binary() else {
            eprintln!("SKIP {test}: nginx is not installed (apt-get install -y nginx)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let access_log = nginx::access_log(dir.path());
        let tls_files = tls.map(|(cert, key)| nginx::Tls { cert, key });
        let conf = nginx::config(dir.path(), addr, root, tls_files);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let nginx = Nginx {
            child,
            addr,
            scheme: if tls.is_some() { "https" } else { "http" },
            access_log,
            _dir: dir,
        };
        wait_for_tcp(addr, Duration::from_secs(20));
        Some(nginx)
    }

    /// `http://127.0.0.1:PORT` + `path` (`https://` with TLS).
    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The access log so far.
    fn log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                Some(Logged {
                    status: it.next()?.parse().ok()?,
                    body_bytes: it.next()?.parse().ok()?,
                    request: it.next()?.trim_matches('"').to_string(),
                })
            })
            .collect()
    }

    /// `$body_bytes_sent` summed over the access log: the origin's payload.
    fn body_bytes(&self) -> u64 {
        self.log().iter().map(|l| l.body_bytes).sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `p2pe create` of `path` into `torrent` with `extra` options; panics on failure.
fn create(path: &Path, torrent: &Path, extra: &[&str]) {
    let out = Command::new(p2pe_bin())
        .arg("create")
        .arg(path)
        .arg("-o")
        .arg(torrent)
        .args(extra)
        .output()
        .expect("run p2pe create");
    assert!(out.status.success(), "p2pe create: {out:?}");
}

/// `p2pe inspect --json` of `torrent`.
fn inspect(torrent: &Path) -> serde_json::Value {
    let out = Command::new(p2pe_bin())
        .args(["inspect", "--json"])
        .arg(torrent)
        .output()
        .expect("run p2pe inspect");
    assert!(out.status.success(), "p2pe inspect: {out:?}");
    serde_json::from_slice(&out.stdout).expect("inspect JSON")
}

/// Runs `p2pe get torrent -o out --json` with `extra` options, no peers:
/// (success, its JSON summary, its stderr).
fn get(torrent: &Path, out: &Path, extra: &[&str]) -> (bool, serde_json::Value, String) {
    get_env(torrent, out, extra, None)
}

/// As [`get`], with the environment variable `SSL_CERT_FILE` set to
/// `cert_file` (or removed when `None`).
fn get_env(
    torrent: &Path,
    out: &Path,
    extra: &[&str],
    cert_file: Option<&Path>,
) -> (bool, serde_json::Value, String) {
    let mut cmd = Command::new(p2pe_bin());
    match cert_file {
        Some(f) => cmd.env("SSL_CERT_FILE", f),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
    let err_path = out.with_extension("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut p = Proc::spawn_with(
        cmd.arg("get")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--json"])
            .args(extra),
        Stdio::from(err),
    );
    let (ok, lines) = p.wait(BOUND);
    let json = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        ok,
        json,
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// The summary's entry for web seed `url`.
fn seed_entry<'a>(summary: &'a serde_json::Value, url: &str) -> &'a serde_json::Value {
    summary["web_seeds"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["url"] == url))
        .unwrap_or_else(|| panic!("no web seed {url} in {summary}"))
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read the answer");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// (a) No peer at all: the get completes from nginx alone, through a web seed
/// URL ending in `/` (BEP 19: the torrent name is appended), counts the bytes
/// as `web_seed`, and `inspect` shows the `url-list`.
#[test]
fn get_without_peers_completes_from_a_web_seed_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(www.join("files")).unwrap();
    let Some(nginx) = Nginx::start(&www, "get_without_peers_completes_from_a_web_seed_alone")
    else {
        return;
    };
    let payload = data(6 << 20, 11);
    let file = www.join("files").join("model.bin");
    std::fs::write(&file, &payload).unwrap();
    let torrent = tmp.path().join("model.torrent");
    let seed_url = nginx.url("/files/");
    create(
        &file,
        &torrent,
        &["--piece-length", "256KiB", "--web-seed", &seed_url],
    );
    let view = inspect(&torrent);
    assert_eq!(view["web_seeds"], serde_json::json!([seed_url]), "{view}");

    // Keep it running to scrape its metrics after completion.
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = tmp.path().join("out");
    let mut p = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("get")
            .arg(&torrent)
            .arg("-o")
            .arg(&out)
            .args(["--listen", "127.0.0.1:0", "--json", "--seed-after"])
            .args(["--metrics", &metrics.to_string()]),
    );
    let summary: serde_json::Value = p.line(
        "JSON summary",
        |l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("complete").is_some())
        },
        drop,
    );
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["peers"], 0, "{summary}");
    let f = payload.len() as u64;
    assert_eq!(summary["web_seed_bytes"].as_u64(), Some(f), "{summary}");
    assert_eq!(summary["peer_bytes"].as_u64(), Some(0), "{summary}");
    assert_eq!(summary["bytes"].as_u64(), Some(f), "{summary}");
    let entry = seed_entry(&summary, &seed_url);
    assert_eq!(entry["pieces"], 24, "{summary}");
    assert_eq!(entry["failures"], 0, "{summary}");
    assert!(std::fs::read(out.join("model.bin")).unwrap() == payload);
    let body = scrape(metrics);
    let series = format!(
        "p2pe_downloaded_bytes_total{{kind=\"web_seed\",torrent=\"{}\"}} {f}",
        view["info_hash"].as_str().unwrap()
    );
    assert!(body.lines().any(|l| l == series), "{series} in:\n{body}");
    // Every request went to the BEP 19 URL: the directory URL + the name.
    let log = nginx.log();
    assert!(!log.is_empty());
    for l in &log {
        assert_eq!(l.status, 206, "{l:?}");
        assert!(l.request.starts_with("GET /files/model.bin "), "{l:?}");
    }
    assert_eq!(nginx.body_bytes(), f);
}

/// Waits (bounded) for the JSON line with `complete` that a `get --json
/// --seed-after` prints at completion.
fn completion(p: &mut Proc, what: &str) -> serde_json::Value {
    p.line(
        what,
        |l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("complete").is_some())
        },
        drop,
    )
}

/// (b) Eight `p2pe get` and one web seed, no `p2pe seed`: every copy
/// completes byte-exact and the origin sends about one copy in all (each
/// node fetches its share of the pieces no peer has and the others take
/// them by P2P), not one per machine.
#[test]
fn swarm_of_eight_takes_about_one_copy_from_the_web_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let Some(nginx) = Nginx::start(
        &www,
        "swarm_of_eight_takes_about_one_copy_from_the_web_seed",
    ) else {
        return;
    };
    let payload = data(32 << 20, 12);
    let file = www.join("data.bin");
    std::fs::write(&file, &payload).unwrap();
    let mut tracker = Proc::spawn(Command::new(p2pe_bin()).args([
        "tracker",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "5",
    ]));
    let tracker_addr = tracker.listen_addr();
    let torrent = tmp.path().join("data.torrent");
    let announce = format!("http://{tracker_addr}/announce");
    // The web seed URL is the file itself (BEP 19 single-file, used as is).
    let seed_url = nginx.url("/data.bin");
    create(
        &file,
        &torrent,
        &[
            "--piece-length",
            "256KiB",
            "--tracker",
            &announce,
            "--web-seed",
            &seed_url,
        ],
    );
    let started = Instant::now();
    let mut gets: Vec<Proc> = (0..8)
        .map(|i| {
            Proc::spawn(
                Command::new(p2pe_bin())
                    .arg("get")
                    .arg(&torrent)
                    .arg("-o")
                    .arg(tmp.path().join(format!("out{i}")))
                    .args(["--listen", "127.0.0.1:0", "--json", "--seed-after"])
                    // Half of them on one worker: there the web seed's claims
                    // and availability are shared only because of it.
                    .args(["--workers", if i % 2 == 0 { "1" } else { "2" }]),
            )
        })
        .collect();
    let mut web_seed_bytes = Vec::new();
    for (i, g) in gets.iter_mut().enumerate() {
        let s = completion(g, &format!("get {i}'s summary"));
        assert_eq!(s["complete"], true, "get {i}: {s}");
        web_seed_bytes.push(s["web_seed_bytes"].as_u64().unwrap_or(0));
    }
    let took = started.elapsed();
    for i in 0..8 {
        let got = std::fs::read(tmp.path().join(format!("out{i}/data.bin"))).unwrap_or_default();
        assert!(got == payload, "copy {i} differs");
    }
    drop(gets);
    let f = payload.len() as f64;
    let origin = nginx.body_bytes() as f64;
    let reported: u64 = web_seed_bytes.iter().sum();
    eprintln!(
        "swarm of 8, one web seed: origin sent {origin} bytes = {:.2} x F \
         (F = {f} bytes; per get {web_seed_bytes:?}); all complete in {took:.2?}",
        origin / f
    );
    assert!(reported > 0, "the gets report their web seed bytes");
    assert!(
        origin >= f,
        "every piece came from the origin once at least"
    );
    // 1.00 x F measured; without the shares (availability-0 pieces at
    // random only) 1.6-1.9 x F: nodes starting together pick the same ones.
    assert!(origin <= 1.5 * f, "origin sent {:.2} x F", origin / f);
}

/// (c) A multi-file torrent maps to BEP 19's layout: URL (ending in `/`) +
/// torrent name + `/` + file path, path components percent-encoded.
#[test]
fn multi_file_torrent_uses_the_bep19_url_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let name = "data set";
    let files = [
        ("a.bin", data(300_001, 21)),
        ("sub dir/b#1.bin", data(777_777, 22)),
        ("sub dir/empty", Vec::new()),
        ("z.bin", data(65_536 * 3 + 5, 23)),
    ];
    let src = www.join("mirror").join(name);
    for (p, bytes) in &files {
        let path = src.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let Some(nginx) = Nginx::start(&www, "multi_file_torrent_uses_the_bep19_url_layout") else {
        return;
    };
    let torrent = tmp.path().join("set.torrent");
    let seed_url = nginx.url("/mirror/");
    create(
        &src,
        &torrent,
        &["--piece-length", "64KiB", "--web-seed", &seed_url],
    );
    let out = tmp.path().join("out");
    let (ok, summary, err) = get(&torrent, &out, &[]);
    assert!(ok, "get failed: {summary}\n{err}");
    for (p, bytes) in &files {
        let got = std::fs::read(out.join(name).join(p)).unwrap_or_default();
        assert!(got == *bytes, "{p} differs");
    }
    let paths: std::collections::BTreeSet<String> = nginx
        .log()
        .iter()
        .map(|l| {
            assert_eq!(l.status, 206, "{l:?}");
            l.request.split(' ').nth(1).unwrap_or_default().to_string()
        })
        .collect();
    let want: std::collections::BTreeSet<String> = [
        "/mirror/data%20set/a.bin",
        "/mirror/data%20set/sub%20dir/b%231.bin",
        "/mirror/data%20set/z.bin",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, want);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(summary["web_seed_bytes"].as_u64(), Some(total), "{summary}");
}

/// The payload, its torrent and a web root holding a good copy, a corrupted
/// copy (same length) and no copy at all, for the failure tests.
fn good_bad_missing(tmp: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let www = tmp.join("www");
    let payload = data(4 << 20, 31);
    let mut bad = payload.clone();
    for i in (0..bad.len()).step_by(4096) {
        bad[i] ^= 0xff;
    }
    for (dir, bytes) in [("good", &payload), ("bad", &bad)] {
        std::fs::create_dir_all(www.join(dir)).unwrap();
        std::fs::write(www.join(dir).join("w.bin"), bytes).unwrap();
    }
    std::fs::create_dir_all(www.join("missing")).unwrap();
    let torrent = tmp.join("w.torrent");
    create(
        &www.join("good").join("w.bin"),
        &torrent,
        &["--piece-length", "64KiB"],
    );
    (www, torrent, payload)
}

/// (d) A web seed serving wrong bytes and one answering 404 are backed off
/// (a handful of attempts each, not one per piece), reported (counters, log
/// lines), never trusted; the get completes from the good one.
#[test]
fn wrong_bytes_and_404_web_seeds_are_backed_off_and_the_get_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (www, torrent, payload) = good_bad_missing(tmp.path());
    let Some(nginx) = Nginx::start(
        &www,
        "wrong_bytes_and_404_web_seeds_are_backed_off_and_the_get_completes",
    ) else {
        return;
    };
    let (bad, missing, good) = (
        nginx.url("/bad/"),
        nginx.url("/missing/"),
        nginx.url("/good/"),
    );
    let out = tmp.path().join("out");
    let (ok, summary, err) = get(
        &torrent,
        &out,
        &[
            "--web-seed",
            &bad,
            "--web-seed",
            &missing,
            "--web-seed",
            &good,
        ],
    );
    assert!(ok, "get failed: {summary}\n{err}");
    assert!(std::fs::read(out.join("w.bin")).unwrap() == payload);
    let b = seed_entry(&summary, &bad);
    let m = seed_entry(&summary, &missing);
    let g = seed_entry(&summary, &good);
    assert_eq!(b["pieces"], 0, "{summary}");
    assert_eq!(m["pieces"], 0, "{summary}");
    assert_eq!(g["pieces"], 64, "{summary}");
    assert!(b["hash_failures"].as_u64() >= Some(1), "{summary}");
    assert!(m["failures"].as_u64() >= Some(1), "{summary}");
    assert!(
        m["last_error"].as_str().unwrap_or("").contains("404"),
        "{summary}"
    );
    // Backed off: two threads each, at most a few attempts in a short run
    // (without back-off the failing seeds would be asked for every piece).
    for s in [b, m] {
        assert!(s["failures"].as_u64() <= Some(8), "{summary}");
    }
    assert!(
        err.contains("failed its hash check") && err.contains("backing off"),
        "{err}"
    );
}

/// (d) A get whose only source is a web seed answering 404 fails with an
/// error naming the web seed and the status.
#[test]
fn a_get_whose_only_web_seed_answers_404_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (www, torrent, _) = good_bad_missing(tmp.path());
    let Some(nginx) = Nginx::start(&www, "a_get_whose_only_web_seed_answers_404_fails_clearly")
    else {
        return;
    };
    let missing = nginx.url("/missing/");
    let out = tmp.path().join("out");
    let (ok, _, err) = get(
        &torrent,
        &out,
        &["--web-seed", &missing, "--connect-timeout", "3"],
    );
    assert!(!ok, "a 404 web seed cannot complete a get:\n{err}");
    assert!(
        err.contains("no web seed delivered a piece") && err.contains("404"),
        "{err}"
    );
}

/// The swarm prefers peers: a get that reaches a `p2pe seed` (every piece
/// available from a peer) takes nothing from the web seed in its torrent.
#[test]
fn a_get_that_reaches_a_seed_takes_nothing_from_the_web_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let Some(nginx) = Nginx::start(
        &www,
        "a_get_that_reaches_a_seed_takes_nothing_from_the_web_seed",
    ) else {
        return;
    };
    let payload = data(4 << 20, 41);
    let file = www.join("s.bin");
    std::fs::write(&file, &payload).unwrap();
    let torrent = tmp.path().join("s.torrent");
    create(
        &file,
        &torrent,
        &["--piece-length", "64KiB", "--web-seed", &nginx.url("/")],
    );
    let mut seed = Proc::spawn(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg(&torrent)
            .arg("--path")
            .arg(&www)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let seed_addr = seed.listen_addr();
    let out = tmp.path().join("out");
    let (ok, summary, err) = get(&torrent, &out, &["--peer", &seed_addr.to_string()]);
    assert!(ok, "get failed: {summary}\n{err}");
    assert!(std::fs::read(out.join("s.bin")).unwrap() == payload);
    assert_eq!(summary["web_seed_bytes"].as_u64(), Some(0), "{summary}");
    assert_eq!(
        summary["peer_bytes"].as_u64(),
        Some(payload.len() as u64),
        "{summary}"
    );
    assert_eq!(nginx.body_bytes(), 0, "{:?}", nginx.log());
}

/// (d) A web seed that accepts connections and never answers (stalls) fails
/// after `--web-seed-timeout`, gives its pieces back and is backed off; the
/// get completes from the good web seed.
#[test]
fn a_stalling_web_seed_times_out_and_the_get_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (www, torrent, payload) = good_bad_missing(tmp.path());
    let Some(nginx) = Nginx::start(&www, "a_stalling_web_seed_times_out_and_the_get_completes")
    else {
        return;
    };
    // Accepts and holds connections, never sends a byte (bounded: it stops
    // when the test is done, or after 60 s).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let stall = listener.local_addr().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while !done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < end {
                if let Ok((s, _)) = listener.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            held.len()
        })
    };
    let stall_url = format!("http://{stall}/");
    let good = nginx.url("/good/");
    let out = tmp.path().join("out");
    let (ok, summary, err) = get(
        &torrent,
        &out,
        &[
            "--web-seed",
            &stall_url,
            "--web-seed",
            &good,
            "--web-seed-timeout",
            "1",
        ],
    );
    done.store(true, std::sync::atomic::Ordering::Release);
    let connections = holder.join().unwrap();
    assert!(ok, "get failed: {summary}\n{err}");
    assert!(std::fs::read(out.join("w.bin")).unwrap() == payload);
    let s = seed_entry(&summary, &stall_url);
    assert!(connections >= 1, "the stalling seed was asked");
    assert_eq!(s["pieces"], 0, "{summary}");
    assert!(s["failures"].as_u64() >= Some(1), "{summary}");
    let why = s["last_error"].as_str().unwrap_or("").to_lowercase();
    assert!(why.contains("time"), "a timeout: {summary}");
    assert_eq!(seed_entry(&summary, &good)["pieces"], 64, "{summary}");
}

/// A test CA and a server certificate it signed for `127.0.0.1` (and
/// `localhost`), written by `openssl` into `dir`: (CA certificate, server
/// certificate, server key), or `None` without openssl.
fn test_ca_and_server_cert(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !command_available("openssl") {
        return None;
    }
    let p = |n: &str| dir.join(n);
    let ext = p("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=p2pe test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    Some((p("ca.pem"), p("server.pem"), p("server.key")))
}

/// An `https://` web seed: with its certificate trusted (`SSL_CERT_FILE`, as
/// curl reads it) the get completes from it alone; with an untrusted
/// certificate nothing is taken from it and the get fails naming TLS.
#[test]
fn https_web_seed_is_used_when_its_certificate_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (www, torrent, payload) = good_bad_missing(tmp.path());
    let test = "https_web_seed_is_used_when_its_certificate_is_trusted";
    let Some((ca, cert, key)) = test_ca_and_server_cert(tmp.path()) else {
        eprintln!("SKIP {test}: openssl is not installed");
        return;
    };
    let Some(nginx) = Nginx::start_tls(&www, test, &cert, &key) else {
        return;
    };
    let good = nginx.url("/good/");
    assert!(good.starts_with("https://"), "{good}");
    let out = tmp.path().join("trusted");
    let (ok, summary, err) = get_env(
        &torrent,
        &out,
        &["--web-seed", &good, "--connect-timeout", "3"],
        Some(&ca),
    );
    assert!(ok, "get from an https web seed failed:\n{err}");
    assert!(std::fs::read(out.join("w.bin")).unwrap() == payload);
    assert_eq!(
        summary["web_seed_bytes"].as_u64(),
        Some(payload.len() as u64),
        "{summary}"
    );
    assert_eq!(seed_entry(&summary, &good)["failures"], 0, "{summary}");
    // Untrusted: the system store does not hold the test CA.
    let before = nginx.body_bytes();
    let out = tmp.path().join("untrusted");
    let (ok, _, err) = get_env(
        &torrent,
        &out,
        &["--web-seed", &good, "--connect-timeout", "3"],
        None,
    );
    assert!(!ok, "an untrusted https web seed completed a get:\n{err}");
    let lower = err.to_lowercase();
    assert!(
        err.contains("no web seed delivered a piece")
            && (lower.contains("certificate") || lower.contains("tls")),
        "{err}"
    );
    assert_eq!(
        nginx.body_bytes(),
        before,
        "payload sent over untrusted TLS"
    );
}

/// `p2pe get` and `p2pe inspect` take the `.torrent` by `https://` URL
/// (here from the same nginx that is the web seed); a URL answering 404
/// fails naming the status.
#[test]
fn get_and_inspect_take_the_torrent_by_url() {
    let tmp = tempfile::tempdir().unwrap();
    let (www, torrent, payload) = good_bad_missing(tmp.path());
    std::fs::copy(&torrent, www.join("w.torrent")).unwrap();
    let test = "get_and_inspect_take_the_torrent_by_url";
    let Some((ca, cert, key)) = test_ca_and_server_cert(tmp.path()) else {
        eprintln!("SKIP {test}: openssl is not installed");
        return;
    };
    let Some(nginx) = Nginx::start_tls(&www, test, &cert, &key) else {
        return;
    };
    let url = nginx.url("/w.torrent");
    let out = Command::new(p2pe_bin())
        .env("SSL_CERT_FILE", &ca)
        .args(["inspect", "--json", &url])
        .output()
        .expect("run p2pe inspect");
    assert!(out.status.success(), "p2pe inspect URL: {out:?}");
    let by_url: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_url, inspect(&torrent));
    let dest = tmp.path().join("out");
    let (ok, summary, err) = get_env(
        Path::new(&url),
        &dest,
        &["--web-seed", &nginx.url("/good/"), "--connect-timeout", "3"],
        Some(&ca),
    );
    assert!(ok, "get by URL failed:\n{err}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert!(std::fs::read(dest.join("w.bin")).unwrap() == payload);
    let (ok, _, err) = get_env(
        Path::new(&nginx.url("/nothing.torrent")),
        &tmp.path().join("none"),
        &[],
        Some(&ca),
    );
    assert!(!ok && err.contains("HTTP status 404"), "{err}");
}
