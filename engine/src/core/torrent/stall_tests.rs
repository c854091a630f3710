//! Stalled requests ([`super::stall`]): a frozen peer holding our request for a piece is
//! worked around within its stall deadline, not at the next rechoke nor at the snub.

use super::stall::STALL_FLOOR;
use super::tests::{caps, config};
use super::*;
use std::collections::BTreeSet;
use std::time::Duration;

const PIECE: u32 = 256 * 1024;
const FROZEN: PeerKey = PeerKey(1);
const SERVER: PeerKey = PeerKey(2);
/// Every answer takes this long after the request.
const ANSWER_MS: u64 = 2;
/// FROZEN stops answering (and reading) from then on.
const FREEZE_MS: u64 = 9;

fn at_ms(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

/// What the scripted peers did: when we completed (ms) and which pieces SERVER was asked
/// for, in order.
struct Outcome {
    complete_ms: Option<u64>,
    asked_server: Vec<PieceIndex>,
    held_by_frozen: BTreeSet<PieceIndex>,
}

/// A leecher of `pieces` whole-piece-requested pieces from FROZEN and SERVER (both have
/// everything and unchoke us at 0), stepped every 1 ms up to `until_ms`. Each answers a
/// request `ANSWER_MS` later; FROZEN answers nothing from `FREEZE_MS` on. SERVER rejects
/// (BEP 6, as a busy relay or a distinct-first origin does) the first request for a piece
/// FROZEN holds once FROZEN froze, and serves a repeated one.
fn run(pieces: u32, until_ms: u64) -> Outcome {
    let mut t = Torrent::new(config(pieces, PIECE), Bitfield::new(pieces), 7);
    for k in [FROZEN, SERVER] {
        t.handle_peer_connected(Time::ZERO, k, caps(true, PIECE));
        t.handle_message(Time::ZERO, k, PeerMessage::HaveAll)
            .unwrap();
        t.handle_message(Time::ZERO, k, PeerMessage::Unchoke)
            .unwrap();
    }
    let mut out = Outcome {
        complete_ms: None,
        asked_server: Vec::new(),
        held_by_frozen: BTreeSet::new(),
    };
    // (due ms, peer, block, reject instead of serving)
    let mut answers: Vec<(u64, PeerKey, Block, bool)> = Vec::new();
    let mut rejected_once = BTreeSet::new();
    for now_ms in 0..=until_ms {
        let now = at_ms(now_ms);
        let (due, rest): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.0 <= now_ms);
        answers = rest;
        for (_, k, b, reject) in due {
            if reject {
                t.handle_message(now, k, PeerMessage::Reject(b)).unwrap();
            } else if t.wants_block(k, &b) {
                t.handle_block_received(now, k, b).unwrap();
            }
        }
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
        while let Some(a) = t.poll_action() {
            match a {
                Action::Send {
                    peer,
                    msg: PeerMessage::Request(b),
                } => {
                    if peer == FROZEN {
                        out.held_by_frozen.insert(b.piece);
                        if now_ms < FREEZE_MS {
                            answers.push((now_ms + ANSWER_MS, peer, b, false));
                        }
                        continue;
                    }
                    out.asked_server.push(b.piece);
                    let frozen_holds = now_ms >= FREEZE_MS && out.held_by_frozen.contains(&b.piece);
                    let reject = frozen_holds && rejected_once.insert(b.piece);
                    answers.push((now_ms + ANSWER_MS, peer, b, reject));
                }
                Action::VerifyPiece { piece } => t.handle_piece_verified(now, piece, true),
                _ => {}
            }
        }
        t.check_invariants();
        if t.is_complete() {
            out.complete_ms = Some(now_ms);
            return out;
        }
    }
    out
}

#[test]
fn a_piece_held_by_a_frozen_peer_is_fetched_elsewhere_within_the_stall_deadline() {
    let pieces = 16;
    let out = run(pieces, 4_000);
    let done_ms = out.complete_ms.expect("never completed");
    // FROZEN froze holding a request: its piece came from SERVER, asked twice (the first
    // request rejected).
    let stuck: Vec<PieceIndex> = out
        .held_by_frozen
        .iter()
        .copied()
        .filter(|p| out.asked_server.iter().filter(|q| *q == p).count() == 2)
        .collect();
    assert_eq!(stuck.len(), 1, "asked SERVER {:?}", out.asked_server);
    // Without the stall deadline the rejected piece is asked again only at the first
    // rechoke (1 s), and anti-snubbing fires at 3 s. With it: the stall floor after
    // FROZEN's last block, plus a few answers.
    let rechoke_ms = config(pieces, PIECE).choker.rechoke_interval.as_millis() as u64;
    let bound_ms = FREEZE_MS + STALL_FLOOR.as_millis() as u64 + 4 * ANSWER_MS;
    assert!(bound_ms < rechoke_ms);
    assert!(
        done_ms <= bound_ms,
        "completed at {done_ms} ms (bound {bound_ms} ms)"
    );
}
