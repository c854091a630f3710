//! Picker tests: policy order, endgame, and invariants under random operations.

use super::*;
use proptest::prelude::*;
use rand::SeedableRng;

impl Picker {
    /// Whether `piece` is needed and not started (in a rarest-first bucket).
    pub(crate) fn is_untouched(&self, piece: PieceIndex) -> bool {
        self.untouched.get(piece)
    }

    /// Panics if an invariant of the module docs is broken; `peer_haves` are the
    /// bitfields of all connected peers.
    pub(crate) fn check_invariants<'a>(
        &self,
        peer_haves: impl Iterator<Item = &'a Bitfield>,
        have: &Bitfield,
    ) {
        let mut sum = vec![0u32; self.piece_count as usize];
        for b in peer_haves {
            for p in b.iter_ones() {
                sum[p.0 as usize] += 1;
            }
        }
        // With shared counts the sum is over every torrent sharing them (checked by the
        // torrent tests that build several).
        if self.shared_availability.is_none() {
            assert_eq!(
                sum, self.availability,
                "availability != sum of peer bitfields"
            );
        }
        for (k, bucket) in self.buckets.iter().enumerate() {
            let bit = self
                .nonempty
                .get(k / 64)
                .is_some_and(|w| w >> (k % 64) & 1 == 1);
            assert_eq!(bit, !bucket.is_empty(), "bucket {k}: non-empty bit");
        }
        let mut free = 0u64;
        for i in 0..self.piece_count {
            let p = PieceIndex(i);
            let untouched = self.untouched.get(p);
            let partial = self.partial[i as usize].as_ref();
            assert!(
                !(untouched && partial.is_some()),
                "{p:?} both untouched and partial"
            );
            if have.get(p) {
                assert!(
                    !untouched && partial.is_none(),
                    "{p:?} had but still needed"
                );
                continue;
            }
            if untouched {
                let a = self.availability[i as usize] as usize;
                assert_eq!(self.buckets[a][self.pos[i as usize] as usize], p);
                free += u64::from(self.chunk_count(p));
            }
            if let (Some(c), Some(_)) = (&self.claims, partial) {
                assert!(c.get(p), "{p:?} partial but not claimed");
            }
            if let Some(pp) = partial {
                let mut counts = vec![0u8; pp.chunks.len()];
                for (_, b) in &pp.requests {
                    let (lo, hi) = chunk_range(b);
                    for c in &mut counts[lo..hi] {
                        *c += 1;
                    }
                }
                for (i, &c) in pp.chunks.iter().enumerate() {
                    if c != RECEIVED {
                        assert_eq!(c, counts[i], "{p:?} chunk {i} requester count");
                        if !self.endgame_entered {
                            assert!(c <= 1, "{p:?} chunk {i} requested twice outside endgame");
                        }
                        let cap = self.endgame_max_requesters.saturating_mul(2);
                        assert!(c <= cap, "{p:?} chunk {i}: {c} requesters");
                    }
                }
                let f = pp.chunks.iter().filter(|&&c| c == 0).count() as u32;
                assert_eq!(f, pp.free);
                free += u64::from(f);
            }
        }
        assert_eq!(free, self.free_chunks, "free chunk count");
    }
}

const B: u32 = BLOCK_LEN_BYTES;

fn cfg(pieces: u32, piece_len: u32) -> TorrentConfig {
    TorrentConfig::new(u64::from(pieces) * u64::from(piece_len), piece_len)
}

fn bits(n: u32, f: impl Fn(u32) -> bool) -> Bitfield {
    let mut b = Bitfield::new(n);
    (0..n).filter(|&i| f(i)).for_each(|i| {
        b.set(PieceIndex(i));
    });
    b
}

fn ctx<'a>(peer: u64, have: &'a Bitfield, len: u32) -> PickContext<'a> {
    PickContext {
        peer: PeerKey(peer),
        peer_have: have,
        max_request_len_bytes: len,
        suggested: &[],
        rejected: &[],
        allowed_only: None,
        random_first: false,
        endgame_ok: true,
        shadow_ok: true,
        fresh_ok: true,
        import: None,
        stalled: &NO_STALLED,
    }
}

static NO_STALLED: std::collections::BTreeSet<PeerKey> = std::collections::BTreeSet::new();

fn add(p: &mut Picker, b: &Bitfield) {
    b.iter_ones().for_each(|i| p.inc(i));
}

#[test]
fn rarest_first_then_affinity() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let c = cfg(10, 4 * B);
    let mut p = Picker::new(&c, &Bitfield::new(10), &mut rng);
    let (a, b2, c3) = (bits(10, |_| true), bits(10, |i| i < 5), bits(10, |i| i < 8));
    for x in [&a, &b2, &c3] {
        add(&mut p, x);
    }
    let first = p.pick(&ctx(1, &a, B), &mut rng).unwrap();
    assert!(
        first.piece.0 >= 8,
        "rarest pieces are 8 and 9, got {first:?}"
    );
    assert_eq!((first.offset.0, first.len_bytes), (0, B));
    // Another peer having that piece continues it before opening a new one.
    let next = p.pick(&ctx(2, &a, B), &mut rng).unwrap();
    assert_eq!((next.piece, next.offset.0), (first.piece, B));
    // A whole-piece peer takes the remaining run of the open piece in one request.
    let rest = p.pick(&ctx(3, &a, 4 * B), &mut rng).unwrap();
    assert_eq!(
        (rest.piece, rest.offset.0, rest.len_bytes),
        (first.piece, 2 * B, 2 * B)
    );
    p.check_invariants([&a, &b2, &c3].into_iter(), &Bitfield::new(10));
}

#[test]
fn suggested_pieces_come_before_rarest() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let c = cfg(10, B);
    let mut p = Picker::new(&c, &Bitfield::new(10), &mut rng);
    let (a, b2) = (bits(10, |_| true), bits(10, |i| i != 9));
    add(&mut p, &a);
    add(&mut p, &b2);
    let mut cx = ctx(1, &a, B);
    let sug = [PieceIndex(3)];
    cx.suggested = &sug;
    assert_eq!(p.pick(&cx, &mut rng).unwrap().piece, PieceIndex(3));
    let rej = [PieceIndex(9)];
    let mut cx = ctx(1, &a, B);
    cx.rejected = &rej;
    assert_ne!(
        p.pick(&cx, &mut rng).unwrap().piece,
        PieceIndex(9),
        "rejected skipped"
    );
}

#[test]
fn strict_endgame_duplicates_then_cancels() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = cfg(1, 2 * B);
    let mut p = Picker::new(&c, &Bitfield::new(1), &mut rng);
    let full = Bitfield::full(1);
    add(&mut p, &full);
    add(&mut p, &full);
    let b0 = p.pick(&ctx(1, &full, B), &mut rng).unwrap();
    assert!(!p.in_endgame());
    let b1 = p.pick(&ctx(1, &full, B), &mut rng).unwrap();
    assert!(p.in_endgame(), "every block requested");
    assert!(
        p.pick(&ctx(1, &full, B), &mut rng).is_none(),
        "never twice from one peer"
    );
    let dup = p.pick(&ctx(2, &full, B), &mut rng).unwrap();
    assert!(dup == b0 || dup == b1);
    let out = p.on_block(PeerKey(1), dup);
    assert_eq!(out.cancels, vec![(PeerKey(2), dup)]);
    let other = if dup == b0 { b1 } else { b0 };
    let out = p.on_block(PeerKey(1), other);
    assert!(out.piece_complete);
    p.check_invariants([&full, &full].into_iter(), &Bitfield::new(1));
    assert_eq!(
        p.on_verified(PieceIndex(0), true).contributors,
        vec![PeerKey(1)]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Join(u32),
    Leave(usize),
    Pick(usize, bool),
    Receive(usize, usize),
    Cancel(usize, usize),
    Verify(u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u32>().prop_map(Op::Join),
        any::<usize>().prop_map(Op::Leave),
        (any::<usize>(), any::<bool>()).prop_map(|(a, b)| Op::Pick(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Receive(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Cancel(a, b)),
        (any::<u32>(), any::<bool>()).prop_map(|(a, b)| Op::Verify(a, b)),
    ]
}

proptest! {
    /// Availability = sum of peer bitfields, a block requested from at most one peer
    /// outside endgame, chunk states consistent: after every operation of a random run.
    #[test]
    fn invariants_hold_under_random_operations(
        pieces in 1u32..12,
        chunks in 1u32..4,
        ops in proptest::collection::vec(op(), 1..120),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = cfg(pieces, chunks * B);
        let mut have = Bitfield::new(pieces);
        let mut p = Picker::new(&c, &have, &mut rng);
        // (key, bitfield, inflight)
        let mut peers: Vec<(u64, Bitfield, Vec<Block>)> = Vec::new();
        let mut next_key = 0;
        let mut complete: Vec<u32> = Vec::new();
        for op in ops {
            match op {
                Op::Join(mask) => {
                    let b = bits(pieces, |i| mask.rotate_left(i) & 1 == 1);
                    add(&mut p, &b);
                    peers.push((next_key, b, Vec::new()));
                    next_key += 1;
                }
                Op::Leave(i) if !peers.is_empty() => {
                    let (k, b, inflight) = peers.remove(i % peers.len());
                    b.iter_ones().for_each(|x| p.dec(x));
                    inflight.into_iter().for_each(|bl| p.cancel_request(PeerKey(k), bl));
                }
                Op::Pick(i, whole) if !peers.is_empty() => {
                    let n = peers.len();
                    let (k, b, inflight) = &mut peers[i % n];
                    let len = if whole { chunks * B } else { B };
                    if let Some(bl) = p.pick(&ctx(*k, b, len), &mut rng) {
                        prop_assert!(b.get(bl.piece) && !have.get(bl.piece));
                        prop_assert!(!inflight.contains(&bl));
                        inflight.push(bl);
                    }
                }
                Op::Receive(i, j) | Op::Cancel(i, j) if !peers.is_empty() => {
                    let n = peers.len();
                    let (k, _, inflight) = &mut peers[i % n];
                    if inflight.is_empty() { continue; }
                    let bl = inflight.remove(j % inflight.len());
                    let k = *k;
                    if matches!(op, Op::Receive(..)) {
                        let out = p.on_block(PeerKey(k), bl);
                        for (ok, ob) in &out.cancels {
                            for (pk, _, inf) in peers.iter_mut() {
                                if *pk == ok.0 { inf.retain(|x| x != ob); }
                            }
                        }
                        if out.piece_complete { complete.push(bl.piece.0); }
                    } else {
                        p.cancel_request(PeerKey(k), bl);
                    }
                }
                Op::Verify(i, valid) if !complete.is_empty() => {
                    let piece = complete.remove(i as usize % complete.len());
                    prop_assert!(!p.on_verified(PieceIndex(piece), valid).contributors.is_empty());
                    if valid { have.set(PieceIndex(piece)); }
                }
                _ => {}
            }
            p.check_invariants(peers.iter().map(|x| &x.1), &have);
        }
    }
}
