//! Magnet links (BEP 9 with BEP 10), real processes on 127.0.0.1:
//! - `p2pe create` and `p2pe inspect` print the link;
//! - `p2pe get 'magnet:…&x.pe=…'` fetches the info dictionary from a
//!   libtorrent seed (python3-libtorrent), then the payload;
//! - a libtorrent magnet leecher gets the metadata (and payload) from
//!   `p2pe seed`;
//! - a lying metadata peer (a fake peer here, answering `ut_metadata` with
//!   bytes that do not hash to the info-hash) is banned: alone, the get
//!   fails with an error that says so; with an honest seed behind a tracker
//!   (started only once the liar was asked, so the order is certain) the get
//!   completes from the seed.
//!
//! The payload's info dictionary is larger than 16 KiB (16 KiB pieces), so
//! metadata travels in several `ut_metadata` pieces. Every child is killed
//! by PID when its guard drops; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes_free::Frame;
use p2pe::base::{InfoHash, PeerId};
use p2pe::wire::metainfo::Metainfo;
use p2pe::wire::peer::metadata::{MetadataMessage, UT_METADATA};
use p2pe::wire::peer::{ExtendedHandshake, ExtendedMessage, Handshake, Message};
use p2pe_tests::{data, free_port, libtorrent_available, p2pe_bin, Proc, SYSTEM_PYTHON};

/// Bound on any one wait.
const BOUND: Duration = Duration::from_secs(120);

/// Files of the payload directory `payload/`: 6 MiB in 16 KiB pieces, so
/// 385 pieces and an info dictionary of ~20 KB (2 metadata pieces).
const FILES: &[(&str, usize)] = &[("a.bin", (4 << 20) + 123), ("sub/b.bin", 2 << 20)];

/// A payload in `dir/payload` and its torrent (made by `p2pe create`).
struct Fixture {
    dir: tempfile::TempDir,
    torrent: PathBuf,
    meta: Metainfo,
    /// The magnet link `p2pe create` printed.
    magnet: String,
}

impl Fixture {
    fn new(trackers: &[String]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (i, (name, len)) in FILES.iter().enumerate() {
            let path = dir.path().join("payload").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data(*len, 40 + i as u64)).unwrap();
        }
        let torrent = dir.path().join("payload.torrent");
        let mut cmd = Command::new(p2pe_bin());
        cmd.arg("create")
            .arg(dir.path().join("payload"))
            .arg("-o")
            .arg(&torrent)
            .args(["--piece-length", "16KiB"]);
        for t in trackers {
            cmd.args(["--tracker", t]);
        }
        let out = cmd.output().expect("run p2pe create");
        assert!(out.status.success(), "p2pe create: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let magnet = stdout
            .lines()
            .find_map(|l| l.strip_prefix("magnet ").map(str::to_owned))
            .expect("p2pe create prints the magnet link");
        let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
        assert!(
            meta.info_bytes().len() > 16 * 1024,
            "several metadata pieces"
        );
        Fixture {
            dir,
            torrent,
            meta,
            magnet,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn assert_copy(&self, out: &Path) {
        for (i, (name, len)) in FILES.iter().enumerate() {
            let got = std::fs::read(out.join("payload").join(name)).unwrap_or_default();
            assert!(
                got == data(*len, 40 + i as u64),
                "{name}: copy differs ({} bytes)",
                got.len()
            );
        }
    }

    /// `p2pe seed` of the payload; its listen address.
    fn p2pe_seed(&self, extra: &[&str]) -> (Proc, SocketAddr) {
        let mut p = Proc::spawn(
            Command::new(p2pe_bin())
                .arg("seed")
                .arg(&self.torrent)
                .arg("--path")
                .arg(self.dir.path())
                .args(["--listen", "127.0.0.1:0"])
                .args(extra),
        );
        let addr = p.listen_addr();
        (p, addr)
    }

    /// `p2pe get LINK` into `out`, stderr captured.
    fn p2pe_get(&self, link: &str, out: &Path, extra: &[&str]) -> Get {
        let mut p = Proc::spawn_with(
            Command::new(p2pe_bin())
                .arg("get")
                .arg(link)
                .arg("-o")
                .arg(out)
                .args(["--listen", "127.0.0.1:0", "--json"])
                .args(extra),
            Stdio::piped(),
        );
        let mut err = p.child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Get { p, stderr }
    }
}

/// A running `p2pe get` with its stderr read on a thread.
struct Get {
    p: Proc,
    stderr: std::thread::JoinHandle<String>,
}

impl Get {
    /// Waits for exit: success, the JSON summary (if any), stderr.
    fn finish(self) -> (bool, serde_json::Value, String) {
        let (ok, mut objects, stderr) = self.finish_all();
        (ok, objects.pop().unwrap_or_default(), stderr)
    }

    /// Waits for exit: success, every JSON object on stdout (events, then
    /// the summary), stderr.
    fn finish_all(mut self) -> (bool, Vec<serde_json::Value>, String) {
        let (ok, lines) = self.p.wait(BOUND);
        let objects = lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (ok, objects, self.stderr.join().unwrap_or_default())
    }
}

fn require_libtorrent() {
    assert!(
        libtorrent_available(),
        "python3-libtorrent is not importable from {SYSTEM_PYTHON}: install python3-libtorrent"
    );
}

/// libtorrent: `seed TORRENT SAVE` prints "listening on ADDR" once its data
/// is checked and serves until killed; `magnet LINK SAVE BOUND_S PEER` adds
/// the magnet link, connects to PEER, prints "metadata NAME" and exits 0
/// once complete.
const LT_SCRIPT: &str = r#"
import sys, time
import libtorrent as lt
mode = sys.argv[1]
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.error_notification,
})
if mode == 'seed':
    h = s.add_torrent({'ti': lt.torrent_info(sys.argv[2]), 'save_path': sys.argv[3]})
    end = time.time() + 60
    while not h.status().is_seeding:
        if time.time() > end:
            sys.exit('libtorrent seeder did not verify its data')
        time.sleep(0.05)
    print('listening on 127.0.0.1:%d' % s.listen_port(), flush=True)
    while True:
        time.sleep(1)
else:
    p = lt.parse_magnet_uri(sys.argv[2])
    p.save_path = sys.argv[3]
    h = s.add_torrent(p)
    host, port = sys.argv[5].rsplit(':', 1)
    h.connect_peer((host, int(port)))
    end = time.time() + float(sys.argv[4])
    while not h.status().has_metadata:
        if time.time() > end:
            sys.exit('libtorrent got no metadata')
        time.sleep(0.05)
    print('metadata %s' % h.torrent_file().name(), flush=True)
    while not h.status().is_seeding:
        if time.time() > end:
            sys.exit('libtorrent incomplete: %.3f' % h.status().progress)
        time.sleep(0.05)
    print('done', flush=True)
"#;

fn lt_script(dir: &Path) -> PathBuf {
    require_libtorrent();
    let path = dir.join("lt.py");
    std::fs::write(&path, LT_SCRIPT).unwrap();
    path
}

#[test]
fn create_and_inspect_print_the_magnet_link() {
    let tracker = "http://127.0.0.1:9/announce".to_string();
    let f = Fixture::new(&[tracker]);
    let ih = f.meta.info_hash().to_string();
    assert_eq!(
        f.magnet,
        format!("magnet:?xt=urn:btih:{ih}&dn=payload&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce")
    );
    let out = Command::new(p2pe_bin())
        .arg("inspect")
        .arg(&f.torrent)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["magnet"].as_str(), Some(f.magnet.as_str()));
}

#[test]
fn p2pe_get_fetches_metadata_from_a_libtorrent_seed() {
    let f = Fixture::new(&[]);
    let script = lt_script(f.dir.path());
    let mut lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg("seed")
            .arg(&f.torrent)
            .arg(f.dir.path()),
    );
    let addr = lt.listen_addr();
    let out = f.path("out");
    let link = format!("{}&x.pe={addr}", f.magnet);
    let (ok, objects, stderr) = f.p2pe_get(&link, &out, &[]).finish_all();
    let summary = objects.last().cloned().unwrap_or_default();
    assert!(ok, "p2pe get from libtorrent failed: {summary}\n{stderr}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert!(
        stderr.contains("verified against the info-hash"),
        "{stderr}"
    );
    // With --json the fetched metadata is announced first, for scripts.
    let event = &objects[0];
    assert_eq!(event["event"], "metadata", "{objects:?}");
    assert_eq!(event["info_hash"], f.meta.info_hash().to_string());
    assert_eq!(event["name"], "payload");
    assert_eq!(
        event["metadata_bytes"].as_u64(),
        Some(f.meta.info_bytes().len() as u64)
    );
    f.assert_copy(&out);
}

#[test]
fn libtorrent_magnet_leecher_gets_metadata_from_p2pe_seed() {
    let f = Fixture::new(&[]);
    let script = lt_script(f.dir.path());
    let (_seed, addr) = f.p2pe_seed(&["--no-tracker"]);
    let out = f.path("lt-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = Proc::spawn(
        Command::new(SYSTEM_PYTHON)
            .arg(&script)
            .arg("magnet")
            .arg(&f.magnet)
            .arg(&out)
            .arg(BOUND.as_secs().to_string())
            .arg(addr.to_string()),
    );
    let (ok, lines) = lt.wait(BOUND + Duration::from_secs(30));
    assert!(ok, "libtorrent magnet leecher failed: {lines:?}");
    assert!(lines.iter().any(|l| l == "metadata payload"), "{lines:?}");
    f.assert_copy(&out);
}

/// A fake peer answering every `ut_metadata` request with bytes of the
/// right length that do not hash to the info-hash. Counts the requests it
/// got and the connections that were closed on it after it lied; sends
/// `()` on `asked` at the first request.
struct Liar {
    addr: SocketAddr,
    requests: Arc<AtomicU32>,
    closed_after_lying: Arc<AtomicU32>,
    connections: Arc<AtomicU32>,
}

impl Liar {
    fn start(meta: &Metainfo, asked: mpsc::Sender<()>) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut lie = meta.info_bytes().to_vec();
        for b in lie.iter_mut().skip(100).step_by(7) {
            *b ^= 0x5a;
        }
        let info_hash = meta.info_hash();
        let requests = Arc::new(AtomicU32::new(0));
        let closed_after_lying = Arc::new(AtomicU32::new(0));
        let connections = Arc::new(AtomicU32::new(0));
        let (r, c, n) = (
            requests.clone(),
            closed_after_lying.clone(),
            connections.clone(),
        );
        // Detached: it ends with the test process; each connection is
        // bounded by read timeouts.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                n.fetch_add(1, Ordering::AcqRel);
                let (lie, r, c, asked) = (lie.clone(), r.clone(), c.clone(), asked.clone());
                std::thread::spawn(move || {
                    let lied = serve_lies(stream, info_hash, &lie, &r, &asked);
                    if lied {
                        c.fetch_add(1, Ordering::AcqRel);
                    }
                });
            }
        });
        Liar {
            addr,
            requests,
            closed_after_lying,
            connections,
        }
    }
}

/// One connection of the [`Liar`]; true if it lied and then saw the
/// connection closed by the other side.
fn serve_lies(
    mut s: TcpStream,
    info_hash: InfoHash,
    lie: &[u8],
    requests: &AtomicU32,
    asked: &mpsc::Sender<()>,
) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut theirs = [0u8; Handshake::LEN_BYTES];
    if s.read_exact(&mut theirs).is_err() {
        return false;
    }
    let mut hs = ExtendedHandshake::default();
    hs.m.insert(UT_METADATA.into(), 1);
    hs.metadata_size = Some(lie.len() as u64);
    let mut out = Handshake::new(info_hash, PeerId(*b"-XX0000-liarliarliar"))
        .to_bytes()
        .to_vec();
    Message::Extended(ExtendedMessage::Handshake(hs))
        .encode(&mut out)
        .unwrap();
    if s.write_all(&out).is_err() {
        return false;
    }
    let mut their_id = None;
    let mut lied = false;
    loop {
        let Some(frame) = Frame::read(&mut s) else {
            return lied;
        };
        let (Some(&20), Some(&ext)) = (frame.0.first(), frame.0.get(1)) else {
            continue;
        };
        let payload = bytes::Bytes::copy_from_slice(&frame.0[2..]);
        if ext == 0 {
            let hs = ExtendedHandshake::from_bencode(&payload).unwrap();
            their_id = hs.m.get(UT_METADATA).copied();
            continue;
        }
        let (Some(id), Ok(MetadataMessage::Request { piece })) =
            (their_id, MetadataMessage::from_payload(&payload))
        else {
            continue;
        };
        requests.fetch_add(1, Ordering::AcqRel);
        let _ = asked.send(());
        let start = piece as usize * 16 * 1024;
        let end = lie.len().min(start + 16 * 1024);
        let reply = MetadataMessage::Data {
            piece,
            total_size_bytes: lie.len() as u64,
            data: bytes::Bytes::copy_from_slice(&lie[start..end]),
        };
        let mut buf = Vec::new();
        Message::Extended(ExtendedMessage::Other {
            id,
            payload: reply.to_payload(),
        })
        .encode(&mut buf)
        .unwrap();
        if s.write_all(&buf).is_err() {
            return lied;
        }
        lied = true;
    }
}

/// Length-prefixed frame reading for the fake peer (no crate needed).
mod bytes_free {
    use std::io::Read;

    /// One peer wire frame's body (id and payload).
    pub(crate) struct Frame(pub Vec<u8>);

    impl Frame {
        /// The next frame; `None` at EOF, on an error or a frame over 1 MiB.
        pub(crate) fn read(s: &mut impl Read) -> Option<Frame> {
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).ok()?;
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 {
                    continue;
                }
                if len > 1 << 20 {
                    return None;
                }
                let mut body = vec![0u8; len];
                s.read_exact(&mut body).ok()?;
                return Some(Frame(body));
            }
        }
    }
}

#[test]
fn a_lying_metadata_peer_alone_fails_the_get_with_a_clear_error() {
    let f = Fixture::new(&[]);
    let (asked, _rx) = mpsc::channel();
    let liar = Liar::start(&f.meta, asked);
    let link = format!("{}&x.pe={}", f.magnet, liar.addr);
    let started = Instant::now();
    let (ok, _, stderr) = f.p2pe_get(&link, &f.path("out"), &[]).finish();
    assert!(!ok, "the get must fail: {stderr}");
    assert!(
        stderr.contains("does not match the info-hash") && stderr.contains("1 banned"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(liar.requests.load(Ordering::Acquire) >= 1);
    // Nothing was written: no torrent without verified metadata.
    assert!(!f.path("out").join("payload").exists());
    eprintln!("liar alone: failed after {:.2?}", started.elapsed());
}

#[test]
fn a_lying_metadata_peer_is_banned_and_the_get_completes_from_an_honest_seed() {
    // The tracker's port is chosen now, its process started only once the
    // liar was asked: until then the get's announces fail, so the liar is
    // certainly the first peer asked.
    let tracker_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let announce = format!("http://{tracker_addr}/announce");
    let f = Fixture::new(&[announce]);
    let (asked, asked_rx) = mpsc::channel();
    let liar = Liar::start(&f.meta, asked);
    let link = format!("{}&x.pe={}", f.magnet, liar.addr);
    let out = f.path("out");
    let get = f.p2pe_get(&link, &out, &["--metadata-timeout", "90"]);
    asked_rx
        .recv_timeout(BOUND)
        .expect("the liar was asked for metadata");
    let _tracker = Proc::spawn(Command::new(p2pe_bin()).args([
        "tracker",
        "--listen",
        &tracker_addr.to_string(),
        "--interval",
        "5",
    ]));
    p2pe_tests::wait_for_tcp(tracker_addr, BOUND);
    let (_seed, _) = f.p2pe_seed(&[]);
    let (ok, summary, stderr) = get.finish();
    assert!(ok, "p2pe get failed: {summary}\n{stderr}");
    assert!(stderr.contains("dropped and banned"), "{stderr}");
    f.assert_copy(&out);
    assert_eq!(
        liar.closed_after_lying.load(Ordering::Acquire),
        1,
        "the liar's connection was closed after its answer"
    );
    // Banned: never dialled again, not by the node that downloaded either.
    assert_eq!(liar.connections.load(Ordering::Acquire), 1);
}

/// `p2pe seed --dht …` of the fixture; its DHT address (from its stderr).
fn dht_seed(f: &Fixture, dht_args: &[&str]) -> (Proc, String) {
    let mut seed = Proc::spawn_with(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg(&f.torrent)
            .arg("--path")
            .arg(f.dir.path())
            .args(["--listen", "127.0.0.1:0", "--no-tracker"])
            .args(dht_args),
        Stdio::piped(),
    );
    let err = seed.child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    seed.listen_addr();
    let end = Instant::now() + BOUND;
    let addr = loop {
        let left = end.saturating_duration_since(Instant::now());
        let l = rx
            .recv_timeout(left)
            .expect("the seed prints its DHT address");
        if let Some(a) = l.strip_prefix("dht listening on ") {
            break a.trim().to_string();
        }
    };
    (seed, addr)
}

#[test]
fn a_magnet_link_without_peers_or_trackers_is_fetched_through_the_dht() {
    let f = Fixture::new(&[]);
    let dht = [
        "--dht",
        "--dht-listen",
        "127.0.0.1:0",
        "--dht-interval",
        "2",
    ];
    // A closed DHT of two seeds: each stores the other's announce (a node
    // never stores its own), so a look-up through either finds a seed.
    let mut first = dht.to_vec();
    first.push("--dht-no-bootstrap");
    let (_a, boot) = dht_seed(&f, &first);
    let mut second = dht.to_vec();
    second.extend(["--dht-bootstrap", &boot]);
    let (_b, _) = dht_seed(&f, &second);
    let out = f.path("out");
    // The link names neither peers nor trackers: only the DHT can find a seed.
    let (ok, summary, stderr) = f.p2pe_get(&f.magnet, &out, &second).finish();
    assert!(ok, "p2pe get through the DHT failed: {summary}\n{stderr}");
    assert!(stderr.contains("and the DHT"), "{stderr}");
    f.assert_copy(&out);
}

#[test]
fn a_bad_magnet_link_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (link, says) in [
        (
            "magnet:?xt=urn:btih:zz",
            "expected 40 hex digits or 32 base32",
        ),
        ("magnet:?dn=x", "no `xt=urn:btih:` info-hash"),
        (
            "magnet:?xt=urn:btih:c8f5230ee0c5dbc3a73dbace30f4052dad70c65c&x.pe=1.2.3.4",
            "bad peer address \"1.2.3.4\"",
        ),
    ] {
        let out = Command::new(p2pe_bin())
            .arg("get")
            .arg(link)
            .arg("-o")
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{link}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
