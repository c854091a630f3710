//! In-process loopback tests: a seeding node and leeching nodes on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{storage_layout, Node, NodeConfig};
use crate::base::{InfoHash, PeerId};
use crate::store::{OpenMode, Storage};
use crate::wire::metainfo::{FileSpec, Info, Layout, Metainfo, PieceHash};

/// Writes files of `sizes` under `dir/name/` with seeded random bytes and
/// returns the torrent of them.
pub(super) fn make_torrent(dir: &Path, name: &str, sizes: &[usize], piece_len: u32) -> Metainfo {
    make_torrent_opts(dir, name, sizes, piece_len, false)
}

/// As [`make_torrent`], `private` (BEP 27) as given.
pub(super) fn make_torrent_opts(
    dir: &Path,
    name: &str,
    sizes: &[usize],
    piece_len: u32,
    private: bool,
) -> Metainfo {
    let (all, specs) = write_files(dir, name, sizes);
    let hashes = all
        .chunks(piece_len as usize)
        .map(PieceHash::of_piece)
        .collect();
    let info = Info::new(
        name.into(),
        Layout::MultiFile(specs),
        piece_len,
        hashes,
        private,
    )
    .unwrap();
    Metainfo::new(info, vec![], None, None, None)
}

/// As [`make_torrent`], with the p2pe BLAKE3 digests (`p2pe blake3`) and
/// SHA-1 `pieces` that are all zero: only a node that verifies with BLAKE3
/// where the key is present can complete it.
pub(super) fn make_blake3_torrent(
    dir: &Path,
    name: &str,
    sizes: &[usize],
    piece_len: u32,
) -> Metainfo {
    let (all, specs) = write_files(dir, name, sizes);
    let chunks = all.chunks(piece_len as usize);
    let blake3 = chunks
        .clone()
        .map(|c| *blake3::hash(c).as_bytes())
        .collect();
    let wrong_sha1 = chunks.map(|_| PieceHash([0; 20])).collect();
    let info = Info::new(
        name.into(),
        Layout::MultiFile(specs),
        piece_len,
        wrong_sha1,
        false,
    )
    .and_then(|i| i.with_blake3_hashes(blake3))
    .unwrap();
    Metainfo::new(info, vec![], None, None, None)
}

/// Writes files of `sizes` under `dir/name/` with seeded random bytes; their
/// concatenation and file specs.
fn write_files(dir: &Path, name: &str, sizes: &[usize]) -> (Vec<u8>, Vec<FileSpec>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut all = Vec::new();
    let mut specs = Vec::new();
    std::fs::create_dir_all(dir.join(name)).unwrap();
    for (i, &n) in sizes.iter().enumerate() {
        let mut data = vec![0u8; n];
        rng.fill_bytes(&mut data);
        std::fs::write(dir.join(name).join(format!("f{i}")), &data).unwrap();
        all.extend_from_slice(&data);
        specs.push(FileSpec {
            path_components: vec![format!("f{i}")],
            len_bytes: n as u64,
            padding: false,
        });
    }
    (all, specs)
}

pub(super) fn open(meta: &Metainfo, dir: &Path, mode: OpenMode) -> Arc<Storage> {
    let layout = storage_layout(meta).unwrap();
    let (s, _) = Storage::open(dir, layout, meta.info_hash(), mode).unwrap();
    Arc::new(s)
}

/// Asserts that `dir/t/f{i}` equals `src/t/f{i}` for each of `files` files.
pub(super) fn assert_same_files(dir: &Path, src: &Path, files: usize) {
    for i in 0..files {
        let f = format!("t/f{i}");
        assert_eq!(
            std::fs::read(dir.join(&f)).unwrap(),
            std::fs::read(src.join(&f)).unwrap(),
            "{f}"
        );
    }
}

pub(super) fn wait_complete(nodes: &[&Node], bound: Duration) {
    let end = Instant::now() + bound;
    while !nodes.iter().all(|n| n.progress().complete) {
        assert!(Instant::now() < end, "not complete within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn seed_to_two_leechers_multi_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Files that do not align with pieces: blocks span file boundaries.
    let sizes = [100_000, 0, 333_333, 70_000, 1];
    let meta = make_torrent(&src, "t", &sizes, 64 * 1024);
    let seed_store = open(&meta, &src, OpenMode::Seed);
    assert!(seed_store.is_complete());
    let local = "127.0.0.1:0".parse().unwrap();
    let seed = Node::start(
        &meta,
        seed_store,
        NodeConfig {
            listen: Some(local),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let seed_addr = seed.local_addr().unwrap();
    let a_dir = tmp.path().join("a");
    let a = Node::start(
        &meta,
        open(&meta, &a_dir, OpenMode::Create),
        NodeConfig {
            listen: Some(local),
            peers: vec![seed_addr],
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let b_dir = tmp.path().join("b");
    let b = Node::start(
        &meta,
        open(&meta, &b_dir, OpenMode::Create),
        NodeConfig {
            listen: Some(local),
            peers: vec![seed_addr, a.local_addr().unwrap()],
            // Throttled leecher: exercises the held FIFO.
            download_limit_bytes_per_s: Some(2_000_000),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    wait_complete(&[&a, &b], Duration::from_secs(60));
    for (node, dir) in [(a, &a_dir), (b, &b_dir)] {
        let p = node.shutdown().unwrap();
        assert_eq!(p.verified_pieces, p.piece_count);
        assert_same_files(dir, &src, sizes.len());
    }
    seed.shutdown().unwrap();
}

/// Connects a raw TCP client to `addr`, sends `bytes`, and returns true when
/// the node closes the connection (EOF or reset) within 10 s.
pub(super) fn node_closes_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timeout: still open
        }
    }
}

#[test]
fn misbehaving_peers_are_closed_not_fatal() {
    use crate::wire::peer::Handshake;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[200_000], 64 * 1024);
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let addr = seed.local_addr().unwrap();
    // Not a handshake at all.
    assert!(node_closes_after(addr, &[0xff; 100]));
    // Another torrent's info-hash.
    let other = Handshake::new(InfoHash([9; 20]), PeerId([1; 20])).to_bytes();
    assert!(node_closes_after(addr, &other));
    // Right torrent, then a frame longer than any limit.
    let mut bad = Handshake::new(meta.info_hash(), PeerId([2; 20]))
        .to_bytes()
        .to_vec();
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(node_closes_after(addr, &bad));
    // Right torrent, then a request for a piece out of range.
    let mut oob = Handshake::new(meta.info_hash(), PeerId([3; 20]))
        .to_bytes()
        .to_vec();
    oob.extend_from_slice(&[0, 0, 0, 13, 6, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 64, 0]);
    assert!(node_closes_after(addr, &oob));
    // The node still serves a well-behaved leecher.
    let dir = tmp.path().join("a");
    let a = Node::start(
        &meta,
        open(&meta, &dir, OpenMode::Create),
        NodeConfig {
            peers: vec![addr],
            ..NodeConfig::new()
        },
    )
    .unwrap();
    wait_complete(&[&a], Duration::from_secs(60));
    a.shutdown().unwrap();
    seed.shutdown().unwrap();
}

#[test]
fn random_bytes_after_handshake_never_kill_the_node() {
    use crate::wire::peer::Handshake;
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[150_000, 10], 32 * 1024);
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let addr = seed.local_addr().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for i in 0..64u8 {
        let mut bytes = Handshake::new(meta.info_hash(), PeerId([i; 20]))
            .to_bytes()
            .to_vec();
        // Mostly small frames with plausible ids, so bodies get parsed.
        for _ in 0..rng.random_range(1..20) {
            let len: u32 = rng.random_range(0..40);
            bytes.extend_from_slice(&len.to_be_bytes());
            let mut body = vec![0u8; len as usize];
            rng.fill_bytes(&mut body);
            if let Some(id) = body.first_mut() {
                *id %= 21;
            }
            bytes.extend_from_slice(&body);
        }
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The node may close first (reset): write errors are fine.
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let dir = tmp.path().join("a");
    let a = Node::start(
        &meta,
        open(&meta, &dir, OpenMode::Create),
        NodeConfig {
            peers: vec![addr],
            ..NodeConfig::new()
        },
    )
    .unwrap();
    wait_complete(&[&a], Duration::from_secs(60));
    a.shutdown().unwrap();
    seed.shutdown().unwrap();
}

/// A seeder S, a leecher B given S, and a leecher C given only B, with PEX
/// every 50 ms (and `private` as given); returns C's and S's final progress.
fn chain_of_three(private: bool) -> (super::Progress, super::Progress) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent_opts(&src, "t", &[600_000], 16 * 1024, private);
    let local = "127.0.0.1:0".parse().unwrap();
    let cfg = |peers: Vec<std::net::SocketAddr>| NodeConfig {
        listen: Some(local),
        peers,
        pex_interval: Some(Duration::from_millis(50)),
        // Slow enough that C is still downloading when PEX goes around.
        download_limit_bytes_per_s: Some(400_000),
        ..NodeConfig::new()
    };
    let s = Node::start(&meta, open(&meta, &src, OpenMode::Seed), cfg(vec![])).unwrap();
    let b_dir = tmp.path().join("b");
    let b_store = open(&meta, &b_dir, OpenMode::Create);
    let b = Node::start(&meta, b_store, cfg(vec![s.local_addr().unwrap()])).unwrap();
    let c_dir = tmp.path().join("c");
    let c_store = open(&meta, &c_dir, OpenMode::Create);
    let c = Node::start(&meta, c_store, cfg(vec![b.local_addr().unwrap()])).unwrap();
    wait_complete(&[&b, &c], Duration::from_secs(60));
    let (pc, ps) = (c.shutdown().unwrap(), s.shutdown().unwrap());
    b.shutdown().unwrap();
    assert_eq!(
        std::fs::read(c_dir.join("t/f0")).unwrap(),
        std::fs::read(src.join("t/f0")).unwrap()
    );
    (pc, ps)
}

#[test]
fn pex_introduces_a_leecher_to_the_seeder_it_was_not_given() {
    let (c, s) = chain_of_three(false);
    // C was given B only; S was given nobody: they met through `ut_pex`.
    assert!(c.peers_seen >= 2, "{c:?}");
    assert!(
        c.pex_peers_learned + s.pex_peers_learned >= 1,
        "{c:?} {s:?}"
    );
}

#[test]
fn private_torrents_do_not_use_pex() {
    let (c, s) = chain_of_three(true);
    assert_eq!(c.peers_seen, 1, "{c:?}");
    assert_eq!(c.pex_peers_learned + s.pex_peers_learned, 0, "{c:?} {s:?}");
}

#[test]
fn ut_pex_and_ut_metadata_are_advertised_only_for_public_torrents() {
    let tmp = tempfile::tempdir().unwrap();
    for private in [false, true] {
        let src = tmp.path().join(format!("p{private}"));
        let meta = make_torrent_opts(&src, "t", &[1000], 16 * 1024, private);
        let info = meta.info();
        let tc = crate::core::TorrentConfig::new(info.total_len_bytes(), info.piece_len_bytes());
        let storage = open(&meta, &src, OpenMode::Seed);
        let h = super::handler::NodeHandler::new(
            tc,
            meta.info_hash(),
            storage,
            &NodeConfig::new(),
            Arc::new(super::TorrentShared::new(info.piece_count(), 1)),
            (super::TorrentId(0), 0),
            private,
            Arc::from(meta.info_bytes()),
        )
        .unwrap();
        assert_eq!(h.our_ext.m.contains_key("ut_pex"), !private);
        // BEP 9 metadata is served for public torrents only, as libtorrent does.
        assert_eq!(h.our_ext.m.contains_key("ut_metadata"), !private);
        let size = meta.info_bytes().len() as u64;
        assert_eq!(h.our_ext.metadata_size, (!private).then_some(size));
    }
}

#[test]
fn rack_and_zone_labels_go_into_the_extended_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_torrent_opts(tmp.path(), "t", &[1000], 16 * 1024, false);
    let info = meta.info();
    let tc = crate::core::TorrentConfig::new(info.total_len_bytes(), info.piece_len_bytes());
    let storage = open(&meta, tmp.path(), OpenMode::Seed);
    let mut nc = NodeConfig::new();
    nc.tracker.topology.rack = Some("r3".into());
    nc.tracker.topology.zone = Some("z1".into());
    let h = super::handler::NodeHandler::new(
        tc,
        meta.info_hash(),
        storage,
        &nc,
        Arc::new(super::TorrentShared::new(info.piece_count(), 1)),
        (super::TorrentId(0), 0),
        false,
        Arc::from(meta.info_bytes()),
    )
    .unwrap();
    assert_eq!(h.our_ext.p2pe_rack.as_deref(), Some("r3"));
    assert_eq!(h.our_ext.p2pe_zone.as_deref(), Some("z1"));
}

#[test]
fn private_torrents_do_not_start_the_dht() {
    let tmp = tempfile::tempdir().unwrap();
    for private in [false, true] {
        let src = tmp.path().join(format!("p{private}"));
        let meta = make_torrent_opts(&src, "t", &[1000], 16 * 1024, private);
        let dht = super::DhtConfig {
            bootstrap: Some(Vec::new()),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..super::DhtConfig::default()
        };
        let config = NodeConfig {
            dht: Some(dht),
            ..NodeConfig::new()
        };
        let node = Node::start(&meta, open(&meta, &src, OpenMode::Seed), config).unwrap();
        assert_eq!(node.dht_addr().is_some(), !private);
        node.shutdown().unwrap();
    }
}

#[test]
fn nodes_of_one_two_and_three_workers_trade() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sizes = [700_001, 300_000];
    let meta = make_torrent(&src, "t", &sizes, 32 * 1024);
    let local = "127.0.0.1:0".parse().unwrap();
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some(local),
            workers: 3,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let seed_addr = seed.local_addr().unwrap();
    let mut leechers = Vec::new();
    for (i, workers) in [1usize, 2, 3].into_iter().enumerate() {
        let mut peers = vec![seed_addr];
        peers.extend(
            leechers
                .iter()
                .map(|(n, _): &(Node, _)| n.local_addr().unwrap()),
        );
        let dir = tmp.path().join(format!("l{i}"));
        let config = NodeConfig {
            listen: Some(local),
            peers,
            workers,
            ..NodeConfig::new()
        };
        let n = Node::start(&meta, open(&meta, &dir, OpenMode::Create), config).unwrap();
        leechers.push((n, dir));
    }
    let refs: Vec<&Node> = leechers.iter().map(|(n, _)| n).collect();
    wait_complete(&refs, Duration::from_secs(60));
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    for (node, dir) in leechers {
        let p = node.shutdown().unwrap();
        assert_eq!(p.verified_pieces, p.piece_count);
        assert!(p.downloaded_bytes >= total, "{p:?}");
        assert_same_files(&dir, &src, sizes.len());
    }
    let s = seed.shutdown().unwrap();
    assert!(s.uploaded_bytes > 0);
}

/// Waits (bounded) until every piece's node-wide availability in `node` is `n`.
fn wait_availability(node: &Node, n: u32, bound: Duration) {
    let end = Instant::now() + bound;
    let a = &node.shared.availability;
    while !(0..a.len()).all(|i| a.count(crate::core::PieceIndex(i)) == n) {
        assert!(
            Instant::now() < end,
            "availability never {n} within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn workers_share_availability_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[1 << 20], 32 * 1024);
    let src2 = tmp.path().join("src2");
    std::fs::create_dir_all(src2.join("t")).unwrap();
    std::fs::copy(src.join("t/f0"), src2.join("t/f0")).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let seeds: Vec<Node> = [&src, &src2]
        .into_iter()
        .map(|dir| {
            let config = NodeConfig {
                listen: Some(local),
                workers: 1,
                ..NodeConfig::new()
            };
            Node::start(&meta, open(&meta, dir, OpenMode::Seed), config).unwrap()
        })
        .collect();
    // Slow enough that the leecher is still connected to both seeds (a complete
    // node drops other seeders) while the counts are checked.
    let config = NodeConfig {
        listen: Some(local),
        peers: seeds.iter().filter_map(Node::local_addr).collect(),
        workers: 2,
        download_limit_bytes_per_s: Some(16 * 1024),
        ..NodeConfig::new()
    };
    let dir = tmp.path().join("l");
    let leecher = Node::start(&meta, open(&meta, &dir, OpenMode::Create), config).unwrap();
    // Both seeds' `have all`, whichever worker each connection landed on.
    wait_availability(&leecher, 2, Duration::from_secs(30));
    let mut seeds = seeds.into_iter();
    if let Some(s) = seeds.next() {
        s.shutdown().unwrap();
    }
    // The closed connection takes back exactly what its peer added.
    wait_availability(&leecher, 1, Duration::from_secs(30));
    leecher.shutdown().unwrap();
    for s in seeds {
        s.shutdown().unwrap();
    }
}

#[test]
fn a_blake3_torrent_is_verified_with_blake3_as_pieces_arrive() {
    // The SHA-1 `pieces` of this torrent are zeros: completing it proves the
    // BLAKE3 key is what both nodes verify with (the seed at open, the get on
    // arrival). Whole-piece requests between p2pe nodes arrive in order from
    // one peer, so no piece needs a read-back.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sizes = [300_000, 0, 500_001];
    let meta = make_blake3_torrent(&src, "t", &sizes, 64 * 1024);
    let seed_store = open(&meta, &src, OpenMode::Seed);
    assert!(
        seed_store.is_complete(),
        "the seed verifies its data with BLAKE3"
    );
    let seed = Node::start(
        &meta,
        seed_store,
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let dir = tmp.path().join("get");
    let store = open(&meta, &dir, OpenMode::Create);
    let get = Node::start(
        &meta,
        store.clone(),
        NodeConfig {
            peers: vec![seed.local_addr().unwrap()],
            workers: 1,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    wait_complete(&[&get], Duration::from_secs(60));
    let p = get.shutdown().unwrap();
    assert_eq!(p.verified_pieces, p.piece_count);
    assert_same_files(&dir, &src, sizes.len());
    let counts = store.verify_counts();
    assert_eq!(
        counts.on_arrival + counts.read_back,
        u64::from(p.piece_count),
        "{counts:?}"
    );
    assert_eq!(
        counts.read_back, 0,
        "in-order pieces were read back: {counts:?}"
    );
    seed.shutdown().unwrap();
}
