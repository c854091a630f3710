//! Outbound side of the torrent: requests we serve, upload ordering, seeder policy,
//! choking.

use super::upload_budget::UploadBudget;
use super::Torrent;
use crate::core::choker::Candidate;
use crate::core::config::BLOCK_LEN_BYTES;
use crate::core::peer::{remember_up_to, SEEDER_REJECT_MEMORY};
use crate::core::upload_history::UploadHistory;
use crate::core::{Action, Block, PeerKey, PeerMessage, PieceIndex, ProtocolError};
use crate::core::{SeederPolicy, Time, TorrentConfig};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

/// Pending requests examined when choosing what to upload next; bounds the cost per
/// block while still reordering within a few pipelines' worth of requests.
const CHOOSE_WINDOW: usize = 64;
/// Times in a row the oldest pending request may be passed over for a better one.
const MAX_FRONT_SKIPS: u32 = 16;

/// Requests accepted and not yet handed to the driver, oldest first, with a set beside
/// the queue so that a duplicate request is found without scanning every peer's queue
/// (up to `max_requests_per_peer` per peer). Both always hold the same entries.
#[derive(Debug, Default)]
struct PendingRequests {
    order: VecDeque<(PeerKey, Block)>,
    members: HashSet<(PeerKey, Block)>,
}

impl PendingRequests {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn iter(&self) -> std::collections::vec_deque::Iter<'_, (PeerKey, Block)> {
        self.order.iter()
    }

    fn contains(&self, e: &(PeerKey, Block)) -> bool {
        self.members.contains(e)
    }

    fn push_back(&mut self, e: (PeerKey, Block)) {
        if self.members.insert(e) {
            self.order.push_back(e);
        }
    }

    /// Removes and returns the entry at queue position `i`.
    fn remove(&mut self, i: usize) -> Option<(PeerKey, Block)> {
        let e = self.order.remove(i)?;
        self.members.remove(&e);
        Some(e)
    }

    /// Removes `e` wherever it is in the queue; whether it was there.
    fn remove_entry(&mut self, e: &(PeerKey, Block)) -> bool {
        if !self.members.remove(e) {
            return false;
        }
        if let Some(i) = self.order.iter().position(|x| x == e) {
            self.order.remove(i);
        }
        true
    }

    /// Removes every request of `key`; returns its blocks, oldest first.
    fn take_peer(&mut self, key: PeerKey) -> Vec<Block> {
        let mut taken = Vec::new();
        self.order.retain(|&(k, b)| {
            if k == key {
                taken.push(b);
            }
            k != key
        });
        for &b in &taken {
            self.members.remove(&(key, b));
        }
        taken
    }
}

/// Upload queue and per-piece upload history.
#[derive(Debug)]
pub(super) struct UploadState {
    /// Requests accepted and not yet handed to the driver, oldest first.
    pending: PendingRequests,
    /// SendBlock bytes handed to the driver and not yet reported sent, per peer and in
    /// the node window ([`super::upload_budget`]).
    budget: UploadBudget,
    /// Complete when created: the distinct-first rejects and suggestions apply.
    origin: bool,
    /// Consecutive choices that passed over `pending[0]`.
    front_skips: u32,
    /// Per piece: copies started and the latest receiver (maybe shared by the node's
    /// workers), and the current round (lowest copy count).
    history: Arc<UploadHistory>,
    suggest_order: Vec<PieceIndex>,
    suggest_cursor: usize,
}

impl UploadState {
    pub(super) fn new(config: &TorrentConfig, origin: bool, rng: &mut ChaCha8Rng) -> Self {
        let n = config.piece_count;
        let mut order: Vec<PieceIndex> = (0..n).map(PieceIndex).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        UploadState {
            pending: PendingRequests::default(),
            budget: UploadBudget::default(),
            origin,
            front_skips: 0,
            history: config
                .upload_history
                .clone()
                .unwrap_or_else(|| Arc::new(UploadHistory::new(n))),
            suggest_order: order,
            suggest_cursor: 0,
        }
    }

    pub(super) fn remove_peer(&mut self, key: PeerKey) {
        self.pending.take_peer(key);
        self.budget.remove(key);
    }

    /// A relay part of `len` bytes was handed out for `key` ([`super::relay`]).
    pub(super) fn hand_part(&mut self, now: Time, key: PeerKey, len: u64) {
        self.budget.handed(now, key, len);
    }

    /// Copies of `piece` that went to peers other than `key`.
    fn copies_elsewhere(&self, piece: PieceIndex, key: PeerKey) -> u16 {
        self.history.copies_elsewhere(piece, key)
    }

    fn record_copy(&self, piece: PieceIndex, key: PeerKey) {
        self.history.record_copy(piece, key);
    }

    /// Whether serving `piece` to `key` would start a copy beyond the current round
    /// (some other piece has fewer copies). Once every piece left once, second copies
    /// are the round: an origin whose distinct pieces are all out would otherwise sit
    /// idle while the last pieces spread, instead of feeding the tail.
    fn ahead_of_round(&self, piece: PieceIndex, key: PeerKey) -> bool {
        self.copies_elsewhere(piece, key) > self.history.min_copies()
    }

    /// Next least-uploaded piece in the shuffled suggestion order (one lap at most).
    fn next_suggestion(&mut self) -> Option<PieceIndex> {
        let n = self.suggest_order.len();
        for _ in 0..n {
            let p = self.suggest_order[self.suggest_cursor % n];
            self.suggest_cursor = (self.suggest_cursor + 1) % n;
            if self.history.copies(p) == self.history.min_copies() {
                return Some(p);
            }
        }
        None
    }
}

impl Torrent {
    pub(super) fn on_request(
        &mut self,
        now: Time,
        key: PeerKey,
        b: Block,
    ) -> Result<(), ProtocolError> {
        self.check_piece(b.piece)?;
        let piece_len = u64::from(self.config.piece_len(b.piece));
        let max_requests = self.config.max_requests_per_peer;
        let relayable = self.relay_may_serve(key, b.piece);
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let max_len = peer.caps.max_request_len_bytes.max(BLOCK_LEN_BYTES);
        if b.len_bytes == 0 || b.len_bytes > max_len || b.end_bytes() > piece_len {
            return Err(ProtocolError::BadBlock(b));
        }
        if !self.have.get(b.piece) && !relayable {
            return Err(ProtocolError::RequestForMissingPiece(b.piece));
        }
        let fast = peer.caps.fast_extension;
        if peer.am_choking {
            // Requests sent before our choke arrived are legitimate; only a peer that
            // keeps going far beyond a full queue is misbehaving.
            peer.requests_while_choked += 1;
            if peer.requests_while_choked > 2 * max_requests {
                return Err(ProtocolError::RequestWhileChoked);
            }
            if fast {
                self.send(key, PeerMessage::Reject(b));
            }
            return Ok(());
        }
        if peer.queued_requests >= max_requests
            || self.uploads.pending.contains(&(key, b))
            || self.relay.is_waiting(key, b.piece)
        {
            if fast {
                self.send(key, PeerMessage::Reject(b));
            }
            return Ok(());
        }
        if self.try_distinct_reject(key, b) {
            return Ok(());
        }
        if self.try_busy_reject(key, b) {
            return Ok(());
        }
        if !self.have.get(b.piece) && self.relay.blocked(b.piece) {
            // Announced early, and its source stalled since ([`super::relay`]).
            if fast {
                self.send(key, PeerMessage::Reject(b));
            }
            return Ok(());
        }

        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        peer.queued_requests += 1;
        self.uploads.pending.push_back((key, b));
        self.pump_uploads(now);
        Ok(())
    }

    /// Distinct-first seeder: rejects (BEP 6) a request for a piece another peer already
    /// got from us while some piece has fewer copies, and suggests a least-uploaded piece
    /// instead. A repeated request (the requester found no other source) is served.
    fn try_distinct_reject(&mut self, key: PeerKey, b: Block) -> bool {
        if !self.distinct_policy_active() || !self.uploads.ahead_of_round(b.piece, key) {
            return false;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        if !peer.caps.fast_extension
            || !peer.caps.distinct_first
            || peer.we_rejected.contains(&b.piece)
        {
            return false;
        }
        remember_up_to(&mut peer.we_rejected, b.piece, SEEDER_REJECT_MEMORY);
        self.stats.distinct_rejects_sent += 1;
        self.send(key, PeerMessage::Reject(b));
        self.suggest_to(key, 1);
        true
    }

    /// Busy relay: a node that was not complete when created and already holds
    /// `busy_reject_pending` accepted requests it has not handed to the driver rejects
    /// (BEP 6) a p2pe peer's further request, so the requester fetches that piece from
    /// another holder whose uplink has room instead of queueing behind ours. The requester
    /// skips this piece from us until its next rechoke, or until nothing is in flight from
    /// anyone. Why: right after a piece is verified, every neighbour that lacks it asks
    /// its first holder and waits in that holder's queue while the later holders' uplinks
    /// idle (`p2pe sim --peers 100 --size 5GB --uplink 40Gbit`: uplink use 92 → 95 %,
    /// ratio 1.180 → 1.093; perf/sim.md, 2026-12-03). Not on the origin: its requests are
    /// the distinct-first policy's business, and rejecting there sent more duplicates.
    fn try_busy_reject(&mut self, key: PeerKey, b: Block) -> bool {
        let limit = self.config.busy_reject_pending;
        if limit == 0 || self.uploads.origin || self.uploads.pending.len() < limit {
            return false;
        }
        let Some(peer) = self.peers.get(&key) else {
            return false;
        };
        if !peer.caps.fast_extension || !peer.caps.distinct_first {
            return false;
        }
        self.stats.busy_rejects_sent += 1;
        self.send(key, PeerMessage::Reject(b));
        true
    }

    /// Rejects and suggestions are the origin's business: a node that was complete when
    /// created. Leechers that complete later serve everything (their upload is not the
    /// swarm's bottleneck, and rejecting would only slow down the stragglers).
    fn distinct_policy_active(&self) -> bool {
        self.config.seeder_policy == SeederPolicy::DistinctFirst && self.uploads.origin
    }

    pub(super) fn on_cancel(&mut self, key: PeerKey, b: Block) {
        if !self.uploads.pending.remove_entry(&(key, b)) {
            // Partly sent, the rest waiting for parts: the rest is dropped without a
            // reject, which could overtake parts still queued for the socket and clear
            // the requester's memory of the cancel before they arrive.
            self.relay.cancel(key, b);
            return; // already sent, or never queued: nothing to do
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.queued_requests = peer.queued_requests.saturating_sub(1);
            if peer.caps.fast_extension {
                // BEP 6: a cancelled request is answered with the block or a reject.
                self.send(key, PeerMessage::Reject(b));
            }
        }
    }

    pub(super) fn on_block_sent(&mut self, now: Time, key: PeerKey, b: Block) {
        let len = u64::from(b.len_bytes);
        self.uploads.budget.sent(now, key, len);
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.upload.record(len);
        }
        self.stats.uploaded_bytes += len;
        self.pump_uploads(now);
    }

    /// Peers whose sockets stopped draining yield their share of the upload window
    /// ([`super::upload_budget`]); others' requests are served in their place.
    pub(super) fn check_upload_stalls(&mut self, now: Time) {
        if self.uploads.budget.check_stalls(now) {
            self.pump_uploads(now);
        }
    }

    /// Most bytes one peer may have handed out and not yet sent: two of its pipelines,
    /// which an honest peer's requests never exceed (it keeps one pipeline in flight).
    fn per_peer_upload_bytes(&self) -> u64 {
        2 * self.config.pipeline_bytes.max(1)
    }

    /// Hands queued requests to the driver while under `upload_in_flight_bytes` (the
    /// node window) and each peer's budget.
    pub(super) fn pump_uploads(&mut self, now: Time) {
        let cap = self.config.upload_in_flight_bytes;
        if cap != 0 && self.uploads.budget.counted_bytes() >= cap {
            self.uploads.budget.check_stalls(now);
        }
        while cap == 0 || self.uploads.budget.counted_bytes() < cap {
            // A block the upload limit holds back stays a queued request (still
            // cancellable, rejectable and reordered), not a send in flight.
            if let Some(bucket) = &self.config.upload_limit {
                if !bucket.is_ready(now) {
                    self.upload_throttled = true;
                    break;
                }
            }
            let Some(i) = self.choose_upload() else { break };
            let Some((key, b)) = self.uploads.pending.remove(i) else {
                break;
            };
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.queued_requests = peer.queued_requests.saturating_sub(1);
                peer.last_sent_at = now;
            }
            // The round may have moved on since the request was queued.
            if b.offset.0 == 0 && self.try_distinct_reject(key, b) {
                continue;
            }
            let len = u64::from(b.len_bytes);
            if let Some(bucket) = &self.config.upload_limit {
                bucket.take(now, len);
            }
            if let Some(r) = self.relay_part_for(key) {
                if let Some(rest) = self.hand_parts(now, key, b, r) {
                    self.relay_wait(key, rest);
                }
            } else {
                self.uploads.budget.handed(now, key, len);
                self.actions.push_back(Action::SendBlock {
                    peer: key,
                    block: b,
                });
            }
            if b.offset.0 == 0 {
                self.uploads.record_copy(b.piece, key);
                self.stats.piece_uploads_started += 1;
                self.suggest_to(key, 1);
            }
        }
    }

    /// Index in `pending` of the request to serve next: least uploaded elsewhere, then
    /// for the requester furthest behind (fewest pieces), then rarest among our peers,
    /// then oldest (plain policy: oldest). The oldest request is passed over at most
    /// `MAX_FRONT_SKIPS` times in a row, so none starves.
    ///
    /// Why the requester's progress: a peer's share of its neighbours' uploads is otherwise
    /// proportional to the requests it has queued with them, i.e. to its degree, so
    /// low-degree peers fell behind and finished last (`p2pe sim --peers 300 --size 5GB`:
    /// max 1.37 s vs median 1.12 s; with this key 1.18 vs 1.15). It comes after the copy
    /// count, which keeps the origin's pieces distinct; ranking by progress first sent
    /// every uploader to the same few laggards, whose downlinks then throttled them.
    ///
    /// Only requests whose peer's budget allows them are candidates
    /// ([`super::upload_budget`]); "oldest" means the oldest such request.
    fn choose_upload(&mut self) -> Option<usize> {
        let per_peer = self.per_peer_upload_bytes();
        let budget = &self.uploads.budget;
        let eligible = |(_, (k, b)): &(usize, &(PeerKey, Block))| {
            budget.may_hand(*k, u64::from(b.len_bytes), per_peer)
        };
        let front = self.uploads.pending.iter().enumerate().find(eligible)?.0;
        if self.config.seeder_policy == SeederPolicy::Plain
            || self.uploads.front_skips >= MAX_FRONT_SKIPS
        {
            self.uploads.front_skips = 0;
            return Some(front);
        }
        let best = self
            .uploads
            .pending
            .iter()
            .enumerate()
            .skip(front)
            .take(CHOOSE_WINDOW)
            .filter(eligible)
            .min_by_key(|(i, (k, b))| {
                (
                    self.uploads.copies_elsewhere(b.piece, *k),
                    self.peers.get(k).map_or(0, |p| p.have.count_ones()),
                    self.picker.availability(b.piece),
                    *i,
                )
            })
            .map(|(i, _)| i);
        if best == Some(front) {
            self.uploads.front_skips = 0;
        } else {
            self.uploads.front_skips += 1;
        }
        best
    }

    /// Seeder with the distinct-first policy: suggest up to `n` never-uploaded pieces.
    fn suggest_to(&mut self, key: PeerKey, n: u32) {
        if !self.distinct_policy_active()
            || !self.peers.get(&key).is_some_and(|p| p.caps.fast_extension)
        {
            return;
        }
        for _ in 0..n {
            let Some(p) = self.uploads.next_suggestion() else {
                return;
            };
            self.send(key, PeerMessage::Suggest(p));
        }
    }

    /// Chokes or unchokes `key`; choking drops (BEP 6: rejects) its queued requests.
    pub(super) fn set_choke(&mut self, _now: Time, key: PeerKey, choke: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            peer.optimistic = false;
            peer.queued_requests = 0;
            let fast = peer.caps.fast_extension;
            self.send(key, PeerMessage::Choke);
            for b in self.uploads.pending.take_peer(key) {
                if fast {
                    self.actions.push_back(Action::Send {
                        peer: key,
                        msg: PeerMessage::Reject(b),
                    });
                }
            }
        } else {
            peer.requests_while_choked = 0;
            self.send(key, PeerMessage::Unchoke);
            self.suggest_to(key, self.config.suggest_pieces);
        }
    }

    /// Unchokes interested peers (at random) while regular slots are free, so uplinks
    /// do not idle until the next rechoke.
    pub(super) fn fill_free_slots(&mut self, now: Time) {
        let slots = self.slot_budget;
        loop {
            let regular = self
                .peers
                .values()
                .filter(|p| !p.am_choking && !p.optimistic)
                .count();
            if regular >= slots {
                return;
            }
            let waiting: Vec<PeerKey> = self
                .peers
                .iter()
                .filter(|(_, p)| p.am_choking && p.peer_interested && !p.snubbed)
                .map(|(k, _)| *k)
                .collect();
            if waiting.is_empty() {
                return;
            }
            let k = waiting[self.rng.random_range(0..waiting.len())];
            self.set_choke(now, k, false);
        }
    }

    /// Periodic re-evaluation of who we unchoke (see `core::choker`).
    pub(super) fn rechoke(&mut self, now: Time) {
        let cands = self.choke_candidates(now);
        let d = self.choker.rechoke(now, &cands, &mut self.rng);
        // A set: the datacenter profile unchokes everyone, so `regular` can be every peer.
        let regular: BTreeSet<PeerKey> = d.regular.iter().copied().collect();
        // Choke first so the slot count never exceeds slots + 1 mid-way.
        for c in &cands {
            let unchoke = regular.contains(&c.peer) || d.optimistic == Some(c.peer);
            if !unchoke {
                self.set_choke(now, c.peer, true);
            }
        }
        for c in &cands {
            let optimistic = d.optimistic == Some(c.peer);
            if regular.contains(&c.peer) || optimistic {
                self.set_choke(now, c.peer, false);
            }
            if let Some(p) = self.peers.get_mut(&c.peer) {
                p.optimistic = optimistic;
            }
        }
    }

    /// Closes every peer's rate window at `now`, forgets the per-interval reject memory,
    /// and returns what the choker ranks peers by.
    pub(super) fn choke_candidates(&mut self, now: Time) -> Vec<Candidate> {
        let seeding = self.have.is_full();
        let mut cands = Vec::with_capacity(self.peers.len());
        for (k, p) in self.peers.iter_mut() {
            p.rejected.clear();
            p.download.update(now);
            p.upload.update(now);
            cands.push(Candidate {
                peer: *k,
                interested: p.peer_interested,
                snubbed: !seeding && p.snubbed,
                rate_bytes_per_s: if seeding {
                    p.upload.rate_bytes_per_s()
                } else {
                    p.download.rate_bytes_per_s()
                },
                connected_at: p.connected_at,
            });
        }
        cands
    }

    /// BEP 3 keep-alive to peers we have not sent anything for `keepalive_interval`.
    pub(super) fn keepalives(&mut self, now: Time) {
        let interval = self.config.keepalive_interval;
        let idle: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_sent_at) >= interval)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            self.send(k, PeerMessage::KeepAlive);
        }
    }
}
