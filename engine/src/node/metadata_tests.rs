//! Serving the info dictionary (BEP 9 `ut_metadata`) from a running node,
//! fetched by the magnet driver ([`crate::discovery::metadata`]) over
//! loopback, in process.

use std::time::Duration;

use super::tests::{make_blake3_torrent, make_torrent_opts, open};
use super::{Node, NodeConfig};
use crate::base::PeerId;
use crate::discovery::metadata::{fetch_metadata, FetchConfig, FetchError};
use crate::store::OpenMode;
use crate::wire::metainfo::Metainfo;

fn seed(meta: &Metainfo, dir: &std::path::Path) -> Node {
    let store = open(meta, dir, OpenMode::Seed);
    let config = NodeConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeConfig::new()
    };
    Node::start(meta, store, config).unwrap()
}

fn config() -> FetchConfig {
    let mut c = FetchConfig::new(PeerId(*b"-PE0001-fetchfetchfe"));
    c.timeout = Duration::from_secs(30);
    c
}

#[test]
fn a_seeding_node_serves_its_info_dictionary() {
    let tmp = tempfile::tempdir().unwrap();
    // 352 pieces of 16 KiB with SHA-1 and BLAKE3 digests: ~18 KB of
    // metadata, two `ut_metadata` pieces.
    let meta = make_blake3_torrent(tmp.path(), "t", &[3 << 20, (2 << 20) + (1 << 19)], 16 << 10);
    assert!(meta.info_bytes().len() > 16 << 10);
    let node = seed(&meta, tmp.path());
    let addr = node.local_addr().unwrap();
    let mut log = Vec::new();
    let got = fetch_metadata(meta.info_hash(), &[addr], &[], &config(), &mut |l| {
        log.push(l)
    })
    .unwrap_or_else(|e| panic!("{e}; log: {log:?}"));
    assert_eq!(got.info_bytes, meta.info_bytes());
    assert_eq!(got.peers, vec![addr]);
    let again = Metainfo::from_info_bytes(&got.info_bytes, vec![]).unwrap();
    assert_eq!(again.info(), meta.info());
    node.shutdown().unwrap();
}

#[test]
fn a_seed_that_starts_late_is_redialled() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_torrent_opts(tmp.path(), "t", &[100_000], 16 << 10, false);
    // Its port is known before it listens: the first dial fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let late = std::thread::spawn({
        let meta = meta.clone();
        let dir = tmp.path().to_path_buf();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            let store = open(&meta, &dir, OpenMode::Seed);
            let config = NodeConfig {
                listen: Some(addr),
                ..NodeConfig::new()
            };
            Node::start(&meta, store, config).unwrap()
        }
    });
    let got = fetch_metadata(meta.info_hash(), &[addr], &[], &config(), &mut |_| {});
    let node = late.join().unwrap();
    assert_eq!(
        got.map(|f| f.info_bytes).ok().as_deref(),
        Some(meta.info_bytes())
    );
    node.shutdown().unwrap();
}

#[test]
fn a_private_torrent_serves_no_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_torrent_opts(tmp.path(), "t", &[100_000], 16 << 10, true);
    let node = seed(&meta, tmp.path());
    let addr = node.local_addr().unwrap();
    let r = fetch_metadata(meta.info_hash(), &[addr], &[], &config(), &mut |_| {});
    match r {
        Err(FetchError::Exhausted { stats, .. }) => {
            assert_eq!(stats.peers_without_metadata, 1, "{stats:?}");
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    node.shutdown().unwrap();
}

#[test]
fn nothing_to_ask_is_an_error_at_once() {
    let meta_hash = crate::wire::metainfo::InfoHash([7; 20]);
    let r = fetch_metadata(meta_hash, &[], &[], &config(), &mut |_| {});
    assert!(matches!(r, Err(FetchError::NoSources)), "{r:?}");
    // A dead address: dialled 3 times with back-off (0.4 s, 0.8 s), then
    // given up, and the fetch ends.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let started = std::time::Instant::now();
    let r = fetch_metadata(meta_hash, &[addr], &[], &config(), &mut |_| {});
    assert!(
        matches!(r, Err(FetchError::Exhausted { dialled: 3, .. })),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
