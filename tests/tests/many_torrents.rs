//! Many torrents in one process (issue 14 item 3): `p2pe seed --dir` serving
//! 50 torrents of 256 KiB on one port, each reachable by its info-hash (a
//! handshake answered with every piece for each, complete downloads for a
//! few) and announced on its own to a `p2pe tracker`, a torrent added to and one removed from the directory picked up
//! while it runs, a malformed one reported without stopping the others, and
//! the process's resident memory printed (`docs/cli-node.md`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pe::base::{InfoHash, PeerId};
use p2pe::node::{storage_layout, Node, NodeConfig};
use p2pe::store::{OpenMode, Storage};
use p2pe::wire::metainfo::{Info, Layout, Metainfo, PieceHash};
use p2pe::wire::peer::{Decoder, DecoderLimits, Handshake, Message, PeerMessage};
use p2pe_tests::{data, p2pe_bin, tracker_seeders, Proc};

const TORRENTS: usize = 50;
const LEN: usize = 256 * 1024;
const PIECE_LEN: u32 = 64 * 1024;
/// Bound on any one wait here (a handshake, a directory poll, a 256 KiB get).
const BOUND: Duration = Duration::from_secs(20);
/// `RssAnon` bound of a node in docs/cli-node.md (memory under attack).
const RSS_ANON_BOUND_KIB: u64 = 160 * 1024;

/// Writes `dir/name` (one file of seeded bytes) and `dir/name.torrent`.
fn make(dir: &Path, name: &str, seed: u64) -> (Metainfo, Vec<u8>) {
    let bytes = data(LEN, seed);
    std::fs::write(dir.join(name), &bytes).unwrap();
    let hashes = bytes
        .chunks(PIECE_LEN as usize)
        .map(PieceHash::of_piece)
        .collect();
    let layout = Layout::SingleFile {
        len_bytes: LEN as u64,
    };
    let info = Info::new(name.into(), layout, PIECE_LEN, hashes, false).unwrap();
    let meta = Metainfo::new(info, vec![], None, None, None);
    std::fs::write(dir.join(format!("{name}.torrent")), meta.to_bytes()).unwrap();
    (meta, bytes)
}

/// Handshakes for `info_hash` and reads until the seed says it has every
/// piece (`have all`, BEP 6, or a full `bitfield`). `None`: closed or refused.
fn has_all(addr: SocketAddr, info_hash: InfoHash) -> Option<bool> {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).ok()?;
    s.set_read_timeout(Some(BOUND)).ok()?;
    s.write_all(&Handshake::new(info_hash, PeerId([0x42; 20])).to_bytes())
        .ok()?;
    let mut theirs = [0u8; Handshake::LEN_BYTES];
    s.read_exact(&mut theirs).ok()?;
    if theirs.get(28..48) != Some(&info_hash.0[..]) {
        return Some(false);
    }
    // `interested`: a first message hands the peer to the seed's core at once
    // (else it waits for a BEP 10 extended handshake up to 2 s).
    s.write_all(&[0, 0, 0, 1, 2]).ok()?;
    let pieces = LEN.div_ceil(PIECE_LEN as usize);
    let mut dec = Decoder::new(DecoderLimits::new(pieces as u32));
    let mut buf = [0u8; 4096];
    let end = Instant::now() + BOUND;
    while Instant::now() < end {
        match dec.next_message() {
            Ok(Some(Message::Control(PeerMessage::HaveAll))) => return Some(true),
            Ok(Some(Message::Control(PeerMessage::Bitfield(b)))) => return Some(b.is_full()),
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(_) => return Some(false),
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => dec.extend(buf.get(..n)?),
        }
    }
    Some(false)
}

/// Waits (bounded) until `has_all` for `info_hash` gives `want`.
fn wait_reachable(addr: SocketAddr, info_hash: InfoHash, want: bool) {
    let end = Instant::now() + BOUND;
    while has_all(addr, info_hash).unwrap_or(false) != want {
        assert!(Instant::now() < end, "reachable never became {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `VmRSS` and `RssAnon` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn get(meta: &Metainfo, dir: &Path, peer: SocketAddr) -> Node {
    let layout = storage_layout(meta).unwrap();
    let (s, _) = Storage::open(dir, layout, meta.info_hash(), OpenMode::Create).unwrap();
    let config = NodeConfig {
        peers: vec![peer],
        workers: 1,
        ..NodeConfig::new()
    };
    Node::start(meta, Arc::new(s), config).unwrap()
}

#[test]
fn one_seed_process_serves_fifty_torrents_from_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("seeds");
    std::fs::create_dir_all(&dir).unwrap();
    let torrents: Vec<(Metainfo, Vec<u8>)> = (0..TORRENTS)
        .map(|i| make(&dir, &format!("m{i:02}"), i as u64))
        .collect();
    std::fs::write(dir.join("broken.torrent"), b"d4:infoi1e").unwrap();
    let mut tracker = Proc::spawn(Command::new(p2pe_bin()).args([
        "tracker",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "5",
    ]));
    let tracker_addr = tracker.listen_addr();
    let log = tmp.path().join("seed.log");
    let mut seed = Proc::spawn_with(
        Command::new(p2pe_bin())
            .arg("seed")
            .arg("--dir")
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--tracker", &format!("http://{tracker_addr}/announce")]),
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let addr = seed.listen_addr();
    // Every torrent answers on the one port with every piece.
    for (i, (meta, _)) in torrents.iter().enumerate() {
        assert_eq!(has_all(addr, meta.info_hash()), Some(true), "torrent {i}");
    }
    assert_eq!(
        has_all(addr, InfoHash([0x99; 20])),
        None,
        "unknown info-hash answered"
    );
    // Each torrent is announced on its own (a seeder per info-hash).
    let end = Instant::now() + BOUND;
    for (i, (meta, _)) in torrents.iter().enumerate() {
        let ih = meta.info_hash().to_string();
        while tracker_seeders(tracker_addr, &ih) != Some(1) {
            assert!(Instant::now() < end, "torrent {i} not announced");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (rss, anon) = rss_kib(seed.child.id());
    println!(
        "{TORRENTS} torrents x {} KiB in one seed process (2 workers): VmRSS {} KiB, RssAnon {} KiB",
        LEN / 1024,
        rss,
        anon
    );
    assert!(anon < RSS_ANON_BOUND_KIB, "RssAnon {anon} KiB");
    // Complete downloads of a few, concurrently.
    let out = tmp.path().join("got");
    let picks = [0, 17, 33, 49];
    let gets: Vec<Node> = picks
        .iter()
        .map(|&i| get(&torrents[i].0, &out, addr))
        .collect();
    let end = Instant::now() + BOUND;
    while !gets.iter().all(|g| g.progress().complete) {
        assert!(Instant::now() < end, "downloads not complete in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (g, &i) in gets.into_iter().zip(&picks) {
        g.shutdown().unwrap();
        let got = std::fs::read(out.join(format!("m{i:02}"))).unwrap();
        assert!(got == torrents[i].1, "copy of m{i:02} differs");
    }
    // Added and removed while running.
    let (added, _) = make(&dir, "late", 1000);
    wait_reachable(addr, added.info_hash(), true);
    std::fs::remove_file(dir.join("m00.torrent")).unwrap();
    wait_reachable(addr, torrents[0].0.info_hash(), false);
    assert_eq!(has_all(addr, torrents[1].0.info_hash()), Some(true));
    let pid = seed.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    assert!(seed.wait(BOUND).0, "seed did not exit cleanly");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("broken.torrent: not served"), "{log}");
    assert!(log.contains("added late"), "{log}");
    assert!(log.contains("dropped m00"), "{log}");
}

#[test]
fn seed_serves_several_torrent_files_on_one_port() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, _) = make(&dir, "a", 1);
    let (b, _) = make(&dir, "b", 2);
    std::fs::write(dir.join("bad.torrent"), b"not bencode").unwrap();
    let log = tmp.path().join("seed.log");
    let mut seed = Proc::spawn_with(
        Command::new(p2pe_bin())
            .arg("seed")
            .args([
                dir.join("a.torrent"),
                dir.join("bad.torrent"),
                dir.join("b.torrent"),
            ])
            .args(["--listen", "127.0.0.1:0", "--workers", "1", "--no-tracker"]),
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let addr = seed.listen_addr();
    assert_eq!(has_all(addr, a.info_hash()), Some(true));
    assert_eq!(has_all(addr, b.info_hash()), Some(true));
    let pid = seed.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    assert!(seed.wait(BOUND).0, "seed did not exit cleanly");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("bad.torrent: not served"), "{log}");
}
