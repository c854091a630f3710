//! Hand-out policy and expiry of the sans-IO tracker.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::base::PeerId;
use crate::wire::tracker::Topology;

const HASH: InfoHash = InfoHash([9; 20]);

fn ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn announce(port: u16, left_bytes: u64, rack: Option<&str>, zone: Option<&str>) -> Announce {
    Announce {
        info_hash: HASH,
        peer_id: PeerId([port as u8; 20]),
        port,
        uploaded_bytes: 0,
        downloaded_bytes: 0,
        left_bytes,
        event: Event::Started,
        numwant: Some(3),
        key: 0,
        topology: Topology {
            rack: rack.map(Into::into),
            zone: zone.map(Into::into),
        },
    }
}

fn tracker() -> Tracker {
    Tracker::new(TrackerConfig::with_interval(Duration::from_secs(60)), 1)
}

fn addr(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(i), port)
}

#[test]
fn seeders_and_near_complete_first_and_never_self() {
    for seed in 0..20 {
        let mut t = Tracker::new(TrackerConfig::with_interval(Duration::from_secs(60)), seed);
        let now = Time::ZERO;
        for i in 1..=6 {
            t.handle_announce(now, ip(i), &announce(1000, 1_000_000, None, None));
        }
        t.handle_announce(now, ip(7), &announce(1000, 0, None, None)); // seeder
        t.handle_announce(now, ip(8), &announce(1000, 1_000, None, None)); // near complete
        let resp = t.handle_announce(now, ip(1), &announce(1000, 1_000_000, None, None));
        assert_eq!(
            resp.peers,
            vec![addr(7, 1000), addr(8, 1000), resp.peers[2]]
        );
        assert_ne!(resp.peers[2], addr(1, 1000));
        assert_eq!((resp.complete, resp.incomplete), (Some(1), Some(7)));
    }
}

#[test]
fn seeders_get_leechers_first() {
    let mut t = tracker();
    for i in 1..=4 {
        t.handle_announce(Time::ZERO, ip(i), &announce(1, 0, None, None));
    }
    t.handle_announce(Time::ZERO, ip(5), &announce(1, 50, None, None));
    let resp = t.handle_announce(Time::ZERO, ip(1), &announce(1, 0, None, None));
    assert_eq!(resp.peers.first(), Some(&addr(5, 1)));
}

#[test]
fn same_rack_then_same_zone_first() {
    let mut t = tracker();
    let now = Time::ZERO;
    t.handle_announce(now, ip(1), &announce(1, 0, Some("r9"), Some("z2"))); // other zone, seeder
    t.handle_announce(now, ip(2), &announce(1, 5, Some("r2"), Some("z1"))); // same zone
    t.handle_announce(now, ip(3), &announce(1, 5, Some("r1"), Some("z1"))); // same rack
    t.handle_announce(now, ip(4), &announce(1, 5, Some("r1"), Some("z3"))); // rack name reused elsewhere
    let resp = t.handle_announce(now, ip(5), &announce(1, 5, Some("r1"), Some("z1")));
    assert_eq!(resp.peers, vec![addr(3, 1), addr(2, 1), addr(1, 1)]);
}

#[test]
fn silent_peers_expire_and_stopped_leaves() {
    let mut t = tracker();
    let ttl = t.config().peer_ttl;
    t.handle_announce(Time::ZERO, ip(1), &announce(1, 5, None, None));
    t.handle_announce(Time::ZERO, ip(2), &announce(1, 5, None, None));
    let later = Time::ZERO + ttl / 2;
    t.handle_announce(later, ip(2), &announce(1, 5, None, None));
    t.handle_timeout(Time::ZERO + ttl);
    assert_eq!(t.peer_count(), 1);
    let mut stop = announce(1, 5, None, None);
    stop.event = Event::Stopped;
    let resp = t.handle_announce(later, ip(2), &stop);
    assert!(resp.peers.is_empty());
    assert_eq!(t.peer_count(), 0);
    assert_eq!(t.swarm_count(), 0);
}

#[test]
fn completion_counts_and_scrape() {
    let mut t = tracker();
    t.handle_announce(Time::ZERO, ip(1), &announce(1, 5, None, None));
    let mut done = announce(1, 0, None, None);
    done.event = Event::Completed;
    t.handle_announce(Time::ZERO, ip(1), &done);
    let stats = t.handle_scrape(&[HASH, InfoHash([0; 20])]);
    assert_eq!(
        stats[0],
        ScrapeStats {
            complete: 1,
            downloaded: 1,
            incomplete: 0
        }
    );
    assert_eq!(stats[1], ScrapeStats::default());
}

#[test]
fn large_swarm_sampling_returns_numwant_distinct_peers() {
    let mut t = tracker();
    for i in 0..3000u16 {
        let mut a = announce(i + 1, 5, None, None);
        a.numwant = Some(0);
        t.handle_announce(Time::ZERO, ip(1), &a);
    }
    let mut a = announce(1, 5, None, None);
    a.numwant = Some(50);
    let resp = t.handle_announce(Time::ZERO, ip(1), &a);
    let mut peers = resp.peers.clone();
    peers.sort();
    peers.dedup();
    assert!(peers.len() >= 45 && peers.len() <= 50, "{}", peers.len());
    assert!(!peers.contains(&addr(1, 1)));
}

fn fake(i: u32) -> (IpAddr, Announce) {
    let mut a = announce((i % 60_000) as u16 + 1, 1, None, None);
    a.numwant = Some(0);
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 60_000));
    (ip, a)
}

/// Issue 11 item 9: 100k fake peers against a cap of 10k keep at most 10k,
/// and a new peer (honest, announcing last) is still stored and answered.
#[test]
fn peer_caps_bound_memory_and_new_peers_still_get_in() {
    let mut config = TrackerConfig::with_interval(Duration::from_secs(60));
    config.max_peers_per_swarm = 10_000;
    config.max_peers = 15_000;
    config.max_swarms = 3;
    let mut t = Tracker::new(config, 7);
    let mut now = Time::ZERO;
    for i in 0..100_000 {
        now += Duration::from_millis(1);
        let (ip, a) = fake(i);
        t.handle_announce(now, ip, &a);
        assert!(t.peer_count() <= 10_000);
    }
    assert_eq!(t.peer_count(), 10_000);
    // A newcomer gets in and gets peers; the swarm stays at its cap.
    let mut honest = announce(7, 0, None, None);
    honest.numwant = Some(5);
    let r = t.handle_announce(now, ip(200), &honest);
    assert_eq!(r.peers.len(), 5);
    assert_eq!(t.peer_count(), 10_000);
    assert_eq!(
        t.handle_scrape(&[HASH])[0].complete,
        1,
        "the newcomer is stored"
    );
    // Evictions took old peers: the newest fakes are still there.
    let newest = t.swarms[&HASH].iter().map(|p| p.expires_at).max();
    assert_eq!(newest, Some(now + Duration::from_secs(120)));
    // The total cap holds over swarms, and the swarm cap refuses a 4th swarm.
    for s in 1..=3u8 {
        for i in 0..10_000 {
            let (ip, mut a) = fake(i);
            a.info_hash = InfoHash([s; 20]);
            t.handle_announce(now, ip, &a);
            assert!(t.peer_count() <= 15_000);
        }
    }
    assert_eq!(t.peer_count(), 15_000);
    assert_eq!(t.swarm_count(), 3);
    let (ip4, mut a) = fake(1);
    a.info_hash = InfoHash([4; 20]);
    let r = t.handle_announce(now, ip4, &a);
    assert!(r.warning_message.is_some());
    assert_eq!(t.swarm_count(), 3);
    // Once the old peers expire, room comes back.
    let later = now + Duration::from_secs(121);
    let r = t.handle_announce(later, ip4, &a);
    assert!(r.warning_message.is_none());
    assert_eq!(t.peer_count(), 1);
}

/// A hand-out is the top `numwant` by (place, usefulness), never the
/// announcer, never a peer that left, without duplicates; no peer outlives
/// its time-to-live past a sweep; the
/// swarm's indexes stay consistent; checked after every event of random
/// sequences of joins, updates (class and label changes), stops and expiry.
#[test]
fn index_keeps_policy_over_random_updates_and_removals() {
    let racks = [None, Some("r1"), Some("r2")];
    let zones = [None, Some("z1"), Some("z2")];
    for seed in 0..30u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut t = Tracker::new(TrackerConfig::with_interval(Duration::from_secs(60)), seed);
        let mut now = Time::ZERO;
        for step in 0..400 {
            now += Duration::from_secs(rng.random_range(0..3));
            if step % 50 == 49 {
                t.handle_timeout(now);
                let live = |s: swarm::Slot| s.expires_at > now;
                assert!(t.swarms.values().all(|s| s.iter().all(live)));
            }
            let port = rng.random_range(1..40u16);
            let left = [0, 10, 1000, 1_000_000][rng.random_range(0..4)];
            let mut a = announce(port, left, None, None);
            a.topology = Topology {
                rack: racks[rng.random_range(0..3)].map(Into::into),
                zone: zones[rng.random_range(0..3)].map(Into::into),
            };
            a.numwant = Some(rng.random_range(0..12));
            if rng.random_range(0..6) == 0 {
                a.event = Event::Stopped;
            }
            // Both families share a swarm (their own lists inside).
            let source = if rng.random_range(0..4) == 0 {
                IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
            } else {
                ip(1)
            };
            let me = SocketAddr::new(source, port);
            let resp = t.handle_announce(now, source, &a);
            let Some(swarm) = t.swarms.get(&HASH) else {
                assert!(resp.peers.is_empty());
                continue;
            };
            swarm.check();
            if a.event == Event::Stopped {
                assert!(resp.peers.is_empty());
                assert!(!swarm.contains(&me), "a stopped peer is gone");
                continue;
            }
            check_hand_out(swarm, &a, me, &resp.peers);
            check_compact(swarm, &a, me, rng.random());
        }
    }
}

/// The BEP 15 compact hand-out is [`Swarm::select`]'s for the same draw, the
/// peers of the answer's family in compact form, for either family.
fn check_compact(swarm: &Swarm, a: &Announce, me: SocketAddr, salt: u64) {
    let want = a.numwant.unwrap_or(50) as usize;
    let mut places = Vec::new();
    let mut addrs = Vec::new();
    swarm.select(me, a, want, salt, &mut places, &mut addrs);
    for v6 in [false, true] {
        let mut expected = Vec::new();
        for p in &addrs {
            match p.ip() {
                IpAddr::V4(ip) if !v6 => expected.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) if v6 => expected.extend_from_slice(&ip.octets()),
                _ => continue,
            }
            expected.extend_from_slice(&p.port().to_be_bytes());
        }
        let mut bytes = vec![0xee; 3]; // entries are appended after what is there
        let mut compact = swarm::CompactPeers::new(&mut bytes, v6);
        swarm.select_compact(me, a, want, salt, &mut places, &mut compact);
        assert_eq!(bytes[..3], [0xee; 3]);
        assert_eq!(bytes[3..], expected[..], "v6 {v6}, {} peers", addrs.len());
    }
}

/// `peers` is a valid answer to `a` from `me` (see the test above).
fn check_hand_out(swarm: &Swarm, a: &Announce, me: SocketAddr, peers: &[SocketAddr]) {
    let ranked: Vec<(u8, u8, SocketAddr)> = swarm
        .iter()
        .filter(|s| s.addr != me)
        .map(|s| {
            let topo = swarm.topology_of(&s.addr).unwrap_or_default();
            let place = if a.topology.rack.is_none() && a.topology.zone.is_none() {
                2
            } else {
                swarm::place(&topo, &a.topology)
            };
            (place, swarm.usefulness(&s.addr, a.left_bytes), s.addr)
        })
        .collect();
    let key = |p: &SocketAddr| {
        let r = ranked
            .iter()
            .find(|r| r.2 == *p)
            .expect("handed out a peer not in the swarm");
        (r.0, r.1)
    };
    let want = a.numwant.unwrap_or(50) as usize;
    assert_eq!(peers.len(), want.min(ranked.len()));
    let mut seen = peers.to_vec();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), peers.len(), "duplicates");
    assert!(!peers.contains(&me));
    for w in peers.windows(2) {
        assert!(key(&w[0]) <= key(&w[1]), "best first");
    }
    if let Some(worst) = peers.last().map(key) {
        for r in ranked.iter().filter(|r| !peers.contains(&r.2)) {
            assert!((r.0, r.1) >= worst, "a better peer was left out");
        }
    }
}

/// Same rack first, then same zone, and seeders first within each, after
/// peers changed class and labels and some left.
#[test]
fn hand_out_after_updates_and_removals_keeps_rack_and_seeders_first() {
    let mut t = tracker();
    let now = Time::ZERO;
    for i in 1..=20 {
        t.handle_announce(now, ip(i), &announce(1, 1_000_000, Some("r2"), Some("z1")));
    }
    // ip 3 becomes a seeder in r1; ip 4 moves to r1 as a leecher; ip 5 was
    // in r1 and leaves; ip 6 becomes a seeder elsewhere.
    t.handle_announce(now, ip(5), &announce(1, 10, Some("r1"), Some("z1")));
    t.handle_announce(now, ip(3), &announce(1, 0, Some("r1"), Some("z1")));
    t.handle_announce(now, ip(4), &announce(1, 500, Some("r1"), Some("z1")));
    t.handle_announce(now, ip(6), &announce(1, 0, Some("r7"), Some("z9")));
    let mut stop = announce(1, 10, Some("r1"), Some("z1"));
    stop.event = Event::Stopped;
    t.handle_announce(now, ip(5), &stop);
    t.swarms[&HASH].check();
    let mut a = announce(1, 1_000_000, Some("r1"), Some("z1"));
    a.numwant = Some(25);
    let resp = t.handle_announce(now, ip(30), &a);
    assert_eq!(resp.peers[..2], [addr(3, 1), addr(4, 1)]);
    assert!(!resp.peers.contains(&addr(5, 1)));
    assert_eq!(resp.peers.last(), Some(&addr(6, 1)), "other zone last");
    assert_eq!(resp.peers.len(), 19, "everyone but ip 5, which left");
}
