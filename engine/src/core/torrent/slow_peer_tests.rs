//! Slow peers in the datacenter profile (issue 5: a quarter of the leechers on 20 Mbit/s
//! links, or a 20 Mbit/s origin).
//!
//! - Uploading to them: every interested peer is unchoked and served at once, whatever the
//!   others' pace (the upload window is not filled by the fast ones).
//! - Downloading from them: a sender is snubbed (its requests cancelled and re-issued
//!   elsewhere) only once it is silent for well beyond the time its requested bytes take
//!   at the rate it has shown, so a legitimately slow sender of whole pieces is not
//!   cancelled mid-piece (the piece would arrive as waste and be fetched twice).

use super::tests::{caps, config};
use super::*;
use crate::base::BlockOffset;
use crate::core::choker::{MAX_SNUB_DEADLINE, NEVER_DELIVERED_DEADLINE};
use std::time::Duration;

const PIECE: u32 = 256 * 1024;
const SLOW: PeerKey = PeerKey(1);
const FAST: PeerKey = PeerKey(2);

fn at_ms(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

/// A leecher of `pieces` whole-piece-requested pieces, with `peers` connected (fast
/// extension, whole-piece requests), each announcing `have` and unchoking us at time 0.
fn leecher(pieces: u32, peers: &[(PeerKey, PeerMessage)]) -> Torrent {
    let mut t = Torrent::new(config(pieces, PIECE), Bitfield::new(pieces), 3);
    for (k, have) in peers {
        t.handle_peer_connected(Time::ZERO, *k, caps(true, PIECE));
        t.handle_message(Time::ZERO, *k, have.clone()).unwrap();
        t.handle_message(Time::ZERO, *k, PeerMessage::Unchoke)
            .unwrap();
    }
    t
}

/// Drains the actions at `now`: verifies completed pieces; returns (requests by peer,
/// whether `peer` got a cancel).
struct Outbox {
    requests: Vec<(PeerKey, Block)>,
    cancelled: Vec<PeerKey>,
}

fn drain(t: &mut Torrent, now: Time) -> Outbox {
    let mut out = Outbox {
        requests: Vec::new(),
        cancelled: Vec::new(),
    };
    while let Some(a) = t.poll_action() {
        match a {
            Action::Send {
                peer,
                msg: PeerMessage::Request(b),
            } => out.requests.push((peer, b)),
            Action::Send {
                peer,
                msg: PeerMessage::Cancel(_),
            } => out.cancelled.push(peer),
            Action::VerifyPiece { piece } => t.handle_piece_verified(now, piece, true),
            _ => {}
        }
    }
    out
}

/// Runs `until_ms` in 100 ms steps: FAST delivers each request 100 ms after it was made,
/// SLOW delivers each one `slow_every_ms` after it was made while `now < slow_stops_ms`.
/// Returns when SLOW first got a cancel (ms), if it did.
fn run(t: &mut Torrent, until_ms: u64, slow_every_ms: u64, slow_stops_ms: u64) -> Option<u64> {
    let mut pending: Vec<(u64, PeerKey, Block)> = Vec::new();
    let mut first_cancel = None;
    for now_ms in (0..=until_ms).step_by(100) {
        let now = at_ms(now_ms);
        let (due, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|e| e.0 <= now_ms);
        pending = rest;
        for (_, k, b) in due {
            if t.wants_block(k, &b) {
                t.handle_block_received(now, k, b).unwrap();
            }
        }
        t.handle_timeout(now);
        let out = drain(t, now);
        if out.cancelled.contains(&SLOW) && first_cancel.is_none() {
            first_cancel = Some(now_ms);
        }
        pending.retain(|(_, k, b)| t.wants_block(*k, b));
        for (k, b) in out.requests {
            match k {
                FAST => pending.push((now_ms + 100, k, b)),
                _ if now_ms < slow_stops_ms => pending.push((now_ms + slow_every_ms, k, b)),
                _ => {}
            }
        }
    }
    first_cancel
}

#[test]
fn slow_but_steady_sender_is_not_snubbed_and_a_stalled_one_is() {
    // SLOW delivers a whole piece every 3 s (a 20 Mbit/s link shared by ~14), FAST one
    // every 100 ms. With the profile's bare 2 s timeout SLOW would be snubbed at ~2 s.
    let mut t = leecher(
        1000,
        &[(SLOW, PeerMessage::HaveAll), (FAST, PeerMessage::HaveAll)],
    );
    assert_eq!(t.config().choker.snub_timeout, Duration::from_secs(2));
    assert_eq!(run(&mut t, 30_000, 3_000, u64::MAX), None, "SLOW snubbed");
    t.check_invariants();
    // Now SLOW stalls with a request out (from 30 s on): ~10 pieces in 30 s make its
    // average rate; it is snubbed once silent for 4x what a piece takes at that average
    // (which the silence itself lowers): after ~20 s, well within the 60 s cap.
    let mut t = leecher(
        1000,
        &[(SLOW, PeerMessage::HaveAll), (FAST, PeerMessage::HaveAll)],
    );
    let snubbed_ms = run(&mut t, 90_000, 3_000, 30_000).expect("stalled SLOW never snubbed");
    assert!(
        (40_000..=55_000).contains(&snubbed_ms),
        "snubbed at {snubbed_ms} ms"
    );
    t.check_invariants();
}

#[test]
fn a_sender_that_never_delivered_is_snubbed_within_the_stated_detection_time() {
    // SLOW never sends anything (frozen); FAST keeps us busy. Issue 11: it loses its
    // requests within NEVER_DELIVERED_DEADLINE (10 s), not at the 60 s cap.
    let mut t = leecher(
        1000,
        &[(SLOW, PeerMessage::HaveAll), (FAST, PeerMessage::HaveAll)],
    );
    let cap_ms = NEVER_DELIVERED_DEADLINE.as_millis() as u64;
    let snubbed_ms = run(&mut t, cap_ms + 3_000, u64::MAX, 0).expect("never snubbed");
    assert!(
        (cap_ms..=cap_ms + 1_100).contains(&snubbed_ms),
        "snubbed at {snubbed_ms} ms"
    );
}

#[test]
fn a_sender_that_never_delivered_while_nobody_delivers_waits_for_the_cap() {
    // Nothing arrives from anyone (a slow origin's first piece): no basis to judge.
    let mut t = leecher(1000, &[(SLOW, PeerMessage::HaveAll)]);
    let cap_ms = MAX_SNUB_DEADLINE.as_millis() as u64;
    let snubbed_ms = run(&mut t, cap_ms + 3_000, u64::MAX, 0).expect("never snubbed");
    assert!(
        (cap_ms..=cap_ms + 1_100).contains(&snubbed_ms),
        "snubbed at {snubbed_ms} ms"
    );
}

#[test]
fn the_silence_is_counted_from_the_request_not_the_unchoke() {
    // SLOW has piece 0 only, delivers it at once, then has nothing for us until it
    // announces piece 1 at 5.5 s; our request for it must not count the 5 s in which
    // SLOW held none of our requests as silence.
    let mut t = leecher(8, &[(SLOW, PeerMessage::HaveNone)]);
    t.handle_message(Time::ZERO, SLOW, PeerMessage::Have(PieceIndex(0)))
        .unwrap();
    let first = drain(&mut t, Time::ZERO).requests;
    assert_eq!(first.len(), 1);
    let (_, b0) = first[0];
    // Delivered within 100 ms: SLOW's average is high, its deadline the 2 s floor.
    t.handle_block_received(at_ms(100), SLOW, b0).unwrap();
    drain(&mut t, at_ms(100));
    for ms in (200..=5_400).step_by(100) {
        t.handle_timeout(at_ms(ms));
        assert!(drain(&mut t, at_ms(ms)).requests.is_empty());
    }
    t.handle_message(at_ms(5_500), SLOW, PeerMessage::Have(PieceIndex(1)))
        .unwrap();
    assert_eq!(drain(&mut t, at_ms(5_500)).requests.len(), 1);
    // The checks at 6 s and 7 s: 0.5-1.5 s since the request (5.5 s since the last block).
    for ms in [6_000, 7_000] {
        t.handle_timeout(at_ms(ms));
        assert!(
            drain(&mut t, at_ms(ms)).cancelled.is_empty(),
            "snubbed at {ms} ms"
        );
    }
}

/// An origin with 8 fast and 2 slow interested peers: a block to a fast peer leaves in
/// 10 ms, one to a slow peer in 500 ms (its downlink). Each peer asks for a new piece as
/// soon as its block left. Runs 2 s; returns (longest wait in ms of a slow peer's request
/// before it was handed to the driver, blocks handed to the slow peers).
fn serve_fast_and_slow(config: TorrentConfig) -> (u64, usize) {
    let mut t = Torrent::new(config, Bitfield::full(4096), 5);
    let peers: Vec<PeerKey> = (10..20).map(PeerKey).collect();
    let slow = |k: PeerKey| k.0 >= 18;
    for &k in &peers {
        t.handle_peer_connected(Time::ZERO, k, caps(true, PIECE));
        t.handle_message(Time::ZERO, k, PeerMessage::Interested)
            .unwrap();
    }
    let unchoked: Vec<PeerKey> = std::iter::from_fn(|| t.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                peer,
                msg: PeerMessage::Unchoke,
            } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(unchoked, peers, "everyone interested is unchoked at once");
    let mut next_piece = 0u32;
    // Requests not yet handed out: (peer, piece) -> when asked (ms).
    let mut asked: Vec<(PeerKey, PieceIndex, u64)> = Vec::new();
    let mut request = |t: &mut Torrent, now_ms: u64, k: PeerKey, asked: &mut Vec<_>| {
        let b = Block {
            piece: PieceIndex(next_piece),
            offset: BlockOffset(0),
            len_bytes: PIECE,
        };
        next_piece += 1;
        asked.push((k, b.piece, now_ms));
        t.handle_message(at_ms(now_ms), k, PeerMessage::Request(b))
            .unwrap();
    };
    for &k in &peers {
        request(&mut t, 0, k, &mut asked);
    }
    let mut leaving: Vec<(u64, PeerKey, Block)> = Vec::new();
    let (mut slow_wait_ms, mut slow_served) = (0, 0);
    for now_ms in (0..=2_000u64).step_by(10) {
        let now = at_ms(now_ms);
        let (due, rest): (Vec<_>, Vec<_>) = leaving.into_iter().partition(|e| e.0 <= now_ms);
        leaving = rest;
        for (_, k, b) in due {
            t.handle_block_sent(now, k, b);
            request(&mut t, now_ms, k, &mut asked);
        }
        t.handle_timeout(now);
        while let Some(a) = t.poll_action() {
            let Action::SendBlock { peer, block } = a else {
                continue;
            };
            let took_ms = if slow(peer) { 500 } else { 10 };
            leaving.push((now_ms + took_ms, peer, block));
            if let Some(i) = asked.iter().position(|e| (e.0, e.1) == (peer, block.piece)) {
                let (_, _, at) = asked.swap_remove(i);
                if slow(peer) {
                    slow_wait_ms = slow_wait_ms.max(now_ms - at);
                    slow_served += 1;
                }
            }
        }
    }
    // Requests of the slow peers still waiting count with their wait so far.
    for (k, _, at) in &asked {
        if slow(*k) {
            slow_wait_ms = slow_wait_ms.max(2_000 - at);
        }
    }
    t.check_invariants();
    (slow_wait_ms, slow_served)
}

#[test]
fn slow_receivers_are_served_from_the_first_interval() {
    // The simulator's profile (`TorrentConfig::datacenter`, 16 transfers in the upload
    // window): every slow request is handed out at once; 2 peers x (1 + 2000 / 500).
    let c = TorrentConfig::datacenter(4096 * u64::from(PIECE), PIECE);
    assert_eq!(serve_fast_and_slow(c), (0, 2 * 5));
    // The node's (the datacenter choker on `TorrentConfig::new`: a 5-piece window, so the
    // 8 fast peers' turnover competes with them): still within the first rechoke interval.
    let c = config(4096, PIECE);
    let interval_ms = c.choker.rechoke_interval.as_millis() as u64;
    let (wait_ms, served) = serve_fast_and_slow(c);
    assert!(wait_ms <= interval_ms, "a slow request waited {wait_ms} ms");
    assert!(served >= 2 * 3, "slow peers got {served} blocks in 2 s");
}

#[test]
fn a_snubbed_silent_peer_claims_no_fresh_piece_until_it_speaks_again() {
    // Issue 11: SLOW freezes (never answers) while FAST serves. Once snubbed, SLOW must not
    // start a fresh piece with its probe request (it would hold that piece's claim while
    // frozen); once it sends anything (here a keep-alive), it may be probed again.
    let mut t = leecher(
        1000,
        &[(SLOW, PeerMessage::HaveAll), (FAST, PeerMessage::HaveAll)],
    );
    let mut pending: Vec<(u64, Block)> = Vec::new();
    let mut fast_pieces = std::collections::BTreeSet::new();
    let mut snubbed_ms = None;
    let mut fresh_to_slow = Vec::new();
    let mut probed_after_keepalive = false;
    let keepalive_ms = 40_000;
    for now_ms in (0..=60_000).step_by(100) {
        let now = at_ms(now_ms);
        if now_ms == keepalive_ms {
            t.handle_message(now, SLOW, PeerMessage::KeepAlive).unwrap();
        }
        let (due, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|e| e.0 <= now_ms);
        pending = rest;
        for (_, b) in due {
            if t.wants_block(FAST, &b) {
                t.handle_block_received(now, FAST, b).unwrap();
            }
        }
        t.handle_timeout(now);
        let out = drain(&mut t, now);
        if out.cancelled.contains(&SLOW) && snubbed_ms.is_none() {
            snubbed_ms = Some(now_ms);
        }
        for (k, b) in out.requests {
            if k == FAST {
                fast_pieces.insert(b.piece);
                pending.push((now_ms + 100, b));
            } else if snubbed_ms.is_some() && now_ms < keepalive_ms {
                if !fast_pieces.contains(&b.piece) {
                    fresh_to_slow.push((now_ms, b.piece));
                }
            } else if now_ms >= keepalive_ms {
                probed_after_keepalive = true;
            }
        }
    }
    assert!(snubbed_ms.is_some(), "the frozen peer was never snubbed");
    assert_eq!(
        fresh_to_slow,
        vec![],
        "fresh pieces claimed by a silent snubbed peer"
    );
    assert!(probed_after_keepalive, "no probe once the peer spoke again");
    t.check_invariants();
}
