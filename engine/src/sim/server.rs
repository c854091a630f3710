//! The server strategies: `client-server` and `replicas:K`. No swarm logic: whole-file
//! transfers over the shared links of [`super::net`].
//!
//! `client-server`: at time 0 the origin starts one transfer of `F` bytes to each of the `N`
//! peers; its uplink is shared equally, so with equal peers everyone finishes at
//! `N·F/u_s + latency` (exactly `D_cs` plus one-way latency).
//! `replicas:K`: the origin sends `F` to each of `K` replica servers (uplink and downlink `u_s`);
//! once a replica has the whole file (store and forward) it serves the peers `p` with
//! `(p - 1) mod K = r` the same way.
//!
//! Their uplink-use timeline has bins of `D_p2p / 10` as the swarm's, or of a twentieth of
//! the run when that is longer (`D_cs` is up to `N` times `D_p2p`: 10,000 bins otherwise).
//! Its capacity counts the replicas' uplinks with the origin's and the peers'.

use std::time::Duration;

use super::net::Net;
use super::queue::EventQueue;
use super::timeline::Timeline;
use super::{Outcome, Progress, Report, SimConfig, Strategy};
use crate::core::Time;

enum Event {
    /// Completion timer of the transfer to node `id` (the transfer id is its destination).
    Done { id: u32, version: u32 },
    /// The last byte of the file reached node `id`.
    Arrived { id: u32 },
}

pub(super) fn run(config: &SimConfig, progress: &mut dyn FnMut(Progress)) -> Report {
    let n = config.peers;
    let f = config.size_bytes;
    let replicas = match config.strategy {
        Strategy::Replicas(k) => k,
        Strategy::ClientServer | Strategy::P2p => 0,
    };
    let mut net = Net::default();
    let origin = net.add_node(
        config.seeder_uplink_bytes_per_s,
        config.seeder_uplink_bytes_per_s,
    );
    for peer in 1..=n {
        let (up, down) = config.peer_links_bytes_per_s(peer);
        net.add_node(up, down);
    }
    for _ in 0..replicas {
        net.add_node(
            config.seeder_uplink_bytes_per_s,
            config.seeder_uplink_bytes_per_s,
        );
    }
    let first_replica = n + 1;
    let mut queue = EventQueue::default();
    if replicas == 0 {
        for peer in 1..=n {
            net.start(Time::ZERO, peer, origin, peer, f);
        }
    } else {
        for r in first_replica..first_replica + replicas {
            net.start(Time::ZERO, r, origin, r, f);
        }
    }
    let mut completions: Vec<(Time, bool)> = Vec::with_capacity(n as usize);
    // Per destination: when its transfer started and from whom; then `(start, end, from
    // origin)` of each finished transfer, binned at the end (see the module docs).
    let mut started: Vec<(Time, bool)> =
        vec![(Time::ZERO, true); (first_replica + replicas) as usize];
    let mut sent: Vec<(Time, Time, bool)> = Vec::new();
    while let Some((now, event)) = queue_pop(&mut net, &mut queue) {
        match event {
            Event::Done { id, version } => {
                if net.on_timer(now, id, version) {
                    let (start, from_origin) = started[id as usize];
                    sent.push((start, now, from_origin));
                    queue.push(now + config.latency, Event::Arrived { id });
                }
            }
            Event::Arrived { id } if id >= first_replica => {
                let r = id - first_replica;
                for peer in (1..=n).filter(|p| (p - 1) % replicas == r) {
                    started[peer as usize] = (now, false);
                    net.start(now, peer, id, peer, f);
                }
            }
            Event::Arrived { id } => completions.push((now, config.is_slow_peer(id))),
        }
        if queue.popped().is_multiple_of(1 << 16) {
            progress(Progress {
                now,
                completed_peers: completions.len() as u32,
                expected_peers: n,
                events: queue.popped(),
            });
        }
    }
    let copies_from_origin = if replicas == 0 { n } else { replicas };
    let end_ns = sent
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(Time::ZERO)
        .as_nanos();
    let bin_ns = ((config.d_p2p_s() * 1e8) as u64).max(end_ns / 20);
    let mut timeline = Timeline::new(Duration::from_nanos(bin_ns));
    for (start, end, from_origin) in sent {
        timeline.add(start, end, f as f64, from_origin);
    }
    let origin_up = config.seeder_uplink_bytes_per_s as f64;
    let all_up = origin_up * f64::from(1 + replicas) + config.sum_peer_uplinks_bytes_per_s();
    let timeline = timeline.fractions(all_up, origin_up);
    let mut report = Outcome {
        incomplete_peers: n - completions.len() as u32,
        completions,
        slow_expected: config.slow_peer_count(),
        origin_up_bytes: f as f64 * f64::from(copies_from_origin),
        total_up_bytes: f as f64 * f64::from(n + replicas),
        cross_rack_bytes: 0.0,
        events: queue.popped(),
    }
    .into_report(config);
    report.timeline_bin_s = timeline.bin_s;
    report.upload_timeline = timeline.all;
    report.origin_timeline = timeline.origin;
    report
}

/// Moves the net's new timers into the queue, then pops the next event.
fn queue_pop(net: &mut Net, queue: &mut EventQueue<Event>) -> Option<(Time, Event)> {
    net.drain_timers(|(t, id, version)| queue.push(t, Event::Done { id, version }));
    queue.pop()
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn client_server_matches_d_cs() {
        let mut config = SimConfig::new(100, 1_000_000_000, 5_000_000_000);
        config.strategy = Strategy::ClientServer;
        let report = run(&config).unwrap();
        // D_cs = 100 · 1 GB / 5 GB/s = 20 s, plus 200 µs latency.
        assert_eq!(report.completed_peers, 100);
        assert!((report.total_s - 20.0002).abs() < 1e-6, "{report:?}");
        assert!((report.min_s - report.total_s).abs() < 1e-6);
        assert!((report.origin_upload_copies - 100.0).abs() < 1e-9);
        assert!((report.d_cs_s - 20.0).abs() < 1e-9);
    }

    #[test]
    fn replicas_store_and_forward() {
        let mut config = SimConfig::new(100, 1_000_000_000, 5_000_000_000);
        config.strategy = Strategy::Replicas(10);
        let report = run(&config).unwrap();
        // 10 copies at 0.5 GB/s each: 2 s; then 10 peers per replica: 2 s more.
        assert_eq!(report.completed_peers, 100);
        assert!((report.total_s - 4.0004).abs() < 1e-6, "{report:?}");
        assert!((report.origin_upload_copies - 10.0).abs() < 1e-9);
    }

    #[test]
    fn slow_downlink_bounds_client_server() {
        let mut config = SimConfig::new(10, 1_000_000_000, 5_000_000_000);
        config.strategy = Strategy::ClientServer;
        config.downlink_bytes_per_s = 100_000_000;
        let report = run(&config).unwrap();
        // Downlink-bound: F/d_min = 10 s (the origin could do 2 s).
        assert!((report.total_s - 10.0002).abs() < 1e-6, "{report:?}");
        assert!((report.d_cs_s - 10.0).abs() < 1e-9);
    }
}
