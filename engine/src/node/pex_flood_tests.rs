//! Issue 11 item 8: a PEX flood must not crowd a tracker's seeder out of the
//! address book ([`crate::core::address_book`]). Everything stays on 127.0.0.0/8:
//! the flooded addresses are 127.0.0.x ports held by bound, non-listening sockets,
//! so every dial to them is refused at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base::{InfoHash, PeerId};
use bytes::Bytes;

use super::fake_peer::FakePeer;
use super::handler::PEX_EXT_ID;
use super::peer::Source;
use super::tests::{make_torrent, open, wait_complete};
use super::{Node, NodeConfig};
use crate::store::OpenMode;
use crate::wire::peer::{ExtendedHandshake, ExtendedMessage, Handshake, Message};
use crate::wire::pex::{PexFlags, PexMessage, MAX_PEX_PEERS};

/// Bound on an honest small transfer over loopback: only a hang exceeds it.
const BOUND: Duration = Duration::from_secs(30);
/// Unreachable addresses in the flood (issue 11 saw 6,000).
const FLOOD: usize = 6000;

/// Ports bound on 0.0.0.0 without listening: a dial to any 127.0.0.x at one of
/// them is refused, and nothing else can take them while the sockets live.
fn refusing_ports(n: usize) -> Vec<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    (0..n)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
            s.bind(&any.into()).unwrap();
            s
        })
        .collect()
}

/// A peer that accepts one connection, speaks BEP 10 with `ut_pex`, sends
/// `addrs` in `ut_pex` messages of [`MAX_PEX_PEERS`], then reads and drops
/// everything until `stop`.
fn spawn_pex_flooder(
    info_hash: InfoHash,
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let end = Instant::now() + BOUND;
        let stream = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < end && !stop.load(Ordering::Acquire) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        };
        let _ = stream.set_nonblocking(false);
        if flood(stream.try_clone().unwrap(), info_hash, &addrs).is_ok() {
            FakePeer { stream }.swallow(&stop);
        }
    });
    (addr, t)
}

fn flood(mut s: TcpStream, info_hash: InfoHash, addrs: &[SocketAddr]) -> std::io::Result<()> {
    s.set_read_timeout(Some(BOUND))?;
    let mut ours = Handshake::new(info_hash, PeerId([0xee; 20]));
    ours.set_extended(true);
    s.write_all(&ours.to_bytes())?;
    let mut theirs = [0u8; Handshake::LEN_BYTES];
    s.read_exact(&mut theirs)?;
    let mut hs = ExtendedHandshake::default();
    hs.m.insert("ut_pex".into(), 1);
    let mut buf = Vec::new();
    let msgs = std::iter::once(Message::Extended(ExtendedMessage::Handshake(hs))).chain(
        addrs.chunks(MAX_PEX_PEERS).map(|chunk| {
            let added = chunk.iter().map(|&a| (a, PexFlags(0))).collect();
            let payload = PexMessage {
                added,
                dropped: Vec::new(),
            }
            .to_bencode();
            Message::Extended(ExtendedMessage::Other {
                id: PEX_EXT_ID,
                payload: Bytes::from(payload),
            })
        }),
    );
    for m in msgs {
        m.encode(&mut buf).map_err(std::io::Error::other)?;
    }
    // One write: the node reads the whole flood before it looks at its tracker peers.
    s.write_all(&buf)
}

#[test]
fn a_pex_flood_does_not_crowd_out_a_tracker_seeder() {
    // Issue 11 item 8: 6,000 unreachable addresses from one PEX peer filled the
    // book (2,000, never forgotten) and the leecher ignored the live seeder its
    // tracker returned. Now PEX gets at most 50 a message, 100 per peer and half
    // the book, and a tracker address always gets in and is dialled first.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[16 * 32 * 1024], 32 * 1024);
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            trackers: Some(Vec::new()),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    let ports = refusing_ports(FLOOD.div_ceil(100));
    let addrs: Vec<SocketAddr> = (0..FLOOD)
        .map(|i| {
            let port = ports[i / 100]
                .local_addr()
                .unwrap()
                .as_socket()
                .unwrap()
                .port();
            SocketAddr::from(([127, 0, 1, 2 + (i % 100) as u8], port))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (flooder, thread) = spawn_pex_flooder(meta.info_hash(), addrs, stop.clone());
    let dir = tmp.path().join("get");
    let get = Node::start(
        &meta,
        open(&meta, &dir, OpenMode::Create),
        NodeConfig {
            peers: vec![flooder],
            trackers: Some(Vec::new()),
            workers: 1,
            ..NodeConfig::new()
        },
    )
    .unwrap();
    // The flood has been read once the node learned from it.
    let end = Instant::now() + BOUND;
    while get.shared.pex_peers_learned.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < end, "the PEX flood never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    // What the tracker thread does with an announce's answer.
    get.shared
        .discovered([seed.local_addr().unwrap()], Source::Tracker);
    wait_complete(&[&get], BOUND);
    let learned = get.shared.pex_peers_learned.load(Ordering::Acquire);
    assert!(learned <= 100, "{learned} PEX addresses from one peer");
    let p = get.shutdown().unwrap();
    assert_eq!(p.verified_pieces, 16);
    stop.store(true, Ordering::Release);
    let _ = thread.join();
    seed.shutdown().unwrap();
}
