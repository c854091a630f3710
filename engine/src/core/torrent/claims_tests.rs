//! Torrents sharing piece claims (one per runtime worker of a node): no piece is
//! downloaded by two of them, abandoned pieces are released, and a piece verified by one
//! becomes had by the others.

use super::tests::{caps, config};
use super::*;
use crate::base::BlockOffset;
use crate::core::{AtomicBitfield, BLOCK_LEN_BYTES as BLOCK};
use std::collections::BTreeSet;
use std::sync::Arc;

const SEED: PeerKey = PeerKey(1);
const PIECES: u32 = 16;

fn drain(t: &mut Torrent) -> Vec<Action> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

fn requested_pieces(acts: &[Action]) -> BTreeSet<u32> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: PeerMessage::Request(b),
                ..
            } => Some(b.piece.0),
            _ => None,
        })
        .collect()
}

/// A leecher torrent sharing `claims`, connected to a seeder that unchoked it.
fn worker(claims: &Arc<AtomicBitfield>, seed: u64) -> (Torrent, Vec<Action>) {
    let mut c = config(PIECES, 2 * BLOCK);
    c.claims = Some(claims.clone());
    let mut t = Torrent::new(c, Bitfield::new(PIECES), seed);
    t.handle_peer_connected(Time::ZERO, SEED, caps(true, 2 * BLOCK));
    t.handle_message(Time::ZERO, SEED, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, SEED, PeerMessage::Unchoke)
        .unwrap();
    let acts = drain(&mut t);
    (t, acts)
}

#[test]
fn two_torrents_never_request_the_same_piece() {
    let claims = Arc::new(AtomicBitfield::new(PIECES));
    let (mut a, acts_a) = worker(&claims, 1);
    let (b, acts_b) = worker(&claims, 2);
    let (pa, pb) = (requested_pieces(&acts_a), requested_pieces(&acts_b));
    assert!(!pa.is_empty() && !pb.is_empty(), "{pa:?} {pb:?}");
    assert!(
        pa.is_disjoint(&pb),
        "both requested {:?}",
        pa.intersection(&pb)
    );
    assert_eq!(claims.count_ones() as usize, pa.len() + pb.len());
    a.check_invariants();
    b.check_invariants();

    // A's seeder leaves: its pieces are released and B may take them.
    a.handle_peer_disconnected(Time::ZERO, SEED);
    drain(&mut a);
    assert_eq!(claims.count_ones() as usize, pb.len());
    for p in &pa {
        assert!(!claims.get(PieceIndex(*p)), "piece {p} still claimed");
    }
    a.check_invariants();
}

#[test]
fn without_shared_claims_two_torrents_overlap() {
    // The control for the test above: the same setup without shared claims.
    let (mut a, mut b) = (
        Torrent::new(config(PIECES, 2 * BLOCK), Bitfield::new(PIECES), 1),
        Torrent::new(config(PIECES, 2 * BLOCK), Bitfield::new(PIECES), 2),
    );
    let mut sets = Vec::new();
    for t in [&mut a, &mut b] {
        t.handle_peer_connected(Time::ZERO, SEED, caps(true, 2 * BLOCK));
        t.handle_message(Time::ZERO, SEED, PeerMessage::HaveAll)
            .unwrap();
        t.handle_message(Time::ZERO, SEED, PeerMessage::Unchoke)
            .unwrap();
        sets.push(requested_pieces(&drain(t)));
    }
    // Each asks for half the file (a 256 KiB pipeline of 32 KiB pieces): without
    // claims the halves overlap (with these seeds), which is what claims prevent.
    assert!(!sets[0].is_disjoint(&sets[1]), "{sets:?}");
}

#[test]
fn verified_elsewhere_becomes_had_and_is_announced() {
    let claims = Arc::new(AtomicBitfield::new(PIECES));
    let (mut a, acts_a) = worker(&claims, 1);
    let (mut b, _) = worker(&claims, 2);
    // B also has a leecher peer lacking everything: it must hear `have`.
    let lacking = PeerKey(2);
    b.handle_peer_connected(Time::ZERO, lacking, caps(true, 2 * BLOCK));
    b.handle_message(Time::ZERO, lacking, PeerMessage::HaveNone)
        .unwrap();
    drain(&mut b);
    let req = acts_a
        .iter()
        .find_map(|x| match x {
            Action::Send {
                msg: PeerMessage::Request(r),
                ..
            } => Some(*r),
            _ => None,
        })
        .unwrap();
    assert_eq!(req.len_bytes, 2 * BLOCK, "whole-piece request");
    a.handle_block_received(Time::ZERO, SEED, req).unwrap();
    let acts = drain(&mut a);
    assert!(acts.contains(&Action::VerifyPiece { piece: req.piece }));
    a.handle_piece_verified(Time::ZERO, req.piece, true);
    drain(&mut a);
    assert!(claims.get(req.piece), "a verified piece stays claimed");

    b.handle_piece_verified_elsewhere(Time::ZERO, req.piece);
    let acts = drain(&mut b);
    assert!(b.have().get(req.piece));
    assert_eq!(b.stats().pieces_have, 1);
    assert!(
        acts.contains(&Action::Send {
            peer: lacking,
            msg: PeerMessage::Have(req.piece)
        }),
        "{acts:?}"
    );
    b.check_invariants();
    // Idempotent, and out-of-range pieces are ignored.
    b.handle_piece_verified_elsewhere(Time::ZERO, req.piece);
    b.handle_piece_verified_elsewhere(Time::ZERO, PieceIndex(PIECES));
    assert!(drain(&mut b).is_empty());
    assert_eq!(b.stats().pieces_have, 1);
    // B serves it now.
    b.handle_message(Time::ZERO, lacking, PeerMessage::Interested)
        .unwrap();
    drain(&mut b);
    let r = Block {
        piece: req.piece,
        offset: BlockOffset(0),
        len_bytes: BLOCK,
    };
    b.handle_message(Time::ZERO, lacking, PeerMessage::Request(r))
        .unwrap();
    assert!(drain(&mut b).contains(&Action::SendBlock {
        peer: lacking,
        block: r
    }));
}

#[test]
fn verified_elsewhere_cancels_a_piece_in_flight() {
    // Without shared claims (or after a lost race) both may hold the piece: the one that
    // did not verify it cancels its requests.
    let mut t = Torrent::new(config(PIECES, 2 * BLOCK), Bitfield::new(PIECES), 3);
    t.handle_peer_connected(Time::ZERO, SEED, caps(true, 2 * BLOCK));
    t.handle_message(Time::ZERO, SEED, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, SEED, PeerMessage::Unchoke)
        .unwrap();
    let acts = drain(&mut t);
    let req = acts
        .iter()
        .find_map(|x| match x {
            Action::Send {
                msg: PeerMessage::Request(r),
                ..
            } => Some(*r),
            _ => None,
        })
        .unwrap();
    t.handle_piece_verified_elsewhere(Time::ZERO, req.piece);
    let acts = drain(&mut t);
    assert!(
        acts.contains(&Action::Send {
            peer: SEED,
            msg: PeerMessage::Cancel(req)
        }),
        "{acts:?}"
    );
    assert!(!t.wants_block(SEED, &req));
    t.check_invariants();
    // The late block is tolerated (cancelled) and counted as waste.
    t.handle_block_received(Time::ZERO, SEED, req).unwrap();
    assert_eq!(t.stats().wasted_bytes, u64::from(req.len_bytes));
}

#[test]
fn endgame_starts_when_the_rest_is_claimed_elsewhere() {
    let claims = Arc::new(AtomicBitfield::new(PIECES));
    // B claimed every piece but one before A starts.
    for p in 1..PIECES {
        assert!(claims.try_set(PieceIndex(p)));
    }
    let (mut a, acts) = worker(&claims, 1);
    assert!(requested_pieces(&acts).contains(&0), "{acts:?}");
    assert!(a.stats().endgame, "only claimed-elsewhere pieces are left");
    // A second peer of A gets an endgame duplicate of A's own piece, nothing of B's
    // while it is busy.
    let other = PeerKey(3);
    a.handle_peer_connected(Time::ZERO, other, caps(true, 2 * BLOCK));
    a.handle_message(Time::ZERO, other, PeerMessage::HaveAll)
        .unwrap();
    a.handle_message(Time::ZERO, other, PeerMessage::Unchoke)
        .unwrap();
    assert_eq!(requested_pieces(&drain(&mut a)), BTreeSet::from([0]));
    // Piece 0 arrives from the seeder: `other`'s duplicate is cancelled, and the now
    // idle peers start shadows of B's pieces (node-wide endgame), one each.
    let whole = Block {
        piece: PieceIndex(0),
        offset: BlockOffset(0),
        len_bytes: 2 * BLOCK,
    };
    a.handle_block_received(Time::ZERO, SEED, whole).unwrap();
    let got = requested_pieces(&drain(&mut a));
    assert!(!got.is_empty() && !got.contains(&0), "{got:?}");
    assert!(got.len() <= 2, "one shadow per idle peer: {got:?}");
    a.check_invariants();
    // Shadows never release B's claims: A's peers leave, every claim is still set but
    // A's own piece 0.
    a.handle_peer_disconnected(Time::ZERO, other);
    a.handle_peer_disconnected(Time::ZERO, SEED);
    drain(&mut a);
    for p in 1..PIECES {
        assert!(claims.get(PieceIndex(p)), "B's claim on {p} released by A");
    }
    a.check_invariants();
}

/// Serves every request `t` sends to `peer` (block, then a valid hash check), telling
/// `others` of each verified piece, until nothing is requested; bounded rounds.
fn serve_all(t: &mut Torrent, peer: PeerKey, others: &mut [&mut Torrent]) {
    let mut pending: Vec<Action> = drain(t);
    for _ in 0..10_000 {
        let reqs: Vec<Block> = pending
            .drain(..)
            .filter_map(|a| match a {
                Action::Send {
                    peer: p,
                    msg: PeerMessage::Request(b),
                } if p == peer => Some(b),
                _ => None,
            })
            .collect();
        if reqs.is_empty() {
            return;
        }
        for b in reqs {
            t.handle_block_received(Time::ZERO, peer, b).unwrap();
            for a in drain(t) {
                let Action::VerifyPiece { piece } = a else {
                    pending.push(a);
                    continue;
                };
                t.handle_piece_verified(Time::ZERO, piece, true);
                for o in others.iter_mut() {
                    o.handle_piece_verified_elsewhere(Time::ZERO, piece);
                }
                pending.extend(drain(t));
            }
        }
    }
    panic!("serving did not converge");
}

#[test]
fn a_frozen_peer_on_one_torrent_does_not_stall_the_node() {
    // Issue 11 item 1: torrent A's only peer is frozen (it unchoked us, has everything,
    // and answers nothing); it claimed A's first pipeline of pieces. Torrent B has an
    // honest seeder. B must still get every piece, A's claimed ones as shadows, and A
    // must learn each of them as verified elsewhere.
    let claims = Arc::new(AtomicBitfield::new(PIECES));
    let (mut a, acts_a) = worker(&claims, 1);
    let frozen = requested_pieces(&acts_a);
    assert!(!frozen.is_empty());
    let mut b = Torrent::new(
        {
            let mut c = config(PIECES, 2 * BLOCK);
            c.claims = Some(claims.clone());
            c
        },
        Bitfield::new(PIECES),
        2,
    );
    let honest = PeerKey(7);
    b.handle_peer_connected(Time::ZERO, honest, caps(true, 2 * BLOCK));
    b.handle_message(Time::ZERO, honest, PeerMessage::HaveAll)
        .unwrap();
    b.handle_message(Time::ZERO, honest, PeerMessage::Unchoke)
        .unwrap();
    serve_all(&mut b, honest, &mut [&mut a]);
    assert!(
        b.is_complete(),
        "B stalled at {}/{PIECES}",
        b.stats().pieces_have
    );
    assert!(a.is_complete(), "A did not learn every piece");
    for p in &frozen {
        assert!(b.have().get(PieceIndex(*p)));
    }
    // A cancelled what it had asked of the frozen peer.
    let cancels = drain(&mut a)
        .into_iter()
        .filter(|x| {
            matches!(
                x,
                Action::Send {
                    msg: PeerMessage::Cancel(_),
                    ..
                }
            )
        })
        .count();
    assert!(cancels >= frozen.len(), "{cancels} cancels for {frozen:?}");
    a.check_invariants();
    b.check_invariants();
}
