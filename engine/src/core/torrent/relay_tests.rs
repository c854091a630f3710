//! Relay parts ([`super::relay`]): a piece is forwarded part by part before it is whole,
//! only verified parts are forwarded, and the whole-piece default is untouched.

use super::tests::{caps, config, Pump};
use super::*;
use crate::core::BlockOffset;
use std::time::Duration;

const PIECE: u32 = 64 << 10;
const PART: u32 = 16 << 10;
const PIECES: u32 = 4;

/// Origin 0 — relay 1 — leecher 2 (0 and 2 not connected), 1 MB/s uplinks, 1 ms latency;
/// relay parts of `part` bytes (0: off). Returns the pump after the run and whether node
/// 2 completed.
fn chain(part: u32, liar_origin: bool) -> (Pump, bool) {
    let node = |complete: bool| {
        let mut c = config(PIECES, PIECE);
        c.relay_part_bytes = part;
        let have = if complete {
            Bitfield::full(c.piece_count)
        } else {
            Bitfield::new(c.piece_count)
        };
        Torrent::new(c, have, 7)
    };
    let mut pump = Pump::new(vec![node(true), node(false), node(false)]);
    pump.latency = Duration::from_millis(1);
    pump.uplink_bytes_per_s = Some(1e6);
    if liar_origin {
        pump.liars.insert(0);
    }
    let c = PeerCaps {
        relay_part_bytes: part,
        ..caps(true, PIECE)
    };
    pump.connect(0, 1, c);
    pump.connect(1, 2, c);
    let done = pump.run_until(200_000, Time::ZERO + Duration::from_secs(20), |p| {
        p.nodes[2].is_complete()
    });
    (pump, done)
}

#[test]
fn a_relay_forwards_verified_parts_before_the_piece_is_whole_and_the_chain_finishes_sooner() {
    let (whole, whole_done) = chain(0, false);
    let (parts, parts_done) = chain(PART, false);
    assert!(whole_done && parts_done);
    // Only seeders parting (two complete nodes are of no use to each other).
    for p in [&whole, &parts] {
        assert!(
            p.disconnects
                .iter()
                .all(|(_, _, r)| *r == DisconnectReason::NotUseful),
            "{:?}",
            p.disconnects
        );
    }
    assert!(
        whole.cut_through.is_empty(),
        "whole pieces relay only when had"
    );
    let forwarded: Vec<_> = parts
        .cut_through
        .iter()
        .filter(|(f, t, _)| (*f, *t) == (1, 2))
        .collect();
    assert!(!forwarded.is_empty(), "the relay forwarded no part early");
    assert!(
        forwarded
            .iter()
            .all(|(_, _, b)| b.len_bytes <= PART && b.offset.0 % PART == 0),
        "only whole parts go out early: {forwarded:?}"
    );
    // Store-and-forward costs the last piece's whole time at the relay; cut-through
    // about one part's.
    let (tw, tp) = (whole.last_block_sent[1], parts.last_block_sent[1]);
    assert!(
        tp + Duration::from_millis(30) < tw,
        "relay's last block: {tp:?} with parts, {tw:?} whole"
    );
}

#[test]
fn a_part_that_fails_its_check_is_never_forwarded() {
    let (pump, done) = chain(PART, true);
    assert!(!done, "node 2 cannot complete from a lying origin");
    assert!(
        pump.cut_through.iter().all(|(from, _, _)| *from != 1),
        "the relay forwarded unverified parts: {:?}",
        pump.cut_through
    );
    assert!(
        pump.nodes[1].stats().hash_failures > 0,
        "the lie was caught"
    );
}

#[test]
fn relay_parts_need_both_sides() {
    // Our side asks for parts, the peer did not negotiate them: whole pieces, no early
    // `have`, and a request for a piece we do not have is still a protocol error.
    let mut c = config(PIECES, PIECE);
    c.relay_part_bytes = PART;
    let mut t = Torrent::new(c, Bitfield::new(PIECES), 1);
    let now = Time::ZERO;
    t.handle_peer_connected(now, PeerKey(9), caps(true, PIECE));
    let b = Block {
        piece: PieceIndex(0),
        offset: BlockOffset(0),
        len_bytes: PIECE,
    };
    assert!(t
        .handle_message(now, PeerKey(9), PeerMessage::Request(b))
        .is_err());
    // An invalid relay configuration is off.
    let mut c = config(PIECES, PIECE);
    c.relay_part_bytes = PART + 1;
    assert_eq!(c.relay_part_len(), None);
    c.relay_part_bytes = PIECE;
    assert_eq!(c.relay_part_len(), None);
    c.relay_part_bytes = PART;
    assert_eq!(c.relay_part_len(), Some(PART));
}

/// Drains `t`'s actions; returns the requests it sent, per peer.
fn requests(t: &mut Torrent) -> Vec<(PeerKey, Block)> {
    let mut out = Vec::new();
    while let Some(a) = t.poll_action() {
        if let Action::Send {
            peer,
            msg: PeerMessage::Request(b),
        } = a
        {
            out.push((peer, b));
        }
    }
    out
}

#[test]
fn a_relay_peer_s_reject_releases_the_live_request_not_a_stale_cancel() {
    // One piece, two relay peers. The first copy (from both, endgame) fails its hash, so
    // the piece is asked again from the peer whose copy we had cancelled: our memory of
    // that cancel is stale (a relay sends no reject for a cancelled rest). Its reject of
    // the new request must release the new request, or the piece is never asked again.
    let mut c = config(1, PIECE);
    c.relay_part_bytes = PART;
    c.endgame_max_requesters = 2;
    let mut t = Torrent::new(c, Bitfield::new(1), 3);
    let now = Time::ZERO;
    let rc = PeerCaps {
        relay_part_bytes: PART,
        ..caps(true, PIECE)
    };
    let (k1, k2) = (PeerKey(1), PeerKey(2));
    for k in [k1, k2] {
        t.handle_peer_connected(now, k, rc);
        t.handle_message(now, k, PeerMessage::HaveAll).unwrap();
        t.handle_message(now, k, PeerMessage::Unchoke).unwrap();
    }
    let first = requests(&mut t);
    assert_eq!(first.len(), 2, "endgame: the piece from both: {first:?}");
    let whole = first[0].1;
    // The second peer delivers every part; the first peer's request is cancelled.
    let (winner, loser) = (first[1].0, first[0].0);
    let len = t.config().piece_len(PieceIndex(0));
    let mut off = 0;
    while off < len {
        let part = Block {
            piece: PieceIndex(0),
            offset: BlockOffset(off),
            len_bytes: PART.min(len - off),
        };
        t.handle_block_received(now, winner, part).unwrap();
        off += part.len_bytes;
    }
    t.handle_piece_verified(now, PieceIndex(0), false);
    let again = requests(&mut t);
    assert!(
        again.iter().any(|(k, _)| *k == loser),
        "asked again from the cancelled peer: {again:?}"
    );
    t.handle_message(now, loser, PeerMessage::Reject(whole))
        .unwrap();
    let head = Block {
        piece: PieceIndex(0),
        offset: BlockOffset(0),
        len_bytes: PART,
    };
    assert!(
        !t.wants_block(loser, &head),
        "the rejected request is still in flight"
    );
}

#[test]
fn a_piece_is_announced_at_its_first_verified_part_and_a_repeated_request_is_refused() {
    let mut c = config(2, PIECE);
    c.relay_part_bytes = PART;
    let mut t = Torrent::new(c, Bitfield::new(2), 5);
    let now = Time::ZERO;
    let rc = PeerCaps {
        relay_part_bytes: PART,
        ..caps(true, PIECE)
    };
    let (src, dst) = (PeerKey(1), PeerKey(2));
    t.handle_peer_connected(now, src, rc);
    t.handle_peer_connected(now, dst, rc);
    t.handle_message(now, src, PeerMessage::HaveAll).unwrap();
    t.handle_message(now, src, PeerMessage::Unchoke).unwrap();
    t.handle_message(now, dst, PeerMessage::HaveNone).unwrap();
    t.handle_message(now, dst, PeerMessage::Interested).unwrap();
    let asked = requests(&mut t);
    let (_, whole) = *asked.iter().find(|(k, _)| *k == src).expect("a request");
    let part0 = Block {
        len_bytes: PART,
        ..whole
    };
    t.handle_block_received(now, src, part0).unwrap();
    let mut verify = Vec::new();
    while let Some(a) = t.poll_action() {
        if let Action::VerifyPart { part } = a {
            verify.push(part);
        }
    }
    assert_eq!(verify, vec![part0], "the part is checked on arrival");
    // Before its check nothing is announced; after it, the relay peer hears of it.
    t.handle_part_verified(now, part0, true);
    let mut announced = false;
    while let Some(a) = t.poll_action() {
        announced |= matches!(a, Action::Send { peer, msg: PeerMessage::Have(p) }
            if peer == dst && p == whole.piece);
    }
    assert!(announced, "no early have");
    // Unchoke the relay peer, which asks for the piece twice.
    t.handle_timeout(now + Duration::from_secs(11));
    let _ = requests(&mut t);
    let sent = |t: &mut Torrent| {
        let (mut blocks, mut rejects) = (Vec::new(), 0);
        while let Some(a) = t.poll_action() {
            match a {
                Action::SendBlock { peer, block } if peer == dst => blocks.push(block),
                Action::Send {
                    peer,
                    msg: PeerMessage::Reject(_),
                } if peer == dst => rejects += 1,
                _ => {}
            }
        }
        (blocks, rejects)
    };
    t.handle_message(now, dst, PeerMessage::Request(whole))
        .unwrap();
    let (blocks, _) = sent(&mut t);
    assert_eq!(blocks, vec![part0], "only the verified part goes out");
    t.handle_message(now, dst, PeerMessage::Request(whole))
        .unwrap();
    let (blocks, rejects) = sent(&mut t);
    assert!(blocks.is_empty() && rejects == 1, "{blocks:?} {rejects}");
}
