//! Torrents sharing availability counts (one per runtime worker of a node): rarest-first
//! ranks pieces over the peers of all of them, and the counts always equal the sum of the
//! connected peers' bitfields, whatever the peers send.

use super::tests::{caps, config, partial};
use super::*;
use crate::core::{Availability, BLOCK_LEN_BYTES as BLOCK};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

const PIECES: u32 = 16;
const RARE: PieceIndex = PieceIndex(5);

fn drain(t: &mut Torrent) -> Vec<Action> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

/// A leecher torrent (rarest-first from the first piece, one piece in flight), sharing
/// `counts` if given.
fn leecher(counts: Option<&Arc<Availability>>, seed: u64) -> Torrent {
    let mut c = config(PIECES, 2 * BLOCK);
    c.random_first_pieces = 0;
    c.pipeline_bytes = u64::from(2 * BLOCK);
    c.availability = counts.cloned();
    Torrent::new(c, Bitfield::new(PIECES), seed)
}

/// Connects `key` to `t` and delivers `msgs` from it.
fn peer(t: &mut Torrent, now: Time, key: u64, msgs: Vec<PeerMessage>) -> Vec<Action> {
    t.handle_peer_connected(now, PeerKey(key), caps(true, 2 * BLOCK));
    for m in msgs {
        t.handle_message(now, PeerKey(key), m).unwrap();
    }
    drain(t)
}

fn first_request(acts: &[Action]) -> Option<PieceIndex> {
    acts.iter().find_map(|a| match a {
        Action::Send {
            msg: PeerMessage::Request(b),
            ..
        } => Some(b.piece),
        _ => None,
    })
}

/// Torrent A's two peers have every piece but [`RARE`]; B's one peer has all. B's first
/// request is for the piece rarest over the node, `RARE`, whichever side connected first
/// (when B's peers came first it learns A's counts on its next resync).
fn first_pick_of_b(shared: bool, a_first: bool, seed: u64) -> Option<PieceIndex> {
    let counts = Arc::new(Availability::new(PIECES));
    let counts = shared.then_some(&counts);
    let (mut a, mut b) = (leecher(counts, seed), leecher(counts, seed + 1));
    let most = partial(PIECES, |i| i != RARE.0);
    let mut connect_a = |now| {
        for k in 1..=2 {
            peer(&mut a, now, k, vec![PeerMessage::Bitfield(most.clone())]);
        }
    };
    let later = Time::ZERO + crate::core::availability::RESYNC_INTERVAL;
    if a_first {
        connect_a(Time::ZERO);
        let acts = peer(
            &mut b,
            Time::ZERO,
            9,
            vec![PeerMessage::HaveAll, PeerMessage::Unchoke],
        );
        return first_request(&acts);
    }
    peer(&mut b, Time::ZERO, 9, vec![PeerMessage::HaveAll]);
    connect_a(Time::ZERO);
    b.handle_message(later, PeerKey(9), PeerMessage::Unchoke)
        .unwrap();
    first_request(&drain(&mut b))
}

#[test]
fn shared_counts_make_rarest_first_node_wide() {
    for seed in 0..8 {
        assert_eq!(first_pick_of_b(true, true, seed), Some(RARE), "seed {seed}");
        assert_eq!(
            first_pick_of_b(true, false, seed),
            Some(RARE),
            "seed {seed}"
        );
    }
    // The control: alone, B sees every piece once and picks at random.
    let picks: Vec<_> = (0..8).map(|s| first_pick_of_b(false, true, s)).collect();
    assert!(picks.iter().any(|p| *p != Some(RARE)), "{picks:?}");
}

#[test]
fn a_disconnect_takes_back_what_the_peer_added() {
    let counts = Arc::new(Availability::new(PIECES));
    let (mut a, b) = (leecher(Some(&counts), 1), leecher(Some(&counts), 2));
    let x = PieceIndex(3);
    peer(&mut a, Time::ZERO, 1, vec![PeerMessage::Have(x)]);
    assert_eq!(b.picker.availability(x), 1, "B sees A's peer");
    // A duplicate have and a have after the bitfield count once.
    a.handle_message(Time::ZERO, PeerKey(1), PeerMessage::Have(x))
        .unwrap();
    assert_eq!(counts.count(x), 1);
    peer(
        &mut a,
        Time::ZERO,
        2,
        vec![
            PeerMessage::Bitfield(partial(PIECES, |i| i == 3 || i == 4)),
            PeerMessage::Have(x),
            PeerMessage::Have(PieceIndex(6)),
        ],
    );
    assert_eq!(
        (0..PIECES)
            .map(|i| counts.count(PieceIndex(i)))
            .collect::<Vec<_>>(),
        [0, 0, 0, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // Peer 2 leaves: only what it added is taken back.
    a.handle_peer_disconnected(Time::ZERO, PeerKey(2));
    assert_eq!(counts.count(x), 1);
    assert_eq!(counts.count(PieceIndex(4)), 0);
    a.handle_peer_disconnected(Time::ZERO, PeerKey(1));
    a.handle_peer_disconnected(Time::ZERO, PeerKey(1)); // twice: nothing more
    assert!((0..PIECES).all(|i| counts.count(PieceIndex(i)) == 0));
    assert_eq!(b.picker.availability(x), 0);
    a.check_invariants();
    b.check_invariants();
}

/// Counts (shared, and the picker's own rarest-first keys) after `msgs` from peer 1 of a
/// torrent whose peer 2 announced pieces 4 and 5.
fn counts_after(shared: bool, msgs: Vec<PeerMessage>) -> (Vec<u32>, Vec<Action>) {
    let counts = Arc::new(Availability::new(PIECES));
    let mut t = leecher(shared.then_some(&counts), 1);
    let other = partial(PIECES, |i| i == 4 || i == 5);
    peer(&mut t, Time::ZERO, 2, vec![PeerMessage::Bitfield(other)]);
    let acts = peer(&mut t, Time::ZERO, 1, msgs);
    t.check_invariants();
    let keys: Vec<u32> = (0..PIECES)
        .map(|i| t.picker.bucket_key(PieceIndex(i)))
        .collect();
    if shared {
        let got: Vec<u32> = (0..PIECES).map(|i| counts.count(PieceIndex(i))).collect();
        assert_eq!(got, keys, "shared counts != the picker's keys");
    }
    (keys, acts)
}

fn interest(acts: &[Action]) -> Vec<&PeerMessage> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send {
                peer: PeerKey(1),
                msg: m @ (PeerMessage::Interested | PeerMessage::NotInterested),
            } => Some(m),
            _ => None,
        })
        .collect()
}

/// aria2 sends `bitfield` again mid-connection: like libtorrent we take it as the peer's
/// whole set (not a protocol violation), so the counts lose what the earlier bitfield and
/// `have`s announced and gain only the new set, exactly.
#[test]
fn a_later_bitfield_replaces_the_peers_set_exactly() {
    for shared in [false, true] {
        let msgs = vec![
            PeerMessage::Bitfield(partial(PIECES, |i| i == 3 || i == 4)),
            PeerMessage::Have(PieceIndex(6)),
            PeerMessage::Bitfield(partial(PIECES, |i| i == 4 || i == 7 || i == 8)),
        ];
        let (keys, acts) = counts_after(shared, msgs);
        let mut want = [0u32; PIECES as usize];
        for i in [4, 4, 5, 7, 8] {
            want[i] += 1;
        }
        assert_eq!(keys, want, "shared {shared}");
        assert_eq!(
            interest(&acts),
            [&PeerMessage::Interested],
            "shared {shared}"
        );

        // A later empty set (bitfield or BEP 6 `have none`) takes everything back and
        // withdraws our interest; `have all` then counts every piece once.
        for empty in [
            PeerMessage::Bitfield(Bitfield::new(PIECES)),
            PeerMessage::HaveNone,
        ] {
            let msgs = vec![
                PeerMessage::HaveAll,
                PeerMessage::Have(PieceIndex(2)),
                empty,
            ];
            let (keys, acts) = counts_after(shared, msgs.clone());
            let mut want = [0u32; PIECES as usize];
            want[4] = 1;
            want[5] = 1;
            assert_eq!(keys, want, "shared {shared} {msgs:?}");
            let not = [&PeerMessage::Interested, &PeerMessage::NotInterested];
            assert_eq!(interest(&acts), not, "shared {shared}");

            let mut msgs = msgs;
            msgs.push(PeerMessage::HaveAll);
            let (keys, acts) = counts_after(shared, msgs);
            let mut want = [1u32; PIECES as usize];
            want[4] = 2;
            want[5] = 2;
            assert_eq!(keys, want);
            let again = [
                &PeerMessage::Interested,
                &PeerMessage::NotInterested,
                &PeerMessage::Interested,
            ];
            assert_eq!(interest(&acts), again, "shared {shared}");
        }
    }
}

/// One step of the property test: on torrent `t`, peer `k`.
#[derive(Debug, Clone)]
enum Op {
    Connect,
    Msg(PeerMessage),
    Disconnect,
}

fn any_op() -> impl Strategy<Value = Op> {
    let bitfield = (any::<u16>(), 15u32..17).prop_map(|(m, n)| {
        let mut b = Bitfield::new(n);
        (0..n.min(16)).filter(|i| m >> i & 1 == 1).for_each(|i| {
            b.set(PieceIndex(i));
        });
        PeerMessage::Bitfield(b)
    });
    prop_oneof![
        2 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        1 => Just(Op::Msg(PeerMessage::HaveAll)),
        1 => Just(Op::Msg(PeerMessage::HaveNone)),
        1 => Just(Op::Msg(PeerMessage::Unchoke)),
        2 => bitfield.prop_map(Op::Msg),
        // 16 and 17 are out of range: a protocol violation.
        4 => (0u32..18).prop_map(|p| Op::Msg(PeerMessage::Have(PieceIndex(p)))),
    ]
}

/// Panics unless `counts` is the sum over every torrent's connected peers' bitfields.
fn check_counts(counts: &Availability, torrents: &[Torrent]) {
    let mut sum = [0u32; PIECES as usize];
    for t in torrents {
        for p in t.peers.values() {
            for i in p.have.iter_ones() {
                sum[i.0 as usize] += 1;
            }
        }
        t.check_invariants();
    }
    let got: Vec<u32> = (0..PIECES).map(|i| counts.count(PieceIndex(i))).collect();
    assert_eq!(
        got, sum,
        "shared counts != sum of connected peers' bitfields"
    );
}

proptest! {
    /// Under any sequence of connects, bitfields, haves (duplicate, late, out of range),
    /// repeated bitfields and disconnects over 2-3 torrents, the shared counts equal the
    /// sum of the connected peers' bitfields; after a resync every torrent's rarest-first
    /// buckets (its untouched pieces) are keyed by them.
    #[test]
    fn shared_counts_are_the_sum_of_connected_bitfields(
        workers in 2usize..4,
        ops in proptest::collection::vec((0usize..3, 0u64..4, any_op()), 1..120),
    ) {
        let counts = Arc::new(Availability::new(PIECES));
        let mut ts: Vec<Torrent> =
            (0..workers).map(|w| leecher(Some(&counts), w as u64)).collect();
        let mut now = Time::ZERO;
        for (w, k, op) in ops {
            let t = &mut ts[w % workers];
            let key = PeerKey(k);
            match op {
                Op::Connect => t.handle_peer_connected(now, key, caps(true, 2 * BLOCK)),
                Op::Msg(m) => {
                    let _ = t.handle_message(now, key, m);
                }
                Op::Disconnect => t.handle_peer_disconnected(now, key),
            }
            drain(t);
            check_counts(&counts, &ts);
            now += Duration::from_millis(7);
        }
        for t in &mut ts {
            t.picker.resync_availability(now + Duration::from_secs(1));
            for p in (0..PIECES).map(PieceIndex).filter(|&p| t.picker.is_untouched(p)) {
                prop_assert_eq!(t.picker.bucket_key(p), counts.count(p));
            }
            t.check_invariants();
        }
    }
}
