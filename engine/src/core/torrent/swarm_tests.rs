//! Multi-node tests on the in-test pump: bans, endgame, random swarms (property test)
//! and the distinct-piece seeder policy.
// Sweeps and scale runs that only print live in `p2pe sim` (same core, every
// knob a flag), not here: a test here asserts.

use super::tests::{caps, config, partial, Pump, LIMIT};
use super::*;
use crate::core::{ChokerConfig, SeederPolicy, BLOCK_LEN_BYTES as BLOCK};
use proptest::prelude::*;
use std::time::Duration;

#[test]
fn liar_is_banned_and_leecher_completes_from_honest_seeder() {
    let c = config(24, 2 * BLOCK);
    let honest = Torrent::new(c.clone(), Bitfield::full(24), 1);
    let liar = Torrent::new(c.clone(), Bitfield::full(24), 2);
    let leecher = Torrent::new(c, Bitfield::new(24), 3);
    let mut pump = Pump::new(vec![honest, liar, leecher]);
    pump.liars.insert(1);
    // Whole-piece requests: each piece has exactly one contributor to blame.
    pump.connect(0, 2, caps(true, 2 * BLOCK));
    pump.connect(1, 2, caps(true, 2 * BLOCK));
    assert!(pump.run_until(1_000_000, LIMIT, |p| p.nodes[2].is_complete()));
    assert!(pump.disconnects.contains(&(2, 1, DisconnectReason::Banned)));
    let s = pump.nodes[2].stats();
    assert_eq!(s.peers_banned, 1);
    // Pieces already in flight from the liar may fail after the third strike too.
    assert!(s.hash_failures >= pump.nodes[2].config().max_hash_failures_per_peer);
    assert!(!pump.disconnects.contains(&(2, 0, DisconnectReason::Banned)));
}

#[test]
fn endgame_requests_duplicates_and_cancels() {
    let mut c = config(8, 4 * BLOCK);
    c.endgame_max_requesters = 2;
    let s1 = Torrent::new(c.clone(), Bitfield::full(8), 1);
    let s2 = Torrent::new(c.clone(), Bitfield::full(8), 2);
    let l = Torrent::new(c, Bitfield::new(8), 3);
    let mut pump = Pump::new(vec![s1, s2, l]);
    pump.latency = Duration::from_micros(200);
    pump.uplink_bytes_per_s = Some(1e8);
    pump.connect(0, 2, caps(true, BLOCK));
    pump.connect(1, 2, caps(true, BLOCK));
    let mut saw_endgame = false;
    assert!(pump.run_until(1_000_000, LIMIT, |p| {
        saw_endgame |= p.nodes[2].stats().endgame;
        p.nodes[2].is_complete()
    }));
    assert!(saw_endgame, "leecher never entered endgame");
    assert!(pump.cancels_delivered > 0, "no cancel sent in endgame");
    // Duplicates are bounded by the endgame: at most a pipeline's worth per peer.
    let st = pump.nodes[2].stats();
    assert!(
        st.wasted_bytes <= 2 * pump.nodes[2].config().pipeline_bytes,
        "{st:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random swarms (one seeder, random partial peers, random capabilities, latencies
    /// and choker slots) always complete, with every invariant checked after every event:
    /// availability = sum of peer bitfields, a block requested from at most one peer
    /// outside endgame, never more unchoked peers than slots + 1.
    #[test]
    fn random_swarms_complete_with_invariants(
        nodes in 2usize..6,
        pieces in 1u32..20,
        piece_blocks in 1u32..4,
        short_tail in 0u64..1000,
        haves in proptest::collection::vec(any::<u32>(), 6),
        links in proptest::collection::vec((any::<bool>(), any::<bool>()), 15),
        slots in 1usize..4,
        jitter_us in 0u64..300,
        seed in any::<u64>(),
    ) {
        let piece_len = piece_blocks * BLOCK;
        let total = u64::from(pieces) * u64::from(piece_len) - short_tail.min(u64::from(piece_len) - 1);
        let mut c = TorrentConfig::new(total, piece_len);
        c.choker = ChokerConfig { unchoke_slots: slots, ..ChokerConfig::datacenter() };
        c.pipeline_bytes = u64::from(BLOCK) * (1 + seed % 4);
        let ts: Vec<Torrent> = (0..nodes).map(|i| {
            let have = if i == 0 {
                Bitfield::full(pieces)
            } else {
                partial(pieces, |p| haves[i].rotate_left(p) & 3 == 0)
            };
            Torrent::new(c.clone(), have, seed ^ i as u64)
        }).collect();
        let mut pump = Pump::new(ts);
        pump.seed(seed);
        pump.latency = Duration::from_micros(100);
        pump.jitter = Duration::from_micros(jitter_us);
        pump.uplink_bytes_per_s = Some(1e9);
        let mut k = 0;
        for a in 0..nodes {
            for b in a + 1..nodes {
                let (fast, whole) = links[k % links.len()];
                k += 1;
                pump.connect(a, b, caps(fast, if whole { piece_len } else { BLOCK }));
            }
        }
        let done = pump.run_until(2_000_000, LIMIT, |p| p.nodes.iter().all(|n| n.is_complete()));
        prop_assert!(done, "swarm did not complete (seed {seed})");
    }
}

/// Origin + `leechers` full mesh, whole-piece requests, uplinks of equal rate; returns
/// (origin piece uploads / piece count, completion time / lower bound).
fn distinct_run(policy: SeederPolicy, leechers: usize, pieces: u32, seed: u64) -> (f64, f64) {
    let piece_len = 4 * BLOCK;
    let mut c = TorrentConfig::new(u64::from(pieces) * u64::from(piece_len), piece_len);
    c.choker = ChokerConfig::datacenter();
    c.seeder_policy = policy;
    // As for 4 MiB pieces (the 256 KiB floor of the defaults would be 4 pieces here).
    c.pipeline_bytes = u64::from(piece_len);
    c.upload_in_flight_bytes = u64::from(piece_len);
    let mut ts = vec![Torrent::new(c.clone(), Bitfield::full(pieces), seed)];
    ts.extend(
        (0..leechers).map(|i| Torrent::new(c.clone(), Bitfield::new(pieces), seed + 1 + i as u64)),
    );
    let mut pump = Pump::new(ts);
    pump.seed(seed);
    pump.check = false;
    let rate = 1e9;
    pump.latency = Duration::from_micros(50);
    pump.jitter = Duration::from_micros(20);
    pump.uplink_bytes_per_s = Some(rate);
    for a in 0..=leechers {
        for b in a + 1..=leechers {
            pump.connect(a, b, caps(true, piece_len));
        }
    }
    let mut done_at = vec![None; leechers + 1];
    let mut marks = Vec::new();
    assert!(pump.run_until(50_000_000, LIMIT, |p| {
        for (i, n) in p.nodes.iter().enumerate() {
            if done_at[i].is_none() && n.is_complete() {
                done_at[i] = Some(p.now);
            }
        }
        let have: u32 = p.nodes.iter().map(|n| n.have().count_ones()).sum();
        if marks.len() < 40 && p.now.as_nanos() >= marks.len() as u64 * 250_000 {
            marks.push((p.now.as_nanos() / 1000, have));
        }
        p.nodes.iter().all(|n| n.is_complete())
    }));
    println!("progress (us, pieces held): {marks:?}");
    let mut d: Vec<u64> = done_at
        .iter()
        .flatten()
        .map(|t| t.as_nanos() / 1000)
        .collect();
    d.sort();
    println!("completion us: {d:?}");
    let f = f64::from(pieces) * f64::from(piece_len);
    let n = leechers as f64;
    // D_p2p = max(F/u_s, F/d_min, N F / (u_s + sum u_i)); downlinks are unlimited here.
    let bound = (f / rate).max(n * f / (rate * (n + 1.0)));
    let origin = pump.nodes[0].stats();
    let leecher_busy: f64 = pump.busy[1..].iter().map(|d| d.as_secs_f64()).sum::<f64>() / n;
    println!(
        "leecher uplink busy {:.3} x bound on average; ideal {:.3}",
        leecher_busy / bound,
        (n - 1.0) * f / rate / n / bound
    );
    let wasted: u64 = pump.nodes.iter().map(|n| n.stats().wasted_bytes).sum();
    println!(
        "{policy:?}: origin {origin:?}, leechers wasted {wasted} B, origin busy until {:.3} x bound, done {:.3}",
        pump.last_block_sent[0].as_secs_f64() / bound,
        pump.now.as_secs_f64() / bound
    );
    (
        origin.uploaded_bytes as f64 / f,
        pump.now.as_secs_f64() / bound,
    )
}

#[test]
fn distinct_first_origin_uploads_about_one_copy() {
    let (distinct, t_distinct) = distinct_run(SeederPolicy::DistinctFirst, 20, 120, 7);
    let (plain, t_plain) = distinct_run(SeederPolicy::Plain, 20, 120, 7);
    println!("origin copies: distinct-first {distinct:.3} (time {t_distinct:.3} x bound), plain {plain:.3} (time {t_plain:.3} x bound)");
    assert!(
        distinct < plain,
        "distinct-first {distinct} !< plain {plain}"
    );
    assert!(
        distinct < 1.5,
        "distinct-first origin uploaded {distinct} copies"
    );
}
