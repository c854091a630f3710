//! Smart ban: a liar that sends wrong blocks of pieces an honest peer also sends
//! parts of is banned, and the honest peer is never struck (issue 11 item 4).

use std::collections::BTreeMap;

use super::tests::{caps, config};
use super::*;
use crate::core::BLOCK_LEN_BYTES as BLOCK;

const HONEST: PeerKey = PeerKey(1);
const LIAR: PeerKey = PeerKey(2);
const PIECES: u32 = 8;

/// The digest of the true chunk `c` of `piece`, and of the liar's version.
fn good(piece: u32, c: u32) -> [u8; 20] {
    let mut d = [0u8; 20];
    d[..4].copy_from_slice(&piece.to_be_bytes());
    d[4..8].copy_from_slice(&c.to_be_bytes());
    d
}
fn bad(piece: u32, c: u32) -> [u8; 20] {
    let mut d = good(piece, c);
    d[19] = 0xff;
    d
}

/// Drives `t` with an honest seeder and a liar that garbles every block it sends
/// except that it rejects (BEP 6) block 0 of each piece, so block 0 always comes from
/// the honest peer (the attack of issue 11 item 4). Returns the actions seen.
fn run(t: &mut Torrent) -> Vec<Action> {
    let mut seen = Vec::new();
    let mut stored: BTreeMap<(u32, u32), [u8; 20]> = BTreeMap::new();
    for _ in 0..2_000 {
        let acts: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
        if acts.is_empty() {
            break;
        }
        for a in acts {
            seen.push(a.clone());
            match a {
                Action::Send {
                    peer,
                    msg: PeerMessage::Request(b),
                } => {
                    if peer == LIAR && b.offset_bytes == 0 {
                        let _ = t.handle_message(Time::ZERO, LIAR, PeerMessage::Reject(b));
                        continue;
                    }
                    let c = b.offset_bytes / BLOCK;
                    if t.wants_block(peer, &b) {
                        let d = if peer == LIAR {
                            bad(b.piece.0, c)
                        } else {
                            good(b.piece.0, c)
                        };
                        stored.insert((b.piece.0, c), d);
                    }
                    let _ = t.handle_block_received(Time::ZERO, peer, b);
                }
                Action::VerifyPiece { piece } => {
                    let digests: Vec<[u8; 20]> = (0..2).map(|c| stored[&(piece.0, c)]).collect();
                    let valid = (0..2).all(|c| digests[c as usize] == good(piece.0, c));
                    if !valid || t.wants_block_digests(piece) {
                        t.handle_block_digests(piece, digests);
                    }
                    t.handle_piece_verified(Time::ZERO, piece, valid);
                    let strikes = t.peers.get(&HONEST).map_or(0, |p| p.hash_failures);
                    assert_eq!(strikes, 0, "the honest peer was struck");
                }
                _ => {}
            }
        }
    }
    seen
}

#[test]
fn a_liar_is_banned_and_the_honest_peer_never_struck() {
    let mut t = Torrent::new(config(PIECES, 2 * BLOCK), Bitfield::new(PIECES), 5);
    for k in [LIAR, HONEST] {
        t.handle_peer_connected(Time::ZERO, k, caps(true, BLOCK));
        t.handle_message(Time::ZERO, k, PeerMessage::HaveAll)
            .unwrap();
        t.handle_message(Time::ZERO, k, PeerMessage::Unchoke)
            .unwrap();
    }
    let seen = run(&mut t);
    assert!(
        seen.contains(&Action::Disconnect {
            peer: LIAR,
            reason: DisconnectReason::Banned
        }),
        "the liar was not banned"
    );
    // Complete, we part from the honest seeder as NotUseful; it is never banned.
    assert!(!seen.contains(&Action::Disconnect {
        peer: HONEST,
        reason: DisconnectReason::Banned
    }));
    assert!(
        t.is_complete(),
        "{} of {PIECES} pieces",
        t.stats().pieces_have
    );
    assert!(t.stats().hash_failures >= 1);
    t.check_invariants();
}

#[test]
fn a_parole_piece_is_requested_from_one_peer_only() {
    let mut t = Torrent::new(config(PIECES, 2 * BLOCK), Bitfield::new(PIECES), 6);
    t.picker.put_on_parole(PieceIndex(0));
    for k in [LIAR, HONEST] {
        t.handle_peer_connected(Time::ZERO, k, caps(true, BLOCK));
        t.handle_message(Time::ZERO, k, PeerMessage::HaveAll)
            .unwrap();
        t.handle_message(Time::ZERO, k, PeerMessage::Unchoke)
            .unwrap();
    }
    let askers: std::collections::BTreeSet<PeerKey> = std::iter::from_fn(|| t.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                peer,
                msg: PeerMessage::Request(b),
            } if b.piece == PieceIndex(0) => Some(peer),
            _ => None,
        })
        .collect();
    assert!(askers.len() <= 1, "{askers:?}");
}
