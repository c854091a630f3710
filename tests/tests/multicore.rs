//! Thread-per-core nodes: a 2-worker seeder and several 2-worker leechers on
//! 127.0.0.1 (in-process `p2pe::node::Node`s).
//!
//! Each leecher's two workers own different connections and share one piece
//! claim bitmap: every copy must be byte-identical, no leecher may download
//! much more than the file, and no node may stop on a storage error (without
//! claims both workers of a leecher fetch and write the same pieces).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pe::node::{storage_layout, Node, NodeConfig, Progress};
use p2pe::store::{OpenMode, Storage};
use p2pe::wire::metainfo::{FileSpec, Info, Layout, Metainfo, PieceHash};
use p2pe_tests::data;

/// Bound on the whole transfer (a few tens of MiB on loopback, debug build).
const BOUND: Duration = Duration::from_secs(120);
const PIECE_LEN: u32 = 128 * 1024;
const FILE_LEN: usize = 24 << 20;
const LEECHERS: usize = 4;
const WORKERS: usize = 2;

/// Writes one file of `FILE_LEN` seeded bytes under `dir/t/` and returns its torrent.
fn make_torrent(dir: &Path) -> (Metainfo, Vec<u8>) {
    let bytes = data(FILE_LEN, 11);
    std::fs::create_dir_all(dir.join("t")).unwrap();
    std::fs::write(dir.join("t").join("f"), &bytes).unwrap();
    let hashes = bytes
        .chunks(PIECE_LEN as usize)
        .map(PieceHash::of_piece)
        .collect();
    let spec = FileSpec {
        path_components: vec!["f".into()],
        len_bytes: FILE_LEN as u64,
        padding: false,
    };
    let info = Info::new(
        "t".into(),
        Layout::MultiFile(vec![spec]),
        PIECE_LEN,
        hashes,
        false,
    )
    .unwrap();
    (Metainfo::new(info, vec![], None, None, None), bytes)
}

fn open(meta: &Metainfo, dir: &Path, mode: OpenMode) -> Arc<Storage> {
    let layout = storage_layout(meta).unwrap();
    let (s, _) = Storage::open(dir, layout, meta.info_hash(), mode).unwrap();
    Arc::new(s)
}

fn config(peers: Vec<SocketAddr>) -> NodeConfig {
    NodeConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        peers,
        workers: WORKERS,
        ..NodeConfig::new()
    }
}

#[test]
fn two_worker_nodes_fan_out_without_duplicate_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (meta, bytes) = make_torrent(&src);
    let seed = Node::start(&meta, open(&meta, &src, OpenMode::Seed), config(vec![])).unwrap();
    let seed_addr = seed.local_addr().unwrap();
    let mut leechers: Vec<Node> = Vec::new();
    for i in 0..LEECHERS {
        // The seeder and every earlier leecher: connections land on both workers
        // of each node (dials by address hash, accepts by SO_REUSEPORT).
        let mut peers = vec![seed_addr];
        peers.extend(leechers.iter().filter_map(Node::local_addr));
        let dir = tmp.path().join(format!("l{i}"));
        let node = Node::start(&meta, open(&meta, &dir, OpenMode::Create), config(peers));
        leechers.push(node.unwrap());
    }
    let end = Instant::now() + BOUND;
    while !leechers.iter().all(|n| n.progress().complete) {
        assert!(
            Instant::now() < end,
            "not complete within {BOUND:?}: {:?}",
            leechers.iter().map(Node::progress).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let finals: Vec<Progress> = leechers
        .into_iter()
        .map(|n| n.shutdown().unwrap())
        .collect();
    seed.shutdown().unwrap();
    // Endgame may fetch a block twice (per worker, at most two requesters per
    // block): allow 1/16 of the file (12 pieces). With claims switched off the
    // workers of one leecher race for the same pieces: measured +1 to +3
    // pieces, and writes colliding in the store (`PieceBusy`) stop the node,
    // which `shutdown().unwrap()` above reports.
    let slack = FILE_LEN as u64 / 16;
    for (i, p) in finals.iter().enumerate() {
        assert!(p.complete, "leecher {i}: {p:?}");
        let copy = std::fs::read(tmp.path().join(format!("l{i}/t/f"))).unwrap();
        assert!(copy == bytes, "leecher {i}: copy differs from the source");
        // Every byte came from a peer, counted by whichever worker got it.
        assert!(p.downloaded_bytes >= FILE_LEN as u64, "leecher {i}: {p:?}");
        assert!(
            p.downloaded_bytes <= FILE_LEN as u64 + slack,
            "leecher {i} downloaded {} bytes for a {FILE_LEN}-byte file: {p:?}",
            p.downloaded_bytes
        );
    }
    eprintln!(
        "downloaded bytes per leecher: {:?} (file {FILE_LEN})",
        finals
            .iter()
            .map(|p| p.downloaded_bytes)
            .collect::<Vec<_>>()
    );
}
