//! Untrusted-input tests: every protocol violation is an `Err` plus a queued disconnect,
//! and the BEP 6 tolerances (rejects, choke/request races) hold.

use super::tests::{caps, config};
use super::*;
use crate::base::BlockOffset;
use crate::core::{ChokerConfig, BLOCK_LEN_BYTES as BLOCK, MAX_REQUESTS_PER_PEER};
use proptest::prelude::*;
use std::time::Duration;

const P: PeerKey = PeerKey(7);

fn drain(t: &mut Torrent) -> Vec<Action> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

fn leecher(fast: bool) -> Torrent {
    let mut t = Torrent::new(config(8, 2 * BLOCK), Bitfield::new(8), 9);
    t.handle_peer_connected(Time::ZERO, P, caps(fast, BLOCK));
    drain(&mut t);
    t
}

fn seeder(fast: bool) -> Torrent {
    let mut t = Torrent::new(config(8, 2 * BLOCK), Bitfield::full(8), 9);
    t.handle_peer_connected(Time::ZERO, P, caps(fast, BLOCK));
    drain(&mut t);
    t
}

fn expect_violation(t: &mut Torrent, r: Result<(), ProtocolError>, want: ProtocolError) {
    assert_eq!(r, Err(want.clone()));
    let acts = drain(t);
    assert!(
        acts.contains(&Action::Disconnect {
            peer: P,
            reason: DisconnectReason::ProtocolViolation(want)
        }),
        "{acts:?}"
    );
    assert_eq!(t.stats().peers, 0);
}

fn block(piece: u32, offset: u32, len: u32) -> Block {
    Block {
        piece: PieceIndex(piece),
        offset: BlockOffset(offset),
        len_bytes: len,
    }
}

#[test]
fn have_out_of_range_disconnects() {
    let mut t = leecher(false);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::Have(PieceIndex(8)));
    expect_violation(
        &mut t,
        r,
        ProtocolError::PieceOutOfRange {
            piece: 8,
            piece_count: 8,
        },
    );
}

#[test]
fn a_second_bitfield_is_an_update_not_a_violation() {
    let mut t = leecher(false);
    t.handle_message(Time::ZERO, P, PeerMessage::Bitfield(Bitfield::new(8)))
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Bitfield(Bitfield::full(8)))
        .unwrap();
    assert_eq!(
        drain(&mut t),
        [Action::Send {
            peer: P,
            msg: PeerMessage::Interested
        }]
    );
    assert_eq!(t.stats().peers, 1);
    t.check_invariants();
}

#[test]
fn bitfield_of_wrong_length_disconnects() {
    let mut t = leecher(false);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::Bitfield(Bitfield::new(9)));
    expect_violation(
        &mut t,
        r,
        ProtocolError::BitfieldLength {
            got: 9,
            expected: 8,
        },
    );
}

#[test]
fn fast_messages_need_the_extension() {
    let mut t = leecher(false);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::HaveAll);
    expect_violation(&mut t, r, ProtocolError::FastExtensionNotNegotiated);
}

#[test]
fn bad_requests_disconnect() {
    let mut t = seeder(false);
    let b = block(0, BLOCK, BLOCK + 1);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::Request(b));
    expect_violation(&mut t, r, ProtocolError::BadBlock(b));

    let mut t = leecher(false);
    let b = block(1, 0, BLOCK);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::Request(b));
    expect_violation(
        &mut t,
        r,
        ProtocolError::RequestForMissingPiece(PieceIndex(1)),
    );
}

#[test]
fn requests_while_choked_are_tolerated_then_fatal() {
    let mut t = seeder(true);
    let b = block(0, 0, BLOCK);
    // A request that crossed our choke on the wire: BEP 6 reject, no disconnect.
    t.handle_message(Time::ZERO, P, PeerMessage::Request(b))
        .unwrap();
    assert_eq!(
        drain(&mut t),
        vec![Action::Send {
            peer: P,
            msg: PeerMessage::Reject(b)
        }]
    );
    let limit = 2 * t.config().max_requests_per_peer;
    let mut last = Ok(());
    for _ in 0..limit {
        last = t.handle_message(Time::ZERO, P, PeerMessage::Request(b));
    }
    expect_violation(&mut t, last, ProtocolError::RequestWhileChoked);
}

#[test]
fn unrequested_block_disconnects_but_cancelled_one_is_tolerated() {
    let mut t = leecher(true);
    t.handle_message(Time::ZERO, P, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Unchoke)
        .unwrap();
    let reqs: Vec<Block> = drain(&mut t)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: PeerMessage::Request(b),
                ..
            } => Some(b),
            _ => None,
        })
        .collect();
    assert!(!reqs.is_empty());
    // BEP 6 reject of a pending request frees the block; it may be re-requested later.
    t.handle_message(Time::ZERO, P, PeerMessage::Reject(reqs[0]))
        .unwrap();
    t.check_invariants();
    // A reject for something never requested is a violation.
    let never = block(7, BLOCK, 99);
    let r = t.handle_message(Time::ZERO, P, PeerMessage::Reject(never));
    expect_violation(&mut t, r, ProtocolError::UnrequestedReject(never));

    let mut t = leecher(false);
    t.handle_message(Time::ZERO, P, PeerMessage::Bitfield(Bitfield::full(8)))
        .unwrap();
    let b = block(3, 0, BLOCK);
    let r = t.handle_block_received(Time::ZERO, P, b);
    expect_violation(&mut t, r, ProtocolError::UnrequestedBlock(b));
}

#[test]
fn choke_without_fast_extension_frees_requests() {
    let mut t = leecher(false);
    t.handle_message(Time::ZERO, P, PeerMessage::Bitfield(Bitfield::full(8)))
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Unchoke)
        .unwrap();
    let first = drain(&mut t);
    assert!(first.contains(&Action::Send {
        peer: P,
        msg: PeerMessage::Interested
    }));
    let req = first
        .iter()
        .find_map(|a| match a {
            Action::Send {
                msg: PeerMessage::Request(b),
                ..
            } => Some(*b),
            _ => None,
        })
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Choke).unwrap();
    t.check_invariants();
    // A block that was already on the wire when the choke was sent is tolerated.
    t.handle_block_received(Time::ZERO, P, req).unwrap();
    assert_eq!(t.stats().wasted_bytes, u64::from(req.len_bytes));
    assert_eq!(t.stats().peers, 1);
}

#[test]
fn cancel_of_queued_request_is_rejected_under_bep6() {
    let mut c = config(8, 2 * BLOCK);
    c.upload_in_flight_bytes = u64::from(BLOCK);
    let mut t = Torrent::new(c, Bitfield::full(8), 9);
    t.handle_peer_connected(Time::ZERO, P, caps(true, BLOCK));
    assert_eq!(
        drain(&mut t),
        vec![Action::Send {
            peer: P,
            msg: PeerMessage::HaveAll
        }]
    );
    t.handle_message(Time::ZERO, P, PeerMessage::Interested)
        .unwrap();
    let acts = drain(&mut t);
    assert!(
        acts.contains(&Action::Send {
            peer: P,
            msg: PeerMessage::Unchoke
        }),
        "{acts:?}"
    );
    let (b0, b1) = (block(0, 0, BLOCK), block(0, BLOCK, BLOCK));
    t.handle_message(Time::ZERO, P, PeerMessage::Request(b0))
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Request(b1))
        .unwrap();
    let acts = drain(&mut t);
    assert!(
        acts.contains(&Action::SendBlock { peer: P, block: b0 }),
        "{acts:?}"
    );
    assert!(
        !acts.contains(&Action::SendBlock { peer: P, block: b1 }),
        "window is one block"
    );
    t.handle_message(Time::ZERO, P, PeerMessage::Cancel(b1))
        .unwrap();
    assert_eq!(
        drain(&mut t),
        vec![Action::Send {
            peer: P,
            msg: PeerMessage::Reject(b1)
        }]
    );
    t.handle_block_sent(Time::ZERO, P, b0);
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.stats().uploaded_bytes, u64::from(BLOCK));
}

fn requests(acts: &[Action], to: PeerKey) -> Vec<Block> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send {
                peer,
                msg: PeerMessage::Request(b),
            } if *peer == to => Some(*b),
            _ => None,
        })
        .collect()
}

#[test]
fn snubbing_peer_loses_its_requests_to_another_peer() {
    let q = PeerKey(8);
    let mut c = config(1, BLOCK);
    c.choker = ChokerConfig::default();
    let mut t = Torrent::new(c, Bitfield::new(1), 9);
    for k in [P, q] {
        t.handle_peer_connected(Time::ZERO, k, caps(true, BLOCK));
        t.handle_message(Time::ZERO, k, PeerMessage::HaveAll)
            .unwrap();
    }
    t.handle_message(Time::ZERO, P, PeerMessage::Unchoke)
        .unwrap();
    let acts = drain(&mut t);
    let asked = requests(&acts, P);
    assert_eq!(asked.len(), 1);
    assert!(t.wants_block(P, &asked[0]));
    assert!(!t.wants_block(q, &asked[0]), "not requested from q");
    // q unchokes us much later; the only block is taken, so it gets an endgame duplicate.
    let later = Time::ZERO + Duration::from_secs(65);
    t.handle_message(later, q, PeerMessage::Unchoke).unwrap();
    drain(&mut t);
    // P sends nothing for longer than snub_timeout: at the next rechoke its request is
    // cancelled and the block goes to q.
    let late = Time::ZERO + Duration::from_secs(70);
    t.handle_timeout(late);
    let acts = drain(&mut t);
    assert!(
        acts.contains(&Action::Send {
            peer: P,
            msg: PeerMessage::Cancel(asked[0])
        }),
        "{acts:?}"
    );
    t.check_invariants();
    assert!(!t.wants_block(P, &asked[0]), "P's request was cancelled");
    assert!(t.wants_block(q, &asked[0]), "q now fetches the block");
}

#[test]
fn payload_progress_keeps_a_slow_sender_from_being_snubbed() {
    let mut c = config(1, BLOCK);
    c.choker = ChokerConfig::default();
    let timeout = c.choker.snub_timeout;
    let mut t = Torrent::new(c, Bitfield::new(1), 9);
    t.handle_peer_connected(Time::ZERO, P, caps(true, BLOCK));
    t.handle_message(Time::ZERO, P, PeerMessage::HaveAll)
        .unwrap();
    t.handle_message(Time::ZERO, P, PeerMessage::Unchoke)
        .unwrap();
    let asked = requests(&drain(&mut t), P);
    assert_eq!(asked.len(), 1);
    // Part of the block arrives just before the snub timeout: no cancel at the timeout.
    let half = timeout / 2;
    t.handle_block_progress(Time::ZERO + (timeout - half / 2), P, &asked[0]);
    // Progress on a block never requested from P is ignored (if it counted, P would
    // not be snubbed at 2 timeouts below).
    let other = Block {
        len_bytes: asked[0].len_bytes / 2,
        ..asked[0]
    };
    t.handle_block_progress(Time::ZERO + (timeout + timeout / 10), P, &other);
    t.handle_timeout(Time::ZERO + (timeout + half / 4));
    let cancels = |acts: &[Action]| {
        acts.iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        msg: PeerMessage::Cancel(_),
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(cancels(&drain(&mut t)), 0, "progress restarted the clock");
    assert!(t.wants_block(P, &asked[0]));
    // No progress for a whole timeout after that: snubbed, request cancelled.
    t.handle_timeout(Time::ZERO + timeout * 2);
    // (P, the only peer with the piece, then gets it again as its one snubbed request.)
    assert_eq!(cancels(&drain(&mut t)), 1);
    t.check_invariants();
}

#[test]
fn unchoked_peers_never_exceed_slots_plus_one() {
    let mut c = config(4, BLOCK);
    c.choker = ChokerConfig {
        unchoke_slots: 3,
        ..ChokerConfig::default()
    };
    let mut t = Torrent::new(c, Bitfield::full(4), 1);
    for k in 0..20 {
        t.handle_peer_connected(Time::ZERO, PeerKey(k), caps(k % 2 == 0, BLOCK));
        t.handle_message(Time::ZERO, PeerKey(k), PeerMessage::Interested)
            .unwrap();
    }
    for step in 1..20u64 {
        t.handle_timeout(Time::ZERO + Duration::from_secs(10 * step));
        drain(&mut t);
        t.check_invariants();
        assert!(t.stats().unchoked_peers <= 4);
        if step % 3 == 0 {
            t.handle_message(Time::ZERO, PeerKey(step), PeerMessage::NotInterested)
                .unwrap();
        }
    }
}

fn any_block() -> impl Strategy<Value = Block> {
    (0u32..10, 0u32..3, 0u32..3)
        .prop_map(|(piece, off, len)| block(piece, off * BLOCK, len * BLOCK))
}

fn any_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        Just(PeerMessage::KeepAlive),
        Just(PeerMessage::Choke),
        Just(PeerMessage::Unchoke),
        Just(PeerMessage::Interested),
        Just(PeerMessage::NotInterested),
        Just(PeerMessage::HaveAll),
        Just(PeerMessage::HaveNone),
        (0u32..10).prop_map(|p| PeerMessage::Have(PieceIndex(p))),
        (7u32..10, any::<u8>()).prop_map(|(n, m)| {
            let mut b = Bitfield::new(n);
            (0..n).filter(|i| m.rotate_left(*i) & 1 == 1).for_each(|i| {
                b.set(PieceIndex(i));
            });
            PeerMessage::Bitfield(b)
        }),
        any_block().prop_map(PeerMessage::Request),
        any_block().prop_map(PeerMessage::Cancel),
        any_block().prop_map(PeerMessage::Reject),
        (0u32..10).prop_map(|p| PeerMessage::AllowedFast(PieceIndex(p))),
        (0u32..10).prop_map(|p| PeerMessage::Suggest(PieceIndex(p))),
    ]
}

proptest! {
    /// Arbitrary (often invalid) input from peers never panics, keeps every invariant,
    /// and an `Err` always comes with the peer's disconnect.
    #[test]
    fn arbitrary_peer_input_is_contained(
        seeding in any::<bool>(),
        fast in any::<bool>(),
        whole in any::<bool>(),
        events in proptest::collection::vec((0u64..3, any::<bool>(), any_message(), any_block()), 1..80),
    ) {
        let c = config(8, 2 * BLOCK);
        let have = if seeding { Bitfield::full(8) } else { Bitfield::new(8) };
        let mut t = Torrent::new(c, have, 5);
        let len = if whole { 2 * BLOCK } else { BLOCK };
        let mut connected = std::collections::BTreeSet::new();
        let mut now = Time::ZERO;
        for (k, as_block, msg, blk) in events {
            let key = PeerKey(k);
            if connected.insert(k) {
                t.handle_peer_connected(now, key, caps(fast, len));
            }
            let r = if as_block {
                t.handle_block_received(now, key, blk)
            } else {
                t.handle_message(now, key, msg)
            };
            let acts = drain(&mut t);
            if let Err(e) = r {
                let expected = Action::Disconnect { peer: key, reason: DisconnectReason::ProtocolViolation(e) };
                prop_assert!(acts.contains(&expected));
                connected.remove(&k);
            }
            for a in &acts {
                if let Action::Disconnect { peer, .. } = a {
                    connected.remove(&peer.0);
                }
            }
            now += Duration::from_secs(1);
            t.handle_timeout(now);
            drain(&mut t);
            t.check_invariants();
        }
    }
}

#[test]
fn a_distinct_first_origin_rejects_only_peers_that_take_it() {
    // Issue 15 mixed swarm: Transmission behind a distinct-first origin finished 7.8 %
    // later than behind libtorrent's. Only p2pe peers (PeerCaps::distinct_first) get
    // the origin's rejects; other clients are served the piece they ask for.
    for p2pe in [true, false] {
        let mut t = Torrent::new(config(8, 2 * BLOCK), Bitfield::full(8), 3);
        let mut c = caps(true, 2 * BLOCK);
        c.distinct_first = p2pe;
        let (a, b) = (PeerKey(1), PeerKey(2));
        for k in [a, b] {
            t.handle_peer_connected(Time::ZERO, k, c);
            t.handle_message(Time::ZERO, k, PeerMessage::HaveNone)
                .unwrap();
            t.handle_message(Time::ZERO, k, PeerMessage::Interested)
                .unwrap();
        }
        std::iter::from_fn(|| t.poll_action()).for_each(drop);
        let whole = Block {
            piece: PieceIndex(0),
            offset: BlockOffset(0),
            len_bytes: 2 * BLOCK,
        };
        t.handle_message(Time::ZERO, a, PeerMessage::Request(whole))
            .unwrap();
        t.handle_message(Time::ZERO, b, PeerMessage::Request(whole))
            .unwrap();
        let acts: Vec<Action> = std::iter::from_fn(|| t.poll_action()).collect();
        let rejected = acts.contains(&Action::Send {
            peer: b,
            msg: PeerMessage::Reject(whole),
        });
        let served = acts.contains(&Action::SendBlock {
            peer: b,
            block: whole,
        });
        assert_eq!(
            (rejected, served),
            (p2pe, !p2pe),
            "p2pe peer: {p2pe}: {acts:?}"
        );
    }
}

#[test]
fn a_peer_may_queue_max_requests_per_peer_and_no_more() {
    // 128 pieces of 32 blocks: more distinct blocks than the cap.
    let mut t = Torrent::new(config(128, 32 * BLOCK), Bitfield::full(128), 9);
    assert_eq!(t.config().max_requests_per_peer, MAX_REQUESTS_PER_PEER);
    t.handle_peer_connected(Time::ZERO, P, caps(true, BLOCK));
    t.handle_message(Time::ZERO, P, PeerMessage::Interested)
        .unwrap();
    assert!(drain(&mut t).contains(&Action::Send {
        peer: P,
        msg: PeerMessage::Unchoke
    }));
    let (mut sent, mut requested) = (0u32, 0u32);
    let mut rejected = None;
    'pieces: for piece in 0..127 {
        for i in 0..32 {
            let b = block(piece, i * BLOCK, BLOCK);
            t.handle_message(Time::ZERO, P, PeerMessage::Request(b))
                .unwrap();
            requested += 1;
            for a in drain(&mut t) {
                match a {
                    Action::SendBlock { .. } => sent += 1,
                    Action::Send {
                        msg: PeerMessage::Reject(r),
                        ..
                    } => {
                        assert_eq!(r, b);
                        rejected = Some(requested);
                        break 'pieces;
                    }
                    _ => {}
                }
            }
        }
    }
    // The queue (requests not yet handed out as blocks) held exactly the cap, our BEP 10
    // `reqq`, when the first reject came.
    let first_reject = rejected.expect("a request past the cap is rejected");
    assert_eq!(first_reject - 1 - sent, MAX_REQUESTS_PER_PEER);
}

#[test]
fn a_busy_relay_rejects_p2pe_requests_beyond_its_queue() {
    // A node that was not complete when created, its window (one piece) handed out and
    // `busy_reject_pending` (2) requests queued, rejects further p2pe requests (BEP 6) so
    // they go to another holder; other clients' requests are still queued. The origin
    // (complete when created) never rejects for being busy.
    for origin in [false, true] {
        let mut c = config(8, 2 * BLOCK);
        c.upload_in_flight_bytes = u64::from(2 * BLOCK);
        c.busy_reject_pending = 2;
        let have = if origin {
            Bitfield::full(8)
        } else {
            super::tests::partial(8, |i| i < 7)
        };
        let mut t = Torrent::new(c, have, 3);
        let keys: Vec<PeerKey> = (1..=6).map(PeerKey).collect();
        for (i, &k) in keys.iter().enumerate() {
            let mut pc = caps(true, 2 * BLOCK);
            pc.distinct_first = i != 5;
            t.handle_peer_connected(Time::ZERO, k, pc);
            t.handle_message(Time::ZERO, k, PeerMessage::HaveNone)
                .unwrap();
            t.handle_message(Time::ZERO, k, PeerMessage::Interested)
                .unwrap();
        }
        drain(&mut t);
        for (i, &k) in keys.iter().enumerate() {
            t.handle_message(
                Time::ZERO,
                k,
                PeerMessage::Request(block(i as u32, 0, 2 * BLOCK)),
            )
            .unwrap();
        }
        let acts = drain(&mut t);
        let rejected: Vec<PeerKey> = keys
            .iter()
            .enumerate()
            .filter(|&(i, &k)| {
                acts.contains(&Action::Send {
                    peer: k,
                    msg: PeerMessage::Reject(block(i as u32, 0, 2 * BLOCK)),
                })
            })
            .map(|(_, &k)| k)
            .collect();
        let want = if origin {
            vec![]
        } else {
            vec![PeerKey(4), PeerKey(5)]
        };
        assert_eq!(rejected, want, "origin {origin}: {acts:?}");
        assert_eq!(t.stats().busy_rejects_sent, want.len() as u64);
    }
}
