//! Hostile peers against running nodes on 127.0.0.1 (issue 11): each test
//! sets up the attack with [`super::fake_peer`] and checks that honest
//! transfers still complete, within a bound that only a hang exceeds.

use std::time::Duration;

use super::fake_peer::{FakeListener, Script};
use super::tests::{make_torrent, open, wait_complete};
use super::{Node, NodeConfig};
use crate::store::OpenMode;

/// Bound on an honest 2 MiB transfer over loopback here: only a stall exceeds it.
const HONEST_BOUND: Duration = Duration::from_secs(30);

fn seed_node(meta: &crate::wire::metainfo::Metainfo, dir: &std::path::Path) -> Node {
    Node::start(
        meta,
        open(meta, dir, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::new()
        },
    )
    .unwrap()
}

#[test]
fn a_frozen_seeder_does_not_hang_a_two_worker_get() {
    // Issue 11 item 1: an honest seed plus a peer that completes the handshake,
    // says it has everything, unchokes, and then answers nothing. The 2-worker get
    // sat at 63/64 in about half the runs; each run here must complete.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[64 * 32 * 1024], 32 * 1024);
    let seed = seed_node(&meta, &src);
    let frozen = FakeListener::spawn(meta.info_hash().0, Script::FrozenSeeder, 16);
    for run in 0..4 {
        let dir = tmp.path().join(format!("get{run}"));
        // The frozen peer first: it gets requests before the honest seed answers.
        let get = Node::start(
            &meta,
            open(&meta, &dir, OpenMode::Create),
            NodeConfig {
                peers: vec![frozen.addr, seed.local_addr().unwrap()],
                workers: 2,
                ..NodeConfig::new()
            },
        )
        .unwrap();
        wait_complete(&[&get], HONEST_BOUND);
        let p = get.shutdown().unwrap();
        assert_eq!(p.verified_pieces, 64, "run {run}");
    }
    assert!(frozen.accepted.load(std::sync::atomic::Ordering::Acquire) >= 4);
    seed.shutdown().unwrap();
}
