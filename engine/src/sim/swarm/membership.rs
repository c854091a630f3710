//! Who is in the swarm: initial setup (the simulator as tracker, or tracker discovery),
//! connections, churn (leaving, joining, freezing).

use std::collections::HashSet;
use std::time::Duration;

use rand::RngExt;

use crate::core::{PeerCaps, PeerKey, Time};

use super::conn::{Conn, Dir};
use super::{Event, Swarm, VERIFIED};

impl Swarm<'_> {
    /// Creates the origin, the peers, the liars and the churn schedule; connects everyone.
    pub(super) fn setup(&mut self) {
        let c = self.config;
        if let Some(spec) = &c.racks {
            for r in 0..spec.racks {
                let link = c.rack_link_bytes_per_s(r);
                self.net.add_rack(link, link);
            }
        }
        let origin = self.add_node(
            c.seeder_uplink_bytes_per_s,
            c.seeder_uplink_bytes_per_s,
            true,
        );
        self.nodes[origin as usize].present = true;
        for peer in 1..=c.peers {
            let (up, down) = c.peer_links_bytes_per_s(peer);
            let id = self.add_node(up, down, false);
            debug_assert_eq!(id, peer);
            let n = &mut self.nodes[id as usize];
            n.present = true;
            n.expected = true;
            self.present_peers.push(id);
        }
        // Liars and leavers: disjoint random subsets of the initial peers.
        let mut order: Vec<u32> = (1..=c.peers).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        let leavers = ((c.churn.leave_fraction * f64::from(c.peers)).round() as usize)
            .min(order.len() - c.liars as usize);
        let freezers = ((c.churn.freeze_fraction * f64::from(c.peers)).round() as usize)
            .min(order.len() - c.liars as usize - leavers);
        let window_ns = c
            .churn
            .window
            .map_or((c.d_p2p_s() * 1e9) as u64, |w| {
                u64::try_from(w.as_nanos()).unwrap_or(u64::MAX)
            })
            .max(1);
        for (i, &id) in order.iter().enumerate() {
            if i < c.liars as usize {
                let n = &mut self.nodes[id as usize];
                n.liar = true;
                n.expected = false;
            } else if i < c.liars as usize + leavers {
                self.nodes[id as usize].expected = false;
                let at = Time::from_nanos(self.rng.random_range(0..window_ns));
                self.queue.push(at, Event::Leave { node: id });
            } else if i < c.liars as usize + leavers + freezers {
                self.nodes[id as usize].expected = false;
                let at = Time::from_nanos(self.rng.random_range(0..window_ns));
                self.queue.push(at, Event::Freeze { node: id });
            }
        }
        let joiners = (c.churn.join_fraction * f64::from(c.peers)).round() as u32;
        for _ in 0..joiners {
            let id = self.add_node(c.uplink_bytes_per_s, c.downlink_bytes_per_s, false);
            self.nodes[id as usize].expected = true;
            let at = Time::from_nanos(self.rng.random_range(0..window_ns));
            self.queue.push(at, Event::Join { node: id });
        }
        self.remaining = self.nodes.iter().filter(|n| n.expected).count() as u32;
        if self.tracker_mode() {
            self.join_initial();
        } else {
            self.connect_initial();
        }
    }

    /// Tracker discovery: the origin and the initial peers join at the start, the peers
    /// in random order (the order their announces reach the tracker).
    fn join_initial(&mut self) {
        self.tracker_join(Time::ZERO, 0);
        let mut order: Vec<u32> = (1..=self.config.peers).collect();
        for i in (1..order.len()).rev() {
            let j = self.tracker_rng.random_range(0..=i);
            order.swap(i, j);
        }
        for p in order {
            self.tracker_join(Time::ZERO, p);
        }
    }

    fn connect_initial(&mut self) {
        let peers = self.config.peers;
        for p in 1..=peers {
            self.connect(Time::ZERO, 0, p);
        }
        if let Some(spec) = self.config.racks.filter(|s| !s.oblivious) {
            return self.connect_by_rack(spec.cross_connections);
        }
        let want = (self.config.connections as usize).min(peers as usize - 1);
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        for p in 1..=peers {
            let mut picked = 0;
            let mut tries = 0;
            while picked < want && tries < want * 20 {
                tries += 1;
                let q = self.rng.random_range(1..=peers);
                if q == p || !seen.insert((p.min(q), p.max(q))) {
                    continue;
                }
                picked += 1;
                self.connect(Time::ZERO, p, q);
            }
        }
    }

    /// Rack-aware tracker: each peer opens `connections` to random peers of its rack and
    /// `cross` to random peers of other racks (the tracker hands out same-rack peers first).
    fn connect_by_rack(&mut self, cross: u32) {
        let peers = self.config.peers;
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        for p in 1..=peers {
            let rack = self.config.rack_of(p);
            let (same, other): (Vec<u32>, Vec<u32>) = (1..=peers)
                .filter(|&q| q != p)
                .partition(|&q| self.config.rack_of(q) == rack);
            self.open_random(p, &same, self.config.connections as usize, &mut seen);
            self.open_random(p, &other, cross as usize, &mut seen);
        }
    }

    /// Opens up to `want` connections from `p` to distinct random `candidates` not yet
    /// connected to it (`seen`: unordered pairs).
    fn open_random(
        &mut self,
        p: u32,
        candidates: &[u32],
        want: usize,
        seen: &mut HashSet<(u32, u32)>,
    ) {
        let want = want.min(candidates.len());
        let (mut picked, mut tries) = (0, 0);
        while picked < want && tries < want * 20 {
            tries += 1;
            let q = candidates[self.rng.random_range(0..candidates.len())];
            if !seen.insert((p.min(q), p.max(q))) {
                continue;
            }
            picked += 1;
            self.connect(Time::ZERO, p, q);
        }
    }

    /// Opens a connection between `a` and `b` (both present); both cores learn of it, each
    /// with the other's locality (rack-aware runs). Returns its id.
    pub(super) fn connect(&mut self, now: Time, a: u32, b: u32) -> u32 {
        let id = self.conns.len() as u32;
        self.conns.push(Conn {
            a,
            b,
            open: true,
            dialler: None,
            opened_at: now,
        });
        self.dirs.push(Dir::default());
        self.dirs.push(Dir::default());
        for (node, other) in [(a, b), (b, a)] {
            let caps = PeerCaps {
                locality: self.nodes[other as usize].locality,
                ..self.caps
            };
            let n = &mut self.nodes[node as usize];
            n.conns.push(id);
            n.open += 1;
            if node != 0 {
                self.peak_peer_connections = self.peak_peer_connections.max(n.open);
            }
            if let Some(t) = n.torrent.as_mut() {
                t.handle_peer_connected(now, PeerKey(u64::from(id)), caps);
            }
            self.dirty.push(node);
        }
        if self.tracker_mode() {
            self.disc_on_connect(now, id, a, b);
        }
        id
    }

    /// Closes connection `id` at both ends (idempotent).
    pub(super) fn close_conn(&mut self, now: Time, id: u32) {
        self.close_conn_with(now, id, false);
    }

    /// Closes connection `id` at both ends (idempotent); with tracker discovery its
    /// dialler redials it later, or never with `retire`.
    pub(super) fn close_conn_with(&mut self, now: Time, id: u32, retire: bool) {
        let Some(conn) = self.conns.get_mut(id as usize) else {
            return;
        };
        if !conn.open {
            return;
        }
        conn.open = false;
        let (a, b) = (conn.a, conn.b);
        for dir in [2 * id, 2 * id + 1] {
            self.net.cancel(now, dir);
            self.dirs[dir as usize].clear();
        }
        for node in [a, b] {
            let n = &mut self.nodes[node as usize];
            n.open = n.open.saturating_sub(1);
            n.conns.retain(|&c| c != id);
            if let Some(t) = n.torrent.as_mut() {
                t.handle_peer_disconnected(now, PeerKey(u64::from(id)));
                self.dirty.push(node);
            }
        }
        if self.tracker_mode() {
            self.disc_on_close(now, id, retire);
        }
    }

    /// A late peer arrives: connects to the origin (if still there) and random present peers.
    pub(super) fn join(&mut self, now: Time, node: u32) {
        if self.tracker_mode() {
            self.nodes[node as usize].present = true;
            self.present_peers.push(node);
            self.counters.peers_joined += 1;
            return self.tracker_join(now, node);
        }
        let picked = match self.config.racks.filter(|s| !s.oblivious) {
            Some(spec) => {
                let rack = self.config.rack_of(node);
                let (same, other): (Vec<u32>, Vec<u32>) = self
                    .present_peers
                    .iter()
                    .partition(|&&q| self.config.rack_of(q) == rack);
                let mut picked = self.sample(&same, self.config.connections as usize);
                picked.extend(self.sample(&other, spec.cross_connections as usize));
                picked
            }
            None => {
                let present = std::mem::take(&mut self.present_peers);
                let picked = self.sample(&present, self.config.connections as usize);
                self.present_peers = present;
                picked
            }
        };
        self.nodes[node as usize].present = true;
        self.present_peers.push(node);
        self.counters.peers_joined += 1;
        if self.nodes[0].present {
            self.connect(now, 0, node);
        }
        for q in picked {
            self.connect(now, node, q);
        }
    }

    /// Up to `want` distinct random entries of `from`.
    fn sample(&mut self, from: &[u32], want: usize) -> Vec<u32> {
        let mut picked: Vec<u32> = Vec::with_capacity(want);
        if from.len() <= want {
            picked.extend_from_slice(from);
        } else {
            while picked.len() < want {
                let q = from[self.rng.random_range(0..from.len())];
                if !picked.contains(&q) {
                    picked.push(q);
                }
            }
        }
        picked
    }

    /// A node leaves: every connection closes, its pieces no longer count.
    ///
    /// A peer holding the only honest copy of a piece after the origin left waits (retries
    /// later) so that the swarm can still complete; see [`crate::sim::churn`].
    pub(super) fn leave(&mut self, now: Time, node: u32) {
        if !self.nodes[node as usize].present {
            return;
        }
        if !self.withdraw_pieces(now, node, Event::Leave { node }) {
            return;
        }
        if node == 0 {
            self.counters.origin_left_at = Some(now);
        } else {
            self.counters.peers_left += 1;
            if let Some(pos) = self.present_peers.iter().position(|&p| p == node) {
                self.present_peers.swap_remove(pos);
            }
        }
        self.nodes[node as usize].present = false;
        self.tracker_leave(node);
        let conns = std::mem::take(&mut self.nodes[node as usize].conns);
        for &id in &conns {
            self.close_conn(now, id);
        }
        self.drop_disc(node);
        // Free the core's memory: a departed node never returns.
        self.nodes[node as usize].torrent = None;
    }

    /// A peer freezes (churn `freeze`): from now on its core is never driven, it starts
    /// sending nothing and receives nothing (see [`crate::sim::churn`]); its connections
    /// stay open and its neighbours are not told. Like a leaver, it waits while it holds
    /// the only honest copy of a piece after the origin left.
    pub(super) fn freeze(&mut self, now: Time, node: u32) {
        let n = &self.nodes[node as usize];
        if node == 0 || !n.present || n.frozen {
            return;
        }
        if !self.withdraw_pieces(now, node, Event::Freeze { node }) {
            return;
        }
        self.nodes[node as usize].frozen = true;
        self.counters.peers_frozen += 1;
    }

    /// Takes `node`'s pieces out of the honest holders' counts as it leaves or freezes;
    /// false (and `retry` is scheduled) if it holds the only honest copy of a piece after
    /// the origin left.
    fn withdraw_pieces(&mut self, now: Time, node: u32, retry: Event) -> bool {
        if node == 0 || self.nodes[node as usize].liar {
            return true;
        }
        let base = node as usize * self.piece_count as usize;
        let pieces = &self.pieces[base..base + self.piece_count as usize];
        if !self.nodes[0].present {
            let sole = pieces
                .iter()
                .zip(&self.holders)
                .any(|(&s, &h)| s == VERIFIED && h == 1);
            if sole {
                let retry_ns = ((self.config.d_p2p_s() * 1e7) as u64).max(1_000);
                self.queue.push(now + Duration::from_nanos(retry_ns), retry);
                return false;
            }
        }
        for (p, &s) in pieces.iter().enumerate() {
            if s == VERIFIED {
                self.holders[p] -= 1;
                if self.holders[p] == 0 {
                    self.covered -= 1;
                }
            }
        }
        true
    }

    /// With `origin-leave`, schedules the origin's departure once every piece is covered.
    pub(super) fn maybe_origin_leaves(&mut self, now: Time) {
        if self.config.churn.origin_leaves
            && self.covered == self.piece_count
            && self.nodes[0].present
            && self.counters.origin_left_at.is_none()
        {
            self.queue.push(now, Event::Leave { node: 0 });
        }
    }
}
