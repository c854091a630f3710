//! The `p2p` strategy: every node runs a [`crate::core::Torrent`]; this module is its driver.
//!
//! Per event the driver calls one `handle_*` on one node, then drains that node's actions
//! (`Send` → the connection's control queue, `SendBlock` → its block FIFO, `VerifyPiece` →
//! `handle_piece_verified`, `Disconnect` → close both ends) and re-arms the node's timer (one
//! pending timer event per node, versioned).
//!
//! Data integrity model: each node has a state per piece (missing / poisoned / verified). A
//! block from a liar poisons the piece at the receiver; verification succeeds exactly when the
//! piece is not poisoned. The driver checks that an honest node only ever sends blocks of pieces
//! it verified, and that a complete node verified every piece; any breach is counted in
//! `integrity_violations` (tests require 0).
//!
//! By default the simulator plays the tracker: every peer connects to the origin and to
//! `connections` random others; late joiners get `connections` random present peers. With
//! tracker discovery ([`crate::sim::Discovery::Tracker`], module `discovery`) peers find
//! each other through the core's dial policy, a simulated tracker and PEX instead. With rack-aware
//! racks ([`crate::sim::RackSpec`]) it hands out by rack, as the embedded tracker does:
//! `connections` random peers of the peer's own rack and `cross_connections` of other
//! racks; each peer's core gets a [`Locality`] (rack label `rack<r>`, identity its node
//! number) and learns every peer's through its [`PeerCaps`], as a node learns them from
//! the BEP 10 handshake. Rack-oblivious runs do neither.

mod conn;
mod discovery;
mod membership;
mod node;
mod origin_trace;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::core::address_book::EntryId;
use crate::core::{Bitfield, Locality, PeerCaps, Time, Torrent, TorrentConfig};
use crate::sim::net::Net;
use crate::sim::queue::EventQueue;
use crate::sim::timeline::Timeline;
use crate::sim::{Outcome, Progress, Report, SimConfig};
use conn::{Conn, Dir};
pub(crate) use discovery::MAX_TRACKER_NODES;
use discovery::{Disc, DiscCounters};
use origin_trace::OriginTrace;

/// Piece state at a node (see module docs).
const MISSING: u8 = 0;
const POISONED: u8 = 1;
const VERIFIED: u8 = 2;

const NEVER: Time = Time::MAX;

#[derive(Debug)]
enum Event {
    /// Completion timer of the block transfer on direction `id`.
    Transfer { id: u32, version: u32 },
    /// A node's core timer.
    Timer { node: u32, version: u32 },
    /// A late peer joins.
    Join { node: u32 },
    /// A peer (or the origin) leaves.
    Leave { node: u32 },
    /// A peer freezes: it sends and reads nothing more; its connections stay open.
    Freeze { node: u32 },
    /// The tracker's answer to a node's announce arrives (tracker discovery).
    Announce { node: u32 },
    /// A dial from `from` of its book entry `entry` reaches `to`.
    Dial { from: u32, to: u32, entry: EntryId },
    /// `from`'s dial of `entry` reached a frozen peer and got no handshake: the slot
    /// policy's `handshake_timeout` closes it.
    DialTimeout { from: u32, entry: EntryId },
    /// A `ut_pex` message (at most 50 addresses) from `from` arrives at `to`.
    Pex {
        from: u32,
        to: u32,
        conn: u32,
        added: Vec<SocketAddr>,
    },
    /// A node's discovery timer (dials due, PEX, announce).
    DiscTimer { node: u32, version: u32 },
}

struct Node {
    torrent: Option<Torrent>,
    present: bool,
    liar: bool,
    /// Frozen (churn `freeze`): its core is never driven again, it sends nothing new and
    /// nothing reaches it.
    frozen: bool,
    /// Counted in the completion statistics (honest, not a designated leaver).
    expected: bool,
    completed_at: Option<Time>,
    timer_at: Time,
    timer_version: u32,
    conns: Vec<u32>,
    /// Open connections.
    open: u32,
    /// Dial policy, PEX and announces (tracker discovery).
    disc: Option<Box<Disc>>,
    up_bytes: f64,
    /// `cancel` messages this node sent (requests it gave up on), and of those, the ones
    /// sent from its timer (anti-snubbing); debug output.
    cancels_sent: u64,
    timer_cancels_sent: u64,
    /// Payload bytes received that the core still wanted, per timeline bin (debug output).
    down_bins: Vec<f64>,
    /// Rack and identity its core knows and tells its peers (rack-aware runs only).
    locality: Option<Locality>,
}

/// Counters reported at the end of a run.
#[derive(Default)]
struct Counters {
    hash_failures: u64,
    bans: u64,
    protocol_errors: u64,
    integrity_violations: u64,
    peers_left: u32,
    peers_joined: u32,
    peers_frozen: u32,
    origin_left_at: Option<Time>,
}

pub(super) struct Swarm<'c> {
    config: &'c SimConfig,
    torrent_config: TorrentConfig,
    caps: PeerCaps,
    piece_count: u32,
    /// Relay parts verified per (node, piece) while the piece is not, bit per part (the
    /// integrity check of `send_block`); an entry goes when its piece is verified.
    verified_parts: HashMap<(u32, u32), u64>,
    net: Net,
    queue: EventQueue<Event>,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    conns: Vec<Conn>,
    dirs: Vec<Dir>,
    /// `node * piece_count + piece` → MISSING / POISONED / VERIFIED.
    pieces: Vec<u8>,
    /// Honest present non-origin nodes holding each piece verified.
    holders: Vec<u32>,
    /// Pieces with at least one honest holder.
    covered: u32,
    /// Present peers (not the origin), for tracker sampling.
    present_peers: Vec<u32>,
    /// Expected nodes not yet complete (joiners included from the start).
    remaining: u32,
    dirty: Vec<u32>,
    /// Bytes uploaded per bin of `D_p2p / 10`: everyone, the origin.
    timeline: Timeline,
    /// Items in flight on any direction: `(arrival time, direction)`, in send order (all
    /// connections have the same latency, so this is also arrival order).
    wire: VecDeque<(Time, u32)>,
    counters: Counters,
    /// The node whose timer is being handled (its actions are drained in the same flush).
    timer_node: Option<u32>,
    /// Payload bytes sent between peers of different racks.
    cross_rack_bytes: f64,
    /// Blocks handed out by any core so far: a block's rank on its sender's uplink
    /// ([`crate::sim::net::UplinkOrder::Fifo`]).
    handed_blocks: u64,
    /// The origin's uploads, for the debug output (`debug_stuck` only).
    origin_trace: OriginTrace,
    /// Peers the tracker lists (tracker discovery).
    tracker: Vec<u32>,
    /// The tracker's random choices (apart from `rng`, so that churn draws the same
    /// schedule with either discovery).
    tracker_rng: ChaCha8Rng,
    disc_counters: DiscCounters,
    /// Most connections any peer (not the origin) had open at once.
    peak_peer_connections: u32,
}

/// Runs the `p2p` strategy.
pub(super) fn run(config: &SimConfig, progress: &mut dyn FnMut(Progress)) -> Report {
    let mut swarm = Swarm::new(config);
    swarm.setup();
    swarm.run_loop(progress);
    swarm.report()
}

impl<'c> Swarm<'c> {
    fn new(config: &'c SimConfig) -> Self {
        let mut torrent_config =
            TorrentConfig::datacenter(config.size_bytes, config.piece_len_bytes);
        if let Some(bytes) = config.pipeline_bytes {
            torrent_config.pipeline_bytes = bytes;
        }
        if let Some(bytes) = config.upload_in_flight_bytes {
            torrent_config.upload_in_flight_bytes = bytes;
        }
        torrent_config.relay_part_bytes = config.relay_part_bytes;
        if let Some(timeout) = config.snub_timeout {
            torrent_config.choker.snub_timeout = timeout;
        }
        let piece_count = torrent_config.piece_count;
        Self {
            config,
            torrent_config,
            caps: PeerCaps {
                fast_extension: true,
                max_request_len_bytes: config.block_len_bytes,
                reqq: None,
                distinct_first: true,
                node_endgame: true,
                locality: None,
                relay_part_bytes: config.relay_part_bytes,
            },
            piece_count,
            verified_parts: HashMap::new(),
            net: {
                let mut net = Net::new(config.sharing);
                net.set_jitter(config.sharing_jitter, config.seed ^ 0x6a69_7474_6572);
                net.set_uplink_order(config.uplink_order);
                net.set_far_refill_delay(
                    config
                        .far_refill_delay
                        .unwrap_or_else(|| config.auto_far_refill_delay()),
                );
                if config.debug_stuck {
                    net.enable_idle_account(((config.d_p2p_s() * 1e8) as u64).max(1));
                }
                net
            },
            queue: EventQueue::default(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            nodes: Vec::new(),
            conns: Vec::new(),
            dirs: Vec::new(),
            pieces: Vec::new(),
            holders: vec![0; piece_count as usize],
            covered: 0,
            present_peers: Vec::new(),
            remaining: 0,
            dirty: Vec::new(),
            wire: VecDeque::new(),
            timeline: Timeline::new(Duration::from_nanos((config.d_p2p_s() * 1e8) as u64)),
            counters: Counters::default(),
            timer_node: None,
            cross_rack_bytes: 0.0,
            handed_blocks: 0,
            origin_trace: OriginTrace::new(piece_count),
            tracker: Vec::new(),
            tracker_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x0074_7261_636b_6572),
            disc_counters: DiscCounters::default(),
            peak_peer_connections: 0,
        }
    }

    /// Creates a node (not yet present); returns its index.
    fn add_node(&mut self, up: u64, down: u64, seeded: bool) -> u32 {
        let id = self.net.add_node(up, down);
        debug_assert_eq!(id as usize, self.nodes.len());
        let rack = self.config.rack_of(id);
        if let Some(r) = rack {
            self.net.place(id, r);
        }
        let aware = self.config.racks.is_some_and(|s| !s.oblivious);
        let locality = rack
            .filter(|_| aware)
            .map(|r| Locality::new(format!("rack{r}").as_bytes(), &id.to_be_bytes()));
        let mut torrent_config = self.torrent_config.clone();
        torrent_config.locality = locality;

        let have = if seeded {
            Bitfield::full(self.piece_count)
        } else {
            Bitfield::new(self.piece_count)
        };
        let state = if seeded { VERIFIED } else { MISSING };
        self.pieces
            .extend(std::iter::repeat_n(state, self.piece_count as usize));
        // Each node's core gets its own stream derived from the run seed.
        let node_seed = self
            .config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(id));
        self.nodes.push(Node {
            torrent: Some(Torrent::new(torrent_config, have, node_seed)),
            present: false,
            liar: false,
            frozen: false,
            expected: false,
            completed_at: None,
            timer_at: NEVER,
            timer_version: 0,
            conns: Vec::new(),
            open: 0,
            disc: None,
            up_bytes: 0.0,
            cancels_sent: 0,
            timer_cancels_sent: 0,
            down_bins: Vec::new(),
            locality,
        });
        id
    }

    fn run_loop(&mut self, progress: &mut dyn FnMut(Progress)) {
        let mut now = Time::ZERO;
        let max_time = Time::ZERO + self.config.max_time;
        self.flush(now);
        while self.remaining > 0 {
            self.net.drain_timers(|(t, id, version)| {
                self.queue.push(t, Event::Transfer { id, version })
            });
            // Arrivals first on ties: they were sent before anything now in the heap was due.
            if let Some(&(t, dir)) = self.wire.front() {
                if self.queue.peek_time().is_none_or(|h| t <= h) && t <= max_time {
                    self.wire.pop_front();
                    self.queue.count_external();
                    now = t;
                    self.on_arrive(now, dir);
                    self.flush(now);
                    continue;
                }
            }
            let Some((t, event)) = self.queue.pop() else {
                if self.config.debug_stuck {
                    eprintln!("queue empty at {}", now.as_nanos());
                }
                break;
            };
            if t > max_time {
                if self.config.debug_stuck {
                    eprintln!(
                        "max time at {}: next {} {event:?}",
                        now.as_nanos(),
                        t.as_nanos()
                    );
                }
                break;
            }
            now = t;
            self.handle_event(now, event);
            self.flush(now);
            self.timer_node = None;
            if self.queue.popped().is_multiple_of(1 << 16) {
                progress(Progress {
                    now,
                    completed_peers: self
                        .nodes
                        .iter()
                        .filter(|n| n.expected && n.completed_at.is_some())
                        .count() as u32,
                    expected_peers: self.nodes.iter().filter(|n| n.expected).count() as u32,
                    events: self.queue.popped(),
                });
            }
        }
        if let Some(acc) = self.net.idle_account(now) {
            let cap = |bytes_per_s: f64| bytes_per_s * now.as_nanos() as f64 / 1e9;
            let o = cap(self.config.seeder_uplink_bytes_per_s as f64);
            let p = cap(self.config.sum_peer_uplinks_bytes_per_s());
            let pct = |x: f64, c: f64| 100.0 * x / c.max(1.0);
            eprintln!(
                "idle capacity until {:.4} s (% of capacity): origin up: none {:.1} limited {:.1}; \
                 peers up: none {:.1} limited {:.1}; peers down: none {:.1} limited {:.1}",
                now.as_secs_f64(),
                pct(acc.up_idle_bytes[0][0], o),
                pct(acc.up_idle_bytes[0][1], o),
                pct(acc.up_idle_bytes[1][0], p),
                pct(acc.up_idle_bytes[1][1], p),
                pct(acc.down_idle_bytes[1][0], p),
                pct(acc.down_idle_bytes[1][1], p),
            );
            let bin_cap = self.config.seeder_uplink_bytes_per_s as f64 * acc.bin_ns as f64 / 1e9;
            let bins: Vec<String> = acc
                .origin_up_idle_bins
                .iter()
                .map(|b| format!("{:.1}/{:.1}", pct(b[0], bin_cap), pct(b[1], bin_cap)))
                .collect();
            eprintln!(
                "origin idle uplink per bin (% none/limited): {}",
                bins.join(" ")
            );
        }
    }

    fn handle_event(&mut self, now: Time, event: Event) {
        match event {
            Event::Transfer { id, version } => {
                if self.net.on_timer(now, id, version) {
                    self.on_block_sent(now, id);
                }
            }
            Event::Timer { node, version } => {
                let n = &mut self.nodes[node as usize];
                if n.timer_version != version || !n.present || n.frozen {
                    return;
                }
                n.timer_at = NEVER;
                if let Some(t) = n.torrent.as_mut() {
                    t.handle_timeout(now);
                }
                self.timer_node = Some(node);
                self.dirty.push(node);
            }
            Event::Join { node } => self.join(now, node),
            Event::Leave { node } => self.leave(now, node),
            Event::Freeze { node } => self.freeze(now, node),
            Event::Announce { node } => self.on_announce(now, node),
            Event::Dial { from, to, entry } => self.on_dial(now, from, to, entry),
            Event::DialTimeout { from, entry } => self.on_dial_timeout(now, from, entry),
            Event::Pex {
                from,
                to,
                conn,
                added,
            } => self.on_pex(now, from, to, conn, &added),
            Event::DiscTimer { node, version } => self.on_disc_timer(now, node, version),
        }
    }

    /// Drains the actions of every node touched since the last flush.
    fn flush(&mut self, now: Time) {
        while let Some(node) = self.dirty.pop() {
            self.drain(now, node);
        }
    }

    /// Prints one line per node (stderr): links, completion, bytes up / down / wasted,
    /// cancels sent.
    fn debug_nodes(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(stats) = n.torrent.as_ref().map(|t| t.stats()) else {
                continue;
            };
            let mb = |b: f64| b / (1u64 << 20) as f64;
            let bin_s = self.timeline.bin_ns() as f64 / 1e9;
            let rates: Vec<String> = n
                .down_bins
                .iter()
                .map(|b| format!("{:.0}", b * 8.0 / 1e6 / bin_s))
                .collect();
            eprintln!(
                "node {i}{}: done {} up {:.1} MiB down {:.1} MiB wasted {:.1} MiB cancels {} \
                 (timer {}) hash failures {}; useful Mbit/s per bin: {}",
                if self.config.is_slow_peer(i as u32) {
                    " (slow)"
                } else {
                    ""
                },
                n.completed_at
                    .map_or("-".to_string(), |t| format!("{:.3} s", t.as_secs_f64())),
                mb(n.up_bytes),
                mb(stats.downloaded_bytes as f64),
                mb(stats.wasted_bytes as f64),
                n.cancels_sent,
                n.timer_cancels_sent,
                stats.hash_failures,
                rates.join(" "),
            );
        }
    }

    /// Prints the state of each expected node that did not complete (stderr).
    fn debug_incomplete(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.expected || n.completed_at.is_some() {
                continue;
            }
            let open: Vec<(u32, u32)> = n
                .conns
                .iter()
                .filter(|&&c| self.conns[c as usize].open)
                .map(|&c| {
                    let conn = &self.conns[c as usize];
                    (c, if conn.a == i as u32 { conn.b } else { conn.a })
                })
                .collect();
            let stats = n.torrent.as_ref().map(|t| t.stats());
            let pc = self.piece_count as usize;
            let missing: Vec<usize> = (0..pc)
                .filter(|&p| self.pieces[i * pc + p] != VERIFIED)
                .collect();
            for &(_, peer) in &open {
                let have: Vec<bool> = missing
                    .iter()
                    .map(|&p| self.pieces[peer as usize * pc + p] == VERIFIED)
                    .collect();
                let c = n.conns.iter().find(|&&c| {
                    let k = &self.conns[c as usize];
                    k.a == peer || k.b == peer
                });
                let dirs: Vec<String> = c
                    .map(|&c| [2 * c, 2 * c + 1])
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let d = &self.dirs[d as usize];
                        format!(
                            "blocks {} sending {} ctl_waiting {} in_flight {}",
                            d.blocks.len(),
                            d.sending.is_some(),
                            d.ctl_waiting.len(),
                            d.in_flight.len()
                        )
                    })
                    .collect();
                eprintln!(
                    "  neighbour {peer}: has missing pieces {missing:?}: {have:?} dirs {dirs:?}"
                );
            }
            eprintln!(
                "node {i}: present {} open conns (conn, peer) {open:?} stats {stats:?}",
                n.present
            );
        }
    }

    fn report(&self) -> Report {
        let slow = |i: usize| self.config.is_slow_peer(i as u32);
        let completions: Vec<(Time, bool)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.expected)
            .filter_map(|(i, n)| n.completed_at.map(|t| (t, slow(i))))
            .collect();
        let slow_expected = (self.nodes.iter().enumerate())
            .filter(|&(i, n)| n.expected && slow(i))
            .count() as u32;
        let expected = self.nodes.iter().filter(|n| n.expected).count() as u32;
        if self.config.debug_stuck {
            self.debug_nodes();
            self.debug_incomplete();
            let rejects = self.nodes[0]
                .torrent
                .as_ref()
                .map_or(0, |t| t.stats().distinct_rejects_sent);
            eprintln!(
                "{}; distinct rejects sent {rejects}",
                self.origin_trace.summary(
                    self.config.size_bytes as f64,
                    self.config.seeder_uplink_bytes_per_s as f64,
                    self.config.d_p2p_s(),
                )
            );
        }
        let outcome = Outcome {
            incomplete_peers: expected - completions.len() as u32,
            completions,
            slow_expected,
            origin_up_bytes: self.nodes.first().map_or(0.0, |n| n.up_bytes),
            total_up_bytes: self.nodes.iter().map(|n| n.up_bytes).sum(),
            cross_rack_bytes: self.cross_rack_bytes,
            events: self.queue.popped(),
        };
        let mut report = outcome.into_report(self.config);
        let c = &self.counters;
        report.hash_failures = c.hash_failures;
        report.bans = c.bans;
        report.protocol_errors = c.protocol_errors;
        report.integrity_violations = c.integrity_violations;
        report.peers_left = c.peers_left;
        report.peers_joined = c.peers_joined;
        report.peers_frozen = c.peers_frozen;
        report.origin_left_s = c.origin_left_at.map(Time::as_secs_f64);
        let d = &self.disc_counters;
        report.dials = d.dials;
        report.connections_made = d.connections_made;
        report.failed_dials = d.failed_dials;
        report.refused_dials = d.refused_dials;
        report.timed_out_dials = d.timed_out_dials;
        report.reclaimed_slots = d.reclaimed_slots;
        report.joiner_connections = d.joiner_connections;
        report.peak_peer_connections = self.peak_peer_connections;
        report.pex_learned = d.pex_learned;
        report.tracker_learned = d.tracker_learned;
        report.announces = d.announces;
        let origin_up = self.config.seeder_uplink_bytes_per_s as f64;
        let all_up = origin_up + self.config.sum_peer_uplinks_bytes_per_s();
        let timeline = self.timeline.fractions(all_up, origin_up);
        report.timeline_bin_s = timeline.bin_s;
        report.upload_timeline = timeline.all;
        report.origin_timeline = timeline.origin;
        report
    }
}
