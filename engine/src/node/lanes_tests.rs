//! Lanes between p2pe nodes (`handler::lanes`): a 2-worker get from a
//! 2-worker seed brings pieces in on both workers; a peer without the p2pe
//! extension keeps one connection.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::fake_peer::{FakeListener, Script};
use super::tests::{assert_same_files, make_torrent, open, wait_complete};
use super::{Node, NodeConfig};
use crate::base::PeerId;
use crate::store::OpenMode;
use crate::wire::peer::{Handshake, Message, PeerMessage};

#[test]
fn both_workers_of_a_two_worker_get_verify_a_share() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sizes = [3 << 20, 1_000_001];
    let meta = make_torrent(&src, "t", &sizes, 32 * 1024);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some(local),
            workers: 2,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let dir = tmp.path().join("get");
    // A limit keeps the transfer going well past the lane's set-up (one round
    // trip after the primary's extended handshakes) on a fast machine.
    let get = Node::start(
        &meta,
        open(&meta, &dir, OpenMode::Create),
        NodeConfig {
            listen: Some(local),
            peers: vec![seed.local_addr().unwrap()],
            workers: 2,
            download_limit_bytes_per_s: Some(4 << 20),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    wait_complete(&[&get], Duration::from_secs(60));
    let per_worker = get.pieces_verified_per_worker();
    let p = get.shutdown().unwrap();
    assert_eq!(p.verified_pieces, p.piece_count);
    assert_same_files(&dir, &src, sizes.len());
    assert_eq!(per_worker.len(), 2);
    assert_eq!(
        per_worker.iter().sum::<u32>(),
        p.piece_count,
        "{per_worker:?}"
    );
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "a worker verified no piece: {per_worker:?}"
    );
    seed.shutdown().unwrap();
}

/// Connections a 2-worker get opens to a fake seeder sending the extended
/// handshake `ext` ([`Script::ExtendedSeeder`]), and
/// the most open at once, counted once `want` were open at once or after 1.5 s.
fn connections_opened(ext: &'static [u8], want: usize) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[1 << 20], 32 * 1024);
    let fake = FakeListener::spawn(meta.info_hash(), Script::ExtendedSeeder(ext), 8);
    let get = Node::start(
        &meta,
        open(&meta, &tmp.path().join("get"), OpenMode::Create),
        NodeConfig {
            peers: vec![fake.addr],
            workers: 2,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end && fake.max_open.load(Ordering::Acquire) < want {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A little longer: a lane too many would show now.
    std::thread::sleep(Duration::from_millis(200));
    let n = (
        fake.accepted.load(Ordering::Acquire),
        fake.max_open.load(Ordering::Acquire),
    );
    get.shutdown().unwrap();
    n
}

#[test]
fn a_peer_without_the_p2pe_extension_keeps_one_connection() {
    // `p2pe_lanes` alone (no p2pe extension in `m`) means nothing.
    let plain = connections_opened(b"d1:md6:ut_pexi1ee1:pi6881e10:p2pe_lanesi2ee", 2);
    assert_eq!(plain, (1, 1));
    // The same peer advertising the p2pe extension gets its second lane.
    let p2pe = connections_opened(
        b"d1:md4:p2pei1e6:ut_pexi2ee1:pi6881e10:p2pe_lanesi2e16:p2pe_max_requesti32768ee",
        2,
    );
    assert_eq!(p2pe, (2, 2));
}

/// What a 2-worker seed does with a second connection from one peer id whose
/// first connection has not sent its extended handshake yet (the race a lane
/// can win on the accepting node): the second one sends `ext`. True if the
/// seed kept it (it sent `have all` there), false if it closed it; within 5 s.
fn second_connection_kept(ext: &[u8]) -> bool {
    use crate::wire::peer::{Decoder, DecoderLimits};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[1 << 20], 32 * 1024);
    let info_hash = meta.info_hash();
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            workers: 2,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let addr = seed.local_addr().unwrap();
    let hs = Handshake::new(info_hash, PeerId([0xdd; 20])).to_bytes();
    let connect = || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&hs).unwrap();
        let mut theirs = [0u8; Handshake::LEN_BYTES];
        s.read_exact(&mut theirs).unwrap();
        s
    };
    // The primary: handshake only, so its lanes are not negotiated.
    let _primary = connect();
    // The seed has taken the primary's handshake (its peer id is known) before
    // the second connection arrives.
    let end = Instant::now() + Duration::from_secs(5);
    while seed.progress().peers_seen == 0 {
        assert!(
            Instant::now() < end,
            "the primary's handshake was never taken"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut second = connect();
    let len = u32::try_from(ext.len() + 2).unwrap();
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&[20, 0]);
    out.extend_from_slice(ext);
    second.write_all(&out).unwrap();
    let mut dec = Decoder::new(DecoderLimits::new(64));
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(5);
    let kept = loop {
        match dec.next_message() {
            Ok(Some(Message::Control(PeerMessage::HaveAll | PeerMessage::Bitfield(_)))) => {
                break true
            }
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => panic!("seed sent garbage: {e}"),
        }
        assert!(Instant::now() < end, "neither kept nor closed");
        match second.read(&mut buf) {
            Ok(0) | Err(_) => break false,
            Ok(n) => dec.extend(&buf[..n]),
        }
    };
    seed.shutdown().unwrap();
    kept
}

#[test]
fn an_early_lane_is_decided_by_its_own_extended_handshake() {
    assert!(second_connection_kept(
        b"d1:md4:p2pei1ee10:p2pe_lanesi2e16:p2pe_max_requesti32768ee"
    ));
    // Not a p2pe lane: closed, as any second connection of a peer id.
    assert!(!second_connection_kept(b"d1:md6:ut_pexi1eee"));
    assert!(!second_connection_kept(
        b"d1:md4:p2pei1ee16:p2pe_max_requesti32768ee"
    ));
}
