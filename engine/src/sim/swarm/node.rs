//! Driving one node's core: draining actions, sending and delivering items, timers.

use crate::core::{Action, Block, DisconnectReason, PeerKey, PeerMessage, PieceIndex, Time};
use std::time::Duration;

use super::conn::Item;
use super::{Event, Swarm, MISSING, POISONED, VERIFIED};

impl Swarm<'_> {
    /// Drains `node`'s actions, then re-arms its timer and notes completion.
    pub(super) fn drain(&mut self, now: Time, node: u32) {
        if self.nodes[node as usize].frozen {
            // A frozen process acts on nothing: its core's actions wait forever.
            return;
        }
        loop {
            let Some(torrent) = self.nodes[node as usize].torrent.as_mut() else {
                return;
            };
            let Some(action) = torrent.poll_action() else {
                break;
            };
            match action {
                Action::Send { peer, msg } => self.send_ctl(now, node, peer, msg),
                Action::SendBlock { peer, block } => self.send_block(now, node, peer, block),
                Action::VerifyPiece { piece } => self.verify(now, node, piece),
                Action::VerifyPart { part } => self.verify_part(now, node, part),
                Action::Disconnect { peer, reason } => {
                    if reason == DisconnectReason::Banned {
                        self.counters.bans += 1;
                    }
                    // As the node: a dial its own core dropped (ban, both seeders) is
                    // never redialled; after a protocol error it is.
                    let id = peer.0 as u32;
                    let retire = !matches!(reason, DisconnectReason::ProtocolViolation(_))
                        && self
                            .conns
                            .get(id as usize)
                            .and_then(|c| c.dialler)
                            .is_some_and(|(n, _)| n == node);
                    self.close_conn_with(now, id, retire);
                }
            }
        }
        self.refresh_timer(now, node);
        self.check_complete(now, node);
    }

    fn refresh_timer(&mut self, now: Time, node: u32) {
        let n = &mut self.nodes[node as usize];
        let Some(at) = n.torrent.as_ref().and_then(|t| t.poll_timeout()) else {
            return;
        };
        // Never at or before `now`: a core that keeps asking for "now" must not stall time.
        let at = at.max(now + Duration::from_nanos(1));
        if at < n.timer_at {
            n.timer_at = at;
            n.timer_version = n.timer_version.wrapping_add(1);
            let version = n.timer_version;
            self.queue.push(at, Event::Timer { node, version });
        }
    }

    fn check_complete(&mut self, now: Time, node: u32) {
        let n = &mut self.nodes[node as usize];
        if n.completed_at.is_some() || !n.torrent.as_ref().is_some_and(|t| t.is_complete()) {
            return;
        }
        n.completed_at = Some(now);
        if n.expected {
            self.remaining -= 1;
        }
        let base = node as usize * self.piece_count as usize;
        let all_verified = self.pieces[base..base + self.piece_count as usize]
            .iter()
            .all(|&s| s == VERIFIED);
        if !all_verified {
            self.counters.integrity_violations += 1;
        }
    }

    fn piece_state(&mut self, node: u32, piece: PieceIndex) -> Option<&mut u8> {
        if piece.0 >= self.piece_count {
            return None;
        }
        self.pieces
            .get_mut(node as usize * self.piece_count as usize + piece.0 as usize)
    }

    fn verify(&mut self, now: Time, node: u32, piece: PieceIndex) {
        let honest = !self.nodes[node as usize].liar;
        let Some(state) = self.piece_state(node, piece) else {
            self.counters.integrity_violations += 1;
            return;
        };
        let valid = *state != POISONED;
        let newly = valid && *state != VERIFIED;
        *state = if valid { VERIFIED } else { MISSING };
        if valid {
            self.verified_parts.remove(&(node, piece.0));
        }
        if !valid {
            self.counters.hash_failures += 1;
        }
        if newly && honest && node != 0 {
            let holders = &mut self.holders[piece.0 as usize];
            *holders += 1;
            if *holders == 1 {
                self.covered += 1;
                self.maybe_origin_leaves(now);
            }
        }
        if let Some(t) = self.nodes[node as usize].torrent.as_mut() {
            t.handle_piece_verified(now, piece, valid);
        }
    }

    /// A relay part arrived whole: valid unless a corrupt block of its piece arrived (a
    /// liar's; conservative: the piece's honest parts then fail too, and wait for the
    /// piece's own check). Verified parts are recorded for the integrity check of
    /// [`Swarm::send_block`].
    fn verify_part(&mut self, now: Time, node: u32, part: Block) {
        let valid = self
            .piece_state(node, part.piece)
            .is_some_and(|s| *s != POISONED);
        if valid {
            let r = u64::from(self.config.relay_part_bytes.max(1));
            let index = u64::from(part.offset.0) / r;
            if index < 64 {
                *self.verified_parts.entry((node, part.piece.0)).or_insert(0) |= 1 << index;
            }
        }
        if let Some(t) = self.nodes[node as usize].torrent.as_mut() {
            t.handle_part_verified(now, part, valid);
        }
    }

    fn send_ctl(&mut self, now: Time, node: u32, peer: PeerKey, msg: PeerMessage) {
        if matches!(msg, PeerMessage::Cancel(_)) {
            let from_timer = self.timer_node == Some(node);
            let n = &mut self.nodes[node as usize];
            n.cancels_sent += 1;
            n.timer_cancels_sent += u64::from(from_timer);
        }
        let Some(dir) = self.out_dir(node, peer) else {
            return;
        };
        let d = &mut self.dirs[dir as usize];
        // Behind the block on the wire and every block in the socket buffer.
        let mark = d.started.max(d.reported);
        if d.done < mark || !d.ctl_waiting.is_empty() {
            d.ctl_waiting.push_back((mark, msg));
        } else {
            self.put_in_flight(now, dir, Item::Ctl(msg));
        }
    }

    fn send_block(&mut self, now: Time, node: u32, peer: PeerKey, block: Block) {
        let liar = self.nodes[node as usize].liar;
        let has_it = self
            .piece_state(node, block.piece)
            .is_some_and(|s| *s == VERIFIED)
            || self.parts_verified(node, block);
        if !has_it {
            // An honest core only serves pieces it verified.
            self.counters.integrity_violations += 1;
        }
        let Some(dir) = self.out_dir(node, peer) else {
            return;
        };
        if node == 0 && self.config.debug_stuck {
            let held = self
                .holders
                .get(block.piece.0 as usize)
                .is_some_and(|&h| h > 0);
            self.origin_trace
                .on_handed(block.piece.0, block.offset.0, held);
        }
        self.handed_blocks += 1;
        let rank = self.handed_blocks;
        let d = &mut self.dirs[dir as usize];
        d.blocks.push_back((block, liar, rank));
        d.queued_bytes += u64::from(block.len_bytes);
        d.unreported.push_back((d.queued_bytes, block));
        self.report_buffered(now, dir);
        self.kick(now, dir);
    }

    /// Whether every relay part `block` touches was verified at `node` ([`Swarm::verify_part`]).
    fn parts_verified(&self, node: u32, block: Block) -> bool {
        let r = u64::from(self.config.relay_part_bytes);
        if r == 0 || block.len_bytes == 0 {
            return false;
        }
        let Some(mask) = self.verified_parts.get(&(node, block.piece.0)) else {
            return false;
        };
        let first = u64::from(block.offset.0) / r;
        let last = (block.end_bytes() - 1) / r;
        (first..=last).all(|i| i < 64 && mask >> i & 1 == 1)
    }

    /// Reports to the sender's core the blocks of `dir` that fit in the send buffer (see
    /// [`super::conn`]).
    fn report_buffered(&mut self, now: Time, dir: u32) {
        let (src, _) = self.ends(dir);
        let buffer = self.config.send_buffer_bytes;
        let key = PeerKey(u64::from(dir / 2));
        loop {
            let d = &mut self.dirs[dir as usize];
            let Some(&(end, block)) = d.unreported.front() else {
                return;
            };
            if end > d.sent_bytes.saturating_add(buffer) {
                return;
            }
            d.unreported.pop_front();
            d.reported += 1;
            if let Some(t) = self.nodes[src as usize].torrent.as_mut() {
                t.handle_block_sent(now, key, block);
                self.dirty.push(src);
            }
        }
    }

    /// The direction `node` sends on for connection `peer`, if that connection is open.
    fn out_dir(&self, node: u32, peer: PeerKey) -> Option<u32> {
        let id = u32::try_from(peer.0).ok()?;
        let conn = self.conns.get(id as usize)?;
        if !conn.open {
            return None;
        }
        conn.out_dir(id, node)
    }

    /// The node at the other end of `node`'s connection `key`.
    fn sender_of(&self, node: u32, key: PeerKey) -> Option<u32> {
        let conn = self.conns.get(usize::try_from(key.0).ok()?)?;
        Some(if conn.a == node { conn.b } else { conn.a })
    }

    /// `(sender, receiver)` of direction `dir`.
    fn ends(&self, dir: u32) -> (u32, u32) {
        let conn = &self.conns[(dir / 2) as usize];
        if dir.is_multiple_of(2) {
            (conn.a, conn.b)
        } else {
            (conn.b, conn.a)
        }
    }

    /// Starts the next block on `dir` if the link is idle and neither end is frozen (a
    /// frozen sender writes nothing more; a frozen receiver's window is closed, so the
    /// sender's queue to it stalls).
    fn kick(&mut self, now: Time, dir: u32) {
        let (src, dst) = self.ends(dir);
        if self.nodes[src as usize].frozen || self.nodes[dst as usize].frozen {
            return;
        }
        let d = &mut self.dirs[dir as usize];
        if d.sending.is_some() {
            return;
        }
        let Some((block, corrupt, rank)) = d.blocks.pop_front() else {
            return;
        };
        d.sending = Some((block, corrupt));
        d.sending_since = now;
        d.started += 1;
        self.net
            .start_ranked(now, dir, src, dst, u64::from(block.len_bytes), rank);
    }

    fn put_in_flight(&mut self, now: Time, dir: u32, item: Item) {
        self.dirs[dir as usize].in_flight.push_back(item);
        self.wire.push_back((now + self.config.latency, dir));
    }

    /// The block on direction `dir` left the sender completely.
    pub(super) fn on_block_sent(&mut self, now: Time, dir: u32) {
        let Some((block, corrupt)) = self.dirs[dir as usize].sending.take() else {
            return;
        };
        let (src, dst) = self.ends(dir);
        if let (Some(a), Some(b)) = (self.net.rack(src), self.net.rack(dst)) {
            if a != b {
                self.cross_rack_bytes += f64::from(block.len_bytes);
            }
        }
        self.put_in_flight(now, dir, Item::Block { block, corrupt });
        let d = &mut self.dirs[dir as usize];
        d.done += 1;
        d.sent_bytes += u64::from(block.len_bytes);
        let done = d.done;
        while let Some((mark, _)) = self.dirs[dir as usize].ctl_waiting.front() {
            if *mark > done {
                break;
            }
            let Some((_, msg)) = self.dirs[dir as usize].ctl_waiting.pop_front() else {
                break;
            };
            self.put_in_flight(now, dir, Item::Ctl(msg));
        }
        let bytes = f64::from(block.len_bytes);
        let since = self.dirs[dir as usize].sending_since;
        self.timeline.add(since, now, bytes, src == 0);
        self.nodes[src as usize].up_bytes += bytes;
        if src == 0 && self.config.debug_stuck {
            let up = self.nodes[0].up_bytes;
            self.origin_trace
                .on_sent(now, block.piece.0, block.offset.0, up);
        }
        self.report_buffered(now, dir);
        self.kick(now, dir);
    }

    /// Delivers the oldest item in flight on `dir` (its arrival time is `now`).
    pub(super) fn on_arrive(&mut self, now: Time, dir: u32) {
        let conn_id = dir / 2;
        if !self.conns[conn_id as usize].open {
            return;
        }
        let (_, dst) = self.ends(dir);
        let Some(item) = self.dirs[dir as usize].in_flight.pop_front() else {
            return;
        };
        if self.nodes[dst as usize].frozen {
            // Never read.
            return;
        }
        self.deliver(now, dst, PeerKey(u64::from(conn_id)), item);
        self.dirty.push(dst);
    }

    fn deliver(&mut self, now: Time, dst: u32, key: PeerKey, item: Item) {
        let result = match item {
            Item::Ctl(msg) => match self.nodes[dst as usize].torrent.as_mut() {
                Some(t) => t.handle_message(now, key, msg),
                None => Ok(()),
            },
            Item::Block { block, corrupt } => {
                // Like a storing driver: only payload the core still wants is written, so a
                // late endgame duplicate (honest or not) never touches a piece's data.
                let wanted = self.nodes[dst as usize]
                    .torrent
                    .as_ref()
                    .is_some_and(|t| t.wants_block(key, &block));
                if !wanted && self.config.debug_stuck && self.sender_of(dst, key) == Some(0) {
                    self.origin_trace.on_unwanted(f64::from(block.len_bytes));
                }
                if wanted && self.config.debug_stuck {
                    let bin = (now.as_nanos() / self.timeline.bin_ns()) as usize;
                    let bins = &mut self.nodes[dst as usize].down_bins;
                    if bins.len() <= bin {
                        bins.resize(bin + 1, 0.0);
                    }
                    bins[bin] += f64::from(block.len_bytes);
                }
                if corrupt && wanted {
                    if let Some(state) = self.piece_state(dst, block.piece) {
                        if *state != VERIFIED {
                            *state = POISONED;
                        }
                    }
                }
                match self.nodes[dst as usize].torrent.as_mut() {
                    Some(t) => t.handle_block_received(now, key, block),
                    None => Ok(()),
                }
            }
        };
        if result.is_err() {
            self.counters.protocol_errors += 1;
        }
    }
}
