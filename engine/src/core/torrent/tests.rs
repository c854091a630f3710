//! Torrent tests: a tiny in-test message pump wiring several Torrents together, message
//! handling, protocol violations, bans, and the seeder policy.

use super::*;
use crate::core::ChokerConfig;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An in-memory swarm: node `i` knows node `j` as `PeerKey(j)`. Control messages take
/// `latency` (+ random `jitter`), blocks are serialized on the sender's uplink at
/// `uplink_bytes_per_s` (instant when `None`); each directed link stays FIFO, like TCP.
pub(super) struct Pump {
    pub nodes: Vec<Torrent>,
    pub now: Time,
    events: BTreeMap<(Time, u64), Event>,
    seq: u64,
    link_last: BTreeMap<(usize, usize), Time>,
    uplink_free_at: Vec<Time>,
    links: BTreeSet<(usize, usize)>,
    rng: ChaCha8Rng,
    pub latency: Duration,
    pub jitter: Duration,
    pub uplink_bytes_per_s: Option<f64>,
    /// Nodes whose uploaded blocks are corrupt.
    pub liars: BTreeSet<usize>,
    tainted: BTreeSet<(usize, u32)>,
    pub disconnects: Vec<(usize, usize, DisconnectReason)>,
    pub cancels_delivered: u64,
    /// Per node: when its last block left its uplink.
    pub last_block_sent: Vec<Time>,
    /// Per node: total time its uplink spent sending blocks.
    pub busy: Vec<Duration>,
    /// Check every node's invariants after every event.
    pub check: bool,
    /// Blocks handed out (from, to, block) by a node that did not have the block's piece
    /// whole at that moment: relay parts forwarded before the piece was (cut-through).
    pub cut_through: Vec<(usize, usize, Block)>,
}

enum Event {
    Msg(usize, usize, PeerMessage),
    Block(usize, usize, Block),
    BlockSent(usize, usize, Block),
    Verify(usize, PieceIndex),
    VerifyPart(usize, Block),
    Disconnect(usize, usize),
}

pub(super) fn caps(fast: bool, max_request_len_bytes: u32) -> PeerCaps {
    PeerCaps {
        fast_extension: fast,
        max_request_len_bytes,
        reqq: None,
        // The core's tests model p2pe peers.
        distinct_first: true,
        locality: None,
        node_endgame: true,
        relay_part_bytes: 0,
    }
}

impl Pump {
    pub(super) fn new(nodes: Vec<Torrent>) -> Self {
        let n = nodes.len();
        Pump {
            nodes,
            now: Time::ZERO,
            events: BTreeMap::new(),
            seq: 0,
            link_last: BTreeMap::new(),
            uplink_free_at: vec![Time::ZERO; n],
            links: BTreeSet::new(),
            rng: ChaCha8Rng::seed_from_u64(n as u64),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            uplink_bytes_per_s: None,
            liars: BTreeSet::new(),
            tainted: BTreeSet::new(),
            disconnects: Vec::new(),
            cancels_delivered: 0,
            last_block_sent: vec![Time::ZERO; n],
            busy: vec![Duration::ZERO; n],
            check: true,
            cut_through: Vec::new(),
        }
    }

    pub(super) fn seed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    pub(super) fn connect(&mut self, a: usize, b: usize, c: PeerCaps) {
        self.links.insert((a.min(b), a.max(b)));
        self.nodes[a].handle_peer_connected(self.now, PeerKey(b as u64), c);
        self.nodes[b].handle_peer_connected(self.now, PeerKey(a as u64), c);
        self.drain(a);
        self.drain(b);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn schedule(&mut self, at: Time, ev: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    /// Delivery time on the directed link `from -> to` for something leaving at `at`.
    fn link_time(&mut self, from: usize, to: usize, at: Time) -> Time {
        let jitter_ns = self.jitter.as_nanos() as u64;
        let j = if jitter_ns > 0 {
            self.rng.random_range(0..jitter_ns)
        } else {
            0
        };
        let last = self.link_last.entry((from, to)).or_insert(Time::ZERO);
        let t = (at + self.latency + Duration::from_nanos(j)).max(*last);
        *last = t;
        t
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].poll_action() {
            let now = self.now;
            match a {
                Action::Send { peer, msg } => {
                    let to = peer.0 as usize;
                    let t = self.link_time(i, to, now);
                    self.schedule(t, Event::Msg(i, to, msg));
                }
                Action::SendBlock { peer, block } => {
                    let to = peer.0 as usize;
                    if !self.nodes[i].have().get(block.piece) {
                        self.cut_through.push((i, to, block));
                    }
                    let end = match self.uplink_bytes_per_s {
                        Some(rate) => {
                            let start = now.max(self.uplink_free_at[i]);
                            let d = Duration::from_secs_f64(f64::from(block.len_bytes) / rate);
                            self.busy[i] += d;
                            start + d
                        }
                        None => now,
                    };
                    self.uplink_free_at[i] = end;
                    self.schedule(end, Event::BlockSent(i, to, block));
                    let t = self.link_time(i, to, end);
                    self.schedule(t, Event::Block(i, to, block));
                }
                Action::VerifyPiece { piece } => self.schedule(now, Event::Verify(i, piece)),
                Action::VerifyPart { part } => self.schedule(now, Event::VerifyPart(i, part)),
                Action::Disconnect { peer, reason } => {
                    let to = peer.0 as usize;
                    if self.links.remove(&(i.min(to), i.max(to))) {
                        self.disconnects.push((i, to, reason));
                        let t = self.link_time(i, to, now);
                        self.schedule(t, Event::Disconnect(i, to));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Msg(from, to, msg) => {
                if self.linked(from, to) {
                    self.cancels_delivered += u64::from(matches!(msg, PeerMessage::Cancel(_)));
                    let _ = self.nodes[to].handle_message(now, PeerKey(from as u64), msg);
                    self.drain(to);
                }
            }
            Event::Block(from, to, block) => {
                if self.linked(from, to) {
                    // Like a storing driver: only wanted payload is written.
                    let wanted = self.nodes[to].wants_block(PeerKey(from as u64), &block);
                    if wanted && self.liars.contains(&from) {
                        self.tainted.insert((to, block.piece.0));
                    }
                    let _ = self.nodes[to].handle_block_received(now, PeerKey(from as u64), block);
                    self.drain(to);
                }
            }
            Event::BlockSent(from, to, block) => {
                self.last_block_sent[from] = now;
                self.nodes[from].handle_block_sent(now, PeerKey(to as u64), block);
                self.drain(from);
            }
            Event::Verify(node, piece) => {
                let valid = !self.tainted.remove(&(node, piece.0));
                self.nodes[node].handle_piece_verified(now, piece, valid);
                self.drain(node);
            }
            Event::VerifyPart(node, part) => {
                // Conservative, as the simulator: a piece a liar touched fails every part.
                let valid = !self.tainted.contains(&(node, part.piece.0));
                self.nodes[node].handle_part_verified(now, part, valid);
                self.drain(node);
            }
            Event::Disconnect(from, to) => {
                self.nodes[to].handle_peer_disconnected(now, PeerKey(from as u64));
                self.drain(to);
            }
        }
    }

    /// Runs until `done` holds, or `max_events` events / `max_time` pass; returns `done`.
    pub(super) fn run_until(
        &mut self,
        max_events: usize,
        max_time: Time,
        mut done: impl FnMut(&Pump) -> bool,
    ) -> bool {
        for _ in 0..max_events {
            if done(self) {
                return true;
            }
            let next_event = self.events.first_key_value().map(|(k, _)| k.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            let Some(next) = next_event.into_iter().chain(next_timer).min() else {
                break;
            };
            if next > max_time {
                break;
            }
            self.now = self.now.max(next);
            if next_event == Some(next) {
                if let Some((_, ev)) = self.events.pop_first() {
                    self.deliver(ev);
                }
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                        self.nodes[i].handle_timeout(self.now);
                        self.drain(i);
                    }
                }
            }
            if self.check {
                for n in &self.nodes {
                    n.check_invariants();
                }
            }
        }
        done(self)
    }
}

pub(super) fn config(pieces: u32, piece_len: u32) -> TorrentConfig {
    let mut c = TorrentConfig::new(u64::from(pieces) * u64::from(piece_len) - 100, piece_len);
    c.choker = ChokerConfig::datacenter();
    c
}

pub(super) fn partial(pieces: u32, keep: impl Fn(u32) -> bool) -> Bitfield {
    let mut b = Bitfield::new(pieces);
    for i in (0..pieces).filter(|&i| keep(i)) {
        b.set(PieceIndex(i));
    }
    b
}

pub(super) const LIMIT: Time = Time::from_nanos(600_000_000_000);

#[test]
fn leecher_completes_from_seeder() {
    for (fast, max_len) in [(false, BLOCK), (true, BLOCK), (true, 1 << 20)] {
        let c = config(20, 64 * 1024);
        let seeder = Torrent::new(c.clone(), Bitfield::full(20), 1);
        let leecher = Torrent::new(c, Bitfield::new(20), 2);
        let mut pump = Pump::new(vec![seeder, leecher]);
        pump.connect(0, 1, caps(fast, max_len));
        assert!(
            pump.run_until(1_000_000, LIMIT, |p| p.nodes[1].is_complete()),
            "fast={fast} len={max_len}"
        );
        let s = pump.nodes[1].stats();
        assert_eq!(s.downloaded_bytes, pump.nodes[1].config().total_len_bytes);
        assert_eq!(s.wasted_bytes, 0);
        // Both seeders now: the connection is closed as not useful.
        pump.run_until(1000, LIMIT, |_| false);
        assert!(pump
            .disconnects
            .iter()
            .any(|d| d.2 == DisconnectReason::NotUseful));
    }
}

const BLOCK: u32 = crate::core::BLOCK_LEN_BYTES;

#[test]
fn leecher_completes_from_two_partial_peers() {
    for fast in [false, true] {
        let c = config(30, 32 * 1024);
        let a = Torrent::new(c.clone(), partial(30, |i| i % 2 == 0), 1);
        let b = Torrent::new(c.clone(), partial(30, |i| i % 2 == 1 || i < 10), 2);
        let l = Torrent::new(c, Bitfield::new(30), 3);
        let mut pump = Pump::new(vec![a, b, l]);
        pump.connect(0, 2, caps(fast, BLOCK));
        pump.connect(1, 2, caps(fast, BLOCK));
        assert!(pump.run_until(1_000_000, LIMIT, |p| p.nodes[2].is_complete()));
        // The partial peers also trade with the (now complete) leecher only if linked.
        assert!(pump.nodes[0].stats().uploaded_bytes > 0);
        assert!(pump.nodes[1].stats().uploaded_bytes > 0);
    }
}
