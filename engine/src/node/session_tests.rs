//! Many torrents in one [`Session`] on 127.0.0.1: one listen port, the
//! handshake's info-hash selecting the torrent, torrents added and removed
//! while the others keep their peers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::fake_peer::FakePeer;
use super::tests::{make_torrent, node_closes_after, open, wait_complete};
use super::{Node, NodeConfig, Session, TorrentId};
use crate::base::{InfoHash, PeerId};
use crate::core::slots::SlotConfig;
use crate::store::OpenMode;
use crate::wire::metainfo::Metainfo;
use crate::wire::peer::Handshake;

/// Bound on a small transfer over loopback: only a stall exceeds it.
const BOUND: Duration = Duration::from_secs(30);

fn session_config(workers: usize) -> NodeConfig {
    NodeConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        workers,
        slots: SlotConfig {
            handshake_timeout: Duration::from_millis(500),
            ..SlotConfig::default()
        },
        ..NodeConfig::new()
    }
}

/// `n` torrents `t0..` of a few pieces each below `src`, served by one session.
fn seed_session(src: &Path, n: usize, workers: usize) -> (Session, Vec<(TorrentId, Metainfo)>) {
    let config = session_config(workers);
    let mut session = Session::start(&config).unwrap();
    let mut torrents = Vec::new();
    for i in 0..n {
        let meta = make_torrent(src, &format!("t{i}"), &[40_000 + 1000 * i], 16 * 1024);
        let id = session
            .add(&meta, open(&meta, src, OpenMode::Seed), &config)
            .unwrap();
        torrents.push((id, meta));
    }
    (session, torrents)
}

fn get(meta: &Metainfo, dir: &Path, peer: SocketAddr) -> Node {
    let config = NodeConfig {
        peers: vec![peer],
        workers: 1,
        ..NodeConfig::new()
    };
    Node::start(meta, open(meta, dir, OpenMode::Create), config).unwrap()
}

fn same_file(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{a:?}"
    );
}

#[test]
fn one_port_serves_every_torrent_of_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (session, torrents) = seed_session(&src, 5, 2);
    let addr = session.local_addr().unwrap();
    let dir = tmp.path().join("get");
    let gets: Vec<Node> = torrents
        .iter()
        .map(|(_, meta)| get(meta, &dir, addr))
        .collect();
    wait_complete(&gets.iter().collect::<Vec<_>>(), BOUND);
    for (i, g) in gets.into_iter().enumerate() {
        g.shutdown().unwrap();
        let f = format!("t{i}/f0");
        same_file(&dir.join(&f), &src.join(&f));
    }
    for (id, meta) in &torrents {
        let p = session.progress(*id).unwrap();
        assert_eq!(p.uploaded_bytes, meta.info().total_len_bytes(), "{id}");
    }
    for (_, r) in session.shutdown() {
        r.unwrap();
    }
}

#[test]
fn unknown_info_hashes_and_other_protocols_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (session, torrents) = seed_session(&src, 2, 1);
    let addr = session.local_addr().unwrap();
    let hs = Handshake::new(InfoHash([0x5a; 20]), PeerId([0x11; 20])).to_bytes();
    assert!(node_closes_after(addr, &hs), "unknown info-hash kept");
    assert!(
        node_closes_after(addr, b"GET /announce HTTP/1.1\r\n\r\n"),
        "HTTP request kept"
    );
    // A peer that sends nothing waits at most the handshake timeout (500 ms).
    assert!(node_closes_after(addr, &[]), "silent socket kept");
    // The torrents still answer.
    for (_, meta) in &torrents {
        let mut p = FakePeer::connect(addr, meta.info_hash(), 1).expect("handshake");
        assert!(!p.closed_within(Duration::from_millis(200)));
    }
    session.shutdown();
}

#[test]
fn a_removed_torrent_closes_its_peers_and_the_others_keep_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (mut session, torrents) = seed_session(&src, 2, 2);
    let addr = session.local_addr().unwrap();
    let (gone, kept) = (&torrents[0], &torrents[1]);
    let mut a = FakePeer::connect(addr, gone.1.info_hash(), 1).expect("handshake");
    let mut b = FakePeer::connect(addr, kept.1.info_hash(), 2).expect("handshake");
    session.remove(gone.0).unwrap();
    assert!(
        a.closed_within(Duration::from_secs(5)),
        "removed torrent's peer kept"
    );
    assert!(
        !b.closed_within(Duration::from_millis(300)),
        "other torrent's peer closed"
    );
    assert!(FakePeer::connect(addr, gone.1.info_hash(), 3).is_none());
    assert!(session.progress(gone.0).is_err());
    // Added again (a new id), it is served again.
    let config = session_config(2);
    let id = session
        .add(&gone.1, open(&gone.1, &src, OpenMode::Seed), &config)
        .unwrap();
    assert_ne!(id, gone.0);
    assert!(session
        .add(&gone.1, open(&gone.1, &src, OpenMode::Seed), &config)
        .is_err());
    let dir = tmp.path().join("get");
    let g = get(&gone.1, &dir, addr);
    wait_complete(&[&g], BOUND);
    g.shutdown().unwrap();
    session.shutdown();
}

#[test]
fn a_flood_of_silent_sockets_does_not_keep_a_peer_out() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut config = session_config(1);
    // Long enough that only the count bound frees the waiting sockets.
    config.slots.handshake_timeout = Duration::from_secs(60);
    let mut session = Session::start(&config).unwrap();
    let meta = make_torrent(&src, "t", &[64 * 1024], 16 * 1024);
    session
        .add(&meta, open(&meta, &src, OpenMode::Seed), &config)
        .unwrap();
    let addr = session.local_addr().unwrap();
    let max = crate::core::inbound_handshakes::InboundConfig::default().max_pending;
    let mut silent: Vec<std::net::TcpStream> = (0..max + 20)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let dir = tmp.path().join("get");
    let g = get(&meta, &dir, addr);
    wait_complete(&[&g], BOUND);
    g.shutdown().unwrap();
    // The oldest silent sockets were evicted (closed), the bound held.
    let first = silent.first_mut().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16];
    let closed = loop {
        match std::io::Read::read(first, &mut buf) {
            Ok(0) => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true, // reset
            Ok(_) if Instant::now() < end => {}
            Ok(_) => break false,
        }
    };
    assert!(closed, "the oldest waiting socket was not evicted");
    session.shutdown();
}
