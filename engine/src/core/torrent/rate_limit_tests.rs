//! Rate limits applied by the core (issue 10 item 1): a request the download limit holds
//! back is never issued, so it is never in flight and no snub timer runs on it; a block
//! the upload limit holds back stays a queued request; the torrent asks to be woken when
//! the limit allows, and over time moves bytes at the limit's rate.

use super::tests::{caps, config};
use super::*;
use crate::base::BlockOffset;
use crate::core::rate_limit::SharedBucket;
use std::time::Duration;

const PIECE: u32 = 256 * 1024;
const PEER: PeerKey = PeerKey(1);

fn at_ms(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

fn requests(t: &mut Torrent) -> Vec<Block> {
    std::iter::from_fn(|| t.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                msg: PeerMessage::Request(b),
                ..
            } => Some(b),
            _ => None,
        })
        .collect()
}

#[test]
fn a_download_limit_issues_requests_at_its_rate_and_holds_none_in_flight() {
    // 1 MB/s: whole-piece requests of 256 KiB, so about 4 a second once the 50 KB
    // burst is spent; the peer answers every request at once.
    let mut c = config(200, PIECE);
    // A pipeline of 8 pieces: unlimited, 8 requests would go at once.
    c.pipeline_bytes = 8 * u64::from(PIECE);
    c.download_limit = Some(SharedBucket::new(1_000_000, Time::ZERO));
    let mut t = Torrent::new(c, Bitfield::new(200), 5);
    t.handle_peer_connected(Time::ZERO, PEER, caps(true, PIECE));
    t.handle_message(Time::ZERO, PEER, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, PEER, PeerMessage::Unchoke)
        .unwrap();
    let mut issued = requests(&mut t);
    // One request goes (the bucket may go into debt by one item), then the limit holds.
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(t.is_throttled());
    let wake = t.poll_timeout().expect("a timer");
    assert!(
        wake < at_ms(1_000),
        "woken when the limit allows, not at the rechoke: {wake:?}"
    );
    let mut received = 0u64;
    let mut now_ms = 0;
    while now_ms < 10_000 {
        now_ms += 10;
        let now = at_ms(now_ms);
        for b in issued.drain(..) {
            t.handle_block_received(now, PEER, b).unwrap();
            received += u64::from(b.len_bytes);
        }
        while let Some(a) = t.poll_action() {
            match a {
                Action::Send {
                    msg: PeerMessage::Request(b),
                    ..
                } => issued.push(b),
                Action::VerifyPiece { piece } => t.handle_piece_verified(now, piece, true),
                _ => {}
            }
        }
        if t.poll_timeout().is_some_and(|w| w <= now) {
            t.handle_timeout(now);
            issued.extend(requests(&mut t));
        }
        // Never more in flight than the one item the bucket may go into debt by.
        assert!(issued.len() <= 1, "{} requests in flight", issued.len());
    }
    let rate = received as f64 / 10.0;
    assert!((0.9e6..=1.15e6).contains(&rate), "{rate} B/s");
}

#[test]
fn an_upload_limit_hands_out_blocks_at_its_rate_and_keeps_the_rest_queued() {
    let mut c = config(64, PIECE);
    c.upload_limit = Some(SharedBucket::new(1_000_000, Time::ZERO));
    let mut t = Torrent::new(c, Bitfield::full(64), 5);
    t.handle_peer_connected(Time::ZERO, PEER, caps(true, PIECE));
    t.handle_message(Time::ZERO, PEER, PeerMessage::Interested)
        .unwrap();
    while t.poll_action().is_some() {}
    // Ten whole-piece requests at once (2.6 MB).
    for p in 0..10 {
        let b = Block {
            piece: PieceIndex(p),
            offset: BlockOffset(0),
            len_bytes: PIECE,
        };
        t.handle_message(Time::ZERO, PEER, PeerMessage::Request(b))
            .unwrap();
    }
    let mut sent = Vec::new();
    let mut now_ms = 0;
    while now_ms < 3_000 {
        while let Some(a) = t.poll_action() {
            if let Action::SendBlock { block, .. } = a {
                sent.push((now_ms, block));
                t.handle_block_sent(at_ms(now_ms), PEER, block);
            }
        }
        now_ms += 10;
        if t.poll_timeout().is_some_and(|w| w <= at_ms(now_ms)) {
            t.handle_timeout(at_ms(now_ms));
        }
    }
    // 1 MB/s: the first block at once, then one 256 KiB block about every 0.26 s.
    assert_eq!(sent.first().map(|s| s.0), Some(0));
    let by_1s = sent.iter().filter(|s| s.0 <= 1_000).count();
    assert!(
        (4..=5).contains(&by_1s),
        "{by_1s} blocks in the first second"
    );
    assert!(sent.len() >= 10, "only {} of 10 served in 3 s", sent.len());
}
