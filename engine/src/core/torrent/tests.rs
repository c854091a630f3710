//! Torrent tests: a tiny in-test message pump wiring several Torrents together, message
//! handling, protocol violations, bans, and the seeder policy.

use super::*;
use crate::core::ChokerConfig;
use std::collections::BTreeSet;

/// An in-memory swarm: node `i` knows node `j` as `PeerKey(j)`. Delivery is instant and
/// FIFO; time only advances to the next timer when nothing is in transit.
pub(super) struct Pump {
    pub nodes: Vec<Torrent>,
    pub now: Time,
    queue: VecDeque<Event>,
    links: BTreeSet<(usize, usize)>,
    /// Nodes whose uploaded blocks are corrupt.
    pub liars: BTreeSet<usize>,
    tainted: BTreeSet<(usize, u32)>,
    pub disconnects: Vec<(usize, usize, DisconnectReason)>,
    /// Pieces uploaded per node (blocks at offset 0 delivered).
    pub check: bool,
}

enum Event {
    Msg(usize, usize, PeerMessage),
    Block(usize, usize, Block),
    Verify(usize, PieceIndex),
    Disconnect(usize, usize, DisconnectReason),
}

pub(super) fn caps(fast: bool, max_request_len_bytes: u32) -> PeerCaps {
    PeerCaps {
        fast_extension: fast,
        max_request_len_bytes,
    }
}

impl Pump {
    pub fn new(nodes: Vec<Torrent>) -> Self {
        Pump {
            nodes,
            now: Time::ZERO,
            queue: VecDeque::new(),
            links: BTreeSet::new(),
            liars: BTreeSet::new(),
            tainted: BTreeSet::new(),
            disconnects: Vec::new(),
            check: true,
        }
    }

    pub fn connect(&mut self, a: usize, b: usize, c: PeerCaps) {
        self.links.insert((a.min(b), a.max(b)));
        self.nodes[a].handle_peer_connected(self.now, PeerKey(b as u64), c);
        self.nodes[b].handle_peer_connected(self.now, PeerKey(a as u64), c);
        self.drain(a);
        self.drain(b);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].poll_action() {
            self.queue.push_back(match a {
                Action::Send { peer, msg } => Event::Msg(i, peer.0 as usize, msg),
                Action::SendBlock { peer, block } => Event::Block(i, peer.0 as usize, block),
                Action::VerifyPiece { piece } => Event::Verify(i, piece),
                Action::Disconnect { peer, reason } => {
                    Event::Disconnect(i, peer.0 as usize, reason)
                }
            });
        }
    }

    /// Delivers one event; false when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(ev) = self.queue.pop_front() else {
            return false;
        };
        let now = self.now;
        match ev {
            Event::Msg(from, to, msg) => {
                if self.linked(from, to) {
                    let _ = self.nodes[to].handle_message(now, PeerKey(from as u64), msg);
                    self.drain(to);
                }
            }
            Event::Block(from, to, block) => {
                if self.linked(from, to) {
                    if self.liars.contains(&from) {
                        self.tainted.insert((to, block.piece.0));
                    }
                    let _ = self.nodes[to].handle_block_received(now, PeerKey(from as u64), block);
                    self.drain(to);
                    self.nodes[from].handle_block_sent(now, PeerKey(to as u64), block);
                    self.drain(from);
                }
            }
            Event::Verify(node, piece) => {
                let valid = !self.tainted.remove(&(node, piece.0));
                self.nodes[node].handle_piece_verified(now, piece, valid);
                self.drain(node);
            }
            Event::Disconnect(from, to, reason) => {
                if self.links.remove(&(from.min(to), from.max(to))) {
                    self.disconnects.push((from, to, reason));
                    self.nodes[to].handle_peer_disconnected(now, PeerKey(from as u64));
                    self.drain(to);
                }
            }
        }
        if self.check {
            for n in &self.nodes {
                n.check_invariants();
            }
        }
        true
    }

    /// Runs until `done` holds, or `max_events` events / `max_time` pass.
    pub fn run_until(
        &mut self,
        max_events: usize,
        max_time: Time,
        mut done: impl FnMut(&Pump) -> bool,
    ) -> bool {
        for _ in 0..max_events {
            if done(self) {
                return true;
            }
            if self.step() {
                continue;
            }
            let Some(next) = self.nodes.iter().filter_map(|n| n.poll_timeout()).min() else {
                return done(self);
            };
            if next > max_time {
                return done(self);
            }
            self.now = self.now.max(next);
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i);
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

fn partial(pieces: u32, keep: impl Fn(u32) -> bool) -> Bitfield {
    let mut b = Bitfield::new(pieces);
    for i in (0..pieces).filter(|&i| keep(i)) {
        b.set(PieceIndex(i));
    }
    b
}

const LIMIT: Time = Time::from_nanos(600_000_000_000);

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
