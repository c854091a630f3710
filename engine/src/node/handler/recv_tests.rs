//! The streaming receive path against lying and truncating peers: a block
//! nobody asked for is never written, a truncated `piece` message never
//! completes a block, and the download still ends byte-exact.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::base::{InfoHash, PeerId};
use crate::node::tests::{make_torrent, open, wait_complete};
use crate::node::{Node, NodeConfig};
use crate::store::OpenMode;
use crate::wire::metainfo::Metainfo;
use crate::wire::peer::{
    encode_control, Block, BlockOffset, Decoder, DecoderLimits, Handshake, Message, PeerMessage,
    PieceIndex,
};

const PIECE_LEN: u32 = 64 * 1024;

/// A fake seeder (no BEP 10, so 16 KiB requests): accepts one connection,
/// handshakes, sends HaveAll + Unchoke, waits for the first request and
/// answers it with `answer(request)`, then reads until the node closes.
/// Returns the request it answered and whether the node closed within 10 s.
fn fake_seeder(
    l: TcpListener,
    info_hash: InfoHash,
    close_after_answer: bool,
    answer: impl Fn(Block) -> Vec<u8>,
) -> (Block, bool) {
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hs = [0u8; Handshake::LEN_BYTES];
    s.read_exact(&mut hs).unwrap();
    let mut ours = Handshake::new(info_hash, PeerId([0xee; 20]));
    ours.set_extended(false);
    let mut out = ours.to_bytes().to_vec();
    encode_control(&PeerMessage::HaveAll, &mut out);
    encode_control(&PeerMessage::Unchoke, &mut out);
    s.write_all(&out).unwrap();
    let mut dec = Decoder::new(DecoderLimits::new(1024));
    let mut buf = [0u8; 4096];
    let req = loop {
        match dec.next_message().unwrap() {
            Some(Message::Control(PeerMessage::Request(r))) => break r,
            Some(_) => continue,
            None => {}
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "node closed before requesting");
        dec.extend(&buf[..n]);
    };
    s.write_all(&answer(req)).unwrap();
    if close_after_answer {
        return (req, true);
    }
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (req, closed)
}

fn piece_msg(index: u32, begin: u32, data: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Piece {
        index: PieceIndex(index),
        begin: BlockOffset(begin),
        data: data.into(),
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn start_fake(
    meta: &Metainfo,
    close_after_answer: bool,
    answer: impl Fn(Block) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<(Block, bool)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let ih = meta.info_hash();
    let t = std::thread::spawn(move || fake_seeder(l, ih, close_after_answer, answer));
    (addr, t)
}

#[test]
fn lying_and_truncating_peers_do_not_corrupt_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let meta = make_torrent(&src, "t", &[4 * PIECE_LEN as usize + 5000], PIECE_LEN);
    let data = std::fs::read(src.join("t").join("f0")).unwrap();
    let dir = tmp.path().join("a");
    let node = Node::start(
        &meta,
        open(&meta, &dir, OpenMode::Create),
        NodeConfig::new(),
    )
    .unwrap();
    let file = dir.join("t").join("f0");

    // A liar answers with a block it was not asked for (shifted by one byte).
    let (liar, t) = start_fake(&meta, false, |r| {
        piece_msg(r.piece.0, r.offset.0 + 1, vec![0xaa; r.len_bytes as usize])
    });
    node.connect(liar).unwrap();
    let (req, closed) = t.join().unwrap();
    assert!(
        closed,
        "the node keeps a peer that sent an unrequested block"
    );
    let at = (req.piece.0 * PIECE_LEN + req.offset.0) as usize;
    let on_disk = std::fs::read(&file).unwrap();
    // The shifted block reaches one byte past the requested one (if the file has it).
    let end = (at + req.len_bytes as usize + 1).min(on_disk.len());
    let region = &on_disk[at..end];
    assert!(region.iter().all(|&b| b == 0), "unrequested block written");

    // A truncator sends half of a requested block (garbage), then hangs up.
    let (trunc, t) = start_fake(&meta, true, |r| {
        let mut m = piece_msg(r.piece.0, r.offset.0, vec![0xbb; r.len_bytes as usize]);
        m.truncate(13 + r.len_bytes as usize / 2);
        m
    });
    node.connect(trunc).unwrap();
    let (req, _) = t.join().unwrap();
    assert!(!node.storage().is_verified(req.piece));

    // A real seeder completes the download; every byte is the source's.
    let seed = Node::start(
        &meta,
        open(&meta, &src, OpenMode::Seed),
        NodeConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..NodeConfig::new()
        },
    )
    .unwrap();
    node.connect(seed.local_addr().unwrap()).unwrap();
    wait_complete(&[&node], Duration::from_secs(60));
    let p = node.shutdown().unwrap();
    assert_eq!(p.verified_pieces, p.piece_count);
    assert!(std::fs::read(&file).unwrap() == data, "download differs");
    seed.shutdown().unwrap();
}
