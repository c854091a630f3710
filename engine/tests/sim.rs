//! Simulation tests: small swarms over many seeds. A failure names the seed to replay with
//! `p2pe sim --seed K` and the same parameters.

use p2pe::sim::{self, ChurnSpec, Discovery, Report, SimConfig, Strategy};

const SEEDS: u64 = 20;

/// The fleet-speed frozen-peer swarm (40 Gbit/s links): peers, file size, churn, seeds.
const FLEET_PEERS: u32 = 60;
const FLEET_SIZE_BYTES: u64 = 32 << 20;
const FLEET_FREEZE: &str = "freeze=0.1";
const FLEET_SEEDS: u64 = 10;

/// 30 peers, 8 MiB in 256 KiB pieces, 1 Gbit/s links, 200 µs latency.
fn small(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(30, 8 << 20, 125_000_000);
    c.piece_len_bytes = 256 << 10;
    c.block_len_bytes = 256 << 10;
    c.connections = 8;
    c.seed = seed;
    c.max_time = std::time::Duration::from_secs(120);
    c
}

fn run(c: &SimConfig) -> Report {
    match sim::run(c) {
        Ok(r) => r,
        Err(e) => panic!("seed {}: {e}", c.seed),
    }
}

/// What must hold in every run: everyone expected finished, nothing corrupt spread, the bound
/// holds.
fn check_sound(c: &SimConfig, r: &Report) {
    let seed = c.seed;
    assert_eq!(
        r.incomplete_peers, 0,
        "seed {seed}: incomplete peers: {r:?}"
    );
    assert_eq!(r.integrity_violations, 0, "seed {seed}: integrity: {r:?}");
    assert_eq!(r.protocol_errors, 0, "seed {seed}: protocol errors: {r:?}");
    assert!(
        r.total_s >= r.d_p2p_s * (1.0 - 1e-9),
        "seed {seed}: beat the lower bound: {r:?}"
    );
}

#[test]
fn p2p_every_peer_completes_over_many_seeds() {
    for seed in 0..SEEDS {
        let c = small(seed);
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers, "seed {seed}: {r:?}");
        assert_eq!(r.hash_failures, 0, "seed {seed}: {r:?}");
    }
}

#[test]
fn p2p_with_16kib_blocks_completes() {
    for seed in 0..4 {
        let mut c = small(seed);
        c.peers = 12;
        c.size_bytes = 2 << 20;
        c.block_len_bytes = 16 << 10;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers, "seed {seed}: {r:?}");
    }
}

#[test]
fn same_seed_same_report() {
    for seed in [3, 11] {
        let mut c = small(seed);
        c.liars = 2;
        c.churn = ChurnSpec::parse("leave=0.1,join=0.1,origin-leave").unwrap();
        let a = run(&c).without_wall_time();
        let b = run(&c).without_wall_time();
        assert_eq!(a, b, "seed {seed}: two runs differ");
    }
    let a = run(&small(1)).without_wall_time();
    let b = run(&small(2)).without_wall_time();
    assert_ne!(
        a.events, b.events,
        "different seeds should differ somewhere"
    );
}

#[test]
fn liars_never_corrupt_honest_peers() {
    let (mut failures, mut bans) = (0, 0);
    for seed in 0..SEEDS {
        let mut c = small(seed);
        c.liars = 4;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers - c.liars, "seed {seed}: {r:?}");
        failures += r.hash_failures;
        bans += r.bans;
    }
    // The lies were actually told and caught (not just avoided by luck).
    assert!(
        failures > 0 && bans > 0,
        "{failures} hash failures, {bans} bans"
    );
}

#[test]
fn churn_still_completes() {
    for seed in 0..SEEDS {
        let mut c = small(seed);
        c.churn = ChurnSpec::parse("leave=0.2,join=0.2,origin-leave").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.peers_left + r.peers_joined, 12, "seed {seed}: {r:?}");
        assert!(
            r.origin_left_s.is_some(),
            "seed {seed}: origin stayed: {r:?}"
        );
        // 30 peers - 6 leavers + 6 joiners.
        assert_eq!(r.completed_peers, 30, "seed {seed}: {r:?}");
    }
}

#[test]
fn frozen_peers_do_not_stall_the_others() {
    // Issue 11: peers that freeze mid-transfer (no FIN: connections stay open, nothing is
    // sent or read) must not stop anyone else, nor slow the run much.
    for seed in 0..SEEDS {
        let base = run(&small(seed));
        let mut c = small(seed);
        c.churn = ChurnSpec::parse("freeze=0.2").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.peers_frozen, 6, "seed {seed}: {r:?}");
        assert_eq!(r.completed_peers, 24, "seed {seed}: {r:?}");
        // Measured: within 10 % of the run without them; 2x only a stall exceeds.
        assert!(
            r.ratio <= 2.0 * base.ratio,
            "seed {seed}: ratio {} vs {} without frozen peers",
            r.ratio,
            base.ratio
        );
    }
}

/// At fleet speed a frozen peer holding a request for a piece another peer still lacks
/// must not make that peer wait for anti-snubbing (2 s floor, while the swarm takes tens of
/// ms): its requests stall within tens of ms and are requested from responsive peers
/// (`core::torrent::stall`). Before that, seed 9 here had one peer finish at 61 s, the
/// median at 0.013 s (its last piece held by two frozen peers; `p2pe sim --peers 100 --size
/// 200MB --uplink 40Gbit --churn freeze=0.05`: 3.0 s vs 0.05 s). Simulated times only:
/// every peer that finished within a small multiple of the median (measured: at most 2x).
#[test]
fn frozen_peers_hold_up_nobody_at_fleet_speed() {
    for seed in 0..FLEET_SEEDS {
        let mut c = SimConfig::new(FLEET_PEERS, FLEET_SIZE_BYTES, 5_000_000_000);
        c.seed = seed;
        c.max_time = std::time::Duration::from_secs(60);
        c.churn = ChurnSpec::parse(FLEET_FREEZE).unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert!(
            r.max_s <= 3.0 * r.median_s,
            "seed {seed}: the last peer finished at {} s, the median at {} s: {r:?}",
            r.max_s,
            r.median_s
        );
    }
}

#[test]
fn frozen_peers_with_other_churn_still_complete() {
    for seed in 0..SEEDS {
        let mut c = small(seed);
        c.churn = ChurnSpec::parse("freeze=0.1,leave=0.1,join=0.1,origin-leave").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.peers_frozen, 3, "seed {seed}: {r:?}");
        // 30 peers - 3 leavers - 3 frozen + 3 joiners.
        assert_eq!(r.completed_peers, 27, "seed {seed}: {r:?}");
    }
}

#[test]
fn client_server_is_exact() {
    for peers in [1, 7, 50] {
        let mut c = SimConfig::new(peers, 100_000_000, 1_250_000_000);
        c.strategy = Strategy::ClientServer;
        let r = run(&c);
        let expected = f64::from(peers) * 100_000_000.0 / 1_250_000_000.0 + 200e-6;
        assert!(
            (r.total_s - expected).abs() < 1e-6,
            "{peers} peers: {} vs {expected}",
            r.total_s
        );
        assert!(r.total_s >= r.d_p2p_s);
    }
}

#[test]
fn p2p_with_slow_peers_completes_and_reports_them() {
    for seed in 0..4 {
        let mut c = small(seed);
        c.peers = 12;
        c.slow_peers = sim::SlowPeers {
            count: 3,
            uplink_bytes_per_s: 12_500_000,
            downlink_bytes_per_s: 12_500_000,
        };
        let r = run(&c);
        check_sound(&c, &r);
        let (slow, regular) = (r.slow.unwrap(), r.regular.unwrap());
        assert_eq!((slow.completed, regular.completed), (3, 9), "seed {seed}");
        // The slow ones cannot beat F/d_slow; the bound is theirs.
        let f_over_d = (8u64 << 20) as f64 / 12.5e6;
        assert!(slow.min_s >= f_over_d, "seed {seed}: {r:?}");
        assert!((r.d_p2p_s - f_over_d).abs() < 1e-9, "seed {seed}: {r:?}");
        assert!(regular.max_s < slow.max_s, "seed {seed}: {r:?}");
    }
}

#[test]
fn p2p_with_socket_buffers_completes() {
    for seed in 0..4 {
        let mut c = small(seed);
        c.send_buffer_bytes = 1 << 20;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers, "seed {seed}: {r:?}");
    }
    // The model changes the run (blocks count as sent earlier). The whole report is
    // compared: the event counts alone can coincide (seed 1 with stall checks: 25,297
    // events both ways, ratios 2.35 and 2.67).
    let mut c = small(1);
    let a = run(&c).without_wall_time();
    c.send_buffer_bytes = 1 << 20;
    let b = run(&c).without_wall_time();
    assert_ne!(a, b);
}

#[test]
fn p2p_with_uneven_sharing_completes_and_replays() {
    for seed in 0..4 {
        let mut c = small(seed);
        c.sharing_jitter = 0.6;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers, "seed {seed}: {r:?}");
        assert_eq!(
            r.without_wall_time(),
            run(&c).without_wall_time(),
            "seed {seed}"
        );
    }
    let mut c = small(1);
    c.sharing_jitter = 1.5;
    assert!(sim::run(&c).is_err(), "jitter above 1 is rejected");
}

/// 24 peers in 3 racks at 4:1 (rack uplink 2 Gbit/s), 8 MiB: rack-aware, each piece
/// crosses between racks about once (at least R - 1 = 2 copies when the origin sends one);
/// rack-oblivious sends several times more across, and is slower against the topology
/// bound. Both complete soundly and never beat D_topo.
#[test]
fn racks_keep_pieces_inside_and_oblivious_crosses_more() {
    for seed in 1..=4 {
        let mut c = small(seed);
        c.peers = 24;
        c.connections = 8;
        c.racks = Some(sim::RackSpec {
            racks: 3,
            oversubscription: 4.0,
            cross_connections: 2,
            ..sim::RackSpec::default()
        });
        let aware = run(&c);
        check_sound(&c, &aware);
        assert!(
            aware.total_s >= aware.d_topo_s * (1.0 - 1e-9),
            "seed {seed}: {aware:?}"
        );
        assert!(
            aware.cross_rack_copies <= 1.1 * 2.0,
            "seed {seed}: cross-rack {} F: {aware:?}",
            aware.cross_rack_copies
        );
        if let Some(s) = c.racks.as_mut() {
            s.oblivious = true;
        }
        let oblivious = run(&c);
        check_sound(&c, &oblivious);
        assert!(
            oblivious.cross_rack_copies > 2.0 * aware.cross_rack_copies,
            "seed {seed}: oblivious {} F vs aware {} F",
            oblivious.cross_rack_copies,
            aware.cross_rack_copies
        );
        assert!(
            oblivious.ratio_topo > aware.ratio_topo,
            "seed {seed}: oblivious {oblivious:?} aware {aware:?}"
        );
    }
}

/// Frozen peers in a rack-aware swarm (3 racks at 4:1): a frozen rack-mate that holds
/// the rack's only copy of a piece, or imports it, must not stall its rack. It is taken out
/// of the rack view after the 2 s snub floor, so the run ends within a few seconds.
/// Without that, 8 peers waited for the 60 s snub cap (seed 2).
#[test]
fn frozen_rack_mates_do_not_stall_their_rack() {
    for seed in 0..SEEDS {
        let mut c = small(seed);
        c.connections = 8;
        c.racks = Some(sim::RackSpec {
            racks: 3,
            oversubscription: 4.0,
            ..sim::RackSpec::default()
        });
        c.churn = ChurnSpec::parse("freeze=0.125").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, 26, "seed {seed}: {r:?}");
        assert!(
            r.total_s < 5.0,
            "seed {seed}: stalled until {} s",
            r.total_s
        );
    }
}

/// Deferred far-end refills (the default) against immediate ones (the exact water-fill):
/// both complete soundly, each replays from its seed, and over 8 seeds their mean ratio
/// to D_p2p differs by less than 1 % (the deferred model leaves some capacity idle for at
/// most the delay after each change, so it is the slower one within noise).
#[test]
fn deferred_far_refills_stay_within_a_percent_of_the_exact_model() {
    let (mut exact_sum, mut deferred_sum) = (0.0, 0.0);
    for seed in 0..8 {
        let mut c = small(seed);
        let deferred = run(&c);
        check_sound(&c, &deferred);
        c.far_refill_delay = Some(std::time::Duration::ZERO);
        let exact = run(&c);
        check_sound(&c, &exact);
        assert_eq!(exact.completed_peers, c.peers, "seed {seed}: {exact:?}");
        assert_eq!(
            exact.without_wall_time(),
            run(&c).without_wall_time(),
            "seed {seed}"
        );
        assert_ne!(exact.events, deferred.events, "seed {seed}: the knob acts");
        exact_sum += exact.ratio;
        deferred_sum += deferred.ratio;
    }
    let change = deferred_sum / exact_sum - 1.0;
    assert!(
        change.abs() < 0.01,
        "mean ratio exact {} deferred {}",
        exact_sum / 8.0,
        deferred_sum / 8.0
    );
}

/// 60 peers, 8 MiB, 1 Gbit/s, with tracker discovery and a bound of 30 connections.
fn tracker_swarm(seed: u64) -> SimConfig {
    let mut c = small(seed);
    c.peers = 60;
    c.discovery = Discovery::Tracker;
    c.discovery_config.max_peers = 30;
    c
}

#[test]
fn tracker_discovery_completes_near_the_connected_run() {
    // The same swarm found through the tracker and the core's dial policy instead of
    // connected at start: everyone completes, within 2.5x of the connected run's ratio
    // (measured 1.67-1.92x on these seeds). It is slower because the run (~0.3 s) ends
    // before any PEX round (2 s), re-announce or redial (0.4 s): early announcers fill
    // up with dials from later ones and refuse the rest, and the last announcers, whom
    // no answer names yet, keep only the dials that found room (perf/sim.md).
    for seed in 0..4 {
        let c = tracker_swarm(seed);
        let r = run(&c);
        check_sound(&c, &r);
        let mut connected = c.clone();
        connected.discovery = Discovery::Connected;
        let base = run(&connected);
        assert!(
            r.ratio <= 2.5 * base.ratio,
            "seed {seed}: tracker {} vs connected {}",
            r.ratio,
            base.ratio
        );
        assert_eq!((base.dials, base.announces), (0, 0), "seed {seed}");
        // Every connection but the origin's came from a dial the policy allowed, and no
        // peer went past the bound (the configured origin may add one).
        assert!(
            r.connections_made >= u64::from(c.peers),
            "seed {seed}: {r:?}"
        );
        assert!(r.dials >= r.connections_made + r.refused_dials + r.failed_dials);
        assert!(
            r.peak_peer_connections <= c.discovery_config.max_peers + 1,
            "seed {seed}: {r:?}"
        );
        assert!(r.peak_peer_connections >= 10, "seed {seed}: {r:?}");
        assert!(r.tracker_learned > 0 && r.announces >= u64::from(c.peers));
        // No one left: no dial found its peer gone.
        assert_eq!(r.failed_dials, 0, "seed {seed}: {r:?}");
        let again = run(&c).without_wall_time();
        assert_eq!(again, r.without_wall_time(), "seed {seed}: replay differs");
    }
}

/// [`tracker_swarm`] with 16 MiB over 100 Mbit/s links and PEX every 0.25 s: a ~1.5 s run
/// in which back-offs and PEX rounds happen.
fn slow_tracker_swarm(seed: u64) -> SimConfig {
    let mut c = tracker_swarm(seed);
    c.size_bytes = 16 << 20;
    c.uplink_bytes_per_s = 12_500_000;
    c.seeder_uplink_bytes_per_s = 12_500_000;
    c.downlink_bytes_per_s = 12_500_000;
    c.discovery_config.pex_interval = std::time::Duration::from_millis(250);
    c
}

#[test]
fn tracker_discovery_redials_after_churn_and_finds_joiners() {
    // 100 Mbit/s links: the run lasts ~1.5 s, so back-offs (0.4 s, 0.8 s) and PEX rounds
    // (every 0.25 s here) happen within it. Leavers' neighbours redial them and fail,
    // back off and retire them; joiners are dialled from the tracker's answers and PEX.
    let (mut failed, mut pex, mut joiners) = (0, 0, 0);
    for seed in 0..3 {
        let mut c = slow_tracker_swarm(seed);
        c.churn = ChurnSpec::parse("leave=0.2,join=0.2").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!((r.peers_left, r.peers_joined), (12, 12), "seed {seed}");
        assert_eq!(r.completed_peers, 60, "seed {seed}: {r:?}");
        // Back-off: each neighbour fails at most max_failures (3) times per leaver
        // before retiring it, never more.
        let neighbours = u64::from(c.discovery_config.max_peers + 1);
        assert!(
            r.failed_dials <= 3 * u64::from(r.peers_left) * neighbours,
            "seed {seed}: {r:?}"
        );
        failed += r.failed_dials;
        pex += r.pex_learned;
        joiners += r.joiner_connections;
    }
    assert!(failed > 0, "no dial ever found a leaver gone");
    assert!(pex > 0, "nothing learned over PEX");
    assert!(joiners >= 12 * 3, "joiners found too few peers: {joiners}");
}

#[test]
fn tracker_discovery_times_out_dials_to_frozen_peers() {
    // A frozen peer's kernel still accepts: the dial holds the dialler's slot until the
    // slot policy's handshake timeout (shortened here so it falls inside the ~1.5 s
    // run), then backs off like any failed dial; the honest peers all complete.
    let mut timed_out = 0;
    for seed in 0..3 {
        let mut c = slow_tracker_swarm(seed);
        c.discovery_config.slots.handshake_timeout = std::time::Duration::from_millis(100);
        c.churn = ChurnSpec::parse("freeze=0.2").unwrap();
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.peers_frozen, 12, "seed {seed}");
        assert_eq!(r.completed_peers, 48, "seed {seed}: {r:?}");
        assert!(r.timed_out_dials <= r.failed_dials, "seed {seed}: {r:?}");
        let neighbours = u64::from(c.discovery_config.max_peers + 1);
        assert!(
            r.failed_dials <= 3 * u64::from(r.peers_frozen) * neighbours,
            "seed {seed}: {r:?}"
        );
        timed_out += r.timed_out_dials;
        assert_eq!(
            run(&c).without_wall_time(),
            r.without_wall_time(),
            "seed {seed}: replay differs"
        );
    }
    assert!(timed_out > 0, "no dial ever reached a frozen peer");
}

#[test]
fn a_full_peer_gives_an_idle_connection_s_slot_to_a_new_dial() {
    // With a bound of 6 connections, dials reach full peers. With no grace period a
    // connection that has neither moved payload nor shown interest yet is idle, and a
    // full peer closes its oldest such connection for the newcomer (the node's inbound
    // rule, core::slots); with a grace longer than the run nothing is ever reclaimed.
    let (mut reclaimed, mut refused) = (0, 0);
    for seed in 0..3 {
        let mut c = tracker_swarm(seed);
        c.discovery_config.max_peers = 6;
        c.discovery_config.slots.reclaim_grace = std::time::Duration::ZERO;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, 60, "seed {seed}: {r:?}");
        assert!(r.peak_peer_connections <= 7, "seed {seed}: {r:?}");
        reclaimed += r.reclaimed_slots;
        c.discovery_config.slots.reclaim_grace = std::time::Duration::from_secs(3600);
        let never = run(&c);
        check_sound(&c, &never);
        assert_eq!(never.reclaimed_slots, 0, "seed {seed}: {never:?}");
        refused += never.refused_dials;
    }
    assert!(reclaimed > 0, "no full peer ever gave up an idle slot");
    assert!(refused > 0, "no dial ever found a peer full");
}

/// Relay parts (cut-through, issue 13 item 1): 15 peers, 64 MiB in 256 KiB pieces relayed
/// in 64 KiB parts, 100 Mbit/s. Every run is sound (nothing unverified is ever sent:
/// `integrity_violations` counts a block whose parts the sender had not verified), liars
/// included, and the start is busier than with whole pieces: the first tenth of D_p2p
/// moves more bytes, since a peer forwards a piece's first part while the rest arrives.
#[test]
fn relay_parts_are_sound_and_start_sooner() {
    let bench_row = |seed: u64, relay: u32| {
        let mut c = SimConfig::new(15, 64 << 20, 11_955_086);
        c.seed = seed;
        c.relay_part_bytes = relay;
        c.max_time = std::time::Duration::from_secs(120);
        c
    };
    for seed in 1..=3 {
        let whole = bench_row(seed, 0);
        let parts = bench_row(seed, 64 << 10);
        let (rw, rp) = (run(&whole), run(&parts));
        check_sound(&whole, &rw);
        check_sound(&parts, &rp);
        let first = |r: &Report| r.upload_timeline.first().copied().unwrap_or(0.0);
        assert!(
            first(&rp) > first(&rw) * 1.25,
            "seed {seed}: first bin {} with parts, {} whole",
            first(&rp),
            first(&rw)
        );
    }
    for seed in 0..5 {
        let mut c = small(seed);
        c.relay_part_bytes = 64 << 10;
        c.liars = 4;
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, c.peers - c.liars, "seed {seed}: {r:?}");
    }
}

/// A relay that announced a piece early and then froze must not hold the swarm: once its
/// downstream relays find their source stalled they reject the requests waiting on it.
/// Before that rule, `p2pe sim --peers 16 --size 64MiB --uplink 1Gbit --churn freeze=0.125
/// --relay-part 64KiB --seed 3` took 5.63 × D_p2p (whole pieces: 1.24; perf/sim.md).
#[test]
fn relay_parts_survive_frozen_relays() {
    for seed in 1..=6 {
        let mut c = SimConfig::new(16, 64 << 20, 125_000_000);
        c.seed = seed;
        c.relay_part_bytes = 64 << 10;
        c.churn = ChurnSpec::parse("freeze=0.125").unwrap();
        c.max_time = std::time::Duration::from_secs(120);
        let r = run(&c);
        check_sound(&c, &r);
        assert_eq!(r.completed_peers, 14, "seed {seed}: {r:?}");
        // Measured 1.09-1.15 (whole pieces 1.11-1.24); a stall is several times D.
        assert!(r.ratio < 1.6, "seed {seed}: ratio {}", r.ratio);
    }
}
