//! Inbound side of the torrent: what peers have, our requests, received blocks, hashes.

use super::Torrent;
use crate::core::choker::snub_deadline;
use crate::core::config::BLOCK_LEN_BYTES;
use crate::core::peer::{remember, PeerState};
use crate::core::picker::PickContext;
use crate::core::request_queue::queue_limit;
use crate::core::{Action, Bitfield, Block, DisconnectReason, PeerKey, PeerMessage};
use crate::core::{PieceIndex, ProtocolError, Time, TorrentConfig};

impl Torrent {
    pub(super) fn check_piece(&self, piece: PieceIndex) -> Result<(), ProtocolError> {
        if piece.0 < self.config.piece_count {
            Ok(())
        } else {
            Err(ProtocolError::PieceOutOfRange {
                piece: piece.0,
                piece_count: self.config.piece_count,
            })
        }
    }

    /// Checks what can be checked without acting: piece ranges, BEP 6 messages only with
    /// the fast extension, bitfields of the right length. A bitfield-like message is
    /// accepted at any time (see [`Torrent::on_peer_bitfield`]).
    fn validate_message(&self, msg: &PeerMessage, fast: bool) -> Result<(), ProtocolError> {
        match msg {
            PeerMessage::Have(p) | PeerMessage::AllowedFast(p) | PeerMessage::Suggest(p) => {
                self.check_piece(*p)?
            }
            PeerMessage::Request(b) | PeerMessage::Cancel(b) | PeerMessage::Reject(b) => {
                self.check_piece(b.piece)?
            }
            _ => {}
        }
        let bep6 = matches!(
            msg,
            PeerMessage::HaveAll
                | PeerMessage::HaveNone
                | PeerMessage::Reject(_)
                | PeerMessage::AllowedFast(_)
                | PeerMessage::Suggest(_)
        );
        if bep6 && !fast {
            return Err(ProtocolError::FastExtensionNotNegotiated);
        }
        if let PeerMessage::Bitfield(b) = msg {
            if b.len() != self.config.piece_count {
                return Err(ProtocolError::BitfieldLength {
                    got: b.len(),
                    expected: self.config.piece_count,
                });
            }
        }
        Ok(())
    }

    pub(super) fn on_message(
        &mut self,
        now: Time,
        key: PeerKey,
        msg: PeerMessage,
    ) -> Result<(), ProtocolError> {
        let Some(peer) = self.peers.get(&key) else {
            return Ok(());
        };
        self.validate_message(&msg, peer.caps.fast_extension)?;
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        match msg {
            PeerMessage::KeepAlive => {}
            PeerMessage::Bitfield(b) => self.on_peer_bitfield(now, key, b),
            PeerMessage::HaveAll => {
                self.on_peer_bitfield(now, key, Bitfield::full(self.config.piece_count))
            }
            PeerMessage::HaveNone => {
                self.on_peer_bitfield(now, key, Bitfield::new(self.config.piece_count))
            }
            PeerMessage::Have(p) => self.on_have(now, key, p),
            PeerMessage::Choke => self.on_choked(key),
            PeerMessage::Unchoke => {
                peer.peer_choking = false;
                peer.last_progress_at = now;
                self.fill_requests(key);
            }
            PeerMessage::Interested => {
                peer.peer_interested = true;
                if peer.am_choking {
                    self.fill_free_slots(now);
                }
            }
            PeerMessage::NotInterested => {
                peer.peer_interested = false;
                if !peer.am_choking {
                    self.set_choke(now, key, true);
                    self.fill_free_slots(now);
                }
            }
            PeerMessage::Request(b) => self.on_request(now, key, b)?,
            PeerMessage::Cancel(b) => self.on_cancel(key, b),
            PeerMessage::Reject(b) => self.on_reject(key, b)?,
            PeerMessage::AllowedFast(p) | PeerMessage::Suggest(p) => {
                if !self.have.get(p) {
                    if matches!(msg, PeerMessage::Suggest(_)) {
                        remember(&mut peer.suggested, p);
                    } else {
                        remember(&mut peer.allowed_fast, p);
                    }
                    self.fill_requests(key);
                }
            }
        }
        Ok(())
    }

    /// A bitfield-like message (checked to be of the right length): the peer's whole piece
    /// set, replacing what it announced before. BEP 3 sends it only first, but some
    /// clients (aria2) send it again mid-connection; libtorrent takes a later one as a full
    /// update of the peer's set, and so do we. Counts stay exact: pieces the peer no
    /// longer claims are taken back, new ones added, each piece counted once per peer, so
    /// `remove_peer` still takes back exactly the peer's bitfield. Interest is re-evaluated
    /// both ways; requests already in flight stay (the peer answers or rejects them, or
    /// anti-snubbing reclaims them).
    fn on_peer_bitfield(&mut self, now: Time, key: PeerKey, b: Bitfield) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let old = std::mem::replace(&mut peer.have, b);
        let mut rack = self.rack.as_mut().filter(|r| r.is_mate(key));
        for p in old.iter_ones().filter(|&p| !peer.have.get(p)) {
            self.picker.dec(p);
            if let Some(r) = rack.as_mut() {
                r.lost(p);
            }
        }
        for p in peer.have.iter_ones().filter(|&p| !old.get(p)) {
            self.picker.inc(p);
            if let Some(r) = rack.as_mut() {
                r.gained(p);
            }
        }
        peer.interesting = peer.have.and_not_count(&self.have);
        if peer.interesting == 0 && peer.am_interested {
            peer.am_interested = false;
            self.send(key, PeerMessage::NotInterested);
        }
        self.after_peer_gained(now, key);
    }

    fn on_have(&mut self, now: Time, key: PeerKey, p: PieceIndex) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.have.set(p) {
            return; // duplicate have: harmless
        }
        self.picker.inc(p);
        if let Some(r) = self.rack.as_mut().filter(|r| r.is_mate(key)) {
            r.gained(p);
        }
        if !self.have.get(p) {
            peer.interesting += 1;
        }
        self.after_peer_gained(now, key);
    }

    /// After a peer announced pieces: become interested, request, or drop two seeders.
    fn after_peer_gained(&mut self, now: Time, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.is_seed() && self.have.is_full() {
            self.drop_peer(now, key, DisconnectReason::NotUseful);
            return;
        }
        if peer.interesting > 0 && !peer.am_interested {
            peer.am_interested = true;
            self.send(key, PeerMessage::Interested);
        }
        self.fill_requests(key);
    }

    fn on_choked(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.peer_choking = true;
        if peer.caps.fast_extension {
            return; // BEP 6: requests stay pending until served or rejected
        }
        // BEP 3: a choke discards all pending requests.
        let dropped = peer.drain_inflight();
        for b in &dropped {
            self.picker.cancel_request(key, *b);
        }
        if !dropped.is_empty() {
            self.fill_all_requests();
        }
    }

    fn on_reject(&mut self, key: PeerKey, b: Block) -> Result<(), ProtocolError> {
        let relay = self.relay_part_for(key).is_some();
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let b = if relay {
            // A relay peer answers part by part, so our request shrinks to its rest as
            // parts arrive, and its reject names the whole of what we asked (or the whole
            // piece). The live request is matched first: a reject that matched a stale
            // cancel instead (it sends none for a cancelled rest) would leave the live one
            // in flight for ever. At worst a reject meant for a cancel costs the re-request
            // (its parts are then discarded as strays).
            if peer.take_inflight(&b) {
                b
            } else if let Some(rest) = peer.take_inflight_within(&b) {
                rest
            } else {
                peer.take_cancelled(&b);
                return Ok(());
            }
        } else {
            // A reject answering our cancel comes before any answer to a re-request of the
            // same block (the link is FIFO), so the cancelled memory is matched first.
            if peer.take_cancelled(&b) {
                return Ok(());
            }
            if !peer.take_inflight(&b) {
                return Err(ProtocolError::UnrequestedReject(b));
            }
            b
        };
        self.picker.cancel_request(key, b);
        // Not from this peer for a while (cleared at each rechoke): a distinct-first
        // seeder rejects pieces others can serve.
        remember(&mut peer.rejected, b.piece);
        self.fill_requests(key);
        self.fill_all_requests();
        Ok(())
    }

    pub(super) fn on_block(
        &mut self,
        now: Time,
        key: PeerKey,
        block: Block,
    ) -> Result<(), ProtocolError> {
        let relay = self.relay_part_for(key);
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let len = u64::from(block.len_bytes);
        // A relay peer answers a request part by part: each part is the request's head.
        let matched =
            peer.take_inflight(&block) || relay.is_some() && peer.take_inflight_head(&block);
        if !matched {
            // A relay peer's parts can trail a cancel or a reject of the request they
            // answer (control messages overtake queued parts): one part, aligned, that
            // matches nothing is discarded, not a violation. It is never stored or
            // forwarded, so such a peer can only waste its own upload and our downlink.
            let stray_part =
                relay.is_some_and(|r| block.offset.0.is_multiple_of(r) && block.len_bytes <= r);
            if peer.take_cancelled(&block)
                || relay.is_some() && peer.cancelled_covers(&block)
                || stray_part
            {
                self.stats.wasted_bytes += len;
                return Ok(());
            }
            return Err(ProtocolError::UnrequestedBlock(block));
        }
        peer.download.record(len);
        peer.last_progress_at = now;
        peer.snubbed = false;
        self.rack_resume(key);
        self.on_delivery(now, key, true);
        self.stats.downloaded_bytes += len;
        let out = self.picker.on_block_from(key, block, relay.is_some());
        if out.duplicate {
            self.stats.wasted_bytes += len;
        }
        for (other, b) in &out.cancels {
            if let Some(o) = self.peers.get_mut(other) {
                o.forget_inflight(*b);
                self.actions.push_back(Action::Send {
                    peer: *other,
                    msg: PeerMessage::Cancel(*b),
                });
            }
        }
        if let (Some(r), false) = (relay, out.duplicate) {
            let piece_len = u64::from(self.config.piece_len(block.piece));
            let off = u64::from(block.offset.0);
            if off % u64::from(r) == 0 && block.end_bytes() == piece_len.min(off + u64::from(r)) {
                self.actions.push_back(Action::VerifyPart { part: block });
            }
        }
        if out.piece_complete {
            self.actions
                .push_back(Action::VerifyPiece { piece: block.piece });
        }
        self.fill_requests(key);
        for (other, _) in out.cancels {
            self.fill_requests(other);
        }
        if self.peers.get(&key).is_some_and(|p| p.inflight.is_empty()) && self.nothing_coming() {
            // Nothing is coming from anyone (but stalled peers): peers that rejected
            // pieces are asked again.
            self.fill_all_requests();
        }
        Ok(())
    }

    pub(super) fn on_verified(&mut self, now: Time, piece: PieceIndex, valid: bool) {
        if self.have.get(piece) {
            return;
        }
        let copy = self.picker.on_verified(piece, valid);
        if copy.contributors.is_empty() {
            self.smart_ban_forget(piece);
            return; // not awaiting verification: stale or duplicate report
        }
        if !valid {
            self.on_hash_failure(now, piece, copy);
            return;
        }
        self.smart_ban_passed(now, piece);
        self.mark_have(now, piece);
    }

    /// Another torrent of this node verified `piece` (see [`Torrent::handle_piece_verified_elsewhere`]).
    pub(super) fn on_verified_elsewhere(&mut self, now: Time, piece: PieceIndex) {
        if self.check_piece(piece).is_err() || self.have.get(piece) {
            return;
        }
        let outstanding = self.picker.on_had_elsewhere(piece);
        for (key, b) in &outstanding {
            if let Some(p) = self.peers.get_mut(key) {
                p.forget_inflight(*b);
                self.actions.push_back(Action::Send {
                    peer: *key,
                    msg: PeerMessage::Cancel(*b),
                });
            }
        }
        self.mark_have(now, piece);
        if !outstanding.is_empty() {
            self.fill_all_requests();
        }
    }

    /// `piece` is ours: `have` to peers lacking it, `not interested` to peers that no
    /// longer have anything for us, and two seeders part.
    fn mark_have(&mut self, now: Time, piece: PieceIndex) {
        self.have.set(piece);
        self.stats.pieces_have += 1;
        let complete = self.have.is_full();
        let told = self.relay_piece_had(now, piece);
        let mut useless = Vec::new();
        for (&key, peer) in self.peers.iter_mut() {
            let msg = if peer.have.get(piece) {
                peer.interesting -= 1;
                if complete && peer.is_seed() {
                    useless.push(key);
                }
                if peer.interesting > 0 || !peer.am_interested {
                    continue;
                }
                peer.am_interested = false;
                PeerMessage::NotInterested
            } else if told.contains(&key) {
                continue; // announced when its first part was verified
            } else {
                // Peers that have the piece need no `have`: it only feeds their picker.
                PeerMessage::Have(piece)
            };
            peer.last_sent_at = now;
            self.actions.push_back(Action::Send { peer: key, msg });
        }
        for key in useless {
            self.drop_peer(now, key, DisconnectReason::NotUseful);
        }
    }

    /// A piece failed its hash: smart ban decides whom to strike
    /// ([`super::smart_ban`]).
    fn on_hash_failure(
        &mut self,
        now: Time,
        piece: PieceIndex,
        copy: crate::core::picker::CheckedCopy,
    ) {
        self.stats.hash_failures += 1;
        let piece_len = u64::from(self.config.piece_len(piece));
        self.stats.wasted_bytes += piece_len;
        self.smart_ban_failed(now, piece, copy);
        self.fill_all_requests();
    }

    /// Tops up our requests to `key` to its [`queue_limit`] (one request while snubbed).
    ///
    /// Pieces the peer rejected are skipped, unless nothing at all is in flight from any
    /// peer but stalled ones ([`super::stall`]): then they are asked again rather than
    /// leaving the downlink idle (a distinct-first seeder serves a repeated request).
    pub(super) fn fill_requests(&mut self, key: PeerKey) {
        if self.request_loop(key) && self.nothing_coming() {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.rejected.clear();
            }
            self.request_loop(key);
        }
    }

    /// Issues requests to `key` while its pipeline has room; true when it ends with nothing
    /// in flight to this peer though it rejected pieces we could otherwise ask for.
    fn request_loop(&mut self, key: PeerKey) -> bool {
        let random_first = self.have.count_ones() < self.config.random_first_pieces;
        let Some(peer) = self.peers.get(&key) else {
            return false;
        };
        if !may_request(peer) {
            return false;
        }
        self.picker.resync_availability(self.now);
        if !has_room(&self.config, peer) {
            // The loop below would not run: what it would return, without the rest.
            return peer.inflight.is_empty() && !peer.rejected.is_empty();
        }
        // Nothing in flight from anyone: a remote peer may supply any piece the rack
        // lacks, so a missing importer delays a piece instead of stalling the rack.
        let relaxed = self.rack.is_some() && self.nothing_coming();
        // A stalled peer gets no endgame duplicates nor shadows ([`super::stall`]).
        let stalled = self.is_stalled(key);
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        let (limit_requests, limit_bytes) = request_bounds(&self.config, peer);
        let now = self.now;
        // Rack-aware: a remote peer only supplies pieces this node imports for its rack.
        // Endgame duplicates from remote peers stay filtered too: allowing them cost
        // 0.25 F more cross-rack bytes at 4 × 25 peers for no gain in completion.
        let import = self
            .rack
            .as_ref()
            .filter(|r| !r.is_mate(key))
            .map(|r| r.import_filter(&peer.suggested, relaxed));
        let mut first_request = false;
        while peer.inflight.len() < limit_requests && peer.inflight_bytes < limit_bytes {
            // A request the download limit holds back is not issued at all, so it is
            // never in flight (no snub timer runs on it).
            if let Some(bucket) = &self.config.download_limit {
                if !bucket.is_ready(now) {
                    self.download_throttled = true;
                    break;
                }
            }
            let ctx = PickContext {
                peer: key,
                peer_have: &peer.have,
                max_request_len_bytes: peer.caps.max_request_len_bytes.max(BLOCK_LEN_BYTES),
                suggested: &peer.suggested,
                rejected: &peer.rejected,
                allowed_only: peer.peer_choking.then_some(&peer.allowed_fast[..]),
                random_first,
                endgame_ok: !peer.snubbed && !stalled,
                shadow_ok: peer.caps.node_endgame
                    && !peer.snubbed
                    && !stalled
                    && peer.inflight.is_empty(),
                fresh_ok: !peer.snubbed || peer.heard_since_snub,
                import,
                stalled: &self.stalled,
            };
            let Some(b) = self.picker.pick(&ctx, &mut self.rng) else {
                break;
            };
            if let Some(bucket) = &self.config.download_limit {
                bucket.take(now, u64::from(b.len_bytes));
            }
            first_request |= peer.inflight.is_empty();
            peer.inflight.push(b);
            peer.inflight_bytes += u64::from(b.len_bytes);
            self.actions.push_back(Action::Send {
                peer: key,
                msg: PeerMessage::Request(b),
            });
        }
        let rejected_only = peer.inflight.is_empty() && !peer.rejected.is_empty();
        if first_request {
            self.on_first_request(now, key);
        }
        rejected_only
    }

    /// Tops up every peer (after blocks were freed): O(peers) picks.
    ///
    /// Only peers a top-up can act on are visited: for the others (not interested,
    /// choked, or a full queue with requests in flight) [`Torrent::request_loop`] returns
    /// at once, so passing them over changes nothing but the lookups (every reject calls
    /// this). The availability resync the first of them would have run is run first.
    pub(super) fn fill_all_requests(&mut self) {
        let mut any_engaged = false;
        let mut keys = Vec::with_capacity(self.peers.len());
        for (&key, p) in &self.peers {
            let engaged = may_request(p);
            any_engaged |= engaged;
            if engaged && (p.inflight.is_empty() || has_room(&self.config, p)) {
                keys.push(key);
            }
        }
        if any_engaged {
            self.picker.resync_availability(self.now);
        }
        for key in keys {
            self.fill_requests(key);
        }
    }

    /// Anti-snubbing: a peer that unchoked us, holds our requests and sent nothing for
    /// [`snub_deadline`] (`snub_timeout`, longer when its requests take longer at a fair
    /// share of our download rate or at its own average rate) is snubbed; its requests are
    /// cancelled and re-issued elsewhere. The silence is counted from its last block or
    /// payload progress ([`Torrent::handle_block_progress`]: a block being streamed), its
    /// unchoke, or the last check at which it held none of our requests, whichever is
    /// latest. The deadline covers requests still queued at the peer (no bytes yet); the
    /// progress covers large blocks arriving slowly. A snubbed peer's probe request that
    /// goes unanswered as long is cancelled the same way, and the peer may start no fresh
    /// piece until it sends a message again (`heard_since_snub`).
    pub(super) fn check_snubs(&mut self, now: Time) {
        let peers = self.peers.values();
        let rate: f64 = peers.clone().map(|p| p.download.rate_bytes_per_s()).sum();
        let senders = peers.filter(|p| !p.inflight.is_empty()).count();
        let fair = rate / senders.max(1) as f64;
        let mut freed = false;
        for (key, peer) in self.peers.iter_mut() {
            if peer.inflight.is_empty() {
                peer.last_progress_at = now;
                continue;
            }
            let connected_s = now
                .saturating_duration_since(peer.connected_at)
                .as_secs_f64();
            let average = peer.download.total_bytes() as f64 / connected_s.max(1e-3);
            let deadline = snub_deadline(&self.config.choker, peer.inflight_bytes, fair, average);
            let silent = now.saturating_duration_since(peer.last_progress_at);
            // A rack-mate silent for the snub floor (frozen, overloaded) no longer stands
            // for its pieces nor imports: the rest of the rack takes them over
            // ([`crate::core::rack`]) without waiting for the adaptive deadline, which
            // grows to a minute when nothing else arrives. It is back at its next block.
            if silent >= self.config.choker.snub_timeout {
                if let Some(rack) = self.rack.as_mut() {
                    if rack.is_mate(*key) {
                        rack.remove_mate(*key, &peer.have);
                        freed = true;
                    }
                }
            }
            if silent < deadline {
                continue;
            }
            peer.snubbed = true;
            peer.heard_since_snub = false;
            for b in peer.drain_inflight() {
                self.picker.cancel_request(*key, b);
                self.actions.push_back(Action::Send {
                    peer: *key,
                    msg: PeerMessage::Cancel(b),
                });
            }
            freed = true;
        }
        if freed {
            self.fill_all_requests();
        }
    }
}

/// Whether we may request from `peer` at all: interested in it, and unchoked by it or
/// allowed some fast piece (BEP 6).
fn may_request(peer: &PeerState) -> bool {
    peer.am_interested && !(peer.peer_choking && peer.allowed_fast.is_empty())
}

/// Our request queue toward `peer`: at most this many requests and bytes in flight
/// ([`queue_limit`]); one byte, so one request, while it snubs us.
fn request_bounds(config: &TorrentConfig, peer: &PeerState) -> (usize, u64) {
    let caps = peer.caps;
    let limit = queue_limit(
        caps.max_request_len_bytes,
        peer.download.rate_bytes_per_s(),
        caps.reqq,
        config.pipeline_bytes,
        config.max_request_queue,
    );
    (limit.requests, if peer.snubbed { 1 } else { limit.bytes })
}

/// Whether our request queue toward `peer` has room for another request.
fn has_room(config: &TorrentConfig, peer: &PeerState) -> bool {
    let (requests, bytes) = request_bounds(config, peer);
    peer.inflight.len() < requests && peer.inflight_bytes < bytes
}
