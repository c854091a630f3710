//! Rack-aware requests ([`crate::core::rack`]): from a remote peer only the pieces this node
//! imports for its rack, from rack-mates anything, and no stall when importers are missing.

use super::tests::{caps, config, partial};
use super::*;
use crate::base::BlockOffset;
use crate::core::rack::weight;
use crate::core::{Locality, BLOCK_LEN_BYTES as BLOCK};

const PIECES: u32 = 64;
const MATE: PeerKey = PeerKey(1);
const REMOTE: PeerKey = PeerKey(2);
const UNLABELLED: PeerKey = PeerKey(3);

fn loc(rack: &str, id: &str) -> Locality {
    Locality::new(rack.as_bytes(), id.as_bytes())
}

fn drain(t: &mut Torrent) -> Vec<Action> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

fn requested(acts: &[Action], to: PeerKey) -> Vec<PieceIndex> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send {
                peer,
                msg: PeerMessage::Request(b),
            } if *peer == to => Some(b.piece),
            _ => None,
        })
        .collect()
}

/// A leecher in rack `r1` (or rack-oblivious) with a rack-mate holding pieces 0..8, a peer
/// of rack `r2` and an unlabelled one holding everything.
fn swarm(aware: bool) -> Torrent {
    let mut c = config(PIECES, BLOCK);
    c.locality = aware.then(|| loc("r1", "me"));
    let mut t = Torrent::new(c, Bitfield::new(PIECES), 5);
    let labelled = |l: Locality| PeerCaps {
        locality: Some(l),
        ..caps(true, BLOCK)
    };
    t.handle_peer_connected(Time::ZERO, MATE, labelled(loc("r1", "mate")));
    t.handle_peer_connected(Time::ZERO, REMOTE, labelled(loc("r2", "far")));
    t.handle_peer_connected(Time::ZERO, UNLABELLED, caps(true, BLOCK));
    let mate_have = partial(PIECES, |i| i < 8);
    t.handle_message(Time::ZERO, MATE, PeerMessage::Bitfield(mate_have))
        .unwrap();
    for k in [REMOTE, UNLABELLED] {
        t.handle_message(Time::ZERO, k, PeerMessage::HaveAll)
            .unwrap();
    }
    drain(&mut t);
    t
}

/// Whether we, not the rack-mate, import `p`.
fn ours(p: PieceIndex) -> bool {
    weight(loc("r1", "me").node_token, p) < weight(loc("r1", "mate").node_token, p)
}

#[test]
fn remote_peers_supply_only_the_pieces_we_import_and_the_rack_lacks() {
    let mut t = swarm(true);
    t.handle_message(Time::ZERO, MATE, PeerMessage::Unchoke)
        .unwrap();
    let from_mate = requested(&drain(&mut t), MATE);
    assert_eq!(from_mate.len(), 8, "everything the mate has: {from_mate:?}");
    let mut remote_asked = Vec::new();
    for k in [REMOTE, UNLABELLED] {
        t.handle_message(Time::ZERO, k, PeerMessage::Unchoke)
            .unwrap();
        let asked = requested(&drain(&mut t), k);
        if k == REMOTE {
            remote_asked.clone_from(&asked);
        }
        assert!(!asked.is_empty(), "{k:?} gets requests");
        for p in &asked {
            assert!(p.0 >= 8, "{p:?}: the rack-mate has it");
            assert!(ours(*p), "{p:?}: the rack-mate imports it");
        }
        t.check_invariants();
    }
    // The mate leaves: its pieces and its importer roles fall to us. The remote peer
    // delivers what it was asked, and is asked for those now.
    t.handle_peer_disconnected(Time::ZERO, MATE);
    drain(&mut t);
    for p in remote_asked {
        let block = Block {
            piece: p,
            offset: BlockOffset(0),
            len_bytes: t.config().piece_len(p),
        };
        t.handle_block_received(Time::ZERO, REMOTE, block).unwrap();
    }
    let asked = requested(&drain(&mut t), REMOTE);
    assert!(
        asked.iter().any(|&p| p.0 < 8 || !ours(p)),
        "after the mate left: {asked:?}"
    );
    t.check_invariants();
}

#[test]
fn without_locality_remote_peers_supply_anything() {
    // The same swarm rack-oblivious: the remote peer is asked for pieces the rack-mate
    // imports, which is what the policy above prevents.
    let mut t = swarm(false);
    t.handle_message(Time::ZERO, MATE, PeerMessage::Unchoke)
        .unwrap();
    drain(&mut t);
    t.handle_message(Time::ZERO, REMOTE, PeerMessage::Unchoke)
        .unwrap();
    let asked = requested(&drain(&mut t), REMOTE);
    assert!(asked.iter().any(|&p| !ours(p)), "{asked:?}");
}

#[test]
fn an_idle_node_imports_whatever_the_rack_lacks() {
    // Nothing in flight from anyone (the rack-mate has not unchoked us): the remote peer
    // may supply pieces the mate would import, rather than leave us idle.
    let mut t = swarm(true);
    t.handle_message(Time::ZERO, REMOTE, PeerMessage::Unchoke)
        .unwrap();
    let asked = requested(&drain(&mut t), REMOTE);
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|p| p.0 >= 8), "{asked:?}");
    assert!(asked.iter().any(|&p| !ours(p)), "{asked:?}");
    t.check_invariants();
}

#[test]
fn a_remote_suggestion_is_imported_a_rack_mates_piece_is_not() {
    let mut t = swarm(true);
    t.handle_message(Time::ZERO, MATE, PeerMessage::Unchoke)
        .unwrap();
    drain(&mut t);
    let theirs = (8..PIECES).map(PieceIndex).find(|&p| !ours(p)).unwrap();
    for p in [PieceIndex(2), theirs] {
        t.handle_message(Time::ZERO, REMOTE, PeerMessage::Suggest(p))
            .unwrap();
    }
    t.handle_message(Time::ZERO, REMOTE, PeerMessage::Unchoke)
        .unwrap();
    let asked = requested(&drain(&mut t), REMOTE);
    assert_eq!(asked.first(), Some(&theirs), "{asked:?}");
    assert!(!asked.contains(&PieceIndex(2)), "{asked:?}");
}

#[test]
fn a_silent_rack_mate_stops_hiding_its_pieces() {
    // The rack-mate holds our requests for its 8 pieces and never answers (frozen), while
    // the remote peer delivers every second: once the mate has been silent for the snub
    // floor (2 s) its pieces and the ones it would import come from the remote peer;
    // before, never.
    let mut t = swarm(true);
    t.handle_message(Time::ZERO, MATE, PeerMessage::Unchoke)
        .unwrap();
    drain(&mut t);
    t.handle_message(Time::ZERO, REMOTE, PeerMessage::Unchoke)
        .unwrap();
    let mut outstanding = requested(&drain(&mut t), REMOTE);
    let mut asked_after_snub = Vec::new();
    for s in 1..=30 {
        let now = Time::ZERO + std::time::Duration::from_secs(s);
        for p in std::mem::take(&mut outstanding) {
            let block = Block {
                piece: p,
                offset: BlockOffset(0),
                len_bytes: t.config().piece_len(p),
            };
            t.handle_block_received(now, REMOTE, block).unwrap();
        }
        t.handle_timeout(now);
        let mate_snubbed = t.rack.as_ref().is_some_and(|r| !r.is_mate(MATE));
        assert_eq!(mate_snubbed, s >= 2, "{s} s");
        outstanding = requested(&drain(&mut t), REMOTE);
        t.check_invariants();
        if mate_snubbed {
            asked_after_snub.extend(outstanding.iter().copied());
        } else {
            for p in &outstanding {
                assert!(
                    p.0 >= 8 && ours(*p),
                    "{s} s: {p:?} before the mate was snubbed"
                );
            }
        }
    }
    assert!(
        asked_after_snub.iter().any(|p| p.0 < 8),
        "{asked_after_snub:?}"
    );
    assert!(
        asked_after_snub.iter().any(|&p| p.0 >= 8 && !ours(p)),
        "{asked_after_snub:?}"
    );
}
