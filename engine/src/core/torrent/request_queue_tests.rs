//! The request queue toward a 16 KiB-block peer (any non-p2pe client) grows with its
//! measured rate, so it covers the bandwidth-delay product whatever the piece length
//! (issue 15: one piece of 16 KiB requests capped a Transmission seed at 0.5 MB/s with
//! 256 KiB pieces).

use super::tests::{caps, config};
use super::*;
use crate::core::BLOCK_LEN_BYTES as BLOCK;
use std::time::Duration;

const PIECES: u32 = 256;
const PIECE: u32 = 256 * 1024;
const P: PeerKey = PeerKey(1);

/// A leecher of 256 KiB pieces and one block peer (advertising `reqq`) that has every
/// piece and answers every outstanding request each `step`; returns the most requests
/// ever outstanding to it over `duration`.
fn most_outstanding(reqq: Option<u32>, step: Duration, duration: Duration) -> usize {
    let mut t = Torrent::new(config(PIECES, PIECE), Bitfield::new(PIECES), 5);
    let mut c = caps(true, BLOCK);
    c.reqq = reqq;
    t.handle_peer_connected(Time::ZERO, P, c);
    t.handle_message(Time::ZERO, P, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Unchoke)
        .unwrap();
    let mut outstanding: Vec<Block> = Vec::new();
    let mut most = 0;
    let mut now = Time::ZERO;
    while now < Time::ZERO + duration && !t.is_complete() {
        while let Some(a) = t.poll_action() {
            match a {
                Action::Send {
                    msg: PeerMessage::Request(b),
                    ..
                } => outstanding.push(b),
                Action::VerifyPiece { piece } => t.handle_piece_verified(now, piece, true),
                _ => {}
            }
        }
        most = most.max(outstanding.len());
        now += step;
        for b in std::mem::take(&mut outstanding) {
            t.handle_block_received(now, P, b).unwrap();
        }
        if t.poll_timeout().is_some_and(|at| at <= now) {
            t.handle_timeout(now);
        }
    }
    t.check_invariants();
    most
}

#[test]
fn a_fast_block_peer_gets_more_than_a_piece_of_requests() {
    let (step, run) = (Duration::from_millis(50), Duration::from_secs(3));
    // One piece (16 blocks) every 50 ms is ~5 MB/s: three seconds of it is far more than
    // 16 blocks, so the queue grows to our cap of requests.
    let most = most_outstanding(None, step, run);
    assert!(most > 16, "{most} requests outstanding");
    assert_eq!(most, config(PIECES, PIECE).max_request_queue as usize);
    // The peer's BEP 10 `reqq` bounds it.
    assert_eq!(most_outstanding(Some(40), step, run), 40);
    assert_eq!(most_outstanding(Some(8), step, run), 8);
}
